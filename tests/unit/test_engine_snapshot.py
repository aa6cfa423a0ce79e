"""The set-based snapshot engine, checked against the worked examples and the rules of docs/semantics.md."""

from __future__ import annotations

import datetime as dt
import io
import textwrap
from decimal import Decimal
from typing import Any

import polars as pl
import pytest

from duecourse.domain.money import from_minor, to_minor
from duecourse.domain.terms import LateFee, Product, Stage
from duecourse.engine.schema import ACCOUNTS, DUES, PAYMENTS, SNAPSHOTS
from duecourse.engine.snapshot import compute_snapshots
from tests.unit.support import STAGES, card, loan, terms

D = dt.date.fromisoformat


def table(text: str, schema: dict[str, pl.DataType], currency: str = "CNY") -> pl.DataFrame:
    """A frame from CSV text as a user writes it: amounts in yuan (``amount``, ``minimum``), "" for none."""
    raw = pl.read_csv(io.StringIO(textwrap.dedent(text).strip()), infer_schema=False)
    for column in ("amount", "minimum"):
        if column in raw.columns:
            minor = [
                None if v in (None, "") else to_minor(Decimal(v), currency) for v in raw[column].to_list()
            ]
            raw = raw.with_columns(pl.Series(f"{column}_minor", minor, dtype=pl.Int64)).drop(column)
    converted = [
        pl.col(name).replace("", None).str.to_date() if dtype == pl.Date() else pl.col(name).cast(dtype)
        for name, dtype in schema.items()
        if name in raw.columns
    ]
    missing = [
        pl.lit(None, dtype=dtype).alias(name) for name, dtype in schema.items() if name not in raw.columns
    ]
    return raw.with_columns(converted).with_columns(missing).select(list(schema))


def accounts(*rows: tuple[str, str]) -> pl.DataFrame:
    """(account_id, product_code) pairs."""
    data = [(account_id, "C" + account_id, code, D("2024-01-01")) for account_id, code in rows]
    return pl.DataFrame(data, schema=ACCOUNTS, orient="row")


def dues(text: str, currency: str = "CNY") -> pl.DataFrame:
    return table(text, DUES, currency)


def payments(text: str = "payment_id,account_id,paid_on,amount") -> pl.DataFrame:
    return table(text, PAYMENTS)


def snap(
    product: Product, due_text: str, pay_text: str | None, as_of: str, stages: tuple[Stage, ...] = STAGES
) -> dict[str, Any]:
    """The snapshot of account A1 under one product."""
    frame = compute_snapshots(
        accounts(("A1", product.code)),
        dues(due_text),
        payments(pay_text) if pay_text else payments(),
        terms(product, stages=stages),
        D(as_of),
    )
    assert frame.height == 1
    return frame.row(0, named=True)


def yuan(row: dict[str, Any], column: str) -> Decimal:
    return from_minor(row[column], "CNY")


E_CN_1_DUE = """
account_id,due_id,due_date,amount,component,minimum,posted_on
A1,S1,2025-04-23,1000.00,principal,100.00,2025-03-30
"""
E_CN_1_PAYMENT = """
payment_id,account_id,paid_on,amount
P1,A1,2025-04-23,100.00
"""


def test_e_cn_1_full_amount_interest_counts_both_ends_of_each_range() -> None:
    # 1000 × 0.05 % × 24 (03-30..04-22) + 900 × 0.05 % × 13 (04-23..05-05) = 17.85
    row = snap(card(), E_CN_1_DUE, E_CN_1_PAYMENT, "2025-05-05")
    assert yuan(row, "card_interest_minor") == Decimal("17.85")
    assert row["days_past_due"] == 0 and row["stage"] == "current"  # the minimum was paid
    assert yuan(row, "amount_past_due_minor") == 0  # card interest is billed on the next statement
    assert yuan(row, "outstanding_minor") == Decimal("917.85")


def test_e_cn_1_unpaid_portion_mode_charges_only_what_was_left_at_the_due_date() -> None:
    row = snap(card("unpaid_portion"), E_CN_1_DUE, E_CN_1_PAYMENT, "2025-05-05")
    assert yuan(row, "card_interest_minor") == Decimal("16.65")  # 900 × 0.05 % × 37


