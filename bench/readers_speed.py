"""Time ``read_table("dues", ...)`` on 1,000,000 generated dues rows and print rows/s as JSON.

Run: ``.venv/bin/python bench/readers_speed.py [rows]``. The file is a valid dues CSV (both optional
columns present, 100,000 accounts known to the refs), so the time covers reading, every check and the
conversion to minor units.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from duecourse.io.readers import Refs, read_table

ACCOUNTS = 100_000


def write_dues(path: Path, rows: int) -> None:
    base = pl.select(i=pl.int_range(rows, dtype=pl.Int64))
    frame = base.select(
        ("A" + (pl.col("i") % ACCOUNTS).cast(pl.String).str.zfill(7)).alias("account_id"),
        ("D" + (pl.col("i") // ACCOUNTS).cast(pl.String).str.zfill(4)).alias("due_id"),
        (pl.date(2025, 1, 1) + pl.duration(days=pl.col("i") % 365)).cast(pl.String).alias("due_date"),
        pl.format("{}.{}", pl.col("i") % 99_999 + 1, (pl.col("i") % 100).cast(pl.String).str.zfill(2)).alias(
            "amount"
        ),
        pl.lit(pl.Series(["principal", "interest", "fee", "penalty"]))
        .gather(pl.col("i") % 4)
        .alias("component"),
        pl.when(pl.col("i") % 3 == 0).then(pl.lit("1.00")).otherwise(pl.lit("")).alias("minimum_amount"),
        pl.when(pl.col("i") % 5 == 0).then(pl.lit("2024-12-01")).otherwise(pl.lit("")).alias("posted_on"),
    )
    frame.write_csv(path)


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    refs = Refs(
        account_digits=pl.DataFrame(
            {
                "account_id": [f"A{n:07d}" for n in range(ACCOUNTS)],
                "minor_digits": [2] * ACCOUNTS,
            }
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dues.csv"
        write_dues(path, rows)
        size = path.stat().st_size
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            frame = read_table("dues", path, refs)
            best = min(best, time.perf_counter() - start)
    print(
        json.dumps(
            {
                "rows": frame.height,
                "file_mb": round(size / 1e6, 1),
                "seconds": round(best, 3),
                "rows_per_s": round(frame.height / best),
                "cores": os.cpu_count(),
                "polars_threads": pl.thread_pool_size(),
            }
        )
    )


if __name__ == "__main__":
    main()
