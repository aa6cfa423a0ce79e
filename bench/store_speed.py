"""Speed of the store's bulk frame I/O on each backend.

    .venv/bin/python bench/store_speed.py [N] [--backend sqlite|postgresql|both] [--postgres-url URL]
                                          [--alternatives]

Writes N generated dues rows (default 1,000,000; 4 dues per account, a third with a minimum, all in
the dues table with its primary key and index) into a fresh database with ``write_frame``, reads them back
with ``read_frame`` and prints one line of JSON per backend: {"backend", "rows", "write_seconds",
"write_rows_per_second", "read_seconds", "read_rows_per_second"}. SQLite is a file in a temporary
directory; PostgreSQL a database created for the run on the server of ``--postgres-url`` (default
``$DUECOURSE_TEST_POSTGRES_URL`` or the local ``test`` database) and dropped afterwards.

``--alternatives`` also times, on PostgreSQL, ``write_frame`` (ADBC ``adbc_ingest``) against the paths it
did not take (psycopg's binary COPY fed by ``write_row``; a text COPY of CSV written by Polars), each in
turn into the emptied table, ROUNDS times, and prints the medians.

Measured on the 2-CPU development machine with other jobs beside it (load 2-3.5, so ±30 %), 1,000,000
rows, several runs:

    backend      write rows/s        read rows/s
    sqlite       110,000-160,000     240,000-410,000   executemany / fetchmany, standard driver
    postgresql   130,000-230,000     600,000-970,000   ADBC adbc_ingest / ADBC fetch_arrow_table
    postgresql   psycopg binary COPY 150,000-225,000, CSV text COPY 130,000-210,000: level, not chosen

ADBC's SQLite driver wrote ~240,000 and read ~1,250,000 rows/s, but is not used: see frames.py.

Since 2026-11-29 a SQLite frame of 50,000 rows or more is written through the worker process (ADBC SQLite
in a process of its own, ``store/_sqlite_worker.py``), so the SQLite write figure above is the old path;
``read_frame(..., bulk=True)`` reads through the worker too. Figures of the new paths:
docs/performance.md.

Since the afternoon of 2026-11-29 ``write_frame`` goes through ``frames.writing`` (one transaction, the
rows put in key order first; the generated dues here already are). It does not ask for
``Writer.load_empty``, so on PostgreSQL the table's indexes are kept up row by row as before; the
importer asks for it (docs/performance.md, "Import").
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
from psycopg import sql
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from duecourse.engine.schema import DUES
from duecourse.store.db import init_db, make_engine
from duecourse.store.frames import read_frame, write_frame

ROUNDS = 3
DEFAULT_POSTGRES = os.environ.get(
    "DUECOURSE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def dues(n: int) -> pl.DataFrame:
    """N dues rows, the same for the same N."""
    i = pl.int_range(n, dtype=pl.Int64)
    return pl.select(
        account_id=pl.format("A{}", (i // 4).cast(pl.String).str.zfill(9)),
        due_id=pl.format("D{}", (i % 4).cast(pl.String)),
        due_date=pl.date(2024, 1, 1) + pl.duration(days=(i * 7919) % 900),
        amount_minor=(i * 104_729) % 1_000_000_000 + 1,
        component=pl.lit("principal"),
        minimum_minor=pl.when(i % 3 == 0).then((i * 104_729) % 100_000_000),
        posted_on=pl.when(i % 5 == 0).then(pl.date(2023, 12, 1)),
    ).cast(pl.Schema(DUES))


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def database(backend: str, postgres_url: str) -> Iterator[str]:
    """A fresh, migrated database of the backend; removed afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{Path(folder) / 'bench.db'}"
            init_db(url)
            yield url
        return
    name = f"duecourse_bench_{secrets.token_hex(4)}"
    with psycopg.connect(_libpq(postgres_url), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
        init_db(url)
        yield url
    finally:
        with psycopg.connect(_libpq(postgres_url), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def timed(work: Any) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def empty_dues(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            text("TRUNCATE dues" if engine.dialect.name == "postgresql" else "DELETE FROM dues")
        )


def paths_not_taken(url: str, engine: Engine, frame: pl.DataFrame) -> dict[str, float]:
    """The chosen write and PostgreSQL's paths not taken, in turn into an emptied dues table, ROUNDS times."""
    libpq = _libpq(url)

    def binary_copy() -> None:
        with psycopg.connect(libpq) as connection, connection.cursor() as cursor:
            with cursor.copy("COPY dues FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["text", "text", "date", "int8", "text", "int8", "date"])
                for row in frame.iter_rows():
                    copy.write_row(row)

    def csv_copy() -> None:
        buffer = io.BytesIO()
        frame.write_csv(buffer, include_header=False, null_value="\\N", quote_style="non_numeric")
        with psycopg.connect(libpq) as connection, connection.cursor() as cursor:
            with cursor.copy("COPY dues FROM STDIN (FORMAT csv, NULL '\\N')") as copy:
                copy.write(buffer.getbuffer())

    def chosen() -> None:
        write_frame(engine, "dues", frame)

    works = (("write_frame", chosen), ("psycopg_binary_copy", binary_copy), ("csv_text_copy", csv_copy))
    seconds: dict[str, list[float]] = {name: [] for name, _ in works}
    for _ in range(ROUNDS):
        for name, work in works:
            empty_dues(engine)
            seconds[name].append(timed(work))
    return {
        f"{name}_median_rows_per_second": round(frame.height / statistics.median(times))
        for name, times in seconds.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument("--alternatives", action="store_true")
    args = parser.parse_args()
    frame = dues(args.rows)
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    for backend in backends:
        result = measure(backend, args.postgres_url, frame, alternatives=args.alternatives)
        print(json.dumps(result), flush=True)


def measure(backend: str, postgres_url: str, frame: pl.DataFrame, *, alternatives: bool) -> dict[str, Any]:
    """Write then read ``frame`` as dues on a fresh database of the backend."""
    with database(backend, postgres_url) as url:
        engine = make_engine(url)
        try:
            write_seconds = timed(lambda: write_frame(engine, "dues", frame))
            read: list[pl.DataFrame] = []
            read_seconds = timed(lambda: read.append(read_frame(engine, "dues")))
            if read[0].height != frame.height:
                raise SystemExit(f"{backend}: read {read[0].height} rows of {frame.height}")
            result: dict[str, Any] = {
                "backend": backend,
                "rows": frame.height,
                "write_seconds": round(write_seconds, 3),
                "write_rows_per_second": round(frame.height / write_seconds),
                "read_seconds": round(read_seconds, 3),
                "read_rows_per_second": round(frame.height / read_seconds),
            }
            if alternatives and backend == "postgresql":
                result |= paths_not_taken(url, engine, frame)
            return result
        finally:
            engine.dispose()


if __name__ == "__main__":
    main()
