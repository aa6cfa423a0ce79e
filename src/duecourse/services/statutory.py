"""The notices the law requires, planned by the law and not only by the strategy.

``statutory_parts`` adds to each day's candidates (``services/contacts.candidates``) the letters a statute
requires whatever the strategy says, shaped like the strategy's own rows, so that the governor decides
them like any other contact and ``_replace_decisions`` stores them with the day's decisions:

- **UK notice of sums in arrears** (kind ``uk_nosia``, action ``statutory-uk_nosia``), to UK customers:

  - *Fixed-sum credit* (``instalment_loan``; UK-NOSIA-01, CCA 1974 s86B). The trigger is met on a day
    when at least ``k`` payments have become due (their due date is that day or earlier) and the
    shortfall (what they add up to, less every payment made by the end of that day) is at least the sum
    of the last ``k`` of them and more than nothing; ``k`` is 2, or 4 when the agreement's due dates are a
    week or less apart (median gap). The first notice is due within 14 days beginning with the trigger
    day (E-UK-1: 03-01 → 03-14); it is planned on the first run that sees the trigger, saying it is late
    if that day has passed. Then, while the arrears last, one every six months at most after the last
    one (s86B(2)(b), s86D(1)(b); E-UK-1: 03-10 → 09-10), planned ``FURTHER_NOTICE_MARGIN_DAYS`` before
    the six months end so that the letter is posted in time.
  - *Running-account credit* (``card``; UK-NOSIA-02, s86C). When the last two payments (the statements'
    minimum payments) have not been made, and no earlier notice of this arrears episode was given after
    either of them fell due (s86C(1)(c)). The notice is due by the end of the period of the next
    statement: the posting date of the next statement when the dues already hold it, else 30 days after
    the trigger; the earlier of the two.

  A **judgment** (a ``judgment`` hold in force on the day, from ``duecourse import holds``; its start the
  day judgment was given) changes the duty: a trigger after a judgment with sums still to pay under it
  starts none (s86B(1)(e), s86C(1)(d)); a judgment given after the trigger ends the further notices
  (s86B(3), (4)(b)) but not the first one, if not yet given (s86B(3): "the duty shall not cease until
  that notice is given"). A judgment given on the trigger day itself is taken as after it (the law's
  order within a day cannot be known; a notice too many breaks no rule, one too few does: s86D).

  An **arrears episode** runs from the first day an instalment (a card's minimum) is unpaid after its due
  date to the first day none is; a later episode starts the sequence again. A notice counts when it is
  in the outbox (``uk_nosia``, planned by this module or by the strategy) in a state other than
  cancelled or failed (a returned letter counts: CCA 1974 s176 deems a document posted to the last
  known address served).

- **US validation notice** (kind ``us_validation_notice``, action ``statutory-us_validation_notice``;
  US-VAL-01, 12 CFR 1006.34(a)(1)), to US customers of products collected as a third party
  (``[governor] third_party_products``): once the outbox holds a communication to the account (any other
  kind, planned on an earlier day, not cancelled) and no validation notice (not cancelled or failed),
  one is planned, due 5 days after the first communication excluding weekends and US federal legal
  holidays (``domain/calendar.py``, calendar US).

Every row is a letter, wanted at the start of the customer's contact hours on the run's day, with a
priority (0, 1) ahead of every strategy action, and a ``why`` that gives the rule, the trigger day and the
deadline. A re-run of the day plans the same rows under the same keys (a notice this module planned on
that very day, in the account's stage of the day, does not count as an earlier one; planned in another
stage, before the data changed, it does, since the key would differ); a notice of the same kind that the
strategy itself plans that day takes the place of this module's (never two).

What is read, all at once for the whole portfolio (one consistent view): today's snapshots of the UK
customers' accounts in arrears and of the US third-party accounts, the dues and payments of those UK
accounts, and their outbox rows of these kinds. No history of snapshots is scanned.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

import polars as pl
from sqlalchemy import BigInteger, Select, and_, cast, func, not_, select

from duecourse.bootstrap import App
from duecourse.domain.calendar import calendar_for
from duecourse.domain.money import CURRENCIES
from duecourse.store.frames import many_accounts, read_frames
from duecourse.store.tables import (
    accounts,
    customers,
    dues,
    holds,
    outbox,
    payments,
    snapshots,
    stage_history,
)

NOSIA_KIND = "uk_nosia"
JUDGMENT = "judgment"  # the hold kind of a judgment given (services/holds.py)
VALIDATION_KIND = "us_validation_notice"
NOSIA_ACTION = f"statutory-{NOSIA_KIND}"
VALIDATION_ACTION = f"statutory-{VALIDATION_KIND}"
CHANNEL = "letter"
# Ahead of every strategy action (their priorities are 1,000 and up): a smaller priority goes first.
NOSIA_PRIORITY = 0
VALIDATION_PRIORITY = 1

FIRST_NOTICE_DAYS = 14  # s86B(2)(a): within 14 days beginning with the trigger day (E-UK-1: 03-01 → 03-14)
FURTHER_NOTICE_MONTHS = 6  # s86B(2)(b): at intervals of not more than six months
# Further notices are planned this many days before the six months end: posting (second class takes up
# to 3 working days), a print batch and a weekend, a hold or a payment that cancels the letter and the
# next run re-plans it, all fit; the same 14 days the law gives for the first notice.
FURTHER_NOTICE_MARGIN_DAYS = 14
WEEKLY_GAP_DAYS = 7  # s86B(1)(c): "four" instead of "two" for payments a week or less apart
CARD_STATEMENT_DAYS = 30  # s86C(2): the next statement's period, when the dues do not show it yet
VALIDATION_BUSINESS_DAYS = (
    5  # 12 CFR 1006.34(a)(1)(i)(B): within five days, legal holidays and weekends excluded
)
VALIDATION_CALENDAR = "US"

# Outbox states of a notice that was not given (a returned letter was: s176); of a message that is not
# a communication.
NOT_GIVEN = ("cancelled", "failed")
NOT_COMMUNICATED = ("cancelled",)

LOAN = "instalment_loan"
CARD = "card"

# The columns (and types) of the rows ``contacts.plan_frame`` takes in ``more``: as ``_pre_due_parts``.
PARTS: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    "stage": pl.String(),
    "customer_id": pl.String(),
    "product_code": pl.String(),
    "timezone": pl.String(),
    "jurisdiction": pl.String(),
    "planned_on": pl.Date(),
    "entered_on": pl.Date(),
    "holdout": pl.String(),
    "action": pl.String(),
    "channel": pl.String(),
    "kind": pl.String(),
    "at": pl.String(),
    "priority": pl.Int32(),
    "fallback": pl.List(pl.String()),
    "why": pl.String(),
}
# The pure helpers' inputs.
DUE_DAYS: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    "due_date": pl.Date(),
    "required_minor": pl.Int64(),  # what must be paid for that due date (a card: the minimum)
    "posted_on": pl.Date(),  # a card statement's posting date; null for a loan's instalment
}
PAID_DAYS: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    "paid_on": pl.Date(),
    "amount_minor": pl.Int64(),
}
NOTICES: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    "planned_on": pl.Date(),
    "given_on": pl.Date(),  # the local day it was sent, else the day it is scheduled for
}

_ONE_DAY = pl.duration(days=1)
_BASE_COLUMNS = ("account_id", "stage", "customer_id", "product_code", "timezone", "jurisdiction")


def statutory_parts(app: App, as_of: dt.date, previous: dt.date | None, deepest: int) -> list[pl.DataFrame]:
    """The notices the law requires on ``as_of`` (see the module docstring), as rows shaped like
    ``contacts._pre_due_parts``'s (``PARTS``); ``previous``: the previous run's day. ``deepest`` (the
    longest ladder) is not needed: statutory notices rank ahead of every stage."""
    del deepest
    config = app.config
    kinds = {code: product.kind for code, product in config.terms.products.items()}
    loans = sorted(code for code, kind in kinds.items() if kind == LOAN)
    cards = sorted(code for code, kind in kinds.items() if kind == CARD)
    third_party = sorted(set(config.governor.third_party_products))
    strategy_kinds = {action.kind for action in config.actions}

    sources: dict[str, Select[Any]] = {}
    if loans or cards:
        uk = _uk_in_arrears(as_of, loans + cards)
        sources |= _uk_sources(uk, as_of, loans)
        if NOSIA_KIND in strategy_kinds:
            sources["uk_entered"] = _entered(uk.subquery(), as_of)
    if third_party:
        us = _us_without_notice(as_of, third_party)
        sources |= _us_sources(us, as_of)
        if VALIDATION_KIND in strategy_kinds:
            sources["us_entered"] = _entered(us.subquery(), as_of)
    if not sources:
        return []
    read = read_frames(app.engine, sources, bulk=many_accounts(app.engine))

    parts: list[pl.DataFrame] = []
    if "uk" in read and read["uk"].height:
        parts.append(_nosia_part(app, read, as_of, previous, set(loans), set(cards)))
    if "us" in read and read["us"].height:
        parts.append(_validation_part(app, read, as_of, previous))
    return [part for part in parts if part.height]


# ---------------------------------------------------------------------------------------------- UK
def _nosia_part(
    app: App,
    read: dict[str, pl.DataFrame],
    as_of: dt.date,
    previous: dt.date | None,
    loans: set[str],
    cards: set[str],
) -> pl.DataFrame:
    base = read["uk"].with_columns(digits=_digits("currency"))
    judged = judged_on(read["uk_judgments"], base.select("account_id", "customer_id"), as_of)
    notices = read["uk_notices"].with_columns(
        given_on=_local_days(
            read["uk_notices"].select("timezone", at=pl.coalesce("sent_at", "scheduled_at")), "at"
        )
    )
    due_days = read["uk_dues"].select(list(DUE_DAYS))
    loan_rows = base.filter(pl.col("product_code").is_in(sorted(loans)))
    card_rows = base.filter(pl.col("product_code").is_in(sorted(cards)))

    arrears = loan_arrears(
        due_days.join(loan_rows.select("account_id"), on="account_id", how="semi"),
        read["uk_paid"].select(list(PAID_DAYS)),
        as_of,
    ).join(loan_rows.select("account_id", "digits"), on="account_id")
    wanted = [
        loan_notices(arrears, notices.select(list(NOTICES)), as_of, judged),
        card_notices(
            card_rows.filter(pl.col("oldest_unpaid_due_date").is_not_null()).select(
                "account_id", oldest="oldest_unpaid_due_date"
            ),
            due_days.join(card_rows.select("account_id"), on="account_id", how="semi"),
            notices.select(list(NOTICES)),
            as_of,
            judged,
        ),
    ]
    why = pl.concat([frame.select("account_id", "why") for frame in wanted])
    if why.is_empty():
        return pl.DataFrame(schema=PARTS)
    if "uk_entered" in read:
        taken = _strategy_plans(app, base, read["uk_entered"], as_of, previous, NOSIA_KIND)
        why = why.filter(~pl.col("account_id").is_in(taken.implode()))
    return shaped(base.join(why, on="account_id"), as_of, NOSIA_ACTION, NOSIA_KIND, NOSIA_PRIORITY)


def _uk_in_arrears(as_of: dt.date, products: Sequence[str]) -> Select[Any]:
    """Today's UK accounts with anything past due (the loans' and cards' products)."""
    return _accounts_today(as_of).where(
        and_(
            customers.c.jurisdiction == "UK",
            accounts.c.product_code.in_(products),
            snapshots.c.amount_past_due_minor > 0,
        )
    )