def test_e_cn_2_ccb_example() -> None:
    # 10000 × 0.05 % × 22 + 2000 × 0.05 % × 12 = 122
    due_text = """
    account_id,due_id,due_date,amount,component,minimum,posted_on
    A1,S1,2025-01-27,10000.00,principal,1000.00,2025-01-05
    """
    pay_text = """
    payment_id,account_id,paid_on,amount
    P1,A1,2025-01-27,8000.00
    """
    row = snap(card(), due_text, pay_text, "2025-02-07")
    assert yuan(row, "card_interest_minor") == Decimal("122.00")


def test_a_statement_paid_in_full_by_its_due_date_bears_no_interest() -> None:
    due_text = """
    account_id,due_id,due_date,amount,component,minimum,posted_on
    A1,S1,2025-01-27,10000.00,principal,1000.00,2025-01-05
    """
    pay_text = """
    payment_id,account_id,paid_on,amount
    P1,A1,2025-01-20,4000.00
    P2,A1,2025-01-27,6000.00
    """
    row = snap(card(), due_text, pay_text, "2025-02-07")
    assert row["card_interest_minor"] == 0 and row["outstanding_minor"] == 0


E_CN_3_DUE = """
account_id,due_id,due_date,amount,component,minimum,posted_on
A1,S1,2025-04-23,10000.00,principal,1000.00,2025-03-30
"""
E_CN_3_PAYMENT = """
payment_id,account_id,paid_on,amount
P1,A1,2025-04-20,300.00
"""


@pytest.mark.parametrize(
    ("fee", "expected"),
    [
        pytest.param(LateFee("percent", Decimal("0.05")), "35.00", id="5pct-of-unpaid-minimum"),
        pytest.param(
            LateFee("percent", Decimal("0.05"), floor=Decimal("50.00")), "50.00", id="raised-to-floor"
        ),
        pytest.param(LateFee("percent", Decimal("0.05"), floor=Decimal("10.00")), "35.00", id="above-floor"),
        pytest.param(LateFee("percent", Decimal("0.05"), cap=Decimal("20.00")), "20.00", id="limited-to-cap"),
        pytest.param(LateFee("flat", flat=Decimal("30.00")), "30.00", id="flat"),
        pytest.param(
            LateFee("flat", flat=Decimal("2000.00"), limit_to_minimum=True),
            "1000.00",
            id="never-above-minimum",
        ),
    ],
)
def test_e_cn_3_late_fee_on_the_unpaid_part_of_the_minimum(fee: LateFee, expected: str) -> None:
    row = snap(card("none", fee), E_CN_3_DUE, E_CN_3_PAYMENT, "2025-04-24")
    assert yuan(row, "late_fees_minor") == Decimal(expected)
    assert yuan(row, "fee_past_due_minor") == Decimal(expected)
    assert yuan(row, "principal_past_due_minor") == Decimal("700.00")


def test_no_late_fee_before_the_due_date_has_passed_nor_when_the_minimum_was_paid_on_time() -> None:
    fee = LateFee("percent", Decimal("0.05"))
    on_the_due_date = snap(card("none", fee), E_CN_3_DUE, E_CN_3_PAYMENT, "2025-04-23")
    assert on_the_due_date["late_fees_minor"] == 0
    paid_on_time = snap(
        card("none", fee), E_CN_3_DUE, E_CN_1_PAYMENT.replace("100.00", "1000.00"), "2025-05-05"
    )
    assert paid_on_time["late_fees_minor"] == 0


def test_e_cn_4_three_thousand_unpaid() -> None:
    due_text = """
    account_id,due_id,due_date,amount,component,minimum,posted_on
    A1,S1,2025-04-23,3000.00,principal,300.00,2025-03-30
    """
    fee = LateFee("percent", Decimal("0.05"), floor=Decimal("10.00"))
    row = snap(card("full_amount", fee), due_text, None, "2025-05-05")
    assert yuan(row, "card_interest_minor") == Decimal("55.50")  # 3000 × 0.05 % × 37
    assert yuan(row, "late_fees_minor") == Decimal("15.00")  # 300 × 5 % (above the floor of 10)
    assert yuan(row, "outstanding_minor") == Decimal("3070.50")
    assert yuan(row, "amount_past_due_minor") == Decimal("315.00")  # the minimum and the fee
    assert (row["days_past_due"], row["delinquency_days"], row["bucket"], row["stage"]) == (
        12,
        12,
        "M1",
        "M1",
    )
    assert row["oldest_unpaid_due_date"] == D("2025-04-23") and row["missed_dues"] == 1


