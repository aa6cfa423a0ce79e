"""Escalation tasks: work for people or partners that a stage calls for (``channel = "task"``), after what
the law wants done first.

A strategy escalates with actions too: hand the account to an agency (``agency_placement``), review it for
charge-off (``charge_off_review``), report it to the credit bureau (``credit_report``), review it for legal
action (``legal_review``). They are planned like messages (offsets, repeats, experiments, the holds of the
governor, which treats them as letters: no contact hours, no daily cap), but they are not sent: each
becomes a row of the ``tasks`` table, and ``duecourse export tasks`` lists them for the people (or the
agency file) that take them on.

Before a task is ``open``, the rule pack of the customer's jurisdiction is asked (``[[bars]]``,
``[[prerequisites]]`` in ``rulepacks/*.toml``):

1. **Bars**: a hold that forbids the task, while it is in force (UK: no placement with an agency while a
   vulnerability hold is on, UK-CONC-01) or once it was ever recorded (US: no placement after an
   identity-theft report, US-IDT-01, 12 CFR 1006.30(b)). Suppressed, saying so.
2. **Prerequisites**: the notice the customer must have had first, and the time it gave them: the task is
   ready the day after the deadline of the last such notice sent on the account, by that notice's
   ``[letters.deadlines]`` rule on the customer's calendar (CN: the final demand before placement with an
   agency, CN-COL-06, and the credit-report notice before adverse reporting, CN-CR-01; UK: the default
   notice and its remedy date before a charge-off, UK-DEF-01). Until then the task is ``waiting`` (the
   decision is ``deferred`` to the ready day, or without a day while no such notice has been sent), and
   every run looks at the waiting tasks again: the first run on or after the ready day opens them.

Everything here works on the day's few task rows; the notices and holds it reads are those of the
accounts concerned.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, Select, and_, func, insert, or_, select, update

from duecourse.config import GovernorSettings
from duecourse.domain.limitation import Limits, period_of, state_of
from duecourse.domain.strategy import TASK_CHANNEL
from duecourse.engine import governor
from duecourse.letters.data import deadline_for
from duecourse.letters.settings import Deadline
from duecourse.rulepacks.packs import JURISDICTIONS, Bar, Limitation, Prerequisite, hold_tasks, task_rules
from duecourse.store.frames import read_frame
from duecourse.store.tables import accounts, customers, holds, outbox, payments, snapshots, tasks

# What the tasks read of the outbox: the notices a prerequisite needs. ``day``: the day it was sent, or,
# not sent yet, the day it is scheduled for; ``sent``: whether it was.
NOTICES: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    "kind": pl.String(),
    "sent": pl.Boolean(),
    "day": pl.Date(),
}
# Holds as the bars read them: any that started on or before the day (an ``ever`` bar reads ended ones).
HOLDS_EVER: dict[str, pl.DataType] = {
    "scope": pl.String(),
    "customer_id": pl.String(),
    "account_id": pl.String(),
    "kind": pl.String(),
    "starts_on": pl.Date(),
    "ends_on": pl.Date(),
}
_NOTICE_READ: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    "kind": pl.String(),
    "state": pl.String(),
    "sent_at": pl.Datetime("us", "UTC"),
    "scheduled_at": pl.Datetime("us", "UTC"),
}
_SENT = ("sent", "delivered")
_GONE = ("cancelled", "failed", "bounced")
TASK_COLUMNS = (
    "key",
    "account_id",
    "customer_id",
    "stage",
    "action",
    "kind",
    "state",
    "planned_on",
    "ready_on",
    "rule_id",
    "reason",
)


# What a limitation reads of an account (``AGES``): the customer's region (US state), the oldest unpaid
# due's date as of the day (the stored snapshot's), the last payment on or before the day.
AGES: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    "region": pl.String(),
    "oldest_unpaid_due_date": pl.Date(),
    "last_paid_on": pl.Date(),
}


def limits_of(settings: GovernorSettings) -> Limits:
    return Limits(dict(settings.limitation_years), frozenset(settings.limitation_restarts_on_payment))


@dataclass(frozen=True)
class TaskInputs:
    """What the tasks' rules read besides the day's rows: the notices sent or to go on their accounts
    (``NOTICES``), the holds ever recorded of the kinds a bar names (``HOLDS_EVER``), the letters'
    deadline rules, the accounts' ages for a limitation (``AGES``) and the periods (``Limits``)."""

    notices: pl.DataFrame
    holds_ever: pl.DataFrame
    deadlines: Mapping[str, Deadline]
    ages: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=AGES))
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def empty(
        cls, deadlines: Mapping[str, Deadline] | None = None, limits: Limits | None = None
    ) -> TaskInputs:
        return cls(
            pl.DataFrame(schema=NOTICES),
            pl.DataFrame(schema=HOLDS_EVER),
            deadlines or {},
            limits=limits or Limits(),
        )


