"""The snapshot of one account as of a date: the readable specification.

This module is written for a reader: Decimal amounts, plain loops over dues and days, each rule beside
its citation. ``engine/snapshot.py`` computes the same over the whole portfolio at once, and a property
test holds the two equal to the cent and the day. The rules are stated in ``docs/semantics.md``.

Allocation: payments are applied in the order they arrive. On each day the money (the day's payments and
any credit) goes to the required parts of the dues payable that day (a card statement from its posting
date, a loan instalment at any time), oldest first, components in product order; then to their
remainders (card balances above the minimum); what is left is credit for dues not yet payable. As of the
date D, the charges due now (penalty interest, late fees) rank before anything not yet past due, and card
interest is paid from what credit is left.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from duecourse.domain.model import Component, Due, Payment
from duecourse.domain.money import round_money
from duecourse.domain.terms import CURRENT_STAGE, DEFAULT_SEGMENT, BucketSet, Product, Segment, Stage

ZERO = Decimal(0)
ONE_DAY = dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Allocation:
    """Money from one payment that reached one due or charge on a day.

    ``block`` is ``required`` (a due's required part: a loan instalment, a card statement's minimum),
    ``remainder`` (a card balance above the minimum), ``charges_due`` (penalty interest and late fees,
    paid as of the snapshot's date), ``moved_to_charges`` (a negative amount: money taken back from a part
    not yet past due to pay a charge due now; its ``payment_id`` is empty), ``card_interest`` or
    ``credit``.
    """

    payment_id: str
    target: str  # a due_id, or "charge:penalty_interest", "charge:late_fee:<due_id>", "charge:card_interest"
    component: str
    amount: Decimal
    block: str
    on: dt.date


@dataclass(frozen=True, slots=True)
class ChargeLine:
    """One charge with the formula that produced it, in words and numbers."""

    kind: str  # penalty_interest, card_interest, late_fee
    due_id: str
    amount: Decimal  # exact before rounding for interest lines; the rounded fee for late fees
    formula: str


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """An account's state as of a date.

    Attributes:
        days_past_due: as_of minus the anchor due's date (0 when nothing is past due).
        delinquency_days: days past due less the product's grace days, never below 0.
        anchor_due_id: the oldest due whose required part is unpaid, or None.
        past_due: unpaid past-due amounts by component (charges due now included).
        stage_condition: the words that say why the stage was chosen.
        segment: the strategy segment whose stages the account is on (``default``: no segment took it).
        segment_condition: the words that say why that segment was chosen ("" when the strategy has
            no segments).
        paid_by_due: per due, (required part paid, remainder paid) as of the date, after the charges due
            now have taken what they rank before.
    """

    account_id: str
    as_of: dt.date
    currency: str
    days_past_due: int
    delinquency_days: int
    bucket: str
    past_due: dict[str, Decimal]
    oldest_unpaid_due_date: dt.date | None
    anchor_due_id: str | None
    missed_dues: int
    stage: str
    stage_condition: str
    on_hold: bool
    outstanding: Decimal
    credit: Decimal
    penalty_interest: Decimal
    card_interest: Decimal
    late_fees: Decimal
    paid_total: Decimal
    allocations: tuple[Allocation, ...] = field(default=())
    charges: tuple[ChargeLine, ...] = field(default=())
    paid_by_due: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)
    segment: str = DEFAULT_SEGMENT
    segment_condition: str = ""

    @property
    def amount_past_due(self) -> Decimal:
        return sum(self.past_due.values(), ZERO)


def ordered_dues(dues: Iterable[Due], product: Product) -> list[Due]:
    """Dues in allocation order: due date, then the product's component order, then due id."""
    return sorted(dues, key=lambda d: (d.due_date, product.component_rank(d.component), d.due_id))


def _pour(amount: Decimal, capacity: Decimal) -> tuple[Decimal, Decimal]:
    """Pour ``amount`` into a slot of ``capacity``: (taken, left)."""
    taken = min(amount, capacity) if amount > 0 else ZERO
    return taken, amount - taken