THREE_INSTALMENTS = """
account_id,due_id,due_date,amount,component
A1,I1,2025-01-10,500.00,principal
A1,I2,2025-02-10,500.00,principal
A1,I3,2025-03-10,500.00,principal
"""


def test_partial_payment_that_clears_the_oldest_due_moves_the_anchor_and_drops_the_stage() -> None:
    before = snap(loan(), THREE_INSTALMENTS, None, "2025-03-15")
    assert (before["days_past_due"], before["stage"], before["missed_dues"]) == (64, "M2", 3)
    after = snap(
        loan(),
        THREE_INSTALMENTS,
        "payment_id,account_id,paid_on,amount\nP1,A1,2025-03-15,600.00",
        "2025-03-15",
    )
    assert after["oldest_unpaid_due_date"] == D("2025-02-10")
    assert (after["days_past_due"], after["stage"], after["missed_dues"]) == (33, "M2", 2)
    assert yuan(after, "principal_past_due_minor") == Decimal("900.00")
    cured = snap(
        loan(),
        THREE_INSTALMENTS,
        "payment_id,account_id,paid_on,amount\nP1,A1,2025-03-15,1000.00",
        "2025-03-15",
    )
    assert (cured["days_past_due"], cured["bucket"], cured["stage"]) == (5, "M1", "M1")


def test_overpayment_is_credit_for_later_dues() -> None:
    pay_text = """
    payment_id,account_id,paid_on,amount
    P1,A1,2025-01-05,1200.00
    """
    row = snap(loan(), THREE_INSTALMENTS, pay_text, "2025-02-15")
    assert (row["days_past_due"], row["stage"]) == (0, "current")
    assert row["outstanding_minor"] == 30000  # I3, not yet due, is 300.00 short of what was paid ahead
    assert row["credit_minor"] == 0
    overpaid = snap(loan(), THREE_INSTALMENTS, pay_text.replace("1200.00", "1700.00"), "2025-02-15")
    assert yuan(overpaid, "credit_minor") == Decimal("200.00") and overpaid["outstanding_minor"] == 0


def test_a_due_is_past_due_from_the_day_after_its_due_date() -> None:
    assert snap(loan(), THREE_INSTALMENTS, None, "2025-01-10")["days_past_due"] == 0
    assert snap(loan(), THREE_INSTALMENTS, None, "2025-01-11")["days_past_due"] == 1


@pytest.mark.parametrize(
    ("as_of", "days_past_due", "delinquency_days", "bucket", "stage"),
    [
        pytest.param("2025-01-13", 3, 0, "current", "early", id="grace-day-3"),
        pytest.param("2025-01-14", 4, 1, "M1", "M1", id="first-day-after-grace"),
    ],
)
def test_grace_days_delay_delinquency_but_not_days_past_due(
    as_of: str, days_past_due: int, delinquency_days: int, bucket: str, stage: str
) -> None:
    row = snap(loan(grace=3), THREE_INSTALMENTS, None, as_of)
    assert (row["days_past_due"], row["delinquency_days"], row["bucket"], row["stage"]) == (
        days_past_due,
        delinquency_days,
        bucket,
        stage,
    )


@pytest.mark.parametrize(
    ("as_of", "bucket"),
    [
        pytest.param("2025-01-11", "M1", id="day-1"),
        pytest.param("2025-02-09", "M1", id="day-30"),
        pytest.param("2025-02-10", "M2", id="day-31"),
        pytest.param("2025-07-09", "M6", id="day-180"),
        pytest.param("2025-07-10", "M7+", id="day-181-open-ended"),
        pytest.param("2030-01-10", "M7+", id="years-later"),
    ],
)
def test_bucket_boundaries_in_cn_m(as_of: str, bucket: str) -> None:
    one_due = "account_id,due_id,due_date,amount,component\nA1,I1,2025-01-10,500.00,principal"
    assert snap(loan(), one_due, None, as_of)["bucket"] == bucket