def is_task(channel: pl.Expr | None = None) -> pl.Expr:
    return (pl.col("channel") if channel is None else channel) == TASK_CHANNEL


def needed_kinds(jurisdictions: Iterable[str]) -> list[str]:
    return sorted({p.needs for j in set(jurisdictions) for p in task_rules(j).prerequisites})


def notices_query(kinds: Iterable[str], account_ids: Iterable[str] | None = None) -> Select[Any]:
    """The outbox's rows of ``kinds`` that were sent or may still go (of ``account_ids``, if given)."""
    query = select(
        outbox.c.account_id, outbox.c.kind, outbox.c.state, outbox.c.sent_at, outbox.c.scheduled_at
    ).where(and_(outbox.c.kind.in_(sorted(kinds)), outbox.c.state.not_in(_GONE)))
    if account_ids is not None:
        query = query.where(outbox.c.account_id.in_(sorted(set(account_ids))))
    return query


def notice_frame(read: pl.DataFrame) -> pl.DataFrame:
    """``notices_query``'s rows as ``NOTICES``."""
    if read.is_empty():
        return pl.DataFrame(schema=NOTICES)
    sent = pl.col("state").is_in(_SENT)
    return read.select(
        "account_id",
        "kind",
        sent.alias("sent"),
        pl.when(sent & pl.col("sent_at").is_not_null())
        .then(pl.col("sent_at"))
        .otherwise(pl.col("scheduled_at"))
        .dt.date()
        .alias("day"),
    ).cast(pl.Schema(NOTICES))


def holds_ever_query(as_of: dt.date, kinds: Iterable[str]) -> Select[Any]:
    return select(*(holds.c[name] for name in HOLDS_EVER)).where(
        and_(holds.c.starts_on <= as_of, holds.c.kind.in_(sorted(kinds)))
    )


def hold_ever_frame(read: pl.DataFrame) -> pl.DataFrame:
    return (
        read.with_columns(pl.col("account_id").replace("", None))
        .select(list(HOLDS_EVER))
        .cast(pl.Schema(HOLDS_EVER))
    )


def bar_kinds(jurisdictions: Iterable[str]) -> list[str]:
    return sorted({b.hold for j in set(jurisdictions) for b in task_rules(j).bars})


def decide_tasks(rows: pl.DataFrame, inputs: TaskInputs, as_of: dt.date) -> pl.DataFrame:
    """The decisions (``governor.DECISIONS``) on the day's task rows (``key, account_id, customer_id,
    jurisdiction, kind``) the holds let through: barred → suppressed; waiting for a notice or its deadline
    → deferred (to the ready day, or null while no notice was sent); else planned."""
    ages = {row["account_id"]: row for row in inputs.ages.iter_rows(named=True)}
    out = [_decision(row, inputs, ages.get(row["account_id"]), as_of) for row in rows.iter_rows(named=True)]
    return pl.DataFrame(out, schema=governor.DECISIONS)


def read_inputs(
    connection: Connection,
    rows: pl.DataFrame,
    as_of: dt.date,
    deadlines: Mapping[str, Deadline],
    limits: Limits | None = None,
) -> TaskInputs:
    """``TaskInputs`` for the task rows of a day (their accounts' notices, the holds the bars name, the
    ages of the accounts whose task a limitation concerns)."""
    limits = limits or Limits()
    if rows.is_empty():
        return TaskInputs.empty(deadlines, limits)
    jurisdictions = rows.get_column("jurisdiction").unique().to_list()
    read = connection.execute(
        notices_query(needed_kinds(jurisdictions), rows.get_column("account_id").unique().to_list())
    ).all()
    notices = notice_frame(pl.DataFrame([dict(r._mapping) for r in read], schema=_NOTICE_READ))
    held = connection.execute(holds_ever_query(as_of, bar_kinds(jurisdictions))).all()
    holds_ever = hold_ever_frame(pl.DataFrame([dict(r._mapping) for r in held], schema=HOLDS_EVER))
    limited = {(x.jurisdiction, x.task) for j in jurisdictions for x in task_rules(j).limitations}
    concerned = rows.filter(
        pl.concat_str("jurisdiction", "kind", separator="|").is_in([f"{j}|{t}" for j, t in limited])
    )
    ages = read_ages(connection, concerned.get_column("account_id").unique().sort().to_list(), as_of)
    return TaskInputs(notices, holds_ever, deadlines, ages, limits)


