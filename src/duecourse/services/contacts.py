"""Plan the day's contacts: the stage actions that fall on the run's day, passed through the governor.

Runs after the day's snapshots and stage changes are stored (``duecourse run``). Three steps, each over
whole columns (a night may plan a million contacts):

1. **Candidates.** For every account in a stage that has actions, the day it entered the stage (its
   newest stage change on or before the day) and the previous run's day decide which occurrence of each
   action falls now (``domain/strategy.py`` is the readable rule, ``_falls`` the same rule over a
   column: on a daily rhythm the one on the day; after a gap only the latest missed one). The wanted
   instant is the action's ``at`` in the customer's time zone, or the start of the jurisdiction's
   contact hours.
2. **The governor** (``engine/governor.py``) decides each candidate: planned, deferred to the next
   allowed moment, or suppressed, with the rule, its citation and the values it saw.
3. **Storing**, in one transaction: the day's decisions (replacing those of an earlier run of the same
   day) and an outbox row for every candidate not suppressed, keyed by (account, stage, action,
   occurrence day, channel), at the governor's time. Planning the same day again adds no row; the
   dispatcher checks holds, payments and hours again before it sends.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
from sqlalchemy import BigInteger, Connection, Select, and_, cast, delete, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from duecourse.bootstrap import App
from duecourse.channels.dispatch import STOPPING_HOLDS
from duecourse.config import PRE_DUE_STAGE, Config
from duecourse.domain.errors import Problem, ProblemsError
from duecourse.domain.strategy import Action
from duecourse.engine import governor
from duecourse.letters.kinds import KINDS
from duecourse.letters.settings import Deadline
from duecourse.rulepacks.packs import contact_hours
from duecourse.services import tasks, third_parties
from duecourse.services.statutory import statutory_parts
from duecourse.store import outbox as store
from duecourse.store import repo
from duecourse.store.frames import append_in, many_accounts, read_frame, read_frames
from duecourse.store.tables import (
    accounts,
    assignments,
    customers,
    decisions,
    dues,
    holds,
    outbox,
    snapshots,
    stage_history,
)
from duecourse.store.tables import third_parties as third_parties_table

# Outbox states that no longer count as a contact (for the governor's daily caps).
_NOT_CONTACTS = ("cancelled", "failed")
# Rows per INSERT of decisions.
_CHUNK = 5_000


@dataclass(frozen=True, slots=True)
class ContactPlan:
    """What planning the day did: outbox rows added, already there, the allowed messages by channel, the
    verdicts by verdict and by the rule that decided (suppressions and deferrals)."""

    as_of: dt.date
    added: int
    already: int
    by_channel: dict[str, int]
    verdicts: dict[str, int] = field(default_factory=dict)
    by_rule: dict[str, int] = field(default_factory=dict)


def plan_contacts(app: App, as_of: dt.date, now: dt.datetime) -> ContactPlan:
    """Plan ``as_of``'s contacts through the governor (idempotent); ``now`` stamps the rows."""
    config = app.config
    # No early return when the strategy has no actions: the notices the law requires are planned anyway
    # (services/statutory.py), and the waiting tasks are looked at again.
    previous = repo.previous_run_day(app.engine, as_of)
    arms = arms_for(app, as_of)
    found = candidates(app, as_of, previous, arms=arms)
    if found.is_empty():
        empty = pl.DataFrame(schema=governor.DECISIONS)
        _replace_decisions(app, as_of, found, empty, now, [], arms, config.letters.deadlines)
        return ContactPlan(as_of, 0, 0, {})
    context = _context(app, as_of)
    with app.engine.connect() as connection:
        task_inputs = tasks.read_inputs(
            connection,
            found.filter(tasks.is_task()),
            as_of,
            config.letters.deadlines,
            tasks.limits_of(config.governor),
        )
        third_party_inputs = third_parties.read_inputs(
            connection,
            found.filter(pl.col("contact_id") != ""),
            as_of,
            config.governor.third_party_contact_in,
            tuple(config.location_agents),
        )
    found, decided = decide_with_fallbacks(
        found,
        holds=context["holds"],
        contacts=context["contacts"],
        calls=context["calls"],
        as_of=as_of,
        policy=policy_of(config),
        task_inputs=task_inputs,
        third_party_inputs=third_party_inputs,
    )
    allowed = found.join(
        decided.select("key", "verdict", pl.col("scheduled_at").alias("at")), on="key"
    ).filter((pl.col("verdict") != "suppressed") & ~tasks.is_task())
    items = [
        store.Planned(
            account_id=row["account_id"],
            customer_id=row["customer_id"],
            stage=row["stage"],
            action=row["action"],
            kind=row["kind"],
            channel=row["channel"],
            planned_on=row["planned_on"],
            scheduled_at=row["at"],
            fallback=tuple(row["fallback"]),
            reason=row["why"],
            contact_id=row["contact_id"] or "",
        )
        for row in allowed.iter_rows(named=True)
    ]
    result = _replace_decisions(app, as_of, found, decided, now, items, arms, config.letters.deadlines)
    return ContactPlan(
        as_of,
        result.added,
        result.already,
        dict(Counter(item.channel for item in items)),
        {str(k): int(v) for k, v in decided.group_by("verdict").len().iter_rows()},
        {
            str(k): int(v)
            for k, v in decided.filter(pl.col("verdict") != "planned").group_by("rule_id").len().iter_rows()
        },
    )


