"""The engine's less travelled paths give the readable specification's answer too.

The engine computes in Int64 and switches to exact Python integers only where a product might not fit
(money × days over huge amounts, a running maximum lifted by the account), and it numbers rows by a
binary search when they arrive sorted by account, by a join otherwise. The property test's portfolios
are small and sorted; these cases take the other paths.
"""

from __future__ import annotations

import datetime as dt
import random

import polars as pl
import pytest

from duecourse.domain.delinquency import snapshot
from duecourse.domain.model import Due, Payment
from duecourse.domain.money import from_minor, to_minor
from duecourse.engine import snapshot as snapshot_engine
from duecourse.engine.snapshot import compute_snapshots
from tests.unit.test_two_engines import BUCKETS, PRODUCTS, START, TERMS, frames

Data = list[tuple[str, str, list[Due], list[Payment]]]
AS_OF = START + dt.timedelta(days=130)


_COLUMNS = {
    "account_id": pl.String(),
    "days_past_due": pl.Int64(),
    "bucket": pl.String(),
    "amount_past_due_minor": pl.Int64(),
    "missed_dues": pl.Int64(),
    "stage": pl.String(),
    "outstanding_minor": pl.Int64(),
    "credit_minor": pl.Int64(),
    "penalty_interest_minor": pl.Int64(),
    "card_interest_minor": pl.Int64(),
    "late_fees_minor": pl.Int64(),
}


def portfolio(seed: int, accounts: int, low: int, high: int) -> Data:
    """``accounts`` accounts of every product with amounts (minor units) between ``low`` and ``high``."""
    rng = random.Random(seed)
    data: Data = []
    for i in range(accounts):
        account_id = f"A{i:03d}"
        code = sorted(PRODUCTS)[i % len(PRODUCTS)]
        product = PRODUCTS[code]
        dues = []
        for n in range(rng.randint(1, 5)):
            due_date = START + dt.timedelta(days=rng.randint(0, 90))
            amount = rng.randint(low, high)
            card = product.kind == "card"
            dues.append(
                Due(
                    account_id,
                    f"D{n}",
                    due_date,
                    from_minor(amount, product.currency),
                    rng.choice(["principal", "principal", "interest", "fee"]),
                    from_minor(amount // 10, product.currency) if card else None,
                    due_date - dt.timedelta(days=25) if card else None,
                )
            )
        payments = [
            Payment(
                f"{account_id}-P{n}",
                account_id,
                START + dt.timedelta(days=rng.randint(0, 130)),
                from_minor(rng.randint(low // 4, high // 2), product.currency),
            )
            for n in range(rng.randint(0, 5))
        ]
        data.append((account_id, code, dues, payments))
    return data


def expected(data: Data) -> pl.DataFrame:
    rows = []
    for account_id, code, dues, payments in data:
        product = PRODUCTS[code]
        cur = product.currency
        s = snapshot(account_id, product, BUCKETS[product.bucket_set], TERMS.stages, dues, payments, AS_OF)
        rows.append(
            {
                "account_id": account_id,
                "days_past_due": s.days_past_due,
                "bucket": s.bucket,
                "amount_past_due_minor": to_minor(s.amount_past_due, cur),
                "missed_dues": s.missed_dues,
                "stage": s.stage,
                "outstanding_minor": to_minor(s.outstanding, cur),
                "credit_minor": to_minor(s.credit, cur),
                "penalty_interest_minor": to_minor(s.penalty_interest, cur),
                "card_interest_minor": to_minor(s.card_interest, cur),
                "late_fees_minor": to_minor(s.late_fees, cur),
            }
        )
    return pl.DataFrame(rows).cast(_COLUMNS)


def engine(accounts: pl.DataFrame, dues: pl.DataFrame, payments: pl.DataFrame) -> pl.DataFrame:
    got = compute_snapshots(accounts, dues, payments, TERMS, AS_OF)
    return got.select(list(_COLUMNS)).cast(_COLUMNS)


def test_amounts_whose_charges_do_not_fit_int64_are_computed_exactly() -> None:
    """Dues of 10^16–10^17 minor units: money × days and the lifted running maximum leave Int64."""
    data = portfolio(seed=1, accounts=60, low=10**16, high=10**17)
    accounts, dues, payments = frames(data)
    want = expected(data)
    assert engine(accounts, dues, payments).equals(want)
    assert want["penalty_interest_minor"].max() > 10**15  # the charges are as large as meant


@pytest.mark.parametrize("seed", [2, 3])
def test_rows_in_any_order_and_rows_of_unknown_accounts_give_the_same_snapshots(seed: int) -> None:
    data = portfolio(seed=seed, accounts=40, low=100, high=500_000)
    accounts, dues, payments = frames(data)
    stray_due = dues.head(1).with_columns(account_id=pl.lit("ZZZ"), due_id=pl.lit("X"))
    stray_payment = payments.head(1).with_columns(account_id=pl.lit("A000x"), payment_id=pl.lit("X"))
    shuffled = [
        frame.sample(fraction=1.0, shuffle=True, seed=seed)
        for frame in (accounts, pl.concat([dues, stray_due]), pl.concat([payments, stray_payment]))
    ]
    want = expected(data)
    assert engine(*shuffled).equals(want)
    assert engine(accounts, dues, payments).equals(want)


@pytest.mark.parametrize("rows", [1, 7, 64])
def test_accounts_computed_in_blocks_give_the_same_snapshots(
    rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks of a few dues each (the engine's cache-sized blocks, made tiny), each account as of its day."""
    data = portfolio(seed=4, accounts=40, low=100, high=500_000)
    accounts, dues, payments = frames(data)
    own_days = pl.Series([START + dt.timedelta(days=60 + 2 * i) for i in range(accounts.height)])
    accounts = accounts.with_columns(as_of=own_days)
    whole = compute_snapshots(accounts, dues, payments, TERMS, AS_OF)
    monkeypatch.setattr(snapshot_engine, "_BLOCK_ROWS", rows)
    assert compute_snapshots(accounts, dues, payments, TERMS, AS_OF).equals(whole)
    assert (
        compute_snapshots(accounts.drop("as_of"), dues, payments, TERMS, AS_OF)
        .select(list(_COLUMNS))
        .cast(_COLUMNS)
        .equals(expected(data))
    )