def _accounts_today(as_of: dt.date) -> Select[Any]:
    return (
        select(
            snapshots.c.account_id,
            snapshots.c.stage,
            accounts.c.customer_id,
            accounts.c.product_code,
            customers.c.timezone,
            customers.c.jurisdiction,
            snapshots.c.currency,
            snapshots.c.oldest_unpaid_due_date,
        )
        .join(accounts, accounts.c.account_id == snapshots.c.account_id)
        .join(customers, customers.c.customer_id == accounts.c.customer_id)
        .where(snapshots.c.as_of == as_of)
    )


def _uk_sources(uk: Select[Any], as_of: dt.date, loans: Sequence[str]) -> dict[str, Select[Any]]:
    """The UK accounts, their dues by due date, the loans' payments by day, their notices so far."""
    base = uk.subquery()
    # a sum of BIGINT is NUMERIC on PostgreSQL: cast back to minor units
    required = cast(func.sum(func.coalesce(dues.c.minimum_minor, dues.c.amount_minor)), BigInteger)
    paid = cast(func.sum(payments.c.amount_minor), BigInteger)
    return {
        "uk": uk,
        "uk_dues": select(
            dues.c.account_id,
            dues.c.due_date,
            required.label("required_minor"),
            func.min(dues.c.posted_on).label("posted_on"),
        )
        .join(base, base.c.account_id == dues.c.account_id)
        .group_by(dues.c.account_id, dues.c.due_date),
        "uk_paid": select(payments.c.account_id, payments.c.paid_on, paid.label("amount_minor"))
        .join(base, base.c.account_id == payments.c.account_id)
        .where(and_(payments.c.paid_on <= as_of, base.c.product_code.in_(loans)))
        .group_by(payments.c.account_id, payments.c.paid_on),
        "uk_notices": _notices(base, NOSIA_KIND, NOSIA_ACTION, as_of),
        "uk_judgments": select(
            holds.c.scope,
            holds.c.customer_id,
            holds.c.account_id,
            holds.c.kind,
            holds.c.starts_on,
            holds.c.ends_on,
        ).where(
            and_(
                holds.c.kind == JUDGMENT,
                holds.c.starts_on <= as_of,
                holds.c.customer_id.in_(select(base.c.customer_id)),
            )
        ),
    }