def decide(
    found: pl.DataFrame,
    *,
    holds: pl.DataFrame,
    contacts: pl.DataFrame,
    calls: pl.DataFrame,
    as_of: dt.date,
    policy: governor.Policy,
    task_inputs: tasks.TaskInputs | None = None,
    third_party_inputs: third_parties.ThirdPartyInputs | None = None,
) -> pl.DataFrame:
    """The decision (``governor.DECISIONS``) on each of ``found`` (``plan_frame``'s rows): an account in
    an experiment's holdout arm, or a kind its jurisdiction does not use, is suppressed here, saying so;
    the governor decides the rest. Tasks pass the governor as letters do (its holds; no contact hours, no
    daily cap), then their own rules (``services/tasks.py``; ``task_inputs``: what those read, none when
    not given). Messages to third parties the customer named pass their own rules first
    (``services/third_parties.screen``; ``third_party_inputs``: what those read, none when not given:
    then no customer is shown unreachable and none goes), then the governor, counted for the contact."""
    held_out = pl.col("holdout").is_not_null()
    usable = found.filter(_kind_used() & ~held_out)
    to_contact = pl.col("contact_id").fill_null("") != ""
    screened = pl.DataFrame(schema=governor.DECISIONS)
    planned = usable.select(*governor.PLANNED, "contact_id")
    if usable.filter(to_contact).height:
        known = third_party_inputs or third_parties.ThirdPartyInputs.empty()
        passed, screened = third_parties.screen(planned.filter(to_contact), known, as_of)
        passed, copied = third_parties.as_governed(passed, holds)
        planned = pl.concat([planned.filter(~to_contact), passed])
        holds = pl.concat([holds, copied])
        usable = usable.join(screened.select("key"), on="key", how="anti")
    decided = governor.govern(
        planned.select(list(governor.PLANNED)).with_columns(
            pl.when(tasks.is_task()).then(pl.lit("letter")).otherwise(pl.col("channel")).alias("channel")
        ),
        holds=holds,
        contacts=contacts,
        calls=calls,
        as_of=as_of,
        policy=policy,
    )
    if screened.height:
        decided = pl.concat([decided, screened])
    passed = usable.filter(tasks.is_task()).join(
        decided.filter(pl.col("verdict") != "suppressed").select("key"), on="key", how="semi"
    )
    if passed.height:
        inputs = task_inputs if task_inputs is not None else tasks.TaskInputs.empty()
        decided = pl.concat(
            [
                decided.join(passed.select("key"), on="key", how="anti"),
                tasks.decide_tasks(passed, inputs, as_of),
            ]
        )
    if decided.height == found.height:
        return decided
    return pl.concat(
        [
            decided,
            _held_out(found.filter(held_out)),
            _kind_not_used(found.filter(~_kind_used() & ~held_out)),
        ]
    )


