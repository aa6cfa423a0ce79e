"""The HTTP service over real HTTP (uvicorn on a local port), on SQLite and PostgreSQL: the opt-out link
of an e-mail the dispatcher sent opens a page that changes nothing, and its one-click POST (RFC 8058)
holds the customer's e-mail for good, once; an HTTP SMS gateway's replies and receipts are stored and
acted on, and a bad post is refused whole, naming each bad item."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from cli_support import cli_with
from sqlalchemy import select

from duecourse.api import create_app
from duecourse.bootstrap import bootstrap
from duecourse.config import default_config_text
from duecourse.store.db import make_engine
from duecourse.store.tables import holds, inbound, outbox

TOKEN = "gateway-callback-token-1234"
NOW = dt.datetime(2025, 5, 5, 2, tzinfo=dt.UTC)  # 10:00 in Shanghai
ACTION = """
  [[strategy.stages.actions]]
  channel = "email"
  kind = "overdue_reminder"
  repeat_every_days = 1
  max_times = 30
  at = "10:00"

"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def service(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path, str]]:
    """A database with an e-mail sent to C1 (through the dispatcher, to files), and the HTTP service on
    it: (base URL, the e-mail folder, the database URL)."""
    monkeypatch.setenv("DUECOURSE_PORTAL_SECRET", "s" * 32)
    monkeypatch.setenv("DUECOURSE_TEST_CALLBACK_TOKEN", TOKEN)
    text = default_config_text()
    marker = '[[strategy.stages]]\nname = "M2"'
    text = text.replace(marker, ACTION + marker)
    text += (
        f'\n[channels.email]\ntransport = "files"\ndir = "{tmp_path / "email"}"\n'
        'from = "示例消费金融 <collect@example.cn>"\n'
        '\n[channels.sms]\ngateway = "http"\nurl = "http://127.0.0.1:9/send"\nsource_addr = "10690000"\n'
        'body = { to = "{to}", text = "{text}" }\ncallback_token_env = "DUECOURSE_TEST_CALLBACK_TOKEN"\n'
        'receipt_id_field = "msg.id"\nreceipt_status_field = "msg.state"\n'
    )
    cli, config = cli_with(db_url, tmp_path, text)
    assert cli("run", "--as-of", "2025-05-05") == 0
    assert cli("dispatch", "--once", "--now", NOW.isoformat(), "--quiet") == 0

    app = bootstrap(db_url, config)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(app, clock=lambda: NOW), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the HTTP service did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", tmp_path / "email", db_url
    finally:
        server.should_exit = True
        thread.join(10)
        app.engine.dispose()


