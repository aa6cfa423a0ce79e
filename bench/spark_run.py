"""Speed of the Spark runner (local mode) against ``compute_snapshots`` in this process; prints JSON.

    .venv/bin/python bench/spark_run.py [--accounts 100000] [--master local[2]] [--partitions N] [--runs 3]

Generates a benchmark portfolio (``generate_bench_portfolio``: ~12 dues and ~8 payments per account),
times ``compute_snapshots`` on it in this process (the best of ``--runs``), writes it as the Parquet
datasets ``spark-run`` reads, then runs ``run_parquet`` ``--runs`` times in one Spark session: the first
run starts the Python workers (and imports Polars in them), the others find them warm. Each run's
``seconds`` are those of ``SparkRunResult`` (``compute`` = shuffle + kernel + Parquet write);
``spark_warm_best`` is the fastest warm run. ``identical`` says whether the rows Spark wrote equal the
in-process result, column for column. ``driver_peak_rss_mb`` is this process's high-water mark (the JVM
and the Python workers are other processes); ``load_average`` is the machine's 1-minute load before and
after, since a shared machine's other work shows in every figure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from duecourse.config import load_config
from duecourse.engine.schema import SNAPSHOTS
from duecourse.engine.snapshot import compute_snapshots
from duecourse.services.spark_run import run_parquet, write_portfolio
from duecourse.services.synth import generate_bench_portfolio

AS_OF = dt.date(2026, 6, 30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--partitions", type=int, default=None)
    parser.add_argument("--seed", type=int, default=20260630)
    parser.add_argument("--runs", type=int, default=3, help="Spark runs, the first one cold (default 3)")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]

    portfolio = generate_bench_portfolio(accounts=args.accounts, seed=args.seed, as_of=AS_OF)
    terms = load_config(None).terms
    in_process = []
    for _ in range(max(1, args.runs)):
        began = time.perf_counter()
        expected = compute_snapshots(portfolio.accounts, portfolio.dues, portfolio.payments, terms, AS_OF)
        in_process.append(time.perf_counter() - began)

    from pyspark.sql import SparkSession

    with tempfile.TemporaryDirectory(prefix="duecourse-spark-bench-") as tmp:
        source, target = Path(tmp, "in"), Path(tmp, "out")
        write_portfolio(source, portfolio.accounts, portfolio.dues, portfolio.payments)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        began = time.perf_counter()
        spark = (
            SparkSession.builder.master(args.master)
            .appName("duecourse bench")
            .config("spark.ui.enabled", "false")
            .getOrCreate()
        )
        spark.sparkContext.setLogLevel("ERROR")
        session_start = time.perf_counter() - began
        runs = []
        for _ in range(max(2, args.runs)):
            began = time.perf_counter()
            result = run_parquet(load_config(None), AS_OF, source, target, args.master, args.partitions)
            runs.append(
                {"total": round(time.perf_counter() - began, 3)}
                | {k: round(v, 3) for k, v in result.seconds.items()}
            )
        spark.stop()
        written = (
            pl.read_parquet(Path(result.out) / "*.parquet", hive_partitioning=False)
            .with_columns(as_of=pl.lit(AS_OF))
            .select([pl.col(name).cast(dtype) for name, dtype in SNAPSHOTS.items()])
            .sort("account_id")
        )
    print(
        json.dumps(
            {
                "accounts": args.accounts,
                "dues": portfolio.dues.height,
                "payments": portfolio.payments.height,
                "master": args.master,
                "partitions": result.partitions,
                "in_process_best_seconds": round(min(in_process), 3),
                "spark_session_start_seconds": round(session_start, 3),
                "spark_first_run": runs[0],
                "spark_warm_best": min(runs[1:], key=lambda run: run["total"]),
                "spark_warm_totals": [run["total"] for run in runs[1:]],
                "identical": written.equals(expected),
                "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            }
        )
    )


if __name__ == "__main__":
    main()
