"""Speed of the set-based snapshot engine alone, on the bench portfolio, in chunks as the run computes it.

    .venv/bin/python bench/engine_speed.py [N] [--seed S] [--chunk C] [--hash] [--stage-path K]

Generates N accounts (default 1,000,000) with ``generate_bench_portfolio`` (≈12 dues and 8 payments each,
the portfolio ``bench/daily_run.py`` imports) and computes them as of the same date with the shipped
configuration (``load_config(None)``), the terms a default install runs with. The frames are cut and
ordered as the run reads them (``repo.portfolio_chunks``): chunks of C whole accounts (default
``repo.ACCOUNTS_PER_CHUNK``), accounts sorted by account_id, dues by (account_id, due_id), payments by
payment_id. One line of JSON:

- ``seconds``, ``cpu_seconds``: the engine alone (wall; CPU of every thread of the process), over all chunks;
  ``chunk_seconds``: the slowest and the median chunk (wall);
- ``fixed_seconds``: a call on 10 accounts (what a call costs whatever its size; the fastest of 5);
- ``sha256`` (with ``--hash``): a digest of the snapshots, to check that a change to the engine changed
  no result (the same N, seed and chunk give the same digest);
- ``stage_path`` (with ``--stage-path K``): the first-run stage search (``engine/stage_path.py``) over the
  first K accounts, back to their opening or a year, as ``services/stages.py`` runs it: seconds and
  stage changes found;
- ``peak_rss_mb``: the process's high-water mark, the generated portfolio included.

The machine is shared: read ``cpu_seconds`` beside ``seconds``, and run a 1,000,000-account measure under
``flock /tmp/duecourse-bench.lock`` so that two never run at once.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import resource
import statistics
import time
from collections.abc import Iterator
from typing import Any

import polars as pl

from duecourse.config import load_config
from duecourse.domain.terms import Terms
from duecourse.engine.snapshot import compute_snapshots
from duecourse.engine.stage_path import stage_path
from duecourse.services.stages import FIRST_RUN_LOOKBACK_DAYS
from duecourse.services.synth import generate_bench_portfolio
from duecourse.store import repo

AS_OF = dt.date(2026, 6, 30)  # bench/daily_run.py's date


def chunks(
    accounts: pl.DataFrame, dues: pl.DataFrame, payments: pl.DataFrame, size: int
) -> Iterator[tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]]:
    """Whole accounts, ``size`` at a time, each frame in the order the run reads it."""
    accounts = accounts.sort("account_id")
    dues = dues.sort("account_id", "due_id")
    payments = payments.sort("payment_id")
    for first in range(0, accounts.height, size):
        part = accounts.slice(first, size)
        low, high = part["account_id"][0], part["account_id"][-1]
        within = pl.col("account_id").is_between(pl.lit(low), pl.lit(high))
        yield part, dues.filter(within), payments.filter(within)


def digest(snapshots: pl.DataFrame) -> str:
    """SHA-256 of the snapshots' rows, in account order."""
    hashes = snapshots.sort("account_id").hash_rows(seed=0).to_numpy()
    return hashlib.sha256(hashes.tobytes()).hexdigest()


def first_run_search(
    accounts: pl.DataFrame, dues: pl.DataFrame, payments: pl.DataFrame, terms: Terms, count: int
) -> dict[str, Any]:
    """``stage_path`` over the first ``count`` accounts as a first run searches them."""
    accounts = accounts.sort("account_id").head(count)
    within = pl.col("account_id").is_in(accounts["account_id"].implode())
    dues, payments = dues.filter(within), payments.filter(within)
    snaps = compute_snapshots(accounts, dues, payments, terms, AS_OF)
    horizon = AS_OF - dt.timedelta(days=FIRST_RUN_LOOKBACK_DAYS)
    lower = accounts.select(
        "account_id", pl.max_horizontal("opened_on", pl.lit(horizon)).clip(upper_bound=AS_OF).alias("lower")
    )
    began = time.perf_counter()
    found = stage_path(accounts, dues, payments, terms, AS_OF, snaps.select("account_id", "stage"), lower)
    return {
        "accounts": count,
        "seconds": round(time.perf_counter() - began, 3),
        "stage_changes": found.height,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("accounts", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20250901)
    parser.add_argument("--chunk", type=int, default=repo.ACCOUNTS_PER_CHUNK, help="accounts per chunk")
    parser.add_argument("--hash", action="store_true", help="print a digest of the snapshots")
    parser.add_argument("--stage-path", type=int, default=0, metavar="K", help="time the stage search")
    args = parser.parse_args()
    portfolio = generate_bench_portfolio(accounts=args.accounts, seed=args.seed, as_of=AS_OF)
    accounts, dues, payments = portfolio.accounts, portfolio.dues, portfolio.payments
    terms = load_config(None).terms
    parts = list(chunks(accounts, dues, payments, args.chunk))

    small = next(chunks(accounts.head(10), dues, payments, 10))
    fixed = float("inf")
    for _ in range(5):  # the first call also warms up; the fastest is the fixed cost
        began = time.perf_counter()
        compute_snapshots(*small, terms, AS_OF)
        fixed = min(fixed, time.perf_counter() - began)

    results: list[pl.DataFrame] = []
    walls: list[float] = []
    cpu = time.process_time()
    for chunk in parts:
        began = time.perf_counter()
        results.append(compute_snapshots(*chunk, terms, AS_OF))
        walls.append(time.perf_counter() - began)
    cpu = time.process_time() - cpu
    snapshots = pl.concat(results)
    if snapshots.height != args.accounts:
        raise SystemExit(f"expected {args.accounts} snapshots, got {snapshots.height}")
    seconds = sum(walls)
    report: dict[str, Any] = {
        "accounts": args.accounts,
        "chunk": args.chunk,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),
        "chunk_seconds": {"max": round(max(walls), 3), "median": round(statistics.median(walls), 3)},
        "accounts_per_second": round(args.accounts / seconds),
        "fixed_seconds": round(fixed, 4),
    }
    if args.hash:
        report["sha256"] = digest(snapshots)
    if args.stage_path:
        report["stage_path"] = first_run_search(accounts, dues, payments, terms, args.stage_path)
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
