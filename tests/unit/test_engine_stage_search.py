"""The stage search gives the same changes whether it bisects to the end or finishes day by day.

``stage_path`` bisects between the days money arrives, then looks at every day left once they are few
(``day_by_day`` account-days). The small portfolios of ``test_stage_path`` fit the day-by-day budget at
once; here the budget is drawn, from 0 (bisection only) to a few days (a switch midway).
"""

from __future__ import annotations

import datetime as dt
import os

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from duecourse.engine.stage_path import stage_path
from tests.unit.test_stage_path import Data, changes, day_by_day
from tests.unit.test_two_engines import START, TERMS, frames, portfolios


@settings(
    max_examples=int(os.environ.get("DUECOURSE_PROPERTY_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    data=portfolios(),
    as_of_offset=st.integers(20, 110),
    back=st.lists(st.integers(0, 60), min_size=4, max_size=4),
    budget=st.sampled_from([0, 1, 5, 20, 60]),
)
def test_bisection_and_the_day_by_day_finish_find_the_same_changes(
    data: Data, as_of_offset: int, back: list[int], budget: int
) -> None:
    as_of = START + dt.timedelta(days=as_of_offset)
    accounts, dues, payments = frames(data)
    lower = {a: as_of - dt.timedelta(days=back[i]) for i, (a, _, _, _) in enumerate(data)}
    daily = day_by_day(accounts, dues, payments, min(lower.values()), as_of)
    now = daily.filter(pl.col("day") == as_of).select("account_id", "stage")
    bounds = pl.DataFrame({"account_id": list(lower), "lower": list(lower.values())})
    found = stage_path(accounts, dues, payments, TERMS, as_of, now, bounds, day_by_day=budget)
    assert found.to_dicts() == changes(daily, lower).to_dicts()