def payable_from(dues: Sequence[Due]) -> dict[str, dt.date]:
    """The first day each due (in order) can take money.

    A card statement can be paid from its ``posted_on``; a due without one, from the posting date of the
    dues of its due date (a fee or interest billed on that statement), else at any time (``date.min``: a
    loan instalment, whose schedule is known from the start). A due is never payable earlier than a due
    before it in the order, so the payable dues are always the first ones in the order.
    """
    statement: dict[dt.date, dt.date] = {}
    for due in dues:
        if due.posted_on is not None:
            statement[due.due_date] = min(statement.get(due.due_date, due.posted_on), due.posted_on)
    opens: dict[str, dt.date] = {}
    latest = dt.date.min
    for due in dues:
        latest = max(latest, due.posted_on or statement.get(due.due_date, dt.date.min))
        opens[due.due_id] = latest
    return opens


@dataclass(frozen=True, slots=True)
class Paid:
    """What each due holds at the end of a day: its required part and its remainder paid, and credit."""

    required: dict[str, Decimal]
    remainder: dict[str, Decimal]
    credit: Decimal

    def of(self, due_id: str) -> Decimal:
        return self.required[due_id] + self.remainder[due_id]


class Timeline:
    """Payments applied to the dues in the order they arrive (docs/semantics.md, "Allocation").

    On each day, in date order, the day's payments join the credit and the money goes to the required
    parts of the dues payable that day, in the order, then to their remainders, in the order; what is
    left stays as credit and pays dues as they become payable. Charges are left out (they are paid as of
    the snapshot's date, see ``snapshot``). ``at(day)`` is the state at the end of a day.
    """

    def __init__(self, dues: Sequence[Due], payments: Sequence[Payment], last_day: dt.date) -> None:
        self.dues = list(dues)
        opens = payable_from(self.dues)
        counted = sorted(
            (p for p in payments if p.paid_on <= last_day), key=lambda p: (p.paid_on, p.payment_id)
        )
        days = sorted({day for day in opens.values() if day <= last_day} | {p.paid_on for p in counted})
        required = {d.due_id: ZERO for d in self.dues}
        remainder = {d.due_id: ZERO for d in self.dues}
        self.credit: list[list[Any]] = []  # [payment_id, amount left], oldest first
        self.allocations: list[Allocation] = []
        self._days: list[dt.date] = []
        self._states: list[Paid] = []
        for day in days:
            self.credit += [[p.payment_id, p.amount] for p in counted if p.paid_on == day]
            payable = [d for d in self.dues if opens[d.due_id] <= day]
            for block, filled in (("required", required), ("remainder", remainder)):
                for due in payable:
                    size = due.required if block == "required" else due.amount - due.required
                    need = size - filled[due.due_id]
                    while need > 0 and self.credit:
                        payment_id, left = self.credit[0]
                        taken, rest = _pour(left, need)
                        filled[due.due_id] += taken
                        need -= taken
                        self.allocations.append(
                            Allocation(payment_id, due.due_id, due.component, taken, block, day)
                        )
                        if rest > 0:
                            self.credit[0][1] = rest
                        else:
                            self.credit.pop(0)
            self._days.append(day)
            self._states.append(Paid(dict(required), dict(remainder), sum((c[1] for c in self.credit), ZERO)))
        self._none = Paid({d.due_id: ZERO for d in self.dues}, {d.due_id: ZERO for d in self.dues}, ZERO)

    def at(self, day: dt.date) -> Paid:
        """The state at the end of ``day``."""
        index = bisect.bisect_right(self._days, day) - 1
        return self._states[index] if index >= 0 else self._none


def _days(first: dt.date, last: dt.date) -> Iterable[dt.date]:
    day = first
    while day <= last:
        yield day
        day += ONE_DAY


def penalty_interest_lines(timeline: Timeline, product: Product, as_of: dt.date) -> list[ChargeLine]:
    """罚息 on overdue principal: daily rate × unpaid principal, each day after the due date up to as_of.

    CN-LOAN-01 (PBoC 银发〔2003〕251号): penalty interest accrues daily from the overdue date. Only principal
    bears it; never interest, fees or penalties (PBoC 银发〔2016〕111号 §3).
    """
    rate = product.charges.penalty_daily_rate
    if rate == 0:
        return []
    lines = []
    for due in timeline.dues:
        if due.component != Component.PRINCIPAL.value or due.due_date >= as_of:
            continue
        unpaid_days = ZERO
        for day in _days(due.due_date + ONE_DAY, as_of):
            unpaid_days += due.amount - timeline.at(day).of(due.due_id)
        if unpaid_days:
            lines.append(
                ChargeLine(
                    "penalty_interest",
                    due.due_id,
                    rate * unpaid_days,
                    f"{rate} per day × {unpaid_days} (unpaid principal summed over each day from "
                    f"{due.due_date + ONE_DAY} to {as_of})",
                )
            )
    return lines