def judged_on(judgments: pl.DataFrame, accounts_: pl.DataFrame, as_of: dt.date) -> pl.DataFrame:
    """``account_id, judged_on``: the day judgment was given on each of ``accounts_`` (``account_id,
    customer_id``) that has a ``judgment`` hold in force on ``as_of`` (``judgments``: holds with ``scope,
    customer_id, account_id, kind, starts_on, ends_on``, of any kind; of the account, or of its customer);
    the earliest when several. A judgment hold that has ended (the judgment paid) is none."""
    in_force = judgments.filter(
        (pl.col("kind") == JUDGMENT)
        & (pl.col("starts_on") <= as_of)
        & (pl.col("ends_on").is_null() | (pl.col("ends_on") >= as_of))
    )
    on_account = in_force.filter(pl.col("scope") == "account").select("account_id", "starts_on")
    on_customer = (
        in_force.filter(pl.col("scope") == "customer")
        .select("customer_id", "starts_on")
        .join(accounts_.select("account_id", "customer_id"), on="customer_id")
        .select("account_id", "starts_on")
    )
    return (
        pl.concat([on_account, on_customer])
        .join(accounts_.select("account_id"), on="account_id", how="semi")
        .group_by("account_id")
        .agg(judged_on=pl.col("starts_on").min())
        .cast({"account_id": pl.String(), "judged_on": pl.Date()})
    )