def _call(
    url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str, dict[str, str]]:
    request = urllib.request.Request(
        url, data=body, headers=headers or {}, method="POST" if body is not None else "GET"
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as answer:
            return answer.status, answer.read().decode(), dict(answer.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), dict(error.headers)


def _rows(db_url: str, table: Any) -> list[dict[str, Any]]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            return [dict(r._mapping) for r in connection.execute(select(table))]
    finally:
        engine.dispose()


def _opt_outs(db_url: str) -> list[tuple[str, str, str]]:
    return sorted(
        (r["customer_id"], r["channel"], r["reason"])
        for r in _rows(db_url, holds)
        if r["kind"] == "opt_out" and r["scope"] == "channel"
    )


def test_the_one_click_unsubscribe_of_a_sent_email_holds_the_customers_email_once(
    service: tuple[str, Path, str],
) -> None:
    base, folder, db_url = service
    (sent,) = sorted(folder.glob("*.eml"))
    message = email.message_from_bytes(sent.read_bytes(), policy=email.policy.default)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    links = re.findall(r"<(https?://[^>]+)>", str(message["List-Unsubscribe"]))
    assert len(links) == 1
    path = re.sub(r"^https?://[^/]+", "", links[0])
    assert path.startswith("/opt-out/email/")
    body = message.get_body(preferencelist=("plain",))
    assert body is not None and links[0] in body.get_content()  # the same link in the text

    # Opening the link (a person, a scanner, a preview) changes nothing.
    status, page, headers = _call(base + path)
    assert status == 200 and "no-store" in headers["cache-control"]
    assert "退订" in page and '<form method="post">' in page and "示例消费金融" in page
    assert _opt_outs(db_url) == []

    # The mail client's one-click POST (RFC 8058).
    status, page, _ = _call(
        base + path, b"List-Unsubscribe=One-Click", {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 200 and "退订成功" in page
    assert _opt_outs(db_url) == [("C1", "email", "opted out of email: the opt-out link")]
    status, page, _ = _call(base + path, b"List-Unsubscribe=One-Click")
    assert status == 200 and "您已退订" in page
    assert len(_opt_outs(db_url)) == 1
    status, page, _ = _call(base + path)
    assert status == 200 and "您已退订" in page and "<form" not in page

    # A changed token, a link for another channel, a channel that does not exist: refused, saying why.
    tampered = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    status, page, _ = _call(base + tampered, b"List-Unsubscribe=One-Click")
    assert status == 400 and "signature does not match" in page
    status, page, _ = _call(base + path.replace("/email/", "/sms/"), b"List-Unsubscribe=One-Click")
    assert status == 400 and "this opt-out link is for email, not sms" in page
    status, _, _ = _call(base + path.replace("/email/", "/fax/"))
    assert status == 404
    assert len(_opt_outs(db_url)) == 1


def test_an_sms_gateways_replies_and_receipts_are_stored_and_acted_on(service: tuple[str, Path, str]) -> None:
    base, _, db_url = service
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    url = base + "/callbacks/sms/replies"

    status, answer, _ = _call(url, json.dumps({"from": "+8613800138000", "text": "TD"}).encode())
    assert status == 401 and "token" in answer  # no token, nothing stored
    status, _, _ = _call(url + "?token=wrong", json.dumps({"from": "+8613800138000", "text": "TD"}).encode())
    assert status == 401
    assert _rows(db_url, inbound) == []

    # One bad item refuses the whole post, naming each bad one.
    bad = [{"from": "+12125550100", "text": "hello"}, {"text": "STOP"}, "x"]
    status, answer, _ = _call(url, json.dumps(bad).encode(), auth)
    assert status == 400
    problems = json.loads(answer)["problems"]
    assert [p["source"] for p in problems] == ["body[1].from", "body[2]"]
    status, answer, _ = _call(url, b"{not json", auth)
    assert status == 400 and "not JSON" in answer
    assert _rows(db_url, inbound) == []

    replies = [
        {"from": "+8613800138000", "to": "10690000", "text": "TD"},
        {"from": "+12125550100", "text": "ok"},
    ]
    status, answer, _ = _call(url, json.dumps(replies).encode(), auth)
    assert status == 200, answer
    assert json.loads(answer) | {} == {
        "stored": 2,
        "handled": 2,
        "opt_out_holds": 1,
        "contacts_stopped": 0,
        "delivered": 0,
        "bounced": 0,
        "waiting": 0,
    }
    assert [c for c, channel, _ in _opt_outs(db_url) if channel == "sms"] == ["C1"]

    # A receipt for the e-mail's provider id would match nothing here (no SMS was sent): it waits for its
    # message (the receipt may overtake the "sent" record), stored and not lost. The token may also come
    # in the query, for gateways that can only set a URL.
    receipt = {"msg": {"id": "gw-77", "state": "delivered"}}
    status, answer, _ = _call(
        base + f"/callbacks/sms/receipts?token={TOKEN}",
        json.dumps(receipt).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 200, answer
    assert json.loads(answer)["stored"] == 1 and json.loads(answer)["waiting"] == 1
    status, answer, _ = _call(
        base + "/callbacks/sms/receipts", json.dumps({"msg": {"id": "x"}}).encode(), auth
    )
    assert status == 400 and "msg.state" in answer
    stored = [r for r in _rows(db_url, inbound) if r["provider_id"] == "gw-77"]
    assert len(stored) == 1 and stored[0]["handled_at"] is None


def test_a_receipt_from_the_gateway_marks_its_sms_delivered(service: tuple[str, Path, str]) -> None:
    base, _, db_url = service
    engine = make_engine(db_url)
    try:
        with engine.begin() as connection:  # the e-mail stands in for a text the gateway took as gw-1
            (row,) = connection.execute(select(outbox.c.id).where(outbox.c.state == "sent")).all()
            connection.execute(
                outbox.update().where(outbox.c.id == row.id).values(channel="sms", provider_id="gw-1")
            )
    finally:
        engine.dispose()
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    # On its way, then a word nobody configured: noted in the message's history, the post not refused
    # (the gateway would send it again for ever), the message still "sent".
    on_the_way = [{"msg": {"id": "gw-1", "state": "Queued"}}, {"msg": {"id": "gw-1", "state": "ESME_X"}}]
    status, answer, _ = _call(base + "/callbacks/sms/receipts", json.dumps(on_the_way).encode(), auth)
    assert status == 200, answer
    assert json.loads(answer)["stored"] == 2 and json.loads(answer)["delivered"] == 0
    assert [r["state"] for r in _rows(db_url, outbox) if r["provider_id"] == "gw-1"] == ["sent"]
    receipt = {"msg": {"id": "gw-1", "state": "delivered"}}
    status, answer, _ = _call(base + "/callbacks/sms/receipts", json.dumps(receipt).encode(), auth)
    assert status == 200, answer
    assert json.loads(answer)["delivered"] == 1
    assert [r["state"] for r in _rows(db_url, outbox) if r["provider_id"] == "gw-1"] == ["delivered"]
    from duecourse.store.tables import outbox_events

    notes = [str(e["reason"]) for e in _rows(db_url, outbox_events)]
    assert any("feedback pending: status:Queued" in n for n in notes)
    assert any("feedback unrecognised: status:ESME_X" in n for n in notes)


def test_links_sent_before_the_table_existed_keep_working_after_the_upgrade(db_url: str) -> None:
    """Migration 0009 writes every existing customer's links (their subject is a hash of the customer and
    the channel), so an opt-out link in a mailbox from before the upgrade is still honoured."""
    from alembic import command
    from sqlalchemy import insert

    from duecourse.channels.compose import opt_out_subject
    from duecourse.store.db import _alembic_config, init_db
    from duecourse.store.tables import customers, opt_out_links

    engine = make_engine(db_url)
    try:
        with engine.begin() as connection:
            config = _alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "0008")
        with engine.begin() as connection:
            connection.execute(
                insert(customers),
                [
                    {
                        "customer_id": customer,
                        "name": "x",
                        "locale": "en-US",
                        "timezone": "America/New_York",
                        "jurisdiction": "US",
                        "phone": "",
                        "email": "",
                        "address_line1": "",
                        "address_line2": "",
                        "city": "",
                        "region": "",
                        "postal_code": "",
                        "country": "US",
                    }
                    for customer in ("C1", "C2")
                ],
            )
    finally:
        engine.dispose()
    init_db(db_url)
    rows = _rows(db_url, opt_out_links)
    assert sorted((r["subject"], r["customer_id"], r["channel"]) for r in rows) == sorted(
        (opt_out_subject(c, ch), c, ch) for c in ("C1", "C2") for ch in ("email", "sms", "push")
    )


def test_a_contacts_opt_out_link_and_stop_reply_stop_that_contact_and_say_nothing_of_an_account(
    service: tuple[str, Path, str], tmp_path: Path
) -> None:
    from duecourse.letters.token import make_token, portal_secret
    from duecourse.services.third_parties import import_contacts, link_subject
    from duecourse.store.tables import third_party_stops

    base, _, db_url = service
    app = bootstrap(db_url, None)
    try:
        path = tmp_path / "contacts.csv"
        path.write_text(
            "contact_id,customer_id,relation,name,phone\n"
            "K1,C1,emergency,李雷,+8613900139000\nK2,C1,family,韩梅梅,+8613900139001\n",
            encoding="utf-8",
        )
        import_contacts(app, path, NOW)
    finally:
        app.engine.dispose()
    secret, _ = portal_secret()
    token = make_token(link_subject("K1"), dt.date(2026, 5, 5), secret)
    status, page, _ = _call(f"{base}/opt-out/contact/{token}")
    assert status == 200 and "不再接收示例消费金融有限公司的消息" in page
    assert not any(word in page for word in ("账户", "还款", "逾期"))
    status, page, _ = _call(f"{base}/opt-out/contact/{token}", b"List-Unsubscribe=One-Click")
    assert status == 200 and "示例消费金融有限公司不会再联系您" in page
    status, page, _ = _call(f"{base}/opt-out/contact/{token}", b"List-Unsubscribe=One-Click")
    assert "您已告知" in page  # once

    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    reply = {"from": "+8613900139001", "to": "10690000", "text": "TD"}
    status, answer, _ = _call(f"{base}/callbacks/sms/replies", json.dumps([reply]).encode(), auth)
    assert status == 200 and json.loads(answer)["contacts_stopped"] == 1
    assert sorted(r["contact_id"] for r in _rows(db_url, third_party_stops)) == ["K1", "K2"]
    assert [
        c for c, channel, _ in _opt_outs(db_url) if channel == "sms"
    ] == []  # the customer is not opted out