def read_ages(connection: Connection, account_ids: list[str], as_of: dt.date) -> pl.DataFrame:
    """``AGES`` of the accounts as of a day (the day's stored snapshots; payments on or before it)."""
    if not account_ids:
        return pl.DataFrame(schema=AGES)
    out: list[dict[str, Any]] = []
    for start in range(0, len(account_ids), 5_000):
        some = account_ids[start : start + 5_000]
        paid = (
            select(payments.c.account_id, func.max(payments.c.paid_on).label("last_paid_on"))
            .where(payments.c.account_id.in_(some), payments.c.paid_on <= as_of)
            .group_by(payments.c.account_id)
            .subquery()
        )
        query = (
            select(
                accounts.c.account_id,
                customers.c.region,
                snapshots.c.oldest_unpaid_due_date,
                paid.c.last_paid_on,
            )
            .join(customers, customers.c.customer_id == accounts.c.customer_id)
            .outerjoin(
                snapshots,
                and_(snapshots.c.account_id == accounts.c.account_id, snapshots.c.as_of == as_of),
            )
            .outerjoin(paid, paid.c.account_id == accounts.c.account_id)
            .where(accounts.c.account_id.in_(some))
        )
        out.extend(dict(r._mapping) for r in connection.execute(query))
    return pl.DataFrame(out, schema=AGES)


def _decision(
    row: Mapping[str, Any], inputs: TaskInputs, age: Mapping[str, Any] | None, as_of: dt.date
) -> dict[str, Any]:
    rules = task_rules(row["jurisdiction"])
    for bar in rules.bars:
        if bar.task == row["kind"]:
            found = _barred(bar, row, inputs.holds_ever, as_of)
            if found is not None:
                return _row(row["key"], "suppressed", None, bar.rule, bar.citation, found[0], found[1])
    limit: tuple[str, dict[str, Any]] | None = None
    limitation = next((x for x in rules.limitations if x.task == row["kind"]), None)
    if limitation is not None:
        barred, why, seen = time_barred(limitation, row["kind"], age, inputs.limits, as_of)
        if barred:
            return _row(row["key"], "suppressed", None, limitation.rule, limitation.citation, why, seen)
        limit = why, seen
    prerequisite = next((p for p in rules.prerequisites if p.task == row["kind"]), None)
    if prerequisite is None:
        reason = f"no notice is required before {row['kind']} in {row['jurisdiction']}"
        seen = {}
        if limit is not None:
            reason, seen = f"{reason}; {limit[0]}", limit[1]
        return _row(
            row["key"], "planned", _midnight(as_of), "COMMON-TASK", "institution policy", reason, seen
        )
    verdict, ready, reason, seen = waiting_for(
        prerequisite, row["account_id"], inputs.notices, as_of, inputs.deadlines
    )
    if limit is not None:
        reason, seen = f"{reason}; {limit[0]}", {**seen, **limit[1]}
    at = None if ready is None else _midnight(max(ready, as_of))
    return _row(row["key"], verdict, at, prerequisite.rule, prerequisite.citation, reason, seen)