def card_interest_lines(timeline: Timeline, product: Product, as_of: dt.date) -> list[ChargeLine]:
    """全额计息 (CN-FEE-06): a statement not paid in full by its due date bears interest from posting.

    Paid in full within the product's grace days counts as on time (容时, CN-FEE-07): the interest (from
    the posting date, as always) is charged only once the grace days are over.

    ``full_amount``: each day from the posting date to as_of, both ends counted, on the balance of that day
    (a payment on day d lowers the balance from day d; E-CN-1). ``unpaid_portion``: only the part left
    unpaid at the due date, over the same days.
    """
    mode = product.charges.card_interest_mode
    rate = product.charges.card_daily_rate
    if mode == "none" or rate == 0:
        return []
    grace = dt.timedelta(days=product.grace_days)
    lines = []
    for due in timeline.dues:
        on_time_until = due.due_date + grace
        if due.component != Component.PRINCIPAL.value or due.posted_on is None or on_time_until >= as_of:
            continue
        if timeline.at(on_time_until).of(due.due_id) >= due.amount:
            continue  # paid in full on time (grace days included): the interest-free period holds
        balance_days = ZERO
        for day in _days(due.posted_on, as_of):
            on = max(day, due.due_date) if mode == "unpaid_portion" else day
            balance_days += due.amount - timeline.at(on).of(due.due_id)
        lines.append(
            ChargeLine(
                "card_interest",
                due.due_id,
                rate * balance_days,
                f"{rate} per day × {balance_days} ({mode.replace('_', ' ')} balance summed over each day "
                f"from {due.posted_on} to {as_of})",
            )
        )
    return lines


def _when_late(due_date: dt.date, grace: dt.timedelta) -> str:
    if not grace:
        return f"due {due_date} not paid in time"
    return f"due {due_date} not paid by {due_date + grace}, the end of its {grace.days} grace days"


def late_fee_lines(timeline: Timeline, product: Product, as_of: dt.date) -> list[ChargeLine]:
    """违约金 / late fee: once per due date whose required total was not paid by the end of that day.

    A payment within the product's grace days counts as on time (容时, CN-FEE-07): the fee is charged
    from the day after the grace days, on what was unpaid at their end. CN-FEE-05: percent of the unpaid
    part of the minimum payment, then the product's floor and cap; Reg Z 1026.52(b): with
    ``limit_to_minimum``, never more than the minimum payment due.
    """
    fee_terms = product.charges.late_fee
    if fee_terms.mode == "none":
        return []
    lines = []
    dues = timeline.dues
    grace = dt.timedelta(days=product.grace_days)
    for due_date in sorted({d.due_date for d in dues if d.due_date + grace < as_of}):
        on_date = [d for d in dues if d.due_date == due_date]
        covered = timeline.at(due_date + grace).required
        required = sum((d.required for d in on_date), ZERO)
        shortfall = required - sum((covered[d.due_id] for d in on_date), ZERO)
        if shortfall <= 0:
            continue
        if fee_terms.mode == "percent":
            fee = round_money(fee_terms.percent * shortfall, product.currency)
            formula = f"{fee_terms.percent} × unpaid minimum {shortfall}"
            if fee_terms.floor is not None and fee < fee_terms.floor:
                fee, formula = fee_terms.floor, formula + f", raised to the floor {fee_terms.floor}"
            if fee_terms.cap is not None and fee > fee_terms.cap:
                fee, formula = fee_terms.cap, formula + f", limited to the cap {fee_terms.cap}"
        else:
            fee, formula = fee_terms.flat, f"flat fee {fee_terms.flat}"
        if fee_terms.limit_to_minimum and fee > required:
            fee, formula = required, formula + f", limited to the minimum payment {required}"
        lines.append(
            ChargeLine("late_fee", on_date[0].due_id, fee, f"{formula} ({_when_late(due_date, grace)})")
        )
    return lines


