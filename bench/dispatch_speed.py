"""How fast the outbox goes out: e-mails per second to a local SMTP server, and the dispatcher alone.

    .venv/bin/python bench/dispatch_speed.py [--messages 2000] [--db postgresql+psycopg://...]

1. **server limit**: a bare ``smtplib`` loop sends the prebuilt messages (a one-page letter PDF attached)
   over one connection to a local aiosmtpd server running in its own process; that is what the server
   can take. It is measured before the first dispatcher run and after each one, and each run is compared
   with the mean of the limits measured just before and just after it (the load of a shared machine
   drifts within a minute).
2. **dispatcher, 1, 2 and 4 workers**: the same messages, pre-rendered in the outbox (state
   ``rendered``), sent by ``duecourse dispatch --once`` on PostgreSQL (claim with SKIP LOCKED, re-check
   the account, send, record each message).
3. **dispatcher alone**: the same, with the fake transport in place of SMTP: the cost of claiming,
   re-checking and recording in PostgreSQL.

Prints JSON: messages per second for each, and the ratio of the dispatcher to the server limit. The
dispatcher's rates count from the workers' first claim to their last record (process start-up excluded,
about a second per worker on this machine). The attachment is a real one-page-letter PDF: the en-US
overdue reminder, about 40 KB (``--locale zh-CN``: about 100 KB, CJK fonts embedded).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import smtplib
import socket
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import delete, insert
from sqlalchemy.engine import make_url

from duecourse.bootstrap import bootstrap
from duecourse.channels.dispatch import Composed, Dispatcher, NotComposed
from duecourse.channels.email import Attachment, build_email, message_id_for
from duecourse.channels.fake import FakeTransport
from duecourse.config import default_config_text
from duecourse.services import dispatching
from duecourse.store import outbox as store
from duecourse.store.db import init_db
from duecourse.store.tables import customers, outbox, outbox_events

NOW = dt.datetime(2026, 3, 2, 2, 0, tzinfo=dt.UTC)
SERVER_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _serve(port: int, ready: Any) -> None:
    from aiosmtpd.controller import Controller

    class Sink:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            return "250 2.0.0 Ok"

    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


def _bare_loop(port: int, messages: list[tuple[str, str, bytes]]) -> float:
    """The server's limit: messages per second from a bare ``smtplib`` loop over one connection."""
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for _key, recipient, content in messages:
            smtp.sendmail("collect@example.cn", [recipient], content)
    return len(messages) / (time.perf_counter() - start)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _pdf(locale: str) -> bytes:
    """A real overdue reminder of ``locale``, as the dispatcher attaches it."""
    sys.path.insert(0, str(Path(__file__).parent))
    from letters_speed import letters_data

    from duecourse.services.letters import render_many

    return render_many(letters_data(locale, 1), workers=1)[0].pdf


def _messages(count: int, pdf: bytes) -> list[tuple[str, str, bytes]]:
    found = []
    for n in range(count):
        key = store.message_key(f"A{n:06d}", "M1", "0", NOW.date(), "email")
        recipient = f"c{n % 100}@example.cn"
        content = build_email(
            key=key,
            sender="Bank <collect@example.cn>",
            recipient=recipient,
            subject="A message from your bank",
            text=f"Message {n}\n" * 20,
            html=f"<p>Message {n}</p>" * 20,
            attachments=[Attachment("letter.pdf", pdf, "application/pdf")],
            unsubscribe_url="https://portal.example.cn/opt-out/x",
            unsubscribe_mailto="mailto:collect@example.cn?subject=unsubscribe",
            date=NOW,
            domain="example.cn",
        )
        found.append((key, recipient, content))
    return found


def _load(url: str, messages: list[tuple[str, str, bytes]]) -> None:
    app = bootstrap(url, None)
    with app.engine.begin() as c:
        c.execute(delete(outbox_events))
        c.execute(delete(outbox))
        c.execute(delete(customers))
        c.execute(insert(customers), [_customer(n) for n in range(100)])
        rows = [_row(key, recipient, content) for key, recipient, content in messages]
        for start in range(0, len(rows), 1000):
            c.execute(insert(outbox), rows[start : start + 1000])
    app.engine.dispose()