def decide_with_fallbacks(
    found: pl.DataFrame,
    *,
    holds: pl.DataFrame,
    contacts: pl.DataFrame,
    calls: pl.DataFrame,
    as_of: dt.date,
    policy: governor.Policy,
    task_inputs: tasks.TaskInputs | None = None,
    third_party_inputs: third_parties.ThirdPartyInputs | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``decide``, then the action's next channel for every message suppressed because its channel is
    closed to the customer (an opt-out, another hold on the channel) while the action has channels left
    in its ``fallback``: the same action, stage and day on that channel (its key names the channel), decided
    in its turn with the messages already allowed counting against the daily cap, until none is left.
    The dispatcher does the same at send time; here the customer gets, say, the letter the same day
    instead of nothing. Returns the candidates with the fallbacks added, and every decision."""
    decided = decide(
        found,
        holds=holds,
        contacts=contacts,
        calls=calls,
        as_of=as_of,
        policy=policy,
        task_inputs=task_inputs,
        third_party_inputs=third_party_inputs,
    )
    frames, decisions = [found], [decided]
    for _ in range(max((len(a) for a in found.get_column("fallback").to_list()), default=0)):
        closed = decided.filter(
            (pl.col("verdict") == "suppressed")
            & (
                pl.col("seen").str.json_path_match("$.hold.channel").is_not_null()
                | (pl.col("seen").str.json_path_match("$.hold.kind") == governor.OPT_OUT)
            )
        )
        moved = found.join(closed.select("key"), on="key", how="semi").filter(
            pl.col("fallback").list.len() > 0
        )
        if moved.is_empty():
            break
        allowed = found.join(
            decided.filter(pl.col("verdict") != "suppressed").select(
                "key", pl.col("scheduled_at").alias("at")
            ),
            on="key",
        )
        if allowed.height:
            allowed = allowed.with_columns(
                pl.col("timezones").list.first().alias("timezone"), governed_customer().alias("customer_id")
            )
            allowed = allowed.with_columns(local_days(allowed, "at").alias("local_day"))
            contacts = pl.concat([contacts, allowed.select(list(governor.CONTACTS))])
        # The suppressed message says where the action went.
        onward = moved.select("key", pl.col("fallback").list.first().alias("_next"))
        decisions[-1] = (
            decisions[-1]
            .join(onward, on="key", how="left")
            .with_columns(
                pl.when(pl.col("_next").is_not_null())
                .then(pl.format("{}; the action falls back to {}", "reason", "_next"))
                .otherwise(pl.col("reason"))
                .alias("reason")
            )
            .drop("_next")
        )
        found = (
            moved.with_columns(
                pl.col("channel").alias("_from"),
                pl.col("fallback").list.first().alias("channel"),
                pl.col("fallback").list.slice(1).alias("fallback"),
            )
            .with_columns(
                outbox_key().alias("key"),
                pl.format("{}; {} is closed to the customer, so by {}", "why", "_from", "channel").alias(
                    "why"
                ),
            )
            .drop("_from")
        )
        decided = decide(
            found,
            holds=holds,
            contacts=contacts,
            calls=calls,
            as_of=as_of,
            policy=policy,
            task_inputs=task_inputs,
            third_party_inputs=third_party_inputs,
        )
        frames.append(found)
        decisions.append(decided)
    return pl.concat(frames, how="diagonal_relaxed"), pl.concat(decisions)


def outbox_key() -> pl.Expr:
    """A planned row's idempotency key: account, stage, action, day and channel, and ``|to:CONTACT`` for
    a message to a third party the customer named (``store/outbox.message_key``)."""
    base = pl.concat_str(
        [
            pl.col("account_id"),
            pl.col("stage"),
            pl.col("action"),
            pl.col("planned_on").dt.to_string("%Y-%m-%d"),
            pl.col("channel"),
        ],
        separator="|",
    )
    contact = pl.col("contact_id").fill_null("")
    return pl.when(contact != "").then(pl.format("{}|to:{}", base, contact)).otherwise(base)


def governed_customer() -> pl.Expr:
    """Whom the governor counts a row against (its holds, its daily cap): the customer, or for a message
    to a third party ``"CUSTOMER, contact CONTACT"`` (``third_parties.as_governed``)."""
    contact = pl.col("contact_id").fill_null("")
    return (
        pl.when(contact != "")
        .then(pl.format("{}, contact {}", pl.col("customer_id"), contact))
        .otherwise(pl.col("customer_id"))
    )


def _kind_used() -> pl.Expr:
    """Whether the row's kind is used in the customer's jurisdiction (``letters/kinds.py``)."""
    pairs = [f"{kind.name}|{j}" for kind in KINDS.values() for j in kind.jurisdictions]
    return pl.concat_str("kind", "jurisdiction", separator="|").is_in(pairs) | ~pl.col("kind").is_in(
        list(KINDS)
    )


def _kind_not_used(rows: pl.DataFrame) -> pl.DataFrame:
    """Decisions for actions whose kind the customer's jurisdiction does not use: suppressed, saying so
    (``policy check`` warns of such actions before a run)."""
    why = {name: kind.why for name, kind in KINDS.items()}
    return rows.select(
        "key",
        pl.lit("suppressed").alias("verdict"),
        pl.lit(None, pl.Datetime("us", "UTC")).alias("scheduled_at"),
        pl.lit("POLICY-KIND-NOT-USED").alias("rule_id"),
        pl.col("kind").replace_strict(why, return_dtype=pl.String()).alias("citation"),
        pl.format("{} is not used for customers in {}", "kind", "jurisdiction").alias("reason"),
        pl.struct("kind", "jurisdiction").struct.json_encode().alias("seen"),
    ).cast(pl.Schema(governor.DECISIONS))


def _held_out(rows: pl.DataFrame) -> pl.DataFrame:
    """Decisions for the accounts in an experiment's holdout arm: no automated contact in its stages."""
    return rows.select(
        "key",
        pl.lit("suppressed").alias("verdict"),
        pl.lit(None, pl.Datetime("us", "UTC")).alias("scheduled_at"),
        pl.lit("EXPERIMENT-HOLDOUT").alias("rule_id"),
        pl.lit("institution policy: champion/challenger holdout group").alias("citation"),
        pl.format(
            "the account is in the holdout arm of experiment {}: no automated contact in its stages",
            "holdout",
        ).alias("reason"),
        pl.struct(pl.col("holdout").alias("experiment")).struct.json_encode().alias("seen"),
    ).cast(pl.Schema(governor.DECISIONS))


def policy_of(config: Config) -> governor.Policy:
    """The governor's policy from ``[governor]``."""
    return governor.Policy(
        daily_contacts_per_customer=config.governor.daily_contacts_per_customer,
        us_creditor_calls_capped=config.governor.us_creditor_calls_capped,
    )


# ---------------------------------------------------------------- candidates


def candidates(
    app: App, as_of: dt.date, previous: dt.date | None, *, arms: pl.DataFrame | None = None
) -> pl.DataFrame:
    """The actions that fall on ``as_of``: the governor's ``PLANNED`` columns, plus ``fallback`` (list of
    channels), ``why`` (the planning reason in words) and ``holdout`` (the experiment whose holdout arm
    the account is in, for a stage it covers; else null).

    ``arms`` (``arms_for``; read here when not given): each account's arm in each experiment. An action
    of an experiment falls only for the accounts of the arms it names."""
    config = app.config
    staged = sorted({action.stage for action in config.actions})
    entered = (
        select(stage_history.c.account_id, func.max(stage_history.c.entered_on).label("entered_on"))
        .where(stage_history.c.entered_on <= as_of)
        .group_by(stage_history.c.account_id)
        .subquery()
    )
    query = (
        select(
            snapshots.c.account_id,
            snapshots.c.stage,
            accounts.c.customer_id,
            accounts.c.product_code,
            customers.c.timezone,
            customers.c.jurisdiction,
            entered.c.entered_on,
        )
        .join(accounts, accounts.c.account_id == snapshots.c.account_id)
        .join(customers, customers.c.customer_id == accounts.c.customer_id)
        .join(entered, entered.c.account_id == snapshots.c.account_id)  # none stored: history not written yet
        .where(and_(snapshots.c.as_of == as_of, snapshots.c.stage.in_(staged)))
    )
    schema = {
        "account_id": pl.String(),
        "stage": pl.String(),
        "customer_id": pl.String(),
        "product_code": pl.String(),
        "timezone": pl.String(),
        "jurisdiction": pl.String(),
        "entered_on": pl.Date(),
    }
    rows = read_frame(app.engine, query, schema=schema, bulk=many_accounts(app.engine))
    rows = with_resumed(rows, _ended_holds(app, as_of, previous), as_of, previous)
    if arms is None:
        arms = arms_for(app, as_of, rows.get_column("account_id"))
    more = _pre_due_parts(app, as_of, previous, config.terms.deepest()) + statutory_parts(
        app, as_of, previous, config.terms.deepest()
    )
    named = (
        third_parties.contacts_of(app.engine)
        if any(action.to == "contact" for action in config.actions)
        else None
    )
    return plan_frame(config, rows, as_of, previous, arms=arms, more=more, contacts=named)


def plan_frame(
    config: Config,
    rows: pl.DataFrame,
    as_of: dt.date,
    previous: dt.date | None,
    *,
    arms: pl.DataFrame | None = None,
    extra: Sequence[str] = (),
    more: Sequence[pl.DataFrame] = (),
    contacts: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The stage actions of ``config`` that fall on ``as_of`` for ``rows`` (``account_id, stage,
    customer_id, product_code, timezone, jurisdiction, entered_on`` and the ``extra`` columns, kept), as
    the governor's ``PLANNED`` columns plus ``fallback``, ``why``, ``holdout`` and ``extra``: what
    ``candidates`` gives after its read of the database (and ``policy simulate`` over its own stages).

    ``arms``: each account's arm in each experiment (none: no account is in any). ``more``: rows already
    shaped like the actions' (the reminders before a due date). A ``since`` column (``with_resumed``)
    counts an account's occurrences after its own day instead of after ``previous``. ``contacts``: the
    third parties the customers named (``contact_id, customer_id, timezone``; none: an action ``to =
    "contact"`` falls for nobody): such an action falls once for each of the customer's contacts, in the
    contact's time zone (the customer's when empty), its key ending in ``|to:CONTACT``."""
    deepest = config.terms.deepest()
    if arms is None:
        arms = pl.DataFrame(schema=ARMS)
    rows = rows.with_columns(_holdout_of(config, arms, rows))
    third_party = set(config.governor.third_party_products)
    parts: list[pl.DataFrame] = []
    for position, action in enumerate(config.actions):
        mine = rows.filter(pl.col("stage") == action.stage)
        arm = ""
        if action.experiment is not None:
            chosen = arms.filter(
                (pl.col("experiment") == action.experiment) & pl.col("variant").is_in(list(action.variants))
            )
            mine = mine.join(chosen.select("account_id", "variant"), on="account_id", how="inner")
            arm = f" for arm {{}} of experiment {action.experiment}"
        if action.to == "contact":
            named = contacts if contacts is not None else pl.DataFrame(schema=_NAMED)
            mine = (
                mine.join(
                    named.select("customer_id", "contact_id", pl.col("timezone").alias("_zone")),
                    on="customer_id",
                    how="inner",
                )
                .with_columns(
                    pl.when(pl.col("_zone") != "")
                    .then(pl.col("_zone"))
                    .otherwise(pl.col("timezone"))
                    .alias("timezone")
                )
                .drop("_zone")
            )
            arm += " to contact {}"
        else:
            mine = mine.with_columns(pl.lit("").alias("contact_id"))
        if mine.is_empty():
            continue
        since = mine.get_column("since") if "since" in mine.columns else None
        falls = _falls(action, mine.get_column("entered_on"), as_of, previous, since=since)
        mine = mine.with_columns(falls.alias("planned_on")).filter(pl.col("planned_on").is_not_null())
        if mine.is_empty():
            continue
        severity = config.terms.severity(action.stage) - 1
        default = as_of - dt.timedelta(days=1) if previous is None else previous
        resumed = pl.col("since") < pl.lit(default) if "since" in mine.columns else pl.lit(False)
        when = (
            pl.when(pl.col("planned_on") == as_of)
            .then(pl.lit("today"))
            .when(resumed)
            .then(
                pl.format(
                    "on {} (the latest occurrence a hold from {} kept back; the hold has ended)",
                    "planned_on",
                    (pl.col("since") + pl.duration(days=1)).cast(pl.String),
                )
            )
            .otherwise(
                pl.format(
                    "on {} (the latest occurrence since the run of {})", "planned_on", pl.lit(str(previous))
                )
            )
        )
        parts.append(
            mine.with_columns(
                pl.lit(action.name).alias("action"),
                pl.lit(action.channel).alias("channel"),
                pl.lit(action.kind).alias("kind"),
                pl.lit(action.at.isoformat(timespec="minutes") if action.at else None, pl.String()).alias(
                    "at"
                ),
                # The most severe stage first (on its own ladder: a segment's third stage ranks with the
                # default third), then the strategy's order: who gets the day's one contact.
                pl.lit((deepest - severity) * 1_000 + position, pl.Int32()).alias("priority"),
                pl.lit(list(action.fallback), pl.List(pl.String())).alias("fallback"),
                pl.format(
                    "stage {} entered {}; action {} ({} {}) falls {}" + arm,
                    "stage",
                    "entered_on",
                    pl.lit(action.name),
                    pl.lit(action.channel),
                    pl.lit(action.kind),
                    when,
                    *(["variant"] if action.experiment is not None else []),
                    *(["contact_id"] if action.to == "contact" else []),
                ).alias("why"),
            ).drop("variant", strict=False)
        )
    parts += more
    if not parts:
        return _empty_candidates().with_columns(pl.lit(None, rows.schema[name]).alias(name) for name in extra)
    found = pl.concat(parts, how="diagonal_relaxed")
    found = found.with_columns(
        (pl.col("contact_id") if "contact_id" in found.columns else pl.lit(None, pl.String()))
        .fill_null("")
        .alias("contact_id")
    )
    wanted = _wanted_instants(found, as_of)
    return (
        found.join(wanted, on=["timezone", "jurisdiction", "at"], how="left", nulls_equal=True)
        .with_columns(
            outbox_key().alias("key"),
            pl.concat_list(pl.col("timezone")).alias("timezones"),
            pl.col("product_code").is_in(sorted(third_party)).alias("third_party"),
        )
        .select(*governor.PLANNED, "fallback", "why", "holdout", "contact_id", *extra)
        .sort("key")
    )


def _pre_due_parts(app: App, as_of: dt.date, previous: dt.date | None, stages: int) -> list[pl.DataFrame]:
    """The ``[[strategy.pre_due]]`` reminders that fall on ``as_of``: ``-offset_days`` days before a due
    date, to accounts not in collection (stage current) whose credit does not already cover that due
    (the minimum payment of a card statement, else the amount). After a gap of runs, only the latest due
    date whose reminder day was missed, as for the stages' actions. Not part of any experiment."""
    found: list[pl.DataFrame] = []
    since = as_of - dt.timedelta(days=1) if previous is None else previous
    for position, action in enumerate(app.config.pre_due):
        ahead = -action.offset_days
        first, last = since + dt.timedelta(days=ahead + 1), as_of + dt.timedelta(days=ahead)
        # a sum of BIGINT is NUMERIC on PostgreSQL: cast back to minor units
        needed = cast(func.sum(func.coalesce(dues.c.minimum_minor, dues.c.amount_minor)), BigInteger).label(
            "needed_minor"
        )
        query = (
            select(
                snapshots.c.account_id,
                snapshots.c.stage,
                accounts.c.customer_id,
                accounts.c.product_code,
                customers.c.timezone,
                customers.c.jurisdiction,
                dues.c.due_date,
                needed,
                snapshots.c.credit_minor,
            )
            .join(accounts, accounts.c.account_id == snapshots.c.account_id)
            .join(customers, customers.c.customer_id == accounts.c.customer_id)
            .join(dues, dues.c.account_id == snapshots.c.account_id)
            .where(
                and_(
                    snapshots.c.as_of == as_of,
                    snapshots.c.stage == PRE_DUE_STAGE,
                    dues.c.due_date >= first,
                    dues.c.due_date <= last,
                )
            )
            .group_by(
                snapshots.c.account_id,
                snapshots.c.stage,
                accounts.c.customer_id,
                accounts.c.product_code,
                customers.c.timezone,
                customers.c.jurisdiction,
                dues.c.due_date,
                snapshots.c.credit_minor,
            )
        )
        schema = {
            "account_id": pl.String(),
            "stage": pl.String(),
            "customer_id": pl.String(),
            "product_code": pl.String(),
            "timezone": pl.String(),
            "jurisdiction": pl.String(),
            "due_date": pl.Date(),
            "needed_minor": pl.Int64(),
            "credit_minor": pl.Int64(),
        }
        rows = (
            read_frame(app.engine, query, schema=schema)
            .filter(pl.col("credit_minor") < pl.col("needed_minor"))
            .sort("account_id", "due_date")
            .group_by("account_id", maintain_order=True)
            .last()
        )
        if rows.is_empty():
            continue
        found.append(pre_due_rows(rows, action, position, stages))
    return found


def pre_due_rows(rows: pl.DataFrame, action: Action, position: int, stages: int) -> pl.DataFrame:
    """The reminders of ``[[strategy.pre_due]]`` action ``position`` for ``rows`` (the accounts' base
    columns and the ``due_date`` reminded of, one row per account; any other columns kept): shaped like
    the stage actions' rows for ``plan_frame``'s ``more`` (the run's and ``policy simulate``'s)."""
    ahead = -action.offset_days
    return rows.with_columns(
        (pl.col("due_date") - pl.duration(days=ahead)).alias("planned_on"),
        pl.lit(None, pl.Date()).alias("entered_on"),
        pl.lit(None, pl.String()).alias("holdout"),
        pl.lit(action.name).alias("action"),
        pl.lit(action.channel).alias("channel"),
        pl.lit(action.kind).alias("kind"),
        pl.lit(action.at.isoformat(timespec="minutes") if action.at else None, pl.String()).alias("at"),
        # after every stage's actions: an account in collection comes first
        pl.lit(stages * 1_000 + 500 + position, pl.Int32()).alias("priority"),
        pl.lit(list(action.fallback), pl.List(pl.String())).alias("fallback"),
        pl.format(
            "a due on {} not covered by credit; action {} ({} {}) falls {} days before it",
            "due_date",
            pl.lit(action.name),
            pl.lit(action.channel),
            pl.lit(action.kind),
            pl.lit(str(ahead)),
        ).alias("why"),
    ).drop("due_date", "needed_minor", "credit_minor", strict=False)


def _falls(
    action: Action,
    entered_on: pl.Series,
    day: dt.date,
    previous: dt.date | None,
    *,
    since: pl.Series | None = None,
) -> pl.Series:
    """``Action.due`` over a column of stage entry days: the occurrence a run on ``day`` plans, or null.

    ``since`` (one day per row, null: ``previous``'s): the occurrences after that day count, as if the
    previous run had been then (``with_resumed``)."""
    first = pl.col("entered_on") + pl.duration(days=action.offset_days)
    if action.repeat_every_days is None or action.max_times == 1:
        last = first
    else:
        elapsed = (pl.lit(day) - first).dt.total_days()
        times = pl.min_horizontal(pl.lit(action.max_times - 1), elapsed // action.repeat_every_days)
        last = first + pl.duration(days=times * action.repeat_every_days)
    default = day - dt.timedelta(days=1) if previous is None else previous
    frame = pl.DataFrame({"entered_on": entered_on})
    after = pl.lit(default)
    if since is not None:
        frame = frame.with_columns(since.alias("since"))
        after = pl.col("since").fill_null(default)
    return frame.select(
        pl.when((pl.lit(day) >= first) & (last > after)).then(last).otherwise(None).alias("falls")
    ).to_series()


def with_resumed(
    rows: pl.DataFrame, ended: pl.DataFrame, as_of: dt.date, previous: dt.date | None
) -> pl.DataFrame:
    """``rows`` with ``since``: the day after which each account's occurrences count.

    That is the previous run's day, except for an account a stopping hold (``STOPPING_HOLDS``: a
    dispute, a promise, a plan, ...) on its customer or on it kept from contact until after that day and
    no longer does: its occurrences count from the day the hold began. The governor suppressed them while
    the hold was in force; the first run after it ends plans, of each action, the latest occurrence the
    hold kept back, once, as after a gap of runs (never the backlog: the catch-up rule of
    ``domain/strategy.py``). ``ended``: holds in the governor's ``HOLDS`` columns (others are ignored).
    """
    default = as_of - dt.timedelta(days=1) if previous is None else previous
    lapsed = ended.filter(
        pl.col("kind").is_in(sorted(STOPPING_HOLDS))
        & pl.col("channel").is_null()
        & pl.col("ends_on").is_not_null()
        & (pl.col("ends_on") >= default)
        & (pl.col("ends_on") < as_of)
    ).with_columns((pl.col("starts_on") - pl.duration(days=1)).alias("since"))
    by_customer = (
        lapsed.filter(pl.col("scope") == "customer").group_by("customer_id").agg(pl.col("since").min())
    )
    by_account = lapsed.filter(pl.col("scope") == "account").group_by("account_id").agg(pl.col("since").min())
    resumed = (
        rows.select("account_id", "customer_id")
        .join(by_customer, on="customer_id", how="left")
        .join(by_account, on="account_id", how="left", suffix="_account")
        .select(pl.min_horizontal(pl.col("since"), pl.col("since_account"), pl.lit(default)).alias("since"))
        .get_column("since")
    )
    return rows.with_columns(resumed)


def _ended_holds(app: App, as_of: dt.date, previous: dt.date | None) -> pl.DataFrame:
    """The holds that ended after the previous run's day and before ``as_of`` (``with_resumed``)."""
    default = as_of - dt.timedelta(days=1) if previous is None else previous
    query = holds_query().where(and_(holds.c.ends_on >= default, holds.c.ends_on < as_of))
    return hold_frame(read_frame(app.engine, query))


def _wanted_instants(found: pl.DataFrame, as_of: dt.date) -> pl.DataFrame:
    """The instant each (time zone, jurisdiction, preferred time) wants on ``as_of``: the preferred local
    time, or the start of the jurisdiction's contact hours; found once per combination (there are few)."""
    combos = found.select("timezone", "jurisdiction", "at").unique()
    instants = [
        _instant(as_of, timezone, jurisdiction, at) for timezone, jurisdiction, at in combos.iter_rows()
    ]
    return combos.with_columns(pl.Series("scheduled_at", instants, pl.Datetime("us", "UTC")))


def _instant(day: dt.date, timezone: str, jurisdiction: str, at: str | None) -> dt.datetime:
    local = dt.time.fromisoformat(at) if at else contact_hours(jurisdiction).start
    return dt.datetime.combine(day, local, tzinfo=_zone(timezone)).astimezone(dt.UTC)


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _empty_candidates() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            **governor.PLANNED,
            "fallback": pl.List(pl.String()),
            "why": pl.String(),
            "holdout": pl.String(),
            "contact_id": pl.String(),
        }
    )


