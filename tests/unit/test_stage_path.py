"""The stage changes found again by search equal the stages computed day by day."""

from __future__ import annotations

import datetime as dt
import os

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from duecourse.domain.model import Due, Payment
from duecourse.domain.terms import Terms
from duecourse.engine.snapshot import compute_snapshots
from duecourse.engine.stage_path import stage_path
from tests.unit.support import loan, terms
from tests.unit.test_two_engines import START, TERMS, frames, portfolios

Data = list[tuple[str, str, list[Due], list[Payment]]]


def day_by_day(
    accounts: pl.DataFrame,
    dues: pl.DataFrame,
    payments: pl.DataFrame,
    first: dt.date,
    last: dt.date,
    strategy: Terms = TERMS,
):  # type: ignore[no-untyped-def]
    """Each account's stage on every day from ``first`` to ``last``, from one engine call over copies."""
    days = [first + dt.timedelta(days=k) for k in range((last - first).days + 1)]

    def copies(frame: pl.DataFrame) -> pl.DataFrame:
        return pl.concat([frame.with_columns(pl.col("account_id") + f"@{day.isoformat()}") for day in days])

    many = copies(accounts).with_columns(as_of=pl.col("account_id").str.split("@").list.get(1).str.to_date())
    snaps = compute_snapshots(many, copies(dues), copies(payments), strategy, last)
    return snaps.select(
        pl.col("account_id").str.split("@").list.get(0).alias("account_id"),
        pl.col("as_of").alias("day"),
        "stage",
    ).sort("account_id", "day")


def changes(daily: pl.DataFrame, lower: dict[str, dt.date]) -> pl.DataFrame:
    """The rows stage_path promises: the stage on the lower bound, then each day it differs."""
    rows = []
    for (account_id,), frame in daily.group_by("account_id", maintain_order=True):
        previous = None
        for day, stage in frame.select("day", "stage").iter_rows():
            if day < lower[str(account_id)]:
                continue
            if stage != previous:
                rows.append((account_id, stage, day))
            previous = stage
    return pl.DataFrame(
        rows, schema={"account_id": pl.String(), "stage": pl.String(), "entered_on": pl.Date()}, orient="row"
    )


@settings(
    max_examples=int(os.environ.get("DUECOURSE_PROPERTY_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    data=portfolios(),
    as_of_offset=st.integers(20, 110),
    back=st.lists(st.integers(0, 60), min_size=4, max_size=4),
)
def test_stage_path_finds_every_change_the_days_show(data: Data, as_of_offset: int, back: list[int]) -> None:
    as_of = START + dt.timedelta(days=as_of_offset)
    accounts, dues, payments = frames(data)
    lower = {a: as_of - dt.timedelta(days=back[i]) for i, (a, _, _, _) in enumerate(data)}
    daily = day_by_day(accounts, dues, payments, min(lower.values()), as_of)
    now = daily.filter(pl.col("day") == as_of).select("account_id", "stage")
    bounds = pl.DataFrame({"account_id": list(lower), "lower": list(lower.values())})
    found = stage_path(accounts, dues, payments, TERMS, as_of, now, bounds)
    assert found.to_dicts() == changes(daily, lower).to_dicts()


def test_a_change_in_a_gap_is_dated_the_day_it_happened() -> None:
    from tests.unit.test_engine_snapshot import THREE_INSTALMENTS, accounts, dues, payments

    # I1 falls due on Jan 10 unpaid: "early" from Jan 11, "M1" from Jan 11 too (no grace), "M2" at 31 days.
    as_of = dt.date(2025, 2, 20)
    accts = accounts(("A1", "loan_cn"))
    frame_dues, frame_pays = dues(THREE_INSTALMENTS), payments()
    now = compute_snapshots(accts, frame_dues, frame_pays, terms(loan()), as_of).select("account_id", "stage")
    bounds = pl.DataFrame({"account_id": ["A1"], "lower": [dt.date(2025, 1, 1)]})
    found = stage_path(accts, frame_dues, frame_pays, terms(loan()), as_of, now, bounds)
    assert found.select("stage", pl.col("entered_on").cast(pl.String)).rows() == [
        ("current", "2025-01-01"),
        ("M1", "2025-01-11"),
        ("M2", "2025-02-10"),
    ]
