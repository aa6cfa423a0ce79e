"""The statutory planner's rules over columns (``services/statutory.py``): the s86B trigger and episode of a
fixed-sum agreement (E-UK-1), its first and further notices, the s86C pairs of a card, and the validation
notice's 5-business-day deadline (US-VAL-01)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from duecourse.services.statutory import (
    DUE_DAYS,
    NOTICES,
    PAID_DAYS,
    card_notices,
    judged_on,
    loan_arrears,
    loan_notices,
    validation_notices,
)

D = dt.date


def _dues(
    account: str, first: dt.date, count: int, minor: int, *, weekly: bool = False
) -> list[dict[str, object]]:
    rows = []
    for n in range(count):
        if weekly:
            day = first + dt.timedelta(days=7 * n)
        else:
            month = first.month - 1 + n
            day = D(first.year + month // 12, month % 12 + 1, first.day)
        rows.append({"account_id": account, "due_date": day, "required_minor": minor, "posted_on": None})
    return rows


def _frame(rows: list[dict[str, object]], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema)


def _paid(*rows: tuple[str, dt.date, int]) -> pl.DataFrame:
    return _frame([{"account_id": a, "paid_on": d, "amount_minor": m} for a, d, m in rows], PAID_DAYS)


# E-UK-1: £200 due on the 1st of each month; January paid, February and March missed.
E_UK_1 = _frame(_dues("L1", D(2025, 1, 1), 12, 20_000), DUE_DAYS)
JANUARY = _paid(("L1", D(2025, 1, 1), 20_000))


def _one(frame: pl.DataFrame) -> dict[str, object]:
    assert frame.height == 1, frame
    return frame.row(0, named=True)


def test_e_uk_1_the_trigger_is_met_on_the_day_the_second_payment_is_missed() -> None:
    before = _one(loan_arrears(E_UK_1, JANUARY, D(2025, 2, 20)))
    assert before["since"] == D(2025, 2, 2)  # February's payment is past due from the 2nd
    assert before["trigger"] is None  # one payment missed: shortfall 200 < 400
    on = _one(loan_arrears(E_UK_1, JANUARY, D(2025, 3, 1)))
    assert (on["payments"], on["since"], on["trigger"]) == (2, D(2025, 2, 2), D(2025, 3, 1))
    assert (on["missed"], on["shortfall_minor"], on["last_minor"]) == (2, 40_000, 40_000)
    # a later day of the same episode keeps the day the trigger was first met
    later = _one(loan_arrears(E_UK_1, JANUARY, D(2025, 4, 15)))
    assert (later["since"], later["trigger"]) == (D(2025, 2, 2), D(2025, 3, 1))


def test_a_payment_on_the_due_day_counts_that_day() -> None:
    # £200 paid on 03-01 pays February (oldest first): on 03-01 nothing due before it is unpaid, and
    # the shortfall counting March's payment is 200 < 400
    paid = _paid(("L1", D(2025, 1, 1), 20_000), ("L1", D(2025, 3, 1), 20_000))
    assert loan_arrears(E_UK_1, paid, D(2025, 3, 1)).is_empty()
    row = _one(loan_arrears(E_UK_1, paid, D(2025, 3, 2)))
    assert (row["since"], row["trigger"]) == (D(2025, 3, 2), None)


def test_an_account_not_in_arrears_is_not_listed() -> None:
    paid = _paid(*[("L1", D(2025, m, 1), 20_000) for m in (1, 2, 3)])
    assert loan_arrears(E_UK_1, paid, D(2025, 3, 20)).is_empty()


def test_paying_up_ends_the_episode_and_the_next_one_starts_over() -> None:
    # Feb and Mar missed (trigger 03-01), all paid on 03-10 with April in advance; May and June missed
    paid = _paid(("L1", D(2025, 1, 1), 20_000), ("L1", D(2025, 3, 10), 60_000))
    row = _one(loan_arrears(E_UK_1, paid, D(2025, 5, 20)))
    assert (row["since"], row["trigger"]) == (D(2025, 5, 2), None)
    row = _one(loan_arrears(E_UK_1, paid, D(2025, 6, 1)))
    assert (row["since"], row["trigger"], row["missed"]) == (D(2025, 5, 2), D(2025, 6, 1), 2)


def test_weekly_payments_need_four() -> None:
    weekly = _frame(_dues("W1", D(2025, 2, 1), 20, 5_000, weekly=True), DUE_DAYS)
    paid = _paid(("W1", D(2025, 2, 1), 5_000))
    # 02-08, 02-15 and 02-22 missed: the shortfall is two payments and more, but weekly needs four
    assert _one(loan_arrears(weekly, paid, D(2025, 2, 28)))["trigger"] is None
    row = _one(loan_arrears(weekly, paid, D(2025, 3, 1)))
    assert (row["payments"], row["trigger"], row["missed"]) == (4, D(2025, 3, 1), 4)
    assert (row["shortfall_minor"], row["last_minor"]) == (20_000, 20_000)


def test_a_shortfall_less_than_the_last_two_payments_is_no_trigger() -> None:
    # Feb and Mar each part-paid: 2 payments short, but the shortfall (300) is less than 400
    paid = _paid(("L1", D(2025, 1, 1), 20_000), ("L1", D(2025, 2, 1), 5_000), ("L1", D(2025, 3, 1), 5_000))
    assert _one(loan_arrears(E_UK_1, paid, D(2025, 3, 20)))["trigger"] is None


def _notices(*rows: tuple[str, dt.date, dt.date]) -> pl.DataFrame:
    return _frame([{"account_id": a, "planned_on": p, "given_on": g} for a, p, g in rows], NOTICES)


def _loan_notice(as_of: dt.date, notices: pl.DataFrame, paid: pl.DataFrame = JANUARY) -> pl.DataFrame:
    arrears = loan_arrears(E_UK_1, paid, as_of).with_columns(digits=pl.lit(2, pl.Int32()))
    return loan_notices(arrears, notices, as_of)


NONE = _notices()


def test_the_first_notice_is_due_within_14_days_beginning_with_the_trigger_day() -> None:
    row = _one(_loan_notice(D(2025, 3, 1), NONE))
    assert (row["notice"], row["due_by"]) == ("first", D(2025, 3, 14))
    assert row["why"] == (
        "UK-NOSIA-01 (CCA 1974) s86B: 2 payments missed, shortfall 400.00 ≥ 400.00 since 2025-03-01; "
        "the first notice is due by 2025-03-14"
    )
    assert _loan_notice(D(2025, 2, 20), NONE).is_empty()


def test_a_first_notice_seen_after_its_deadline_is_planned_saying_it_is_late() -> None:
    row = _one(_loan_notice(D(2025, 4, 2), NONE))
    assert row["due_by"] == D(2025, 3, 14)
    assert row["why"].endswith("the first notice is due by 2025-03-14: late, planned today")


def test_further_notices_come_every_six_months_planned_14_days_ahead() -> None:
    given = _notices(("L1", D(2025, 3, 10), D(2025, 3, 10)))  # E-UK-1: first sent 03-10, next by 09-10
    assert _loan_notice(D(2025, 3, 20), given).is_empty()
    assert _loan_notice(D(2025, 8, 26), given).is_empty()
    row = _one(_loan_notice(D(2025, 8, 27), given))
    assert (row["notice"], row["due_by"]) == ("further", D(2025, 9, 10))
    assert "the last notice went on 2025-03-10, the next is due by 2025-09-10" in row["why"]
    # once the next one is in the outbox, nothing more for that period
    both = _notices(("L1", D(2025, 3, 10), D(2025, 3, 10)), ("L1", D(2025, 8, 27), D(2025, 8, 27)))
    assert _loan_notice(D(2025, 8, 28), both).is_empty()
    late = _one(_loan_notice(D(2025, 9, 11), given))
    assert late["why"].endswith("the next is due by 2025-09-10: late, planned today (planned 14 days ahead)")


def test_a_notice_before_the_trigger_or_in_an_earlier_episode_does_not_count() -> None:
    early = _notices(("L1", D(2025, 2, 15), D(2025, 2, 15)))  # the strategy wrote one before the trigger
    assert _one(_loan_notice(D(2025, 3, 1), early))["notice"] == "first"
    paid = _paid(("L1", D(2025, 1, 1), 20_000), ("L1", D(2025, 3, 10), 60_000))
    older = _notices(("L1", D(2025, 3, 1), D(2025, 3, 1)))  # the first episode's
    assert _one(_loan_notice(D(2025, 6, 1), older, paid))["notice"] == "first"


def _judged(account: str, on: dt.date) -> pl.DataFrame:
    return pl.DataFrame({"account_id": [account], "judged_on": [on]})


def _judged_loan(as_of: dt.date, notices: pl.DataFrame, judged: pl.DataFrame) -> pl.DataFrame:
    arrears = loan_arrears(E_UK_1, JANUARY, as_of).with_columns(digits=pl.lit(2, pl.Int32()))
    return loan_notices(arrears, notices, as_of, judged)


def test_a_trigger_after_a_judgment_starts_no_duty() -> None:
    """s86B(1)(e): the conditions include no sum still to pay under a judgment given before."""
    assert _judged_loan(D(2025, 3, 1), NONE, _judged("L1", D(2025, 2, 28))).is_empty()
    assert _judged_loan(D(2025, 4, 2), NONE, _judged("L1", D(2025, 2, 28))).is_empty()


def test_a_judgment_after_the_trigger_still_wants_the_first_notice_but_no_further_one() -> None:
    """s86B(3): the duty ceases on judgment (4)(b), but not before the first notice is given; a judgment
    on the trigger day itself is taken as after it (a notice too many breaks no rule)."""
    for judged in (D(2025, 3, 1), D(2025, 3, 5)):
        row = _one(_judged_loan(D(2025, 3, 6), NONE, _judged("L1", judged)))
        assert (row["notice"], row["due_by"]) == ("first", D(2025, 3, 14))
    given = _notices(("L1", D(2025, 3, 10), D(2025, 3, 10)))
    assert _one(_loan_notice(D(2025, 8, 27), given))["notice"] == "further"  # without the judgment
    assert _judged_loan(D(2025, 8, 27), given, _judged("L1", D(2025, 5, 1))).is_empty()
    assert _judged_loan(D(2025, 9, 11), given, _judged("L1", D(2025, 5, 1))).is_empty()


def test_judgments_are_the_judgment_holds_in_force_of_the_account_or_its_customer() -> None:
    holds = pl.DataFrame(
        {
            "scope": ["account", "customer", "account", "account", "customer"],
            "customer_id": ["C1", "C2", "C3", "C4", "C5"],
            "account_id": ["A1", None, "A3", "A4", None],
            "kind": ["judgment", "judgment", "judgment", "litigation", "judgment"],
            "starts_on": [D(2025, 3, 1), D(2025, 2, 1), D(2025, 1, 1), D(2025, 1, 1), D(2025, 6, 1)],
            "ends_on": [None, None, D(2025, 2, 1), None, None],
        }
    )
    accounts = pl.DataFrame(
        {
            "account_id": ["A1", "A2a", "A2b", "A3", "A4", "A5"],
            "customer_id": ["C1", "C2", "C2", "C3", "C4", "C5"],
        }
    )
    found = judged_on(holds, accounts, D(2025, 4, 1)).sort("account_id")
    # A3's judgment was paid (its hold ended); A4's hold is a lawsuit; C5's judgment comes later
    assert found.rows() == [("A1", D(2025, 3, 1)), ("A2a", D(2025, 2, 1)), ("A2b", D(2025, 2, 1))]


CARD_DUES = _frame(
    [
        {"account_id": "K1", "due_date": D(2025, m, 28), "required_minor": 2_500, "posted_on": D(2025, m, 3)}
        for m in range(1, 8)
    ],
    DUE_DAYS,
)


def _card(as_of: dt.date, oldest: dt.date, notices: pl.DataFrame = NONE) -> pl.DataFrame:
    cards = pl.DataFrame({"account_id": ["K1"], "oldest": [oldest]})
    return card_notices(cards, CARD_DUES, notices, as_of)


def test_a_card_notice_when_the_last_two_minimum_payments_are_missed() -> None:
    assert _card(D(2025, 2, 28), D(2025, 1, 28)).is_empty()  # one missed
    row = _one(_card(D(2025, 3, 1), D(2025, 1, 28)))
    assert (row["trigger"], row["due_by"]) == (D(2025, 3, 1), D(2025, 3, 3))
    assert row["why"] == (
        "UK-NOSIA-02 (CCA 1974) s86C: the last 2 payments (due 2025-01-28 and 2025-02-28) missed since "
        "2025-03-01; the notice is due by 2025-03-03 (the next statement)"
    )


def test_a_card_notice_answers_for_its_two_payments_only() -> None:
    given = _notices(("K1", D(2025, 3, 1), D(2025, 3, 1)))
    assert _card(D(2025, 3, 29), D(2025, 1, 28), given).is_empty()  # 3 missed, the last pair shares 02-28
    row = _one(_card(D(2025, 4, 29), D(2025, 1, 28), given))  # 03-28 and 04-28: a new pair
    assert (row["trigger"], row["due_by"]) == (D(2025, 4, 29), D(2025, 5, 3))


def test_a_card_trigger_after_a_judgment_wants_no_notice() -> None:
    """s86C(1)(d): no sum payable under a judgment given before the trigger."""
    cards = pl.DataFrame({"account_id": ["K1"], "oldest": [D(2025, 1, 28)]})
    before = card_notices(cards, CARD_DUES, NONE, D(2025, 3, 1), _judged("K1", D(2025, 2, 15)))
    assert before.is_empty()
    after = card_notices(cards, CARD_DUES, NONE, D(2025, 3, 2), _judged("K1", D(2025, 3, 2)))
    assert _one(after)["trigger"] == D(2025, 3, 1)


def test_a_card_without_a_known_next_statement_gets_30_days() -> None:
    dues = CARD_DUES.filter(pl.col("due_date") < D(2025, 3, 1))
    cards = pl.DataFrame({"account_id": ["K1"], "oldest": [D(2025, 1, 28)]})
    row = _one(card_notices(cards, dues, NONE, D(2025, 3, 1)))
    assert row["due_by"] == D(2025, 3, 31)
    assert "(30 days: the next statement is not known yet)" in row["why"]


@pytest.mark.parametrize(
    ("first", "due_by"),
    [
        (D(2025, 7, 2), D(2025, 7, 10)),  # Thu 07-03, (Fri 07-04 Independence Day), Mon..Thu 07-10
        (D(2025, 11, 3), D(2025, 11, 10)),  # E-US-2: mailed Mon 11-03, receipt assumed 11-10
        (D(2025, 12, 19), D(2025, 12, 29)),  # E-US-2: mailed Fri 12-19, receipt assumed 12-29
    ],
)
def test_the_validation_notice_is_due_5_business_days_after_the_first_communication(
    first: dt.date, due_by: dt.date
) -> None:
    row = _one(validation_notices(pl.DataFrame({"account_id": ["A"], "first_on": [first]}), first))
    assert row["due_by"] == due_by
    assert f"first communication on {first}; the validation notice is due by {due_by}" in row["why"]
    late = _one(
        validation_notices(
            pl.DataFrame({"account_id": ["A"], "first_on": [first]}), due_by + dt.timedelta(days=1)
        )
    )
    assert late["why"].endswith(": late, planned today")
