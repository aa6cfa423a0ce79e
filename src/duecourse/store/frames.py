"""Bulk I/O between Polars frames and the tables, on SQLite files and PostgreSQL alike.

The whole portfolio moves through here every night, so rows never pass one by one through SQLAlchemy's
row machinery. Figures: ``docs/performance.md`` and the docstrings of ``bench/store_speed.py`` and
``bench/daily_run.py``.

- **PostgreSQL writes:** ADBC ``adbc_ingest``, a binary ``COPY`` encoded from Arrow in C, in one
  transaction with any delete before it (``replace_snapshots``), run by a thread of its own
  (``writing``). psycopg's binary ``COPY`` fed by ``write_row`` and a text ``COPY`` of CSV written by
  Polars came out level with it (130-250k rows/s each, within the noise of a shared 2-CPU machine): the
  server's index upkeep sets the pace. ADBC is kept because it spends no Python call per row, so the
  client leaves the CPU to the server, and it is the same Arrow path as the reads.
- **PostgreSQL reads:** ADBC ``fetch_arrow_table`` (the driver copies out in binary into Arrow; no Python
  object per value). Range reads inline their bounds as literals, so that the driver can use ``COPY``
  (it cannot bind parameters into a ``COPY``).
- **SQLite, large frames:** through a worker process (``_sqlite_worker.py``) that reads and writes with
  the ADBC SQLite driver and hands Arrow IPC files back and forth: reads about 4 times and writes about
  3 times as fast as Python's ``sqlite3``, which builds a Python object per value. The driver links its
  own copy of SQLite, and two copies of SQLite in one process corrupt a database: POSIX locks are per
  process, so when one copy closes the file it drops the other's locks and takes itself for the last
  connection (sqlite.org/howtocorrupt.html, 2.2.1; reproduced here as a lost write and "disk I/O error"
  in WAL mode). In a process of its own, the driver's copy is one more SQLite user of the file, locking
  it as any other process does, so it is as safe beside a concurrent writer as two ``sqlite3`` shells.
  This process never opens a SQLite file with anything but Python's ``sqlite3``.
- **SQLite, small frames** (writes of fewer than ``BULK_MIN_ROWS`` rows; reads of portfolios of at most
  ``BULK_MIN_ACCOUNTS`` accounts; reads without ``bulk=True``): the standard library driver, on the
  SQLAlchemy connection: ``executemany`` in one transaction, and ``fetchmany`` batches built into frames;
  starting the worker (a Python process importing Arrow, about 0.3 s) would cost more than it saves.

``read_by_account`` reads the portfolio in chunks of whole accounts (ranges of ``account_id``) from one
consistent view, reading the next chunks while the caller computes on this one: two SQLite workers
whose read transactions were started under one write lock (``_one_snapshot``), or two PostgreSQL
connections on one exported snapshot, each reading every other chunk.

``writing`` is one write transaction into which the caller hands frames as it makes them: the database
writes one while the caller prepares the next (an import checks its next slice of rows; the daily run
computes its next chunk). On SQLite it can be staged in temporary tables so that the write lock is held
only for the final copy; on PostgreSQL a load into an empty table builds its indexes once at the end.
Every append is put in the order of the table's key first (``_key_sorted``).

Every frame is cast to its schema on the way out: dates as ``Date``, money as ``Int64``, instants as UTC
``Datetime``; SQLite's ISO text dates and 0/1 booleans are parsed, and written back the same way, as
SQLAlchemy stores them, so Core queries and frames see the same rows.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import IO, Any, Protocol, cast

import adbc_driver_manager
import adbc_driver_postgresql.dbapi as adbc_postgresql
import polars as pl
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Delete,
    Dialect,
    Engine,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Select,
    SmallInteger,
    String,
    Table,
    TextClause,
    and_,
    delete,
    func,
    select,
    text,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.types import TypeEngine

from duecourse.store.db import Backend, StoreConflict, StoreError, backend_of
from duecourse.store.tables import accounts, metadata, snapshots

Schema = Mapping[str, pl.DataType]
Source = str | Table | Select[Any] | TextClause
Statement = Select[Any] | TextClause
# Runs a statement and returns its rows as a frame; the schema hints SQLite how to build the columns.
Fetch = Callable[[Statement, Schema], pl.DataFrame]

UTC_INSTANT = pl.Datetime("us", "UTC")

# Rows per batch between the SQLite driver and Polars: bounds the Python objects alive at once.
_SQLITE_BATCH_ROWS = 100_000
# How SQLAlchemy stores a DateTime in SQLite (UTC wall time, see tables.UtcDateTime).
_SQLITE_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S%.6f"
_SQLITE_DATETIME_PARSE = "%Y-%m-%d %H:%M:%S%.f"
_INCOMING_KEYS = "duecourse_incoming_keys"

# Workers reading the portfolio at once on SQLite (see _one_snapshot): 2, one per core.
SQLITE_READERS = 2
# Connections reading the portfolio at once on PostgreSQL, the second on the first's exported snapshot
# (``SET TRANSACTION SNAPSHOT``, as pg_dump --jobs does): 19.0 s against 19.9 s for a run of 1,000,000
# accounts (docs/performance.md); the server's and the client's decoding then share both cores.
PG_READERS = 2
# A reading worker's page cache: its reads go through the file once, in order, so the operating system's
# cache serves them as well; the worker's default (for the index upkeep of large writes) is 256 MiB,
# which each reader would fill with pages it does not read again.
_READER_CACHE_KIB = 16_384
# At or above this many rows, a frame is written to SQLite (or its keys looked up) through the worker.
BULK_MIN_ROWS = 50_000
# Above this many accounts, ``read_by_account`` reads SQLite through the worker.
BULK_MIN_ACCOUNTS = 5_000
_WORKER_SCRIPT = Path(__file__).with_name("_sqlite_worker.py")
# The worker drops the rows marked 1 in this column (see _typed_sqlite).
_TYPED_MARK = "__typed"
# How long the worker may take to stop once its input is closed, before it is killed.
_WORKER_STOP_SECONDS = 60


# --- types ------------------------------------------------------------------------------------------


def polars_dtype(sa_type: TypeEngine[Any]) -> pl.DataType:
    """The frame dtype of a column type: Date → Date, BigInteger → Int64, Integer → Int32, ..."""
    impl = getattr(sa_type, "impl_instance", sa_type)
    if isinstance(impl, Boolean):
        return pl.Boolean()
    if isinstance(impl, BigInteger):
        return pl.Int64()
    if isinstance(impl, SmallInteger):
        return pl.Int16()
    if isinstance(impl, Integer):
        return pl.Int32()
    if isinstance(impl, Float):
        return pl.Float64()
    if isinstance(impl, DateTime):
        return UTC_INSTANT if impl.timezone else pl.Datetime("us")
    if isinstance(impl, Date):
        return pl.Date()
    if isinstance(impl, String):
        return pl.String()
    if isinstance(impl, LargeBinary):
        return pl.Binary()
    raise TypeError(f"no frame dtype for column type {sa_type!r}")


def table_schema(table: Table) -> dict[str, pl.DataType]:
    """The frame schema of a table, in column order."""
    return {column.name: polars_dtype(column.type) for column in table.columns}


def _select_schema(stmt: Select[Any]) -> dict[str, pl.DataType] | None:
    schema: dict[str, pl.DataType] = {}
    for column in stmt.selected_columns:
        name = getattr(column, "name", None)
        if not isinstance(name, str):
            return None
        try:
            schema[name] = polars_dtype(column.type)
        except TypeError:
            return None
    return schema


@cache
def _known_columns() -> dict[str, pl.DataType]:
    """Column names that mean one dtype in every table that has them (``as_of`` is always a Date)."""
    seen: dict[str, set[pl.DataType]] = {}
    for table in metadata.tables.values():
        for name, dtype in table_schema(table).items():
            seen.setdefault(name, set()).add(dtype)
    return {name: next(iter(dtypes)) for name, dtypes in seen.items() if len(dtypes) == 1}


def _typed_like_stored(frame: pl.DataFrame) -> pl.DataFrame:
    known = _known_columns()
    schema = {name: known.get(name, dtype) for name, dtype in frame.schema.items()}
    return conform(frame, schema)


def table_named(name: str) -> Table:
    """The table called ``name``."""
    table = metadata.tables.get(name)
    if table is None:
        raise ValueError(f"no table named {name!r}; the tables are {sorted(metadata.tables)}")
    return table


def conform(frame: pl.DataFrame, schema: Schema) -> pl.DataFrame:
    """``frame`` with exactly the columns of ``schema``, in its order and dtypes (SQLite's text parsed)."""
    missing = [name for name in schema if name not in frame.columns]
    if missing:
        raise StoreError(f"the result lacks the columns {missing}; it has {frame.columns}")
    return frame.select(_cast(name, frame.schema[name], dtype) for name, dtype in schema.items())


def _cast(name: str, source: pl.DataType, target: pl.DataType) -> pl.Expr:
    column = pl.col(name)
    if source == target:
        return column
    if isinstance(source, pl.String) and isinstance(target, pl.Date):
        return column.str.to_date("%Y-%m-%d", strict=True)
    if isinstance(target, pl.Datetime):
        if isinstance(source, pl.String):
            column = column.str.to_datetime(_SQLITE_DATETIME_PARSE, time_unit="us", strict=True)
            source = pl.Datetime("us")
        if isinstance(source, pl.Datetime) and target.time_zone:
            if source.time_zone is None:
                column = column.dt.replace_time_zone("UTC")
            column = column.dt.convert_time_zone(target.time_zone)
    return column.cast(target, strict=True)


# --- connections and errors -------------------------------------------------------------------------


def _pg_uri(engine: Engine) -> str:
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def _adbc_postgresql(engine: Engine) -> Iterator[Any]:
    """An ADBC connection to the engine's PostgreSQL database, in autocommit mode."""
    try:
        connection = adbc_postgresql.connect(_pg_uri(engine), autocommit=True)
    except adbc_driver_manager.Error as exc:
        raise StoreError(f"cannot connect to {engine.url!r}: {exc}") from exc
    try:
        yield connection
    finally:
        connection.close()


def _sqlite3(connection: Connection) -> sqlite3.Connection:
    return cast(sqlite3.Connection, connection.connection.driver_connection)


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """Database errors become StoreConflict (a key or a constraint) or StoreError."""
    try:
        yield
    except (sqlite3.IntegrityError, sa_exc.IntegrityError) as exc:
        raise StoreConflict(f"{what}: {exc}") from exc
    except adbc_driver_manager.IntegrityError as exc:
        raise StoreConflict(f"{what}: {exc}") from exc
    except (sqlite3.Error, adbc_driver_manager.Error, sa_exc.DBAPIError) as exc:
        raise StoreError(f"{what}: {exc}") from exc


class _SqliteWorker:
    """A worker process (``_sqlite_worker.py``) serving one SQLite file, and a private folder for the Arrow
    files the two exchange. Requests are answered in order; ``send`` and ``receive`` may be apart, so that
    the worker reads while this process computes."""

    def __init__(self, path: str) -> None:
        self._folder = Path(tempfile.mkdtemp(prefix="duecourse-sqlite-"))
        self._names = itertools.count()
        self._stderr: IO[bytes] = (self._folder / "stderr").open("w+b")
        self._process = subprocess.Popen(
            [sys.executable, str(_WORKER_SCRIPT), path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )

    def file(self) -> Path:
        """A new file name in the private folder."""
        return self._folder / f"{next(self._names)}.arrow"

    def send(self, request: Mapping[str, Any]) -> None:
        stdin = self._process.stdin
        if stdin is None:  # pragma: no cover - always a pipe
            raise StoreError("the SQLite worker has no input")
        try:
            stdin.write(json.dumps(request).encode() + b"\n")
            stdin.flush()
        except OSError as exc:
            raise StoreError(f"the SQLite worker stopped: {self._last_words()}") from exc

    def receive(self) -> int:
        """The answer to the oldest request not yet answered: rows counted, or its error raised."""
        stdout = self._process.stdout
        line = stdout.readline() if stdout is not None else b""
        if not line:
            self._process.wait(_WORKER_STOP_SECONDS)
            raise StoreError(f"the SQLite worker stopped: {self._last_words()}")
        reply = json.loads(line)
        if reply["ok"]:
            return int(reply["rows"])
        if reply["kind"] == "conflict":
            raise StoreConflict(reply["message"])
        raise StoreError(reply["message"])

    def call(self, request: Mapping[str, Any]) -> int:
        self.send(request)
        return self.receive()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.call({"op": "execute", "sql": sql, "params": list(params)})

    def send_query(
        self,
        sql: str,
        params: Sequence[Any],
        schema: Schema,
        *,
        typed: bool = False,
        nulls: Mapping[str, int | str] | None = None,
    ) -> Path:
        """Ask for the rows of ``sql`` (typed by ``schema``); ``receive`` then ``take`` the returned file.
        ``nulls``: column -> the value the SQL reads in place of a null (see ``Ranged.nulls``), which the
        worker turns back into a null."""
        out = self.file()
        query = sql if typed else _typed_sqlite(sql, schema)
        # The worker parses the dates (ISO text in SQLite) into Arrow dates: less to hand over, and
        # parsed in less time than here (see _sqlite_worker._query).
        dates = [name for name, dtype in schema.items() if isinstance(dtype, pl.Date)]
        request: dict[str, Any] = {
            "op": "query",
            "sql": query,
            "params": list(params),
            "out": str(out),
            "dates": dates,
        }
        if nulls:
            request["nulls"] = dict(nulls)
        self.send(request)
        return out

    def query(
        self,
        sql: str,
        params: Sequence[Any],
        schema: Schema,
        *,
        typed: bool = False,
        nulls: Mapping[str, int | str] | None = None,
    ) -> pl.DataFrame:
        """The rows of ``sql`` as a frame of ``schema``; ``typed``: the SQL fixes its own column types
        (it starts with a marked row, see ``_typed_sqlite``, or no column can start with a null)."""
        out = self.send_query(sql, params, schema, typed=typed, nulls=nulls)
        self.receive()
        return self.take(out, schema)

    def take(self, out: Path, schema: Schema) -> pl.DataFrame:
        """The frame the worker wrote to ``out``, cast to ``schema``; the file is removed."""
        try:
            frame = pl.read_ipc(out)
        finally:
            out.unlink(missing_ok=True)
        return conform(frame, schema)

    def ingest(self, table_name: str, frame: pl.DataFrame, *, temporary: bool = False) -> int:
        """Append ``frame`` (already in SQLite's stored form) to a table, or create a temporary one."""
        path = self.file()
        try:
            frame.write_ipc(path, compat_level=pl.CompatLevel.oldest())
            request = {"op": "ingest", "table": table_name, "path": str(path)}
            return self.call(request | {"temporary": temporary, "create": temporary})
        finally:
            path.unlink(missing_ok=True)

    def close(self) -> None:
        """Close its input (it rolls back what was not committed) and wait for it; then remove the folder."""
        try:
            if self._process.stdin is not None:
                self._process.stdin.close()
            self._process.wait(_WORKER_STOP_SECONDS)
        except (OSError, subprocess.TimeoutExpired):  # pragma: no cover - a worker that hangs is killed
            self._process.kill()
            self._process.wait()
        finally:
            if self._process.stdout is not None:
                self._process.stdout.close()
            self._stderr.close()
            shutil.rmtree(self._folder, ignore_errors=True)

    def _last_words(self) -> str:
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace").strip()
        return text[-2000:] or f"exit status {self._process.poll()}"


@contextmanager
def _sqlite_worker(engine: Engine, *, cache_kib: int | None = None) -> Iterator[_SqliteWorker]:
    """A worker process for the engine's SQLite file (``cache_kib``: its page cache, if not the
    worker's default), stopped on the way out."""
    database = engine.url.database
    if not database:  # pragma: no cover - db.normalize_url refuses SQLite without a file
        raise StoreError("SQLite without a file has no worker")
    worker = _SqliteWorker(os.path.abspath(database))
    try:
        if cache_kib is not None:
            worker.execute(f"PRAGMA cache_size = -{int(cache_kib)}")
        yield worker
    finally:
        worker.close()


def _typed_sqlite(sql: str, schema: Schema) -> str:
    """``sql`` behind one first row that gives each column its type, marked for the worker to drop.

    The ADBC SQLite driver types a column by the values of its first batch of rows and fails on a later
    value of another type, so a column that starts with nulls (``posted_on``, ``minimum_minor``) would
    break a read. The first row holds a value of each column's stored type ('' for text and dates, 0 for
    integers and booleans, 0.0 for floats).
    """
    columns = ", ".join(f"q.{_quoted(name)}" for name in schema)
    return f"{_typed_first_row(schema)} UNION ALL SELECT {columns}, 0 FROM ({sql}) AS q"


def _typed_first_row(schema: Schema) -> str:
    first = ", ".join(f"{_typed_literal(dtype)} AS {_quoted(name)}" for name, dtype in schema.items())
    return f"SELECT {first}, 1 AS {_TYPED_MARK}"


def _typed_literal(dtype: pl.DataType) -> str:
    stored = _sqlite_storage_dtype(dtype)
    if isinstance(stored, pl.String):
        return "''"
    if stored.is_float():
        return "0.0"
    return "0"


# --- statements -------------------------------------------------------------------------------------


@cache
def _positional_dialect(backend: Backend) -> Dialect:
    # The engine's psycopg dialect renders %(name)s; ADBC binds $1, the SQLite driver ?.
    if backend == "postgresql":
        return PGDialect_psycopg(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]
    return SQLiteDialect_pysqlite(paramstyle="qmark")


def _compile(backend: Backend, stmt: Statement | Delete) -> tuple[str, list[Any]]:
    """The statement as SQL with positional parameters, in the form each backend's driver binds."""
    compiled = stmt.compile(dialect=_positional_dialect(backend), compile_kwargs={"render_postcompile": True})
    values = compiled.construct_params()
    params = [values[name] for name in compiled.positiontup or []]
    if backend == "sqlite":
        params = [_sqlite_value(value) for value in params]
    return compiled.string, params


def _sqlite_value(value: Any) -> Any:
    # As SQLAlchemy stores them in SQLite: ISO dates, UTC wall-time text, 0/1.
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    return value


def _statement(
    source: Source, params: Mapping[str, Any] | None
) -> tuple[Statement, dict[str, pl.DataType] | None]:
    if isinstance(source, str):
        source = metadata.tables[source] if source in metadata.tables else text(source)
    if isinstance(source, Table):
        source = select(source)
    if isinstance(source, TextClause):
        return (source.bindparams(**params) if params else source), None
    stmt = source.params(**params) if params else source
    return stmt, _select_schema(stmt)


# --- reading ----------------------------------------------------------------------------------------


def _sqlite_storage_dtype(dtype: pl.DataType) -> pl.DataType:
    """The dtype in which SQLite's driver returns a column of ``dtype``."""
    if isinstance(dtype, pl.Date | pl.Datetime):
        return pl.String()
    if isinstance(dtype, pl.Boolean | pl.Int16 | pl.Int32):
        return pl.Int64()
    return dtype


def _sqlite_rows_frame(
    raw: sqlite3.Connection, query: str, params: Sequence[Any], hint: Schema
) -> pl.DataFrame:
    """Run ``query`` on Python's ``sqlite3`` and gather its rows into a frame, in batches.

    Columns named in ``hint`` are typed as SQLite's driver returns that dtype; the others are inferred.
    """
    cursor = raw.cursor()
    try:
        cursor.execute(query, list(params))
        names = [column[0] for column in cursor.description]
        overrides = {name: _sqlite_storage_dtype(hint[name]) for name in names if name in hint}
        parts = []
        while rows := cursor.fetchmany(_SQLITE_BATCH_ROWS):
            parts.append(
                pl.DataFrame(
                    rows, schema=names, schema_overrides=overrides, orient="row", infer_schema_length=None
                )
            )
    finally:
        cursor.close()
    if not parts:
        return pl.DataFrame(schema=names, schema_overrides=overrides)
    return pl.concat(parts, how="vertical_relaxed")


def _sqlite_fetch(raw: sqlite3.Connection) -> Fetch:
    def fetch(stmt: Statement, hint: Schema) -> pl.DataFrame:
        query, params = _compile("sqlite", stmt)
        return _sqlite_rows_frame(raw, query, params, hint)

    return fetch


def _postgresql_fetch(adbc: Any) -> Fetch:
    def fetch(stmt: Statement, _hint: Schema) -> pl.DataFrame:
        query, params = _compile("postgresql", stmt)
        with adbc.cursor() as cursor:
            cursor.execute(query, params or None)
            frame = pl.from_arrow(cursor.fetch_arrow_table())
        if not isinstance(frame, pl.DataFrame):  # pragma: no cover - a table always gives a frame
            raise StoreError("the database returned no table")
        return frame

    return fetch


@contextmanager
def _reading(engine: Engine, *, consistent: bool = False) -> Iterator[tuple[Backend, Any, Fetch]]:
    """A connection to read through; ``consistent``: every read sees the same state of the database."""
    backend = backend_of(engine)
    if backend == "postgresql":
        with _adbc_postgresql(engine) as adbc:
            if not consistent:
                yield backend, adbc, _postgresql_fetch(adbc)
                return
            with adbc.cursor() as cursor:
                cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                yield backend, adbc, _postgresql_fetch(adbc)
            finally:
                with adbc.cursor() as cursor:
                    cursor.execute("COMMIT")
        return
    with engine.connect() as connection:
        raw = _sqlite3(connection)
        if consistent:
            raw.execute("BEGIN")  # deferred: a read transaction, one snapshot in WAL mode
        yield backend, raw, _sqlite_fetch(raw)


def _read(fetch: Fetch, stmt: Statement, schema: Schema | None, derived: Schema | None) -> pl.DataFrame:
    wanted = schema if schema is not None else derived
    frame = fetch(stmt, wanted if wanted is not None else _known_columns())
    return conform(frame, wanted) if wanted is not None else _typed_like_stored(frame)


def read_frame(
    engine: Engine,
    sql_or_table: Source,
    params: Mapping[str, Any] | None = None,
    schema: Schema | None = None,
    *,
    bulk: bool = False,
) -> pl.DataFrame:
    """Read a table or a query into a frame, typed by ``schema``.

    ``sql_or_table`` is a table name, a ``Table``, a Core ``select()`` or SQL text with ``:name``
    parameters given in ``params``. Without ``schema``, a table or a ``select()`` is typed by its columns
    (dates as Date, money as Int64), and a column of SQL text that is named like a stored column
    (``account_id``, ``as_of``, ``amount_minor``, ...) takes that column's dtype; other columns of SQL text
    keep the type the database gave them, so SQL text that computes dates should pass a ``schema``.

    ``bulk``: many rows are expected; on SQLite they are read through the worker process (about 0.3 s to
    start, then about 4 times as fast as the standard driver). SQL text needs a ``schema`` for it.
    """
    stmt, derived = _statement(sql_or_table, params)
    wanted = schema if schema is not None else derived
    with _translated("reading a frame"):
        if bulk and wanted is not None and backend_of(engine) == "sqlite":
            query, positional = _compile("sqlite", stmt)
            with _sqlite_worker(engine) as worker:
                return worker.query(query, positional, wanted)
        with _reading(engine) as (_backend, _connection, fetch):
            return _read(fetch, stmt, schema, derived)


def read_frames(
    engine: Engine, sources: Mapping[str, Source], *, bulk: bool = False
) -> dict[str, pl.DataFrame]:
    """Read several tables or queries from one consistent view of the database (one read transaction).

    ``bulk``: as in ``read_frame``; on SQLite every source must then be a table or a Core ``select()``.
    """
    statements = {name: _statement(source, None) for name, source in sources.items()}
    if bulk and backend_of(engine) == "sqlite":
        untyped = [name for name, (_stmt, derived) in statements.items() if derived is None]
        if untyped:
            raise ValueError(f"a bulk read needs tables or select()s; {untyped} are SQL text")
        with _translated("reading frames"), _sqlite_worker(engine) as worker:
            worker.execute("BEGIN")  # deferred: the first read takes the snapshot every later read sees
            try:
                return {
                    name: worker.query(*_compile("sqlite", stmt), cast(Schema, derived))
                    for name, (stmt, derived) in statements.items()
                }
            finally:
                with suppress(StoreError):  # a worker that failed is stopped next, which rolls back
                    worker.execute("ROLLBACK")
    with _translated("reading frames"), _reading(engine, consistent=True) as (_backend, _connection, fetch):
        return {name: _read(fetch, stmt, None, derived) for name, (stmt, derived) in statements.items()}


def read_matching(engine: Engine, table_name: str, keys: pl.DataFrame) -> pl.DataFrame:
    """The stored rows of ``table_name`` whose key columns match a row of ``keys``.

    The keys go to a temporary table and are joined in the database, so a large import does not pull the
    whole stored table across.
    """
    table = table_named(table_name)
    schema = table_schema(table)
    key_names = list(keys.columns)
    unknown = [name for name in key_names if name not in schema]
    if not key_names or unknown:
        raise ValueError(f"{table_name} has no key columns {unknown or key_names}")
    if keys.is_empty() or _is_empty(engine, table):  # a first import needs no lookup at all
        return pl.DataFrame(schema=schema)
    wanted = keys.select(pl.col(name).cast(schema[name], strict=True) for name in key_names).unique()
    if backend_of(engine) == "sqlite" and wanted.height >= BULK_MIN_ROWS:
        with _translated(f"reading stored {table_name}"), _sqlite_worker(engine) as worker:
            return _read_matching_in_worker(worker, table, wanted)
    incoming = Table(_INCOMING_KEYS, MetaData(), *(Column(name, table.c[name].type) for name in key_names))
    stmt = select(table).join(incoming, and_(*(table.c[name] == incoming.c[name] for name in key_names)))
    with _translated(f"reading stored {table_name}"), _reading(engine) as (backend, connection, fetch):
        if backend == "postgresql":
            with connection.cursor() as cursor:
                arrow = wanted.to_arrow(compat_level=pl.CompatLevel.oldest())
                cursor.adbc_ingest(_INCOMING_KEYS, arrow, mode="create", temporary=True)
            return conform(fetch(stmt, schema), schema)
        raw = cast(sqlite3.Connection, connection)
        raw.execute(f"DROP TABLE IF EXISTS temp.{_INCOMING_KEYS}")
        raw.execute(f"CREATE TEMP TABLE {_INCOMING_KEYS} ({', '.join(_quoted(n) for n in key_names)})")
        try:
            raw.executemany(
                f"INSERT INTO temp.{_INCOMING_KEYS} VALUES ({', '.join('?' for _ in key_names)})",
                _sqlite_rows(wanted),
            )
            return conform(fetch(stmt, schema), schema)
        finally:
            raw.rollback()
            raw.execute(f"DROP TABLE IF EXISTS temp.{_INCOMING_KEYS}")


def _is_empty(engine: Engine, table: Table) -> bool:
    with _translated(f"reading {table.name}"), engine.connect() as connection:
        return connection.execute(select(text("1")).select_from(table).limit(1)).first() is None


def _read_matching_in_worker(worker: _SqliteWorker, table: Table, keys: pl.DataFrame) -> pl.DataFrame:
    """The stored rows of ``table`` whose key is a row of ``keys``: the keys go to a temporary table."""
    names = [_quoted(name) for name in keys.columns]
    columns = ", ".join(f"t.{_quoted(name)}" for name in table.c.keys())
    on = " AND ".join(f"t.{name} = k.{name}" for name in names)
    # CROSS JOIN keeps the incoming keys as the outer loop: one probe of the key's index per incoming row,
    # whatever the sizes (the planner has no statistics on the temporary table).
    sql = f"SELECT {columns} FROM temp.{_INCOMING_KEYS} AS k CROSS JOIN {_quoted(table.name)} AS t ON {on}"
    worker.execute("BEGIN")
    try:
        worker.execute(f"DROP TABLE IF EXISTS temp.{_INCOMING_KEYS}")
        worker.ingest(_INCOMING_KEYS, _sqlite_stored(keys), temporary=True)
        return worker.query(sql, (), table_schema(table))
    finally:
        with suppress(StoreError):  # a worker that failed is stopped next, which rolls back
            worker.execute("ROLLBACK")


# --- reading by account -----------------------------------------------------------------------------


# Reads one query into a frame typed by the schema: fetch(sql, params, schema).
class _RangeFetch(Protocol):
    """Reads the rows of a range query as a frame of ``schema``; ``nulls`` as in ``Ranged.nulls``, when
    the query reads those values in place of nulls (only in the SQLite worker, see ``_range_query``)."""

    def __call__(
        self, sql: str, params: Sequence[Any], schema: Schema, nulls: Mapping[str, int | str] | None = None
    ) -> pl.DataFrame: ...


def _pg_text(value: str) -> str:
    """A PostgreSQL string literal (the session sets standard_conforming_strings, so only ' is doubled)."""
    if "\x00" in value:
        raise StoreError("a text value holds a NUL character, which PostgreSQL cannot store")
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class Ranged:
    """What ``read_by_account`` reads of a table in each range of accounts: some of its columns (None:
    all), of the rows whose columns equal ``equal`` (e.g. the snapshots of one day).

    Attributes:
        table: a table with an ``account_id`` column.
        columns: the columns to read, in this order.
        equal: column -> value (a date, a text or an integer), all of which a row must equal.
        joined: (another table, the key column both have, its columns to read after ours): each row
            with the columns of the other table's row of the same key (null where there is none), e.g.
            the accounts with their customer's jurisdiction.
        order_by: in the SQLite worker, and on PostgreSQL where these columns sort by their bytes
            (``_pg_byte_ordered``), the rows come sorted by these columns of the table in the order of
            their UTF-8 bytes (as Polars sorts text; an index should serve it, e.g. the primary
            key's), and ``unread_in_order`` is not read; elsewhere (SQLite's standard driver, a
            PostgreSQL database of another collation) the rows come in the order the database reads
            them, with every column.
        unread_in_order: columns of ``columns`` that a read in ``order_by``'s order leaves out (their
            use is the order, e.g. the dues' ids for the engine).
        nulls: nullable column -> a value it never holds, read in place of its nulls in the SQLite
            worker and turned back into null there. The worker's reads fix their column types by a
            first row (``_typed_sqlite``), which cannot stand before an ``ORDER BY``; a read with
            ``order_by`` therefore needs a value here for each nullable column it reads (a column that
            is never null needs neither, and reads a little cheaper: about 0.05 CPU s a million values
            for a nullable integer, more for a nullable date).
    """

    table: Table
    columns: tuple[str, ...] | None = None
    equal: Mapping[str, dt.date | str | int] = field(default_factory=dict)
    joined: tuple[Table, str, tuple[str, ...]] | None = None
    order_by: tuple[str, ...] = ()
    unread_in_order: tuple[str, ...] = ()
    nulls: Mapping[str, int | str] = field(default_factory=dict)

    def nullable(self, *, ordered: bool = False) -> list[str]:
        """The columns read that may be null (the joined ones always: a row may have no match)."""
        theirs = self.joined[2] if self.joined is not None else ()
        return [
            name
            for name in self.schema(ordered=ordered)
            if name in theirs or bool(self.table.c[name].nullable)
        ]

    def schema(self, *, ordered: bool = False) -> dict[str, pl.DataType]:
        """The columns read, and their types; ``ordered``: of a read in ``order_by``'s order."""
        whole = table_schema(self.table)
        names = self.columns or tuple(whole)
        if ordered and self.order_by:
            names = tuple(name for name in names if name not in self.unread_in_order)
        own = {name: whole[name] for name in names}
        if self.joined is None:
            return own
        other, _, columns = self.joined
        theirs = table_schema(other)
        return own | {name: theirs[name] for name in columns}


def _range_query(
    backend: Backend,
    source: Ranged,
    low: str | None,
    high: str | None,
    *,
    typed: bool = False,
    ordered: bool = False,
) -> tuple[str, list[Any], dict[str, int | str]]:
    """The rows of ``source`` with ``low <= account_id < high`` (a missing bound: no limit that side),
    and the values read in place of nulls (``Ranged.nulls``; only when ``typed``). ``ordered``: in the
    order of ``source.order_by`` (if any), without ``source.unread_in_order``.

    ``typed`` (SQLite): after a first row that fixes the column types (``_typed_sqlite``), in a compound
    of two plain selects rather than behind a subquery, which SQLite would run as a co-routine (about a
    third slower on a large range). Where each nullable column has a value in ``source.nulls``, no first
    row is needed: those values are read in place of the nulls instead (and an ``ORDER BY`` may follow).
    """
    ordered = ordered and bool(source.order_by)
    schema = source.schema(ordered=ordered)
    nullable = source.nullable(ordered=ordered)
    stand_ins = {name: source.nulls[name] for name in nullable if name in source.nulls} if typed else {}
    first_row = typed and len(stand_ins) < len(nullable)
    if first_row and ordered:
        raise ValueError(f"an ordered read of {source.table.name} needs Ranged.nulls for {nullable}")

    def read(name: str, qualified: str) -> str:
        if name not in stand_ins:
            return qualified
        value = stand_ins[name]
        literal = str(int(value)) if isinstance(value, int) else "'" + value.replace("'", "''") + "'"
        return f"ifnull({qualified}, {literal}) AS {_quoted(name)}"

    if source.joined is None:
        columns = ", ".join(read(name, _quoted(name)) for name in schema)
        qualify = ""
        source_sql = _quoted(source.table.name)
    else:
        other, key, theirs = source.joined
        columns = ", ".join(
            read(name, f"{'j' if name in theirs else 't'}.{_quoted(name)}") for name in schema
        )
        qualify = "t."
        source_sql = (
            f"{_quoted(source.table.name)} AS t LEFT JOIN {_quoted(other.name)} AS j "
            f"ON j.{_quoted(key)} = t.{_quoted(key)}"
        )
    if first_row:
        columns = f"{columns}, 0"
    conditions: list[str] = []
    params: list[Any] = []
    for name, value in source.equal.items():
        if backend == "postgresql":
            text_value = value.isoformat() if isinstance(value, dt.date) else str(value)
            conditions.append(f"{qualify}{_quoted(name)} = {_pg_text(text_value)}")
        else:
            conditions.append(f"{qualify}{_quoted(name)} = ?")
            params.append(_sqlite_value(value))
    for op, bound in ((">=", low), ("<", high)):
        if bound is None:
            continue
        if backend == "postgresql":
            conditions.append(f'{qualify}"account_id" {op} {_pg_text(bound)}')
        else:
            conditions.append(f'{qualify}"account_id" {op} ?')
            params.append(bound)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    query = f"SELECT {columns} FROM {source_sql}{where}"
    if ordered:
        query += " ORDER BY " + ", ".join(f"{qualify}{_quoted(name)}" for name in source.order_by)
    if first_row:
        query = f"{_typed_first_row(schema)} UNION ALL {query}"
    return query, params, stand_ins


@contextmanager
def _range_reader(engine: Engine, *, in_worker: bool) -> Iterator[tuple[list[_RangeFetch], bool]]:
    """A consistent view to read ranges from: (one or more fetches, each usable from a thread of its own
    at the same time as the others; whether they may run in threads at all)."""
    backend = backend_of(engine)
    if backend == "postgresql":
        with ExitStack() as stack:
            connections = [stack.enter_context(_adbc_postgresql(engine)) for _ in range(PG_READERS)]
            snapshot = None
            for adbc in connections:
                with adbc.cursor() as cursor:
                    cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    if snapshot is None and len(connections) > 1:
                        cursor.execute("SELECT pg_export_snapshot()")
                        snapshot = cursor.fetchone()[0]
                    elif snapshot is not None:
                        cursor.execute(f"SET TRANSACTION SNAPSHOT {_pg_text(snapshot)}")
                    cursor.execute("SET LOCAL standard_conforming_strings = on")
            try:
                yield [_pg_fetch(adbc) for adbc in connections], True
            finally:
                for adbc in connections:
                    with adbc.cursor() as cursor:
                        cursor.execute("COMMIT")
        return
    if in_worker:
        with ExitStack() as stack:
            first = stack.enter_context(_sqlite_worker(engine, cache_kib=_READER_CACHE_KIB))
            readers = [first]
            if SQLITE_READERS > 1:
                second = stack.enter_context(_sqlite_worker(engine, cache_kib=_READER_CACHE_KIB))
                if _one_snapshot(engine, first, second):
                    readers.append(second)
            if len(readers) == 1:
                first.execute("BEGIN")  # deferred: the first read takes the snapshot every later read sees
            try:
                yield [_worker_fetch(worker) for worker in readers], True
            finally:
                for worker in readers:
                    with suppress(StoreError):  # a worker that failed is stopped next, which rolls back
                        worker.execute("ROLLBACK")
        return
    with engine.connect() as connection:
        raw = _sqlite3(connection)
        raw.execute("BEGIN")
        try:
            yield [_sqlite_text_fetch(raw)], False
        finally:
            raw.rollback()


def _pg_fetch(adbc: Any) -> _RangeFetch:
    def fetch(
        sql: str, params: Sequence[Any], schema: Schema, nulls: Mapping[str, int | str] | None = None
    ) -> pl.DataFrame:
        del nulls  # only the worker's queries read stand-ins for nulls
        with adbc.cursor() as cursor:
            cursor.execute(sql, list(params) or None)
            frame = pl.from_arrow(cursor.fetch_arrow_table())
        if not isinstance(frame, pl.DataFrame):  # pragma: no cover - a table always gives a frame
            raise StoreError("the database returned no table")
        return conform(frame, schema)

    return fetch


def _worker_fetch(worker: _SqliteWorker) -> _RangeFetch:
    def fetch(
        sql: str, params: Sequence[Any], schema: Schema, nulls: Mapping[str, int | str] | None = None
    ) -> pl.DataFrame:
        return worker.query(sql, params, schema, typed=True, nulls=nulls)

    return fetch


def _one_snapshot(engine: Engine, first: _SqliteWorker, second: _SqliteWorker) -> bool:
    """Start a read transaction in both workers on the same snapshot of the file, or in neither (False).

    Reading is most of a run on SQLite and one worker reads on one core, so two workers read alternate
    chunks. Each has its own connection, and a WAL read transaction sees the file as of its first read;
    the two first reads are made while this process holds the write lock (``BEGIN IMMEDIATE``), so that
    no commit can fall between them. The lock is only tried, never waited for: when another writer holds
    it (an import), the run reads with one worker rather than wait.
    """
    database = engine.url.database
    if not database:  # pragma: no cover - db.normalize_url refuses SQLite without a file
        return False
    lock = sqlite3.connect(database, timeout=0, isolation_level=None)
    try:
        try:
            lock.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:  # busy: another writer
            return False
        try:
            for worker in (first, second):
                worker.execute("BEGIN")
                worker.query(_FIRST_READ, (), {"n": pl.Int64()}, typed=True)
        finally:
            lock.execute("ROLLBACK")
    finally:
        lock.close()
    return True


# Any read starts a WAL read transaction: its snapshot is the file as of this read.
_FIRST_READ = "SELECT count(*) AS n FROM sqlite_master"


def _sqlite_text_fetch(raw: sqlite3.Connection) -> _RangeFetch:
    def fetch(
        sql: str, params: Sequence[Any], schema: Schema, nulls: Mapping[str, int | str] | None = None
    ) -> pl.DataFrame:
        del nulls  # only the worker's queries read stand-ins for nulls
        return conform(_sqlite_rows_frame(raw, sql, params, schema), schema)

    return fetch


# Whether each of the columns sorts by its bytes on this PostgreSQL database: its collation is "C" or
# "POSIX", or the database's default and that a libc C locale (C.UTF-8 sorts by code point, which is the
# order of the UTF-8 bytes). ICU and other locales sort otherwise (and "C" spelt out in the ORDER BY
# would not be served by the index: a sort of the range instead).
_PG_BYTE_ORDERED = """
SELECT count(*) = cardinality(%(columns)s::text[]) AND coalesce(bool_and(
    CASE
        WHEN c.collname IN ('C', 'POSIX') THEN true
        WHEN c.collname = 'default' THEN (
            SELECT d.datcollate IN ('C', 'POSIX', 'C.UTF-8', 'C.utf8')
                AND coalesce(to_jsonb(d) ->> 'datlocprovider', 'c') = 'c'
            FROM pg_database AS d WHERE d.datname = current_database()
        )
        ELSE false
    END
), false)
FROM pg_attribute AS a JOIN pg_collation AS c ON c.oid = a.attcollation
WHERE a.attrelid = to_regclass(%(table)s) AND a.attname = ANY(%(columns)s::text[])
"""


def _pg_byte_ordered(engine: Engine, table: str, columns: Sequence[str]) -> bool:
    """Whether ``ORDER BY columns`` of ``table`` on this PostgreSQL database is the order of their UTF-8
    bytes (False for a column that is not text, or not there)."""
    with engine.connect() as connection:
        raw = connection.connection.driver_connection
        if raw is None:  # pragma: no cover - a live connection always has its driver's
            return False
        with raw.cursor() as cursor:
            cursor.execute(_PG_BYTE_ORDERED, {"table": table, "columns": list(columns)})
            row = cursor.fetchone()
    return bool(row and row[0])


def count_accounts(engine: Engine) -> int:
    """How many accounts are stored."""
    with _translated("counting accounts"), engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(accounts)).scalar_one())


