"""``duecourse dispatch``: build the configured channels and run dispatcher workers over the outbox.

PostgreSQL runs several workers, each its own process with its own connection, claiming rows with
``FOR UPDATE SKIP LOCKED``; each holds a session advisory lock on its random worker id for its whole
life, which is how ``store.outbox.recover`` tells a dead worker's rows from a live one's. SQLite runs one
worker, and a lock file beside the database keeps a second dispatcher out.

The clock is a parameter: ``now`` fixes the time of a ``--once`` pass (tests, replays); a continuous
dispatcher given ``now`` counts on from it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import multiprocessing
import os
import queue
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url

from duecourse.bootstrap import App, bootstrap
from duecourse.channels.base import Transport
from duecourse.channels.dispatch import Dispatcher, Summary
from duecourse.config import ChannelSettings
from duecourse.domain.errors import DuecourseError
from duecourse.letters.token import portal_secret
from duecourse.store import outbox as store
from duecourse.store.db import backend_of


class DispatchError(DuecourseError):
    """The dispatcher cannot start: a channel's settings or secret is missing, or another one runs."""


def _secret(settings: ChannelSettings, key: str) -> str:
    name = settings.values.get(key)
    if not name:
        return ""
    value = os.environ.get(str(name))
    if value is None:
        raise DispatchError(
            f"[channels.{settings.channel}] {key} = {name!r}: the environment variable {name} is not set"
        )
    return value


def build_transports(app: App, clock: Callable[[], dt.datetime], base: Path) -> dict[str, Transport]:
    """One transport per configured channel; relative directories are taken from ``base``.

    An SMPP session stores what the SMSC delivers (replies, receipts) in ``inbound`` before it
    acknowledges it (``services/feedback.store_inbound``).
    """
    from duecourse.services.feedback import store_inbound

    def inbound(items: Sequence[Any]) -> None:
        store_inbound(app.engine, items, clock())

    found: dict[str, Transport] = {}
    for name, settings in app.config.channels.items():
        try:
            found["letter" if name == "post" else name] = _transport(settings, clock, base, inbound)
        except ValueError as exc:
            raise DispatchError(f"[channels.{name}]: {exc}") from exc
    return found


def _headers(settings: ChannelSettings) -> dict[str, str]:
    """The HTTP gateway's headers, with ``Authorization: Bearer`` from ``token_env`` when set."""
    headers = {str(k): str(x) for k, x in dict(settings.values.get("headers", {})).items()}
    token = _secret(settings, "token_env")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _transport(
    settings: ChannelSettings,
    clock: Callable[[], dt.datetime],
    base: Path,
    inbound: Callable[[Sequence[Any]], None],
) -> Transport:
    v = settings.values

    def where(key: str) -> Path:
        return base / str(v[key])

    if settings.channel == "email":
        from duecourse.channels import email

        if settings.transport == "files":
            return email.EmailFileTransport(where("dir"))
        return email.SmtpTransport(
            email.EmailSettings(
                host=str(v["host"]),
                port=int(v.get("port", 25)),
                starttls=bool(v.get("starttls")),
                ssl=bool(v.get("ssl", False)),
                user=str(v.get("user", "")),
                password=_secret(settings, "password_env"),
                from_address=str(v["from"]),
                reply_to=str(v.get("reply_to", "")),
                cafile=str(v.get("cafile", "")),
                timeout_seconds=float(v.get("timeout_seconds", 30)),
            )
        )
    if settings.channel == "sms":
        from duecourse.channels import sms

        if settings.transport == "files":
            return sms.SmsFileTransport(where("dir") / "sms.jsonl")
        sms_settings = sms.SmsSettings(
            kind=settings.transport,
            host=str(v.get("host", "")),
            port=int(v.get("port", 2775)),
            system_id=str(v.get("system_id", "")),
            password=_secret(settings, "password_env"),
            system_type=str(v.get("system_type", "")),
            source_addr=str(v.get("source_addr", "")),
            url=str(v.get("url", "")),
            headers=_headers(settings),
            body=dict(v.get("body", {})) or sms.SmsSettings(kind="http", url="http://x").body,
            id_field=str(v.get("id_field", "id")),
            timeout=float(v.get("timeout_seconds", 10)),
        )
        if settings.transport == "smpp":
            return sms.SmppTransport(sms_settings, inbound=inbound)
        return sms.HttpSmsTransport(sms_settings)
    if settings.channel == "push":
        from duecourse.channels import push

        secret = _secret(settings, "secret_env").encode()
        return push.WebhookTransport(
            # The signature's time is the wall clock (the receiver checks its freshness), not the business
            # clock a replay sets with --now.
            push.PushSettings(url=str(v["url"]), secret=secret, timeout=float(v.get("timeout_seconds", 10))),
            lambda: int(time.time()),
        )
    from duecourse.channels import post

    # each batch folder also holds the merged print file with its cover sheet unless print_file = false
    transport = post.PostTransport(post.PrintDrop(where("dir"), print_file=bool(v.get("print_file", True))))
    return transport