_NAMED: dict[str, pl.DataType] = {
    "contact_id": pl.String(),
    "customer_id": pl.String(),
    "timezone": pl.String(),
}


# ---------------------------------------------------------------- champion/challenger

ARMS: dict[str, pl.DataType] = {
    "experiment": pl.String(),
    "account_id": pl.String(),
    "variant": pl.String(),
    "new": pl.Boolean(),
}


def arms_for(app: App, as_of: dt.date, account_ids: pl.Series | None = None) -> pl.DataFrame:
    """Each account's arm in each experiment (``ARMS``): the recorded one, else the one its hash gives
    (``new``: to be recorded with the day's decisions). ``account_ids``: the accounts to assign (default:
    those not current on ``as_of``)."""
    experiments = app.config.experiments
    if not experiments:
        return pl.DataFrame(schema=ARMS)
    if account_ids is None:
        query = select(snapshots.c.account_id).where(
            and_(snapshots.c.as_of == as_of, snapshots.c.stage != "current")
        )
        account_ids = read_frame(app.engine, query, bulk=many_accounts(app.engine)).get_column("account_id")
    names = [e.name for e in experiments]
    stored = read_frame(
        app.engine,
        select(assignments.c.experiment, assignments.c.account_id, assignments.c.variant).where(
            assignments.c.experiment.in_(names)
        ),
        bulk=many_accounts(app.engine),
    )
    parts = [stored.with_columns(pl.lit(False).alias("new"))]
    wanted = account_ids.unique().sort().to_list()
    for experiment in experiments:
        have = set(stored.filter(pl.col("experiment") == experiment.name).get_column("account_id").to_list())
        fresh = [a for a in wanted if a not in have]
        if fresh:
            parts.append(
                pl.DataFrame(
                    {
                        "experiment": [experiment.name] * len(fresh),
                        "account_id": fresh,
                        "variant": [experiment.variant_of(a).name for a in fresh],
                        "new": [True] * len(fresh),
                    },
                    schema=ARMS,
                )
            )
    return pl.concat(parts).cast(pl.Schema(ARMS))


