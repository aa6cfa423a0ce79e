"""The kill test: several dispatcher workers on PostgreSQL send 5,000 e-mails to a real SMTP server; the
dispatcher is killed with SIGKILL midway and started again. Every message arrives; a message arrives twice
only if it was in flight at the kill, and then under the same Message-ID; nothing is left in "sending".
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine, func, insert, select

from duecourse.channels.email import build_email
from duecourse.config import default_config_text
from duecourse.store.db import init_db, make_engine
from duecourse.store.outbox import message_key
from duecourse.store.tables import customers, outbox, outbox_events

MESSAGES = 5_000
WORKERS = 3
NOW = dt.datetime(2026, 3, 2, 2, 0, tzinfo=dt.UTC)  # 10:00 in Shanghai


class Collect:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        message = email.message_from_bytes(bytes(envelope.original_content), policy=email.policy.compat32)
        with self.lock:
            self.ids.append(str(message["Message-ID"]))
        return "250 2.0.0 Ok: queued"

    def count(self) -> int:
        with self.lock:
            return len(self.ids)


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


def _rows() -> Iterator[dict[str, Any]]:
    for n in range(MESSAGES):
        account = f"A{n:05d}"
        key = message_key(account, "M1", "0", NOW.date(), "email")
        content = build_email(
            key=key,
            sender="Bank <collect@example.cn>",
            recipient=f"c{n % 100}@example.cn",
            subject="A message from your bank",
            text=f"Message {n}",
            html=f"<p>Message {n}</p>",
            attachments=[],
            unsubscribe_url="https://portal.example.cn/opt-out/x",
            unsubscribe_mailto="mailto:collect@example.cn?subject=unsubscribe",
            date=NOW,
            domain="example.cn",
        )
        yield {
            "key": key,
            "account_id": account,
            "customer_id": f"C{n % 100}",
            "stage": "M1",
            "action": "0",
            "kind": "overdue_reminder",
            "channel": "email",
            "fallback": "",
            "replaces_id": None,
            "planned_on": NOW.date(),
            "scheduled_at": NOW,
            "state": "rendered",
            "attempts": 0,
            "next_attempt_at": None,
            "claimed_by": None,
            "recipient": f"c{n % 100}@example.cn",
            "content": content,
            "meta": "{}",
            "provider_id": "",
            "payments_seen": 0,
            "paid_minor_seen": 0,
            "reason": "rendered by the test",
            "created_at": NOW,
            "updated_at": NOW,
            "sent_at": None,
        }


def _dispatch(url: str, config: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """``duecourse dispatch`` as a process group of its own (so that SIGKILL reaches its workers too),
    logging to a file: a pipe nobody reads would fill up and stop it."""
    command = [str(Path(sys.executable).parent / "duecourse"), "--db", url, "--config", str(config)]
    command += ["dispatch", "--workers", str(WORKERS), "--now", NOW.isoformat(), "--log", str(log), *extra]
    env = {**os.environ, "DUECOURSE_PORTAL_SECRET": "k" * 32}
    return subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )


@pytest.mark.postgres
def test_kill_9_midway_loses_nothing_and_resends_only_what_was_in_flight(
    postgres_url: str, tmp_path: Path, smtp: tuple[Collect, int]
) -> None:
    handler, port = smtp
    init_db(postgres_url)
    engine = make_engine(postgres_url)
    try:
        _kill_and_restart(engine, postgres_url, tmp_path, handler, port)
    finally:
        engine.dispose()


def _kill_and_restart(engine: Engine, postgres_url: str, tmp_path: Path, handler: Collect, port: int) -> None:
    with engine.begin() as c:
        c.execute(
            insert(customers),
            [
                {
                    "customer_id": f"C{n}",
                    "name": f"C{n}",
                    "locale": "zh-CN",
                    "timezone": "Asia/Shanghai",
                    "jurisdiction": "CN",
                    "phone": "",
                    "email": f"c{n}@example.cn",
                    "address_line1": "",
                    "address_line2": "",
                    "city": "",
                    "region": "",
                    "postal_code": "",
                    "country": "CN",
                }
                for n in range(100)
            ],
        )
        rows = list(_rows())
        for start in range(0, len(rows), 1000):
            c.execute(insert(outbox), rows[start : start + 1000])
    config = tmp_path / "duecourse.toml"
    config.write_text(
        default_config_text()
        + f'\n[channels.email]\nhost = "127.0.0.1"\nport = {port}\nstarttls = false\n'
        + 'from = "Bank <collect@example.cn>"\n',
        encoding="utf-8",
    )

    log = tmp_path / "dispatch.log"
    first = _dispatch(postgres_url, config, log)
    try:
        # Kill when a tenth has arrived: midway on a fast machine and a slow one alike.
        deadline = time.monotonic() + 600
        while handler.count() < MESSAGES // 10 and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.02)
        assert first.poll() is None, first.communicate()[1].decode()[-2000:]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.communicate()
    at_kill = handler.count()
    assert MESSAGES // 10 <= at_kill < MESSAGES

    second = _dispatch(postgres_url, config, log, "--once")
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err.decode()[-2000:]

    received = Counter(handler.ids)
    expected = {f"<{ref}@example.cn>" for ref in _references()}
    assert set(received) == expected  # none lost, nothing foreign
    twice = {mid: n for mid, n in received.items() if n > 1}
    assert all(n == 2 for n in twice.values())
    assert len(twice) <= WORKERS  # at most the one message each worker had in flight
    with engine.connect() as c:
        states = dict(c.execute(select(outbox.c.state, func.count()).group_by(outbox.c.state)).all())
        recovered = c.execute(
            select(func.count()).select_from(outbox_events).where(outbox_events.c.reason.like("recovered%"))
        ).scalar_one()
    assert states == {"sent": MESSAGES}
    assert len(twice) <= recovered  # what was sent again had been recovered from a dead worker
    # The JSON log has a line for every change of state, from both dispatchers (the last line of the
    # killed one may be cut short).
    lines = log.read_text(encoding="utf-8").splitlines()
    changes = [json.loads(line) for line in lines if line.endswith("}")]
    assert sum(1 for c in changes if c["to"] == "sent") >= MESSAGES
    assert {c["event"] for c in changes} == {"outbox.state"}
    del out


def _references() -> list[str]:
    from duecourse.channels.base import reference_for

    return [reference_for(message_key(f"A{n:05d}", "M1", "0", NOW.date(), "email")) for n in range(MESSAGES)]
