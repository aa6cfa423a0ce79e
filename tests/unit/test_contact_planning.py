"""The planner's column rule (``services/contacts._falls``) is ``Action.due`` over a column: the same
occurrence for every entry day, run day and previous run, including a first run and a gap."""

from __future__ import annotations

import datetime as dt

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from duecourse.domain.strategy import Action
from duecourse.services.contacts import _falls

DAY = dt.date(2026, 3, 20)


@settings(max_examples=200, deadline=None)
@given(
    offset=st.integers(0, 20),
    every=st.one_of(st.none(), st.integers(1, 10)),
    times=st.integers(1, 6),
    entered=st.lists(st.integers(0, 60), min_size=1, max_size=30),
    gap=st.one_of(st.none(), st.integers(1, 15)),
)
def test_the_column_rule_is_the_readable_rule(
    offset: int, every: int | None, times: int, entered: list[int], gap: int | None
) -> None:
    action = Action("M1", "a", "sms", "overdue_reminder", offset, every, times)
    days = [DAY - dt.timedelta(days=n) for n in entered]
    previous = None if gap is None else DAY - dt.timedelta(days=gap)
    got = _falls(action, pl.Series("entered_on", days, pl.Date()), DAY, previous).to_list()
    assert got == [action.due(day, DAY, previous) for day in days]


def test_a_gap_plans_only_the_latest_missed_occurrence() -> None:
    action = Action("M1", "a", "sms", "overdue_reminder", 0, 2, 5)
    entered = pl.Series("entered_on", [dt.date(2026, 3, 10)], pl.Date())
    # occurrences 03-10, 12, 14, 16, 18; the previous run was on 03-13: only 03-18 is planned on 03-20
    assert _falls(action, entered, DAY, dt.date(2026, 3, 13)).to_list() == [dt.date(2026, 3, 18)]
    # a run every day: 03-20 has no occurrence (the fifth and last was 03-18)
    assert _falls(action, entered, DAY, dt.date(2026, 3, 19)).to_list() == [None]
    # a first run plans only what falls on its own day
    assert _falls(action, entered, dt.date(2026, 3, 18), None).to_list() == [dt.date(2026, 3, 18)]