def _holdout_of(config: Config, arms: pl.DataFrame, rows: pl.DataFrame) -> pl.Series:
    """Per row of ``rows`` (account_id, stage): the experiment whose holdout arm holds the account in a
    stage it covers, or null (the first such experiment, in the order written)."""
    out = pl.Series("holdout", [None] * rows.height, pl.String())
    for experiment in reversed(config.experiments):
        held = arms.filter(
            (pl.col("experiment") == experiment.name) & pl.col("variant").is_in(list(experiment.holdouts()))
        ).get_column("account_id")
        if held.is_empty():
            continue
        covered = rows.get_column("account_id").is_in(held.implode())
        if experiment.stages:
            covered = covered & rows.get_column("stage").is_in(list(experiment.stages))
        out = pl.select(
            pl.when(covered).then(pl.lit(experiment.name)).otherwise(out).alias("holdout")
        ).to_series()
    return out


# ---------------------------------------------------------------- what the governor sees


def _context(app: App, as_of: dt.date) -> dict[str, pl.DataFrame]:
    """The holds, the outbox's contacts around the day (local days differ from UTC ones by up to a day
    each way) and the calls, read from one view of the database."""
    window_start = dt.datetime.combine(as_of - dt.timedelta(days=2), dt.time(), tzinfo=dt.UTC)
    window_end = dt.datetime.combine(as_of + dt.timedelta(days=3), dt.time(), tzinfo=dt.UTC)
    read = read_frames(
        app.engine,
        {
            "holds": holds_query().where(
                and_(
                    holds.c.starts_on <= as_of,
                    or_(holds.c.ends_on.is_(None), holds.c.ends_on >= as_of),
                )
            ),
            "contacts": contacts_query(window_start, window_end),
        },
    )
    from duecourse.services import consent

    # A channel the customer has not consented to, where consent is required, is closed like an opt-out.
    closed = consent.missing_holds(app.engine, app.config.governor.consent_required, as_of)
    return {
        "holds": pl.concat([hold_frame(read["holds"]), closed]),
        "contacts": contact_frame(read["contacts"]),
        # Call attempts come from the collectors' call queue (a later issue); none are recorded yet.
        "calls": pl.DataFrame(schema=governor.CALLS),
    }


