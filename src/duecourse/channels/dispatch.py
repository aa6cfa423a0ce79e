"""The dispatcher: render what is planned, re-check each account just before sending, send once, record.

One pass (:meth:`Dispatcher.run_once`):

1. **recover** rows left in ``sending`` by a dispatcher that died (``store.outbox.recover``);
2. **render** due ``planned`` rows into the exact bytes to send (the composer), in a transaction that
   holds the rows, so a crash while rendering leaves them ``planned``;
3. **send** due ``rendered`` rows: claim a batch (moved to ``sending`` and committed *before* anything
   is sent), re-check each message against the store as it is now, send, and commit each result (a
   message's "sent" while the next one is staged, see :meth:`Dispatcher._send`). On PostgreSQL the
   next batch is claimed and re-checked in a thread while this one is sent.

The re-check (:meth:`Dispatcher._verdicts`, when a batch of up to ``batch`` rows is claimed; the
contact hours once more for each message at the moment it goes) cancels or defers a message that
should not go now:

- a payment arrived since planning (reminder kinds only, ``REMINDER_KINDS``; not the statutory notices):
  cancelled, so no reminder follows a payment;
  that occurrence is not sent again, the action's later occurrences are planned as usual while the
  account stays in the stage;
- an active hold (dispute, not-mine claim, promise, plan, bankruptcy, deceased, litigation) on the
  customer or the account, on the customer's own date: cancelled, except for answers to the customer
  (a dispute acknowledgement must still go);
- an opt-out or a hold on the channel, or a contact point found bad since rendering: this channel fails
  and the message falls back to the action's next channel;
- outside the contact hours of the customer's jurisdiction at ``now`` in the customer's time zone:
  deferred to the next allowed moment (never dropped).

A message to a third party the customer named (``contact_id``, ``services/third_parties.py``) is
re-checked for that person: cancelled once the contact asked to hear no more, or when a payment arrived
since planning (the customer is in touch: no one need be asked to pass a message on); the customer's
holds on the customer or the account stop it as they stop the customer's messages, but not the
customer's opt-out of one channel nor missing consent (those are about the customer's own phone or
mailbox); the hours are those of the contact's time zone (the customer's when not given). One rendered
without the channel's contact sender (``contact_source_addr``, ``contact_from``: by code older than
those settings) fails rather than go under the customer's sender.

Delivery guarantee: **at least once**. A message can reach the customer twice when its dispatcher died
between the channel's acceptance and the commit of its "sent" (at most one message per worker is in
that state at any moment), and when the channel accepted it but the answer was lost (an SMTP reply or
an HTTP response that timed out, one part of a long SMS that went before the next failed): the retry
carries the same bytes, so the same Message-ID / reference lets the receiver drop the copy.

The clock is a parameter (``clock``): tests and replays fix it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, select

from duecourse.channels.base import (
    ChannelDown,
    Outgoing,
    PermanentError,
    Receipt,
    Staged,
    TransientError,
    Transport,
)
from duecourse.rulepacks.packs import contact_hours
from duecourse.store import outbox as store
from duecourse.store.tables import customers, holds

# Kinds that remind or demand: a payment since planning cancels them (the arrears they state are stale;
# a UK default notice is due only while there are arrears). Not the UK notice of sums in arrears: once
# planned it goes whatever is paid since, as the law wants the first of an episode even when the arrears
# are cleared before it is given (CCA s86B(3)), and a part payment does not end the arrears it states as
# of its date (cancelling it would only make it late, s86D); the statutory planning plans no new one once
# the arrears are cleared.
REMINDER_KINDS = frozenset(
    {"pre_due", "overdue_reminder", "final_demand", "credit_report_notice", "uk_default_notice"}
)
# Kinds that answer the customer: holds do not stop them (only the channel's opt-out does).
ANSWER_KINDS = frozenset({"dispute_ack", "dispute_outcome", "promise_confirmation", "plan_confirmation"})
# Notices the law requires whatever was paid (the US validation notice, 12 CFR 1006.34; the UK notice of
# sums in arrears, CCA s86B(3)): a payment does not cancel them; holds do (as their rules say).
NOTICE_KINDS = frozenset({"us_validation_notice", "uk_nosia"})
# Holds that stop collection contact; ``opt_out`` is per channel.
STOPPING_HOLDS = frozenset(
    {
        "dispute",
        "not_mine",
        "promise",
        "plan",
        "bankruptcy",
        "deceased",
        "litigation",
        "judgment",
        "vulnerability",
    }
)
# An arrangement (a promise to pay, a repayment plan), a lawsuit under way or a judgment pauses
# collection, but not the notices the law wants while arrears last: the UK notice of sums in arrears is due
# during an arrangement and while the court has not yet given judgment (CCA s86B: the duty ends when the
# arrears are cleared or a judgment is given; s86D: failing it, no enforcement and no interest for the
# time), and after a judgment the first notice of an episode that triggered before it is still due
# (s86B(3)): ``services/statutory.py`` plans only the notices the law wants once judgment is given.
PAUSING_HOLDS = frozenset({"promise", "plan", "litigation", "judgment"})
NOTICES_WHILE_PAUSED = frozenset({"uk_nosia"})


@dataclass(frozen=True, slots=True)
class Composed:
    """A message rendered: to whom, the exact bytes, and facts about it (subject, segments, letter hash)."""

    recipient: str
    content: bytes
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NotComposed:
    """A message that cannot be rendered for this channel: no usable address, no template, ...

    ``fallback``: whether the next channel of the action should be tried (no address: yes; a broken
    template: no, the message fails and the problem is reported).
    """

    reason: str
    fallback: bool = True


class Composer(Protocol):
    """Renders planned messages; called with a batch so that it can read the accounts in bulk."""

    def compose(
        self, messages: Sequence[store.Message], now: dt.datetime, connection: Connection
    ) -> dict[int, Composed | NotComposed]:
        """Render the messages; anything stored on the way (a letter's PDF) goes through ``connection``,
        the transaction that holds the rows, so that it commits with their new state or not at all."""
        ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter for transient errors.

    The n-th retry waits ``first × factor**(n-1)`` (capped at ``longest``), moved by up to ± ``jitter`` of
    itself. The jitter is drawn from a hash of the message key and the attempt, so a replay computes the
    same times and messages that failed together do not all come back at the same second.
    """

    first: dt.timedelta = dt.timedelta(minutes=1)
    factor: int = 2
    longest: dt.timedelta = dt.timedelta(hours=6)
    jitter: float = 0.2  # a fraction of the delay, not money
    max_attempts: int = 8

    def delay(self, key: str, attempt: int) -> dt.timedelta:
        base: dt.timedelta = min(self.first * self.factor ** max(0, attempt - 1), self.longest)
        digest = hashlib.sha256(f"{key}#{attempt}".encode()).digest()
        unit = int.from_bytes(digest[:8], "big") / 2**64  # in [0, 1)
        stretched: dt.timedelta = base * (1 + self.jitter * (2 * unit - 1))
        return stretched


@dataclass(slots=True)
class Summary:
    """What one pass did, by outcome."""

    recovered: int = 0
    rendered: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    cancelled: int = 0
    deferred: int = 0
    fallbacks: int = 0
    held: int = 0  # left waiting because their channel is down (see ``Dispatcher.down``)
    put_back: int = 0  # claimed, then put back untried because the dispatcher was stopping

    def add(self, other: Summary) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class _Customer:
    timezone: str
    jurisdiction: str


@dataclass(frozen=True, slots=True)
class _Hold:
    scope: str
    account_id: str | None
    channel: str | None
    kind: str
    reason: str
    starts_on: dt.date
    ends_on: dt.date | None  # inclusive; None: until lifted

    def on(self, day: dt.date) -> bool:
        """In force on ``day`` (the customer's local date: a hold's days are the customer's days)."""
        return self.starts_on <= day and (self.ends_on is None or day <= self.ends_on)


Verdict = tuple[str, str, dict[str, Any]]  # outcome ("go", "cancel", "defer", "fallback"), reason, detail


@dataclass(frozen=True, slots=True)
class _Accepted:
    """A message the channel accepted whose "sent" is not recorded yet (see :meth:`Dispatcher._send`)."""

    message_id: int
    provider_id: str
    reason: str
    detail: dict[str, Any]
    at: dt.datetime


@dataclass(frozen=True, slots=True)
class _Batch:
    """Claimed rows, re-checked at ``now``, with the customers read for the re-check."""

    rows: list[store.Message]
    verdicts: dict[int, Verdict]
    people: dict[str, _Customer]
    now: dt.datetime


class _Prefetch:
    """A batch claimed and re-checked in a thread of its own, while the dispatcher sends the one before.

    The claim commits before it returns, as any claim does: the rows are this worker's (``sending``) and
    a worker that dies holding them leaves them to recovery, untried.
    """

    def __init__(self, claim: Callable[[], _Batch]) -> None:
        self._claim = claim
        self._batch: _Batch | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="dispatch-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._batch = self._claim()
        except BaseException as error:  # handed to the dispatcher's thread by result()
            self._error = error

    def result(self) -> _Batch:
        """The batch, once claimed; what the claim raised, raised here."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._batch is not None
        return self._batch


class Dispatcher:
    """Sends the outbox through the configured transports; one instance per worker."""

    def __init__(
        self,
        engine: Engine,
        transports: Mapping[str, Transport],
        composer: Composer,
        clock: Callable[[], dt.datetime],
        *,
        worker: int,
        batch: int = 100,
        retry: RetryPolicy | None = None,
        consent_required: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.engine = engine
        self.transports = dict(transports)
        # The transports that stage a message (isinstance on a Protocol is slow: asked once, not per message).
        self._staged = {name: t for name, t in self.transports.items() if isinstance(t, Staged)}
        self.composer = composer
        self.clock = clock
        self.worker = worker
        self.batch = batch
        self.retry = retry or RetryPolicy()
        # Per jurisdiction, the channels used only with the customer's recorded consent (services/consent.py).
        self.consent_required = dict(consent_required or {})
        # Channels found down in this dispatcher's life (wrong settings): their messages stay waiting.
        self.down: dict[str, str] = {}
        self._people: dict[str, _Customer] = {}  # the customers of the batch being sent
        self._sent = store.SentRecorder(engine)
        self._accepted: _Accepted | None = None  # at most one message accepted and not yet recorded
        # The next batch is claimed while this one is sent: PostgreSQL only (SQLite has one writer).
        self.prefetch = engine.dialect.name == "postgresql"
        self._next: _Prefetch | None = None

    # ----------------------------------------------------------------------------------------- passes
    def run_once(self, *, recover: bool = True, stop: Callable[[], bool] | None = None) -> Summary:
        """Recover, then render and send everything due at the clock's time, until nothing is due (or
        ``stop()`` says so between two batches)."""
        total = Summary()
        if recover:
            total.recovered = store.recover(self.engine, self.clock())
        while stop is None or not stop():
            step = self.render_due()
            step.add(self.send_due(stop))
            total.add(step)
            if (
                step.rendered == 0
                and step.sent + step.retried + step.failed + step.cancelled + step.deferred == 0
            ):
                break
        self._put_back_prefetched("claimed ahead, and the pass ended before it", total)
        return total

    def render_due(self) -> Summary:
        """Render one batch of due ``planned`` rows (held locked while rendering)."""
        summary = Summary()
        now = self.clock()
        with store.write_transaction(self.engine) as connection:
            rows = store.lock_due(connection, now, ("planned",), self.batch)
            if not rows:
                return summary
            verdicts, _ = self._verdicts(connection, rows, now, rendering=True)
            go = [row for row in rows if verdicts[row.id][0] == "go"]
            composed = self.composer.compose(go, now, connection) if go else {}
            changes: list[store.Change] = []
            fallbacks: list[store.Message] = []
            for row in rows:
                outcome, reason, detail = verdicts[row.id]
                if outcome == "go":
                    made = composed[row.id]
                    if isinstance(made, Composed):
                        changes.append(
                            store.Change(
                                row.id,
                                "planned",
                                "rendered",
                                "rendered",
                                {
                                    "recipient": made.recipient,
                                    "content": made.content,
                                    "meta": dict(made.meta),
                                },
                                {"bytes": len(made.content), "recipient": made.recipient},
                            )
                        )
                        summary.rendered += 1
                        continue
                    outcome, reason, detail = ("fallback" if made.fallback else "fail"), made.reason, {}
                self._settle(row, "planned", outcome, reason, detail, now, changes, fallbacks, summary)
            store.apply(connection, changes, now)
            self._plan_fallbacks(connection, fallbacks, now, summary)
        return summary

    def send_due(self, stop: Callable[[], bool] | None = None) -> Summary:
        """Claim one batch of due ``rendered`` rows, re-check them, send each and record each (the last
        one's "sent" is committed before this returns).

        ``stop()`` is asked before each message: when it says so, the rows not tried yet are put back
        (untried, their attempt not counted) and the batch ends. On PostgreSQL, while a full batch is
        sent, the next one is claimed and re-checked in a thread (:class:`_Prefetch`), so that the
        channel does not wait for the claim; a prefetched batch is put back when the dispatcher stops.
        """
        summary = Summary()
        skip = tuple(self.down)
        batch = self._next.result() if self._next is not None else self._claim(skip)
        self._next = None
        if not batch.rows:
            return summary
        self._people = batch.people
        if self.prefetch and len(batch.rows) == self.batch and not (stop is not None and stop()):
            self._next = _Prefetch(lambda: self._claim(skip))
        rows, verdicts, now = batch.rows, batch.verdicts, batch.now
        held: list[store.Change] = []
        fallbacks: list[store.Message] = []
        for row in rows:
            outcome, reason, detail = verdicts[row.id]
            if outcome != "go":
                self._settle(row, "sending", outcome, reason, detail, now, held, fallbacks, summary)
        if held or fallbacks:
            with store.write_transaction(self.engine) as connection:
                store.apply(connection, held, now)
                self._plan_fallbacks(connection, fallbacks, now, summary)
        going = [row for row in rows if verdicts[row.id][0] == "go"]
        try:
            for done, row in enumerate(going):
                if stop is not None and stop():
                    self._put_back(going[done:], "the dispatcher is stopping", summary)
                    self._put_back_prefetched("the dispatcher is stopping", summary)
                    break
                self._send(row, summary)
        finally:
            try:
                self._record_accepted()
            finally:
                self._sent.close()  # the recorder's connection is kept for one batch
        return summary

    def _put_back_prefetched(self, why: str, summary: Summary) -> None:
        """Put back the batch claimed ahead, if any: it will not be sent in this pass."""
        pending, self._next = self._next, None
        if pending is not None:
            self._put_back(pending.result().rows, why, summary)

    def _claim(self, skip_channels: tuple[str, ...]) -> _Batch:
        """Claim a batch and re-check it (in the dispatcher's thread, or the prefetch's)."""
        now = self.clock()
        rows = store.claim(self.engine, self.worker, now, self.batch, skip_channels=skip_channels)
        if not rows:
            return _Batch([], {}, {}, now)
        with self.engine.connect() as connection:
            verdicts, people = self._verdicts(connection, rows, now, rendering=False)
        return _Batch(rows, verdicts, people, now)

    # ------------------------------------------------------------------------------------------ sending
    def _send(self, row: store.Message, summary: Summary) -> None:
        """Send one claimed message and record the outcome.

        "sent" is recorded with the next message overlapped: a transport that can stage a message
        (``channels/base.Staged``, SMTP) writes the next message up to its last step, and the previous
        message's "sent" is committed there (:meth:`_record_accepted`) while the server reads this one.
        So a worker never holds more than one message that the channel accepted and the store does not
        know as sent: the same window as recording each at once, without the server waiting for it.
        Before anything else is recorded or sent without staging, the accepted message is recorded.
        """
        transport = self.transports.get(row.channel)
        if row.channel in self.down:
            self._hold_back(row, self.down[row.channel], summary)
            return
        late = self._outside_hours(row)
        if late is not None:  # the batch took long, and the evening came: wait for the morning
            deferral: list[store.Change] = []
            self._settle(row, "sending", "defer", late[0], late[1], self.clock(), deferral, [], summary)
            store.record(self.engine, deferral, self.clock())
            return
        item = Outgoing(row.id, row.key, row.channel, row.recipient, row.content or b"", _text_meta(row.meta))
        failure: tuple[str, str, dict[str, Any]] | None = None
        receipt: Receipt | None = None
        own = "source_addr" if row.channel == "sms" else "envelope_from"
        if transport is None:
            failure = ("fail", f"no {row.channel} channel is configured", {})
        elif row.contact_id and not item.meta.get(own):
            # rendered under the customer's sender (before contact senders existed): it may reveal the debt
            failure = ("fail", "a message to a contact without the channel's contact sender is not sent", {})
        else:
            try:
                staged = self._staged.get(row.channel)
                if staged is not None:
                    receipt = staged.send_staged(item, self._record_accepted)
                else:
                    self._record_accepted()
                    receipt = transport.send(item)
            except TransientError as error:
                failure = ("retry", error.reason, {"code": error.code})
            except ChannelDown as error:
                self._record_accepted()
                self.down[row.channel] = f"{error.code} {error.reason}".strip()
                self._hold_back(row, self.down[row.channel], summary)
                return
            except PermanentError as error:
                failure = ("fallback", error.reason, {"code": error.code})
        self._record_accepted()  # a no-op unless the message was refused before its last step
        now = self.clock()
        if receipt is not None:
            detail = {"provider_id": receipt.provider_id, "detail": receipt.detail, "worker": self.worker}
            reason = f"accepted by the {row.channel} channel"
            self._accepted = _Accepted(row.id, receipt.provider_id, reason, detail, now)
            summary.sent += 1
            return
        assert failure is not None
        changes: list[store.Change] = []
        fallbacks: list[store.Message] = []
        self._settle(row, "sending", *failure, now, changes, fallbacks, summary)
        with store.write_transaction(self.engine) as connection:
            store.apply(connection, changes, now)
            self._plan_fallbacks(connection, fallbacks, now, summary)

    def _record_accepted(self) -> None:
        """Commit "sent" for the message accepted last, if it is not recorded yet."""
        accepted, self._accepted = self._accepted, None
        if accepted is not None:
            self._sent.record(
                accepted.message_id,
                self.worker,
                accepted.provider_id,
                accepted.reason,
                accepted.detail,
                accepted.at,
            )

    def _outside_hours(self, row: store.Message) -> tuple[str, dict[str, Any]] | None:
        """The contact hours checked again at the moment of sending (the batch's check may be minutes old)."""
        person = self._people.get(_whom(row))
        return None if person is None else _outside_hours(row, person, self.clock())

    def _hold_back(self, row: store.Message, why: str, summary: Summary) -> None:
        """Put a claimed message back, untried, because its channel is down; the attempt is not counted."""
        now = self.clock()
        reason = f"the {row.channel} channel is down: {why}; waiting until its settings are fixed"
        values = {"attempts": row.attempts - 1, "next_attempt_at": None}
        change = store.Change(row.id, "sending", "rendered", reason, values, worker=self.worker)
        store.record(self.engine, [change], now)
        summary.held += 1

    def _put_back(self, rows: Sequence[store.Message], why: str, summary: Summary) -> None:
        """Put claimed messages back, untried (their attempt not counted), for another pass or worker."""
        now = self.clock()
        reason = f"put back untried: {why}"
        store.record(
            self.engine,
            [
                store.Change(
                    row.id,
                    "sending",
                    "rendered",
                    reason,
                    {"attempts": row.attempts - 1, "next_attempt_at": None},
                    worker=self.worker,
                )
                for row in rows
            ],
            now,
        )
        summary.put_back += len(rows)

    def _settle(
        self,
        row: store.Message,
        before: str,
        outcome: str,
        reason: str,
        detail: dict[str, Any],
        now: dt.datetime,
        changes: list[store.Change],
        fallbacks: list[store.Message],
        summary: Summary,
    ) -> None:
        """Turn a verdict other than "go" into the row's state change (and a fallback to plan).

        A change out of ``sending`` applies only while this worker still holds the row; a deferral gives
        back the attempt its claim counted (waiting for the morning is not a failed attempt).
        """
        worker = self.worker if before == "sending" else None
        if outcome == "cancel":
            changes.append(store.Change(row.id, before, "cancelled", reason, {}, detail, worker=worker))
            summary.cancelled += 1
        elif outcome == "defer":
            back = "planned" if row.content is None else "rendered"
            values: dict[str, Any] = {"scheduled_at": detail["until"]}
            if before == "sending":
                values["attempts"] = row.attempts - 1
            deferred = {**detail, "deferred": True}
            changes.append(store.Change(row.id, before, back, reason, values, deferred, worker=worker))
            summary.deferred += 1
        elif outcome == "retry" and row.attempts < self.retry.max_attempts:
            wait = self.retry.delay(row.key, row.attempts)
            values = {"next_attempt_at": now + wait}
            changes.append(
                store.Change(
                    row.id,
                    before,
                    "rendered",
                    f"will retry: {reason}",
                    values,
                    {**detail, "wait_s": wait.total_seconds()},
                    worker=worker,
                )
            )
            summary.retried += 1
        else:
            if outcome == "retry":
                reason = f"gave up after {row.attempts} attempts: {reason}"
            changes.append(store.Change(row.id, before, "failed", reason, {}, detail, worker=worker))
            summary.failed += 1
            if outcome in ("fallback", "retry") and row.fallback:
                fallbacks.append(row)

    def _plan_fallbacks(
        self, connection: Any, rows: Sequence[store.Message], now: dt.datetime, summary: Summary
    ) -> None:
        """Plan the next channel of each failed message's action, now, under a key of its own."""
        if not rows:
            return
        items = [store.fallback_for(row, now) for row in rows]
        result = store.plan_in(connection, items, now, "fallback: the previous channel failed")
        summary.fallbacks += result.added

    # ------------------------------------------------------------------------------------------ checks
    def _verdicts(
        self, connection: Any, rows: Sequence[store.Message], now: dt.datetime, *, rendering: bool
    ) -> tuple[dict[int, Verdict], dict[str, _Customer]]:
        """The re-check of each message against the store as it is now (see the module docstring), and
        the customers it read (for the contact hours at the moment of sending)."""
        customer_ids = sorted({row.customer_id for row in rows})
        people = _customers(connection, customer_ids)
        holds_of = _holds(connection, customer_ids, now)
        stopped: set[str] = set()
        if any(row.contact_id for row in rows):
            stopped = _add_contacts(connection, people, [row for row in rows if row.contact_id])
            # the customer's opt-out of a channel, or consent, is about the customer's phone or mailbox
            whole = {
                c: [h for h in found if h.scope != "channel" and h.channel is None]
                for c, found in holds_of.items()
            }
            for contact in {row.contact_id for row in rows if row.contact_id}:
                owner = next(row.customer_id for row in rows if row.contact_id == contact)
                holds_of[f"contact:{contact}"] = whole.get(owner, [])
        if self.consent_required:
            _add_consent_holds(
                connection,
                holds_of,
                {c: p for c, p in people.items() if c in customer_ids},
                self.consent_required,
                now,
            )
        paid = store.payments_since(connection, [r for r in rows if r.kind in REMINDER_KINDS or r.contact_id])
        bad = set() if rendering else store.bad_addresses(connection, customer_ids)
        verdicts: dict[int, Verdict] = {}
        for row in rows:
            if row.contact_id in stopped:
                verdicts[row.id] = (
                    "cancel",
                    f"contact {row.contact_id} asked to hear no more",
                    {"contact": True},
                )
                continue
            verdicts[row.id] = self._verdict(row, now, people.get(_whom(row)), holds_of, paid, bad)
        return verdicts, people

    def _verdict(
        self,
        row: store.Message,
        now: dt.datetime,
        person: _Customer | None,
        holds_of: Mapping[str, list[_Hold]],
        paid: Mapping[int, tuple[int, int]],
        bad: set[tuple[str, str, str]],
    ) -> Verdict:
        if person is None:
            return "cancel", f"customer {row.customer_id} is not in the store", {}
        if row.id in paid:
            count, minor = paid[row.id]
            return (
                "cancel",
                f"a payment arrived since it was planned ({count} payment(s))",
                {"payments": count, "amount_minor": minor},
            )
        local_day = now.astimezone(_zone(person.timezone)).date()
        for hold in holds_of.get(_whom(row), []):
            if not hold.on(local_day):
                continue
            applies = hold.scope == "customer" or (
                hold.scope == "account" and hold.account_id == row.account_id
            )
            if hold.scope == "channel" and hold.channel == row.channel:
                closed = (
                    f"the customer opted out of {row.channel} ({hold.kind}: {hold.reason})"
                    if hold.kind != "no_consent"
                    else f"{hold.reason} (consent is required in {person.jurisdiction})"
                )
                return "fallback", closed, {"hold": hold.kind}
            if applies and _stops(hold.kind, row):
                return (
                    "cancel",
                    f"on hold: {hold.kind} ({hold.reason})",
                    {"hold": hold.kind, "scope": hold.scope},
                )
        if (row.customer_id, row.channel, row.recipient) in bad:
            return "fallback", f"{row.recipient} was found bad since it was rendered", {}
        late = _outside_hours(row, person, now)
        if late is not None:
            return "defer", late[0], late[1]
        return "go", "", {}


def _add_consent_holds(
    connection: Any,
    holds_of: dict[str, list[_Hold]],
    people: Mapping[str, _Customer],
    required: Mapping[str, tuple[str, ...]],
    now: dt.datetime,
) -> None:
    """Close, as a channel hold, each channel a customer's jurisdiction uses only with consent and the
    customer has none in force on (the UTC date of ``now``): the message falls back as for an opt-out."""
    from duecourse.services.consent import NO_CONSENT, consented

    wanted = {cid: required[p.jurisdiction] for cid, p in people.items() if p.jurisdiction in required}
    if not wanted:
        return
    day = now.astimezone(dt.UTC).date()
    channels = {c for chosen in wanted.values() for c in chosen}
    given = consented(connection, wanted, channels, day)
    for customer_id, chosen in wanted.items():
        for channel in chosen:
            if (customer_id, channel) not in given:
                reason = f"no recorded consent to be contacted by {channel}"
                holds_of.setdefault(customer_id, []).append(
                    _Hold("channel", None, channel, NO_CONSENT, reason, dt.date.min, None)
                )


def _whom(row: store.Message) -> str:
    """Whom a message goes to, as the re-check's tables are keyed: the customer, or ``contact:ID``."""
    return f"contact:{row.contact_id}" if row.contact_id else row.customer_id


def _add_contacts(connection: Any, people: dict[str, _Customer], rows: Sequence[store.Message]) -> set[str]:
    """Add to ``people`` the contacts these messages go to (``contact:ID``: the contact's time zone, the
    customer's when not given; the customer's jurisdiction); the contacts who asked to hear no more."""
    from duecourse.store.tables import third_parties, third_party_stops

    ids = sorted({row.contact_id for row in rows})
    zones = dict(
        connection.execute(
            select(third_parties.c.contact_id, third_parties.c.timezone).where(
                third_parties.c.contact_id.in_(ids)
            )
        ).all()
    )
    for row in rows:
        owner = people.get(row.customer_id)
        if owner is not None:
            people[f"contact:{row.contact_id}"] = _Customer(
                zones.get(row.contact_id) or owner.timezone, owner.jurisdiction
            )
    return set(
        connection.execute(
            select(third_party_stops.c.contact_id).where(third_party_stops.c.contact_id.in_(ids))
        ).scalars()
    )


def _stops(hold_kind: str, row: store.Message) -> bool:
    """Whether a hold of ``hold_kind`` on the row's account stops it, as the governor decides at planning
    (``engine/governor.py``): a stopping hold stops all but the answers to the customer (and an arrangement
    not the notices due during one, ``NOTICES_WHILE_PAUSED``); a ``vulnerability`` hold only the automated
    reminders on e-mail, SMS and push (letters and required notices still go)."""
    if hold_kind == "vulnerability":
        return row.kind in REMINDER_KINDS and row.channel != "letter"
    if hold_kind in PAUSING_HOLDS and row.kind in NOTICES_WHILE_PAUSED:
        return False
    return hold_kind in STOPPING_HOLDS and row.kind not in ANSWER_KINDS


def _outside_hours(
    row: store.Message, person: _Customer, now: dt.datetime
) -> tuple[str, dict[str, Any]] | None:
    """Why ``row`` must wait and until when, if ``now`` is outside the customer's contact hours."""
    hours = contact_hours(person.jurisdiction)
    if row.channel not in hours.channels:
        return None
    until = hours.next_allowed(now, person.timezone)
    if until is None:
        return None
    local = now.astimezone(_zone(person.timezone))
    reason = f"deferred: {local:%H:%M} in {person.timezone} is outside {hours.describe()} ({hours.rule})"
    return reason, {"until": until, "rule": hours.rule, "citation": hours.citation}


def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _text_meta(meta: Mapping[str, Any]) -> dict[str, str]:
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in meta.items()}


def _customers(connection: Any, ids: Sequence[str]) -> dict[str, _Customer]:
    found: dict[str, _Customer] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        query = select(customers.c.customer_id, customers.c.timezone, customers.c.jurisdiction).where(
            customers.c.customer_id.in_(chunk)
        )
        for customer_id, timezone, jurisdiction in connection.execute(query):
            found[customer_id] = _Customer(timezone, jurisdiction)
    return found


def _holds(connection: Any, ids: Sequence[str], now: dt.datetime) -> dict[str, list[_Hold]]:
    """The holds of these customers that may be in force at ``now`` somewhere on Earth (the UTC date ± 1);
    whether one is in force for a customer is decided on the customer's own date (:meth:`_Hold.on`)."""
    today = now.astimezone(dt.UTC).date()
    found: dict[str, list[_Hold]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        query = select(
            holds.c.customer_id,
            holds.c.scope,
            holds.c.account_id,
            holds.c.channel,
            holds.c.kind,
            holds.c.reason,
            holds.c.starts_on,
            holds.c.ends_on,
        ).where(
            holds.c.customer_id.in_(chunk),
            holds.c.starts_on <= today + dt.timedelta(days=1),
            (holds.c.ends_on.is_(None)) | (holds.c.ends_on >= today - dt.timedelta(days=1)),
        )
        for customer_id, scope, account_id, channel, kind, reason, starts, ends in connection.execute(query):
            found.setdefault(customer_id, []).append(
                _Hold(scope, account_id, channel, kind, reason, starts, ends)
            )
    return found
