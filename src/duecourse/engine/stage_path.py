"""The days accounts entered their stages, found again from the data when the run did not see them happen.

A daily run sees each stage change on the day it happens. After a gap of days, or on the first run ever,
it did not: the stage history would say "entered on the run's date" for a change that happened days ago,
and a strategy counting days from entering a stage would act on a wrong date. Because a snapshot is a
pure function of the data and the date, the stage of any past day can be computed again; this module
finds, for each account, the stage changes between a lower bound and D with few evaluations.

The search rests on one property (docs/semantics.md, "Stage"): between two days on which money reaches
the account or a due becomes payable ("lowering events"), days past due, delinquency days, missed dues
and the amount past due never decrease, so each stage's conditions, once they hold, keep holding, and
the most severe stage that holds only moves up. Within such a stretch the days in the stage of its last
day form a suffix, found by bisection; across a lowering event the stage may fall, so the search steps
back one event at a time. Each step evaluates every account still searching at once, each as of its own
day, with the set-based engine (``compute_snapshots`` with a per-account ``as_of``).

A step costs about the same for a few accounts as for a few thousand, and the last steps of a search are
many steps of a few accounts each (the one with the most events sets the count: 90 steps for 50 accounts
of a year's history). So once the days left to look at are few (``day_by_day``, in account-days), the
search ends with one evaluation of every one of them: an account copied once per day, each copy as of its
day, in one engine call; each change is then read off day by day, which needs no property at all.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from duecourse.domain.terms import CURRENT_STAGE, Terms
from duecourse.engine.snapshot import compute_snapshots

__all__ = ["stage_path"]

_EPOCH = dt.date(1970, 1, 1)
_FOUND_EMPTY = pl.DataFrame(schema={"account_id": pl.String(), "stage": pl.String(), "entered_on": pl.Date()})
# Account-days evaluated at once to end a search: about 0.2 s of the engine (50 accounts of a year).
DAY_BY_DAY = 20_000


def _day(date: dt.date) -> int:
    return (date - _EPOCH).days


def stage_path(  # noqa: PLR0917 - the inputs of compute_snapshots, then the search's own
    accounts: pl.DataFrame,
    dues: pl.DataFrame,
    payments: pl.DataFrame,
    terms: Terms,
    as_of: dt.date,
    stages: pl.DataFrame,
    lower: pl.DataFrame,
    *,
    day_by_day: int = DAY_BY_DAY,
) -> pl.DataFrame:
    """Every stage change of the searched accounts on a day in [their lower bound, ``as_of``].

    Args:
        accounts, dues, payments, terms: the portfolio, as for ``compute_snapshots``.
        as_of: the run's date D.
        stages: ``account_id``, ``stage``: each searched account's stage as of D (from the run).
        lower: ``account_id``, ``lower`` (Date <= D): the first day the search looks at, per account.
        day_by_day: look at every day left once they are at most this many account-days (0: never).

    Returns:
        ``account_id``, ``stage``, ``entered_on``, sorted by account and date: the account's stage on its
        lower bound (dated the lower bound: it may have been entered earlier, which the search does not
        look at), then the stage entered on each later day the stage differed from the day before; the
        newest row is the stage of D.
    """
    d = _day(as_of)
    state = (
        stages.select("account_id", pl.col("stage").alias("target"))
        .join(
            lower.select("account_id", pl.col("lower").cast(pl.Int32).alias("lower")),
            on="account_id",
            how="inner",
        )
        .with_columns(
            seg_hi=pl.lit(d, dtype=pl.Int32),
            phase=pl.lit("seg"),
            probe=pl.lit(None, dtype=pl.Int32),
            lo=pl.lit(None, dtype=pl.Int32),
            hi=pl.lit(None, dtype=pl.Int32),
            lo_stage=pl.lit(None, dtype=pl.String),
        )
        .sort("account_id")
    )
    if state.is_empty():  # a daily run's usual case: no account to search, no rows to look through
        return _FOUND_EMPTY
    latest = state["lower"].max()
    if isinstance(latest, int) and latest > d:
        raise ValueError("a lower bound of the stage search is after the run's date")
    unknown = state.join(accounts, on="account_id", how="anti")["account_id"]
    if len(unknown):
        raise ValueError(f"stage_path: accounts not in the portfolio: {', '.join(unknown.head(5).to_list())}")
    searched = state.select("account_id")
    accounts = accounts.join(searched, on="account_id", how="semi")
    # In their order: dues without a due_id are taken in the order given (see compute_snapshots).
    dues = dues.join(searched, on="account_id", how="semi", maintain_order="left")
    payments = payments.join(searched, on="account_id", how="semi").filter(pl.col("paid_on") <= as_of)
    events = _lowering_days(dues, payments, d)

    emitted: list[pl.DataFrame] = []
    inputs = _Inputs(accounts, dues, payments, events)
    while state.height:
        if state.height * 2 < inputs.accounts.height:  # fewer accounts to look at: smaller frames
            inputs = inputs.only(state.select("account_id"))
        # Every change on a day after seg_hi is found; the days lower..seg_hi are left.
        left = state.select((pl.col("seg_hi") - pl.col("lower") + 1).sum()).item()
        if left <= day_by_day:
            emitted.append(_every_day(inputs, terms, as_of, state))
            break
        state, done = _enter_segments(state, inputs.events)
        emitted.append(done)
        if state.is_empty():
            break
        seen = _stages_at(inputs, terms, as_of, state.select("account_id", "probe"))
        if seen.height != state.height or seen["seen"].null_count():
            raise AssertionError("stage_path: the engine did not give every probed account a stage")
        state = state.join(seen, on="account_id", how="left")
        state, done = _step(state)
        emitted.append(done)
    emitted = [frame for frame in emitted if frame.height]
    if not emitted:
        return pl.DataFrame(schema={"account_id": pl.String(), "stage": pl.String(), "entered_on": pl.Date()})
    return pl.concat(emitted).sort("account_id", "entered_on")


@dataclass(frozen=True, slots=True)
class _Inputs:
    """The rows of the accounts still searching."""

    accounts: pl.DataFrame
    dues: pl.DataFrame
    payments: pl.DataFrame
    events: pl.DataFrame

    def only(self, ids: pl.DataFrame) -> _Inputs:
        return _Inputs(
            *(
                frame.join(ids, on="account_id", how="semi", maintain_order="left")
                for frame in (self.accounts, self.dues, self.payments, self.events)
            )
        )


def _every_day(inputs: _Inputs, terms: Terms, as_of: dt.date, state: pl.DataFrame) -> pl.DataFrame:
    """The changes of each account on the days lower..seg_hi, from its stage on every one of them.

    The stage on ``lower`` (dated ``lower``), then each day the stage differs from the day before; the
    last is the entry into the stage of seg_hi (``target``), whose end the search found already.
    """
    days = state.select(
        "account_id", pl.int_ranges("lower", pl.col("seg_hi") + 1, dtype=pl.Int32).alias("day")
    ).explode("day")
    copies = days.select("account_id", pl.format("{}@{}", "account_id", "day").alias("copy"), "day")

    def copied(frame: pl.DataFrame) -> pl.DataFrame:
        # In the frame's order (dues without a due_id are taken in the order given, see compute_snapshots).
        joined = frame.join(
            copies.select("account_id", "copy"), on="account_id", how="inner", maintain_order="left"
        )
        return joined.with_columns(account_id=pl.col("copy")).drop("copy")

    accounts = (
        inputs.accounts.join(copies, on="account_id", how="inner")
        .with_columns(account_id=pl.col("copy"), as_of=pl.col("day").cast(pl.Date))
        .drop("copy", "day")
    )
    snaps = compute_snapshots(accounts, copied(inputs.dues), copied(inputs.payments), terms, as_of).select(
        pl.col("account_id").alias("copy"), "stage"
    )
    daily = copies.join(snaps, on="copy", how="left").sort("account_id", "day")
    if daily["stage"].null_count():
        raise AssertionError("stage_path: the engine did not give every copied account a stage")
    first = pl.col("account_id") != pl.col("account_id").shift(1)
    changed = first.fill_null(True) | (pl.col("stage") != pl.col("stage").shift(1))
    return daily.filter(changed).select(
        "account_id", "stage", pl.col("day").cast(pl.Date).alias("entered_on")
    )


def _lowering_days(dues: pl.DataFrame, payments: pl.DataFrame, d: int) -> pl.DataFrame:
    """Per account, the days on or before D money arrived or a due became payable, sorted."""
    paid = payments.select("account_id", pl.col("paid_on").cast(pl.Int32).alias("day"))
    posted = dues.filter(pl.col("posted_on").is_not_null()).select(
        "account_id", pl.col("posted_on").cast(pl.Int32).alias("day")
    )
    return pl.concat([paid, posted]).filter(pl.col("day") <= d).unique().sort("account_id", "day")


def _enter_segments(state: pl.DataFrame, events: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Accounts starting a stretch [L, seg_hi], L the last lowering day <= seg_hi (and >= lower).

    The stage of seg_hi is the target. They probe L; but ``current`` is the least stage, so a stretch
    ending in it is ``current`` throughout: those probe the day before L at once, or are found on
    ``lower``. Returns (the accounts with a probe, the accounts found).
    """
    entering = state.filter(pl.col("phase") == "seg")
    if entering.is_empty():
        return state, _FOUND_EMPTY
    rest = state.filter(pl.col("phase") != "seg")
    first = pl.max_horizontal(pl.col("event").fill_null(pl.col("lower")), "lower")
    least = pl.col("target") == CURRENT_STAGE
    located = (
        entering.sort("account_id", "seg_hi")
        .join_asof(
            events.rename({"day": "event"}),
            left_on="seg_hi",
            right_on="event",
            by="account_id",
            strategy="backward",
            check_sortedness=False,
        )
        .with_columns(first=first)
        .drop("event")
    )
    found = located.filter(least & (pl.col("first") == pl.col("lower")))
    probing = located.filter(~(least & (pl.col("first") == pl.col("lower")))).with_columns(
        phase=pl.when(least).then(pl.lit("before")).otherwise(pl.lit("at_L")),
        probe=pl.when(least).then(pl.col("first") - 1).otherwise("first"),
    )
    done = found.select(
        "account_id", pl.col("target").alias("stage"), pl.col("lower").cast(pl.Date).alias("entered_on")
    )
    return pl.concat([rest, probing.select(rest.columns)]).sort("account_id"), done