def holds_query() -> Select[Any]:
    """The holds, as the columns of the governor's ``HOLDS`` (add a ``where`` for the days wanted)."""
    return select(*(holds.c[name] for name in governor.HOLDS))


def hold_frame(read: pl.DataFrame) -> pl.DataFrame:
    """``holds_query``'s rows as the governor takes them (an empty account or channel as null)."""
    return (
        read.with_columns(pl.col("account_id").replace("", None), pl.col("channel").replace("", None))
        .select(list(governor.HOLDS))
        .cast(pl.Schema(governor.HOLDS))
    )


def contacts_query(start: dt.datetime, end: dt.datetime) -> Select[Any]:
    """The outbox's messages that count as contacts (not cancelled or failed) scheduled from ``start`` up
    to ``end``, with their planning day and the customer's time zone."""
    return (
        select(
            outbox.c.customer_id,
            outbox.c.account_id,
            outbox.c.channel,
            outbox.c.key,
            outbox.c.planned_on,
            outbox.c.scheduled_at,
            func.coalesce(func.nullif(third_parties_table.c.timezone, ""), customers.c.timezone).label(
                "timezone"
            ),
            outbox.c.contact_id,
        )
        .join(customers, customers.c.customer_id == outbox.c.customer_id)
        .outerjoin(third_parties_table, third_parties_table.c.contact_id == outbox.c.contact_id)
        .where(
            and_(
                outbox.c.scheduled_at >= start,
                outbox.c.scheduled_at < end,
                outbox.c.state.not_in(_NOT_CONTACTS),
            )
        )
    )


