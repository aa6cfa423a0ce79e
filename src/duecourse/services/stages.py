"""The stage history a run stores: the changes since the previous stored run, each on its true day.

In a daily rhythm (the previous run is the day before), a stage that differs from yesterday's was entered
today. After a gap of days, or on the first run ever, the run searches the days it did not see
(``engine/stage_path.py``) so that each change is stored on the day it happened, and the stage of any
past day can be told from the history.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import polars as pl
from sqlalchemy import Engine

from duecourse.domain.terms import Terms
from duecourse.engine.stage_path import stage_path
from duecourse.store import repo

# On the first run ever, the search looks back at most this many days (or to the account's opening):
# an account in the same stage for longer is recorded as having entered it on that bound.
FIRST_RUN_LOOKBACK_DAYS = 366

_CHANGES = {"account_id": pl.String(), "stage": pl.String(), "entered_on": pl.Date()}


@dataclass(frozen=True, slots=True)
class StageChanges:
    """The changes to store for a run: those entered from ``since`` through the run's date, and the whole
    history through that date of ``new_accounts`` (accounts the previous stored run did not have)."""

    changes: pl.DataFrame
    since: dt.date
    searched: int  # accounts whose days were searched
    new_accounts: pl.Series = field(default_factory=lambda: pl.Series("account_id", [], dtype=pl.String))


@dataclass(frozen=True, slots=True)
class Known:
    """What the store knows before a run of D: the previous stored run's day and each account's stage."""

    previous_day: dt.date | None
    previous: pl.DataFrame  # account_id, previous (the stage on previous_day)


def known_before(engine: Engine, as_of: dt.date) -> Known:
    """The previous stored run before ``as_of`` and its stages (read once per run)."""
    day = repo.previous_run_day(engine, as_of)
    if day is None:
        return Known(None, pl.DataFrame(schema={"account_id": pl.String(), "previous": pl.String()}))
    return Known(day, repo.stages_on(engine, day).select("account_id", pl.col("stage").alias("previous")))


def stage_changes(  # noqa: PLR0917 - the run's inputs, in the order it has them
    engine: Engine,
    terms: Terms,
    as_of: dt.date,
    snaps: pl.DataFrame,
    portfolio: repo.Portfolio,
    known: Known | None = None,
) -> StageChanges:
    """The stage changes of the days from the previous stored run (excluded) through ``as_of``.

    An account the previous run did not have (the first run ever, or one imported since) is searched back
    to its opening, at most ``FIRST_RUN_LOOKBACK_DAYS``; the others from the day after the previous run.

    Args:
        snaps: the run's snapshots (``account_id``, ``stage``, ...).
        portfolio: the accounts, dues and payments the snapshots were computed from (only the accounts
            searched are read from it); a run in chunks calls this once per chunk.
        known: ``known_before(engine, as_of)``, read once by a run in chunks.
    """
    known = known if known is not None else known_before(engine, as_of)
    previous_day, previous = known.previous_day, known.previous
    now = snaps.select("account_id", "stage").join(previous, on="account_id", how="left")
    is_new = pl.col("previous").is_null()
    changed = ~is_new & (pl.col("stage") != pl.col("previous"))
    daily = previous_day == as_of - dt.timedelta(days=1)
    since = previous_day + dt.timedelta(days=1) if previous_day is not None else dt.date.min
    if daily:
        searched = now.filter(is_new)
    else:
        # Also the unchanged accounts to which money came or on which a due became payable in the gap:
        # their stage may have dipped and come back.
        eventful = pl.concat(
            [
                portfolio.payments.filter(pl.col("paid_on").is_between(since, as_of)).select("account_id"),
                portfolio.dues.filter(pl.col("posted_on").is_between(since, as_of)).select("account_id"),
            ]
        )["account_id"].unique()
        searched = now.filter(is_new | changed | pl.col("account_id").is_in(eventful.implode()))
    horizon = as_of - dt.timedelta(days=FIRST_RUN_LOOKBACK_DAYS)
    lower = searched.join(
        portfolio.accounts.select("account_id", "opened_on"), on="account_id", how="left"
    ).select(
        "account_id",
        pl.when(is_new)
        .then(pl.max_horizontal(pl.col("opened_on").fill_null(horizon), pl.lit(horizon, dtype=pl.Date)))
        .otherwise(pl.lit(since, dtype=pl.Date))
        .clip(upper_bound=as_of)
        .alias("lower"),
    )
    found = stage_path(
        portfolio.accounts,
        portfolio.dues,
        portfolio.payments,
        terms,
        as_of,
        searched.select("account_id", "stage"),
        lower,
    )
    # A row on the lower bound of a known account that only repeats its stored stage is no change.
    repeats = (pl.col("entered_on") == since) & (pl.col("stage") == pl.col("previous")).fill_null(False)
    frame = found.join(previous, on="account_id", how="left").filter(~repeats).select(list(_CHANGES))
    if daily:
        today = now.filter(changed).select(
            "account_id", "stage", pl.lit(as_of, dtype=pl.Date).alias("entered_on")
        )
        frame = pl.concat([today, frame]).sort("account_id", "entered_on")
    # On a first run every account is new, and the window (from the start) already covers them all.
    new_accounts = (
        searched.filter(is_new)["account_id"]
        if previous_day is not None
        else pl.Series("account_id", [], dtype=pl.String)
    )
    return StageChanges(
        frame, min(since, as_of) if previous_day else dt.date.min, searched.height, new_accounts
    )
