"""The outbox and the dispatcher on both databases, with the fake transport (the adapters have their own
tests against real peers): once and only once, re-checked before sending, retried, fallen back, recovered.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from outbox_support import (
    DAY,
    NOON_CN,
    UTC,
    Clock,
    Composer,
    dispatcher_for,
    load_book,
    outbox_rows,
    planned_message,
)
from sqlalchemy import Engine, create_engine, insert, text, update

from duecourse.channels.base import (
    ChannelDown,
    Outgoing,
    PermanentError,
    Receipt,
    TransientError,
    reference_for,
)
from duecourse.channels.dispatch import Dispatcher, RetryPolicy
from duecourse.channels.fake import FakeTransport
from duecourse.store import outbox as store
from duecourse.store.tables import customers, holds, payments


@pytest.fixture
def book(engine: Engine) -> Engine:
    return load_book(engine)


def test_planning_twice_adds_nothing_and_a_pass_sends_each_message_once(book: Engine) -> None:
    first = store.plan(book, [planned_message("A1"), planned_message("A2")], NOON_CN, "run of 2026-03-02")
    again = store.plan(book, [planned_message("A1"), planned_message("A2")], NOON_CN, "run of 2026-03-02")
    assert (first.added, first.already, again.added, again.already) == (2, 0, 0, 2)

    email = FakeTransport("email")
    summary = dispatcher_for(book, Clock(NOON_CN), email=email).run_once()
    assert (summary.rendered, summary.sent) == (2, 2)
    assert sorted(item.recipient for item in email.sent) == ["c1@example.cn", "c2@example.cn"]
    assert (
        dispatcher_for(book, Clock(NOON_CN), email=email).run_once().sent == 0
    )  # a second pass sends nothing
    assert len(email.sent) == 2

    row = outbox_rows(book)[0]
    assert (row.state, row.content) == ("sent", b"overdue_reminder for C1")
    assert row.provider_id == f"fake-{reference_for(row.key)}"
    assert row.sent_at == NOON_CN
    trail = [(e["from_state"], e["to_state"]) for e in store.events(book, row.id)]
    assert trail == [("", "planned"), ("planned", "rendered"), ("rendered", "sending"), ("sending", "sent")]


def test_a_payment_since_planning_cancels_a_reminder_but_not_an_answer(book: Engine) -> None:
    store.plan(
        book, [planned_message("A1"), planned_message("A1", kind="dispute_ack", action="ack")], NOON_CN, "run"
    )
    with book.begin() as c:
        c.execute(insert(payments).values(payment_id="P1", account_id="A1", paid_on=DAY, amount_minor=100_00))
    email = FakeTransport("email")
    summary = dispatcher_for(book, Clock(NOON_CN), email=email).run_once()
    assert (summary.cancelled, summary.sent) == (1, 1)
    reminder, ack = outbox_rows(book)
    assert reminder.state == "cancelled"
    assert reminder.reason == "a payment arrived since it was planned (1 payment(s))"
    assert [item.key for item in email.sent] == [ack.key]


def test_a_payment_since_planning_does_not_cancel_the_statutory_notices(book: Engine) -> None:
    """The UK notice of sums in arrears goes whatever is paid since planning: the first of an episode is
    due even when the arrears are cleared before it is given (CCA s86B(3)); the US validation notice too
    (12 CFR 1006.34). A reminder planned beside them is cancelled."""
    planned = [
        planned_message("A1", kind="uk_nosia", action="statutory-uk_nosia"),
        planned_message("A1", kind="us_validation_notice", action="statutory-us_validation_notice"),
        planned_message("A1"),
    ]
    store.plan(book, planned, NOON_CN, "run")
    with book.begin() as c:
        c.execute(insert(payments).values(payment_id="P1", account_id="A1", paid_on=DAY, amount_minor=100_00))
    email = FakeTransport("email")
    summary = dispatcher_for(book, Clock(NOON_CN), email=email).run_once()
    states = {row.kind: row.state for row in outbox_rows(book)}
    assert states == {"uk_nosia": "sent", "us_validation_notice": "sent", "overdue_reminder": "cancelled"}
    assert (summary.cancelled, summary.sent) == (1, 2)


def test_a_payment_already_known_at_planning_does_not_cancel(book: Engine) -> None:
    with book.begin() as c:
        c.execute(insert(payments).values(payment_id="P0", account_id="A1", paid_on=DAY, amount_minor=1_00))
    store.plan(book, [planned_message("A1")], NOON_CN, "run")
    assert dispatcher_for(book, Clock(NOON_CN)).run_once().sent == 1


def test_a_payment_arriving_between_rendering_and_sending_cancels(book: Engine) -> None:
    store.plan(book, [planned_message("A1")], NOON_CN, "run")
    dispatcher = dispatcher_for(book, Clock(NOON_CN))
    assert dispatcher.render_due().rendered == 1
    with book.begin() as c:
        c.execute(insert(payments).values(payment_id="P1", account_id="A1", paid_on=DAY, amount_minor=5_00))
    assert dispatcher.send_due().cancelled == 1
    assert outbox_rows(book)[0].state == "cancelled"


def test_holds_cancel_collection_but_an_opt_out_falls_back_to_the_next_channel(book: Engine) -> None:
    with book.begin() as c:
        c.execute(
            insert(holds),
            [
                _hold("C1", "customer", "dispute", None, None),
                _hold("C2", "channel", "opt_out", None, "email"),
                _hold("C3", "account", "promise", "A3", None, ends=DAY - dt.timedelta(days=1)),  # ended
            ],
        )
    store.plan(
        book,
        [
            planned_message("A1"),
            planned_message("A2"),
            planned_message("A3", scheduled_at=NOON_CN + dt.timedelta(hours=12)),
        ],
        NOON_CN,
        "run",
    )
    letter = FakeTransport("letter")
    email = FakeTransport("email")
    clock = Clock(
        NOON_CN + dt.timedelta(hours=12)
    )  # 09:00 in New York, 22:00 in Shanghai (letters have no hours)
    summary = dispatcher_for(book, clock, email=email, letter=letter).run_once()
    rows = {(m.account_id, m.channel): m for m in outbox_rows(book)}
    assert rows["A1", "email"].state == "cancelled"
    assert rows["A1", "email"].reason.startswith("on hold: dispute")
    assert rows["A2", "email"].state == "failed"
    assert rows["A2", "email"].reason.startswith("the customer opted out of email")
    fallback = rows["A2", "letter"]
    assert (fallback.state, fallback.replaces_id, fallback.fallback) == ("sent", rows["A2", "email"].id, ())
    assert rows["A3", "email"].state == "sent"  # the promise hold had ended
    assert (summary.cancelled, summary.failed, summary.fallbacks) == (1, 1, 1)
    assert [i.recipient for i in letter.sent] == ["C2"]


def test_a_vulnerability_hold_stops_automated_reminders_but_not_letters(book: Engine) -> None:
    """As the governor decides at planning: the e-mail reminder is cancelled, the letter still goes."""
    with book.begin() as c:
        c.execute(insert(holds), [_hold("C1", "customer", "vulnerability", None, None)])
    store.plan(
        book,
        [planned_message("A1"), planned_message("A1", channel="letter", action="1", fallback=())],
        NOON_CN,
        "run",
    )
    letter = FakeTransport("letter")
    dispatcher_for(book, Clock(NOON_CN), email=FakeTransport("email"), letter=letter).run_once()
    rows = {m.channel: m for m in outbox_rows(book)}
    assert rows["email"].state == "cancelled"
    assert rows["email"].reason.startswith("on hold: vulnerability")
    assert rows["letter"].state == "sent"
    assert [i.recipient for i in letter.sent] == ["C1"]


def _hold(
    cid: str, scope: str, kind: str, account: str | None, channel: str | None, ends: dt.date | None = None
) -> dict[str, Any]:
    return {
        "scope": scope,
        "customer_id": cid,
        "account_id": account,
        "channel": channel,
        "kind": kind,
        "starts_on": DAY - dt.timedelta(days=10),
        "ends_on": ends,
        "reason": f"{kind} test",
        "created_at": NOON_CN,
    }


@pytest.mark.parametrize(
    ("utc", "deferred_to"),
    [
        (dt.datetime(2026, 3, 2, 13, 59, tzinfo=UTC), None),  # 21:59 in Shanghai: allowed
        (
            dt.datetime(2026, 3, 2, 14, 0, tzinfo=UTC),
            dt.datetime(2026, 3, 3, 0, 0, tzinfo=UTC),
        ),  # 22:00: next 08:00
    ],
)
def test_contact_hours_are_checked_again_at_send_time(
    book: Engine, utc: dt.datetime, deferred_to: dt.datetime | None
) -> None:
    store.plan(book, [planned_message("A1", channel="sms", scheduled_at=NOON_CN)], NOON_CN, "run")
    sms = FakeTransport("sms")
    summary = dispatcher_for(book, Clock(utc), sms=sms).run_once()
    row = outbox_rows(book)[0]
    if deferred_to is None:
        assert (summary.sent, row.state) == (1, "sent")
        assert store.status(book).sms_segments == {"sent": 2}  # what the gateway bills
        return
    assert (summary.deferred, summary.sent, row.state, row.scheduled_at) == (1, 0, "planned", deferred_to)
    assert row.reason == "deferred: 22:00 in Asia/Shanghai is outside 08:00-22:00 (CN-COL-08)"
    # Nothing is due before 08:00; at 08:00 it goes.
    assert dispatcher_for(book, Clock(deferred_to - dt.timedelta(minutes=1)), sms=sms).run_once().sent == 0
    assert dispatcher_for(book, Clock(deferred_to), sms=sms).run_once().sent == 1


def test_a_transient_error_is_retried_with_backoff_and_a_permanent_one_falls_back(book: Engine) -> None:
    store.plan(book, [planned_message("A1"), planned_message("A2")], NOON_CN, "run")
    email = FakeTransport(
        "email",
        failures={
            "c1@example.cn": [TransientError("try later", code="451")],
            "c2@example.cn": [PermanentError("no such user", code="550")],
        },
    )
    letter = FakeTransport("letter")
    clock = Clock(NOON_CN)
    policy = RetryPolicy()
    dispatcher = Dispatcher(
        book, {"email": email, "letter": letter}, Composer(book), clock, worker=1, retry=policy
    )
    summary = dispatcher.run_once()
    assert (summary.retried, summary.failed, summary.fallbacks, summary.sent) == (1, 1, 1, 1)
    rows = {(m.account_id, m.channel): m for m in outbox_rows(book)}
    retry = rows["A1", "email"]
    wait = policy.delay(retry.key, 1)
    assert dt.timedelta(seconds=48) <= wait <= dt.timedelta(seconds=72)
    assert (retry.state, retry.attempts, retry.next_attempt_at) == ("rendered", 1, NOON_CN + wait)
    assert retry.reason == "will retry: try later"
    assert rows["A2", "email"].reason == "no such user"
    assert rows["A2", "letter"].state == "sent"
    clock.now = NOON_CN + wait
    assert dispatcher.run_once().sent == 1
    assert [i.recipient for i in email.sent] == ["c1@example.cn"]


def test_retries_stop_after_the_last_attempt_and_fall_back(book: Engine) -> None:
    store.plan(book, [planned_message("A1")], NOON_CN, "run")
    errors = [TransientError("timeout") for _ in range(3)]
    email = FakeTransport("email", failures={"c1@example.cn": errors})
    letter = FakeTransport("letter")
    clock = Clock(NOON_CN)
    dispatcher = Dispatcher(
        book,
        {"email": email, "letter": letter},
        Composer(book),
        clock,
        worker=1,
        retry=RetryPolicy(max_attempts=3),
    )
    for _ in range(3):
        dispatcher.run_once()
        clock.now += dt.timedelta(days=1)
    rows = {m.channel: m for m in outbox_rows(book)}
    assert rows["email"].state == "failed"
    assert rows["email"].reason == "gave up after 3 attempts: timeout"
    assert rows["letter"].state == "sent"


def test_no_address_falls_back_at_render_time(book: Engine) -> None:
    with book.begin() as c:
        c.execute(update(customers).where(customers.c.customer_id == "C1").values(email=""))
    store.plan(book, [planned_message("A1")], NOON_CN, "run")
    summary = dispatcher_for(book, Clock(NOON_CN)).run_once()
    rows = {m.channel: m for m in outbox_rows(book)}
    assert (rows["email"].state, rows["email"].reason) == ("failed", "no email address")
    assert rows["letter"].state == "sent"
    assert summary.fallbacks == 1


def test_a_dead_workers_rows_are_recovered_and_sent_again_with_the_same_bytes(
    book: Engine, db_url: str
) -> None:
    store.plan(book, [planned_message("A1"), planned_message("A2")], NOON_CN, "run")
    dispatcher = dispatcher_for(book, Clock(NOON_CN))
    dispatcher.render_due()
    claimed = store.claim(book, 99, NOON_CN, 10)  # worker 99 dies holding both
    assert [m.state for m in outbox_rows(book)] == ["sending", "sending"]
    before = {m.id: m.content for m in outbox_rows(book)}

    if book.dialect.name == "postgresql":
        # A live worker holds its advisory lock: its rows are not taken from it.
        alive = create_engine(db_url)
        with alive.connect() as holder:
            store.hold_worker_lock(holder, 99)
            assert store.recover(book, NOON_CN) == 0
            holder.execute(text("SELECT pg_advisory_unlock_all()"))
        alive.dispose()

    email = FakeTransport("email")
    summary = dispatcher_for(book, Clock(NOON_CN), email=email).run_once()
    assert (summary.recovered, summary.sent) == (2, 2)
    assert {i.id: i.content for i in email.sent} == before
    assert len(claimed) == 2
    reason = store.events(book, claimed[0].id)[-3]["reason"]
    assert reason.startswith("recovered: its dispatcher stopped")


def test_a_channel_down_keeps_its_messages_waiting_untried_and_the_other_channels_go(book: Engine) -> None:
    store.plan(
        book,
        [planned_message("A1"), planned_message("A2"), planned_message("A3", channel="letter")],
        NOON_CN,
        "run",
    )
    down = ChannelDown("authentication failed: check the SMTP user and password", code="535")
    email = FakeTransport("email", failures={"c1@example.cn": [down]})
    letter = FakeTransport("letter")
    dispatcher = Dispatcher(
        book, {"email": email, "letter": letter}, Composer(book), Clock(NOON_CN), worker=3
    )
    summary = dispatcher.run_once()
    assert (summary.held, summary.sent, summary.failed, summary.fallbacks) == (2, 1, 0, 0)
    rows = {m.account_id: m for m in outbox_rows(book)}
    for account in ("A1", "A2"):
        assert (rows[account].state, rows[account].attempts) == ("rendered", 0)
        assert rows[account].reason == (
            "the email channel is down: 535 authentication failed: check the SMTP user and password; "
            "waiting until its settings are fixed"
        )
    assert rows["A3"].state == "sent"
    assert dispatcher.down == {"email": "535 authentication failed: check the SMTP user and password"}
    # Once the settings are fixed (a new dispatcher), both go.
    assert dispatcher_for(book, Clock(NOON_CN), email=email).run_once().sent == 2


@pytest.mark.parametrize(
    ("utc", "state"),
    [
        # The promise hold ends on 5 March, the customer's 5 March: at 20:00 in New York (01:00 UTC on
        # the 6th) it still holds; at 08:00 on the 6th it has ended.
        (dt.datetime(2026, 3, 6, 1, 0, tzinfo=UTC), "cancelled"),
        (dt.datetime(2026, 3, 6, 13, 0, tzinfo=UTC), "sent"),
    ],
)
def test_a_hold_lasts_to_the_end_of_its_last_day_in_the_customers_time_zone(
    book: Engine, utc: dt.datetime, state: str
) -> None:
    with book.begin() as c:
        c.execute(
            insert(holds).values(**_hold("C3", "account", "promise", "A3", None, ends=dt.date(2026, 3, 5)))
        )
    store.plan(book, [planned_message("A3", scheduled_at=utc)], utc, "run")
    dispatcher_for(book, Clock(utc)).run_once()
    assert outbox_rows(book)[0].state == state


def test_every_letter_kind_is_classified_for_the_re_check() -> None:
    from duecourse.channels.dispatch import ANSWER_KINDS, NOTICE_KINDS, REMINDER_KINDS
    from duecourse.letters.kinds import KINDS

    assert REMINDER_KINDS | ANSWER_KINDS | NOTICE_KINDS == set(KINDS)
    assert not (REMINDER_KINDS & ANSWER_KINDS or REMINDER_KINDS & NOTICE_KINDS or ANSWER_KINDS & NOTICE_KINDS)


def test_a_deferral_gives_back_the_attempt_and_a_retry_is_refused_once_the_fallback_went(
    book: Engine,
) -> None:
    store.plan(book, [planned_message("A1", channel="sms")], NOON_CN, "run")
    night = dt.datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # 23:00 in Shanghai
    dispatcher_for(book, Clock(NOON_CN)).render_due()  # rendered at 10:00 in Shanghai, sent at 23:00
    dispatcher_for(book, Clock(night), sms=FakeTransport("sms")).send_due()
    (row,) = outbox_rows(book)
    assert (row.state, row.attempts) == ("rendered", 0)

    store.plan(book, [planned_message("A2", channel="email")], NOON_CN, "run")
    email = FakeTransport("email", failures={"c2@example.cn": [PermanentError("no such user", code="550")]})
    dispatcher_for(book, Clock(NOON_CN), email=email, letter=FakeTransport("letter")).run_once()
    failed = next(m for m in outbox_rows(book) if m.account_id == "A2" and m.channel == "email")
    with pytest.raises(
        store.OutboxError, match="which was sent: retrying it would contact the customer twice"
    ):
        store.retry(book, failed.id, NOON_CN, "asked")


class StagedFake(FakeTransport):
    """A transport that stages each message (``channels/base.Staged``) and notes, just before and just
    after ``before_accept``, which of the messages it accepted earlier the store still has in "sending"."""

    def __init__(self, engine: Engine) -> None:
        super().__init__("email")
        self.engine = engine
        self.unrecorded_before: list[set[int]] = []
        self.unrecorded_after: list[set[int]] = []

    def _unrecorded(self) -> set[int]:
        accepted = {item.id for item in self.sent}
        return {m.id for m in outbox_rows(self.engine) if m.id in accepted and m.state == "sending"}

    def send_staged(self, item: Outgoing, before_accept: Callable[[], None]) -> Receipt:
        self.unrecorded_before.append(self._unrecorded())
        before_accept()
        self.unrecorded_after.append(self._unrecorded())
        return self.send(item)


def test_sent_is_recorded_while_the_next_message_is_staged_never_more_than_one_behind(book: Engine) -> None:
    three = [planned_message("A1"), planned_message("A2"), planned_message("A1", action="1")]  # C3: evening
    store.plan(book, three, NOON_CN, "run")
    staged = StagedFake(book)
    dispatcher = Dispatcher(book, {"email": staged}, Composer(book), Clock(NOON_CN), worker=5)

    summary = dispatcher.run_once()

    assert summary.sent == 3
    first, second, third = (item.id for item in staged.sent)
    # Before its last step, each message finds the one before it accepted and not yet recorded; once
    # before_accept returned, that one is recorded.
    assert staged.unrecorded_before == [set(), {first}, {second}]
    assert staged.unrecorded_after == [set(), set(), set()]
    # The last one is recorded when the batch ends.
    assert [m.state for m in outbox_rows(book)] == ["sent", "sent", "sent"]
    assert [(e["from_state"], e["to_state"]) for e in store.events(book, third)][-1] == ("sending", "sent")


def test_a_failure_of_the_record_inside_the_transport_is_not_a_channel_error(book: Engine) -> None:
    store.plan(book, [planned_message("A1"), planned_message("A2")], NOON_CN, "run")

    class Broken(StagedFake):
        def send_staged(self, item: Outgoing, before_accept: Callable[[], None]) -> Receipt:
            if self.sent:
                raise RuntimeError("the database went away")  # as if before_accept had raised
            return super().send_staged(item, before_accept)

    broken = Broken(book)
    dispatcher = Dispatcher(book, {"email": broken}, Composer(book), Clock(NOON_CN), worker=6)
    with pytest.raises(RuntimeError, match="the database went away"):
        dispatcher.run_once()
    first, second = outbox_rows(book)
    # The message accepted before the failure is still recorded (the batch's end records it); the other
    # stays in "sending" for recovery, as if the worker had died there.
    assert (first.state, second.state) == ("sent", "sending")
    assert store.recover(book, NOON_CN, dead=[6]) == 1


def test_a_stop_between_messages_puts_the_untried_ones_back_without_counting_an_attempt(book: Engine) -> None:
    three = [planned_message("A1"), planned_message("A2"), planned_message("A1", action="1")]  # C3: evening
    store.plan(book, three, NOON_CN, "run")
    email = FakeTransport("email")
    dispatcher = dispatcher_for(book, Clock(NOON_CN), email=email)

    summary = dispatcher.run_once(stop=lambda: len(email.sent) == 1)

    assert (summary.sent, summary.put_back) == (1, 2)
    states = [(m.state, m.attempts, m.claimed_by) for m in outbox_rows(book)]
    assert states == [("sent", 1, None), ("rendered", 0, None), ("rendered", 0, None)]
    assert outbox_rows(book)[1].reason == "put back untried: the dispatcher is stopping"
    assert dispatcher_for(book, Clock(NOON_CN), email=email).run_once().sent == 2
