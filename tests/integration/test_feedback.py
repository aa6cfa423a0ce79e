"""Delivery feedback on both databases: a bounce marks the address bad and falls back, a receipt marks
delivered, a returned letter bounces, a STOP reply becomes an opt-out hold, unknown ids are listed."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from outbox_support import NOON_CN, Clock, dispatcher_for, load_book, outbox_rows, planned_message
from sqlalchemy import Engine, insert, select

from duecourse.bootstrap import App
from duecourse.channels.base import DeliveryEvent
from duecourse.channels.fake import FakeTransport
from duecourse.channels.sms import InboundSms
from duecourse.cli import main
from duecourse.config import default_config_text, load_config
from duecourse.services.feedback import (
    RECEIPT_GRACE,
    apply_feedback,
    handle_inbound,
    record_opt_outs,
    store_inbound,
)
from duecourse.store import outbox as store
from duecourse.store.tables import bad_contact_points, holds, inbound, payments

LATER = NOON_CN + dt.timedelta(hours=1)


@pytest.fixture
def book(engine: Engine) -> Engine:
    return load_book(engine)


def _app(engine: Engine, db_url: str) -> App:
    return App(db_url, engine, load_config(None))


def test_a_bounce_marks_the_address_bad_and_plans_the_next_channel_once(book: Engine, db_url: str) -> None:
    store.plan(book, [planned_message("A1"), planned_message("A2")], NOON_CN, "run")
    dispatcher_for(book, Clock(NOON_CN)).run_once()
    first, second = outbox_rows(book)
    events = [
        DeliveryEvent("email", "bounced", provider_id=first.provider_id, reason="5.1.1 no such user"),
        DeliveryEvent("email", "delivered", provider_id=second.provider_id),
        DeliveryEvent("email", "bounced", provider_id="<nobody@example.cn>"),
    ]
    result = apply_feedback(_app(book, db_url), events, LATER)
    assert (result.bounced, result.delivered, result.fallbacks, result.unmatched) == (
        1,
        1,
        1,
        ["<nobody@example.cn>"],
    )
    # The same feedback again changes nothing and plans nothing more.
    again = apply_feedback(_app(book, db_url), events[:1], LATER)
    assert (again.bounced, again.fallbacks, again.noted) == (0, 0, 1)

    rows = {(m.account_id, m.channel): m for m in outbox_rows(book)}
    assert (rows["A1", "email"].state, rows["A1", "email"].reason) == (
        "bounced",
        "bounced: 5.1.1 no such user",
    )
    assert rows["A2", "email"].state == "delivered"
    letter = rows["A1", "letter"]
    assert (letter.state, letter.replaces_id) == ("planned", first.id)
    with book.connect() as c:
        bad = c.execute(select(bad_contact_points.c.customer_id, bad_contact_points.c.address)).all()
    assert bad == [("C1", "c1@example.cn")]

    # The bad address is not used again: a new e-mail to C1 falls back before it is sent.
    store.plan(book, [planned_message("A1", planned_on=NOON_CN.date() + dt.timedelta(days=1))], LATER, "run")
    summary = dispatcher_for(book, Clock(LATER)).run_once()
    assert summary.fallbacks == 1
    newest = max(outbox_rows(book), key=lambda m: m.id)
    assert newest.channel == "letter"


def test_a_bare_reference_from_a_bounce_finds_the_message(book: Engine, db_url: str) -> None:
    store.plan(book, [planned_message("A1")], NOON_CN, "run")
    email = FakeTransport("email")
    dispatcher_for(book, Clock(NOON_CN), email=email).run_once()
    with book.begin() as c:  # an SMTP receipt's Message-ID, as the e-mail adapter records it
        c.execute(store.outbox.update().values(provider_id="<abc123@example.cn>"))
    result = apply_feedback(
        _app(book, db_url), [DeliveryEvent("email", "bounced", provider_id="abc123")], LATER
    )
    assert result.bounced == 1


def test_a_stop_reply_becomes_an_sms_opt_out_hold_once(book: Engine, db_url: str) -> None:
    app = _app(book, db_url)
    assert record_opt_outs(app, ["+8613800138000"], "sms", LATER, "replied TD") == 3  # C1, C2, C3 share it
    assert record_opt_outs(app, ["+8613800138000"], "sms", LATER, "replied TD") == 0
    with book.connect() as c:
        found = c.execute(select(holds.c.customer_id, holds.c.channel, holds.c.kind, holds.c.reason)).all()
    assert sorted(found)[0] == ("C1", "sms", "opt_out", "opted out of sms: replied TD")


def test_the_feedback_commands_report_every_bad_receipt_line_and_apply_returns(
    book: Engine, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store.plan(book, [planned_message("A1", channel="letter")], NOON_CN, "run")
    dispatcher_for(book, Clock(NOON_CN)).run_once()
    (row,) = outbox_rows(book)
    config = tmp_path / "duecourse.toml"
    config.write_text(default_config_text(), encoding="utf-8")

    receipts = tmp_path / "receipts.jsonl"
    receipts.write_text('{"id": "x1", "status": "delivered"}\nnot json\n[1]\n', encoding="utf-8")
    assert main(["--db", db_url, "--config", str(config), "feedback", "receipts", str(receipts)]) == 1
    err = capsys.readouterr().err
    assert f"{receipts}:2: " in err and f"{receipts}:3: a receipt is a JSON object" in err

    returns = tmp_path / "returns.csv"
    returns.write_text(
        f"reference,returned_on,reason\n{row.provider_id},2026-03-09,addressee unknown\n", encoding="utf-8"
    )
    args = [
        "--db",
        db_url,
        "--config",
        str(config),
        "feedback",
        "returns",
        str(returns),
        "--now",
        LATER.isoformat(),
    ]
    assert main(args) == 0
    assert "1 events: 0 delivered, 1 bounced" in capsys.readouterr().out
    assert outbox_rows(book)[0].state == "bounced"


def test_a_fallback_keeps_the_first_plannings_payment_baseline(book: Engine, db_url: str) -> None:
    """A payment made after the e-mail was planned, then a bounce: the fallback letter is not sent."""
    store.plan(book, [planned_message("A1")], NOON_CN, "run")
    dispatcher_for(book, Clock(NOON_CN)).run_once()
    (sent,) = outbox_rows(book)
    with book.begin() as c:
        c.execute(
            insert(payments).values(payment_id="P9", account_id="A1", paid_on=LATER.date(), amount_minor=500)
        )
    bounce = DeliveryEvent("email", "bounced", provider_id=sent.provider_id, reason="5.1.1")
    assert apply_feedback(_app(book, db_url), [bounce], LATER).fallbacks == 1
    summary = dispatcher_for(book, Clock(LATER)).run_once()
    letter = {m.channel: m for m in outbox_rows(book)}["letter"]
    assert (summary.sent, letter.state) == (0, "cancelled")
    assert letter.reason == "a payment arrived since it was planned (1 payment(s))"


def _inbound_rows(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as c:
        rows = c.execute(select(inbound).order_by(inbound.c.id)).mappings().all()
    return [{**row, "detail": json.loads(row["detail"])} for row in rows]


def test_a_stop_stored_by_a_dispatcher_that_died_is_handled_by_the_next_one(
    book: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SMPP session stored the reply (and then acknowledged it); the dispatcher died before handling it.
    store_inbound(book, [InboundSms("+8613800138000", "退订", True, "BANK")], NOON_CN)
    (stored,) = _inbound_rows(book)
    assert (stored["handled_at"], stored["detail"]) == (None, {"kind": "reply", "opt_out": True})

    config = tmp_path / "duecourse.toml"
    config.write_text(
        default_config_text()
        + f'\n[channels.email]\ntransport = "files"\ndir = "{tmp_path / "mail"}"\n'
        + 'from = "B <b@example.cn>"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("DUECOURSE_PORTAL_SECRET", "z" * 32)
    assert (
        main(["--db", db_url, "--config", str(config), "dispatch", "--once", "--now", LATER.isoformat()]) == 0
    )

    (handled,) = _inbound_rows(book)
    assert handled["handled_at"] == LATER
    assert handled["detail"] == {"kind": "reply", "opt_out": True, "handled": "opt-out: 3 hold(s) added"}
    with book.connect() as c:
        found = c.execute(select(holds.c.customer_id, holds.c.kind).where(holds.c.channel == "sms")).all()
    assert sorted(found) == [("C1", "opt_out"), ("C2", "opt_out"), ("C3", "opt_out")]
    # Handled once: another pass finds nothing to do.
    assert handle_inbound(_app(book, db_url), LATER).handled == 0


def test_a_receipt_that_overtakes_its_sent_record_waits_and_an_old_stranger_is_given_up(
    book: Engine, db_url: str
) -> None:
    store.plan(book, [planned_message("A1", channel="sms")], NOON_CN, "run")
    sms = FakeTransport("sms")
    dispatcher_for(book, Clock(NOON_CN), sms=sms).run_once()
    (sent,) = outbox_rows(book)
    receipt = DeliveryEvent("sms", "delivered", provider_id=sent.provider_id, reason="stat:DELIVRD")
    early = DeliveryEvent("sms", "delivered", provider_id="not-recorded-yet", reason="stat:DELIVRD")
    store_inbound(
        book,
        [
            InboundSms("+8613800138000", "id:... stat:DELIVRD", False, "BANK", receipt),
            InboundSms("+8613800138000", "id:... stat:DELIVRD", False, "BANK", early),
            InboundSms("+8613800138000", "thanks", False, "BANK"),
        ],
        NOON_CN,
    )
    app = _app(book, db_url)

    soon = handle_inbound(app, NOON_CN + dt.timedelta(minutes=1))
    assert (soon.handled, soon.waiting, soon.feedback.delivered) == (2, 1, 1)
    assert outbox_rows(book)[0].state == "delivered"
    later = handle_inbound(app, NOON_CN + RECEIPT_GRACE)
    assert (later.handled, later.waiting, later.feedback.unmatched) == (1, 0, ["not-recorded-yet"])
    assert [row["detail"]["handled"] for row in _inbound_rows(book)] == [
        "receipt applied: delivered",
        "receipt matches no sent message",
        "reply without an opt-out keyword: nothing to do",
    ]


def test_an_opt_out_holds_from_the_customers_own_date_so_it_stops_the_evening_texts(
    book: Engine, db_url: str
) -> None:
    # 01:00 UTC on 2 March: 09:00 on the 2nd in Shanghai (C1), 20:00 on the 1st in New York (C3).
    evening_in_new_york = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)
    record_opt_outs(_app(book, db_url), ["+8613800138000"], "sms", evening_in_new_york, "replied STOP")
    with book.connect() as c:
        starts = dict(c.execute(select(holds.c.customer_id, holds.c.starts_on)).all())
    assert starts == {"C1": dt.date(2026, 3, 2), "C2": dt.date(2026, 3, 2), "C3": dt.date(2026, 3, 1)}

    text_now = planned_message("A3", channel="sms", fallback=(), scheduled_at=evening_in_new_york)
    store.plan(book, [text_now], evening_in_new_york, "run")
    summary = dispatcher_for(book, Clock(evening_in_new_york), sms=FakeTransport("sms")).run_once()
    (text,) = outbox_rows(book)
    assert (summary.sent, text.state) == (0, "failed")
    assert text.reason.startswith("the customer opted out of sms")
