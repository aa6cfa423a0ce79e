"""A stage's actions: what to send, on which channel, on which days after the account entered the stage.

An action fires ``offset_days`` after the day the account entered its stage, then every
``repeat_every_days`` until it has fired ``max_times`` times. The day an account enters a stage counts as
day 0. A run on day D plans the actions that fall on D.

**Catch-up.** After a gap of days without a run, a run plans, for each action, only its latest
occurrence in the days it has not seen (after the previous run, up to D): what the stage calls for
today, never the backlog of missed reminders (Kill Bill's "most severe state" rule). An account that
moved through several stages during the gap only gets its current stage's actions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

ACTION_CHANNELS: tuple[str, ...] = ("letter", "email", "sms", "push", "task")
# Escalations are actions too (``channel = "task"``): work for people or partners, not messages. They
# wait for what the law wants done first (the rule packs' ``[[prerequisites]]`` and ``[[bars]]``) and
# are listed by ``duecourse export tasks``.
TASK_CHANNEL = "task"
TASK_KINDS: tuple[str, ...] = ("agency_placement", "charge_off_review", "credit_report", "legal_review")
# Whom an action addresses: the customer, or each third party the customer named (``to = "contact"``:
# ``services/third_parties.py``), by text or e-mail only, with a kind written for them, which never
# mentions the debt.
ACTION_TO: tuple[str, ...] = ("customer", "contact")
CONTACT_CHANNELS: tuple[str, ...] = ("sms", "email")
CONTACT_KINDS: tuple[str, ...] = ("location_request",)
# A third-party collector's words for a contact kind (US accounts of ``[governor] third_party_products``):
# from a person who says he is confirming or correcting location information and does not name his
# employer (12 CFR 1006.10(b)(1), FDCPA §1692b(1)). Not a kind a strategy names: the message of the
# contact kind is made with these words for such accounts.
COLLECTOR_CONTACT_KINDS: dict[str, str] = {"location_request": "location_request_collector"}


@dataclass(frozen=True, slots=True)
class Action:
    """One action of a stage.

    Attributes:
        stage: the stage's name.
        name: identifies the action within the stage (``"0"``, ``"1"``, ... by position, or as written);
            part of the outbox's idempotency key, so renaming it re-plans.
        channel: letter, email, sms, push, or task (an escalation: ``TASK_KINDS``).
        kind: the letter kind or message template (``overdue_reminder``, ...), or the task's kind.
        offset_days: days after entering the stage (0: the day it entered).
        repeat_every_days: days between repeats (``None``: once).
        max_times: how many times in all.
        at: the preferred local time of the customer (``None``: as soon as the contact hours allow).
        fallback: the channels to try, in order, when this channel fails for good (e-mail bounced → letter).
        experiment: the experiment whose variants this action belongs to (``None``: every account).
        variants: the variants of ``experiment`` whose accounts get this action.
        to: ``customer``, or ``contact``: each third party the customer named (a ``CONTACT_KINDS``
            message by ``CONTACT_CHANNELS``, where the jurisdiction's rules allow it).
    """

    stage: str
    name: str
    channel: str
    kind: str
    offset_days: int = 0
    repeat_every_days: int | None = None
    max_times: int = 1
    at: dt.time | None = None
    fallback: tuple[str, ...] = ()
    experiment: str | None = None
    variants: tuple[str, ...] = ()
    to: str = "customer"

    def occurrence_on_or_before(self, entered_on: dt.date, day: dt.date) -> dt.date | None:
        """The latest day on or before ``day`` on which this action falls, or None."""
        first = entered_on + dt.timedelta(days=self.offset_days)
        if day < first:
            return None
        if self.repeat_every_days is None or self.max_times == 1:
            return first
        times = min(self.max_times - 1, (day - first).days // self.repeat_every_days)
        return first + dt.timedelta(days=times * self.repeat_every_days)

    def due(self, entered_on: dt.date, day: dt.date, previous_run: dt.date | None) -> dt.date | None:
        """The occurrence a run on ``day`` plans: the latest one after ``previous_run``.

        A first run (``previous_run`` None) plans only what falls on ``day`` itself: reminders of days
        before the system ran were never due from it.
        """
        last = self.occurrence_on_or_before(entered_on, day)
        if last is None:
            return None
        since = day - dt.timedelta(days=1) if previous_run is None else previous_run
        return last if last > since else None


# Buckets of the assignment hash: percentages are whole numbers, so 100 buckets would do; 10,000 leaves
# room for finer splits without changing anyone's bucket.
ASSIGNMENT_BUCKETS = 10_000


@dataclass(frozen=True, slots=True)
class Variant:
    """One arm of an experiment: ``percent`` of the accounts; a ``holdout`` arm gets no automated contact
    in the experiment's stages (the baseline the others are measured against)."""

    name: str
    percent: int
    holdout: bool = False


@dataclass(frozen=True, slots=True)
class Experiment:
    """Champion/challenger: the accounts in ``stages`` are split between ``variants`` by a stable hash.

    An account's arm is ``bucket(experiment, account)`` (SHA-256 of ``"name|account_id"``, its first 8
    bytes as an integer, modulo ``ASSIGNMENT_BUCKETS``) against the variants' cumulative percentages, in
    the order written: the same account always lands in the same arm, whatever else is in the portfolio,
    and two experiments split independently. The run records each account's arm the first time it plans
    for it, and the recorded arm is kept: changing the percentages later moves no one already assigned.

    Attributes:
        name: identifies the experiment (part of the hash: renaming it reshuffles everyone).
        stages: the stages it covers (empty: every stage with actions).
        variants: the arms, their percentages summing to 100.
    """

    name: str
    stages: tuple[str, ...]
    variants: tuple[Variant, ...]

    def covers(self, stage: str) -> bool:
        return not self.stages or stage in self.stages

    def variant_of(self, account_id: str) -> Variant:
        """The arm a new account is assigned to."""
        bucket = assignment_bucket(self.name, account_id)
        edge = 0
        for variant in self.variants:
            edge += variant.percent * ASSIGNMENT_BUCKETS // 100
            if bucket < edge:
                return variant
        return self.variants[-1]

    def holdouts(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variants if v.holdout)


def assignment_bucket(experiment: str, account_id: str) -> int:
    """The account's bucket in ``[0, ASSIGNMENT_BUCKETS)`` for ``experiment`` (see ``Experiment``)."""
    digest = hashlib.sha256(f"{experiment}|{account_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % ASSIGNMENT_BUCKETS
