"""The daily run at portfolio scale: generate, import, run one day; print JSON figures.

    .venv/bin/python bench/daily_run.py --accounts 1000000 [--db postgresql+psycopg://postgres@127.0.0.1:5432/test]

Steps timed: import (CSV files through the real importer, all-or-nothing), read (the portfolio from the
database into frames), compute (the set-based engine), store (snapshots and stage changes). Two speed-ups
are measured in the same run on a sample of accounts: over the per-account readable specification on the
same in-memory data, and over the conventional way (load each account with its own queries, compute,
save one row at a time).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
from sqlalchemy import select, text

from duecourse.bootstrap import bootstrap
from duecourse.domain.delinquency import snapshot
from duecourse.domain.model import Due, Payment
from duecourse.domain.money import from_minor, to_minor
from duecourse.services import portfolio as svc
from duecourse.services.synth import generate_bench_portfolio, write_csvs
from duecourse.store import repo, tables

AS_OF = dt.date(2026, 6, 30)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sample_speedups(
    app, portfolio: repo.Portfolio, per_account_engine: float, sample: int
) -> dict[str, float]:  # type: ignore[no-untyped-def]
    terms = app.config.terms
    ids = portfolio.accounts.get_column("account_id").head(sample)
    accounts = portfolio.accounts.filter(pl.col("account_id").is_in(ids.implode()))
    dues = portfolio.dues.filter(pl.col("account_id").is_in(ids.implode()))
    payments = portfolio.payments.filter(pl.col("account_id").is_in(ids.implode()))
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
        "domain_ms_per_account": round(domain_per_account * 1000, 3),
        "conventional_ms_per_account": round(conventional_per_account * 1000, 3),
        "speedup_over_domain": round(domain_per_account / per_account_engine, 1),
        "speedup_over_conventional": round(conventional_per_account / per_account_engine, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--db", default=None, help="database URL (default: a new SQLite file in a temp dir)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sample", type=int, default=2000, help="accounts in the speed-up sample")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="duecourse-bench-"))
    url = args.db or f"sqlite:///{work / 'bench.db'}"
    if url.startswith("postgresql"):
        from sqlalchemy import create_engine

        with create_engine(url).begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    app = bootstrap(url, None)
    figures: dict[str, object] = {"accounts": args.accounts, "db": url.split(":")[0]}

    t0 = time.perf_counter()
    synth = generate_bench_portfolio(accounts=args.accounts, seed=args.seed, as_of=AS_OF)
    files = write_csvs(synth, work / "input")
    figures["generate_seconds"] = round(time.perf_counter() - t0, 2)
    del synth

    svc.init_database(app)
    rows = 0
    t0 = time.perf_counter()
    for kind in svc.KINDS:
        result = svc.import_file(app, kind, files[kind])
        rows += result.rows_added
    import_seconds = time.perf_counter() - t0
    figures["import"] = {
        "rows": rows,
        "seconds": round(import_seconds, 2),
        "rows_per_second": int(rows / import_seconds),
    }

    t0 = time.perf_counter()
    result = svc.run_day(app, AS_OF)
    total = time.perf_counter() - t0
    figures["run"] = {
        "seconds": {k: round(v, 2) for k, v in result.seconds.items()},
        "total_seconds": round(total, 2),
        "accounts_per_second": int(result.accounts / total),
        "stages": result.stages,
    }
    figures["peak_rss_mb_import_and_run"] = round(_peak_rss_mb(), 1)
    portfolio = repo.load_portfolio(app.engine)
    per_account_engine = result.seconds["compute"] / result.accounts
    figures["speedups"] = _sample_speedups(app, portfolio, per_account_engine, args.sample)
    print(json.dumps(figures, indent=2))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
