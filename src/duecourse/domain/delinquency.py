"""The snapshot of one account as of a date: the readable specification.

This module is written for a reader: Decimal amounts, plain loops over dues and days, each rule beside
its citation. ``engine/snapshot.py`` computes the same over the whole portfolio at once, and a property
test holds the two equal to the cent and the day. The rules are stated in ``docs/semantics.md``.

Allocation (as of D, of the total paid P with ``paid_on <= D``), in this order until P runs out:
  1. the required part of every past-due due (``due_date < D``), oldest first, components in product order;
  2. the charges due now (penalty interest, late fees);
  3. the required part of every due not yet due;
  4. the remainder (card balance above the minimum) of every due;
  5. card interest accrued since posting (billed on the next statement);
  6. credit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from duecourse.domain.model import Component, Due, Payment
from duecourse.domain.money import round_money
from duecourse.domain.terms import CURRENT_STAGE, BucketSet, Product, Stage

ZERO = Decimal(0)
ONE_DAY = dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Allocation:
    """Money from one payment that reached one due or charge."""

    payment_id: str
    target: str  # a due_id, or "charge:penalty_interest", "charge:late_fee:<date>", "charge:card_interest"
    component: str
    amount: Decimal
    block: str  # past_due_required, charges_due, future_required, remainder, card_interest, credit


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


def paid_for_accrual(dues: Sequence[Due], paid_total: Decimal) -> dict[str, Decimal]:
    """How much of each due (in order) a paid total covers: required parts first, then remainders.

    This is the balance on which charges accrue (docs/semantics.md: charges are left out of it).
    """
    left = paid_total
    paid: dict[str, Decimal] = {}
    for due in dues:
        taken, left = _pour(left, due.required)
        paid[due.due_id] = taken
    for due in dues:
        taken, left = _pour(left, due.amount - due.required)
        paid[due.due_id] += taken
    return paid


def paid_required(dues: Sequence[Due], paid_total: Decimal) -> dict[str, Decimal]:
    """How much of each due's required part a paid total covers (the first pass alone)."""
    left = paid_total
    paid: dict[str, Decimal] = {}
    for due in dues:
        taken, left = _pour(left, due.required)
        paid[due.due_id] = taken
    return paid


class _PaidByDay:
    """P(d): the total paid on or before each day."""

    def __init__(self, payments: Sequence[Payment]) -> None:
        self._payments = sorted(payments, key=lambda p: (p.paid_on, p.payment_id))

    def __call__(self, day: dt.date) -> Decimal:
        return sum((p.amount for p in self._payments if p.paid_on <= day), ZERO)


def _days(first: dt.date, last: dt.date) -> Iterable[dt.date]:
    day = first
    while day <= last:
        yield day
        day += ONE_DAY


def penalty_interest_lines(
    dues: Sequence[Due], paid_by: _PaidByDay, product: Product, as_of: dt.date
) -> list[ChargeLine]:
    """罚息 on overdue principal: daily rate × unpaid principal, each day after the due date up to as_of.

    CN-LOAN-01 (PBoC 银发〔2003〕251号): penalty interest accrues daily from the overdue date. Only principal
    bears it; never interest, fees or penalties (PBoC 银发〔2016〕111号 §3).
    """
    rate = product.charges.penalty_daily_rate
    if rate == 0:
        return []
    lines = []
    for due in dues:
        if due.component != Component.PRINCIPAL.value or due.due_date >= as_of:
            continue
        unpaid_days = ZERO
        for day in _days(due.due_date + ONE_DAY, as_of):
            unpaid_days += due.amount - paid_for_accrual(dues, paid_by(day))[due.due_id]
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


def card_interest_lines(
    dues: Sequence[Due], paid_by: _PaidByDay, product: Product, as_of: dt.date
) -> list[ChargeLine]:
    """全额计息 (CN-FEE-06): a statement not paid in full by its due date bears interest from posting.

    ``full_amount``: each day from the posting date to as_of, both ends counted, on the balance of that day
    (a payment on day d lowers the balance from day d; E-CN-1). ``unpaid_portion``: only the part left
    unpaid at the due date, over the same days.
    """
    mode = product.charges.card_interest_mode
    rate = product.charges.card_daily_rate
    if mode == "none" or rate == 0:
        return []
    lines = []
    for due in dues:
        if due.component != Component.PRINCIPAL.value or due.posted_on is None or due.due_date >= as_of:
            continue
        if paid_for_accrual(dues, paid_by(due.due_date))[due.due_id] >= due.amount:
            continue  # paid in full by the due date: the interest-free period holds
        balance_days = ZERO
        for day in _days(due.posted_on, as_of):
            on = max(day, due.due_date) if mode == "unpaid_portion" else day
            balance_days += due.amount - paid_for_accrual(dues, paid_by(on))[due.due_id]
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


