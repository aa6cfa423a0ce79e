"""Third parties the customers named (``duecourse import contacts``), on SQLite and PostgreSQL, through
the command line: the file checked row by row, all or nothing; the same file again changes nothing; a
stored contact with other content is refused."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from aiosmtpd.controller import Controller
from cli_support import PORTFOLIO, cli_with
from outbox_support import customer_row
from smpp_peer import SmppPeer
from sqlalchemy import insert, select, update
from sqlalchemy import inspect as sa_inspect
from test_cli import write

from duecourse.bootstrap import App
from duecourse.channels.sms import InboundSms
from duecourse.config import default_config_text, load_config
from duecourse.services import feedback
from duecourse.services.feedback import handle_inbound, store_inbound
from duecourse.store import outbox as store
from duecourse.store.db import make_engine
from duecourse.store.tables import customers, decisions, outbox, third_parties, third_party_stops

CONTACTS = (
    "contact_id,customer_id,relation,name,phone,email,locale,timezone,agreed_on\n"
    "K1,C1,emergency,李雷,+8613900139000,,,,2024-01-10\n"
    "K2,C2,family,John Roe,,john@example.com,en-US,America/Chicago,\n"
)


def _stored(db_url: str) -> list[tuple[str, str, str, str]]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            return [
                (r.contact_id, r.customer_id, r.timezone, str(r.agreed_on))
                for r in connection.execute(select(third_parties).order_by(third_parties.c.contact_id))
            ]
    finally:
        engine.dispose()


def test_contacts_are_imported_once_and_the_same_file_again_changes_nothing(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = cli_with(db_url, tmp_path, default_config_text())[0]
    path = write(tmp_path, "contacts.csv", CONTACTS)
    assert cli("import", "contacts", str(path)) == 0
    assert "2 contacts added, 0 already there" in capsys.readouterr().out
    assert cli("import", "contacts", str(path)) == 0
    assert "0 contacts added, 2 already there" in capsys.readouterr().out
    assert _stored(db_url) == [
        ("K1", "C1", "", "2024-01-10"),
        ("K2", "C2", "America/Chicago", "None"),
    ]


def test_a_parquet_contacts_file_is_read_like_a_csv(db_url: str, tmp_path: Path) -> None:
    cli = cli_with(db_url, tmp_path, default_config_text())[0]
    path = tmp_path / "contacts.parquet"
    pl.read_csv(write(tmp_path, "c.csv", CONTACTS), infer_schema=False).write_parquet(path)
    assert cli("import", "contacts", str(path)) == 0
    assert [r[0] for r in _stored(db_url)] == ["K1", "K2"]


def test_a_contacts_file_is_checked_row_by_row_and_nothing_is_written(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = cli_with(db_url, tmp_path, default_config_text())[0]
    bad = write(
        tmp_path,
        "bad.csv",
        "contact_id,customer_id,relation,name,phone,email,locale,timezone,agreed_on\n"
        "K1,C1,emergency,李雷,+8613900139000,,,,\n"
        "K2,C9,friend,,13900139000,,fr-FR,Mars/Base,2024-1-1\n"
        "K3,C1,family,Wu,,,,,\n"
        "K1,C1,family,Han,+8613900139001,,,,\n"
        "K|4,C1,family,Han,,han@example,,,\n",
    )
    assert cli("import", "contacts", str(bad)) == 1
    err = capsys.readouterr().err
    for line in (
        f"{bad}:3:customer_id: customer C9 is not in the store",
        f"{bad}:3:relation: relation must be one of emergency, family, employer, reference, not 'friend'",
        f"{bad}:3:name: name is empty",
        f"{bad}:3:phone: '13900139000' is not an E.164 phone number",
        f"{bad}:3:locale: locale must be one of zh-CN, en-US, en-GB or empty, not 'fr-FR'",
        f"{bad}:3:timezone: unknown time zone 'Mars/Base'",
        f"{bad}:3:agreed_on: agreed_on must be a date as YYYY-MM-DD or empty, not '2024-1-1'",
        f"{bad}:4:phone: a contact needs a phone or an e-mail (both are empty)",
        f"{bad}:5:contact_id: contact K1 is on row 2 already",
        f"{bad}:6:contact_id: contact_id must be printable ASCII without spaces or '|'",
        f"{bad}:6:email: 'han@example' does not look like an e-mail address",
    ):
        assert line in err, err
    assert _stored(db_url) == []  # all or nothing


def test_a_stored_contact_with_other_content_is_refused(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = cli_with(db_url, tmp_path, default_config_text())[0]
    assert cli("import", "contacts", str(write(tmp_path, "contacts.csv", CONTACTS))) == 0
    changed = write(
        tmp_path,
        "changed.csv",
        "contact_id,customer_id,relation,name,phone\nK1,C1,emergency,李雷,+8613900139999\n",
    )
    capsys.readouterr()
    assert cli("import", "contacts", str(changed)) == 1
    err = capsys.readouterr().err
    assert f"{changed}:2:phone: contact K1 is stored already with another phone ('+8613900139000')" in err


# ------------------------------------------------------------------------------ asking a contact, end to end

ASK = """
  [[strategy.stages.actions]]
  name = "ask"
  channel = "sms"
  kind = "location_request"
  to = "contact"
  repeat_every_days = 1
  max_times = 60
  at = "10:00"