def _customer(n: int) -> dict[str, str]:
    return {
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


def _row(key: str, recipient: str, content: bytes) -> dict[str, Any]:
    account = key.split("|", maxsplit=1)[0]
    meta = {"message_id": message_id_for(key, "example.cn")}  # as the composer stores it
    return {
        "key": key,
        "account_id": account,
        "customer_id": f"C{int(account[1:]) % 100}",
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
        "recipient": recipient,
        "content": content,
        "meta": json.dumps(meta),
        "provider_id": "",
        "payments_seen": 0,
        "paid_minor_seen": 0,
        "reason": "pre-rendered by the benchmark",
        "created_at": NOW,
        "updated_at": NOW,
        "sent_at": None,
    }


class _NoCompose:
    def compose(self, messages: Any, now: Any, connection: Any) -> dict[int, Composed | NotComposed]:
        raise AssertionError("the benchmark's messages are rendered already")


def _fake_worker(url: str) -> tuple[int, float]:
    """One dispatcher process with the fake transport, set up as ``duecourse dispatch`` sets its workers."""
    app = bootstrap(url, None)
    dispatching.use_asynchronous_commit(app.engine)
    worker = int.from_bytes(os.urandom(7), "big")
    with app.engine.connect() as holder:
        store.hold_worker_lock(holder, worker)
        transports = {"email": FakeTransport("email")}
        dispatcher = Dispatcher(app.engine, transports, _NoCompose(), lambda: NOW, worker=worker)
        start = time.perf_counter()
        sent = dispatcher.run_once().sent
        seconds = time.perf_counter() - start
    app.engine.dispose()
    return sent, seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--locale", default="en-US", choices=["en-US", "en-GB", "zh-CN"])
    parser.add_argument(
        "--db", default=None, help="a PostgreSQL URL (default: a fresh database, dropped after)"
    )
    args = parser.parse_args()
    os.environ.setdefault("DUECOURSE_PORTAL_SECRET", "bench-" + "x" * 32)

    created = None
    url = args.db
    if url is None:
        created = f"duecourse_bench_dispatch_{os.getpid()}"
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(created)))
        url = make_url(SERVER_URL).set(database=created).render_as_string(hide_password=False)
    init_db(url)
    context = multiprocessing.get_context("spawn")
    port = _free_port()
    ready = context.Event()
    server = context.Process(target=_serve, args=(port, ready), daemon=True)
    server.start()
    ready.wait(30)
    result: dict[str, Any] = {
        "messages": args.messages,
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg(),
    }
    try:
        pdf = _pdf(args.locale)
        messages = _messages(args.messages, pdf)
        result["message_bytes"] = len(messages[0][2])

        limits = [_bare_loop(port, messages)]

        config = Path(f"/tmp/duecourse-bench-dispatch-{os.getpid()}.toml")
        config.write_text(
            default_config_text()
            + f'\n[channels.email]\nhost = "127.0.0.1"\nport = {port}\nstarttls = false\n'
            + 'from = "Bank <collect@example.cn>"\n',
            encoding="utf-8",
        )
        for workers in (1, 2, 4):
            _load(url, messages)
            app = bootstrap(url, config)
            done = dispatching.dispatch(app, workers=workers, once=True, now=NOW, config_path=config)
            seconds = done["pass_ms"] / 1000  # from the workers' first claim to their last record
            app.engine.dispose()
            assert done["sent"] == args.messages, done
            result[f"load_{workers}_workers"] = round(os.getloadavg()[0], 2)
            # The limit measured just before and just after this run: the load of a shared machine drifts.
            limits.append(_bare_loop(port, messages))
            limit = (limits[-2] + limits[-1]) / 2
            result[f"dispatch_smtp_{workers}_workers_per_s"] = round(args.messages / seconds, 1)
            result[f"server_limit_around_{workers}_workers_per_s"] = round(limit, 1)
            result[f"dispatch_smtp_{workers}_workers_vs_limit"] = round(args.messages / seconds / limit, 3)
        result["server_limit_per_s"] = [round(limit, 1) for limit in limits]
        config.unlink()

        for workers in (1, 2):
            _load(url, messages)
            with context.Pool(workers) as pool:
                results = pool.map(_fake_worker, [url] * workers)
            sent = sum(n for n, _ in results)
            seconds = max(t for _, t in results)
            assert sent == args.messages, sent
            result[f"dispatcher_alone_{workers}_workers_per_s"] = round(args.messages / seconds, 1)
    finally:
        server.terminate()
        server.join()
        if created is not None:
            with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as admin:
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(created))
                )
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
