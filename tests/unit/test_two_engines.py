"""Two engines, one answer: the set-based engine equals the readable specification on random portfolios."""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from duecourse.domain.delinquency import snapshot
from duecourse.domain.model import Due, Payment
from duecourse.domain.money import from_minor, to_minor
from duecourse.domain.terms import Bucket, BucketSet, Charges, LateFee, Product, Stage, Terms
from duecourse.engine import schema
from duecourse.engine.snapshot import compute_snapshots

START = dt.date(2025, 1, 1)
BUCKETS = {
    "cn_m": BucketSet("cn_m", (Bucket("M1", 1, 30), Bucket("M2", 31, 60), Bucket("M3+", 61, None))),
    "us_30": BucketSet("us_30", (Bucket("1-29", 1, 29), Bucket("30", 30, 59), Bucket("60+", 60, None))),
}
PRODUCTS = {
    "card_full": Product(
        "card_full",
        "card",
        "CNY",
        3,
        "cn_m",
        "CN",
        ("penalty", "fee", "interest", "principal"),
        Charges(
            card_interest_mode="full_amount",
            card_daily_rate=Decimal("0.0005"),
            late_fee=LateFee("percent", Decimal("0.05"), floor=Decimal("10.00"), cap=Decimal("500.00")),
        ),
    ),
    "card_portion": Product(
        "card_portion",
        "card",
        "USD",
        0,
        "us_30",
        "US",
        ("principal", "interest", "fee", "penalty"),
        Charges(
            card_interest_mode="unpaid_portion",
            card_daily_rate=Decimal("0.00061"),
            late_fee=LateFee("flat", flat=Decimal("30.00"), limit_to_minimum=True),
        ),
    ),
    "loan_pen": Product(
        "loan_pen",
        "instalment_loan",
        "CNY",
        0,
        "cn_m",
        "CN",
        ("penalty", "fee", "interest", "principal"),
        Charges(penalty_daily_rate=Decimal("0.00075")),
    ),
    "loan_plain": Product("loan_plain", "instalment_loan", "GBP", 5, "us_30", "UK"),
}
TERMS = Terms(
    products=PRODUCTS,
    bucket_sets=BUCKETS,
    stages=(
        Stage("early", min_days_past_due=1),
        Stage("M1", min_delinquency_days=1),
        Stage("big", min_delinquency_days=10, min_amount_past_due=Decimal("300.00")),
        Stage("two_missed", min_missed_dues=2),
        Stage("M2", min_delinquency_days=31),
    ),
)
COMPONENTS = ["principal", "principal", "interest", "fee", "penalty"]


@st.composite
def account_data(draw: st.DrawFn, index: int) -> tuple[str, str, list[Due], list[Payment]]:
    account_id = f"A{index}"
    code = draw(st.sampled_from(sorted(PRODUCTS)))
    product = PRODUCTS[code]
    dues = []
    for n in range(draw(st.integers(0, 5))):
        due_date = START + dt.timedelta(days=draw(st.integers(0, 90)))
        amount = draw(st.integers(1, 400_000))
        component = draw(st.sampled_from(COMPONENTS))
        minimum = None
        posted = None
        if product.kind == "card":
            if draw(st.booleans()):
                minimum = draw(st.integers(0, amount))
            if component == "principal" and draw(st.booleans()):
                posted = due_date - dt.timedelta(days=draw(st.integers(0, 40)))
        dues.append(
            Due(
                account_id,
                f"D{n}",
                due_date,
                from_minor(amount, product.currency),
                component,
                None if minimum is None else from_minor(minimum, product.currency),
                posted,
            )
        )
    payments = [
        Payment(
            f"{account_id}-P{n}",
            account_id,
            START + dt.timedelta(days=draw(st.integers(0, 130))),
            from_minor(draw(st.integers(1, 300_000)), product.currency),
        )
        for n in range(draw(st.integers(0, 5)))
    ]
    return account_id, code, dues, payments


