"""The kill test: several dispatcher workers on PostgreSQL send 5,000 e-mails to a real SMTP server; the
dispatcher is killed with SIGKILL midway and started again. Every message arrives; a message arrives twice
only if it was in flight at the kill, and then under the same Message-ID; nothing is left in "sending".
"""

from __future__ import annotations

import contextlib
import datetime as dt
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
from email.parser import BytesHeaderParser
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
        # The headers alone: a seventh of the CPU of parsing the whole message, 5,500 times over.
        headers = BytesHeaderParser(policy=email.policy.compat32).parsebytes(bytes(envelope.original_content))
        with self.lock:
            self.ids.append(str(headers["Message-ID"]))
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


_BUILT: list[dict[str, Any]] = []  # the rows built so far, the same whichever test asks first


def _rows(count: int = MESSAGES) -> list[dict[str, Any]]:
    """The first ``count`` outbox rows, ready to send (building one takes 2 ms: each is built once)."""
    while len(_BUILT) < count:
        _BUILT.append(_row(len(_BUILT)))
    return _BUILT[:count]


def _row(n: int) -> dict[str, Any]:
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
    return {
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


def _dispatch(
    url: str, config: Path, log: Path, *extra: str, workers: int = WORKERS
) -> subprocess.Popen[bytes]:
    """``duecourse dispatch`` as a process group of its own (so that SIGKILL reaches its workers too),
    its log, standard output and standard error in files beside ``log``: a pipe nobody reads would fill
    up and stop it."""
    command = [str(Path(sys.executable).parent / "duecourse"), "--db", url, "--config", str(config)]
    command += ["dispatch", "--workers", str(workers), "--now", NOW.isoformat(), "--log", str(log), *extra]
    env = {**os.environ, "DUECOURSE_PORTAL_SECRET": "k" * 32}
    with log.with_suffix(".out").open("ab") as out, log.with_suffix(".err").open("ab") as err:
        return subprocess.Popen(command, start_new_session=True, stdout=out, stderr=err, env=env)


def _tail(log: Path) -> str:
    """The end of a dispatcher's standard error, for an assertion's message."""
    path = log.with_suffix(".err")
    return path.read_text(encoding="utf-8", errors="replace")[-2000:] if path.exists() else ""


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


def _load(engine: Engine, count: int = MESSAGES) -> None:
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
        rows = _rows(count)
        for start in range(0, len(rows), 1000):
            c.execute(insert(outbox), rows[start : start + 1000])


def _config(tmp_path: Path, port: int) -> Path:
    config = tmp_path / "duecourse.toml"
    config.write_text(
        default_config_text()
        + f'\n[channels.email]\nhost = "127.0.0.1"\nport = {port}\nstarttls = false\n'
        + 'from = "Bank <collect@example.cn>"\n',
        encoding="utf-8",
    )
    return config


def _kill_and_restart(engine: Engine, postgres_url: str, tmp_path: Path, handler: Collect, port: int) -> None:
    _load(engine)
    config = _config(tmp_path, port)

    log = tmp_path / "dispatch.log"
    first = _dispatch(postgres_url, config, log)
    try:
        # Kill when a tenth has arrived: midway on a fast machine and a slow one alike.
        deadline = time.monotonic() + 600
        while handler.count() < MESSAGES // 10 and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.02)
        assert first.poll() is None, _tail(log)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    at_kill = handler.count()
    assert MESSAGES // 10 <= at_kill < MESSAGES

    second = _dispatch(postgres_url, config, log, "--once")
    assert second.wait(timeout=600) == 0, _tail(log)

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


def _references(count: int = MESSAGES) -> list[str]:
    from duecourse.channels.base import reference_for

    return [reference_for(message_key(f"A{n:05d}", "M1", "0", NOW.date(), "email")) for n in range(count)]


# ------------------------------------------------------------------------------------ orphaned workers


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan that exited may wait for a parent that does not reap it)."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.postgres
def test_workers_whose_parent_is_killed_stop_within_seconds_and_leave_nothing_in_sending(
    postgres_url: str, tmp_path: Path, smtp: tuple[Collect, int]
) -> None:
    handler, port = smtp
    count = 600  # the parent is killed once 100 have arrived; its workers stop within a message or two
    init_db(postgres_url)
    engine = make_engine(postgres_url)
    log = tmp_path / "dispatch.log"
    parent = None
    try:
        _load(engine, count)
        config = _config(tmp_path, port)
        parent = _dispatch(postgres_url, config, log, workers=2)
        deadline = time.monotonic() + 300
        while handler.count() < 100 and time.monotonic() < deadline and parent.poll() is None:
            time.sleep(0.02)
        assert parent.poll() is None, _tail(log)
        workers = _children(parent.pid)  # the two workers and multiprocessing's resource tracker
        assert len(workers) >= 2

        parent.kill()  # SIGKILL to the parent alone: its workers are orphaned
        parent.wait()
        killed = time.monotonic()
        while any(_running(pid) for pid in workers) and time.monotonic() - killed < 10:
            time.sleep(0.05)
        gone_after = time.monotonic() - killed
        assert not any(_running(pid) for pid in workers), _tail(log)
        assert gone_after < 5

        arrived = handler.count()
        with engine.connect() as c:
            states = dict(c.execute(select(outbox.c.state, func.count()).group_by(outbox.c.state)).all())
        # Each worker recorded the message it had sent and put back those it had not tried.
        assert "sending" not in states
        assert states.get("sent", 0) == arrived
        assert arrived < count
        lines = log.read_text(encoding="utf-8").splitlines()
        assert sum(1 for line in lines if '"event": "dispatch.orphaned"' in line) == 2

        second = _dispatch(postgres_url, config, log, "--once", workers=1)
        assert second.wait(timeout=600) == 0, _tail(log)
        received = Counter(handler.ids)
        assert set(received) == {f"<{ref}@example.cn>" for ref in _references(count)}
        assert set(received.values()) == {1}  # nothing was in flight: no copy
    finally:
        if parent is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(parent.pid, signal.SIGKILL)  # whatever of the group is left
            parent.wait()
        engine.dispose()
