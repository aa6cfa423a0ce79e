"""When a stage's actions fall: offsets, repeats, the cap, and catch-up after a gap without the backlog."""

from __future__ import annotations

import datetime as dt

import pytest

from duecourse.domain.strategy import Action

ENTERED = dt.date(2026, 3, 1)  # day 0
WEEKLY = Action(
    stage="M1",
    name="0",
    channel="sms",
    kind="overdue_reminder",
    offset_days=2,
    repeat_every_days=7,
    max_times=3,
)


def d(n: int) -> dt.date:
    return ENTERED + dt.timedelta(days=n)


@pytest.mark.parametrize(
    ("day", "expected"),
    [(1, None), (2, 2), (3, None), (8, None), (9, 9), (16, 16), (23, None), (30, None)],
)
def test_a_daily_run_plans_each_occurrence_on_its_day_and_stops_at_max_times(
    day: int, expected: int | None
) -> None:
    assert WEEKLY.due(ENTERED, d(day), previous_run=d(day - 1)) == (None if expected is None else d(expected))


def test_after_a_gap_only_the_latest_missed_occurrence_is_planned_once() -> None:
    # Runs on day 1 and then day 20: occurrences 2, 9 and 16 were missed; only 16's reminder goes, on day 20.
    assert WEEKLY.due(ENTERED, d(20), previous_run=d(1)) == d(16)
    assert WEEKLY.due(ENTERED, d(21), previous_run=d(20)) is None
    # A gap over which nothing fell plans nothing.
    assert WEEKLY.due(ENTERED, d(15), previous_run=d(10)) is None


def test_a_first_run_plans_only_what_falls_on_its_day() -> None:
    assert WEEKLY.due(ENTERED, d(9), previous_run=None) == d(9)
    assert WEEKLY.due(ENTERED, d(12), previous_run=None) is None


def test_a_once_only_action_on_the_day_of_entry() -> None:
    once = Action(stage="M2", name="letter", channel="letter", kind="final_demand")
    assert once.due(ENTERED, d(0), previous_run=d(-1)) == d(0)
    assert once.due(ENTERED, d(1), previous_run=d(0)) is None
    assert once.occurrence_on_or_before(ENTERED, d(-1)) is None