NO_JUDGMENTS = pl.DataFrame(schema={"account_id": pl.String(), "judged_on": pl.Date()})


def _notices(base: Any, kind: str, action: str, as_of: dt.date) -> Select[Any]:
    """The outbox's notices of ``kind`` to ``base``'s accounts planned by ``as_of`` that were given or may
    still be. The one this module planned on ``as_of`` itself under the key it plans now (the same stage)
    is not an earlier notice: a re-run of the day plans it again and adds nothing; one planned that day
    in another stage (the data changed before the re-run) is, so the key's new stage adds no second."""
    return (
        select(
            outbox.c.account_id,
            outbox.c.planned_on,
            outbox.c.scheduled_at,
            outbox.c.sent_at,
            base.c.timezone,
        )
        .join(base, base.c.account_id == outbox.c.account_id)
        .where(
            and_(
                outbox.c.kind == kind,
                outbox.c.state.not_in(NOT_GIVEN),
                outbox.c.planned_on <= as_of,
                not_(
                    and_(
                        outbox.c.action == action,
                        outbox.c.planned_on == as_of,
                        outbox.c.stage == base.c.stage,
                    )
                ),
            )
        )
    )


def loan_arrears(due_days: pl.DataFrame, paid_days: pl.DataFrame, as_of: dt.date) -> pl.DataFrame:
    """The fixed-sum accounts in arrears at the end of ``as_of`` and the s86B trigger of their episode.

    ``due_days`` (``DUE_DAYS``): one row per account and due date, every due date of the agreement (the
    later ones tell the schedule); ``paid_days`` (``PAID_DAYS``): what was paid each day, up to ``as_of``.

    Payments go to the instalments in order (``domain/delinquency.py``: a loan's instalments take money in
    the order it arrives; charges never take it from a past-due part), so at the end of day X the
    instalments past due are ``due before X − paid by X`` and the s86B shortfall is ``due on or before X −
    paid by X``. Both change only on a due date, the day after one and a payment day: one time line per
    account of those days, with running sums (whole columns, accounts numbered once). Columns:
    ``account_id``, ``payments`` (the 2 or 4 of s86B(1)(c)), ``since`` (the episode's first day),
    ``trigger`` (its first day the trigger was met; null: not yet), and on that day ``missed`` (due dates
    not fully paid), ``shortfall_minor`` and ``last_minor`` (the sum of the last ``payments``)."""
    ids = due_days.select("account_id").unique().sort("account_id").with_row_index("_a")
    dues_ = (
        due_days.join(ids, on="account_id").select("_a", "due_date", "required_minor").sort("_a", "due_date")
    )
    r = pl.col("required_minor")

    def earlier(n: int) -> pl.Expr:  # the n-th due date before, of the same account (else null)
        return pl.when(pl.col("_a") == pl.col("_a").shift(n)).then(r.shift(n))

    dues_ = dues_.with_columns(
        gap=pl.when(pl.col("_a") == pl.col("_a").shift(1)).then(
            (pl.col("due_date") - pl.col("due_date").shift(1)).dt.total_days()
        ),
        last2=r + earlier(1),
        last4=r + earlier(1) + earlier(2) + earlier(3),
    )
    schedule = dues_.group_by("_a").agg(
        payments=pl.when(pl.col("gap").median() <= WEEKLY_GAP_DAYS)
        .then(pl.lit(4, pl.Int32()))
        .otherwise(pl.lit(2, pl.Int32()))
    )
    due = (
        dues_.filter(pl.col("due_date") <= as_of)
        .join(schedule, on="_a", maintain_order="left")
        .with_columns(last=pl.when(pl.col("payments") == 4).then("last4").otherwise("last2"))
    )
    known = due.select("_a").unique()
    paid = paid_days.filter(pl.col("paid_on") <= as_of).join(ids, on="account_id")
    zero, none = pl.lit(0, pl.Int64()), pl.lit(None, pl.Int64())
    events = (
        pl.concat(
            [
                due.lazy().select(
                    "_a",
                    day="due_date",
                    due=r,
                    count=pl.lit(1, pl.Int64()),
                    before=zero,
                    paid=zero,
                    last="last",
                ),
                due.lazy().select(
                    "_a",
                    day=pl.col("due_date") + _ONE_DAY,
                    due=zero,
                    count=zero,
                    before=r,
                    paid=zero,
                    last=none,
                ),
                paid.lazy().select(
                    "_a", day="paid_on", due=zero, count=zero, before=zero, paid="amount_minor", last=none
                ),
                known.lazy().select(
                    "_a", day=pl.lit(as_of), due=zero, count=zero, before=zero, paid=zero, last=none
                ),
            ]
        )
        .filter(pl.col("day") <= as_of)
        .join(known.lazy(), on="_a", how="semi")
        .sort("_a", "day")
    )
    first = (pl.col("_a") != pl.col("_a").shift(1)).fill_null(True)
    end_of_day = (
        (pl.col("_a") != pl.col("_a").shift(-1)) | (pl.col("day") != pl.col("day").shift(-1))
    ).fill_null(True)

    def running(name: str) -> pl.Expr:  # the sum so far within the account (the rows are in its order)
        total = pl.col(name).cum_sum()
        return total - pl.when(first).then(total - pl.col(name)).forward_fill()

    shortfall = pl.col("cum_due") - pl.col("cum_paid")
    state = (
        events.select(
            "_a",
            "day",
            n=running("count"),
            cum_due=running("due"),
            cum_before=running("before"),
            cum_paid=running("paid"),
            last=pl.col("last").forward_fill(),  # another account's only where n is 0, and then unused
            end=end_of_day,
        )
        .filter(pl.col("end"))
        .join(schedule.lazy(), on="_a")
        .select(
            "_a",
            "day",
            "cum_paid",
            "last",
            arrears=pl.col("cum_before") > pl.col("cum_paid"),
            shortfall_minor=shortfall,
            met=(
                (pl.col("n") >= pl.col("payments")) & (shortfall >= pl.col("last")) & (shortfall > 0)
            ).fill_null(False),
        )
        .collect()
    )
    cleared = state.filter(~pl.col("arrears")).group_by("_a").agg(cleared=pl.col("day").max())
    episode = state.join(cleared, on="_a", how="left").filter(
        pl.col("arrears") & (pl.col("cleared").is_null() | (pl.col("day") > pl.col("cleared")))
    )
    since = episode.group_by("_a").agg(since=pl.col("day").min())
    triggered = (
        episode.filter(pl.col("met"))
        .group_by("_a")
        .agg(
            pl.col("shortfall_minor", "cum_paid", "last").sort_by("day").first(),
            trigger=pl.col("day").min(),
        )
        .rename({"last": "last_minor"})
    )
    missed = (
        due.with_columns(cum_due=running("required_minor"))
        .join(triggered.select("_a", "trigger", "cum_paid"), on="_a")
        .filter((pl.col("due_date") <= pl.col("trigger")) & (pl.col("cum_due") > pl.col("cum_paid")))
        .group_by("_a")
        .agg(missed=pl.len().cast(pl.Int32()))
    )
    return (
        since.join(schedule, on="_a")
        .join(triggered.drop("cum_paid"), on="_a", how="left")
        .join(missed, on="_a", how="left")
        .join(ids, on="_a")
        .select("account_id", "payments", "since", "trigger", "missed", "shortfall_minor", "last_minor")
        .sort("account_id")
    )


