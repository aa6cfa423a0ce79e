"""The daily run at portfolio scale: generate, import, run one day; print JSON figures.

    .venv/bin/python bench/daily_run.py --accounts 1000000 [--db URL] [--fresh-postgres] [--chunk N]
                                        [--only-import] [--keep] [--reuse DIR]

``--db`` defaults to a new SQLite file in a temporary folder; a PostgreSQL URL is emptied first (its
``public`` schema dropped), or with ``--fresh-postgres`` created for the run and dropped afterwards.

Each step runs in a process of its own, so that each peak RSS is that step's own (the portfolio generator
alone peaks at 2.7 GiB for 1,000,000 accounts): ``peak_rss_mb`` holds the step process's exact peak
(VmHWM) and, sampled every 50 ms, the largest SQLite worker process and the largest sum of the process and
its workers resident at once. ``cpu_seconds`` holds the CPU time of the step process and of its
workers: on a shared machine, a truer measure of the work than the wall time (PostgreSQL's own server
processes are not counted).

1. **generate** the bench portfolio (``generate_bench_portfolio``: ≈12 dues and 8 payments per account)
   and write it as the import CSV files;
2. **import** the four files through the real importer (validation, all-or-nothing, idempotent), with
   each file's wall and CPU seconds (``--only-import`` stops after this step);
3. **previous day**: store the snapshots and stages of the day before, as a run leaves them, so that the
   measured run is a run in a daily rhythm (a first run searches every account's past days for its stage
   changes, ``services/stages.py``; ``--first-run`` measures that instead);
4. **run** the day (``run_day``): read (time waited for reads; the rest overlaps compute), compute, store
   (snapshots and stage changes); with ``--digest``, a SHA-256 of the day's stored snapshots and stage
   history (computed after the timing), to hold a change to the run to the same results;
5. **speed-ups** on a sample of accounts: the engine's time per account in the run against the readable
   specification on the same in-memory data, and against the conventional way (load each account with
   its own queries, compute, save one row at a time).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
from psycopg import sql
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from duecourse.bootstrap import App, bootstrap
from duecourse.domain.delinquency import snapshot
from duecourse.domain.model import Due, Payment
from duecourse.domain.money import from_minor, to_minor
from duecourse.services import portfolio as svc
from duecourse.services.synth import generate_bench_portfolio, write_csvs
from duecourse.store import repo, tables
from duecourse.store.frames import read_frame, replace_snapshots

AS_OF = dt.date(2026, 6, 30)


def _status_kb(pid: str, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _children() -> list[str]:
    pids: list[str] = []
    for task in Path("/proc/self/task").iterdir():
        try:
            pids += (task / "children").read_text().split()
        except OSError:
            continue
    return pids


class _RssSampler(threading.Thread):
    """Samples, every 50 ms, this process's RSS plus its children's (the SQLite workers).

    ``ru_maxrss`` cannot tell a worker's own peak: a child's high-water mark starts at its parent's RSS
    at the fork, before it runs its own program.
    """

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_sum_kb = 0
        self.peak_worker_kb = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            workers = [_status_kb(pid, "VmRSS") for pid in _children()]
            own = _status_kb("self", "VmRSS")
            self.peak_worker_kb = max(self.peak_worker_kb, *workers, 0)
            self.peak_sum_kb = max(self.peak_sum_kb, own + sum(workers))


def _peak_rss_mb(sampler: _RssSampler) -> dict[str, float]:
    sampler.stop.set()
    sampler.join()
    return {
        "process": round(_status_kb("self", "VmHWM") / 1024, 1),
        "largest_worker_sampled": round(sampler.peak_worker_kb / 1024, 1),
        "process_and_workers_sampled": round(sampler.peak_sum_kb / 1024, 1),
    }


def _cpu_seconds() -> dict[str, float]:
    """CPU time (user + system) of the step process and of its finished children (the SQLite workers).

    On a shared machine the wall times depend on the other jobs; CPU time much less.
    """
    own = resource.getrusage(resource.RUSAGE_SELF)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "process": round(own.ru_utime + own.ru_stime, 2),
        "workers": round(workers.ru_utime + workers.ru_stime, 2),
    }


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- the steps, each run in its own process ------------------------------------------------------


def step_generate(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    synth = generate_bench_portfolio(accounts=args.accounts, seed=args.seed, as_of=AS_OF)
    rows = {k: getattr(synth, k).height for k in svc.KINDS}
    write_csvs(synth, Path(args.work) / "input")
    return {"seconds": round(time.perf_counter() - t0, 2), "rows": rows}


def step_import(args: argparse.Namespace) -> dict[str, Any]:
    app = bootstrap(args.db, None)
    svc.init_database(app)
    rows, per_kind = 0, {}
    t0 = time.perf_counter()
    for kind in svc.KINDS:
        t, cpu = time.perf_counter(), _cpu_seconds()
        result = svc.import_file(app, kind, Path(args.work) / "input" / f"{kind}.csv")
        seconds = time.perf_counter() - t
        after = _cpu_seconds()
        per_kind[kind] = {
            "rows": result.rows_added,
            "seconds": round(seconds, 2),
            "rows_per_second": int(result.rows_added / seconds),
            "cpu_seconds": {k: round(after[k] - cpu[k], 2) for k in after},
        }
        rows += result.rows_added
    seconds = time.perf_counter() - t0
    return {
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_second": int(rows / seconds),
        "kinds": per_kind,
    }


def step_previous_day(args: argparse.Namespace) -> dict[str, Any]:
    """The day before AS_OF stored as a daily run leaves it: every account's snapshot and stage."""
    app = bootstrap(args.db, None)
    day = AS_OF - dt.timedelta(days=1)
    t0 = time.perf_counter()
    parts = [
        svc.compute_day(app, chunk, day, None) for chunk in repo.portfolio_chunks(app.engine, args.chunk)
    ]
    snaps = pl.concat(parts).sort("account_id")
    replace_snapshots(app.engine, day, snaps)
    repo.replace_stage_changes_on(
        app.engine, day, snaps.select("account_id", "stage", pl.lit(day).alias("entered_on"))
    )
    repo.record_run(app.engine, day, dt.datetime.now(dt.UTC), dt.datetime.now(dt.UTC), snaps.height, "ok")
    return {"seconds": round(time.perf_counter() - t0, 2)}