def late_fee_lines(
    dues: Sequence[Due], paid_by: _PaidByDay, product: Product, as_of: dt.date
) -> list[ChargeLine]:
    """违约金 / late fee: once per due date whose required total was not paid by the end of that day.

    CN-FEE-05: percent of the unpaid part of the minimum payment, then the product's floor and cap;
    Reg Z 1026.52(b): with ``limit_to_minimum``, never more than the minimum payment due.
    """
    fee_terms = product.charges.late_fee
    if fee_terms.mode == "none":
        return []
    lines = []
    for due_date in sorted({d.due_date for d in dues if d.due_date < as_of}):
        on_date = [d for d in dues if d.due_date == due_date]
        covered = paid_required(dues, paid_by(due_date))
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
            ChargeLine("late_fee", on_date[0].due_id, fee, f"{formula} (due {due_date} not paid in time)")
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
) -> AccountSnapshot:
    """The account's state as of ``as_of`` (docs/semantics.md)."""
    currency = product.currency
    order = ordered_dues(dues, product)
    counted = sorted((p for p in payments if p.paid_on <= as_of), key=lambda p: (p.paid_on, p.payment_id))
    paid_by = _PaidByDay(counted)

    penalty_lines = penalty_interest_lines(order, paid_by, product, as_of)
    card_lines = card_interest_lines(order, paid_by, product, as_of)
    fee_lines = late_fee_lines(order, paid_by, product, as_of)
    penalty_interest = round_money(sum((c.amount for c in penalty_lines), ZERO), currency)
    card_interest = round_money(sum((c.amount for c in card_lines), ZERO), currency)
    late_fees = sum((c.amount for c in fee_lines), ZERO)

    # The slots money is poured into, in the order of the six blocks.
    past = [d for d in order if d.due_date < as_of]
    future = [d for d in order if d.due_date >= as_of]
    charge_slots = sorted(
        [("penalty", "charge:penalty_interest", penalty_interest)]
        + [("fee", f"charge:late_fee:{c.due_id}", c.amount) for c in fee_lines],
        key=lambda s: product.component_rank(s[0]),
    )
    slots: list[tuple[str, str, str, Decimal]] = (
        [("past_due_required", d.due_id, d.component, d.required) for d in past]
        + [("charges_due", target, comp, amt) for comp, target, amt in charge_slots]
        + [("future_required", d.due_id, d.component, d.required) for d in future]
        + [("remainder", d.due_id, d.component, d.amount - d.required) for d in order]
        + [("card_interest", "charge:card_interest", Component.INTEREST.value, card_interest)]
    )
    filled = [ZERO] * len(slots)
    allocations: list[Allocation] = []
    slot = 0
    for payment in counted:
        left = payment.amount
        while left > 0 and slot < len(slots):
            block, target, component, capacity = slots[slot]
            taken, left = _pour(left, capacity - filled[slot])
            if taken:
                filled[slot] += taken
                allocations.append(Allocation(payment.payment_id, target, component, taken, block))
            if filled[slot] >= capacity:
                slot += 1
        if left > 0:
            allocations.append(Allocation(payment.payment_id, "credit", "", left, "credit"))

    past_due = {c.value: ZERO for c in Component}
    anchor: Due | None = None
    missed_dates: set[dt.date] = set()
    for index, (block, target, component, capacity) in enumerate(slots):
        unpaid = capacity - filled[index]
        if block == "past_due_required" and unpaid > 0:
            past_due[component] += unpaid
            due = next(d for d in past if d.due_id == target)
            missed_dates.add(due.due_date)
            anchor = anchor or due
        elif block == "charges_due":
            past_due[component] += unpaid

    paid_total = sum((p.amount for p in counted), ZERO)
    owed = sum((d.amount for d in order), ZERO) + penalty_interest + card_interest + late_fees
    days_past_due = (as_of - anchor.due_date).days if anchor else 0
    delinquency_days = max(0, days_past_due - product.grace_days)
    amount_past_due = sum(past_due.values(), ZERO)
    stage, why = choose_stage(
        stages,
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
        outstanding=max(ZERO, owed - paid_total),
        credit=max(ZERO, paid_total - owed),
        penalty_interest=penalty_interest,
        card_interest=card_interest,
        late_fees=late_fees,
        paid_total=paid_total,
        allocations=tuple(allocations),
        charges=tuple(penalty_lines + card_lines + fee_lines),
    )