def _stages_at(inputs: _Inputs, terms: Terms, as_of: dt.date, probes: pl.DataFrame) -> pl.DataFrame:
    """``account_id``, ``seen``: each probed account's stage as of its own probe day."""
    ids = probes.select("account_id")
    subset = inputs.accounts.join(ids, on="account_id", how="semi").join(
        probes.select("account_id", pl.col("probe").cast(pl.Date).alias("as_of")), on="account_id"
    )
    all_probed = subset.height == inputs.accounts.height
    snaps = compute_snapshots(
        subset,
        inputs.dues
        if all_probed
        else inputs.dues.join(ids, on="account_id", how="semi", maintain_order="left"),
        inputs.payments if all_probed else inputs.payments.join(ids, on="account_id", how="semi"),
        terms,
        as_of,
    )
    return snaps.select("account_id", pl.col("stage").alias("seen"))


def _step(state: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One move of every account's search after its probe; returns (the still searching, the found)."""
    phase, probe, seen, target = pl.col("phase"), pl.col("probe"), pl.col("seen"), pl.col("target")
    same = seen == target
    at_l, before, bisect = phase == "at_L", phase == "before", phase == "bisect"
    # After the probe, the bounds of a bisection: stage(lo) != target, stage(hi) == target.
    state = state.with_columns(
        lo=pl.when(at_l & ~same).then(probe).when(bisect & ~same).then(probe).otherwise("lo"),
        lo_stage=pl.when((at_l | bisect) & ~same).then(seen).otherwise("lo_stage"),
        hi=pl.when(at_l & ~same).then("seg_hi").when(bisect & same).then(probe).otherwise("hi"),
    )
    lo, hi = pl.col("lo"), pl.col("hi")
    bisecting = (at_l | bisect) & ~(at_l & same)
    # Where the stage was entered, when this probe settles it, and the stage before it.
    found_at = (
        pl.when(at_l & same & (probe == pl.col("lower")))
        .then(pl.col("lower"))
        .when(before & ~same)
        .then(probe + 1)
        .when(bisecting & (hi - lo <= 1))
        .then(hi)
    )
    state = state.with_columns(found=found_at)
    found = state.filter(pl.col("found").is_not_null())
    done = found.select(
        "account_id", pl.col("target").alias("stage"), pl.col("found").cast(pl.Date).alias("entered_on")
    )
    # Found after the lower bound: search on for the stage before it, in the days before it.
    more = found.filter(pl.col("found") > pl.col("lower")).with_columns(
        target=pl.when(before).then(seen).otherwise("lo_stage"),
        seg_hi=pl.col("found") - 1,
        phase=pl.lit("seg"),
    )
    going = state.filter(pl.col("found").is_null()).with_columns(
        # In the stage already on L: look at the day before L. Still the same there: the stretch before.
        phase=pl.when(at_l & same)
        .then(pl.lit("before"))
        .when(before & same)
        .then(pl.lit("seg"))
        .otherwise(pl.lit("bisect")),
        seg_hi=pl.when(before & same).then(probe).otherwise("seg_hi"),
        probe=pl.when(at_l & same).then(probe - 1).when(bisecting).then((lo + hi) // 2).otherwise(probe),
    )
    columns = [c for c in state.columns if c not in ("seen", "found")]
    return pl.concat([going.select(columns), more.select(columns)]).sort("account_id"), done
