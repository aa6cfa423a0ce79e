"""Time ``read_table("dues", ...)`` on 1,000,000 generated dues rows and print rows/s as JSON.

Run: ``.venv/bin/python bench/readers_speed.py [rows]``. The file is a valid dues CSV (both optional
columns present, 100,000 accounts known to the refs), so the time covers reading, every check and the
conversion to minor units. Best of three, wall and CPU seconds of this process (Polars uses every
core), for the whole file at once and in the importer's slices (``open_table(...).chunks``).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl

from duecourse.io.readers import Refs, open_table, read_table
from duecourse.services.portfolio import IMPORT_CHUNK_ROWS

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


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _best(work: Callable[[], int]) -> tuple[int, float, float]:
    """Rows, and the best wall and CPU seconds of three runs."""
    rows, wall, cpu = 0, float("inf"), float("inf")
    for _ in range(3):
        start, cpu_start = time.perf_counter(), _cpu()
        rows = work()
        wall, cpu = min(wall, time.perf_counter() - start), min(cpu, _cpu() - cpu_start)
    return rows, wall, cpu


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
        height, wall, cpu = _best(lambda: read_table("dues", path, refs).height)
        _, sliced_wall, sliced_cpu = _best(
            lambda: sum(part.height for part in open_table("dues", path, refs).chunks(IMPORT_CHUNK_ROWS))
        )
    print(
        json.dumps(
            {
                "rows": height,
                "file_mb": round(size / 1e6, 1),
                "seconds": round(wall, 3),
                "cpu_seconds": round(cpu, 3),
                "rows_per_s": round(height / wall),
                "sliced_seconds": round(sliced_wall, 3),
                "sliced_cpu_seconds": round(sliced_cpu, 3),
                "cores": os.cpu_count(),
                "polars_threads": pl.thread_pool_size(),
            }
        )
    )


if __name__ == "__main__":
    main()