def time_barred(
    limitation: Limitation, kind: str, age: Mapping[str, Any] | None, limits: Limits, as_of: dt.date
) -> tuple[bool, str, dict[str, Any]]:
    """(barred, why, seen): whether the account's debt is time-barred on ``as_of``.

    The period runs from the day the oldest unpaid due fell past due (the day after its due date), or, in
    a state where a payment starts it again (``limits.restarts_on_payment``), from the last payment if
    later. The
    debt is time-barred from the same day ``years`` later. It fails closed: a state with no period set,
    or an account whose oldest unpaid due is not known for the day, is treated as barred, saying why."""
    rule = limitation.rule
    if age is None:
        why = f"{kind} is not opened: the account's age for the limitation was not read ({rule})"
        return True, why, {}
    region = state_of(age["region"])
    years = limits.years.get(region)
    if years is None:
        where = f"state {region}" if region else "a customer without a state (region)"
        why = (
            f"{kind} is not opened: no statute of limitations is set for {where} "
            f"([governor] limitation_years), so the debt may be time-barred ({rule})"
        )
        return True, why, {"region": region, "limitation_years": None}
    oldest = age["oldest_unpaid_due_date"]
    if oldest is None:
        why = f"{kind} is not opened: nothing is known past due on the account as of {as_of} ({rule})"
        return True, why, {"region": region, "limitation_years": years}
    period = period_of(region, oldest, age["last_paid_on"], limits)
    assert period is not None  # the state's years were found above
    seen = {
        "region": region,
        "limitation_years": years,
        "period_from": period.start.isoformat(),
        "time_barred_on": period.barred_on.isoformat(),
    }
    if period.barred(as_of):
        since = f"the debt is time-barred since {period.barred_on}"
        why = f"{kind} is barred: {since} ({period.describe()}; {rule})"
        return True, why, seen
    why = f"time-barred from {period.barred_on} ({years} years in {region} from {period.start}; {rule})"
    return False, why, seen


def waiting_for(
    prerequisite: Prerequisite,
    account_id: str,
    notices: pl.DataFrame,
    as_of: dt.date,
    deadlines: Mapping[str, Deadline],
) -> tuple[str, dt.date | None, str, dict[str, Any]]:
    """(verdict, ready day or None, reason, seen): whether the notice ``prerequisite`` needs was sent on
    the account and its deadline has passed by ``as_of``."""
    needs = prerequisite.needs
    mine = notices.filter((pl.col("account_id") == account_id) & (pl.col("kind") == needs))
    sent = mine.filter(pl.col("sent"))
    rule = deadlines.get(needs, Deadline(0, "calendar"))
    jurisdiction = prerequisite.jurisdiction
    if sent.height:
        day = sent.get_column("day").max()
        assert isinstance(day, dt.date)
        deadline = deadline_for(rule, day, jurisdiction) or day
        ready = deadline + dt.timedelta(days=1)
        seen = {"needs": needs, "sent_on": day.isoformat(), "deadline": deadline.isoformat()}
        if ready <= as_of:
            reason = f"{needs} sent on {day} gave the customer until {deadline}, which has passed"
            return "planned", ready, reason, seen
        reason = (
            f"waits until {ready}: {needs} sent on {day} gives the customer until {deadline} "
            f"({prerequisite.rule})"
        )
        return "deferred", ready, reason, seen
    if mine.height:
        day = mine.get_column("day").min()
        assert isinstance(day, dt.date)
        deadline = deadline_for(rule, max(day, as_of), jurisdiction) or day
        ready = deadline + dt.timedelta(days=1)
        reason = (
            f"waits for {needs} (scheduled for {day}) to be sent, then for its deadline: not before "
            f"{ready} ({prerequisite.rule})"
        )
        return "deferred", ready, reason, {"needs": needs, "scheduled_for": day.isoformat()}
    reason = (
        f"waits for a {needs} to be sent: none has been on this account ({prerequisite.rule}); "
        f"plan one in an earlier stage"
    )
    return "deferred", None, reason, {"needs": needs}


def _barred(
    bar: Bar, row: Mapping[str, Any], holds_ever: pl.DataFrame, as_of: dt.date
) -> tuple[str, dict[str, Any]] | None:
    mine = holds_ever.filter(
        (pl.col("kind") == bar.hold)
        & (pl.col("starts_on") <= as_of)
        & (
            ((pl.col("scope") == "customer") & (pl.col("customer_id") == row["customer_id"]))
            | ((pl.col("scope") == "account") & (pl.col("account_id") == row["account_id"]))
        )
    )
    if bar.since == "in_force":
        mine = mine.filter(pl.col("ends_on").is_null() | (pl.col("ends_on") >= as_of))
    if mine.is_empty():
        return None
    since = mine.get_column("starts_on").min()
    assert isinstance(since, dt.date)
    when = "is in force" if bar.since == "in_force" else "was recorded"
    reason = f"{row['kind']} is barred: a {bar.hold} hold {when} (since {since}; {bar.rule})"
    return reason, {"hold": bar.hold, "since": since.isoformat(), "bar": bar.since}