def many_accounts(engine: Engine) -> bool:
    """Whether more than ``BULK_MIN_ACCOUNTS`` accounts are stored: reads of per-account rows should then be
    ``bulk`` (on SQLite the worker's start would cost more than it saves below that)."""
    return count_accounts(engine) > BULK_MIN_ACCOUNTS


def read_by_account(
    engine: Engine, tables: Mapping[str, Table | Ranged], accounts_per_chunk: int
) -> Iterator[dict[str, pl.DataFrame]]:
    """The rows of ``tables`` (each has an ``account_id``) in chunks of whole accounts, one frame per table
    (a ``Ranged`` reads some of a table's columns, of some of its rows, in the SQLite worker perhaps in
    an order and without some of them).

    The stored account ids, in the database's order, are cut every ``accounts_per_chunk`` ids; chunk k
    holds the rows with ``bound[k] <= account_id < bound[k + 1]``, the first chunk unbounded below and
    the last above, so that every row is in exactly one chunk (a due of an account that is not stored
    too). Every chunk comes from one consistent view of the database (one read transaction), and the
    next chunk is read while the caller works on this one: in a thread on PostgreSQL, in the worker
    process on SQLite (the standard driver for at most ``BULK_MIN_ACCOUNTS`` accounts). At least one
    chunk is yielded, empty frames for an empty database.
    """
    if accounts_per_chunk < 1:
        raise ValueError(f"need accounts_per_chunk >= 1, got {accounts_per_chunk}")
    backend = backend_of(engine)
    in_worker = backend == "sqlite" and many_accounts(engine)
    sources = {name: t if isinstance(t, Ranged) else Ranged(t) for name, t in tables.items()}
    ordered = {
        name: bool(source.order_by)
        and (
            in_worker
            or (backend == "postgresql" and _pg_byte_ordered(engine, source.table.name, source.order_by))
        )
        for name, source in sources.items()
    }
    schemas = {name: source.schema(ordered=ordered[name]) for name, source in sources.items()}
    with (
        _translated("reading the portfolio"),
        _range_reader(engine, in_worker=in_worker) as (fetches, threaded),
        ThreadPoolExecutor(len(fetches), thread_name_prefix="duecourse-read") as pool,
    ):
        ids = fetches[0](  # a primary key, never null: it needs no typed first row
            f'SELECT "account_id" FROM {_quoted(accounts.name)} ORDER BY "account_id"',
            (),
            {"account_id": pl.String()},
        ).get_column("account_id")
        cuts: list[str | None] = [None, *ids.gather_every(accounts_per_chunk).to_list()[1:], None]
        del ids

        def read(fetch: _RangeFetch, low: str | None, high: str | None) -> dict[str, pl.DataFrame]:
            frames: dict[str, pl.DataFrame] = {}
            for name, source in sources.items():
                sql, params, nulls = _range_query(
                    backend, source, low, high, typed=in_worker, ordered=ordered[name]
                )
                frames[name] = fetch(sql, params, schemas[name], nulls)
            return frames

        ranges = list(itertools.pairwise(cuts))
        if not threaded:
            for low, high in ranges:
                yield read(fetches[0], low, high)
            return
        # Chunk k is read by fetch k % n; chunk k + n is asked for once chunk k is taken, so that each
        # fetch has one read at a time and the chunks come out in order.
        pending: deque[Future[dict[str, pl.DataFrame]]] = deque()
        for k, (low, high) in enumerate(ranges):
            if len(pending) == len(fetches):
                chunk = pending.popleft().result()
                pending.append(pool.submit(read, fetches[k % len(fetches)], low, high))
                yield chunk
                del chunk
            else:
                pending.append(pool.submit(read, fetches[k % len(fetches)], low, high))
        while pending:
            yield pending.popleft().result()