def contact_frame(read: pl.DataFrame) -> pl.DataFrame:
    """``contacts_query``'s rows as the governor's ``CONTACTS`` (each on the local day of whom it went to;
    a message to a third party counted for the contact, ``governed_customer``)."""
    return (
        read.with_columns(
            local_days(read, "scheduled_at").alias("local_day"), governed_customer().alias("customer_id")
        )
        .select(list(governor.CONTACTS))
        .cast(pl.Schema(governor.CONTACTS))
    )


# ---------------------------------------------------------------- storing


def _replace_decisions(
    app: App,
    as_of: dt.date,
    found: pl.DataFrame,
    decided: pl.DataFrame,
    now: dt.datetime,
    items: list[store.Planned],
    arms: pl.DataFrame,
    deadlines: Mapping[str, Deadline],
) -> store.PlanResult:
    """Replace ``as_of``'s decisions, record the new experiment arms, add the allowed messages to the
    outbox and the allowed tasks to the tasks, open the waiting tasks now ready and cancel those a
    limitation now bars, in one transaction."""
    rows = (
        found.select(
            "key", "account_id", "customer_id", "stage", "action", "channel", "kind", planned_because="why"
        )
        .join(decided, on="key", how="inner", maintain_order="left")
        .with_columns(
            day=pl.lit(as_of, pl.Date()), decided_at=pl.lit(now.astimezone(dt.UTC), pl.Datetime("us", "UTC"))
        )
    )
    with store.write_transaction(app.engine) as connection:
        connection.execute(delete(decisions).where(decisions.c.day == as_of))
        fresh = [
            {"experiment": e, "account_id": a, "variant": v, "assigned_on": as_of}
            for e, a, v in arms.filter(pl.col("new"))
            .select("experiment", "account_id", "variant")
            .iter_rows()
        ]
        for start in range(0, len(fresh), _CHUNK):
            connection.execute(_insert_new_arms(connection), fresh[start : start + _CHUNK])
        append_in(connection, "decisions", rows)
        task_rows = found.filter(tasks.is_task()).join(
            decided.filter(pl.col("verdict") != "suppressed").select(
                "key", "verdict", pl.col("scheduled_at").alias("ready_at"), "rule_id", "reason"
            ),
            on="key",
            how="inner",
        )
        tasks.store_tasks(connection, task_rows, now)
        tasks.open_ready(connection, as_of, now, deadlines)
        tasks.cancel_time_barred(connection, as_of, now, tasks.limits_of(app.config.governor))
        tasks.open_hold_tasks(connection, as_of, now)
        if not items:
            return store.PlanResult(0, 0)
        return store.plan_in(connection, items, now, f"planned by the run of {as_of}")


def _insert_new_arms(connection: Connection) -> Any:
    """``INSERT … ON CONFLICT DO NOTHING`` into ``assignments``: a recorded arm is never changed."""
    if connection.dialect.name == "postgresql":
        return pg_insert(assignments).on_conflict_do_nothing()
    return sqlite_insert(assignments).on_conflict_do_nothing()


# ---------------------------------------------------------------- reading them back


def decisions_between(app: App, first: dt.date, last: dt.date, account_id: str | None = None) -> pl.DataFrame:
    """The stored decisions of the days ``first`` through ``last`` (of one account, if given), in day and
    key order, with the customer's time zone for showing instants locally."""
    query = (
        select(decisions, customers.c.timezone)
        .join(customers, customers.c.customer_id == decisions.c.customer_id)
        .where(and_(decisions.c.day >= first, decisions.c.day <= last))
        .order_by(decisions.c.day, decisions.c.key)
    )
    if account_id is not None:
        query = query.where(decisions.c.account_id == account_id)
    return read_frame(app.engine, query)