def digest(snapshots: pl.DataFrame, history: pl.DataFrame) -> str:
    """A SHA-256 of the rows (as CSV, columns by name, rows by key): the same data, the same digest."""
    sha = hashlib.sha256()
    for frame, key in ((snapshots, ["account_id"]), (history, ["account_id", "entered_on", "stage"])):
        sha.update(frame.select(sorted(frame.columns)).sort(key).write_csv().encode())
    return sha.hexdigest()


def stored_digest(app: App, as_of: dt.date) -> str:
    """The digest of the stored snapshots of ``as_of`` and of the whole stage history."""
    history = read_frame(app.engine, select(tables.stage_history), bulk=True)
    return digest(repo.snapshot_for(app.engine, as_of), history)


def step_run(args: argparse.Namespace) -> dict[str, Any]:
    app = bootstrap(args.db, None)
    t0 = time.perf_counter()
    result = svc.run_day(app, AS_OF, accounts_per_chunk=args.chunk)
    total = time.perf_counter() - t0
    cpu = _cpu_seconds()  # before the digest's reading
    return {
        "cpu_seconds_run": cpu,
        **({"digest": stored_digest(app, AS_OF)} if args.digest else {}),
        "accounts": result.accounts,
        "seconds": {k: round(v, 2) for k, v in result.seconds.items()},
        "store_seconds": {k: round(v, 2) for k, v in result.store_seconds.items()},
        "total_seconds": round(total, 2),
        "accounts_per_second": int(result.accounts / total),
        "stage_changes": result.stage_changes,
        "stages": result.stages,
    }


def step_speedups(args: argparse.Namespace) -> dict[str, Any]:
    app = bootstrap(args.db, None)
    per_account_engine = float(args.engine_seconds_per_account)
    chunk = next(repo.portfolio_chunks(app.engine, args.sample))
    return _sample_speedups(app, chunk, per_account_engine)


def _sample_speedups(app: App, chunk: repo.PortfolioChunk, per_account_engine: float) -> dict[str, Any]:
    terms = app.config.terms
    accounts, dues, payments = chunk.accounts, chunk.dues, chunk.payments
    dues_by = dues.partition_by("account_id", as_dict=True)
    pays_by = payments.partition_by("account_id", as_dict=True)

    # The readable specification, one account at a time, on the same in-memory data.
    t0 = time.perf_counter()
    for row in accounts.iter_rows(named=True):
        product = terms.products[row["product_code"]]
        d = svc.due_records(dues_by.get((row["account_id"],), dues.clear()), product.currency)
        p = svc.payment_records(pays_by.get((row["account_id"],), payments.clear()), product.currency)
        snapshot(row["account_id"], product, terms.bucket_sets[product.bucket_set], terms.stages, d, p, AS_OF)
    domain_per_account = (time.perf_counter() - t0) / accounts.height

    # The conventional way: per account, query its rows, compute, save a row.
    t0 = time.perf_counter()
    with app.engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TEMPORARY TABLE bench_snap (account_id TEXT, days_past_due INTEGER, "
                "amount_past_due_minor BIGINT, stage TEXT)"
            )
        )
        for row in accounts.iter_rows(named=True):
            product = terms.products[row["product_code"]]
            due_rows = conn.execute(
                select(tables.dues).where(tables.dues.c.account_id == row["account_id"])
            ).all()
            pay_rows = conn.execute(
                select(tables.payments).where(tables.payments.c.account_id == row["account_id"])
            ).all()
            cur = product.currency
            d = [
                Due(
                    r.account_id,
                    r.due_id,
                    r.due_date,
                    from_minor(r.amount_minor, cur),
                    r.component,
                    None if r.minimum_minor is None else from_minor(r.minimum_minor, cur),
                    r.posted_on,
                )
                for r in due_rows
            ]
            p = [
                Payment(r.payment_id, r.account_id, r.paid_on, from_minor(r.amount_minor, cur))
                for r in pay_rows
            ]
            s = snapshot(
                row["account_id"], product, terms.bucket_sets[product.bucket_set], terms.stages, d, p, AS_OF
            )
            conn.execute(
                text("INSERT INTO bench_snap VALUES (:a, :d, :m, :s)"),
                {
                    "a": s.account_id,
                    "d": s.days_past_due,
                    "m": to_minor(s.amount_past_due, cur),
                    "s": s.stage,
                },
            )
        conn.execute(text("DROP TABLE bench_snap"))
    conventional_per_account = (time.perf_counter() - t0) / accounts.height
    return {
        "sample_accounts": accounts.height,
        "engine_ms_per_account": round(per_account_engine * 1000, 4),
        "domain_ms_per_account": round(domain_per_account * 1000, 3),
        "conventional_ms_per_account": round(conventional_per_account * 1000, 3),
        "speedup_over_domain": round(domain_per_account / per_account_engine, 1),
        "speedup_over_conventional": round(conventional_per_account / per_account_engine, 1),
    }