def loan_notices(
    arrears: pl.DataFrame, notices: pl.DataFrame, as_of: dt.date, judged: pl.DataFrame = NO_JUDGMENTS
) -> pl.DataFrame:
    """The s86B notice due to plan on ``as_of`` for each of ``arrears`` (``loan_arrears``'s rows with the
    currency's minor ``digits``), given the notices so far (``NOTICES``): the first of the episode when
    none was given since its trigger day, else the next one once the six months since the last are within
    ``FURTHER_NOTICE_MARGIN_DAYS``; ``judged`` (``judged_on``): no duty for a trigger after a judgment
    (s86B(1)(e)), and no further notice once judgment is given, the first still (s86B(3), (4)(b)).
    Columns: ``account_id``, ``notice`` (first, further), ``due_by``, ``why``."""
    triggered = (
        arrears.filter(pl.col("trigger").is_not_null())
        .join(judged, on="account_id", how="left")
        .filter(pl.col("judged_on").is_null() | (pl.col("judged_on") >= pl.col("trigger")))
    )
    last = (
        notices.join(triggered.select("account_id", "trigger"), on="account_id")
        .filter(pl.col("planned_on") >= pl.col("trigger"))
        .group_by("account_id")
        .agg(last_given=pl.col("given_on").max())
    )
    rows = triggered.join(last, on="account_id", how="left")
    late = (
        pl.when(pl.lit(as_of) > pl.col("due_by")).then(pl.lit(": late, planned today")).otherwise(pl.lit(""))
    )
    weekly = (
        pl.when(pl.col("payments") == 4).then(pl.lit(" (the last 4 weekly payments)")).otherwise(pl.lit(""))
    )
    first = (
        rows.filter(pl.col("last_given").is_null())
        .with_columns(
            notice=pl.lit("first"),
            due_by=pl.col("trigger") + pl.duration(days=FIRST_NOTICE_DAYS - 1),
        )
        .with_columns(
            why=pl.format(
                "UK-NOSIA-01 (CCA 1974) s86B: {} payments missed, shortfall {} ≥ {}{} since {}; "
                "the first notice is due by {}{}",
                "missed",
                _shown("shortfall_minor"),
                _shown("last_minor"),
                weekly,
                "trigger",
                "due_by",
                late,
            )
        )
    )
    further = (
        rows.filter(pl.col("last_given").is_not_null() & pl.col("judged_on").is_null())
        .with_columns(
            notice=pl.lit("further"),
            due_by=pl.col("last_given").dt.offset_by(f"{FURTHER_NOTICE_MONTHS}mo"),
        )
        .filter(pl.lit(as_of) >= pl.col("due_by") - pl.duration(days=FURTHER_NOTICE_MARGIN_DAYS))
        .with_columns(
            why=pl.format(
                "UK-NOSIA-01 (CCA 1974) s86B(2)(b): in arrears since {} (trigger {}); the last notice "
                "went on {}, the next is due by {}{} (planned {} days ahead)",
                "since",
                "trigger",
                "last_given",
                "due_by",
                late,
                pl.lit(FURTHER_NOTICE_MARGIN_DAYS),
            )
        )
    )
    return pl.concat([first, further]).select("account_id", "notice", "due_by", "why").sort("account_id")


