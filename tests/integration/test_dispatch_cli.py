"""From the daily run to a real SMTP server: the run plans the stage's e-mail, ``dispatch`` renders it with
the letter attached and sends it once, ``outbox`` shows it; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from outbox_support import customer_row
from smpp_peer import SmppPeer
from sqlalchemy import insert, select
from test_cli import ACCOUNTS, CUSTOMERS, DUES, PAYMENTS, write

from duecourse.channels.base import Outgoing, reference_for
from duecourse.channels.email import EmailSettings, SmtpTransport, build_email, message_id_for
from duecourse.cli import main
from duecourse.config import default_config_text
from duecourse.store.db import init_db, make_engine
from duecourse.store.tables import customers, holds, inbound, outbox

ACTION = """
  [[strategy.stages.actions]]
  channel = "email"
  kind = "overdue_reminder"
  repeat_every_days = 1
  max_times = 30
  at = "10:00"
  fallback = ["letter"]

"""


def _with_governor(text: str, line: str) -> str:
    """The configuration with ``line`` in its [governor] table (which a TOML file may declare once)."""
    key = line.split("=", maxsplit=1)[0].strip()
    text = re.sub(rf"(?m)^{key}\s*=.*$", "", text)  # an uncommented setting of the default, if any
    if re.search(r"(?m)^\[governor\]\s*$", text):
        return re.sub(r"(?m)^\[governor\]\s*$", f"[governor]\n{line}", text, count=1)
    return f"{text}\n[governor]\n{line}\n"


class Collect:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append((list(envelope.rcpt_tos), bytes(envelope.original_content)))
        return "250 2.0.0 Ok: queued"


@pytest.fixture
def smtp() -> Iterator[tuple[Collect, int]]:
    handler = Collect()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def test_the_run_plans_and_dispatch_sends_each_email_once(
    db_url: str, tmp_path: Path, smtp: tuple[Collect, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    handler, port = smtp
    text = default_config_text()
    marker = '[[strategy.stages]]\nname = "M2"'
    assert marker in text
    text = text.replace(marker, ACTION + marker)
    text += (
        f'\n[channels.email]\nhost = "127.0.0.1"\nport = {port}\nstarttls = false\n'
        'from = "示例消费金融 <collect@example.cn>"\n'
        f'\n[channels.post]\ndir = "{tmp_path / "print"}"\n'
    )
    config = tmp_path / "duecourse.toml"
    config.write_text(text, encoding="utf-8")
    monkeypatch.setenv("DUECOURSE_PORTAL_SECRET", "x" * 32)

    def cli(*args: str) -> int:
        return main(["--db", db_url, "--config", str(config), *args])

    assert cli("init") == 0
    for kind, body in (
        ("customers", CUSTOMERS),
        ("accounts", ACCOUNTS),
        ("dues", DUES),
        ("payments", PAYMENTS),
    ):
        assert cli("import", kind, str(write(tmp_path, f"{kind}.csv", body))) == 0
    assert cli("run", "--as-of", "2025-05-05") == 0
    assert cli("run", "--as-of", "2025-05-05") == 0  # the same day again plans nothing new

    now = "2025-05-05T02:00:00+00:00"  # 10:00 in Shanghai
    assert cli("dispatch", "--once", "--now", now) == 0
    assert cli("dispatch", "--once", "--now", now) == 0  # nothing is sent twice
    # The customer has a card and a loan: the governor lets one e-mail go a day, the other the next morning.
    assert [rcpt for rcpt, _ in handler.messages] == [["wang@example.cn"]]
    assert cli("dispatch", "--once", "--now", "2025-05-06T00:00:00+00:00") == 0  # 08:00 in Shanghai

    assert [rcpt for rcpt, _ in handler.messages] == [["wang@example.cn"], ["wang@example.cn"]]
    ids = set()
    for _, raw in handler.messages:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        ids.add(message["Message-ID"])
        subject = str(message["Subject"])
        assert "¥" not in subject and "逾期" not in subject and "欠款" not in subject
        assert message["List-Unsubscribe"] is not None
        attachments = list(message.iter_attachments())
        assert [part.get_content_type() for part in attachments] == ["application/pdf"]
        assert attachments[0].get_content().startswith(b"%PDF-")
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        assert "如您已经还款，请忽略本邮件。" in body.get_content()
    assert len(ids) == 2


def test_outbox_status_and_show_print_the_rows_and_the_bytes(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = default_config_text()
    marker = '[[strategy.stages]]\nname = "M2"'
    text = text.replace(marker, ACTION + marker)
    text += f'\n[channels.email]\ntransport = "files"\ndir = "{tmp_path / "mail"}"\n'
    text += 'from = "Bank <c@example.cn>"\n'
    text += f'\n[channels.post]\ndir = "{tmp_path / "print"}"\n'
    # Both of C1's e-mails go the same day (the governor allows one by default).
    text = _with_governor(text, "daily_contacts_per_customer = 2")
    config = tmp_path / "duecourse.toml"
    config.write_text(text, encoding="utf-8")
    monkeypatch.setenv("DUECOURSE_PORTAL_SECRET", "y" * 32)

    def cli(*args: str) -> int:
        return main(["--db", db_url, "--config", str(config), *args])

    for kind, body in (
        ("customers", CUSTOMERS),
        ("accounts", ACCOUNTS),
        ("dues", DUES),
        ("payments", PAYMENTS),
    ):
        assert cli("import", kind, str(write(tmp_path, f"{kind}.csv", body))) == 0
    assert cli("run", "--as-of", "2025-05-05") == 0
    assert cli("dispatch", "--once", "--now", "2025-05-05T02:00:00+00:00") == 0
    capsys.readouterr()
    assert cli("outbox", "status", "--json") == 0
    status = json.loads(capsys.readouterr().out)
    assert status["counts"] == [{"state": "sent", "channel": "email", "messages": 2}]
    assert status["oldest_waiting"] is None
    assert status["sms_segments"] == {}
    assert len(list((tmp_path / "mail").glob("*.eml"))) == 2

    out = tmp_path / "one.eml"
    assert cli("outbox", "show", "1", "--out", str(out)) == 0
    assert out.read_bytes() in {p.read_bytes() for p in (tmp_path / "mail").glob("*.eml")}
    assert cli("outbox", "cancel", "1") == 1  # a sent message cannot be cancelled
    assert "only planned or rendered messages can be cancelled" in capsys.readouterr().err


NOW = dt.datetime(2026, 3, 2, 2, 0, tzinfo=dt.UTC)  # 10:00 in Shanghai


def _sms_row(key: str, text: str) -> dict[str, Any]:
    return {
        "key": key,
        "account_id": "A1",
        "customer_id": "C1",
        "stage": "M1",
        "action": "0",
        "kind": "overdue_reminder",
        "channel": "sms",
        "fallback": "",
        "replaces_id": None,
        "planned_on": NOW.date(),
        "scheduled_at": NOW,
        "state": "rendered",
        "attempts": 0,
        "next_attempt_at": None,
        "claimed_by": None,
        "recipient": "+8613800138000",
        "content": text.encode(),
        "meta": json.dumps({"reference": reference_for(key)}),
        "provider_id": "",
        "payments_seen": 0,
        "paid_minor_seen": 0,
        "reason": "rendered by the test",
        "created_at": NOW,
        "updated_at": NOW,
        "sent_at": None,
    }


def test_dispatch_over_smpp_stores_the_receipt_and_a_stop_before_acknowledging_and_acts_on_them(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init_db(db_url)
    engine = make_engine(db_url)
    with engine.begin() as c:
        c.execute(insert(customers).values(customer_row("C1")))
        c.execute(insert(outbox).values(_sms_row("A1|M1|0|2026-03-02|sms", "Your statement is ready")))
    monkeypatch.setenv("DUECOURSE_PORTAL_SECRET", "s" * 32)
    monkeypatch.setenv("TEST_SMPP_PASSWORD", "s3cret")
    with SmppPeer(password="s3cret") as peer:
        config = tmp_path / "duecourse.toml"
        config.write_text(
            default_config_text()
            + f'\n[channels.sms]\ngateway = "smpp"\nhost = "127.0.0.1"\nport = {peer.port}\n'
            + 'system_id = "bank"\npassword_env = "TEST_SMPP_PASSWORD"\nsource_addr = "BANK"\n',
            encoding="utf-8",
        )
        peer.send_reply("8613800138000", "STOP")  # waits in the SMSC until the session binds
        cli = ["--db", db_url, "--config", str(config)]
        assert main([*cli, "dispatch", "--once", "--now", NOW.isoformat(), "--quiet"]) == 0
        acked = [command for command, _ in peer.log.acked]

    with engine.connect() as c:
        (message,) = c.execute(select(outbox.c.state, outbox.c.provider_id)).all()
        stored = c.execute(select(inbound).order_by(inbound.c.id)).mappings().all()
        opt_outs = c.execute(select(holds.c.customer_id).where(holds.c.kind == "opt_out")).scalars().all()
    engine.dispose()
    assert tuple(message) == ("delivered", "MSG0001")
    assert sorted(json.loads(row["detail"])["handled"] for row in stored) == [
        "opt-out: 1 hold(s) added",
        "receipt applied: delivered",
    ]
    assert all(row["handled_at"] == NOW for row in stored)
    assert opt_outs == ["C1"]
    assert acked.count(0x80000005) == 2  # both deliver_sm acknowledged, after they were stored


def test_smtp_stages_a_message_and_the_server_accepts_it_only_after_before_accept(
    smtp: tuple[Collect, int],
) -> None:
    handler, port = smtp
    settings = EmailSettings(host="127.0.0.1", port=port, starttls=False, from_address="b@example.cn")

    def message(key: str) -> Outgoing:
        content = build_email(
            key=key,
            sender="b@example.cn",
            recipient="jane@example.cn",
            subject="s",
            text=".a line that starts with a dot\n",
            html="<p>x</p>",
            attachments=[],
            unsubscribe_url="https://portal.example.cn/opt-out/x",
            unsubscribe_mailto="b@example.cn",
            date=NOW,
            domain="example.cn",
        )
        meta = {"message_id": message_id_for(key, "example.cn")}
        return Outgoing(1, key, "email", "jane@example.cn", content, meta)

    seen_at_before_accept: list[int] = []

    def broken() -> None:
        raise RuntimeError("the previous record failed")

    with SmtpTransport(settings) as transport:
        first = message("k1")
        receipt = transport.send_staged(first, lambda: seen_at_before_accept.append(len(handler.messages)))
        with pytest.raises(RuntimeError, match="the previous record failed"):
            transport.send_staged(message("k2"), broken)  # not translated into a channel error
        again = transport.send(message("k3"))  # a new connection: the abandoned DATA was dropped

    assert seen_at_before_accept == [0]  # the server had not accepted the message yet
    assert receipt.provider_id == message_id_for("k1", "example.cn")
    assert again.provider_id == message_id_for("k3", "example.cn")
    assert [raw for _, raw in handler.messages] == [first.content, message("k3").content]  # dots unstuffed