# --- writing ----------------------------------------------------------------------------------------


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _prepared(table: Table, frame: pl.DataFrame) -> pl.DataFrame:
    schema = table_schema(table)
    unknown = [name for name in frame.columns if name not in schema]
    if unknown:
        raise ValueError(f"{table.name} has no columns {unknown}")
    return frame.select(
        pl.col(name).cast(dtype, strict=True) for name, dtype in schema.items() if name in frame.columns
    )


def _sqlite_stored(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame as SQLAlchemy stores it in SQLite: ISO text dates, 0/1, UTC wall-time text."""
    return frame.with_columns(
        pl.col(pl.Date).cast(pl.String),
        pl.col(pl.Boolean).cast(pl.Int64),
        pl.col(pl.Datetime).dt.convert_time_zone("UTC").dt.strftime(_SQLITE_DATETIME_FORMAT),
    )


def _sqlite_rows(frame: pl.DataFrame) -> Iterator[tuple[Any, ...]]:
    """The rows as the SQLite driver binds them, as SQLAlchemy stores them: ISO dates, 0/1, UTC text."""
    stored = _sqlite_stored(frame)
    for chunk in stored.iter_slices(_SQLITE_BATCH_ROWS):
        yield from zip(*(column.to_list() for column in chunk.get_columns()), strict=True)


def _insert_sqlite(connection: Connection, table: Table, frame: pl.DataFrame) -> None:
    columns = ", ".join(_quoted(name) for name in frame.columns)
    marks = ", ".join("?" for _ in frame.columns)
    cursor = _sqlite3(connection).cursor()
    try:
        cursor.executemany(
            f"INSERT INTO {_quoted(table.name)} ({columns}) VALUES ({marks})", _sqlite_rows(frame)
        )
    finally:
        cursor.close()


def append_in(connection: Connection, table_name: str, frame: pl.DataFrame) -> int:
    """Append ``frame`` to ``table_name`` inside the caller's transaction (columns by name, cast to the
    table's dtypes; absent ones take their defaults); returns the rows written.

    For the many rows of one write that must commit with others (a day's decisions and outbox rows): one
    ``executemany`` of Python's ``sqlite3`` on SQLite, a ``COPY … FROM STDIN`` on PostgreSQL, both on the
    caller's connection, without SQLAlchemy's per-row parameter processing (which took 40 of the 60 CPU
    seconds of planning 186,000 messages, docs/performance.md). A broken key raises the driver's error and
    the caller's transaction rolls back.
    """
    table = table_named(table_name)
    frame = _prepared(table, frame)
    if not frame.height:
        return 0
    if connection.dialect.name == "sqlite":
        _insert_sqlite(connection, table, frame)
        return frame.height
    driver = connection.connection.driver_connection
    if driver is None:
        raise StoreError("the connection to PostgreSQL is closed")
    columns = ", ".join(_quoted(name) for name in frame.columns)
    with driver.cursor() as cursor, cursor.copy(f"COPY {_quoted(table.name)} ({columns}) FROM STDIN") as copy:
        for row in frame.iter_rows():
            copy.write_row(row)
    return frame.height


def _key_sorted(table: Table, frame: pl.DataFrame) -> pl.DataFrame:
    """The rows in the order of the table's primary key (when the frame holds it), unless they already are.

    Rows in key order make each insert an append at the right edge of the key's B-tree: SQLite wrote
    12.2 million dues in 21 s in key order against 33 s in the order of the file (docs/performance.md);
    PostgreSQL builds an index faster from a heap in key order, and a range read by account then finds
    its rows together.
    """
    key = [column.name for column in table.primary_key.columns]
    if frame.height < 2 or not key or any(name not in frame.columns for name in key):
        return frame
    later = pl.lit(False)
    for name in reversed(key):
        column, previous = pl.col(name), pl.col(name).shift(1)
        later = (column > previous) | ((column == previous) & later)
    if frame.select(later.fill_null(True).all()).item():
        return frame
    return frame.sort(key)


# Requests a writer may have sent and not seen answered: one being written, one waiting, so that the
# writer is never idle while the caller prepares the next frame, and at most two frames are held for it.
_IN_FLIGHT = 2


class Writer(ABC):
    """Deletes and appends in one write transaction (``writing``), applied in the order they are called.

    On the bulk paths a call returns once its request is handed over, so that the database writes one
    frame while the caller prepares the next; an error of the database is raised by a later call, or when
    the ``writing`` block ends, and the whole transaction is rolled back.
    """

    @abstractmethod
    def delete(self, stmt: Delete) -> None:
        """Run a delete in the transaction."""

    @abstractmethod
    def append(self, table_name: str, frame: pl.DataFrame) -> None:
        """Append ``frame`` to ``table_name`` (columns by name, cast to the table's dtypes, in key order)."""

    def load_empty(self, table_name: str) -> None:  # noqa: B027 - a no-op but on PostgreSQL
        """Many rows are about to be appended to ``table_name``: on PostgreSQL, when the table is empty,
        its indexes and constraints are dropped now and built again at the end (see ``_PostgresWriter``).
        """

    @abstractmethod
    def commit(self) -> None:
        """Wait for every request (raising the first error), then commit."""

    @abstractmethod
    def rollback(self) -> None:
        """Wait for every request, ignoring errors, then roll back."""


class _ConnectionWriter(Writer):
    """Small writes to SQLite through Python's ``sqlite3`` on a SQLAlchemy connection in ``begin()``,
    which commits or rolls back."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def delete(self, stmt: Delete) -> None:
        self._connection.execute(stmt)

    def append(self, table_name: str, frame: pl.DataFrame) -> None:
        table = table_named(table_name)
        frame = _prepared(table, frame)
        if frame.height:
            _insert_sqlite(self._connection, table, frame)

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass


class _WorkerWriter(Writer):
    """Writes to SQLite through the worker: each frame is an Arrow file ingested by the worker while this
    process goes on; at most ``_IN_FLIGHT`` requests are unanswered.

    Direct (``staged`` false), the transaction holds SQLite's write lock from the start. ``staged``: the
    frames go to temporary tables of the worker's connection, which lock nothing, and the commit applies
    the deletes and copies them over (``INSERT ... SELECT``) in one short ``BEGIN IMMEDIATE`` transaction:
    a daily run then keeps other writers (an API, the dispatcher) waiting for about a second instead of
    for the whole run, at the price of copying the rows once more (1,000,000 snapshots: 1.1 s of the
    2.0 s it takes to write them, docs/performance.md).
    """

    def __init__(self, worker: _SqliteWorker, *, staged: bool) -> None:
        self._worker = worker
        self._staged = staged
        self._pending: deque[Path | None] = deque()
        self._steps: list[tuple[str, list[Any]]] = []  # staged: the statements the commit runs
        self._staging: dict[str, tuple[str, list[str]]] = {}  # table -> its temporary table, columns
        self._names = itertools.count()
        if not staged:
            # IMMEDIATE takes the write lock first (waiting up to the busy timeout for another writer), so
            # the transaction never has to upgrade a read snapshot that a concurrent commit made stale.
            worker.execute("BEGIN IMMEDIATE")

    def _send(self, request: Mapping[str, Any], path: Path | None = None) -> None:
        self._worker.send(request)
        self._pending.append(path)
        while len(self._pending) > _IN_FLIGHT:
            self._answer()

    def _answer(self) -> None:
        path = self._pending.popleft()
        try:
            self._worker.receive()
        finally:
            if path is not None:
                path.unlink(missing_ok=True)

    def delete(self, stmt: Delete) -> None:
        sql, params = _compile("sqlite", stmt)
        if self._staged:
            self._steps.append((sql, params))
            self._staging.clear()  # rows appended after the delete go in after it
            return
        self._send({"op": "execute", "sql": sql, "params": params})

    def append(self, table_name: str, frame: pl.DataFrame) -> None:
        table = table_named(table_name)
        frame = _key_sorted(table, _prepared(table, frame))
        if not frame.height:
            return
        path = self._worker.file()
        _sqlite_stored(frame).write_ipc(path, compat_level=pl.CompatLevel.oldest())
        if not self._staged:
            request = {"op": "ingest", "table": table.name, "path": str(path), "temporary": False}
            self._send(request | {"create": False}, path)
            return
        staging, columns = self._staging.get(table.name, ("", []))
        create = columns != frame.columns
        if create:
            staging = f"duecourse_staged_{next(self._names)}"
            self._staging[table.name] = (staging, frame.columns)
            names = ", ".join(_quoted(name) for name in frame.columns)
            self._steps.append(
                (f"INSERT INTO main.{_quoted(table.name)} ({names}) SELECT {names} FROM temp.{staging}", [])
            )
        self._send(
            {"op": "ingest", "table": staging, "path": str(path), "temporary": True, "create": create}, path
        )

    def commit(self) -> None:
        while self._pending:
            self._answer()
        if self._staged:
            self._worker.execute("BEGIN IMMEDIATE")
            for sql, params in self._steps:
                self._worker.execute(sql, params)
        self._worker.execute("COMMIT")

    def rollback(self) -> None:
        while self._pending:
            with suppress(StoreError):
                self._answer()
        with suppress(StoreError):  # no transaction yet (staged), or a worker that failed: stopped next
            self._worker.execute("ROLLBACK")


# Memory for the index builds after a load into an empty table (PostgreSQL's default is 64 MB; the
# sort of 12 million dues keys then spills to disk). Set for that transaction only.
_PG_INDEX_BUILD_MEMORY = "512MB"


class _PostgresWriter(Writer):
    """Writes to PostgreSQL through one ADBC connection, the requests run in order by one thread (each
    append a binary ``COPY``), so that the server writes one frame while the caller prepares the next.

    ``load_empty``: inserting rows one by one into an index costs the server about twice the CPU of
    building the index once from the loaded table (12.2 million dues: 26 CPU s against 12-15,
    docs/performance.md). When the table is empty (checked under an exclusive lock, held until the
    commit), its indexes and its own primary key, unique and foreign key constraints are dropped, and at
    the end built again from their definitions as the database reports them; a broken key or reference
    then fails the rebuild and the whole transaction. A key that another table's foreign key refers to
    is kept.
    """

    def __init__(self, cursor: Any, *, analyze: bool) -> None:
        self._cursor = cursor
        self._analyze = analyze
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="duecourse-write")
        self._pending: deque[Future[None]] = deque()
        self._rebuild: list[str] = []
        self._appended: dict[str, int] = {}

    def _submit(self, work: Callable[..., None], *args: Any) -> None:
        self._pending.append(self._pool.submit(work, *args))
        while len(self._pending) > _IN_FLIGHT:
            self._pending.popleft().result()

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._cursor.execute(sql, list(params) or None)
        if self._cursor.description is None:
            return []
        return cast(list[tuple[Any, ...]], self._cursor.fetchall())

    def _run(self, sql: str, params: Sequence[Any]) -> None:
        self._execute(sql, params)

    def _ingest(self, table_name: str, arrow: Any) -> None:
        self._cursor.adbc_ingest(table_name, arrow, mode="append")

    def delete(self, stmt: Delete) -> None:
        self._submit(self._run, *_compile("postgresql", stmt))

    def append(self, table_name: str, frame: pl.DataFrame) -> None:
        table = table_named(table_name)
        frame = _key_sorted(table, _prepared(table, frame))
        if frame.height:
            self._submit(self._ingest, table.name, frame.to_arrow(compat_level=pl.CompatLevel.oldest()))
            self._appended[table.name] = self._appended.get(table.name, 0) + frame.height

    def load_empty(self, table_name: str) -> None:
        self._submit(self._drop_if_empty, _quoted(table_named(table_name).name))

    def _drop_if_empty(self, relation: str) -> None:
        self._execute(f"LOCK TABLE {relation} IN ACCESS EXCLUSIVE MODE")
        if self._execute(f"SELECT 1 FROM {relation} LIMIT 1"):
            return
        constraints = self._execute(_PG_OWN_CONSTRAINTS, [relation])
        indexes = self._execute(_PG_PLAIN_INDEXES, [relation])
        for name, _definition, _kind in sorted(constraints, key=lambda row: row[2] != "f"):
            self._execute(f"ALTER TABLE {relation} DROP CONSTRAINT {_quoted(name)}")
        for name, _definition in indexes:
            self._execute(f"DROP INDEX {_quoted(name)}")
        # The key first (the other indexes and the references then build beside it), the references last.
        order = {"p": 0, "u": 1, "f": 3}
        self._rebuild += [
            f"ALTER TABLE {relation} ADD CONSTRAINT {_quoted(name)} {definition}"
            for name, definition, kind in sorted(constraints, key=lambda row: order[row[2]])
            if kind != "f"
        ]
        self._rebuild += [definition for _name, definition in indexes]
        self._rebuild += [
            f"ALTER TABLE {relation} ADD CONSTRAINT {_quoted(name)} {definition}"
            for name, definition, kind in constraints
            if kind == "f"
        ]

    def commit(self) -> None:
        while self._pending:
            self._pending.popleft().result()
        self._pool.shutdown()
        if self._rebuild:
            self._execute(f"SET LOCAL maintenance_work_mem = '{_PG_INDEX_BUILD_MEMORY}'")
            for statement in self._rebuild:
                self._execute(statement)
        self._cursor.execute("COMMIT")
        # Fresh statistics for the tables that grew a lot, so that the next reads are planned for what
        # they hold (autovacuum, when it is on at all, analyzes later; before that, range reads by
        # account were planned for a few thousand rows instead of a million).
        for name, rows in self._appended.items():
            if self._analyze and rows >= BULK_MIN_ROWS:
                self._execute(f"ANALYZE {_quoted(name)}")

    def rollback(self) -> None:
        while self._pending:
            with suppress(Exception):
                self._pending.popleft().result()
        self._pool.shutdown()
        with suppress(adbc_driver_manager.Error):  # a lost connection rolls back by itself
            self._cursor.execute("ROLLBACK")


# A table's own primary key, unique and foreign key constraints that can be dropped and added again: not
# a key another table's foreign key refers to.
_PG_OWN_CONSTRAINTS = """
SELECT c.conname, pg_get_constraintdef(c.oid), c.contype FROM pg_constraint AS c
WHERE c.conrelid = $1::regclass AND c.contype IN ('p', 'u', 'f')
  AND NOT (c.contype IN ('p', 'u') AND EXISTS (
    SELECT 1 FROM pg_constraint AS r WHERE r.contype = 'f' AND r.confrelid = c.conrelid))
"""
# A table's indexes that no constraint owns.
_PG_PLAIN_INDEXES = """
SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index AS x JOIN pg_class AS i ON i.oid = x.indexrelid
WHERE x.indrelid = $1::regclass
  AND NOT EXISTS (
    SELECT 1 FROM pg_constraint AS c WHERE c.conindid = x.indexrelid AND c.conrelid = x.indrelid)
"""


@contextmanager
def writing(
    engine: Engine, rows: int, what: str = "writing", *, staged: bool = False, analyze: bool = False
) -> Iterator[Writer]:
    """One write transaction: the block's deletes and appends are committed when it ends, or all rolled
    back if it raises (an error of the database included).

    ``rows``: about how many rows will be written, which picks SQLite's path (the worker from
    ``BULK_MIN_ROWS``; below, Python's ``sqlite3``). ``staged``: on SQLite's worker, the rows wait in
    temporary tables and the write lock is taken only at the end (see ``_WorkerWriter``); for a writer
    that works for long between its writes (the daily run). ``analyze``: on PostgreSQL, the tables
    that grew by ``BULK_MIN_ROWS`` rows or more are analyzed after the commit (an import; ANALYZE reads
    a sample of a fixed size: 0.26 s for 2 million snapshots).
    """
    backend = backend_of(engine)
    with _translated(what):
        if backend == "sqlite" and rows < BULK_MIN_ROWS:
            with engine.begin() as connection:
                yield _ConnectionWriter(connection)
        elif backend == "sqlite":
            with _sqlite_worker(engine) as worker:
                yield from _committed(_WorkerWriter(worker, staged=staged))
        else:
            with _adbc_postgresql(engine) as adbc, adbc.cursor() as cursor:
                cursor.execute("BEGIN")
                yield from _committed(_PostgresWriter(cursor, analyze=analyze))


def _committed(writer: Writer) -> Iterator[Writer]:
    try:
        yield writer
        writer.commit()
    except BaseException:
        writer.rollback()
        raise


def _write(engine: Engine, table: Table, frame: pl.DataFrame, before: Sequence[Delete] = ()) -> int:
    """Run the ``before`` deletes, then append ``frame``, all in one transaction."""
    frame = _prepared(table, frame)
    with writing(engine, frame.height, f"writing {table.name}") as writer:
        for stmt in before:
            writer.delete(stmt)
        writer.append(table.name, frame)
    return frame.height


def write_frame(engine: Engine, table_name: str, frame: pl.DataFrame) -> int:
    """Append the rows of ``frame`` to ``table_name`` in one transaction; returns the number written.

    The frame's columns must be columns of the table (any order; absent ones take their defaults) and are
    cast to the table's dtypes. PostgreSQL: ADBC ingest (a binary COPY); SQLite: ``executemany`` (see
    the module docstring for why). A duplicate key or a broken reference raises ``StoreConflict`` and
    writes nothing.
    """
    return _write(engine, table_named(table_name), frame)


def replace_rows(
    engine: Engine, table_name: str, frame: pl.DataFrame, where: Delete | Sequence[Delete]
) -> int:
    """Run the delete(s) ``where``, then append ``frame`` to ``table_name``, in one transaction."""
    deletes = [where] if isinstance(where, Delete) else list(where)
    return _write(engine, table_named(table_name), frame, before=deletes)


def check_snapshot_day(as_of: dt.date, frame: pl.DataFrame) -> None:
    """Refuse a snapshot frame with a row of another day than ``as_of`` (or of none)."""
    if "as_of" not in frame.columns:
        raise ValueError("the snapshot frame has no as_of column")
    other_days = frame.filter(pl.col("as_of") != as_of).height
    if other_days or frame["as_of"].null_count():
        raise ValueError(f"{other_days} snapshot rows are not as of {as_of.isoformat()}")


def replace_snapshots(engine: Engine, as_of: dt.date, frame: pl.DataFrame) -> int:
    """Replace the snapshots of ``as_of`` with ``frame`` in one transaction; other days are untouched."""
    check_snapshot_day(as_of, frame)
    return _write(engine, snapshots, frame, before=[delete(snapshots).where(snapshots.c.as_of == as_of)])