def card_notices(
    cards: pl.DataFrame,
    due_days: pl.DataFrame,
    notices: pl.DataFrame,
    as_of: dt.date,
    judged: pl.DataFrame = NO_JUDGMENTS,
) -> pl.DataFrame:
    """The s86C notice due to plan on ``as_of`` for each card of ``cards`` (``account_id``, ``oldest``: the
    oldest due date whose minimum is unpaid today, from the day's snapshot).

    The minimums are paid oldest first, so the unpaid ones are the due dates from ``oldest`` to the day
    before ``as_of`` (those with a minimum to pay); the episode is at least as old as ``oldest``. A notice
    given on day P answers for the payments due before P; a new one is due once two payments due on or
    after the last notice (or, with no notice since ``oldest``, any two) are unpaid (s86C(1)(c)): its
    trigger is the day after the second of them fell due. Notices given before ``oldest`` are left out:
    every unpaid due date is on or after them, so they change nothing. ``due_days`` (``DUE_DAYS``) gives
    the due dates and the statements' posting days; ``notices`` (``NOTICES``) the notices so far.
    ``judged`` (``judged_on``): no notice for a trigger after a judgment with sums still to pay under it
    (s86C(1)(d)). Columns: ``account_id``, ``trigger``, ``due_by``, ``why``."""
    schema = {"account_id": pl.String(), "trigger": pl.Date(), "due_by": pl.Date(), "why": pl.String()}
    if cards.is_empty():
        return pl.DataFrame(schema=schema)
    unpaid = due_days.join(cards, on="account_id").filter(
        (pl.col("due_date") >= pl.col("oldest"))
        & (pl.col("due_date") < as_of)
        & (pl.col("required_minor") > 0)
    )
    answered = (
        notices.join(cards, on="account_id")
        .filter(pl.col("planned_on") > pl.col("oldest"))
        .group_by("account_id")
        .agg(answered=pl.col("planned_on").max())
    )
    pairs = (
        unpaid.join(answered, on="account_id", how="left")
        .filter(pl.col("answered").is_null() | (pl.col("due_date") >= pl.col("answered")))
        .sort("account_id", "due_date")
        .group_by("account_id", maintain_order=True)
        .agg(
            count=pl.len(),
            first_due=pl.col("due_date").first(),
            second_due=pl.col("due_date").get(1, null_on_oob=True),
        )
        .filter(pl.col("count") >= 2)
        .with_columns(trigger=pl.col("second_due") + _ONE_DAY)
    )
    following = (
        due_days.join(pairs.select("account_id", "trigger"), on="account_id")
        .filter(pl.col("posted_on") > pl.col("trigger"))
        .group_by("account_id")
        .agg(statement=pl.col("posted_on").min())
    )
    fallback = pl.col("trigger") + pl.duration(days=CARD_STATEMENT_DAYS)
    rows = (
        pairs.join(following, on="account_id", how="left")
        .join(judged, on="account_id", how="left")
        .filter(pl.col("judged_on").is_null() | (pl.col("judged_on") >= pl.col("trigger")))
        .with_columns(due_by=pl.min_horizontal("statement", fallback))
        .with_columns(
            basis=pl.when(pl.col("statement") == pl.col("due_by"))
            .then(pl.lit("the next statement"))
            .when(pl.col("statement").is_null())
            .then(pl.lit(f"{CARD_STATEMENT_DAYS} days: the next statement is not known yet"))
            .otherwise(pl.lit(f"{CARD_STATEMENT_DAYS} days, before the next statement")),
            late=pl.when(pl.lit(as_of) > pl.col("due_by"))
            .then(pl.lit(": late, planned today"))
            .otherwise(pl.lit("")),
        )
    )
    return rows.select(
        "account_id",
        "trigger",
        "due_by",
        why=pl.format(
            "UK-NOSIA-02 (CCA 1974) s86C: the last 2 payments (due {} and {}) missed since {}; "
            "the notice is due by {} ({}){}",
            "first_due",
            "second_due",
            "trigger",
            "due_by",
            "basis",
            "late",
        ),
    ).sort("account_id")