def test_missed_dues_count_distinct_due_dates_not_dues() -> None:
    due_text = """
    account_id,due_id,due_date,amount,component
    A1,I1p,2025-01-10,500.00,principal
    A1,I1i,2025-01-10,50.00,interest
    A1,I2p,2025-02-10,500.00,principal
    A1,I2i,2025-02-10,50.00,interest
    A1,I3p,2025-03-10,500.00,principal
    A1,I3i,2025-03-10,50.00,interest
    """
    row = snap(loan(), due_text, None, "2025-03-01")
    assert row["missed_dues"] == 2  # four dues on two dates; the third date is not yet due
    # 540 pays the first date's interest and 490 of its principal: that date is still missed.
    partly = snap(
        loan(), due_text, "payment_id,account_id,paid_on,amount\nP1,A1,2025-02-20,540.00", "2025-03-01"
    )
    assert partly["missed_dues"] == 2 and partly["oldest_unpaid_due_date"] == D("2025-01-10")
    assert yuan(partly, "principal_past_due_minor") == Decimal("510.00")
    assert yuan(partly, "interest_past_due_minor") == Decimal("50.00")


def test_penalty_interest_on_a_loan_with_a_partial_payment_midway() -> None:
    due_text = """
    account_id,due_id,due_date,amount,component
    A1,I1,2025-01-10,1000.00,principal
    A1,I1i,2025-01-10,50.00,interest
    """
    pay_text = """
    payment_id,account_id,paid_on,amount
    P1,A1,2025-01-21,600.00
    """
    # 11th..20th: 1000 unpaid principal (10 days). From the 21st the 600 pays the interest first (the
    # product's order), then 550 of principal: 450 unpaid through the 31st (11 days). Never on interest.
    # 0.00075 × (10 × 1000 + 11 × 450) = 11.2125 → 11.21
    row = snap(loan("0.00075"), due_text, pay_text, "2025-01-31")
    assert yuan(row, "penalty_interest_minor") == Decimal("11.21")
    assert yuan(row, "penalty_past_due_minor") == Decimal("11.21")
    assert yuan(row, "principal_past_due_minor") == Decimal("450.00")
    assert yuan(row, "amount_past_due_minor") == Decimal("461.21")
    assert yuan(row, "outstanding_minor") == Decimal("461.21")


def test_penalty_interest_rounds_half_up_once_for_the_account() -> None:
    due_text = """
    account_id,due_id,due_date,amount,component
    A1,I1,2025-01-10,1.00,principal
    A1,I2,2025-01-10,1.00,principal
    """
    # 0.0025 × (1.00 + 1.00) × 1 day = 0.005 → 0.01 for the account (each due alone would round to 0.00).
    row = snap(loan("0.0025"), due_text, None, "2025-01-11")
    assert yuan(row, "penalty_interest_minor") == Decimal("0.01")


def test_payments_after_as_of_are_not_counted() -> None:
    pay_text = """
    payment_id,account_id,paid_on,amount
    P1,A1,2025-02-01,500.00
    """
    row = snap(loan(), THREE_INSTALMENTS, pay_text, "2025-01-20")
    assert (row["days_past_due"], row["credit_minor"]) == (10, 0)
    assert yuan(row, "outstanding_minor") == Decimal("1500.00")


def test_every_account_gets_a_row_sorted_by_account_id_even_without_dues() -> None:
    frame = compute_snapshots(
        accounts(("B2", "loan_cn"), ("A1", "loan_cn"), ("C3", "loan_cn")),
        dues(THREE_INSTALMENTS.replace("A1,", "C3,")),
        payments("payment_id,account_id,paid_on,amount\nP1,A1,2025-01-01,10.00\nP2,ZZ,2025-01-01,10.00"),
        terms(loan()),
        D("2025-01-20"),
        on_hold=pl.DataFrame({"account_id": ["B2"], "on_hold": [True]}),
    )
    assert frame.schema == pl.Schema(SNAPSHOTS)
    assert frame["account_id"].to_list() == ["A1", "B2", "C3"]
    a1, b2, c3 = frame.rows(named=True)
    assert (a1["days_past_due"], a1["bucket"], a1["stage"], a1["credit_minor"]) == (
        0,
        "current",
        "current",
        1000,
    )
    assert a1["oldest_unpaid_due_date"] is None and a1["currency"] == "CNY" and a1["as_of"] == D("2025-01-20")
    assert (b2["outstanding_minor"], b2["on_hold"], a1["on_hold"]) == (0, True, False)
    assert (c3["days_past_due"], c3["stage"]) == (10, "M1")