"""
BOUNCED = dt.datetime(2025, 5, 1, 3, tzinfo=dt.UTC)


def _asking(db_url: str, tmp_path: Path, extra: str = "") -> tuple[Callable[..., int], Path]:
    text = default_config_text()
    marker = '[[strategy.stages]]\nname = "M2"'
    text = text.replace(marker, ASK + marker) + (
        f'\n[channels.sms]\ngateway = "files"\ndir = "{tmp_path / "sms"}"\ncontact_source_addr = "8800"\n'
        f'\n[channels.post]\ndir = "{tmp_path / "print"}"\n{extra}'
    )
    cli, config = cli_with(db_url, tmp_path, text)
    assert cli("import", "contacts", str(write(tmp_path, "contacts.csv", CONTACTS_BY_PHONE))) == 0
    return cli, config


CONTACTS_BY_PHONE = (
    "contact_id,customer_id,relation,name,phone\n"
    "K1,C1,emergency,李雷,+8613900139000\n"
    "K2,C2,family,John Roe,+12125550111\n"
)


def _bounce(db_url: str, customer: str, phone: str, email: str) -> None:
    """The customer's phone and e-mail found bad (a hard bounce each) on BOUNCED."""
    engine = make_engine(db_url)
    try:
        with store.write_transaction(engine) as connection:
            store.mark_bad(connection, customer, "sms", phone, "undeliverable", "test", BOUNCED)
            store.mark_bad(connection, customer, "email", email, "mailbox unknown", "test", BOUNCED)
    finally:
        engine.dispose()


def _decided(db_url: str, day: str) -> dict[str, tuple[str, str, str]]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            return {
                r.key: (r.verdict, r.rule_id, r.reason)
                for r in connection.execute(select(decisions).where(decisions.c.action == "ask"))
                if str(r.day) == day
            }
    finally:
        engine.dispose()


def _to_contacts(db_url: str) -> list[tuple[str, str, str, str, bytes]]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            return [
                (r.key, r.contact_id, r.state, r.recipient, r.content or b"")
                for r in connection.execute(
                    select(outbox).where(outbox.c.contact_id != "").order_by(outbox.c.id)
                )
            ]
    finally:
        engine.dispose()