def choose_stage(
    stages: Sequence[Stage],
    *,
    days_past_due: int,
    delinquency_days: int,
    amount_past_due: Decimal,
    missed_dues: int,
) -> tuple[str, str]:
    """The most severe stage whose conditions all hold (thresholds inclusive), else ``current``."""
    for stage in reversed(stages):
        checks = []
        if stage.min_days_past_due is not None:
            checks.append(
                (
                    days_past_due >= stage.min_days_past_due,
                    f"days past due {days_past_due} ≥ {stage.min_days_past_due}",
                )
            )
        if stage.min_delinquency_days is not None:
            checks.append(
                (
                    delinquency_days >= stage.min_delinquency_days,
                    f"delinquency days {delinquency_days} ≥ {stage.min_delinquency_days}",
                )
            )
        if stage.min_amount_past_due is not None:
            checks.append(
                (
                    amount_past_due >= stage.min_amount_past_due,
                    f"amount past due {amount_past_due} ≥ {stage.min_amount_past_due}",
                )
            )
        if stage.min_missed_dues is not None:
            checks.append(
                (missed_dues >= stage.min_missed_dues, f"missed dues {missed_dues} ≥ {stage.min_missed_dues}")
            )
        if checks and all(ok for ok, _ in checks):
            return stage.name, " and ".join(words for _, words in checks)
    return CURRENT_STAGE, "no stage's conditions hold"


def choose_segment(
    segments: Sequence[Segment],
    *,
    product_code: str,
    jurisdiction: str | None,
    amount_past_due: Decimal,
    balance: Decimal,
    attributes: Mapping[str, Decimal | str] | None = None,
) -> tuple[Segment | None, str]:
    """The first segment whose conditions all hold (thresholds inclusive), else None (the default one).
    ``attributes``: the account's attribute values as of the day (a missing one meets no condition)."""
    for segment in segments:
        when = segment.when
        checks: list[tuple[bool, str]] = []
        if when.products:
            checks.append(
                (product_code in when.products, f"product {product_code} in {', '.join(when.products)}")
            )
        if when.jurisdictions:
            if jurisdiction is None:
                raise ValueError(f"segment {segment.name} chooses by jurisdiction: the customer's is needed")
            checks.append(
                (
                    jurisdiction in when.jurisdictions,
                    f"jurisdiction {jurisdiction} in {', '.join(when.jurisdictions)}",
                )
            )
        if when.min_amount_past_due is not None:
            checks.append(
                (
                    amount_past_due >= when.min_amount_past_due,
                    f"amount past due {amount_past_due} ≥ {when.min_amount_past_due}",
                )
            )
        if when.min_balance is not None:
            checks.append((balance >= when.min_balance, f"balance {balance} ≥ {when.min_balance}"))
        for condition in when.attributes:
            value = (attributes or {}).get(condition.name)
            shown = "none" if value is None else str(value)
            checks.append((condition.holds(value), f"{condition.name} {shown}: {condition.describe()}"))
        if all(ok for ok, _ in checks):
            return segment, " and ".join(words for _, words in checks)
    return None, "no segment's conditions hold" if segments else ""