def test_no_accounts_give_an_empty_frame_with_the_snapshot_schema() -> None:
    frame = compute_snapshots(
        pl.DataFrame(schema=ACCOUNTS), dues(THREE_INSTALMENTS), payments(), terms(loan()), D("2025-03-01")
    )
    assert frame.is_empty() and frame.schema == pl.Schema(SNAPSHOTS)


AMOUNT_STAGES = (
    Stage("early", min_days_past_due=1),
    Stage("big", min_amount_past_due=Decimal("500.00")),
    Stage("late", min_days_past_due=30, min_missed_dues=2),
)


@pytest.mark.parametrize(
    ("as_of", "stage"),
    [
        pytest.param("2025-01-10", "current", id="not-yet-due"),
        pytest.param("2025-01-11", "big", id="amount-equal-to-threshold"),
        pytest.param("2025-01-31", "big", id="21-days-one-missed-due"),
        pytest.param("2025-02-08", "big", id="29-days-two-missed-dues"),
        pytest.param("2025-02-09", "late", id="30-days-two-missed-dues"),
    ],
)
def test_stage_thresholds_are_inclusive_and_the_most_severe_holding_stage_wins(
    as_of: str, stage: str
) -> None:
    due_text = """
    account_id,due_id,due_date,amount,component
    A1,I1,2025-01-10,500.00,principal
    A1,I2,2025-02-01,20.00,principal
    """
    assert snap(loan(), due_text, None, as_of, stages=AMOUNT_STAGES)["stage"] == stage


def test_amount_threshold_is_compared_in_each_accounts_currency() -> None:
    stages = (Stage("big", min_amount_past_due=Decimal("500")),)
    products = (loan(code="cny_loan"), loan(code="jpy_loan", currency="JPY"))
    frame = compute_snapshots(
        accounts(("A1", "cny_loan"), ("A2", "jpy_loan")),
        pl.concat(
            [
                dues("account_id,due_id,due_date,amount,component\nA1,I1,2025-01-10,500.00,principal", "CNY"),
                dues("account_id,due_id,due_date,amount,component\nA2,I1,2025-01-10,499,principal", "JPY"),
            ]
        ),
        payments(),
        terms(*products, stages=stages),
        D("2025-01-11"),
    )
    # 500.00 yuan is 50000 fen and reaches the threshold; 499 yen (no minor digits) does not.
    assert frame.select("account_id", "currency", "stage").rows() == [
        ("A1", "CNY", "big"),
        ("A2", "JPY", "current"),
    ]


def test_allocation_follows_each_products_component_order() -> None:
    due_text = """
    account_id,due_id,due_date,amount,component
    A1,I1p,2025-01-10,100.00,principal
    A1,I1i,2025-01-10,10.00,interest
    A2,I1p,2025-01-10,100.00,principal
    A2,I1i,2025-01-10,10.00,interest
    """
    pay_text = """
    payment_id,account_id,paid_on,amount
    P1,A1,2025-01-12,50.00
    P2,A2,2025-01-12,50.00
    """
    products = (
        loan(code="interest_first", order=("penalty", "fee", "interest", "principal")),
        loan(code="principal_first", order=("principal", "interest", "fee", "penalty")),
    )
    frame = compute_snapshots(
        accounts(("A1", "interest_first"), ("A2", "principal_first")),
        dues(due_text),
        payments(pay_text),
        terms(*products),
        D("2025-01-20"),
    )
    amounts = frame.select("account_id", "principal_past_due_minor", "interest_past_due_minor").rows()
    assert amounts == [("A1", 6000, 0), ("A2", 5000, 1000)]


def test_charges_due_now_are_paid_in_the_products_order_after_the_past_due_dues() -> None:
    due_text = """
    account_id,due_id,due_date,amount,component,minimum,posted_on
    A1,S1,2025-04-23,1000.00,principal,100.00,2025-03-30
    """
    pay_text = """
    payment_id,account_id,paid_on,amount
    P1,A1,2025-04-30,105.00
    """
    fee = LateFee("percent", Decimal("0.05"), floor=Decimal("10.00"))
    # The minimum (100) was late: a 10.00 fee (5 % of 100 is 5, raised to the floor). The 105 paid on the
    # 30th covers the minimum, then 5.00 of the fee.
    row = snap(card("none", fee), due_text, pay_text, "2025-05-05")
    assert yuan(row, "late_fees_minor") == Decimal("10.00")
    assert yuan(row, "fee_past_due_minor") == Decimal("5.00")
    assert (row["days_past_due"], row["stage"]) == (0, "current")  # status never depends on charges