@st.composite
def portfolios(draw: st.DrawFn) -> list[tuple[str, str, list[Due], list[Payment]]]:
    return [draw(account_data(i)) for i in range(draw(st.integers(1, 4)))]


def frames(data: list[tuple[str, str, list[Due], list[Payment]]]) -> tuple[pl.DataFrame, ...]:
    accounts = pl.DataFrame(
        [
            {"account_id": a, "customer_id": "C1", "product_code": code, "opened_on": START}
            for a, code, _, _ in data
        ],
        schema=schema.ACCOUNTS,
    )
    currency = {a: PRODUCTS[code].currency for a, code, _, _ in data}
    dues = pl.DataFrame(
        [
            {
                "account_id": d.account_id,
                "due_id": d.due_id,
                "due_date": d.due_date,
                "amount_minor": to_minor(d.amount, currency[d.account_id]),
                "component": d.component,
                "minimum_minor": None
                if d.minimum_amount is None
                else to_minor(d.minimum_amount, currency[d.account_id]),
                "posted_on": d.posted_on,
            }
            for _, _, ds, _ in data
            for d in ds
        ],
        schema=schema.DUES,
    )
    payments = pl.DataFrame(
        [
            {
                "payment_id": p.payment_id,
                "account_id": p.account_id,
                "paid_on": p.paid_on,
                "amount_minor": to_minor(p.amount, currency[p.account_id]),
            }
            for _, _, _, ps in data
            for p in ps
        ],
        schema=schema.PAYMENTS,
    )
    return accounts, dues, payments


@settings(
    max_examples=int(os.environ.get("DUECOURSE_PROPERTY_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    data=portfolios(),
    as_of_offset=st.integers(0, 130),
    own_offsets=st.none() | st.lists(st.integers(0, 130), min_size=4, max_size=4),
)
def test_set_based_engine_equals_the_readable_specification(
    data: list[tuple[str, str, list[Due], list[Payment]]], as_of_offset: int, own_offsets: list[int] | None
) -> None:
    """Every account as of one date, or (``own_offsets``) each account as of its own date."""
    as_of = START + dt.timedelta(days=as_of_offset)
    accounts, dues, payments = frames(data)
    dates = {a: as_of for a, _, _, _ in data}
    if own_offsets is not None:
        dates = {a: START + dt.timedelta(days=own_offsets[i]) for i, (a, _, _, _) in enumerate(data)}
        accounts = accounts.with_columns(as_of=pl.Series([dates[a] for a in accounts["account_id"]]))
    got = {
        r["account_id"]: r
        for r in compute_snapshots(accounts, dues, payments, TERMS, as_of).iter_rows(named=True)
    }
    assert set(got) == {a for a, _, _, _ in data}
    for account_id, code, ds, ps in data:
        product = PRODUCTS[code]
        cur = product.currency
        day = dates[account_id]
        s = snapshot(account_id, product, BUCKETS[product.bucket_set], TERMS.stages, ds, ps, day)
        expected = {
            "account_id": account_id,
            "as_of": day,
            "currency": cur,
            "days_past_due": s.days_past_due,
            "delinquency_days": s.delinquency_days,
            "bucket": s.bucket,
            "amount_past_due_minor": to_minor(s.amount_past_due, cur),
            "principal_past_due_minor": to_minor(s.past_due["principal"], cur),
            "interest_past_due_minor": to_minor(s.past_due["interest"], cur),
            "fee_past_due_minor": to_minor(s.past_due["fee"], cur),
            "penalty_past_due_minor": to_minor(s.past_due["penalty"], cur),
            "oldest_unpaid_due_date": s.oldest_unpaid_due_date,
            "missed_dues": s.missed_dues,
            "stage": s.stage,
            "on_hold": False,
            "outstanding_minor": to_minor(s.outstanding, cur),
            "credit_minor": to_minor(s.credit, cur),
            "penalty_interest_minor": to_minor(s.penalty_interest, cur),
            "card_interest_minor": to_minor(s.card_interest, cur),
            "late_fees_minor": to_minor(s.late_fees, cur),
        }
        assert got[account_id] == expected, account_id
