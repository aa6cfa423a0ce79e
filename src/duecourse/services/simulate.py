"""``duecourse policy simulate``: replay the stored portfolio with a strategy, day by day, and count what it
would send, what the governor would hold back, what it would cost and the busiest day, sending nothing and
storing nothing.

The strategy is a whole ``duecourse.toml`` (the current one, or a proposed file): its stages decide each
account's stage, its actions what falls on each day, its ``[governor]`` the institution's limits, its
``[costs]`` the price of a message. For each day D1..D2, in order:

1. **Stages.** Every account's stage on every day, with the strategy's terms, over the portfolio read
   once: the engine's snapshot as of D2, then the run's search for every change back to D1
   (``engine/stage_path.py``: the stage of each day as a snapshot of that day would give it, with far fewer
   evaluations). The day an account entered its stage: for a stage held on D1, found by the run's
   first-run search (back to the account's opening, at most ``stages.FIRST_RUN_LOOKBACK_DAYS``), for the
   accounts in a stage with actions; afterwards, the day of the change.
2. **Candidates**, as ``contacts.candidates`` finds them, from frames instead of the database
   (``plan_frame``): on a daily rhythm, the occurrences that fall on the day.
3. **The governor** decides each one with the stored holds in force that day and, as the contacts already
   made, the messages the simulation let through on earlier days (a message deferred to tomorrow counts
   tomorrow) plus what the real outbox holds for those days from before D1 (a deferral of the day before,
   a fallback). The outbox's rows planned from D1 on are left out: the simulation stands in for the runs
   of its days (with the current strategy it plans the same keys again), and later runs followed them.

Payments are the stored ones: none are assumed after the last one stored, so a simulation of days to come
shows what the strategy does if nobody pays. Nothing is written: the database is only read, once, before
the first day.

Costs: a message costs ``[costs]``'s price for its channel; an SMS its segments times ``sms_segment``. The
segments of a (kind, locale) are counted once, as the network counts them (``channels/sms.sms_encoding``),
on the text rendered with representative data (the letters' sample account): the SMS templates name only
the issuer and the links, whose length is the same for every account, so the count is each real message's.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import inspect

from duecourse.bootstrap import App
from duecourse.config import PRE_DUE_STAGE, Config
from duecourse.domain.errors import Problem, ProblemsError
from duecourse.engine import governor
from duecourse.engine.snapshot import compute_snapshots
from duecourse.engine.stage_path import stage_path
from duecourse.letters import LetterError
from duecourse.letters.kinds import JURISDICTION_OF, LOCALE_OF
from duecourse.rulepacks.packs import task_rules
from duecourse.services import attributes, consent, simulate_statutory, tasks, third_parties
from duecourse.services.contacts import (
    arms_for,
    contact_frame,
    contacts_query,
    decide_with_fallbacks,
    governed_customer,
    hold_frame,
    holds_query,
    local_days,
    plan_frame,
    policy_of,
    pre_due_rows,
    with_resumed,
)
from duecourse.services.stages import FIRST_RUN_LOOKBACK_DAYS
from duecourse.store import repo
from duecourse.store.frames import read_frames

# A longer range is almost surely a typing mistake (and would take minutes); split it if it is meant.
MAX_DAYS = 366
# Outbox states that no longer count as a contact (as for the run's daily cap).
# How far past D2 the outbox's rows are read: deferrals of the last days land after it.
_OUTBOX_REACH_DAYS = 32
_VERDICTS = ("planned", "deferred", "suppressed")
_REPRESENTATIVE = "representative data"
_UNITS = {"GSM-7": "septets", "UCS-2": "UTF-16 units"}
_TABLES = ("customers", "accounts", "dues", "payments", "holds", "outbox")


@dataclass(frozen=True, slots=True)
class ChannelCost:
    """What one channel's messages would cost.

    Attributes:
        channel: letter, email, sms, push.
        messages: messages that would go (planned or deferred; suppressed ones cost nothing).
        units: what is billed: messages, or SMS segments.
        unit: ``message`` or ``segment``.
        unit_cost: the price of one unit (``[costs]``; 0 when the channel is not priced).
        cost: ``units × unit_cost``, exact.
    """

    channel: str
    messages: int
    units: int
    unit: str
    unit_cost: Decimal
    cost: Decimal


@dataclass(frozen=True, slots=True)
class SmsShape:
    """How the texts of one kind and locale travel: ``encoding`` GSM-7 or UCS-2, ``units`` (septets or
    UTF-16 code units) of the text, ``segments`` billed per text, ``messages`` that would go; ``basis``
    says what was rendered (or why nothing could be)."""

    kind: str
    locale: str
    encoding: str
    units: int
    segments: int
    messages: int
    basis: str


@dataclass(frozen=True, slots=True)
class Simulation:
    """What a strategy would have done on the days ``first`` through ``last``.

    Attributes:
        strategy: the configuration simulated (its file, or ``<default>``).
        accounts: accounts in the portfolio.
        reached: accounts (and ``customers_reached``: customers) that at least one message would go to.
        messages: messages by (the day of the run that decided them, channel, verdict).
        by_rule: deferrals and suppressions by (verdict, rule id).
        load: messages that would go by (the customer's local day they are scheduled on, channel), for the
            days of the range; ``beyond`` counts those deferred past ``last``.
        peak: per channel and ``all``: the day of ``load`` with the most messages (the earliest of equal
            days) and their number.
        costs: per channel that would send; ``currency`` and ``costs_from`` (the file whose ``[costs]``).
        sms: the shape of every (kind, locale) of the texts that would go.
        notes: what the figures assume, in words.
        seconds: the time the simulation took (reading, then the days).
        decisions: every decision (``day, key, account_id, customer_id, channel, kind, locale, verdict,
            rule_id, local_day``), for a closer look; not printed.
    """

    first: dt.date
    last: dt.date
    strategy: str
    accounts: int
    reached: int
    customers_reached: int
    messages: dict[tuple[dt.date, str, str], int]
    by_rule: dict[tuple[str, str], int]
    load: dict[tuple[dt.date, str], int]
    beyond: int
    peak: dict[str, tuple[dt.date, int]]
    costs: tuple[ChannelCost, ...]
    currency: str
    costs_from: str
    sms: tuple[SmsShape, ...]
    notes: tuple[str, ...]
    seconds: dict[str, float]
    decisions: pl.DataFrame

    @property
    def total_cost(self) -> Decimal:
        return sum((c.cost for c in self.costs), Decimal(0))

    def channels(self) -> list[str]:
        """The channels that appear, in the governor's order."""
        seen = {channel for _, channel, _ in self.messages}
        return [c for c in governor.CHANNELS if c in seen] + sorted(seen - set(governor.CHANNELS))


def check_range(first: dt.date, last: dt.date) -> list[Problem]:
    """The problems of a simulated range: backwards, or longer than ``MAX_DAYS``."""
    if first > last:
        return [
            Problem("simulate.bad_range", f"--from {first} is after --to {last}: no day is in that range")
        ]
    days = (last - first).days + 1
    if days > MAX_DAYS:
        return [
            Problem(
                "simulate.bad_range",
                f"{first} to {last} is {days} days; a simulation covers at most {MAX_DAYS}: split the range",
            )
        ]
    return []


def simulate(app: App, first: dt.date, last: dt.date, config: Config | None = None) -> Simulation:
    """Replay the stored portfolio from ``first`` through ``last`` with ``config`` (None: the app's own)
    and count what it would send; nothing is sent or stored."""
    problems = check_range(first, last)
    if problems:
        raise ProblemsError(problems)
    config = config if config is not None else app.config
    t0 = time.perf_counter()
    stored = _read(app, first, last)
    _check_portfolio(stored.portfolio, config)
    t1 = time.perf_counter()
    decided = _replay(replace(app, config=config), stored, first, last)
    t2 = time.perf_counter()
    return _summary(app, config, stored, decided, first, last, {"read": t1 - t0, "days": t2 - t1})


# ---------------------------------------------------------------- reading, once


@dataclass(frozen=True, slots=True)
class _Stored:
    """What the simulation reads of the store, in one go: the portfolio, every hold, and the outbox's
    contacts of the messages planned before the range (``governor.CONTACTS``), and how many rows planned
    from its first day on were left out."""

    portfolio: repo.Portfolio
    holds: pl.DataFrame
    contacts: pl.DataFrame
    replaced: int


def _check_store(app: App) -> None:
    """Refuse a database that is not there or not initialised (reading would create an empty SQLite file
    or fail on a missing table)."""
    url = app.engine.url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        if not Path(str(url.database)).exists():
            raise ProblemsError(
                [
                    Problem(
                        "simulate.no_database",
                        f"there is no database at {url.database}: run `duecourse init` and import the "
                        "portfolio first",
                    )
                ]
            )
    names = set(inspect(app.engine).get_table_names())
    missing = [name for name in _TABLES if name not in names]
    if missing:
        raise ProblemsError(
            [
                Problem(
                    "simulate.no_database",
                    f"the database has no {', '.join(missing)} table(s): run `duecourse init` and import "
                    "the portfolio first",
                )
            ]
        )


def _read(app: App, first: dt.date, last: dt.date) -> _Stored:
    _check_store(app)
    portfolio = repo.load_portfolio(app.engine)
    # A proposed strategy's segments may choose by jurisdiction: the accounts carry it whatever the strategy.
    portfolio = replace(portfolio, accounts=repo.with_jurisdiction(portfolio.accounts, portfolio.customers))
    needed = app.config.terms.needed_attributes
    if needed:  # the values in force on the last day, for every day (as a run of that day would use them)
        values = attributes.values_as_of(app.engine, last, needed)
        portfolio = replace(portfolio, accounts=attributes.with_attributes(portfolio.accounts, values))
    start = dt.datetime.combine(first - dt.timedelta(days=2), dt.time(), tzinfo=dt.UTC)
    end = dt.datetime.combine(last + dt.timedelta(days=_OUTBOX_REACH_DAYS), dt.time(), tzinfo=dt.UTC)
    read = read_frames(
        app.engine,
        {
            "holds": holds_query(),
            "outbox": contacts_query(start, end),
        },
    )
    rows = read["outbox"]
    # Rows planned from D1 on come from runs the simulation stands in for (those of its days) or that
    # follow them (their decisions depend on the days it replays): only what was planned before counts.
    kept = rows.filter(pl.col("planned_on") < first)
    return _Stored(portfolio, hold_frame(read["holds"]), contact_frame(kept), rows.height - kept.height)


def _check_portfolio(portfolio: repo.Portfolio, config: Config) -> None:
    """Refuse an empty portfolio, and a strategy that does not define a product the accounts use."""
    if portfolio.accounts.is_empty():
        raise ProblemsError(
            [Problem("simulate.no_portfolio", "no accounts are imported: there is nothing to simulate")]
        )
    used = portfolio.accounts.group_by("product_code").len().sort("product_code")
    problems = [
        Problem(
            "simulate.unknown_product",
            f"{n} account(s) have product '{code}', which the strategy does not define",
            config.source,
        )
        for code, n in used.iter_rows()
        if code not in config.terms.products
    ]
    if problems:
        raise ProblemsError(problems)


# ---------------------------------------------------------------- the days


def _replay(app: App, stored: _Stored, first: dt.date, last: dt.date) -> pl.DataFrame:
    """Every decision of every simulated day: ``day, key, account_id, customer_id, channel, kind, locale,
    verdict, rule_id, local_day`` (``local_day``: the customer's day it is scheduled on; null when
    suppressed)."""
    config = app.config
    portfolio = stored.portfolio
    staged = sorted(
        {action.stage for action in config.actions} | ({PRE_DUE_STAGE} if config.pre_due else set())
    )
    info = _account_info(portfolio)
    policy = policy_of(config)
    calls = pl.DataFrame(schema=governor.CALLS)
    contacts = stored.contacts
    periods = _stage_periods(app, portfolio, first, last, staged)
    # Each account's arm in the strategy's experiments: the recorded one, else its hash's (nothing is
    # recorded here).
    arms = arms_for(app, first, periods.get_column("account_id"))
    required = config.governor.consent_required
    records = consent.records_before(app.engine, last) if required else None
    people = portfolio.customers.select("customer_id", "jurisdiction")
    law = simulate_statutory.applies(config)
    law_state = simulate_statutory.read_state(app.engine, first, config) if law else None
    law_inputs = simulate_statutory.inputs(config, portfolio, info) if law else None
    # Third parties the customers named, for the actions to = "contact"; the messages to them the
    # simulation lets through count as communications on the days after (US-3P-01: once only).
    named = third_parties.contacts_of(app.engine) if any(a.to == "contact" for a in config.actions) else None
    asked = third_parties.ThirdPartyInputs.empty().earlier
    days: list[pl.DataFrame] = []
    day = first
    while day <= last:
        rows = (
            periods.filter((pl.col("start") <= day) & (pl.col("end") >= day))
            .select("account_id", "stage", "entered_on")
            .join(info, on="account_id", how="inner")
        )
        rows = with_resumed(rows, stored.holds, day, None)
        more = _pre_due(config, portfolio, rows.filter(pl.col("stage") == PRE_DUE_STAGE), day)
        if law_state is not None and law_inputs is not None:
            more += simulate_statutory.parts(
                config,
                portfolio,
                law_inputs,
                law_state,
                rows.select("account_id", "stage"),
                day,
                stored.holds,
            )
        found = plan_frame(config, rows, day, None, arms=arms, extra=("locale",), more=more, contacts=named)
        found = _one_notice(found)
        if found.height:
            day_holds = stored.holds
            if records is not None:  # the channels closed for want of consent that day
                latest = consent.latest(records.filter(pl.col("since") <= day))
                day_holds = pl.concat([day_holds, consent.holds_for(people, latest, required, day)])
            found, decided = decide_with_fallbacks(
                found,
                holds=day_holds,
                contacts=contacts.filter(pl.col("local_day") >= day - dt.timedelta(days=1)),
                calls=calls,
                as_of=day,
                policy=policy,
                task_inputs=_task_inputs(config, portfolio, found, day, stored.holds),
                third_party_inputs=_third_party_inputs(app, found, day, first, asked),
            )
            result = found.select(
                "key",
                "account_id",
                "customer_id",
                "channel",
                "kind",
                "locale",
                pl.col("timezones").list.first().alias("timezone"),
                "contact_id",
            ).join(decided.select("key", "verdict", "rule_id", "scheduled_at"), on="key", how="inner")
            result = result.with_columns(
                local_days(result, "scheduled_at").alias("local_day"), pl.lit(day).alias("day")
            )
            allowed = result.filter(pl.col("verdict") != "suppressed")
            contacts = pl.concat(
                [
                    contacts,
                    allowed.with_columns(governed_customer().alias("customer_id")).select(
                        list(governor.CONTACTS)
                    ),
                ]
            )
            asked = pl.concat(
                [
                    asked,
                    allowed.filter(pl.col("contact_id") != "").select(
                        "contact_id", "key", pl.lit(day, pl.Date()).alias("planned_on")
                    ),
                ]
            )
            if law_state is not None and law_inputs is not None:
                simulate_statutory.record(law_state, allowed, law_inputs, day)
            days.append(result.drop("timezone", "scheduled_at", "contact_id"))
        day += dt.timedelta(days=1)
    if not days:
        return pl.DataFrame(schema=_DECIDED)
    return pl.concat(days).select(list(_DECIDED))


def snapshots_of(config: Config, portfolio: repo.Portfolio, ids: pl.DataFrame, day: dt.date) -> pl.DataFrame:
    """The engine's snapshots of the accounts ``ids`` (an ``account_id`` column) alone, as of ``day``."""
    return compute_snapshots(
        portfolio.accounts.join(ids, on="account_id", how="semi"),
        portfolio.dues.join(ids, on="account_id", how="semi"),
        portfolio.payments.join(ids, on="account_id", how="semi"),
        config.terms,
        day,
    )


def _one_notice(found: pl.DataFrame) -> pl.DataFrame:
    """A notice of a kind the law requires that the strategy itself plans for the account that day takes
    the place of the law's (one letter), as in the run (``services/statutory.py``)."""
    law = found.filter(pl.col("action").str.starts_with("statutory-"))
    if law.is_empty():
        return found
    own = found.filter(~pl.col("action").str.starts_with("statutory-")).select("account_id", "kind").unique()
    dropped = law.join(own, on=["account_id", "kind"], how="semi").select("key")
    return found.join(dropped, on="key", how="anti")


def _third_party_inputs(
    app: App, found: pl.DataFrame, day: dt.date, first: dt.date, asked: pl.DataFrame
) -> third_parties.ThirdPartyInputs | None:
    """What the third parties' rules read, as far as the simulation knows it: the store's facts (the
    contacts, their stops, the customers' contact points found bad, the outbox's messages planned before
    the first simulated day) and the messages to contacts the simulation let through on earlier days. The
    simulated messages to the customers are not counted as gone through: nobody knows how they would end."""
    rows = found.filter(pl.col("contact_id") != "")
    if rows.is_empty():
        return None
    with app.engine.connect() as connection:
        read = third_parties.read_inputs(
            connection,
            rows,
            day,
            app.config.governor.third_party_contact_in,
            tuple(app.config.location_agents),
        )
    return replace(
        read,
        earlier=pl.concat([read.earlier.filter(pl.col("planned_on") < first), asked]),
        through=read.through.filter(pl.col("planned_on") < first),
    )


def _task_inputs(
    config: Config, portfolio: repo.Portfolio, found: pl.DataFrame, day: dt.date, holds: pl.DataFrame
) -> tasks.TaskInputs:
    """What the tasks' rules read, as far as the simulation knows it: the stored holds (for the bars),
    the institution's statutes of limitations and, for the tasks a limitation concerns (a US legal
    review), the accounts' ages as of the day (the engine's oldest unpaid due for those accounts only,
    their last payment). The notices a task waits for are not simulated: such tasks wait, as they would
    with no notice sent."""
    limits = tasks.limits_of(config.governor)
    held = (
        holds.filter(pl.col("starts_on") <= day)
        .select(list(tasks.HOLDS_EVER))
        .cast(pl.Schema(tasks.HOLDS_EVER))
    )
    rows = found.filter(tasks.is_task())
    limited = {
        f"{x.jurisdiction}|{x.task}"
        for j in rows.get_column("jurisdiction").unique().to_list()
        for x in task_rules(j).limitations
    }
    ids = (
        rows.filter(pl.concat_str("jurisdiction", "kind", separator="|").is_in(sorted(limited)))
        .select("account_id")
        .unique()
    )
    empty = tasks.TaskInputs.empty(config.letters.deadlines, limits)
    if ids.is_empty():
        return tasks.TaskInputs(empty.notices, held, empty.deadlines, empty.ages, limits)
    oldest = snapshots_of(config, portfolio, ids, day).select("account_id", "oldest_unpaid_due_date")
    paid = (
        portfolio.payments.join(ids, on="account_id", how="semi")
        .filter(pl.col("paid_on") <= day)
        .group_by("account_id")
        .agg(pl.col("paid_on").max().alias("last_paid_on"))
    )
    region = (
        portfolio.accounts.join(ids, on="account_id", how="semi")
        .select("account_id", "customer_id")
        .join(portfolio.customers.select("customer_id", "region"), on="customer_id", how="left")
    )
    ages = (
        region.join(oldest, on="account_id", how="left")
        .join(paid, on="account_id", how="left")
        .select(list(tasks.AGES))
        .cast(pl.Schema(tasks.AGES))
    )
    return tasks.TaskInputs(empty.notices, held, empty.deadlines, ages, limits)


def _pre_due(
    config: Config, portfolio: repo.Portfolio, current: pl.DataFrame, day: dt.date
) -> list[pl.DataFrame]:
    """The ``[[strategy.pre_due]]`` reminders that fall on ``day``, as the run finds them
    (``contacts._pre_due_parts``): ``-offset_days`` before a due date, to the accounts current that day
    (``current``: their planning rows) whose credit as of the day does not cover that due (a card's
    minimum, else the amount). The credit is the engine's, computed for those accounts only."""
    found: list[pl.DataFrame] = []
    if current.is_empty():
        return found
    for position, action in enumerate(config.pre_due):
        due_day = day + dt.timedelta(days=-action.offset_days)
        needed = (
            portfolio.dues.filter(pl.col("due_date") == due_day)
            .join(current.select("account_id"), on="account_id", how="semi")
            .group_by("account_id")
            .agg(pl.coalesce("minimum_minor", "amount_minor").sum().alias("needed_minor"))
        )
        if needed.is_empty():
            continue
        ids = needed.select("account_id")
        credit = snapshots_of(config, portfolio, ids, day).select("account_id", "credit_minor")
        rows = (
            current.join(needed, on="account_id")
            .join(credit, on="account_id")
            .filter(pl.col("credit_minor") < pl.col("needed_minor"))
            .with_columns(pl.lit(due_day, pl.Date()).alias("due_date"))
            .drop("entered_on", "since", strict=False)
        )
        if rows.height:
            found.append(pre_due_rows(rows, action, position, config.terms.deepest()))
    return found


_DECIDED: dict[str, pl.DataType] = {
    "day": pl.Date(),
    "key": pl.String(),
    "account_id": pl.String(),
    "customer_id": pl.String(),
    "channel": pl.String(),
    "kind": pl.String(),
    "locale": pl.String(),
    "verdict": pl.String(),
    "rule_id": pl.String(),
    "local_day": pl.Date(),
}


def _account_info(portfolio: repo.Portfolio) -> pl.DataFrame:
    """Per account what planning needs of it and its customer; the locale of its texts is the customer's,
    else the jurisdiction's (as the letter data takes it)."""
    return portfolio.accounts.select("account_id", "customer_id", "product_code").join(
        portfolio.customers.select(
            "customer_id",
            "timezone",
            "jurisdiction",
            pl.col("locale")
            .replace("", None)
            .fill_null(pl.col("jurisdiction").replace_strict(LOCALE_OF, default=None))
            .alias("locale"),
        ),
        on="customer_id",
        how="left",
    )


def _stage_periods(
    app: App, portfolio: repo.Portfolio, first: dt.date, last: dt.date, staged: Sequence[str]
) -> pl.DataFrame:
    """``account_id, stage, start, end, entered_on``: each stretch of days from ``first`` through ``last``
    an account spends in a stage with actions, and the day it entered that stage.

    The stage of every account on every day is that of the engine as of the day: the stage of ``last``,
    then the run's search (``engine/stage_path.py``) for every change back to ``first`` (the same stages
    as a snapshot of each day, with far fewer evaluations: 4 s instead of 15 s for 21,518 accounts over
    30 days). A stretch that starts on ``first`` was entered on the day the run's first-run search finds.
    """
    if not staged:
        schema = {"account_id": pl.String(), "stage": pl.String(), "start": pl.Date(), "end": pl.Date()}
        return pl.DataFrame(schema={**schema, "entered_on": pl.Date()})
    terms = app.config.terms
    accounts, dues, payments = portfolio.accounts, portfolio.dues, portfolio.payments
    final = compute_snapshots(accounts, dues, payments, terms, last).select("account_id", "stage")
    lower = final.select("account_id", pl.lit(first, pl.Date()).alias("lower"))
    changes = stage_path(accounts, dues, payments, terms, last, final, lower)
    periods = changes.sort("account_id", "entered_on").select(
        "account_id",
        "stage",
        pl.col("entered_on").alias("start"),
        (pl.col("entered_on").shift(-1).over("account_id") - pl.duration(days=1))
        .fill_null(pl.lit(last, pl.Date()))
        .alias("end"),
    )
    periods = periods.filter(pl.col("stage").is_in(list(staged)))
    # The day of entry matters only to the stages' actions (the pre-due reminders of ``current`` do not
    # count from it): the first-run search is not run for accounts current on the first day.
    searched = periods.filter((pl.col("start") == first) & (pl.col("stage") != PRE_DUE_STAGE))
    entered = _first_entries(app, portfolio, searched, first)
    return periods.join(entered, on="account_id", how="left").with_columns(
        pl.when(pl.col("start") == first)
        .then(pl.col("entered_on"))
        .otherwise(pl.col("start"))
        .alias("entered_on")
    )


# The first-run search looks back this far first, then further only for the accounts that held their stage
# all along: most accounts entered their stage within weeks, and a search's cost grows with the days.
_FIRST_REACHES = (31, 92, FIRST_RUN_LOOKBACK_DAYS)


def _first_entries(app: App, portfolio: repo.Portfolio, on_first: pl.DataFrame, day: dt.date) -> pl.DataFrame:
    """``account_id, entered_on``: the day each account of ``on_first`` (``account_id, stage`` on ``day``)
    entered its stage, as a first run finds it (``services/stages.py``: searched back to the account's
    opening, at most ``FIRST_RUN_LOOKBACK_DAYS``).

    Searched in widening windows (``_FIRST_REACHES``): a change found inside a window is the newest one
    of the run's whole window too; an account in its stage on the window's first day is searched again
    before it, from that day (its stage then is the stage of ``day``)."""
    horizon = day - dt.timedelta(days=FIRST_RUN_LOOKBACK_DAYS)
    pending = on_first.join(portfolio.accounts.select("account_id", "opened_on"), on="account_id").select(
        "account_id",
        "stage",
        pl.max_horizontal(pl.col("opened_on").fill_null(horizon), pl.lit(horizon, pl.Date()))
        .clip(upper_bound=day)
        .alias("bound"),
    )
    settled = [pl.DataFrame(schema={"account_id": pl.String(), "entered_on": pl.Date()})]
    upper = day
    for reach in _FIRST_REACHES:
        if pending.is_empty():
            break
        floor = day - dt.timedelta(days=reach)
        pending = pending.with_columns(
            pl.max_horizontal("bound", pl.lit(floor, pl.Date())).clip(upper_bound=upper).alias("lower")
        )
        found = stage_path(
            portfolio.accounts,
            portfolio.dues,
            portfolio.payments,
            app.config.terms,
            upper,
            pending.select("account_id", "stage"),
            pending.select("account_id", "lower"),
        )
        # The newest row of each account is its stage of ``upper``, and the day it entered it.
        newest = found.group_by("account_id").agg(pl.col("entered_on").max()).join(pending, on="account_id")
        done = newest.filter((pl.col("entered_on") > pl.col("lower")) | (pl.col("lower") == pl.col("bound")))
        settled.append(done.select("account_id", "entered_on"))
        pending = pending.join(done, on="account_id", how="anti").drop("lower")
        upper = floor
    return pl.concat(settled)


# ---------------------------------------------------------------- the figures


def _summary(
    app: App,
    config: Config,
    stored: _Stored,
    decided: pl.DataFrame,
    first: dt.date,
    last: dt.date,
    seconds: dict[str, float],
) -> Simulation:
    messages = {
        (day, str(channel), str(verdict)): int(n)
        for day, channel, verdict, n in decided.group_by("day", "channel", "verdict").len().iter_rows()
    }
    by_rule = {
        (str(verdict), str(rule)): int(n)
        for verdict, rule, n in decided.filter(pl.col("verdict") != "planned")
        .group_by("verdict", "rule_id")
        .len()
        .iter_rows()
    }
    going = decided.filter(pl.col("verdict") != "suppressed")
    inside = going.filter(pl.col("local_day") <= last)
    load = {
        (day, str(channel)): int(n)
        for day, channel, n in inside.group_by("local_day", "channel").len().iter_rows()
    }
    peak = _peaks(load)
    costs_config, costs_from = (
        (config, config.source)
        if config.costs.currency or not app.config.costs.currency
        else (app.config, app.config.source)
    )
    shapes = _sms_shapes(config, going.filter(pl.col("channel") == "sms"))
    costs = _costs(costs_config, going, shapes)
    notes = _notes(stored, first, last, costs_config, costs_from, config)
    return Simulation(
        first=first,
        last=last,
        strategy=config.source,
        accounts=stored.portfolio.accounts.height,
        reached=going.get_column("account_id").n_unique(),
        customers_reached=going.get_column("customer_id").n_unique(),
        messages=messages,
        by_rule=by_rule,
        load=load,
        beyond=going.height - inside.height,
        peak=peak,
        costs=costs,
        currency=costs_config.costs.currency,
        costs_from=costs_from if costs_config.costs.currency else "",
        sms=shapes,
        notes=notes,
        seconds={k: round(v, 3) for k, v in seconds.items()},
        decisions=decided,
    )


def _peaks(load: Mapping[tuple[dt.date, str], int]) -> dict[str, tuple[dt.date, int]]:
    """Per channel and in all, the day with the most messages; the earliest of equal days."""
    totals: dict[str, dict[dt.date, int]] = {}
    for (day, channel), n in load.items():
        for name in (channel, "all"):
            totals.setdefault(name, {})
            totals[name][day] = totals[name].get(day, 0) + n
    return {
        name: min(days.items(), key=lambda item: (-item[1], item[0])) for name, days in sorted(totals.items())
    }


def _sms_shapes(config: Config, texts: pl.DataFrame) -> tuple[SmsShape, ...]:
    """The encoding and segments of each (kind, locale) of ``texts``, each rendered once."""
    from duecourse.channels.content import sample_contact_data, sample_data, sample_links, sms_text
    from duecourse.channels.sms import sms_encoding
    from duecourse.domain.strategy import CONTACT_KINDS

    shapes = []
    for kind, locale, n in texts.group_by("kind", "locale").len().sort("kind", "locale").iter_rows():
        issuer = config.issuers.get(JURISDICTION_OF.get(str(locale), ""))
        try:
            if issuer is None:
                raise LetterError(f"no issuer for the locale {locale}")
            text = sms_text(
                str(kind),
                str(locale),
                (sample_contact_data if kind in CONTACT_KINDS else sample_data)(
                    config, str(kind), str(locale)
                ),
                sample_links(issuer, str(locale)),
            )
        except LetterError as exc:
            # Such a text would fail when rendered (the dispatcher falls back); costed as one segment.
            basis = f"not rendered ({exc}): 1 segment counted"
            shapes.append(SmsShape(str(kind), str(locale), "?", 0, 1, int(n), basis))
            continue
        shape = sms_encoding(text)
        shapes.append(
            SmsShape(
                str(kind), str(locale), shape.encoding, shape.units, shape.segments, int(n), _REPRESENTATIVE
            )
        )
    return tuple(shapes)


def _costs(config: Config, going: pl.DataFrame, shapes: Sequence[SmsShape]) -> tuple[ChannelCost, ...]:
    prices = config.costs
    counts = dict(going.group_by("channel").len().iter_rows())
    out = []
    for channel in [c for c in governor.CHANNELS if c in counts] + sorted(
        set(counts) - set(governor.CHANNELS)
    ):
        n = int(counts[channel])
        if channel == "sms":
            units = sum(shape.segments * shape.messages for shape in shapes)
            price = prices.sms_segment
            out.append(ChannelCost(channel, n, units, "segment", price, units * price))
        else:
            price = prices.per_message.get(channel, Decimal(0))
            out.append(ChannelCost(channel, n, n, "message", price, n * price))
    return tuple(out)


def _notes(
    stored: _Stored, first: dt.date, last: dt.date, costs_config: Config, costs_from: str, config: Config
) -> tuple[str, ...]:
    notes = []
    paid = stored.portfolio.payments.get_column("paid_on").max()
    if isinstance(paid, dt.date) and paid < last:
        notes.append(f"payments: the stored ones (the last on {paid}); none are assumed after it")
    elif not isinstance(paid, dt.date):
        notes.append("payments: none are stored; none are assumed")
    in_force = stored.holds.filter(
        (pl.col("starts_on") <= last) & (pl.col("ends_on").is_null() | (pl.col("ends_on") >= first))
    ).height
    notes.append(f"holds: {in_force} stored hold(s) in force during the range, each on its own days")
    notes.append(
        f"outbox: {stored.contacts.height:,} message(s) planned before {first} and going from "
        f"{first - dt.timedelta(days=2)} on count against the daily cap; {stored.replaced:,} planned from "
        f"{first} on are left out (the simulation stands in for those runs)"
    )
    if not config.actions and not config.pre_due:
        notes.append(
            f"the strategy ({config.source}) has no actions: only the notices the law requires would be sent"
        )
    if not costs_config.costs.currency:
        notes.append("costs: no [costs] table in the strategy or the configuration; every message costs 0")
    elif costs_from != config.source:
        notes.append(f"costs: the strategy has no [costs]; the prices of {costs_from} are used")
    return tuple(notes)


# ---------------------------------------------------------------- showing it


def simulation_data(sim: Simulation) -> dict[str, Any]:
    """The simulation as JSON-ready data (amounts as strings, exact)."""
    return {
        "ok": True,
        "from": sim.first.isoformat(),
        "to": sim.last.isoformat(),
        "strategy": sim.strategy,
        "accounts": sim.accounts,
        "accounts_reached": sim.reached,
        "customers_reached": sim.customers_reached,
        "messages": [
            {"day": day.isoformat(), "channel": channel, "verdict": verdict, "count": n}
            for (day, channel, verdict), n in sorted(sim.messages.items())
        ],
        "by_rule": [
            {"verdict": verdict, "rule_id": rule, "count": n}
            for (verdict, rule), n in sorted(sim.by_rule.items())
        ],
        "load": [
            {"day": day.isoformat(), "channel": channel, "count": n}
            for (day, channel), n in sorted(sim.load.items())
        ],
        "deferred_beyond_range": sim.beyond,
        "peak": {name: {"day": day.isoformat(), "count": n} for name, (day, n) in sim.peak.items()},
        "costs": {
            "currency": sim.currency,
            "prices_from": sim.costs_from,
            "channels": [
                {
                    "channel": c.channel,
                    "messages": c.messages,
                    "units": c.units,
                    "unit": c.unit,
                    "unit_cost": str(c.unit_cost),
                    "cost": str(c.cost),
                }
                for c in sim.costs
            ],
            "total": str(sim.total_cost),
        },
        "sms": [
            {
                "kind": s.kind,
                "locale": s.locale,
                "encoding": s.encoding,
                "units": s.units,
                "segments": s.segments,
                "messages": s.messages,
                "basis": s.basis,
            }
            for s in sim.sms
        ],
        "notes": list(sim.notes),
        "seconds": sim.seconds,
    }


def _table(header: Sequence[str], rows: Iterable[Sequence[object]], right_from: int = 1) -> list[str]:
    """Plain columns: the first ``right_from`` left-aligned, the others right-aligned."""
    cells = [[str(v) for v in header], *[[str(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return [
        "  "
        + "  ".join(
            cell.ljust(width) if i < right_from else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in cells
    ]


def _amounts(values: Sequence[Decimal], currency: str) -> list[str]:
    """Exact amounts shown with as many decimals as the most precise needs (at least the currency's)."""
    from duecourse.domain.money import CURRENCIES

    spec = CURRENCIES.get(currency)
    places = max([spec.minor_digits if spec else 2, *(max(0, -int(v.as_tuple().exponent)) for v in values)])
    return [f"{v:,.{places}f}" for v in values]


def simulation_text(sim: Simulation) -> str:
    """The simulation as a report: messages by day and channel, rules, costs, the peak, the assumptions."""
    days = (sim.last - sim.first).days + 1
    going = sum(n for (_, _, verdict), n in sim.messages.items() if verdict != "suppressed")
    held = sum(n for (_, _, verdict), n in sim.messages.items() if verdict == "suppressed")
    lines = [
        f"policy simulate {sim.first} to {sim.last} ({days} days): strategy {sim.strategy}, "
        f"{sim.accounts:,} accounts; nothing was sent or stored.",
        f"{sim.reached:,} accounts of {sim.customers_reached:,} customers would hear from us: "
        f"{going:,} messages ({held:,} more suppressed).",
        "",
        "Messages each day's run decides, by channel (deferred ones go on a later day, suppressed ones not "
        "at all):",
    ]
    channels = sim.channels()
    rows: list[list[object]] = []
    totals = [0] * (len(channels) + 3)
    day = sim.first
    while day <= sim.last:
        per = [sum(sim.messages.get((day, c, v), 0) for v in ("planned", "deferred")) for c in channels]
        row = [
            *per,
            sum(per),
            sum(sim.messages.get((day, c, "deferred"), 0) for c in channels),
            sum(sim.messages.get((day, c, "suppressed"), 0) for c in channels),
        ]
        totals = [t + n for t, n in zip(totals, row, strict=True)]
        rows.append([day, *(f"{n:,}" for n in row)])
        day += dt.timedelta(days=1)
    if channels:
        rows.append(["all", *(f"{n:,}" for n in totals)])
        lines += _table(["day", *channels, "messages", "deferred", "suppressed"], rows)
    else:
        lines.append("  none: no action of the strategy falls on these days")

    lines += ["", "Deferred and suppressed, by rule:"]
    if sim.by_rule:
        lines += _table(
            ["verdict", "rule", "messages"],
            [[v, r, f"{n:,}"] for (v, r), n in sorted(sim.by_rule.items())],
            2,
        )
    else:
        lines.append("  none")

    where = f", prices from {sim.costs_from}" if sim.costs_from else ""
    lines += ["", f"Cost of the messages that would go ({sim.currency or 'no prices'}{where}):"]
    if sim.costs:
        shown = _amounts([*(c.cost for c in sim.costs), sim.total_cost], sim.currency)
        cost_rows: list[list[object]] = [
            [c.channel, f"{c.messages:,}", f"{c.units:,} {c.unit}s", c.unit_cost, amount]
            for c, amount in zip(sim.costs, shown, strict=False)
        ]
        cost_rows.append(["total", f"{sum(c.messages for c in sim.costs):,}", "", "", shown[-1]])
        lines += _table(["channel", "messages", "billed", "unit cost", "cost"], cost_rows)
    else:
        lines.append("  none")
    if sim.sms:
        lines += [
            "  SMS segments as the network counts them (GSM-7: 160, 153 a part; UCS-2: 70, 67 a part),",
            "  each kind and locale rendered once with representative data (a text names only the issuer",
            "  and the links, whose length is the same for every account):",
        ]
    for sms in sim.sms:
        lines.append(
            f"    {sms.kind} {sms.locale}: {sms.encoding}, {sms.units} {_UNITS.get(sms.encoding, 'units')}, "
            f"{sms.segments} segment(s) a text; {sms.messages:,} text(s)"
            + ("" if sms.basis == _REPRESENTATIVE else f" ({sms.basis})")
        )

    lines += [
        "",
        "Peak daily load (messages going out on the customer's local day; deferred ones on their new day):",
    ]
    if sim.peak:
        lines += _table(
            ["channel", "day", "messages"], [[n, d, f"{c:,}"] for n, (d, c) in sim.peak.items()], 2
        )
        by_day: dict[dt.date, int] = {}
        for (d, _), n in sim.load.items():
            by_day[d] = by_day.get(d, 0) + n
        lines.append("  all by day: " + ", ".join(f"{d:%m-%d} {n:,}" for d, n in sorted(by_day.items())))
    else:
        lines.append("  none")
    if sim.beyond:
        lines.append(
            f"  {sim.beyond:,} message(s) deferred past {sim.last} are not in the load (they are in the "
            "costs)"
        )

    lines += ["", "Assumptions:", *[f"  {note}" for note in sim.notes]]
    lines.append(
        f"  ({sim.seconds.get('read', 0):.2f}s reading, {sim.seconds.get('days', 0):.2f}s simulating)"
    )
    return "\n".join(lines) + "\n"
