"""``duecourse demo``: a synthetic portfolio run day by day, with the tables a strategist reads."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from duecourse.bootstrap import App
from duecourse.config import ChannelSettings
from duecourse.domain.money import currency_spec
from duecourse.domain.strategy import Action
from duecourse.services import portfolio as svc
from duecourse.services.synth import SynthPortfolio, generate_portfolio, write_csvs
from duecourse.store import repo
from duecourse.store.db import make_engine


def _money(minor: int, currency: str) -> str:
    digits = currency_spec(currency).minor_digits
    return f"{minor / 10**digits:,.{digits}f}" if digits else f"{minor:,}"  # display only, never stored


def _write_payments(payments: pl.DataFrame, path: Path, digits: pl.DataFrame) -> None:
    """A day's payments as the bank would send them: the import format, amounts as decimals."""
    payments.join(digits, on="account_id", how="left").select(
        "payment_id",
        "account_id",
        "paid_on",
        svc.money_text(pl.col("amount_minor"), pl.col("minor_digits")).alias("amount"),
    ).write_csv(path)


def _bucket_order(app: App, names: list[str]) -> list[str]:
    ordered: list[str] = []
    for bucket_set in app.config.terms.bucket_sets.values():
        for name in [bucket_set.current_name, *(b.name for b in bucket_set.buckets)]:
            if name in names and name not in ordered:
                ordered.append(name)
    return ordered + sorted(n for n in names if n not in ordered)


def run_demo(
    app: App, *, customers: int, days: int, seed: int, out: Path, start: dt.date
) -> dict[str, object]:
    """Generate, import, run every day from ``start``, report; deterministic for a seed.

    On SQLite the demo works in a database of its own, ``OUT/demo.db``, made anew each time; on
    PostgreSQL it uses the database given.
    """
    out.mkdir(parents=True, exist_ok=True)
    if not app.url.startswith("sqlite"):
        return _simulate(app, customers=customers, days=days, seed=seed, out=out, start=start)
    db_file = out / "demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_file}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{db_file}"
    demo_app = replace(app, url=url, engine=make_engine(url))
    try:
        return _simulate(demo_app, customers=customers, days=days, seed=seed, out=out, start=start)
    finally:
        demo_app.engine.dispose()


