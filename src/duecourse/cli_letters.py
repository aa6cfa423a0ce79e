"""``duecourse letter render``, ``duecourse letters lint`` and ``duecourse letters batch``.

Parsing and printing only; the work is in ``services/letters.py`` and ``letters/lint.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from duecourse.letters.kinds import KINDS, LOCALE_OF

if TYPE_CHECKING:
    from duecourse.bootstrap import App
    from duecourse.letters.data import LetterInputs

COMMANDS = ("letter", "letters")
INPUT_KEYS = (
    "plan_id",
    "plan_rows",
    "promise_amount",
    "promise_date",
    "dispute_id",
    "dispute_received",
    "dispute_subject",
    "dispute_outcome",
    "dispute_reason",
)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or key not in INPUT_KEYS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected KEY=VALUE with KEY one of {', '.join(INPUT_KEYS)}"
        )
    return key, value


def add_parsers(sub: Any) -> None:
    """Add ``letter`` and ``letters`` to the ``duecourse`` subcommands."""
    one = sub.add_parser("letter", help="one letter for one account")
    one_sub = one.add_subparsers(dest="what", required=True, metavar="WHAT")
    render = one_sub.add_parser("render", help="render a letter to PDF (and store it)")
    render.add_argument("--account", required=True, metavar="ID")
    render.add_argument("--kind", required=True, choices=list(KINDS), metavar="KIND", help=", ".join(KINDS))
    render.add_argument("--locale", choices=list(LOCALE_OF.values()), help="default: the customer's")
    render.add_argument("--as-of", type=_date, metavar="YYYY-MM-DD", help="the letter date (default today)")
    render.add_argument("-o", "--out", required=True, type=Path, metavar="FILE.pdf")
    render.add_argument(
        "--input",
        action="append",
        type=_pair,
        default=[],
        metavar="KEY=VALUE",
        help="inputs some kinds need: plan_id, plan_rows (2026-01-10=500.00,2026-02-10=500.00), "
        "promise_amount, promise_date, dispute_id, dispute_received, dispute_subject, "
        "dispute_outcome (upheld, rejected, corrected), dispute_reason",
    )
    render.add_argument(
        "--templates", type=Path, metavar="DIR", help="templates to use before the shipped ones"
    )
    render.add_argument("--json", action="store_true", help="print the letter's data and hash as JSON")

    many = sub.add_parser("letters", help="check templates, make print batches")
    many_sub = many.add_subparsers(dest="what", required=True, metavar="WHAT")
    lint = many_sub.add_parser("lint", help="render every template with sample accounts and check it")
    lint.add_argument("--kind", action="append", choices=list(KINDS), metavar="KIND")
    lint.add_argument("--locale", action="append", choices=list(LOCALE_OF.values()))
    lint.add_argument("--templates", type=Path, metavar="DIR", help="a directory of new or changed templates")
    lint.add_argument("--json", action="store_true")
    batch = many_sub.add_parser("batch", help="the print batch of a date: merged PDF, manifest, cover sheet")
    batch.add_argument("--date", required=True, type=_date, metavar="YYYY-MM-DD")
    batch.add_argument("--out", required=True, type=Path, metavar="DIR")
    batch.add_argument("--workers", type=int, metavar="N", help="processes to render with (default: cores)")


def inputs_from(pairs: list[tuple[str, str]]) -> LetterInputs:
    """The explicit letter inputs from KEY=VALUE pairs."""
    from duecourse.domain.errors import Problem, ProblemsError
    from duecourse.letters.data import LetterInputs, PlanRow

    values = dict(pairs)
    problems: list[Problem] = []

    def amount(key: str, text: str) -> Decimal | None:
        try:
            value = Decimal(text)
        except InvalidOperation:
            problems.append(Problem("letter.input", f"{key}: {text!r} is not an amount like 150.00", key))
            return None
        return value

    def day(key: str, text: str) -> dt.date | None:
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            problems.append(Problem("letter.input", f"{key}: {text!r} is not a date (YYYY-MM-DD)", key))
            return None

    rows: list[PlanRow] = []
    for item in filter(None, values.get("plan_rows", "").split(",")):
        when, _, much = item.partition("=")
        row_day, row_amount = day("plan_rows", when.strip()), amount("plan_rows", much.strip())
        if row_day is not None and row_amount is not None:
            rows.append(PlanRow(row_day, row_amount))
    result = LetterInputs(
        plan_id=values.get("plan_id", ""),
        plan_rows=tuple(rows),
        promise_amount=amount("promise_amount", values["promise_amount"])
        if "promise_amount" in values
        else None,
        promise_date=day("promise_date", values["promise_date"]) if "promise_date" in values else None,
        dispute_id=values.get("dispute_id", ""),
        dispute_received=day("dispute_received", values["dispute_received"])
        if "dispute_received" in values
        else None,
        dispute_subject=values.get("dispute_subject", ""),
        dispute_outcome=values.get("dispute_outcome", ""),
        dispute_reason=values.get("dispute_reason", ""),
    )
    if problems:
        raise ProblemsError(problems)
    return result


def handle(args: argparse.Namespace, app: App) -> int:
    """Run ``letter ...`` or ``letters ...``; the exit status."""
    from duecourse.services import letters as svc
    from duecourse.services import portfolio

    if args.command == "letters" and args.what == "lint":
        return _lint(args, app)  # templates and configuration only: no database needed
    portfolio.init_database(app)
    if args.command == "letter":
        as_of = args.as_of or dt.date.today()
        result = svc.render_letter(
            app,
            args.account,
            args.kind,
            as_of,
            locale=args.locale,
            inputs=inputs_from(args.input),
            templates=args.templates,
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(result.stored.pdf)
        if result.dev_secret:
            print(
                "duecourse: warning: the portal link is signed with the development secret; "
                "set DUECOURSE_PORTAL_SECRET before posting letters",
                file=sys.stderr,
            )
        s = result.stored
        if args.json:
            print(
                json.dumps(
                    {
                        "ok": True,
                        "file": str(args.out),
                        "sha256": s.sha256,
                        "pages": s.pages,
                        "template_version": s.template_version,
                        "stored": result.added,
                        "data": result.data,
                    },
                    ensure_ascii=False,
                    indent=2,
                )
            )
        else:
            state = "stored" if result.added else "already stored"
            print(
                f"{args.out}: {s.kind} {s.locale} for {s.account_id} as of {s.letter_date}, {s.pages} pages, "
                f"sha256 {s.sha256[:16]}… ({state})"
            )
        return 0
    batch = svc.letters_batch(app, args.date, args.out, workers=args.workers)
    state = "made" if batch.new else "already made; written again"
    print(f"batch {batch.batch_date} ({state}): {batch.letters} letters, {batch.pages} pages")
    print(f"  {batch.pdf_path}\n  {batch.manifest_path}")
    for what, count in batch.by_kind.items():
        print(f"  {what:<32} {count:>8}")
    if batch.note:
        print(f"warning: {batch.note}", file=sys.stderr)
    return 0


def _lint(args: argparse.Namespace, app: App) -> int:
    from duecourse.letters.lint import lint
    from duecourse.letters.render import load_templates

    templates = load_templates(args.templates, strict=False)
    findings = lint(templates, app.config, args.kind, args.locale)
    if args.json:
        payload = {"ok": not findings, "findings": [dataclasses.asdict(f) for f in findings]}
        print(json.dumps(payload, ensure_ascii=False, indent=2))
    else:
        for finding in findings:
            print(finding)
        checked = "the templates in " + str(args.templates) if args.templates else "the shipped templates"
        print(f"{len(findings)} finding{'s' if len(findings) != 1 else ''} in {checked}", file=sys.stderr)
    return 1 if findings else 0