def test_a_cn_contact_is_asked_from_day_n_of_the_customer_being_unreachable_and_never_after_a_stop(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DUECOURSE_PORTAL_SECRET", "c" * 32)
    cli, config = _asking(db_url, tmp_path)
    _bounce(db_url, "C1", "+8613800138000", "wang@example.cn")

    assert cli("run", "--as-of", "2025-05-07") == 0  # day 6 after the bounces: not yet
    decided = _decided(db_url, "2025-05-07")
    assert decided and {v[:2] for v in decided.values()} == {("suppressed", "CN-COL-07")}
    assert all("not shown unreachable for 7 days" in v[2] for v in decided.values())
    assert _to_contacts(db_url) == []

    assert cli("run", "--as-of", "2025-05-08") == 0  # day 7: one message to the contact
    decided = _decided(db_url, "2025-05-08")
    planned = [k for k, v in decided.items() if v[0] == "planned"]
    assert len(planned) == 1 and planned[0].endswith("|sms|to:K1")
    others = [v for k, v in decided.items() if v[0] != "planned"]
    assert all(v[1] == "CN-COL-07" and "one message a day at most" in v[2] for v in others)

    assert cli("dispatch", "--once", "--now", "2025-05-08T02:30:00+00:00", "--quiet") == 0
    ((key, contact, state, recipient, content),) = _to_contacts(db_url)
    assert (key, contact, state, recipient) == (planned[0], "K1", "sent", "+8613900139000")
    text = content.decode()
    assert "李雷您好" in text and "王芳" in text and "回复TD退订" in text
    assert not any(word in text for word in ("逾期", "欠", "催收", "还款", "账户", "元"))

    app = App(db_url, make_engine(db_url), load_config(config))
    try:
        stop = InboundSms("+8613900139000", "TD", True, "BANK")
        store_inbound(app.engine, [stop], dt.datetime(2025, 5, 8, 5, tzinfo=dt.UTC))
        handled = handle_inbound(app, dt.datetime(2025, 5, 8, 5, tzinfo=dt.UTC))
    finally:
        app.engine.dispose()
    assert handled.contacts_stopped == 1

    assert cli("run", "--as-of", "2025-05-09") == 0
    decided = _decided(db_url, "2025-05-09")
    assert decided and {v[:2] for v in decided.values()} == {("suppressed", "CN-COL-09")}
    assert all("asked to hear no more on 2025-05-08" in v[2] for v in decided.values())
    assert len(_to_contacts(db_url)) == 1


def test_a_stop_after_planning_cancels_the_message_at_sending(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DUECOURSE_PORTAL_SECRET", "c" * 32)
    cli, config = _asking(db_url, tmp_path)
    _bounce(db_url, "C1", "+8613800138000", "wang@example.cn")
    assert cli("run", "--as-of", "2025-05-08") == 0
    app = App(db_url, make_engine(db_url), load_config(config))
    try:
        record = store_inbound
        record(app.engine, [InboundSms("+8613900139000", "退订", True, "BANK")], BOUNCED)
        handle_inbound(app, dt.datetime(2025, 5, 8, 1, tzinfo=dt.UTC))
    finally:
        app.engine.dispose()
    assert cli("dispatch", "--once", "--now", "2025-05-08T02:30:00+00:00", "--quiet") == 0
    ((_, _, state, _, _),) = _to_contacts(db_url)
    assert state == "cancelled"


EMAIL_ASK = ASK.replace('channel = "sms"', 'channel = "email"')


def test_a_us_contact_gets_one_location_email_ever_and_its_link_stops_them(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DUECOURSE_PORTAL_SECRET", "c" * 32)
    text = default_config_text()
    marker = '[[strategy.stages]]\nname = "M2"'
    text = text.replace(marker, EMAIL_ASK + marker) + (
        f'\n[channels.email]\ntransport = "files"\ndir = "{tmp_path / "email"}"\n'
        'from = "Example Bank <collect@example.com>"\ncontact_from = "Example Bank <hello@example.com>"\n'
        f'\n[channels.post]\ndir = "{tmp_path / "print"}"\n'
    )
    # A3 (C2's card) unpaid since its due of 2025-04-25
    unpaid = tuple((k, b.replace("P3,A3,2025-04-24,40.00\n", "")) for k, b in PORTFOLIO)
    cli, config = cli_with(db_url, tmp_path, text, unpaid)
    contacts = "contact_id,customer_id,relation,name,email\nK2,C2,family,John Roe,john@example.org\n"
    assert cli("import", "contacts", str(write(tmp_path, "contacts.csv", contacts))) == 0
    _bounce(db_url, "C2", "+12125550100", "jane@example.com")

    assert cli("run", "--as-of", "2025-05-08") == 0
    decided = _decided(db_url, "2025-05-08")
    assert [v[0] for v in decided.values()] == ["planned"], decided
    assert cli("dispatch", "--once", "--now", "2025-05-08T15:00:00+00:00", "--quiet") == 0
    ((key, contact, state, recipient, _),) = _to_contacts(db_url)
    assert (contact, state, recipient) == ("K2", "sent", "john@example.org")
    (sent,) = sorted((tmp_path / "email").glob("*.eml"))
    message = email.message_from_bytes(sent.read_bytes(), policy=email.policy.default)
    assert message["Subject"] == "A message for Jane Roe"
    body = message.get_body(("plain",))
    assert body is not None
    words = body.get_content()
    assert "Dear John Roe" in words and "ask Jane Roe to call Example Bank, N.A." in words
    assert not re.search(r"(?i)debt|owe|overdue|collect|account|pay|\$", words)
    (link,) = re.findall(r"<(https?://[^>]+)>", str(message["List-Unsubscribe"]))
    assert "/opt-out/contact/" in link

    assert cli("run", "--as-of", "2025-05-09") == 0  # once only (12 CFR 1006.10(b)(3))
    ((verdict, rule, reason),) = _decided(db_url, "2025-05-09").values()
    assert (verdict, rule) == ("suppressed", "US-3P-01")
    assert reason == "contact K2 was contacted on 2025-05-08 already: once only"

    before = "contact_id,customer_id,relation,name,email\nK2c,C2,family,John Roe,john@example.org\n"
    assert cli("import", "contacts", str(write(tmp_path, "before.csv", before))) == 0
    app = App(db_url, make_engine(db_url), load_config(config))
    try:
        token = link.rsplit("/", 1)[1]
        assert not feedback.read_opt_out_link(app, "contact", token).opted_out
        now = dt.datetime(2025, 5, 9, 16, tzinfo=dt.UTC)
        _, added = feedback.opt_out_by_link(app, "contact", token, now, "the opt-out link")
        assert added
        _, again = feedback.opt_out_by_link(app, "contact", token, now, "the opt-out link")
        assert not again
        with pytest.raises(feedback.OptOutLinkError):
            feedback.read_opt_out_link(app, "email", token)  # a contact's link opts no customer out
        with app.engine.connect() as connection:  # the link stops every id of the same e-mail
            assert set(connection.execute(select(third_party_stops.c.contact_id)).scalars()) == {"K2", "K2c"}
    finally:
        app.engine.dispose()
    # the same person imported again under a new id (the same e-mail): the stop is theirs too
    again = "contact_id,customer_id,relation,name,email\nK2b,C2,family,John Roe,john@example.org\n"
    assert cli("import", "contacts", str(write(tmp_path, "again.csv", again))) == 0
    assert cli("run", "--as-of", "2025-05-10") == 0
    decided = {k.rsplit(":", 1)[1]: v for k, v in _decided(db_url, "2025-05-10").items()}
    assert decided == {
        "K2": (
            "suppressed",
            "US-3P-01",
            "contact K2 asked to hear no more on 2025-05-09: never contacted again",
        ),
        "K2c": (
            "suppressed",
            "US-3P-01",
            "contact K2c asked to hear no more on 2025-05-09: never contacted again",
        ),
        "K2b": (
            "suppressed",
            "US-3P-01",
            "contact K2b asked to hear no more on 2025-05-09 (as contact K2, the same phone or e-mail): "
            "never contacted again",
        ),
    }


def test_explain_simulate_and_check_account_for_actions_to_contacts(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DUECOURSE_PORTAL_SECRET", "c" * 32)
    cli, _ = _asking(db_url, tmp_path)
    _bounce(db_url, "C1", "+8613800138000", "wang@example.cn")
    capsys.readouterr()

    # the simulation, before any run: day 6 nothing, day 7 one text to K1, day 8 one more (CN: not once)
    assert cli("policy", "simulate", "--from", "2025-05-07", "--to", "2025-05-09", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    texts = {
        m["day"]: m["count"]
        for m in report["messages"]
        if m["channel"] == "sms" and m["verdict"] != "suppressed"
    }
    assert texts == {"2025-05-08": 1, "2025-05-09": 1}, report["messages"]
    rules = {(r["verdict"], r["rule_id"]): r["count"] for r in report["by_rule"]}
    assert (
        rules[("suppressed", "CN-COL-07")] == 2 + 1 + 1
    )  # day 6: both accounts; then the second of each day

    assert cli("run", "--as-of", "2025-05-08") == 0
    capsys.readouterr()
    assert cli("explain", "A1", "--as-of", "2025-05-08") == 0
    shown = capsys.readouterr().out
    assert "sms location_request to contact K1 (stage M1, action ask):" in shown

    assert cli("policy", "check") == 0
    out = capsys.readouterr().out
    assert "warning: stage M1, action ask (sms location_request to contacts): UK forbids contacting " in out
    assert "[policy.third_party_forbidden]" in out
    assert (
        "note: stage M1, action ask (sms location_request to contacts): in US a contact gets it only " in out
    )
    assert "once per contact ever (US-3P-01)" in out


@pytest.mark.parametrize("opened", [False, True], ids=["uk-closed", "uk-opened"])
def test_a_uk_contact_is_not_asked_unless_the_institution_opens_it(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opened: bool
) -> None:
    monkeypatch.setenv("DUECOURSE_PORTAL_SECRET", "c" * 32)
    text = default_config_text()
    marker = '[[strategy.stages]]\nname = "M2"'
    text = text.replace(marker, ASK + marker) + (
        f'\n[channels.sms]\ngateway = "files"\ndir = "{tmp_path / "sms"}"\ncontact_source_addr = "8800"\n'
        f'\n[channels.post]\ndir = "{tmp_path / "print"}"\n'
    )
    if opened:
        text += '\n[governor]\nthird_party_contact_in = ["UK"]\n'
    people = (
        "customer_id,name,locale,timezone,jurisdiction,phone,email,address_line1,address_line2,city,region,"
        "postal_code,country\n"
        "C3,Tom Smith,en-GB,Europe/London,UK,+447700900123,tom@example.co.uk,1 High St,,Leeds,,LS1 1AA,GB\n"
    )
    uk = (
        ("customers", people),
        ("accounts", "account_id,customer_id,product_code,opened_on\nA4,C3,loan_uk,2024-01-01\n"),
        ("dues", "account_id,due_id,due_date,amount,component\nA4,L1,2025-04-20,200.00,principal\n"),
    )
    cli, _ = cli_with(db_url, tmp_path, text, uk)
    contacts = "contact_id,customer_id,relation,name,phone\nK3,C3,family,Ann Smith,+447700900456\n"
    assert cli("import", "contacts", str(write(tmp_path, "contacts.csv", contacts))) == 0
    _bounce(db_url, "C3", "+447700900123", "tom@example.co.uk")
    assert cli("run", "--as-of", "2025-05-08") == 0
    ((verdict, rule, reason),) = _decided(db_url, "2025-05-08").values()
    if opened:
        assert verdict == "planned"
        assert [c for _, c, *_ in _to_contacts(db_url)] == ["K3"]
    else:
        assert (verdict, rule) == ("suppressed", "UK-CONC-04")
        assert reason == "no third party is contacted for customers in UK (the customer is not)"
        assert _to_contacts(db_url) == []


# ------------------------------------------------------------------ the sender a contact sees


class _Mailbox:
    """An SMTP server's side: the envelope sender and the bytes of each message."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append((str(envelope.mail_from), bytes(envelope.original_content)))
        return "250 2.0.0 Ok: queued"


def test_a_contacts_email_and_text_go_under_the_contact_sender_not_the_customers(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DUECOURSE_PORTAL_SECRET", "c" * 32)
    monkeypatch.setenv("TEST_SMPP_PASSWORD", "s3cret")
    mailbox = _Mailbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with SmppPeer(password="s3cret") as peer:
            text = default_config_text()
            marker = '[[strategy.stages]]\nname = "M2"'
            both = ASK + EMAIL_ASK.replace('name = "ask"', 'name = "ask-mail"')
            text = text.replace(marker, both + marker) + (
                f'\n[channels.email]\nhost = "127.0.0.1"\nport = {port}\nstarttls = false\n'
                'from = "Example Bank Collections <collections@example.com>"\n'
                'reply_to = "Collections <collections@example.com>"\n'
                'contact_from = "Example Bank <hello@example.com>"\n'
                'contact_reply_to = "Example Bank <frontdesk@example.com>"\n'
                f'\n[channels.sms]\ngateway = "smpp"\nhost = "127.0.0.1"\nport = {peer.port}\n'
                'system_id = "bank"\npassword_env = "TEST_SMPP_PASSWORD"\nsource_addr = "COLLECT"\n'
                'contact_source_addr = "EXBANK"\n'
                f'\n[channels.post]\ndir = "{tmp_path / "print"}"\n'
            )
            unpaid = tuple((k, b.replace("P3,A3,2025-04-24,40.00\n", "")) for k, b in PORTFOLIO)
            cli, _ = cli_with(db_url, tmp_path, text, unpaid)
            contacts = (
                "contact_id,customer_id,relation,name,phone,email\n"
                "K1,C1,emergency,李雷,+8613900139000,\n"
                "K2,C2,family,John Roe,,john@example.org\n"
            )
            assert cli("import", "contacts", str(write(tmp_path, "contacts.csv", contacts))) == 0
            _bounce(db_url, "C1", "+8613800138000", "wang@example.cn")
            _bounce(db_url, "C2", "+12125550100", "jane@example.com")
            assert cli("run", "--as-of", "2025-05-08") == 0
            for now in ("2025-05-08T02:30:00+00:00", "2025-05-08T15:00:00+00:00"):
                assert cli("dispatch", "--once", "--now", now, "--quiet") == 0
            submitted = list(peer.log.submitted)
    finally:
        controller.stop()
    sent = {(contact, state) for _, contact, state, _, _ in _to_contacts(db_url)}
    assert sent == {("K1", "delivered"), ("K2", "sent")}  # the SMSC sends its receipt at once
    # every part of the text (UCS-2, more than one part) under the contact sender id
    assert {(s.destination, s.source_addr) for s in submitted} == {("8613900139000", "EXBANK")}
    ((envelope_from, raw),) = mailbox.messages
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(message["From"]) == "Example Bank <hello@example.com>"
    assert str(message["Reply-To"]) == "Example Bank <frontdesk@example.com>"
    assert envelope_from == "hello@example.com"
    assert "mailto:hello@example.com?subject=unsubscribe" in str(message["List-Unsubscribe"])
    assert "collect" not in raw.decode("utf-8", "replace").lower()


# ------------------------------------------------------------------ going back below 0012


def test_the_downgrade_below_0012_is_refused_while_a_message_to_a_contact_is_under_way(db_url: str) -> None:
    from alembic import command

    from duecourse.store.db import _alembic_config, init_db

    init_db(db_url)
    engine = make_engine(db_url)
    now = dt.datetime(2025, 5, 8, 2, tzinfo=dt.UTC)
    row = {
        "key": "A1|M1|ask|2025-05-08|sms|to:K1",
        "account_id": "A1",
        "customer_id": "C1",
        "stage": "M1",
        "action": "ask",
        "kind": "location_request",
        "channel": "sms",
        "fallback": "",
        "planned_on": now.date(),
        "scheduled_at": now,
        "state": "rendered",
        "attempts": 0,
        "recipient": "+8613900139000",
        "content": b"text",
        "meta": "{}",
        "provider_id": "",
        "payments_seen": 0,
        "paid_minor_seen": 0,
        "reason": "rendered by the test",
        "created_at": now,
        "updated_at": now,
        "contact_id": "K1",
    }

    def downgrade() -> None:
        with engine.begin() as connection:
            config = _alembic_config()
            config.attributes["connection"] = connection
            command.downgrade(config, "0011")

    try:
        with engine.begin() as connection:
            connection.execute(insert(customers).values(customer_row("C1")))
            connection.execute(insert(outbox).values(row))
            connection.execute(insert(outbox).values({**row, "key": row["key"] + "x", "state": "delivered"}))
        with pytest.raises(Exception, match=r"cannot downgrade below 0012: .*\(1 rendered\)") as refused:
            downgrade()
        assert "older code would take them for messages to the customer" in str(refused.value)
        with engine.connect() as connection:  # nothing changed, not even a later migration's index
            assert connection.execute(select(outbox.c.contact_id).where(outbox.c.state == "rendered")).all()
            names = {i["name"] for i in sa_inspect(connection).get_indexes("holds")}
            assert "ux_holds_source_id" in names
        with engine.begin() as connection:
            connection.execute(update(outbox).values(state="cancelled").where(outbox.c.state == "rendered"))
        downgrade()
        with engine.connect() as connection:
            columns = {c["name"] for c in sa_inspect(connection).get_columns("outbox")}
        assert "contact_id" not in columns
    finally:
        engine.dispose()


def test_a_message_to_a_contact_rendered_without_the_contact_sender_is_not_sent(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DUECOURSE_PORTAL_SECRET", "c" * 32)
    cli, _ = _asking(db_url, tmp_path)
    now = dt.datetime(2025, 5, 8, 2, 30, tzinfo=dt.UTC)
    engine = make_engine(db_url)
    try:
        with engine.begin() as connection:  # as the code before contact senders rendered it
            connection.execute(
                insert(outbox).values(
                    key="A1|M1|ask|2025-05-08|sms|to:K1",
                    account_id="A1",
                    customer_id="C1",
                    stage="M1",
                    action="ask",
                    kind="location_request",
                    channel="sms",
                    fallback="",
                    planned_on=now.date(),
                    scheduled_at=now,
                    state="rendered",
                    attempts=0,
                    recipient="+8613900139000",
                    content="李雷您好".encode(),
                    meta=json.dumps({"reference": "r1"}),
                    provider_id="",
                    payments_seen=0,
                    paid_minor_seen=0,
                    reason="rendered by older code",
                    created_at=now,
                    updated_at=now,
                    contact_id="K1",
                )
            )
    finally:
        engine.dispose()
    assert cli("dispatch", "--once", "--now", now.isoformat(), "--quiet") == 0
    ((_, _, state, _, _),) = _to_contacts(db_url)
    assert state == "failed"
    assert not (tmp_path / "sms" / "sms.jsonl").exists()


# ------------------------------------------------------------- a third-party collector asks through a person

AGENT = """
[location_agent.US]
name = "Jordan Lee"
phone = "+12125550147"
email_from = "Jordan Lee <jordan.lee@locate.example>"
sms_from = "+12125550148"
link_base = "https://locate.example"
"""


@pytest.mark.parametrize(
    ("channel", "agent"), [("sms", True), ("email", True), ("sms", False)], ids=["sms", "email", "no-agent"]
)
def test_a_collectors_account_contact_is_asked_by_a_person_who_names_no_employer(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, channel: str, agent: bool
) -> None:
    monkeypatch.setenv("DUECOURSE_PORTAL_SECRET", "c" * 32)
    text = default_config_text()
    marker = '[[strategy.stages]]\nname = "M2"'
    text = text.replace(marker, ASK.replace('channel = "sms"', f'channel = "{channel}"') + marker) + (
        f'\n[channels.email]\ntransport = "files"\ndir = "{tmp_path / "email"}"\n'
        'from = "Example Bank <collect@example.com>"\ncontact_from = "Example Bank <hello@example.com>"\n'
        f'\n[channels.sms]\ngateway = "files"\ndir = "{tmp_path / "sms"}"\ncontact_source_addr = "8800"\n'
        f'\n[channels.post]\ndir = "{tmp_path / "print"}"\n'
        '\n[governor]\nthird_party_products = ["card_us"]\n' + (AGENT if agent else "")
    )
    unpaid = tuple((k, b.replace("P3,A3,2025-04-24,40.00\n", "")) for k, b in PORTFOLIO)
    cli, _ = cli_with(db_url, tmp_path, text, unpaid)
    contacts = (
        "contact_id,customer_id,relation,name,phone,email\n"
        "K2,C2,family,John Roe,+12125550111,john@example.org\n"
    )
    assert cli("import", "contacts", str(write(tmp_path, "contacts.csv", contacts))) == 0
    _bounce(db_url, "C2", "+12125550100", "jane@example.com")

    assert cli("run", "--as-of", "2025-05-08") == 0
    decided = list(_decided(db_url, "2025-05-08").values())
    if not agent:
        assert {v[:2] for v in decided} == {("suppressed", "US-3P-01")}
        assert all("no [location_agent.US] is set" in v[2] for v in decided)
        assert _to_contacts(db_url) == []
        return
    assert [v[0] for v in decided] == ["planned"], decided
    assert cli("dispatch", "--once", "--now", "2025-05-08T15:00:00+00:00", "--quiet") == 0
    ((_, contact, state, recipient, content),) = _to_contacts(db_url)
    assert (contact, state) == ("K2", "sent")
    debt_or_employer = r"(?i)example bank|example\.com|\(800\)|debt|owe|overdue|collect|account|pay|\$"
    if channel == "sms":
        assert recipient == "+12125550111"
        words = content.decode()
        assert words.startswith("Hello John Roe, this is Jordan Lee. I am confirming or correcting location")
        assert "+12125550147" in words and "Jane Roe" in words
        assert not re.search(debt_or_employer, words)
        engine = make_engine(db_url)
        try:
            with engine.connect() as connection:
                (meta,) = connection.execute(
                    select(outbox.c.meta).where(outbox.c.contact_id == "K2")
                ).scalars()
        finally:
            engine.dispose()
        assert json.loads(meta)["source_addr"] == "+12125550148"  # the agent's number, not the bank's 8800
        return
    assert recipient == "john@example.org"
    (sent,) = sorted((tmp_path / "email").glob("*.eml"))
    message = email.message_from_bytes(sent.read_bytes(), policy=email.policy.default)
    assert message["From"] == "Jordan Lee <jordan.lee@locate.example>"
    assert message["Subject"] == "Confirming contact details for Jane Roe"
    body = message.get_body(("plain",))
    assert body is not None
    words = body.get_content()
    assert "My name is Jordan Lee. I am confirming or correcting location information for Jane Roe." in words
    (link,) = re.findall(r"<(https?://[^>]+)>", str(message["List-Unsubscribe"]))
    assert link.startswith("https://locate.example/opt-out/contact/") and link in words
    headers = "\n".join(f"{k}: {v}" for k, v in message.items() if k not in ("Subject",))
    assert not re.search(debt_or_employer, words + headers.replace("john@example.org", ""))