@contextlib.contextmanager
def _sqlite_lock(url: str) -> Iterator[None]:
    database = make_url(url).database or "duecourse.db"
    path = Path(f"{database}.dispatch.lock")
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DispatchError(
                f"another dispatcher is running on {database} (SQLite runs one; {path} is locked)"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True, slots=True)
class _Job:
    url: str
    config: Path | None
    base: Path
    once: bool
    now: dt.datetime | None
    batch: int
    poll_seconds: float
    log: str | None


def _clock(now: dt.datetime | None, once: bool) -> Callable[[], dt.datetime]:
    if now is None:
        return lambda: dt.datetime.now(dt.UTC)
    if once:
        return lambda: now
    start = time.monotonic()
    return lambda: now + dt.timedelta(seconds=time.monotonic() - start)


def _work(job: _Job, stop: threading.Event | None = None) -> dict[str, int]:
    """One worker: its own connection, its advisory lock, its transports; returns what it did."""
    from duecourse.channels.compose import LetterComposer

    app = bootstrap(job.url, job.config)
    use_asynchronous_commit(app.engine)
    worker = secrets.randbits(62)
    clock = _clock(job.now, job.once)
    transports = build_transports(app, clock, job.base)
    total = Summary()
    started = time.perf_counter()
    try:
        with contextlib.ExitStack() as closing:
            for transport in transports.values():
                closing.callback(transport.close)
            with app.engine.connect() as holder:
                store.hold_worker_lock(holder, worker)
                _handle_inbound(app, clock)  # what a dispatcher that died stored and did not handle
                dispatcher = Dispatcher(
                    app.engine,
                    transports,
                    LetterComposer(app),
                    clock,
                    worker=worker,
                    batch=job.batch,
                    consent_required=app.config.governor.consent_required,
                )
                while True:
                    # Every pass recovers: a peer that died leaves its rows to whoever runs next.
                    stopping = stop.is_set if stop is not None else None
                    total.add(dispatcher.run_once(recover=True, stop=stopping))
                    close_post(transports, clock, worker)
                    _take_feedback(app, transports, clock)
                    if job.once or (stop is not None and stop.is_set()):
                        break
                    if stop is not None:
                        stop.wait(job.poll_seconds)
                    else:
                        time.sleep(job.poll_seconds)
                _take_feedback(app, transports, clock)  # what arrived since the last pass, before unbinding
    finally:
        app.engine.dispose()
    # How long this worker's passes took (its start-up before them excluded): the throughput measure.
    return {**total.as_dict(), "pass_ms": round(1000 * (time.perf_counter() - started))}


def use_asynchronous_commit(engine: Engine) -> None:
    """On PostgreSQL, make the engine's sessions commit asynchronously (see :func:`_asynchronous_commit`)."""
    if backend_of(engine) == "postgresql":
        event.listen(engine, "connect", _asynchronous_commit)


