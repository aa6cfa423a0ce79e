"""The ``duecourse`` command: parse, call a service, print. No rules and no tables here."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from duecourse.domain.errors import DuecourseError, Problem, ProblemsError

if TYPE_CHECKING:
    from duecourse.bootstrap import App

DEFAULT_CONFIG = Path("duecourse.toml")


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="duecourse", description="Collections: delinquency, stages and the daily run over a portfolio."
    )
    parser.add_argument(
        "--db",
        metavar="URL",
        help="database URL (default $DUECOURSE_DATABASE_URL or sqlite:///./duecourse.db)",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        type=Path,
        help="configuration file (default ./duecourse.toml, else the shipped default)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("init", help="create or migrate the database")

    imp = sub.add_parser(
        "import",
        help=(
            "import customers, accounts, dues, payments, account attributes, consents, contacts or holds "
            "(.csv or .parquet)"
        ),
    )
    imp.add_argument(
        "kind",
        choices=["customers", "accounts", "dues", "payments", "attributes", "consents", "contacts", "holds"],
    )
    imp.add_argument("file", type=Path)
    imp.add_argument("--json", action="store_true", help="print the result or the problems as JSON")

    run = sub.add_parser("run", help="the daily run as of a date (idempotent)")
    run.add_argument("--as-of", required=True, type=_date, metavar="YYYY-MM-DD")
    run.add_argument("--json", action="store_true")

    exp = sub.add_parser("export", help="export data")
    exp_sub = exp.add_subparsers(dest="what", required=True, metavar="WHAT")
    st = exp_sub.add_parser("state", help="one row per account as of a date")
    st.add_argument("--as-of", required=True, type=_date, metavar="YYYY-MM-DD")
    st.add_argument("--out", required=True, type=Path, metavar="FILE.csv")
    for what, about in (
        ("decisions", "the governor's decision on every planned contact, one row each"),
        ("communications", "the outbox: one row per message planned in the days"),
        ("tasks", "escalation tasks (agency placement, charge-off review, ...) planned in the days"),
    ):
        ed = exp_sub.add_parser(what, help=about)
        ed.add_argument("--from", dest="first", required=True, type=_date, metavar="YYYY-MM-DD")
        ed.add_argument("--to", dest="last", required=True, type=_date, metavar="YYYY-MM-DD")
        ed.add_argument("--out", required=True, type=Path, metavar="FILE.csv")
    pf = exp_sub.add_parser(
        "portfolio", help="accounts, dues and payments as Parquet, the input of spark-run"
    )
    pf.add_argument("--out", required=True, type=Path, metavar="DIR")
    pf.add_argument("--as-of", type=_date, metavar="YYYY-MM-DD", help="also write the holds of this date")

    sr = sub.add_parser("spark-run", help="the snapshots of a date on Apache Spark, Parquet in and out")
    sr.add_argument("--as-of", required=True, type=_date, metavar="YYYY-MM-DD")
    sr.add_argument(
        "--input",
        required=True,
        metavar="DIR",
        help="a folder with accounts/, dues/, payments/ (and on_hold/ or holds.parquet)",
    )
    sr.add_argument("--out", required=True, metavar="DIR", help="snapshots go to DIR/as_of=YYYY-MM-DD/")
    sr.add_argument("--master", metavar="URL", help="Spark master (default: spark-submit's, else local[2])")
    sr.add_argument(
        "--partitions", type=_positive, metavar="N", help="hash partitions (default: Spark's parallelism)"
    )
    sr.add_argument("--json", action="store_true")

    ex = sub.add_parser("explain", help="why an account is where it is")
    ex.add_argument("account_id")
    ex.add_argument("--as-of", required=True, type=_date, metavar="YYYY-MM-DD")
    ex.add_argument("--json", action="store_true")

    demo = sub.add_parser("demo", help="simulate a synthetic portfolio day by day and report")
    demo.add_argument(
        "--accounts", type=_positive, default=20_000, metavar="N", help="number of customers (default 20000)"
    )
    demo.add_argument(
        "--days", type=_positive, default=120, metavar="N", help="days to simulate (default 120)"
    )
    demo.add_argument("--seed", type=int, default=7, metavar="N")
    demo.add_argument("--out", type=Path, default=Path("out"), metavar="DIR")
    demo.add_argument("--start", type=_date, default=dt.date(2026, 6, 1), metavar="YYYY-MM-DD")

    cfg = sub.add_parser("config", help="configuration")
    cfg_sub = cfg.add_subparsers(dest="what", required=True, metavar="WHAT")
    chk = cfg_sub.add_parser("check", help="validate the configuration and report every problem")
    chk.add_argument("--json", action="store_true")
    cfg_sub.add_parser("example", help="print a complete, commented duecourse.toml")

    pol = sub.add_parser("policy", help="the strategy against the rule packs")
    pol_sub = pol.add_subparsers(dest="what", required=True, metavar="WHAT")
    pck = pol_sub.add_parser(
        "check", help="what the strategy would do per jurisdiction: kinds not used, words missing, hours"
    )
    pck.add_argument("--json", action="store_true")
    psim = pol_sub.add_parser(
        "simulate",
        help="replay the portfolio with a strategy: messages by day and channel, rules, costs, peak load "
        "(sends and stores nothing)",
    )
    psim.add_argument("--from", dest="first", required=True, type=_date, metavar="YYYY-MM-DD")
    psim.add_argument("--to", dest="last", required=True, type=_date, metavar="YYYY-MM-DD")
    psim.add_argument(
        "--strategy",
        type=Path,
        metavar="FILE",
        help="a whole duecourse.toml to simulate (default: the configuration in use)",
    )
    psim.add_argument("--json", action="store_true")

    from duecourse import cli_channels, cli_letters

    cli_letters.add_parsers(sub)
    cli_channels.add_parsers(sub)
    return parser


def _config_path(args: argparse.Namespace) -> Path | None:
    if args.config is not None:
        if not args.config.exists():
            raise ProblemsError(
                [Problem("config.missing", f"configuration file {args.config} does not exist")]
            )
        return Path(args.config)
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def _print_problems(problems: Sequence[Problem], as_json: bool) -> None:
    if as_json:
        print(
            json.dumps(
                {"ok": False, "problems": [p.as_dict() for p in problems]}, ensure_ascii=False, indent=2
            )
        )
    else:
        for p in problems:
            print(str(p), file=sys.stderr)
        print(
            f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found; nothing was changed.",
            file=sys.stderr,
        )


def _policy_check(args: argparse.Namespace) -> int:
    """``policy check``: the configuration's problems first (as ``config check``), then the findings;
    exit 1 when any is an error."""
    from duecourse.config import load_config
    from duecourse.services.policy import check_policy

    path = _config_path(args)
    config = load_config(path)
    findings = check_policy(config)
    errors = sum(f.severity == "error" for f in findings)
    where = str(path) if path else "the shipped default configuration"
    if args.json:
        rows = [{"severity": f.severity, "code": f.code, "message": f.message} for f in findings]
        print(json.dumps({"ok": not errors, "file": where, "findings": rows}, ensure_ascii=False, indent=2))
    else:
        for finding in findings:
            print(finding.line())
        warnings = sum(f.severity == "warning" for f in findings)
        print(f"{where}: {errors} error(s), {warnings} warning(s)")
    return 1 if errors else 0


def _policy_simulate(args: argparse.Namespace) -> int:
    """``policy simulate``: the range and the strategy file checked together (every problem at once), then
    the simulation over the stored portfolio, as a report or JSON."""
    from duecourse.bootstrap import bootstrap
    from duecourse.config import Config, load_config
    from duecourse.services.simulate import check_range, simulate, simulation_data, simulation_text

    problems = check_range(args.first, args.last)
    proposed: Config | None = None
    if args.strategy is not None:
        if not args.strategy.is_file():
            message = "no such strategy file (a whole duecourse.toml)"
            problems.append(Problem("simulate.missing_strategy", message, str(args.strategy)))
        else:
            try:
                proposed = load_config(args.strategy)
            except ProblemsError as exc:
                problems += exc.problems
    if problems:
        raise ProblemsError(problems)
    app = bootstrap(args.db, _config_path(args))
    try:
        result = simulate(app, args.first, args.last, proposed)
    finally:
        app.engine.dispose()
    if args.json:
        print(json.dumps(simulation_data(result), ensure_ascii=False, indent=2))
    else:
        sys.stdout.write(simulation_text(result))
    return 0


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "config":
        from duecourse.config import check_config, default_config_text

        if args.what == "example":
            sys.stdout.write(default_config_text())
            return 0
        path = _config_path(args)
        problems = check_config(path)
        if problems:
            _print_problems(problems, args.json)
            return 1
        where = str(path) if path else "the shipped default configuration"
        print(json.dumps({"ok": True, "file": where}) if args.json else f"{where}: OK")
        return 0

    if args.command == "policy" and args.what == "simulate":
        return _policy_simulate(args)
    if args.command == "policy":
        return _policy_check(args)

    if args.command == "spark-run":
        return _spark_run(args)

    from duecourse.bootstrap import bootstrap

    app = bootstrap(args.db, _config_path(args))
    try:
        return _with_app(app, args)
    finally:
        app.engine.dispose()


def _spark_run(args: argparse.Namespace) -> int:
    from duecourse.config import load_config
    from duecourse.services.spark_run import run_parquet

    config = load_config(_config_path(args))
    r = run_parquet(config, args.as_of, args.input, args.out, args.master, args.partitions)
    if args.json:
        print(
            json.dumps(
                {
                    "as_of": r.as_of.isoformat(),
                    "rows": r.rows,
                    "snapshots": r.snapshots,
                    "partitions": r.partitions,
                    "out": r.out,
                    "stages": r.stages,
                    "seconds": r.seconds,
                }
            )
        )
    else:
        read = ", ".join(f"{count} {name}" for name, count in r.rows.items())
        timing = ", ".join(f"{k} {v:.2f}s" for k, v in r.seconds.items())
        print(f"spark-run {r.as_of}: {read} in {r.partitions} partitions ({timing})")
        print(f"{r.out}: {r.snapshots} snapshots")
        for stage, count in r.stages.items():
            print(f"  {stage:<20} {count:>10}")
    return 0


def portfolio_init(app: App) -> None:
    from duecourse.services import portfolio

    portfolio.init_database(app)


def _import_records(app: App, args: argparse.Namespace) -> None:
    """The imports of records checked row by row (contacts, holds, consents, attributes), and their
    result: a line of text, or JSON (``--json``)."""
    now = dt.datetime.now(dt.UTC)
    counts: dict[str, int]
    if args.kind == "contacts":
        from duecourse.services.third_parties import import_contacts

        contacts = import_contacts(app, args.file, now)
        file, counts = contacts.file, {"added": contacts.added, "unchanged": contacts.unchanged}
        text = f"{file}: {contacts.added} contacts added, {contacts.unchanged} already there"
    elif args.kind == "holds":
        from duecourse.services.holds import import_holds

        holds = import_holds(app, args.file, now)
        file, counts = holds.file, {"added": holds.added, "ended": holds.ended, "unchanged": holds.unchanged}
        text = f"{file}: {holds.added} holds added, {holds.ended} with a new end, "
        text += f"{holds.unchanged} already there"
    elif args.kind == "consents":
        from duecourse.services.consent import import_consents

        consents = import_consents(app, args.file, now)
        file, counts = consents.file, {"added": consents.added, "unchanged": consents.unchanged}
        text = f"{file}: {consents.added} consent records added, {consents.unchanged} already there"
    else:
        from duecourse.services.attributes import import_attributes

        values = import_attributes(app, args.file, now)
        file, counts = values.file, {"added": values.added, "unchanged": values.unchanged}
        text = f"{file}: {values.added} attribute values added, {values.unchanged} already there"
    if args.json:
        rows = {f"rows_{name}": count for name, count in counts.items()}
        print(json.dumps({"ok": True, "kind": args.kind, "file": file, **rows}))
    else:
        print(text)


def _with_app(app: App, args: argparse.Namespace) -> int:
    from duecourse import cli_channels, cli_letters

    if args.command in cli_letters.COMMANDS:
        return cli_letters.handle(args, app)
    if args.command in cli_channels.COMMANDS:
        portfolio_init(app)
        return cli_channels.handle(args, app, _config_path(args))
    if args.command == "demo":
        from duecourse.services.demo import run_demo

        run_demo(app, customers=args.accounts, days=args.days, seed=args.seed, out=args.out, start=args.start)
        return 0

    from duecourse.services import portfolio

    if args.command == "init":
        revision = portfolio.init_database(app)
        print(f"database ready at revision {revision}")
        return 0
    portfolio.init_database(app)
    if args.command == "import" and args.kind in ("contacts", "holds", "consents", "attributes"):
        _import_records(app, args)
        return 0
    if args.command == "import":
        result = portfolio.import_file(app, args.kind, args.file)
        if args.json:
            print(
                json.dumps(
                    {
                        "ok": True,
                        "kind": result.kind,
                        "file": result.file,
                        "rows_added": result.rows_added,
                        "rows_unchanged": result.rows_unchanged,
                    }
                )
            )
        else:
            print(
                f"{result.file}: {result.rows_added} {result.kind} added, "
                f"{result.rows_unchanged} already there"
            )
        return 0
    if args.command == "run":
        from duecourse.services.contacts import plan_contacts

        r = portfolio.run_day(app, args.as_of)
        contacts = plan_contacts(app, args.as_of, dt.datetime.now(dt.UTC))
        if args.json:
            print(
                json.dumps(
                    {
                        "as_of": r.as_of.isoformat(),
                        "accounts": r.accounts,
                        "seconds": r.seconds,
                        "stages": r.stages,
                        "stage_changes": r.stage_changes,
                        "messages_planned": contacts.added,
                        "messages_already_planned": contacts.already,
                        "verdicts": contacts.verdicts,
                        "not_planned_by_rule": contacts.by_rule,
                    }
                )
            )
        else:
            timing = ", ".join(f"{k} {v:.2f}s" for k, v in r.seconds.items())
            print(f"run {r.as_of}: {r.accounts} accounts ({timing}); {r.stage_changes} stage changes")
            for stage, count in r.stages.items():
                print(f"  {stage:<20} {count:>10}")
            if contacts.added or contacts.already:
                channels = ", ".join(f"{n} {c}" for c, n in sorted(contacts.by_channel.items()))
                print(
                    f"outbox: {contacts.added} messages planned, "
                    f"{contacts.already} already planned ({channels})"
                )
            if contacts.verdicts:
                verdicts = ", ".join(f"{n} {v}" for v, n in sorted(contacts.verdicts.items()))
                print(f"governor: {verdicts}")
                for rule, count in sorted(contacts.by_rule.items()):
                    print(f"  {rule:<24} {count:>10}")
        return 0
    if args.command == "export" and args.what == "portfolio":
        from duecourse.services.spark_run import export_portfolio

        written = export_portfolio(app, args.out, args.as_of)
        print(f"{args.out}: " + ", ".join(f"{count} {name}" for name, count in written.items()))
        return 0
    if args.command == "export" and args.what in ("decisions", "communications", "tasks"):
        from duecourse.services import contacts as contact_plans
        from duecourse.services import tasks

        if args.what == "decisions":
            rows = contact_plans.export_decisions(app, args.first, args.last, args.out)
        elif args.what == "tasks":
            contact_plans.check_range(args.first, args.last)
            rows = tasks.export_tasks(app.engine, args.first, args.last, args.out)
        else:
            rows = contact_plans.export_communications(app, args.first, args.last, args.out)
        print(f"{args.out}: {rows} {args.what} from {args.first} to {args.last}")
        return 0
    if args.command == "export":
        rows = portfolio.export_state(app, args.as_of, args.out)
        print(f"{args.out}: {rows} accounts as of {args.as_of}")
        return 0
    if args.command == "explain":
        e = portfolio.explain_account(app, args.account_id, args.as_of)
        if args.json:
            print(json.dumps(e.data, ensure_ascii=False, indent=2))
        else:
            sys.stdout.write(e.text)
        return 0
    raise AssertionError(f"unhandled command {args.command}")  # argparse only lets known commands through


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ProblemsError as exc:
        _print_problems(exc.problems, bool(getattr(args, "json", False)))
        return 1
    except DuecourseError as exc:
        print(f"duecourse: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