# ---------------------------------------------------------------------------------------------- US
def _validation_part(
    app: App, read: dict[str, pl.DataFrame], as_of: dt.date, previous: dt.date | None
) -> pl.DataFrame:
    base = read["us"]
    first = read["us_first"].join(base.select("account_id", "timezone"), on="account_id")
    first = first.select("account_id", first_on=_local_days(first, "first_at"))
    why = validation_notices(first, as_of).select("account_id", "why")
    if why.is_empty():
        return pl.DataFrame(schema=PARTS)
    if "us_entered" in read:
        taken = _strategy_plans(app, base, read["us_entered"], as_of, previous, VALIDATION_KIND)
        why = why.filter(~pl.col("account_id").is_in(taken.implode()))
    return shaped(
        base.join(why, on="account_id"), as_of, VALIDATION_ACTION, VALIDATION_KIND, VALIDATION_PRIORITY
    )


def _us_without_notice(as_of: dt.date, products: Sequence[str]) -> Select[Any]:
    """Today's US accounts of third-party products with no validation notice given or to be given."""
    given = outbox.alias("given")
    notice = (
        select(given.c.id)
        .where(
            and_(
                given.c.account_id == snapshots.c.account_id,
                given.c.kind == VALIDATION_KIND,
                given.c.state.not_in(NOT_GIVEN),
                given.c.planned_on <= as_of,
                not_(
                    and_(
                        given.c.action == VALIDATION_ACTION,
                        given.c.planned_on == as_of,
                        given.c.stage == snapshots.c.stage,
                    )
                ),
            )
        )
        .exists()
    )
    return _accounts_today(as_of).where(
        and_(customers.c.jurisdiction == "US", accounts.c.product_code.in_(products), ~notice)
    )


def _us_sources(us: Select[Any], as_of: dt.date) -> dict[str, Select[Any]]:
    """The accounts and the instant of their first communication planned before ``as_of``."""
    base = us.subquery()
    first = func.min(func.coalesce(outbox.c.sent_at, outbox.c.scheduled_at))
    return {
        "us": us,
        "us_first": select(outbox.c.account_id, first.label("first_at"))
        .join(base, base.c.account_id == outbox.c.account_id)
        .where(
            and_(
                outbox.c.kind != VALIDATION_KIND,
                outbox.c.state.not_in(NOT_COMMUNICATED),
                outbox.c.planned_on < as_of,
                # a location request to a third party is no communication with the consumer
                outbox.c.contact_id == "",
            )
        )
        .group_by(outbox.c.account_id),
    }


