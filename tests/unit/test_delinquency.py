"""The readable specification of the snapshot, checked against the worked examples in rules.md."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from duecourse.domain.delinquency import snapshot
from duecourse.domain.model import Due, Payment
from duecourse.domain.terms import LateFee, Product
from tests.unit.support import CN_M, STAGES, card, loan

D = dt.date.fromisoformat


def dues(text: str) -> list[Due]:
    """One due a line: due_id due_date amount component [minimum] [posted_on]."""
    out = []
    for line in text.strip().splitlines():
        f = line.split()
        out.append(
            Due(
                "A1",
                f[0],
                D(f[1]),
                Decimal(f[2]),
                f[3],
                Decimal(f[4]) if len(f) > 4 and f[4] != "-" else None,
                D(f[5]) if len(f) > 5 else None,
            )
        )
    return out


def pays(text: str) -> list[Payment]:
    """One payment a line: payment_id paid_on amount."""
    return [
        Payment(f[0], "A1", D(f[1]), Decimal(f[2])) for f in (ln.split() for ln in text.strip().splitlines())
    ]


def snap(product: Product, due_text: str, pay_text: str, as_of: str):  # type: ignore[no-untyped-def]
    return snapshot("A1", product, CN_M, STAGES, dues(due_text), pays(pay_text) if pay_text else [], D(as_of))


def test_e_cn_1_full_amount_interest_counts_both_ends_of_each_range() -> None:
    s = snap(
        card(), "S1 2025-04-23 1000.00 principal 100.00 2025-03-30", "P1 2025-04-23 100.00", "2025-05-05"
    )
    assert s.card_interest == Decimal("17.85")
    assert s.days_past_due == 0  # the minimum was paid: current, but the interest-free period is lost


def test_e_cn_1_unpaid_portion_mode_charges_only_what_was_left_at_the_due_date() -> None:
    s = snap(
        card("unpaid_portion"),
        "S1 2025-04-23 1000.00 principal 100.00 2025-03-30",
        "P1 2025-04-23 100.00",
        "2025-05-05",
    )
    assert s.card_interest == Decimal("16.65")


def test_e_cn_2_ccb_example() -> None:
    s = snap(
        card(), "S1 2025-01-27 10000.00 principal 1000.00 2025-01-05", "P1 2025-01-27 8000.00", "2025-02-07"
    )
    assert s.card_interest == Decimal("122.00")


def test_statement_paid_in_full_by_the_due_date_bears_no_interest() -> None:
    s = snap(
        card(), "S1 2025-01-27 10000.00 principal 1000.00 2025-01-05", "P1 2025-01-27 10000.00", "2025-02-07"
    )
    assert s.card_interest == 0 and s.outstanding == 0


@pytest.mark.parametrize(
    ("fee", "expected"),
    [
        pytest.param(LateFee("percent", Decimal("0.05")), "35.00", id="5pct-of-unpaid-minimum"),
        pytest.param(LateFee("percent", Decimal("0.05"), floor=Decimal("50.00")), "50.00", id="floor"),
        pytest.param(LateFee("percent", Decimal("0.05"), cap=Decimal("20.00")), "20.00", id="cap"),
        pytest.param(LateFee("flat", flat=Decimal("30.00")), "30.00", id="flat"),
    ],
)
def test_e_cn_3_late_fee_on_the_unpaid_part_of_the_minimum(fee: LateFee, expected: str) -> None:
    s = snap(
        card("none", fee),
        "S1 2025-04-23 10000.00 principal 1000.00 2025-03-30",
        "P1 2025-04-20 300.00",
        "2025-04-24",
    )
    assert s.late_fees == Decimal(expected)
    assert s.past_due["fee"] == Decimal(expected)
    assert s.past_due["principal"] == Decimal("700.00")


def test_e_cn_4_three_thousand_unpaid() -> None:
    fee = LateFee("percent", Decimal("0.05"), floor=Decimal("10.00"))
    s = snap(card("full_amount", fee), "S1 2025-04-23 3000.00 principal 300.00 2025-03-30", "", "2025-05-05")
    assert s.card_interest == Decimal("55.50")
    assert s.late_fees == Decimal("15.00")
    assert s.card_interest + s.late_fees == Decimal("70.50")
    assert s.outstanding == Decimal("3070.50")
    assert s.days_past_due == 12 and s.bucket == "M1" and s.stage == "M1"
    assert s.amount_past_due == Decimal("315.00")  # the unpaid minimum and the fee; interest is billed later


def test_partial_payment_that_clears_the_oldest_due_moves_the_anchor_and_drops_the_stage() -> None:
    due_text = """
    I1 2025-01-10 500.00 principal
    I2 2025-02-10 500.00 principal
    I3 2025-03-10 500.00 principal
    """
    before = snap(loan(), due_text, "", "2025-03-15")
    assert (before.days_past_due, before.stage, before.missed_dues) == (64, "M2", 3)
    after = snap(loan(), due_text, "P1 2025-03-15 600.00", "2025-03-15")
    assert after.oldest_unpaid_due_date == D("2025-02-10")
    assert (after.days_past_due, after.stage, after.missed_dues) == (33, "M2", 2)
    cured = snap(loan(), due_text, "P1 2025-03-15 1000.00", "2025-03-15")
    assert (cured.days_past_due, cured.stage, cured.bucket) == (5, "M1", "M1")


def test_overpayment_is_credit_for_later_dues() -> None:
    s = snap(
        loan(),
        "I1 2025-01-10 500.00 principal\nI2 2025-02-10 500.00 principal",
        "P1 2025-01-05 1200.00",
        "2025-03-01",
    )
    assert s.days_past_due == 0 and s.outstanding == 0 and s.credit == Decimal("200.00")


def test_a_due_is_past_due_from_the_day_after_its_due_date() -> None:
    text = "I1 2025-01-10 500.00 principal"
    assert snap(loan(), text, "", "2025-01-10").days_past_due == 0
    assert snap(loan(), text, "", "2025-01-11").days_past_due == 1


def test_grace_days_delay_delinquency_but_not_days_past_due() -> None:
    s = snap(loan(grace=3), "I1 2025-01-10 500.00 principal", "", "2025-01-13")
    assert (s.days_past_due, s.delinquency_days, s.bucket, s.stage) == (3, 0, "current", "early")


def test_penalty_interest_accrues_on_unpaid_principal_only_after_the_due_date() -> None:
    due_text = "I1 2025-01-10 1000.00 principal\nI1i 2025-01-10 50.00 interest"
    # 11th..20th: 1000 unpaid principal (10 days); from the 21st the 600 paid goes to interest then principal:
    # 450 unpaid until the 31st (11 days). 0.00075 × (10×1000 + 11×450) = 11.2125 → 11.21.
    s = snap(loan("0.00075"), due_text, "P1 2025-01-21 600.00", "2025-01-31")
    assert s.penalty_interest == Decimal("11.21")
    assert s.past_due["penalty"] == Decimal("11.21") and s.past_due["principal"] == Decimal("450.00")


def test_payments_after_as_of_are_not_counted() -> None:
    s = snap(loan(), "I1 2025-01-10 500.00 principal", "P1 2025-02-01 500.00", "2025-01-20")
    assert s.days_past_due == 10 and s.paid_total == 0


# --- payments are applied in the order they arrive (docs/semantics.md, "Allocation") -----------------

TWO_STATEMENTS = """
S1 2025-01-25 1000.00 principal 100.00 2024-12-20
S2 2025-02-25 1500.00 principal 150.00 2025-01-28
"""


def test_a_statement_paid_in_full_cannot_pay_the_next_statements_minimum() -> None:
    # 1000 on Jan 20 clears S1 before S2 is posted; nothing is paid for S2, so S2's minimum is missed.
    s = snap(card("none"), TWO_STATEMENTS, "P1 2025-01-20 1000.00", "2025-03-01")
    assert s.oldest_unpaid_due_date == D("2025-02-25")
    assert (s.days_past_due, s.missed_dues, s.stage) == (4, 1, "M1")
    assert s.past_due["principal"] == Decimal("150.00")
    assert s.paid_by_due == {
        "S1": (Decimal("100.00"), Decimal("900.00")),
        "S2": (Decimal("0"), Decimal("0")),
    }


def test_a_statement_paid_in_full_by_its_due_date_bears_no_interest_when_a_later_one_is_unpaid() -> None:
    s = snap(card(), TWO_STATEMENTS, "P1 2025-01-20 1000.00", "2025-03-01")
    # Only S2 bears 全额计息: 1500 from Jan 28 to Mar 1, both ends counted (33 days) × 0.05 % = 24.75.
    assert [c.due_id for c in s.charges] == ["S2"]
    assert s.card_interest == Decimal("24.75")


def test_paying_each_minimum_keeps_the_card_current() -> None:
    s = snap(card("none"), TWO_STATEMENTS, "P1 2025-01-25 100.00\nP2 2025-02-25 150.00", "2025-03-01")
    assert (s.days_past_due, s.stage) == (0, "current")
    assert s.paid_by_due["S1"] == (Decimal("100.00"), Decimal("0"))


def test_once_a_statement_is_posted_a_payment_pays_every_minimum_before_any_balance() -> None:
    # After S2 is posted, 400 pays S1's minimum, S2's minimum, then S1's balance above it.
    s = snap(card("none"), TWO_STATEMENTS, "P1 2025-01-30 400.00", "2025-03-01")
    assert (s.days_past_due, s.stage) == (0, "current")
    assert s.paid_by_due["S1"] == (Decimal("100.00"), Decimal("150.00"))
    assert s.paid_by_due["S2"] == (Decimal("150.00"), Decimal("0"))


def test_credit_pays_a_statement_when_it_is_posted() -> None:
    s = snap(card("none"), TWO_STATEMENTS, "P1 2025-01-20 1200.00", "2025-03-01")
    assert (s.days_past_due, s.credit) == (0, Decimal("0"))
    assert s.paid_by_due["S2"] == (Decimal("150.00"), Decimal("50.00"))
    applied = [a for a in s.allocations if a.target == "S2"]
    assert [(a.payment_id, a.on, a.block) for a in applied] == [
        ("P1", D("2025-01-28"), "required"),
        ("P1", D("2025-01-28"), "remainder"),
    ]


def test_charges_due_now_are_paid_before_what_is_not_yet_due() -> None:
    # I1 is unpaid from the 11th to the 19th (a payment on the 20th counts from the 20th): penalty
    # 0.001 × 9 × 1000 = 9.00. The 1009 paid on the 20th went to I1 and 9 to I2 ahead of time; as of the
    # 20th the penalty ranks before I2, so the 9 pays it and nothing is past due.
    due_text = "I1 2025-01-10 1000.00 principal\nI2 2025-02-10 1000.00 principal"
    s = snap(loan("0.001"), due_text, "P1 2025-01-20 1009.00", "2025-01-20")
    assert s.penalty_interest == Decimal("9.00")
    assert s.amount_past_due == 0 and s.days_past_due == 0
    assert s.paid_by_due["I2"] == (Decimal("0"), Decimal("0"))
    assert s.outstanding == Decimal("1000.00") and s.credit == 0
    moved = [a for a in s.allocations if a.block == "moved_to_charges"]
    assert [(a.target, a.amount) for a in moved] == [("I2", Decimal("-9.00"))]


def test_a_fee_billed_on_a_statement_is_payable_from_that_statements_posting() -> None:
    # S2's fee has no posting date of its own: it is payable from S2's posting (Jan 28), so the 1000 paid on
    # Jan 20 clears S1 and reaches neither S2 nor its fee; the fee does not make S1..S2 payable earlier.
    due_text = TWO_STATEMENTS + "S2F 2025-02-25 20.00 fee\n"
    s = snap(card("none"), due_text, "P1 2025-01-20 1000.00", "2025-03-01")
    assert s.paid_by_due["S1"] == (Decimal("100.00"), Decimal("900.00"))
    assert s.paid_by_due["S2F"] == (Decimal("0"), Decimal("0"))
    assert s.past_due["fee"] == Decimal("20.00") and s.past_due["principal"] == Decimal("150.00")


def test_a_payment_within_the_grace_days_counts_as_on_time_for_the_late_fee_and_the_interest() -> None:
    # 容时 (CN-FEE-07): 3 grace days. S1 (due Jan 25) paid in full on Jan 28: no late fee, no interest.
    fee = LateFee("percent", Decimal("0.05"), floor=Decimal("10.00"))
    one = "S1 2025-01-25 1000.00 principal 100.00 2024-12-20"
    s = snap(card("full_amount", fee, grace=3), one, "P1 2025-01-28 1000.00", "2025-03-01")
    assert (s.late_fees, s.card_interest) == (0, 0)
    # Paid on Jan 29, a day after the grace days: the late fee on the minimum and 全额计息 from posting.
    late = snap(card("full_amount", fee, grace=3), one, "P1 2025-01-29 1000.00", "2025-03-01")
    assert late.late_fees == Decimal("10.00")
    assert late.card_interest == Decimal("20.00")  # 1000 × 40 days (Dec 20 .. Jan 28) × 0.05 %
    # Within the grace days nothing is charged yet; the day after, the fee is.
    unpaid = "S1 2025-01-25 1000.00 principal 100.00 2024-12-20"
    assert snap(card("none", fee, grace=3), unpaid, "", "2025-01-28").late_fees == 0
    assert snap(card("none", fee, grace=3), unpaid, "", "2025-01-29").late_fees == Decimal("10.00")
