"""From the daily run to a real SMTP server: the run plans the stage's e-mail, ``dispatch`` renders it with
the letter attached and sends it once, ``outbox`` shows it; on SQLite and PostgreSQL."""

from __future__ import annotations

import email
import email.policy
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from test_cli import ACCOUNTS, CUSTOMERS, DUES, PAYMENTS, write

from duecourse.cli import main
from duecourse.config import default_config_text

ACTION = """
  [[strategy.stages.actions]]
  channel = "email"
  kind = "overdue_reminder"
  repeat_every_days = 1
  max_times = 30
  at = "10:00"
  fallback = ["letter"]

"""


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
    text += "\n[governor]\ndaily_contacts_per_customer = 2\n"  # both of C1's e-mails go the same day
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