def validation_notices(first: pl.DataFrame, as_of: dt.date) -> pl.DataFrame:
    """The validation notice of each account of ``first`` (``account_id``, ``first_on``: the local day of
    its first communication): due ``VALIDATION_BUSINESS_DAYS`` business days after it on the US calendar
    (weekends and 5 U.S.C. 6103(a) holidays excluded; the day itself not counted). Columns: ``account_id``,
    ``due_by``, ``why``."""
    calendar = calendar_for(VALIDATION_CALENDAR)
    days = first.get_column("first_on").unique().drop_nulls().to_list()
    due = {day: calendar.add_business_days(day, VALIDATION_BUSINESS_DAYS) for day in days}
    rows = first.filter(pl.col("first_on").is_not_null()).with_columns(
        due_by=pl.col("first_on").replace_strict(due, return_dtype=pl.Date())
    )
    late = (
        pl.when(pl.lit(as_of) > pl.col("due_by")).then(pl.lit(": late, planned today")).otherwise(pl.lit(""))
    )
    return rows.select(
        "account_id",
        "due_by",
        why=pl.format(
            "US-VAL-01 (12 CFR 1006.34(a)(1)): first communication on {}; the validation notice is due "
            "by {} ({} days after it, weekends and federal legal holidays excluded){}",
            "first_on",
            "due_by",
            pl.lit(VALIDATION_BUSINESS_DAYS),
            late,
        ),
    ).sort("account_id")


# ---------------------------------------------------------------------------------------------- common
def _entered(base: Any, as_of: dt.date) -> Select[Any]:
    """The day each of ``base``'s accounts entered its stage (as ``contacts.candidates`` reads it)."""
    return (
        select(stage_history.c.account_id, func.max(stage_history.c.entered_on).label("entered_on"))
        .join(base, base.c.account_id == stage_history.c.account_id)
        .where(stage_history.c.entered_on <= as_of)
        .group_by(stage_history.c.account_id)
    )


def _strategy_plans(
    app: App,
    base: pl.DataFrame,
    entered: pl.DataFrame,
    as_of: dt.date,
    previous: dt.date | None,
    kind: str,
) -> pl.Series:
    """The accounts of ``base`` for which the strategy's own actions of ``kind`` fall on ``as_of`` (and
    no experiment's holdout stops them): the same rule ``contacts.candidates`` applies to them."""
    from duecourse.services import contacts

    config = app.config
    mine = dataclasses.replace(config, actions=tuple(a for a in config.actions if a.kind == kind), pre_due=())
    rows = base.select(*_BASE_COLUMNS).join(entered, on="account_id")
    if rows.is_empty():
        return pl.Series("account_id", [], pl.String())
    rows = contacts.with_resumed(rows, contacts._ended_holds(app, as_of, previous), as_of, previous)
    arms = contacts.arms_for(app, as_of, rows.get_column("account_id"))
    found = contacts.plan_frame(mine, rows, as_of, previous, arms=arms)
    return found.filter(pl.col("holdout").is_null()).get_column("account_id").unique()


def shaped(rows: pl.DataFrame, as_of: dt.date, action: str, kind: str, priority: int) -> pl.DataFrame:
    """``rows`` (the base columns and ``why``) as ``PARTS``: a letter on ``as_of``, at the start of the
    contact hours, outside any experiment."""
    return (
        rows.with_columns(
            planned_on=pl.lit(as_of, pl.Date()),
            entered_on=pl.lit(None, pl.Date()),
            holdout=pl.lit(None, pl.String()),
            action=pl.lit(action),
            channel=pl.lit(CHANNEL),
            kind=pl.lit(kind),
            at=pl.lit(None, pl.String()),
            priority=pl.lit(priority, pl.Int32()),
            fallback=pl.lit([], pl.List(pl.String())),
        )
        .select(list(PARTS))
        .cast(pl.Schema(PARTS))
        .sort("account_id")
    )


def _digits(currency: str) -> pl.Expr:
    """The currency's minor digits."""
    digits = {code: spec.minor_digits for code, spec in CURRENCIES.items()}
    return pl.col(currency).replace_strict(digits, default=2, return_dtype=pl.Int32())


def _shown(minor: str) -> pl.Expr:
    """An amount in minor units as text with the row's ``digits`` (40000, 2 → 400.00)."""
    column = pl.col(minor)
    shown = column.cast(pl.String())
    for digits in sorted({spec.minor_digits for spec in CURRENCIES.values()} - {0}):
        scale = 10**digits
        text = pl.format("{}.{}", column // scale, (column % scale).cast(pl.String()).str.zfill(digits))
        shown = pl.when(pl.col("digits") == digits).then(text).otherwise(shown)
    return shown


def _local_days(frame: pl.DataFrame, column: str) -> pl.Series:
    """``column`` (UTC instants) as the day it is in each row's ``timezone``; converted once per zone."""
    numbered = frame.select(pl.int_range(pl.len()).alias("_row"), column, "timezone")
    parts = [
        group.select("_row", pl.col(column).dt.convert_time_zone(str(zone)).dt.date().alias(column))
        for (zone,), group in numbered.group_by("timezone")
    ]
    if not parts:
        return pl.Series(column, [], pl.Date())
    return pl.concat(parts).sort("_row").get_column(column)