def _asynchronous_commit(dbapi_connection: Any, _record: Any) -> None:
    """The dispatcher's sessions commit without waiting for the WAL flush (``synchronous_commit = off``).

    What this risks is only a crash of the PostgreSQL server itself in the last fraction of a second:
    a "sent" not yet flushed is lost, the row is found in ``sending`` and sent again under the same
    Message-ID: still at least once, and the receiver can drop the copy. A dispatcher crash loses
    nothing that was committed. In exchange a record costs a round trip, not a disk flush.
    """
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SET synchronous_commit TO off")
    finally:
        cursor.close()
    # The SET opened a transaction: committed, so that it lasts (a rollback would undo it) and the
    # connection is handed out idle (an autocommit one cannot be made from a connection in a transaction).
    dbapi_connection.commit()


def _take_feedback(app: App, transports: dict[str, Transport], clock: Callable[[], dt.datetime]) -> None:
    """SMPP delivery receipts and replies waiting on the session: stored, acknowledged, then handled (the
    receipts applied to the outbox, STOP replies turned into opt-out holds). A broken session is left for
    the next pass (the SMSC keeps what was not acknowledged)."""
    from duecourse.channels import sms
    from duecourse.channels.base import TransientError

    transport = transports.get("sms")
    if isinstance(transport, sms.SmppTransport):
        # The session's receipts go to ``inbound`` (the transport's sink): nothing comes back here.
        with contextlib.suppress(TransientError):
            transport.poll_receipts(0.0)
    _handle_inbound(app, clock)


def _handle_inbound(app: App, clock: Callable[[], dt.datetime]) -> None:
    from duecourse.services.feedback import handle_inbound

    done = handle_inbound(app, clock())
    if done.handled:
        logging.getLogger("duecourse.outbox").info(
            json.dumps(
                {
                    "event": "inbound.handled",
                    "rows": done.handled,
                    "opt_out_holds": done.opt_out_holds,
                    "delivered": done.feedback.delivered,
                    "bounced": done.feedback.bounced,
                    "waiting": done.waiting,
                }
            )
        )