STEPS = {
    "generate": step_generate,
    "import": step_import,
    "previous_day": step_previous_day,
    "run": step_run,
    "speedups": step_speedups,
}


def _in_own_process(step: str, args: argparse.Namespace, **extra: object) -> dict[str, Any]:
    command = [sys.executable, __file__, "--step", step, "--work", args.work, "--db", args.db]
    command += ["--accounts", str(args.accounts), "--seed", str(args.seed), "--chunk", str(args.chunk)]
    command += ["--sample", str(args.sample)] + (["--digest"] if args.digest else [])
    for name, value in extra.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    load_before = _load()
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    figures: dict[str, Any] = json.loads(done.stdout)
    figures["load_average_before"] = load_before
    return figures


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _admin(url: str) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(
        _libpq(make_url(url).set(database="postgres").render_as_string(False)), autocommit=True
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--db", default=None, help="database URL (default: a new SQLite file in a temp dir)")
    parser.add_argument(
        "--fresh-postgres", action="store_true", help="create the URL's database, drop it after"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sample", type=int, default=2000, help="accounts in the speed-up sample")
    parser.add_argument("--chunk", type=int, default=repo.ACCOUNTS_PER_CHUNK, help="accounts per chunk")
    parser.add_argument("--first-run", action="store_true", help="measure a first run (no previous day)")
    parser.add_argument("--only-import", action="store_true", help="stop after the import")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (and its SQLite file)")
    parser.add_argument(
        "--reuse",
        metavar="DIR",
        help="a kept temp dir whose database (--db, or its SQLite file) is imported: measure the run again",
    )
    parser.add_argument(
        "--digest", action="store_true", help="a SHA-256 of the run's stored results (after the timing)"
    )
    parser.add_argument("--step", choices=sorted(STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--engine-seconds-per-account", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.step:
        sampler = _RssSampler()
        sampler.start()
        step = STEPS[args.step](args)
        step["peak_rss_mb"] = _peak_rss_mb(sampler)
        step["cpu_seconds"] = _cpu_seconds()
        print(json.dumps(step))
        return 0

    args.work = args.reuse or tempfile.mkdtemp(prefix="duecourse-bench-")
    args.db = args.db or f"sqlite:///{Path(args.work) / 'bench.db'}"
    postgres = args.db.startswith("postgresql")
    database = str(make_url(args.db).database)
    if args.reuse:
        args.keep = True
    elif postgres and args.fresh_postgres:
        with _admin(args.db) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    elif postgres:
        with create_engine(args.db).begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    figures: dict[str, Any] = {
        "accounts": args.accounts,
        "db": args.db.split(":")[0],
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "chunk_accounts": args.chunk,
    }
    try:
        if not args.reuse:
            figures["generate"] = _in_own_process("generate", args)
            figures["import"] = _in_own_process("import", args)
        if args.only_import:
            print(json.dumps(figures, indent=2))
            return 0
        if not args.first_run:
            figures["previous_day"] = _in_own_process("previous_day", args)
        figures["run"] = _in_own_process("run", args)
        per_account = figures["run"]["seconds"]["compute"] / figures["run"]["accounts"]
        figures["speedups"] = _in_own_process("speedups", args, engine_seconds_per_account=per_account)
    finally:
        if postgres and args.fresh_postgres and not args.keep:
            with _admin(args.db) as admin:
                drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                admin.execute(drop.format(sql.Identifier(database)))
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
