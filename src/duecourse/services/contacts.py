"""Plan the day's contacts: each account's stage actions that fall on the run's day go into the outbox.

Runs after the day's snapshots and stage changes are stored (``duecourse run``). For every account in a
stage that has actions, the day it entered the stage (its newest stage change on or before the day) and
the previous run's day decide which occurrence of each action falls now (``domain/strategy.py``: on a
daily rhythm, the one on the day; after a gap, only the latest missed one). Each becomes one outbox row,
keyed by (account, stage, action, occurrence day, channel): planning the same day again adds nothing.

The time of sending is the action's ``at`` in the customer's time zone, or the start of the contact hours
of the customer's jurisdiction; the dispatcher checks the hours again when it sends.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, select

from duecourse.bootstrap import App
from duecourse.rulepacks.packs import contact_hours
from duecourse.store import outbox as store
from duecourse.store import repo
from duecourse.store.tables import accounts, customers, snapshots, stage_history


@dataclass(frozen=True, slots=True)
class ContactPlan:
    """What planning the day did: messages added, already planned, by channel."""

    as_of: dt.date
    added: int
    already: int
    by_channel: dict[str, int]


def plan_contacts(app: App, as_of: dt.date, now: dt.datetime) -> ContactPlan:
    """Put the actions that fall on ``as_of`` into the outbox (idempotent); ``now`` stamps the rows."""
    actions = app.config.actions
    if not actions:
        return ContactPlan(as_of, 0, 0, {})
    staged = sorted({action.stage for action in actions})
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
            customers.c.timezone,
            customers.c.jurisdiction,
            entered.c.entered_on,
        )
        .join(accounts, accounts.c.account_id == snapshots.c.account_id)
        .join(customers, customers.c.customer_id == accounts.c.customer_id)
        .join(entered, entered.c.account_id == snapshots.c.account_id, isouter=True)
        .where(and_(snapshots.c.as_of == as_of, snapshots.c.stage.in_(staged)))
        .order_by(snapshots.c.account_id)
    )
    previous = repo.previous_run_day(app.engine, as_of)
    items: list[store.Planned] = []
    with app.engine.connect() as connection:
        rows = connection.execute(query).all()
    for account_id, stage, customer_id, timezone, jurisdiction, entered_on in rows:
        if entered_on is None:  # no stage change stored: the run has not recorded its history yet
            continue
        for action in app.config.actions_of(stage):
            falls = action.due(entered_on, as_of, previous)
            if falls is None:
                continue
            local = action.at or contact_hours(jurisdiction).start
            scheduled = dt.datetime.combine(as_of, local, tzinfo=ZoneInfo(timezone)).astimezone(dt.UTC)
            when = (
                "today"
                if falls == as_of
                else f"on {falls} (the latest occurrence since the run of {previous})"
            )
            items.append(
                store.Planned(
                    account_id=account_id,
                    customer_id=customer_id,
                    stage=stage,
                    action=action.name,
                    kind=action.kind,
                    channel=action.channel,
                    planned_on=falls,
                    scheduled_at=scheduled,
                    fallback=action.fallback,
                    reason=(
                        f"stage {stage} entered {entered_on}; action {action.name} "
                        f"({action.channel} {action.kind}) falls {when}"
                    ),
                )
            )
    result = store.plan(app.engine, items, now, f"planned by the run of {as_of}")
    return ContactPlan(as_of, result.added, result.already, dict(Counter(item.channel for item in items)))