def seen_values(seen: str) -> dict[str, Any]:
    """A decision's ``seen`` JSON as a mapping (an empty one for text that is not a JSON object)."""
    try:
        value = json.loads(seen)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# ---------------------------------------------------------------- exports

DECISION_COLUMNS = (
    "account_id",
    "customer_id",
    "date",
    "stage",
    "action",
    "channel",
    "kind",
    "verdict",
    "scheduled_at",
    "rule_id",
    "citation",
    "reason",
    "planned_because",
)
COMMUNICATION_COLUMNS = (
    "id",
    "idempotency_key",
    "account_id",
    "channel",
    "kind",
    "state",
    "scheduled_at",
    "sent_at",
)


def check_range(first: dt.date, last: dt.date) -> None:
    """Refuse a range of days whose first day is after its last (the exports)."""
    if first > last:
        raise ProblemsError(
            [Problem("export.bad_range", f"--from {first} is after --to {last}: no day is in that range")]
        )


def _in_zones(
    frame: pl.DataFrame,
    column: str,
    zone_column: str,
    shown: Callable[[pl.Expr], pl.Expr],
    dtype: pl.DataType,
) -> pl.Series:
    """``shown`` of each row's UTC instant ``column`` in the row's own time zone; converted once per zone
    (there are few); null stays null."""
    numbered = frame.select(pl.int_range(pl.len()).alias("_row"), column, zone_column)
    parts = [
        group.select("_row", shown(pl.col(column).dt.convert_time_zone(str(zone))).alias(column))
        for (zone,), group in numbered.group_by(zone_column)
    ]
    if not parts:
        return pl.Series(column, [], dtype)
    return pl.concat(parts).sort("_row").get_column(column)


def local_iso(frame: pl.DataFrame, column: str, zone_column: str = "timezone") -> pl.Series:
    """``column`` (UTC instants) as ISO 8601 text with the UTC offset of each row's time zone
    (``2026-03-09T08:00:00-04:00``); null stays null."""
    return _in_zones(
        frame, column, zone_column, lambda e: e.dt.to_string("%Y-%m-%dT%H:%M:%S%:z"), pl.String()
    )


def local_days(frame: pl.DataFrame, column: str, zone_column: str = "timezone") -> pl.Series:
    """``column`` (UTC instants) as the date each is in its row's time zone; null stays null."""
    return _in_zones(frame, column, zone_column, lambda e: e.dt.date(), pl.Date())


def export_decisions(app: App, first: dt.date, last: dt.date, out: Path) -> int:
    """Write one CSV row per decision of the days ``first`` through ``last`` (``DECISION_COLUMNS``)."""
    check_range(first, last)
    found = decisions_between(app, first, last)
    frame = found.with_columns(local_iso(found, "scheduled_at"), pl.col("day").alias("date")).select(
        DECISION_COLUMNS
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.write_csv(out, null_value="")
    return frame.height


def export_communications(app: App, first: dt.date, last: dt.date, out: Path) -> int:
    """Write the outbox rows planned for the days ``first`` through ``last``, one CSV row each
    (``COMMUNICATION_COLUMNS``; instants with the customer's UTC offset)."""
    check_range(first, last)
    query = (
        select(
            outbox.c.id,
            outbox.c.key.label("idempotency_key"),
            outbox.c.account_id,
            outbox.c.channel,
            outbox.c.kind,
            outbox.c.state,
            outbox.c.scheduled_at,
            outbox.c.sent_at,
            customers.c.timezone,
        )
        .join(customers, customers.c.customer_id == outbox.c.customer_id)
        .where(and_(outbox.c.planned_on >= first, outbox.c.planned_on <= last))
        .order_by(outbox.c.id)
    )
    found = read_frame(app.engine, query)
    frame = found.with_columns(local_iso(found, "scheduled_at"), local_iso(found, "sent_at")).select(
        COMMUNICATION_COLUMNS
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.write_csv(out, null_value="")
    return frame.height


# ---------------------------------------------------------------- explain


def contact_of_key(key: str) -> str:
    """The third party a decision's key addresses (``...|to:CONTACT``), "" for the customer."""
    head, sep, contact = key.rpartition("|to:")
    return contact if sep and head else ""


def explain_contacts(app: App, account_id: str, as_of: dt.date) -> tuple[str, list[dict[str, Any]]]:
    """The account's contact plan of ``as_of`` in words and as data: every action the strategy called
    for that day and the governor's verdict on it (rule, citation, reason, the values it saw)."""
    found = decisions_between(app, as_of, as_of, account_id)
    if found.is_empty():
        return f"\nContacts on {as_of}: none planned for this account.\n", []
    shown = found.with_columns(local_iso(found, "scheduled_at").alias("local_at"))
    lines = [f"\nContacts on {as_of} (each planned action and the governor's verdict):"]
    data: list[dict[str, Any]] = []
    for row in shown.iter_rows(named=True):
        when = {"planned": " for ", "deferred": " to "}.get(row["verdict"], "") + (row["local_at"] or "")
        rule = f"{row['rule_id']}" + (f" ({row['citation']})" if row["citation"] else "")
        contact = contact_of_key(row["key"])
        to = f" to contact {contact}" if contact else ""
        lines.append(
            f"  {row['channel']} {row['kind']}{to} (stage {row['stage']}, action {row['action']}): "
            f"{row['verdict']}{when.rstrip()}"
        )
        if row["planned_because"]:
            lines.append(f"    wanted: {row['planned_because']}")
        lines.append(f"    {rule}: {row['reason']}")
        data.append(
            {
                "key": row["key"],
                "stage": row["stage"],
                "action": row["action"],
                "channel": row["channel"],
                "kind": row["kind"],
                "to": f"contact {contact}" if contact else "customer",
                "verdict": row["verdict"],
                "scheduled_at": row["local_at"],
                "rule_id": row["rule_id"],
                "citation": row["citation"],
                "reason": row["reason"],
                "planned_because": row["planned_because"],
                "seen": seen_values(row["seen"]),
            }
        )
    return "\n".join(lines) + "\n", data
