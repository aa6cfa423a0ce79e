"""After a hold ends, the first run plans the latest occurrence it kept back, once (``with_resumed``)."""

from __future__ import annotations

import datetime as dt

import polars as pl

from duecourse.domain.strategy import Action
from duecourse.engine import governor
from duecourse.services.contacts import _falls, with_resumed

DAY = dt.date(2026, 3, 20)
ROWS = pl.DataFrame(
    {
        "account_id": ["A1", "A2", "A3", "A4"],
        "customer_id": ["C1", "C1", "C2", "C3"],
        "entered_on": [dt.date(2026, 3, 1)] * 4,
    }
)


def holds(
    *rows: tuple[str, str | None, str | None, str | None, str, dt.date, dt.date | None],
) -> pl.DataFrame:
    columns = list(governor.HOLDS)
    return pl.DataFrame([dict(zip(columns, row, strict=True)) for row in rows], schema=governor.HOLDS)


def since_of(ended: pl.DataFrame, previous: dt.date | None = DAY - dt.timedelta(days=1)) -> list[dt.date]:
    return with_resumed(ROWS, ended, DAY, previous).get_column("since").to_list()


def test_a_hold_that_ended_since_the_last_run_moves_the_accounts_catch_up_back_to_its_start() -> None:
    ended = holds(
        ("customer", "C1", None, None, "promise", dt.date(2026, 3, 5), dt.date(2026, 3, 19)),
        ("account", "C3", "A4", None, "dispute", dt.date(2026, 3, 10), dt.date(2026, 3, 19)),
    )
    assert since_of(ended) == [
        dt.date(2026, 3, 4),
        dt.date(2026, 3, 4),
        DAY - dt.timedelta(days=1),
        dt.date(2026, 3, 9),
    ]


def test_holds_that_do_not_stop_contact_end_too_early_or_are_still_on_change_nothing() -> None:
    yesterday = DAY - dt.timedelta(days=1)
    ended = holds(
        ("channel", "C1", None, "email", "opt_out", dt.date(2026, 3, 5), yesterday),  # a channel's
        (
            "customer",
            "C2",
            None,
            None,
            "promise",
            dt.date(2026, 3, 5),
            dt.date(2026, 3, 18),
        ),  # seen yesterday
        ("customer", "C3", None, None, "dispute", dt.date(2026, 3, 5), DAY),  # still in force today
        ("customer", "C1", None, None, "something_else", dt.date(2026, 3, 5), yesterday),  # stops nothing
    )
    assert since_of(ended) == [yesterday] * 4
    # After a gap of runs, a hold that ended within the gap reaches back further than the gap only.
    assert since_of(ended, previous=dt.date(2026, 3, 10))[2] == dt.date(2026, 3, 4)


def test_the_catch_up_plans_the_latest_kept_back_occurrence_once() -> None:
    """A weekly reminder from 03-01 fell on 03-08 and 03-15 while a promise (03-05 to 03-19) held: the
    run of 03-20 plans the one of 03-15 (not both); the run after plans nothing more."""
    weekly = Action("M1", "w", "sms", "overdue_reminder", repeat_every_days=7, max_times=5)
    once = Action("M1", "o", "sms", "overdue_reminder", offset_days=7)
    ended = holds(("customer", "C1", None, None, "promise", dt.date(2026, 3, 5), dt.date(2026, 3, 19)))
    rows = with_resumed(ROWS, ended, DAY, DAY - dt.timedelta(days=1))
    entered, since = rows.get_column("entered_on"), rows.get_column("since")
    assert _falls(weekly, entered, DAY, DAY - dt.timedelta(days=1), since=since).to_list() == [
        dt.date(2026, 3, 15),
        dt.date(2026, 3, 15),
        None,
        None,
    ]
    assert _falls(once, entered, DAY, DAY - dt.timedelta(days=1), since=since).to_list() == [
        dt.date(2026, 3, 8),
        dt.date(2026, 3, 8),
        None,
        None,
    ]
    nxt = DAY + dt.timedelta(days=1)
    later = with_resumed(ROWS, ended, nxt, DAY).get_column("since")
    assert _falls(weekly, entered, nxt, DAY, since=later).to_list() == [None] * 4
