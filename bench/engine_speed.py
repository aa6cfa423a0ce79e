"""Speed of the set-based snapshot engine on a generated portfolio.

    .venv/bin/python bench/engine_speed.py [N] [--seed S]

Generates N accounts (default 1,000,000) with about 12 dues and 8 payments each (numpy's default_rng with
a seed: the same N and seed give the same portfolio), runs ``compute_snapshots`` once and prints one line
of JSON: {"accounts", "seconds", "accounts_per_second", "peak_rss_mb"}. ``seconds`` is the engine alone;
``peak_rss_mb`` is the process's high-water mark, the generated input included.

The portfolio mixes a CNY card (全额计息 and a 5 % 违约金), a CNY instalment loan (罚息) and a USD card
(flat late fee): loans have 6 monthly instalments of principal and interest, cards 12 monthly statements
with a 10 % minimum. Most customers pay on time, some pay late or part, some stop paying.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import time
from decimal import Decimal

import numpy as np
import polars as pl

from duecourse.domain.terms import Bucket, BucketSet, Charges, LateFee, Product, Stage, Terms
from duecourse.engine.schema import ACCOUNTS, DUES, PAYMENTS
from duecourse.engine.snapshot import compute_snapshots

AS_OF = dt.date(2025, 9, 1)
START = dt.date(2025, 1, 1)
PRODUCTS = ("card_cn", "loan_cn", "card_us")
DUES_PER_ACCOUNT = 12
PAYMENTS_PER_ACCOUNT = 8


def terms() -> Terms:
    cn_m = BucketSet(
        "cn_m",
        (
            Bucket("M1", 1, 30),
            Bucket("M2", 31, 60),
            Bucket("M3", 61, 90),
            Bucket("M4", 91, 120),
            Bucket("M5", 121, 150),
            Bucket("M6", 151, 180),
            Bucket("M7+", 181, None),
        ),
    )
    us = BucketSet("us", (Bucket("30", 1, 29), Bucket("60", 30, 59), Bucket("90+", 60, None)))
    order = ("penalty", "fee", "interest", "principal")
    products = {
        "card_cn": Product(
            "card_cn",
            "card",
            "CNY",
            3,
            "cn_m",
            "CN",
            order,
            Charges(
                card_interest_mode="full_amount",
                card_daily_rate=Decimal("0.0005"),
                late_fee=LateFee("percent", Decimal("0.05"), floor=Decimal("10.00")),
            ),
        ),
        "loan_cn": Product(
            "loan_cn",
            "instalment_loan",
            "CNY",
            0,
            "cn_m",
            "CN",
            order,
            Charges(penalty_daily_rate=Decimal("0.00075")),
        ),
        "card_us": Product(
            "card_us",
            "card",
            "USD",
            0,
            "us",
            "US",
            ("fee", "interest", "principal", "penalty"),
            Charges(late_fee=LateFee("flat", flat=Decimal("30.00"), limit_to_minimum=True)),
        ),
    }
    stages = (
        Stage("reminder", min_days_past_due=1),
        Stage("early", min_delinquency_days=1, min_amount_past_due=Decimal("50.00")),
        Stage("late", min_delinquency_days=31),
        Stage("recovery", min_delinquency_days=91, min_missed_dues=3),
    )
    return Terms(products, {"cn_m": cn_m, "us": us}, stages)


def _dates(days: np.ndarray) -> pl.Series:
    return pl.Series((days + (START - dt.date(1970, 1, 1)).days).astype(np.int32)).cast(pl.Date)


def generate(n: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Accounts, dues and payments of n accounts (schemas ACCOUNTS, DUES, PAYMENTS)."""
    rng = np.random.default_rng(seed)
    product = rng.choice(len(PRODUCTS), size=n, p=[0.45, 0.4, 0.15])
    is_loan = product == PRODUCTS.index("loan_cn")
    start = rng.integers(0, 28, size=n)
    ids = pl.Series("i", np.arange(n)).cast(pl.String).str.zfill(8)
    account_id = ("A" + ids).alias("account_id")
    accounts = pl.DataFrame(
        {
            "account_id": account_id,
            "customer_id": ("C" + ids),
            "product_code": pl.Series(PRODUCTS).gather(product),
            "opened_on": _dates(start - 30),
        },
        schema=ACCOUNTS,
    )

    # Dues: 12 per account. A loan's k-th pair is principal and interest of instalment k // 2; a card's
    # k-th due is statement k (a principal balance with a 10 % minimum, posted 20 days before its due date).
    k = np.arange(DUES_PER_ACCOUNT)
    period = np.where(is_loan[:, None], k[None, :] // 2, k[None, :])
    due_day = start[:, None] + 30 * period
    size = rng.integers(500, 5_000, size=n)[:, None] * 100
    loan_amount = np.where(k[None, :] % 2 == 0, size, size // 20)
    card_amount = rng.integers(0, 20_000, size=(n, DUES_PER_ACCOUNT)) * 100
    amount = np.where(is_loan[:, None], loan_amount, card_amount)
    loan_component = np.where(k % 2 == 0, 0, 1)  # principal, interest
    component = np.where(is_loan[:, None], loan_component[None, :], 0)
    minimum = np.where(is_loan[:, None], -1, amount // 10)
    dues = pl.DataFrame(
        {
            "account_id": account_id.gather(np.repeat(np.arange(n), DUES_PER_ACCOUNT)),
            "due_id": pl.Series(np.tile(k, n)).cast(pl.String),
            "due_date": _dates(due_day.ravel()),
            "amount_minor": amount.ravel(),
            "component": pl.Series(["principal", "interest"]).gather(component.ravel()),
            "minimum_minor": pl.Series(minimum.ravel()).replace(-1, None),
            "posted_on": _dates(due_day.ravel() - 20),
        },
        schema=DUES,
    ).with_columns(
        due_id=pl.col("account_id") + "-" + pl.col("due_id"),
        posted_on=pl.when(pl.col("minimum_minor").is_not_null()).then("posted_on"),
    )

    # Payments: 8 per account, one per due date; on time (70 %), late by up to 45 days (20 %) or stopping
    # after a random instalment (10 %); cards pay the minimum, the full balance or something between.
    j = np.arange(PAYMENTS_PER_ACCOUNT)
    behaviour = rng.choice(3, size=n, p=[0.7, 0.2, 0.1])
    delay = np.where(behaviour[:, None] == 1, rng.integers(0, 45, size=(n, PAYMENTS_PER_ACCOUNT)), 0)
    delay = delay - rng.integers(0, 5, size=(n, PAYMENTS_PER_ACCOUNT))
    stops = rng.integers(0, PAYMENTS_PER_ACCOUNT, size=n)
    paid_day = start[:, None] + 30 * j[None, :] + delay
    instalment = size + size // 20
    fraction = rng.choice([10, 50, 100], size=(n, PAYMENTS_PER_ACCOUNT), p=[0.5, 0.2, 0.3])
    card_pay = card_amount[:, :PAYMENTS_PER_ACCOUNT] * fraction // 100
    pay_amount = np.where(is_loan[:, None], instalment, card_pay)
    pay_amount = np.where((behaviour[:, None] == 2) & (j[None, :] > stops[:, None]), 0, pay_amount)
    payments = (
        pl.DataFrame(
            {
                "payment_id": pl.Series(np.arange(n * PAYMENTS_PER_ACCOUNT)).cast(pl.String),
                "account_id": account_id.gather(np.repeat(np.arange(n), PAYMENTS_PER_ACCOUNT)),
                "paid_on": _dates(paid_day.ravel()),
                "amount_minor": pay_amount.ravel(),
            },
            schema=PAYMENTS,
        )
        .filter(pl.col("amount_minor") > 0)
        .with_columns(payment_id="P" + pl.col("payment_id"))
    )
    return accounts, dues, payments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("accounts", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20250901)
    args = parser.parse_args()
    accounts, dues, payments = generate(args.accounts, args.seed)
    config = terms()
    began = time.perf_counter()
    snapshots = compute_snapshots(accounts, dues, payments, config, AS_OF)
    seconds = time.perf_counter() - began
    if snapshots.height != args.accounts:
        raise SystemExit(f"expected {args.accounts} snapshots, got {snapshots.height}")
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "accounts": args.accounts,
                "seconds": round(seconds, 3),
                "accounts_per_second": round(args.accounts / seconds),
                "peak_rss_mb": round(peak_kb / 1024),
            }
        )
    )


if __name__ == "__main__":
    main()