def _simulate(
    app: App, *, customers: int, days: int, seed: int, out: Path, start: dt.date
) -> dict[str, object]:
    console = Console(width=max(120, Console().width))
    end = start + dt.timedelta(days=days - 1)
    console.print(
        f"[bold]duecourse demo[/]: {customers:,} customers, {days} days from {start} to {end}, "
        f"seed {seed}, database {app.url}"
    )

    t0 = time.perf_counter()
    synth = generate_portfolio(customers=customers, start=start, days=days, seed=seed)
    # Payments arrive day by day: the history before the first day is loaded with the portfolio, and each
    # day's payments are imported as that day's file just before its run.
    history = replace(synth, payments=synth.payments.filter(pl.col("paid_on") < start))
    files = write_csvs(history, out / "input")
    svc.init_database(app)
    imported = {kind: svc.import_file(app, kind, files[kind]) for kind in svc.KINDS}
    t_import = time.perf_counter() - t0
    rows = sum(r.rows_added + r.rows_unchanged for r in imported.values())
    console.print(
        f"imported {rows:,} rows from {out / 'input'} in {t_import:.1f}s: "
        + ", ".join(f"{r.rows_added:,} {k}" for k, r in imported.items())
    )

    portfolio = repo.load_portfolio(app.engine)
    digits = svc.account_digits(app)
    app = with_demo_limitations(with_demo_channels(app, out))
    outbox = _DemoOutbox(app, out)
    daily_dir = out / "input" / "daily-payments"
    daily_dir.mkdir(parents=True, exist_ok=True)
    runs: list[svc.RunResult] = []
    arrived = 0
    with Progress(
        TextColumn("daily runs"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("", total=days)
        for offset in range(days):
            as_of = start + dt.timedelta(days=offset)
            todays = synth.payments.filter(pl.col("paid_on") == as_of)
            if todays.height:
                day_file = daily_dir / f"payments-{as_of}.csv"
                _write_payments(todays, day_file, digits)
                arrived += svc.import_file(app, "payments", day_file).rows_added
                portfolio = replace(portfolio, payments=pl.concat([portfolio.payments, todays]))
            result = svc.run_day(app, as_of, portfolio)
            runs.append(result)
            if offset >= days - OUTBOX_DAYS:
                if offset == max(0, days - OUTBOX_DAYS):
                    outbox.not_mine_claims(synth, as_of)
                outbox.day(as_of)
            delinquent = result.accounts - result.stages.get("current", 0)
            progress.update(task, advance=1, description=f"{as_of}: {delinquent:,} in collection")
    console.print(f"{arrived:,} payments arrived during the period, imported day by day")
    outbox.close()

    final = repo.snapshot_for(app.engine, end)
    month_ago = repo.snapshot_for(app.engine, max(start, end - dt.timedelta(days=30)))
    state_file = out / f"state-{end}.csv"
    svc.export_state(app, end, state_file)

    bucket_set_of = {code: p.bucket_set for code, p in app.config.terms.products.items()}
    sets = portfolio.accounts.select(
        "account_id",
        pl.col("product_code").replace_strict(bucket_set_of, return_dtype=pl.String).alias("set"),
    )
    final_b = final.join(sets, on="account_id")
    for set_name in sorted(final_b.get_column("set").unique().to_list()):
        bucket_set = app.config.terms.bucket_sets[set_name]
        names = [bucket_set.current_name, *(b.name for b in bucket_set.buckets)]
        in_set = final_b.filter(pl.col("set") == set_name)
        products = ", ".join(sorted(c for c, s_ in bucket_set_of.items() if s_ == set_name))
        table = Table(title=f"Bucket set {set_name} ({products}): accounts and balances as of {end}")
        table.add_column("bucket")
        table.add_column("accounts", justify="right")
        currencies = sorted(in_set.get_column("currency").unique().to_list())
        for cur in currencies:
            table.add_column(f"past due {cur}", justify="right")
            table.add_column(f"outstanding {cur}", justify="right")
        by_bucket = in_set.group_by("bucket", "currency").agg(
            pl.len().alias("n"), pl.col("amount_past_due_minor").sum(), pl.col("outstanding_minor").sum()
        )
        for bucket in names:
            rows_b = by_bucket.filter(pl.col("bucket") == bucket)
            cells = [bucket, f"{int(rows_b.get_column('n').sum()):,}"]
            for cur in currencies:
                r = rows_b.filter(pl.col("currency") == cur)
                cells += [
                    _money(int(r.get_column("amount_past_due_minor").sum()), cur),
                    _money(int(r.get_column("outstanding_minor").sum()), cur),
                ]
            table.add_row(*cells)
        console.print(table)

        # Roll rates: where the accounts of each bucket 30 days ago are now.
        roll = month_ago.select("account_id", pl.col("bucket").alias("from")).join(
            in_set.select("account_id", pl.col("bucket").alias("to")), on="account_id"
        )
        roll_table = Table(
            title=f"Roll rates in {set_name}: bucket on {month_ago.get_column('as_of')[0]} → "
            f"bucket on {end}, % of the row's accounts"
        )
        roll_table.add_column("from \\ to")
        roll_table.add_column("accounts", justify="right")
        for name in names:
            roll_table.add_column(name, justify="right")
        for b_from in names:
            sub = roll.filter(pl.col("from") == b_from)
            if sub.height == 0:
                continue
            counts = dict(sub.group_by("to").len().iter_rows())
            roll_table.add_row(
                b_from,
                f"{sub.height:,}",
                *[f"{100 * counts[n] / sub.height:.1f}" if counts.get(n) else "·" for n in names],
            )
        console.print(roll_table)

    # Cure rate: of the accounts that were in collection on some day, how many are current at the end.
    ever_ids = repo.accounts_ever_in_collection(app.engine, start, end)
    cured = final.filter(
        pl.col("account_id").is_in(ever_ids.implode()) & (pl.col("stage") == "current")
    ).height
    stage_table = Table(title=f"Collection stages as of {end}")
    stage_table.add_column("stage")
    stage_table.add_column("accounts", justify="right")
    stage_table.add_column("share", justify="right")
    stage_counts = dict(final.group_by("stage").len().iter_rows())
    stage_names = ["current", *(s.name for s in app.config.terms.all_stages())]
    for name in stage_names:
        n = stage_counts.get(name, 0)
        stage_table.add_row(name, f"{n:,}", f"{100 * n / max(1, final.height):.1f}%")
    console.print(stage_table)

    behaviours = synth.behaviours.join(final.select("account_id", "stage", "days_past_due"), on="account_id")
    beh_table = Table(title="Behaviours at the end (synthetic truth vs what the engine sees)")
    for col in ("behaviour", "accounts", "in collection", "avg days past due"):
        beh_table.add_column(col, justify="left" if col == "behaviour" else "right")
    for row in (
        behaviours.group_by("behaviour")
        .agg(
            pl.len().alias("n"),
            (pl.col("stage") != "current").sum().alias("late"),
            pl.col("days_past_due").mean().alias("dpd"),
        )
        .sort("behaviour")
        .iter_rows(named=True)
    ):
        beh_table.add_row(row["behaviour"], f"{row['n']:,}", f"{row['late']:,}", f"{row['dpd']:.1f}")
    console.print(beh_table)

    run_seconds = sum(sum(r.seconds.values()) for r in runs)
    ever = int(ever_ids.len())
    cure_rate = cured / max(1, ever)
    summary: dict[str, object] = {
        "customers": customers,
        "accounts": final.height,
        "days": days,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "import_seconds": round(t_import, 2),
        "run_seconds_total": round(run_seconds, 2),
        "ever_in_collection": int(ever_ids.len()),
        "cured": cured,
        "cure_rate": round(cure_rate, 4),
        "stages": {k: int(v) for k, v in stage_counts.items()},
        "state_export": str(state_file),
    }
    console.print(
        f"Cure rate: {cured:,} of {int(ever_ids.len()):,} accounts that were in collection during the "
        f"period are current on {end} ({100 * cure_rate:.1f}%)"
    )
    console.print(f"{days} daily runs in {run_seconds:.1f}s; state export written to {state_file}")
    summary["messages"] = outbox.report(console)
    _letters(app, console, end, out, summary)
    (out / "demo-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _letters(app: App, console: Console, end: dt.date, out: Path, summary: dict[str, object]) -> None:
    """Sample letters of every kind and locale under OUT/letters, and the print batches: those of the
    outbox's print drop under OUT/print when the strategy posts reminders (the demo's does), else the
    stage-entry batch of the last day under OUT/letters/batch."""
    from duecourse.services import letters

    t0 = time.perf_counter()
    written = letters.sample_letters(app, end, out / "letters")
    if letters.strategy_prints_reminders(app.config):
        folders, count, pages = _print_drop(out / "print")
        where = f"{folders} print batches in {out / 'print'}, each with print.pdf and manifest.csv"
    else:
        day = letters.last_letter_day(app, end) or end
        batch = letters.letters_batch(app, day, out / "letters" / "batch")
        count, pages, folders = batch.letters, batch.pages, 1
        where = f"print batch {batch.pdf_path}, manifest {batch.manifest_path.name}"
    seconds = time.perf_counter() - t0
    console.print(
        f"{len(written)} sample letters in {out / 'letters'}; {where}: {count:,} letters, {pages:,} pages "
        f"({seconds:.1f}s)"
    )
    summary["letters"] = {
        "samples": len(written),
        "print_batches": folders,
        "batch_letters": count,
        "batch_pages": pages,
    }


def _print_drop(directory: Path) -> tuple[int, int, int]:
    """The batch folders the print drop closed (READY), their letters and pages (from their manifests)."""
    from duecourse.channels.post import PrintDrop

    batches = PrintDrop(directory).closed()
    entries = [entry for _, batch in batches for entry in batch]
    return len(batches), len(entries), sum(entry.pages or 0 for entry in entries)


# ------------------------------------------------------------------------------------------------ outbox

# The last days of the demo go through the outbox: every letter and e-mail is a rendered PDF (about 15 ms
# each), so all 120 days would add minutes; two weeks show the whole path.
OUTBOX_DAYS = 14

# The demo's strategy when the configuration has none: a text on entering M1, an e-mail (the letter
# attached) a week later, falling back to a letter; a letter on entering M2, a final demand on entering
# M3, and placement with an agency on entering M4+ (an escalation task: it waits for the final demand and
# its deadline where the law wants the customer told first).
DEMO_ACTIONS = (
    Action(stage="M1", name="sms", channel="sms", kind="overdue_reminder", at=dt.time(10, 0)),
    Action(
        stage="M1",
        name="email",
        channel="email",
        kind="overdue_reminder",
        offset_days=7,
        at=dt.time(10, 0),
        fallback=("letter",),
    ),
    Action(stage="M2", name="letter", channel="letter", kind="overdue_reminder"),
    Action(stage="M3", name="final", channel="letter", kind="final_demand"),
    Action(stage="M4+", name="agency", channel="task", kind="agency_placement"),
)


def with_demo_channels(app: App, out: Path) -> App:
    """The demo sends through the real outbox and dispatcher, with no servers: e-mails as .eml files,
    texts as JSON lines, letters into a print drop, all under ``out``. A configuration that sets its own
    actions and channels is used as it is."""
    if app.config.actions and app.config.channels:
        return app
    out = out.resolve()  # the transports take relative folders from a base: these are the demo's own
    channels = {
        "email": ChannelSettings(
            "email", "files", {"dir": str(out / "email"), "from": "Collections <collections@example.com>"}
        ),
        "sms": ChannelSettings("sms", "files", {"dir": str(out / "sms")}),
        "post": ChannelSettings("post", "drop", {"dir": str(out / "print")}),
    }
    return replace(app, config=replace(app.config, actions=DEMO_ACTIONS, channels=channels))


# The demo's statutes of limitations when the configuration sets none, for the states whose rules require
# a disclosure on a time-barred debt (rulepacks/us.toml [[disclosures]]): without one, every letter and
# e-mail about a debt past due to a customer in New York City or California is refused (US-TBD-01 fails
# closed). Illustrative, not advice: an institution sets its own with counsel. NY: 3 years for consumer
# credit, CPLR 214-i (Consumer Credit Fairness Act, 2022) [S]; CA: 4 years on a written contract, CCP §337
# [S]; NM: 6 years on a written contract, NMSA 1978 §37-1-3 [S].
DEMO_LIMITATION_YEARS = {"NY": 3, "CA": 4, "NM": 6}


def with_demo_limitations(app: App) -> App:
    """The demo's periods (``DEMO_LIMITATION_YEARS``) when the configuration sets none."""
    if app.config.governor.limitation_years:
        return app
    governor = replace(app.config.governor, limitation_years=dict(DEMO_LIMITATION_YEARS))
    return replace(app, config=replace(app.config, governor=governor))


class _DemoOutbox:
    """Plans each day's contacts after the run and dispatches them twice a day, at 02:00 and 15:00 UTC
    (10:00 in Shanghai; 10:00 or 11:00 in New York and 15:00 in London), as a dispatcher running all
    day would; what falls outside a customer's contact hours waits for the next pass."""

    def __init__(self, app: App, out: Path) -> None:
        from duecourse.channels.compose import LetterComposer
        from duecourse.channels.dispatch import Dispatcher
        from duecourse.services.dispatching import build_transports

        for folder in ("email", "sms", "print"):
            shutil.rmtree(out / folder, ignore_errors=True)
        self.app = app
        self.now = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
        self.transports = build_transports(app, lambda: self.now, out)
        self.dispatcher = Dispatcher(
            app.engine,
            self.transports,
            LetterComposer(app),
            lambda: self.now,
            worker=1,
            batch=500,
            consent_required=app.config.governor.consent_required,
        )
        self.planned = 0
        self.claims = 0

    def day(self, as_of: dt.date) -> None:
        from duecourse.services.contacts import plan_contacts
        from duecourse.services.dispatching import close_post

        self.now = dt.datetime.combine(as_of, dt.time(1, 0), tzinfo=dt.UTC)
        self.planned += plan_contacts(self.app, as_of, self.now).added
        for hour in (2, 15):
            self.now = dt.datetime.combine(as_of, dt.time(hour, 0), tzinfo=dt.UTC)
            self.dispatcher.run_once(recover=False)
            close_post(self.transports, lambda: self.now)

    def not_mine_claims(self, synth: SynthPortfolio, as_of: dt.date) -> None:
        """The customers of the "this is not my loan" accounts say so on ``as_of``: each such account is
        put on hold (``not_mine``) while the claim is checked, and the governor stops its reminders."""
        from sqlalchemy import insert

        from duecourse.store.tables import holds

        claimed = synth.behaviours.filter(pl.col("behaviour") == "not_mine").join(
            synth.accounts.select("account_id", "customer_id"), on="account_id"
        )
        rows = [
            {
                "scope": "account",
                "customer_id": customer_id,
                "account_id": account_id,
                "channel": None,
                "kind": "not_mine",
                "starts_on": as_of,
                "ends_on": None,
                "reason": "the customer says this loan is not theirs; collection stops while it is checked",
                "created_at": self.now,
            }
            for account_id, customer_id in claimed.select("account_id", "customer_id").iter_rows()
        ]
        if rows:
            with self.app.engine.begin() as connection:
                connection.execute(insert(holds), rows)
        self.claims = len(rows)

    def close(self) -> None:
        for transport in self.transports.values():
            transport.close()

    def report(self, console: Console) -> dict[str, object]:
        """The messages by channel and state, and why some were not sent."""
        from sqlalchemy import func, select

        from duecourse.store.tables import outbox, outbox_events

        with self.app.engine.connect() as c:
            counts = c.execute(
                select(outbox.c.channel, outbox.c.state, func.count()).group_by(
                    outbox.c.channel, outbox.c.state
                )
            ).all()
            cancelled = c.execute(
                select(outbox.c.reason, func.count())
                .where(outbox.c.state.in_(("cancelled", "failed")))
                .group_by(outbox.c.reason)
                .order_by(func.count().desc())
                .limit(6)
            ).all()
            deferred = c.execute(
                select(func.count())
                .select_from(outbox_events)
                .where(outbox_events.c.reason.like("deferred:%"))
            ).scalar_one()
        states = ("planned", "rendered", "sent", "cancelled", "failed")
        table = Table(
            title=f"Messages of the last {OUTBOX_DAYS} days: the stages' actions, planned by the runs "
            "and sent by the dispatcher"
        )
        table.add_column("channel")
        for state in states:
            table.add_column(state, justify="right")
        by = {(channel, state): int(n) for channel, state, n in counts}
        for channel in ("sms", "email", "letter"):
            table.add_row(channel, *[f"{by.get((channel, state), 0):,}" for state in states])
        console.print(table)
        for reason, n in cancelled:
            console.print(f"  not sent ({n:,}): {_first_clause(reason)}")
        console.print(
            f"  {deferred:,} times a message waited for the customer's contact hours; e-mails in "
            f"{self.transports_dir('email')}, texts in {self.transports_dir('sms')}, "
            f"print batches in {self.transports_dir('post')}"
        )
        verdicts = self._governor(console)
        escalations = self._tasks(console)
        return {
            "governor": verdicts,
            "tasks": escalations,
            "planned": self.planned,
            "by_channel_and_state": {f"{ch}/{st}": n for (ch, st), n in sorted(by.items())},
            "deferred_for_contact_hours": int(deferred),
        }

    def _governor(self, console: Console) -> dict[str, int]:
        """The governor's decisions of the window, by verdict and the rule that decided."""
        from sqlalchemy import func, select

        from duecourse.store.tables import decisions

        with self.app.engine.connect() as c:
            rows = c.execute(
                select(decisions.c.verdict, decisions.c.rule_id, decisions.c.citation, func.count())
                .group_by(decisions.c.verdict, decisions.c.rule_id, decisions.c.citation)
                .order_by(decisions.c.verdict, func.count().desc())
            ).all()
        table = Table(
            title=f"The governor's decisions of the last {OUTBOX_DAYS} days: every planned contact passed "
            f"the rules of the customer's jurisdiction ({self.claims:,} accounts claimed 'not my loan')"
        )
        for name in ("verdict", "rule", "citation"):
            table.add_column(name)
        table.add_column("contacts", justify="right")
        found: dict[str, int] = {}
        for verdict, rule, citation, count in rows:
            table.add_row(verdict, rule, citation, f"{count:,}")
            found[f"{verdict}/{rule}"] = int(count)
        console.print(table)
        return found

    def _tasks(self, console: Console) -> dict[str, int]:
        """The escalation tasks of the window, by kind, state and the rule they wait for."""
        from sqlalchemy import func, select

        from duecourse.store.tables import tasks

        with self.app.engine.connect() as c:
            rows = c.execute(
                select(tasks.c.kind, tasks.c.state, tasks.c.rule_id, func.count())
                .group_by(tasks.c.kind, tasks.c.state, tasks.c.rule_id)
                .order_by(tasks.c.kind, tasks.c.state, func.count().desc())
            ).all()
        table = Table(
            title="Escalation tasks (duecourse export tasks): open ones go to people or the agency; waiting "
            "ones wait for the notice the law wants first and the deadline it gave"
        )
        for name in ("task", "state", "rule"):
            table.add_column(name)
        table.add_column("tasks", justify="right")
        found: dict[str, int] = {}
        for kind, state, rule, count in rows:
            table.add_row(kind, state, rule, f"{count:,}")
            found[f"{kind}/{state}/{rule}"] = int(count)
        console.print(table)
        return found

    def transports_dir(self, channel: str) -> str:
        return str(self.app.config.channels[channel].values["dir"])


def _first_clause(reason: str) -> str:
    """A reason without its particulars (amounts, counts in brackets), so that like reasons group."""
    return reason.split(" (", maxsplit=1)[0]