def close_post(transports: dict[str, Transport], clock: Callable[[], dt.datetime], worker: int = 0) -> None:
    """Close the print batch of what is staged, named by the time and the worker.

    Several workers share the drop folder: a lock file makes staging and closing one at a time (the drop
    itself is safe against a crash, not against a second process). A drop that cannot be closed is
    logged and left staged for the next pass; it does not stop the other channels.
    """
    from duecourse.channels import post

    transport = transports.get("letter")
    if not isinstance(transport, post.PostTransport):
        return
    directory = transport.drop.directory
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if transport.drop.pending():
                closed = transport.drop.close_batch(f"{clock():%Y%m%dT%H%M%S}-{worker % 1_000_000:06d}")
                if closed.note:
                    logging.getLogger("duecourse.outbox").warning(
                        json.dumps(
                            {"event": "post.print_file", "batch": closed.batch_id, "note": closed.note},
                            ensure_ascii=False,
                        )
                    )
        except post.DropError as error:
            logging.getLogger("duecourse.outbox").error(
                json.dumps({"event": "post.drop", "error": str(error)}, ensure_ascii=False)
            )
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def configure_log(where: str | None) -> None:
    """Write the outbox's JSON log lines (one per state change) to a file, or ``-`` for standard error;
    ``None``: none."""
    logger = logging.getLogger("duecourse.outbox")
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    logger.propagate = False
    if where is None:
        logger.setLevel(logging.WARNING)
        return
    handler = (
        logging.StreamHandler(sys.stderr) if where == "-" else logging.FileHandler(where, encoding="utf-8")
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


# How often a worker process looks for its parent, and how long an orphan may take to stop on its own
# before it exits at once (a server that does not answer would otherwise hold it for its timeout).
PARENT_CHECK_SECONDS = 0.25
ORPHAN_GRACE_SECONDS = 2.0


def _work_in_child(job: _Job, results: Any, parent: int) -> None:
    """A worker process: SIGTERM asks it to finish the message in flight and stop; its summary goes on
    ``results``. A worker whose parent (the process ``parent``) died, by SIGKILL or a crash, stops the
    same way (:func:`_watch_parent`)."""
    configure_log(job.log)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    watch = threading.Thread(target=_watch_parent, args=(parent, stop), name="watch-parent", daemon=True)
    watch.start()
    summary = _work(job, stop)
    if os.getppid() != parent:
        results.cancel_join_thread()  # nobody will read it: exit without waiting for the pipe
    results.put(summary)


def _watch_parent(parent: int, stop: threading.Event) -> None:
    """Stop the worker when its parent is gone (it was re-parented), and end it if it has not stopped
    within :data:`ORPHAN_GRACE_SECONDS`.

    Stopping puts the claimed messages not yet tried back and records the one accepted last, so an
    orphan leaves nothing in ``sending``; one ended at once leaves its claimed rows in ``sending``, and
    its advisory lock ends with its connection, so the next dispatcher recovers them (the message in
    flight, if the channel accepted it, goes again under the same Message-ID).
    """
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    logging.getLogger("duecourse.outbox").warning(
        json.dumps({"event": "dispatch.orphaned", "pid": os.getpid(), "parent": parent})
    )
    stop.set()
    time.sleep(ORPHAN_GRACE_SECONDS)
    os._exit(3)


def dispatch(
    app: App,
    *,
    workers: int = 1,
    once: bool = False,
    now: dt.datetime | None = None,
    batch: int = 100,
    poll_seconds: float = 1.0,
    config_path: Path | None = None,
    base: Path | None = None,
    log: str | None = None,
) -> dict[str, int]:
    """Run the dispatcher (``workers`` processes on PostgreSQL, one on SQLite); what it did, summed.

    ``log``: where the JSON lines of the state changes go (a file, ``-`` for standard error, None: none).
    """
    if not app.config.channels:
        raise DispatchError("no [channels.*] table in the configuration: nothing can be sent")
    real = sorted(name for name, c in app.config.channels.items() if c.transport != "files")
    if real and portal_secret()[1]:
        raise DispatchError(
            f"DUECOURSE_PORTAL_SECRET is not set: the links and opt-out tokens in messages sent by "
            f"{', '.join(real)} would be signed with the public development secret; set it to a long "
            "random value first"
        )
    job = _Job(app.url, config_path, base or Path.cwd(), once, now, batch, poll_seconds, log)
    configure_log(log)
    try:
        if backend_of(app.engine) == "sqlite":
            if workers != 1:
                raise DispatchError(
                    "SQLite runs one dispatcher worker; use PostgreSQL for several (--workers 1)"
                )
            with _sqlite_lock(app.url):
                return _work(job)
        if workers == 1:
            return _work(job)
        return _in_processes(job, workers)
    finally:
        configure_log(None)


def _in_processes(job: _Job, workers: int) -> dict[str, int]:
    # Processes of our own rather than a Pool: a Pool waits for ever for the result of a worker that died;
    # here a dead worker is reported with its exit code (its rows are recovered by the next dispatcher).
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    me = os.getpid()
    children = [context.Process(target=_work_in_child, args=(job, results, me)) for _ in range(workers)]
    for child in children:
        child.start()
    total: dict[str, int] = {}
    try:
        collected = 0
        while collected < workers:
            try:
                result = results.get(timeout=1.0)
            except queue.Empty:
                dead = [c for c in children if c.exitcode not in (None, 0)]
                if dead:
                    codes = ", ".join(f"pid {c.pid}: exit {c.exitcode}" for c in dead)
                    raise DispatchError(f"a dispatcher worker stopped abnormally ({codes})") from None
                continue
            collected += 1
            for key, value in result.items():
                # The workers run side by side: their time is the longest one's, their counts add up.
                total[key] = max(total.get(key, 0), value) if key == "pass_ms" else total.get(key, 0) + value
    finally:
        for child in children:
            if child.is_alive():
                child.terminate()
            child.join()
    return total