def _row(
    key: str,
    verdict: str,
    at: dt.datetime | None,
    rule: str,
    citation: str,
    reason: str,
    seen: Mapping[str, Any],
) -> dict[str, Any]:
    return {
        "key": key,
        "verdict": verdict,
        "scheduled_at": at,
        "rule_id": rule,
        "citation": citation,
        "reason": reason,
        "seen": json.dumps(dict(seen), ensure_ascii=False, sort_keys=True),
    }


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


# ---------------------------------------------------------------- storing them


def store_tasks(connection: Connection, rows: pl.DataFrame, now: dt.datetime) -> int:
    """Add the day's tasks the decisions let through (``rows``: the task rows joined with their decision's
    ``verdict``, ``ready_at``, ``rule_id``, ``reason``); a key already stored is left as it is. Returns how
    many were added."""
    if rows.is_empty():
        return 0
    keys = rows.get_column("key").to_list()
    known = set(connection.execute(select(tasks.c.key).where(tasks.c.key.in_(keys))).scalars())
    fresh = [
        {
            "key": row["key"],
            "account_id": row["account_id"],
            "customer_id": row["customer_id"],
            "stage": row["stage"],
            "action": row["action"],
            "kind": row["kind"],
            "state": "open" if row["verdict"] == "planned" else "waiting",
            "planned_on": row["planned_on"],
            "ready_on": None if row["ready_at"] is None else row["ready_at"].date(),
            "rule_id": row["rule_id"],
            "reason": row["reason"],
            "created_at": now,
            "updated_at": now,
        }
        for row in rows.iter_rows(named=True)
        if row["key"] not in known
    ]
    if fresh:
        connection.execute(insert(tasks), fresh)
    return len(fresh)


def open_ready(
    connection: Connection, as_of: dt.date, now: dt.datetime, deadlines: Mapping[str, Deadline]
) -> int:
    """Look at every waiting task again: open those whose notice was sent and whose deadline has passed
    by ``as_of`` (and move the ready day of the others as they learn more). Returns how many opened."""
    waiting = connection.execute(
        select(tasks.c.key, tasks.c.account_id, tasks.c.kind, tasks.c.ready_on, customers.c.jurisdiction)
        .join(customers, customers.c.customer_id == tasks.c.customer_id)
        .where(and_(tasks.c.state == "waiting", or_(tasks.c.ready_on.is_(None), tasks.c.ready_on <= as_of)))
    ).all()
    if not waiting:
        return 0
    kinds = needed_kinds(row.jurisdiction for row in waiting)
    read = connection.execute(notices_query(kinds, (row.account_id for row in waiting))).all()
    notices = notice_frame(pl.DataFrame([dict(r._mapping) for r in read], schema=_NOTICE_READ))
    opened = 0
    for row in waiting:
        prerequisite = next(
            (p for p in task_rules(row.jurisdiction).prerequisites if p.task == row.kind), None
        )
        ready: dt.date | None
        if prerequisite is None:
            verdict, ready, reason = "planned", as_of, "no notice is required any more"
        else:
            verdict, ready, reason, _ = waiting_for(prerequisite, row.account_id, notices, as_of, deadlines)
        values: dict[str, Any] = {"ready_on": ready, "reason": reason, "updated_at": now}
        if verdict == "planned":
            values["state"] = "open"
            opened += 1
        connection.execute(update(tasks).where(tasks.c.key == row.key).values(**values))
    return opened