def test_dues_on_the_same_date_and_component_are_ordered_by_due_id() -> None:
    due_text = """
    account_id,due_id,due_date,amount,component,minimum,posted_on
    A1,S2,2025-04-23,1000.00,principal,,2025-04-01
    A1,S1,2025-04-23,200.00,principal,,2025-04-01
    """
    pay_text = """
    payment_id,account_id,paid_on,amount
    P1,A1,2025-04-23,200.00
    """
    # S1 comes first and is paid in full by its due date: only S2 bears interest, 1000 × 0.05 % × 35 days.
    row = snap(card(), due_text, pay_text, "2025-05-05")
    assert yuan(row, "card_interest_minor") == Decimal("17.50")


def test_dues_without_due_ids_on_the_same_date_and_component_are_taken_in_the_order_given() -> None:
    # The daily run reads the dues without their ids, in the order of their key (account_id, due_id).
    due_text = """
    account_id,due_id,due_date,amount,component,minimum,posted_on
    A1,S2,2025-04-23,1000.00,principal,,2025-04-01
    A1,S1,2025-04-23,200.00,principal,,2025-04-01
    """
    pay_text = """
    payment_id,account_id,paid_on,amount
    P1,A1,2025-04-23,200.00
    """

    product = card()

    def interest(frame: pl.DataFrame) -> Decimal:
        got = compute_snapshots(
            accounts(("A1", product.code)), frame, payments(pay_text), terms(product), D("2025-05-05")
        )
        return yuan(got.row(0, named=True), "card_interest_minor")

    with_ids = dues(due_text)
    assert interest(with_ids) == Decimal("17.50")
    assert interest(with_ids.sort("account_id", "due_id").drop("due_id")) == Decimal("17.50")
    # In the order of the text (S2 first) S2 takes the payment and S1 bears the interest instead.
    assert interest(with_ids.drop("due_id")) != Decimal("17.50")


def test_unknown_products_are_reported() -> None:
    with pytest.raises(ValueError, match="unknown product"):
        compute_snapshots(
            accounts(("A1", "nope")), dues(THREE_INSTALMENTS), payments(), terms(loan()), D("2025-03-01")
        )


# --- payments are applied in the order they arrive (docs/semantics.md, "Allocation") -----------------

TWO_STATEMENTS = """
account_id,due_id,due_date,amount,component,minimum,posted_on
A1,S1,2025-01-25,1000.00,principal,100.00,2024-12-20
A1,S2,2025-02-25,1500.00,principal,150.00,2025-01-28
"""


def test_a_statement_paid_in_full_cannot_pay_the_next_statements_minimum() -> None:
    pay_text = """
    payment_id,account_id,paid_on,amount
    P1,A1,2025-01-20,1000.00
    """
    row = snap(card("none"), TWO_STATEMENTS, pay_text, "2025-03-01")
    assert (row["days_past_due"], row["missed_dues"], row["stage"]) == (4, 1, "M1")
    assert row["oldest_unpaid_due_date"] == D("2025-02-25")
    assert yuan(row, "principal_past_due_minor") == Decimal("150.00")
    # Only S2 bears 全额计息: 1500 × 33 days (Jan 28 .. Mar 1) × 0.05 % = 24.75.
    assert yuan(snap(card(), TWO_STATEMENTS, pay_text, "2025-03-01"), "outstanding_minor") == Decimal(
        "1524.75"
    )


def test_paying_each_minimum_keeps_the_card_current_and_credit_waits_for_the_next_statement() -> None:
    minimums = """
    payment_id,account_id,paid_on,amount
    P1,A1,2025-01-25,100.00
    P2,A1,2025-02-25,150.00
    """
    assert snap(card("none"), TWO_STATEMENTS, minimums, "2025-03-01")["stage"] == "current"
    ahead = """
    payment_id,account_id,paid_on,amount
    P1,A1,2025-01-20,1200.00
    """
    before_posting = snap(card("none"), TWO_STATEMENTS, ahead, "2025-01-27")
    assert yuan(before_posting, "credit_minor") == Decimal("200.00")
    after_posting = snap(card("none"), TWO_STATEMENTS, ahead, "2025-03-01")
    assert (after_posting["days_past_due"], after_posting["credit_minor"]) == (0, 0)
    assert yuan(after_posting, "outstanding_minor") == Decimal("1300.00")