def snapshot(
    account_id: str,
    product: Product,
    bucket_set: BucketSet,
    stages: Sequence[Stage],
    dues: Iterable[Due],
    payments: Iterable[Payment],
    as_of: dt.date,
    *,
    on_hold: bool = False,
    segments: Sequence[Segment] = (),
    jurisdiction: str | None = None,
    attributes: Mapping[str, Decimal | str] | None = None,
) -> AccountSnapshot:
    """The account's state as of ``as_of`` (docs/semantics.md).

    ``stages`` are the default stages; with ``segments``, an account one of them takes is on that
    segment's stages instead (``jurisdiction``: the customer's, needed when a segment chooses by it;
    ``attributes``: the account's attribute values in force, when a segment chooses by one).
    """
    currency = product.currency
    order = ordered_dues(dues, product)
    counted = sorted((p for p in payments if p.paid_on <= as_of), key=lambda p: (p.paid_on, p.payment_id))
    timeline = Timeline(order, counted, as_of)
    now = timeline.at(as_of)

    penalty_lines = penalty_interest_lines(timeline, product, as_of)
    card_lines = card_interest_lines(timeline, product, as_of)
    fee_lines = late_fee_lines(timeline, product, as_of)
    penalty_interest = round_money(sum((c.amount for c in penalty_lines), ZERO), currency)
    card_interest = round_money(sum((c.amount for c in card_lines), ZERO), currency)
    late_fees = sum((c.amount for c in fee_lines), ZERO)

    # Past due: the required parts of the dues due before the date that the payments have not reached.
    past_due = {c.value: ZERO for c in Component}
    anchor: Due | None = None
    missed_dates: set[dt.date] = set()
    for due in order:
        unpaid = due.required - now.required[due.due_id]
        if due.due_date < as_of and unpaid > 0:
            past_due[due.component] += unpaid
            missed_dates.add(due.due_date)
            anchor = anchor or due

    # The charges due now rank before anything not yet past due: they are paid from the credit first,
    # then from the money that went to parts not yet past due, taken back newest first (the remainders,
    # then the required parts of dues not yet due).
    allocations = list(timeline.allocations)
    credit_queue = [list(c) for c in timeline.credit]
    held = {d.due_id: [now.required[d.due_id], now.remainder[d.due_id]] for d in order}
    sources: list[tuple[Due, int]] = [(d, 1) for d in reversed(order)]
    sources += [(d, 0) for d in reversed(order) if d.due_date >= as_of]
    charge_slots = sorted(
        [("penalty", "charge:penalty_interest", penalty_interest)]
        + [("fee", f"charge:late_fee:{c.due_id}", c.amount) for c in fee_lines],
        key=lambda s: product.component_rank(s[0]),
    )

    def from_credit(target: str, component: str, block: str, need: Decimal) -> Decimal:
        while need > 0 and credit_queue:
            payment_id, left = credit_queue[0]
            taken, rest = _pour(left, need)
            need -= taken
            allocations.append(Allocation(payment_id, target, component, taken, block, as_of))
            if rest > 0:
                credit_queue[0][1] = rest
            else:
                credit_queue.pop(0)
        return need

    for component, target, amount in charge_slots:
        need = from_credit(target, component, "charges_due", amount)
        while need > 0 and sources:
            due, part = sources[0]
            taken, _ = _pour(held[due.due_id][part], need)
            if taken:
                held[due.due_id][part] -= taken
                need -= taken
                allocations.append(
                    Allocation("", due.due_id, due.component, -taken, "moved_to_charges", as_of)
                )
                allocations.append(Allocation("", target, component, taken, "charges_due", as_of))
            if held[due.due_id][part] == 0:
                sources.pop(0)
        past_due[component] += need
    from_credit("charge:card_interest", Component.INTEREST.value, "card_interest", card_interest)
    allocations += [Allocation(pid, "credit", "", left, "credit", as_of) for pid, left in credit_queue]
    credit = sum((left for _, left in credit_queue), ZERO)

    paid_total = sum((p.amount for p in counted), ZERO)
    owed = sum((d.amount for d in order), ZERO) + penalty_interest + card_interest + late_fees
    days_past_due = (as_of - anchor.due_date).days if anchor else 0
    delinquency_days = max(0, days_past_due - product.grace_days)
    amount_past_due = sum(past_due.values(), ZERO)
    outstanding = owed - (paid_total - credit)
    segment, segment_why = choose_segment(
        segments,
        product_code=product.code,
        jurisdiction=jurisdiction,
        amount_past_due=amount_past_due,
        balance=outstanding,
        attributes=attributes,
    )
    stage, why = choose_stage(
        stages if segment is None else segment.stages,
        days_past_due=days_past_due,
        delinquency_days=delinquency_days,
        amount_past_due=amount_past_due,
        missed_dues=len(missed_dates),
    )
    return AccountSnapshot(
        account_id=account_id,
        as_of=as_of,
        currency=currency,
        days_past_due=days_past_due,
        delinquency_days=delinquency_days,
        bucket=bucket_set.bucket_for(delinquency_days),
        past_due=past_due,
        oldest_unpaid_due_date=anchor.due_date if anchor else None,
        anchor_due_id=anchor.due_id if anchor else None,
        missed_dues=len(missed_dates),
        stage=stage,
        stage_condition=why,
        on_hold=on_hold,
        outstanding=outstanding,
        credit=credit,
        penalty_interest=penalty_interest,
        card_interest=card_interest,
        late_fees=late_fees,
        paid_total=paid_total,
        allocations=tuple(allocations),
        charges=tuple(penalty_lines + card_lines + fee_lines),
        paid_by_due={due_id: (parts[0], parts[1]) for due_id, parts in held.items()},
        segment=DEFAULT_SEGMENT if segment is None else segment.name,
        segment_condition=segment_why,
    )