def open_hold_tasks(connection: Connection, as_of: dt.date, now: dt.datetime) -> int:
    """Open the tasks the rule packs' ``[[hold_tasks]]`` ask for (UK: a vulnerability hold → the
    specialist team's review, UK-CONC-01): for each such hold in force on ``as_of``, one task for each of
    the customer's accounts in collection that day (the account's own, for an account hold), once per hold
    and account (key ``ACCOUNT|-|hold:ID|STARTS_ON|TASK``: a re-run, or the next day, adds none). A
    customer who owes nothing gets none. Returns how many were opened."""
    added = 0
    for jurisdiction in JURISDICTIONS:
        for rule in hold_tasks(jurisdiction):
            found = connection.execute(
                select(
                    holds.c.id,
                    holds.c.starts_on,
                    holds.c.reason,
                    accounts.c.account_id,
                    accounts.c.customer_id,
                    snapshots.c.stage,
                )
                .join(customers, customers.c.customer_id == holds.c.customer_id)
                .join(accounts, accounts.c.customer_id == holds.c.customer_id)
                .join(
                    snapshots,
                    and_(snapshots.c.account_id == accounts.c.account_id, snapshots.c.as_of == as_of),
                )
                .where(
                    customers.c.jurisdiction == jurisdiction,
                    holds.c.kind == rule.hold,
                    holds.c.starts_on <= as_of,
                    or_(holds.c.ends_on.is_(None), holds.c.ends_on >= as_of),
                    or_(holds.c.account_id.is_(None), holds.c.account_id == accounts.c.account_id),
                    snapshots.c.stage != "current",
                )
                .order_by(accounts.c.account_id, holds.c.id)
            ).all()
            rows: dict[str, dict[str, Any]] = {}
            for r in found:  # one per hold and account
                key = f"{r.account_id}|-|hold:{r.id}|{r.starts_on}|{rule.task}"
                rows[key] = {
                    "key": key,
                    "account_id": r.account_id,
                    "customer_id": r.customer_id,
                    "stage": r.stage,
                    "action": f"hold:{rule.hold}",
                    "kind": rule.task,
                    "planned_on": as_of,
                    "verdict": "planned",
                    "ready_at": _midnight(as_of),
                    "rule_id": rule.rule,
                    "reason": (
                        f"a {rule.hold} hold since {r.starts_on} ({r.reason}): the account goes to the "
                        f"{rule.task.replace('_', ' ')} queue; automated reminders stop ({rule.rule}: "
                        f"{rule.citation})"
                    ),
                }
            if rows:
                added += store_tasks(connection, pl.DataFrame(list(rows.values())), now)
    return added


def cancel_time_barred(connection: Connection, as_of: dt.date, now: dt.datetime, limits: Limits) -> int:
    """Look at every open or waiting task a limitation concerns (US: legal review, US-TBD-01) again: one
    whose debt is time-barred by ``as_of`` (or can no longer be shown not to be: the rule fails closed) is
    cancelled, with the reason and the rule. A task is decided when it is planned, but a debt goes on
    ageing: a review opened in time must not lead to a suit after the bar date. Returns how many."""
    rows = connection.execute(
        select(tasks.c.key, tasks.c.account_id, tasks.c.kind, customers.c.jurisdiction)
        .join(customers, customers.c.customer_id == tasks.c.customer_id)
        .where(tasks.c.state.in_(("open", "waiting")))
    ).all()
    concerned = [
        (row, limitation)
        for row in rows
        for limitation in task_rules(row.jurisdiction).limitations
        if limitation.task == row.kind
    ]
    if not concerned:
        return 0
    ages = read_ages(connection, sorted({row.account_id for row, _ in concerned}), as_of)
    by_account = {age["account_id"]: age for age in ages.iter_rows(named=True)}
    cancelled = 0
    for row, limitation in concerned:
        barred, why, _ = time_barred(limitation, row.kind, by_account.get(row.account_id), limits, as_of)
        if barred:
            connection.execute(
                update(tasks)
                .where(tasks.c.key == row.key)
                .values(
                    state="cancelled", rule_id=limitation.rule, reason=f"cancelled: {why}", updated_at=now
                )
            )
            cancelled += 1
    return cancelled


def export_tasks(engine: Engine, first: dt.date, last: dt.date, out: Path) -> int:
    """Write the tasks planned on ``first`` through ``last``, one CSV row each (``TASK_COLUMNS``), in day
    and key order: what the people and the agencies take on."""
    query = (
        select(*(tasks.c[name] for name in TASK_COLUMNS))
        .where(and_(tasks.c.planned_on >= first, tasks.c.planned_on <= last))
        .order_by(tasks.c.planned_on, tasks.c.key)
    )
    frame = read_frame(engine, query).select(TASK_COLUMNS)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.write_csv(out, null_value="")
    return frame.height
