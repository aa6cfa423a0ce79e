"""``duecourse dispatch``, ``duecourse outbox status|show|retry|cancel`` and ``duecourse feedback``.

Parsing and printing only; the work is in ``services/dispatching.py``, ``store/outbox.py`` and
``services/feedback.py``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from duecourse.bootstrap import App

COMMANDS = ("dispatch", "outbox", "feedback", "serve")


def _instant(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO timestamp (2026-03-02T10:00:00+08:00)"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no UTC offset: write it, e.g. 2026-03-02T10:00:00+08:00"
        )
    return value.astimezone(dt.UTC)


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def add_parsers(sub: Any) -> None:
    send = sub.add_parser("dispatch", help="send what the outbox holds (render, re-check, send, record)")
    send.add_argument("--workers", type=_count, default=1, metavar="N", help="processes (PostgreSQL only)")
    send.add_argument("--once", action="store_true", help="send what is due now, then stop")
    send.add_argument("--now", type=_instant, metavar="ISO-TIMESTAMP", help="the clock (tests, replays)")
    send.add_argument("--batch", type=_count, default=100, metavar="N", help="rows claimed at a time")
    send.add_argument("--json", action="store_true")
    send.add_argument(
        "--log",
        type=Path,
        metavar="FILE",
        help="append the JSON log line of every state change to FILE (default: standard error)",
    )
    send.add_argument("--quiet", action="store_true", help="no log lines, only the summary")

    box = sub.add_parser("outbox", help="look at and act on the outbox")
    box_sub = box.add_subparsers(dest="what", required=True, metavar="WHAT")
    status = box_sub.add_parser("status", help="counts by state and channel, the oldest waiting message")
    status.add_argument("--json", action="store_true")
    show = box_sub.add_parser("show", help="one message: its history, and the exact bytes sent")
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true", help="the row and its history as JSON (no bytes)")
    show.add_argument("--out", type=Path, metavar="FILE", help="write the bytes to FILE instead of stdout")
    for name, what in (
        ("retry", "send a failed, bounced or cancelled message again"),
        ("cancel", "cancel a waiting message"),
    ):
        act = box_sub.add_parser(name, help=what)
        act.add_argument("id", type=int)
        act.add_argument("--reason", default="asked on the command line")
        act.add_argument("--now", type=_instant, metavar="ISO-TIMESTAMP")

    fb = sub.add_parser("feedback", help="apply delivery feedback: bounces, SMS receipts, returned letters")
    fb_sub = fb.add_subparsers(dest="what", required=True, metavar="WHAT")
    bounces = fb_sub.add_parser("bounces", help="e-mail delivery status notifications (.eml files)")
    bounces.add_argument("files", type=Path, nargs="+")
    returns = fb_sub.add_parser("returns", help="a CSV of returned letters: reference,returned_on,reason")
    returns.add_argument("file", type=Path)
    receipts = fb_sub.add_parser(
        "receipts", help="SMS delivery receipts from an HTTP gateway: JSON lines as the gateway posted them"
    )
    receipts.add_argument("file", type=Path)
    receipts.add_argument("--id-field", default="id", help="dotted path of the message id (default id)")
    receipts.add_argument("--status-field", default="status", help="dotted path of the status")
    for parser in (bounces, returns, receipts):
        parser.add_argument("--now", type=_instant, metavar="ISO-TIMESTAMP")

    serve = sub.add_parser(
        "serve", help="the HTTP service: opt-out links, an HTTP SMS gateway's receipts and replies"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=_count, default=8080, help="port (default 8080)")


def _now(args: argparse.Namespace) -> dt.datetime:
    given: dt.datetime | None = getattr(args, "now", None)
    return given or dt.datetime.now(dt.UTC)


def handle(args: argparse.Namespace, app: App, config_path: Path | None) -> int:
    if args.command == "dispatch":
        from duecourse.services.dispatching import dispatch

        done = dispatch(
            app,
            workers=args.workers,
            once=args.once,
            now=args.now,
            batch=args.batch,
            config_path=config_path,
            log=None if args.quiet else str(args.log or "-"),
        )
        if args.json:
            print(json.dumps(done))
        else:
            print(
                "dispatch: " + ", ".join(f"{count} {name}" for name, count in done.items() if count)
                or "nothing due"
            )
        return 0
    if args.command == "outbox":
        return _outbox(args, app)
    if args.command == "serve":
        return _serve(args, app)
    return _feedback(args, app)


def _serve(args: argparse.Namespace, app: App) -> int:
    import uvicorn

    from duecourse.api import create_app
    from duecourse.letters.token import SECRET_ENV, portal_secret

    if portal_secret()[1]:
        print(
            f"warning: {SECRET_ENV} is not set: opt-out links are checked against the development secret",
            file=sys.stderr,
        )
    # No access log: its lines hold each request's query, and a gateway may send its token there.
    uvicorn.run(create_app(app), host=args.host, port=args.port, log_level="info", access_log=False)
    return 0


def _outbox(args: argparse.Namespace, app: App) -> int:
    from duecourse.store import outbox as store
    from duecourse.store.tables import OUTBOX_STATES

    if args.what == "status":
        status = store.status(app.engine)
        if args.json:
            print(
                json.dumps(
                    {
                        "counts": [
                            {"state": s, "channel": c, "messages": n}
                            for (s, c), n in sorted(status.counts.items())
                        ],
                        "oldest_waiting": status.oldest_waiting.isoformat()
                        if status.oldest_waiting
                        else None,
                        "oldest_waiting_id": status.oldest_waiting_id,
                        "sms_segments": status.sms_segments,
                    }
                )
            )
            return 0
        channels = sorted({c for _, c in status.counts})
        print(f"{'state':<10}" + "".join(f"{c:>10}" for c in channels))
        for state in OUTBOX_STATES:
            row = [status.counts.get((state, c), 0) for c in channels]
            if any(row):
                print(f"{state:<10}" + "".join(f"{n:>10}" for n in row))
        if status.oldest_waiting is not None:
            print(
                f"oldest waiting: message {status.oldest_waiting_id}, "
                f"scheduled {status.oldest_waiting.isoformat()}"
            )
        else:
            print("nothing waiting")
        if status.sms_segments:
            parts = ", ".join(f"{n:,} {state}" for state, n in sorted(status.sms_segments.items()))
            print(f"SMS segments (what the gateway bills): {parts}")
        return 0
    if args.what == "show":
        message = store.get(app.engine, args.id)
        if message is None:
            print(f"no outbox message {args.id}", file=sys.stderr)
            return 1
        history: list[dict[str, Any]] = store.events(app.engine, args.id)
        if args.json:
            shown: dict[str, Any] = {
                name: getattr(message, name) for name in message.__dataclass_fields__ if name != "content"
            }
            shown["content_bytes"] = len(message.content or b"")
            shown["history"] = history
            print(json.dumps(shown, default=str, ensure_ascii=False, indent=2))
            return 0
        if args.out is not None:
            args.out.write_bytes(message.content or b"")
            print(f"{args.out}: {len(message.content or b'')} bytes of message {args.id} ({message.state})")
            return 0
        print(
            f"message {message.id} {message.channel} {message.kind} "
            f"to {message.recipient or '-'}: {message.state}",
            file=sys.stderr,
        )
        for event in history:
            print(
                f"  {event['at']}  {event['from_state'] or '-':>9} -> "
                f"{event['to_state']:<9} {event['reason']}",
                file=sys.stderr,
            )
        sys.stdout.buffer.write(message.content or b"")
        return 0
    action = store.retry if args.what == "retry" else store.cancel
    try:
        message = action(app.engine, args.id, _now(args), args.reason)
    except store.OutboxError as error:
        print(str(error), file=sys.stderr)
        return 1
    print(f"message {message.id}: {message.state} ({message.reason})")
    return 0


def _receipts(path: Path, id_field: str, status_field: str) -> list[Any]:
    """Every line of the file a receipt, or every bad line reported as FILE:LINE: reason (nothing applied)."""
    from duecourse.channels.sms import parse_http_receipt
    from duecourse.domain.errors import Problem, ProblemsError

    events = []
    problems = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            payload = json.loads(line)
            if not isinstance(payload, dict):
                raise ValueError("a receipt is a JSON object")
            events.append(parse_http_receipt(payload, id_field=id_field, status_field=status_field))
        except ValueError as error:
            problems.append(Problem("feedback.bad_receipt", str(error), f"{path}:{number}"))
    if problems:
        raise ProblemsError(problems)
    return events


def _feedback(args: argparse.Namespace, app: App) -> int:
    from duecourse.domain.errors import Problem, ProblemsError
    from duecourse.services.feedback import apply_feedback

    paths = args.files if args.what == "bounces" else [args.file]
    missing = [Problem("feedback.unreadable", "no such file", str(p)) for p in paths if not p.is_file()]
    if missing:
        raise ProblemsError(missing)
    if args.what == "bounces":
        from duecourse.channels.email import parse_bounce

        events = []
        for path in args.files:
            found = parse_bounce(path.read_bytes())
            if not found:
                print(f"{path}: not a delivery status notification; nothing taken from it")
            events.extend(found)
    elif args.what == "receipts":
        events = _receipts(args.file, args.id_field, args.status_field)
    else:
        from duecourse.channels.post import parse_returns

        events = parse_returns(args.file)
    result = apply_feedback(app, events, _now(args))
    print(
        f"{len(events)} events: {result.delivered} delivered, {result.bounced} bounced, "
        f"{result.noted} noted, "
        f"{result.fallbacks} fallbacks planned, {len(result.unmatched)} unmatched"
    )
    for unmatched in result.unmatched:
        print(f"  unmatched: {unmatched}")
    return 0
