"""Bulk I/O between Polars frames and the tables, on SQLite files and PostgreSQL alike.

The whole portfolio moves through here every night, so rows never pass one by one through SQLAlchemy's
row machinery. Figures: ``docs/performance.md`` and the docstrings of ``bench/store_speed.py`` and
``bench/daily_run.py``.

- **PostgreSQL writes:** ADBC ``adbc_ingest``, a binary ``COPY`` encoded from Arrow in C, with any
  delete before it (``replace_snapshots``) in the same transaction on that connection. psycopg's binary
  ``COPY`` fed by ``write_row`` and a text ``COPY`` of CSV written by Polars came out level with it
  (130-250k rows/s each, within the noise of a shared 2-CPU machine): the server's index upkeep sets
  the pace. ADBC is kept because it spends no Python call per row, so the client leaves the CPU to the
  server, and it is the same Arrow path as the reads.
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
consistent view (a read transaction), reading the next chunk while the caller computes on this one.

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
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from functools import cache
from pathlib import Path
from typing import IO, Any, cast

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

    def send_query(self, sql: str, params: Sequence[Any], schema: Schema, *, typed: bool = False) -> Path:
        """Ask for the rows of ``sql`` (typed by ``schema``); ``receive`` then ``take`` the returned file."""
        out = self.file()
        query = sql if typed else _typed_sqlite(sql, schema)
        self.send({"op": "query", "sql": query, "params": list(params), "out": str(out)})
        return out

    def query(self, sql: str, params: Sequence[Any], schema: Schema, *, typed: bool = False) -> pl.DataFrame:
        """The rows of ``sql`` as a frame of ``schema``; ``typed``: the SQL fixes its own column types
        (it starts with a marked row, see ``_typed_sqlite``, or no column can start with a null)."""
        out = self.send_query(sql, params, schema, typed=typed)
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
def _sqlite_worker(engine: Engine) -> Iterator[_SqliteWorker]:
    """A worker process for the engine's SQLite file, stopped on the way out."""
    database = engine.url.database
    if not database:  # pragma: no cover - db.normalize_url refuses SQLite without a file
        raise StoreError("SQLite without a file has no worker")
    worker = _SqliteWorker(os.path.abspath(database))
    try:
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
    wanted = keys.select(pl.col(name).cast(schema[name], strict=True) for name in key_names).unique()
    if wanted.is_empty():
        return pl.DataFrame(schema=schema)
    if _is_empty(engine, table):
        return pl.DataFrame(schema=schema)
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
_RangeFetch = Callable[[str, Sequence[Any], Schema], pl.DataFrame]


def _pg_text(value: str) -> str:
    """A PostgreSQL string literal (the session sets standard_conforming_strings, so only ' is doubled)."""
    if "\x00" in value:
        raise StoreError("a text value holds a NUL character, which PostgreSQL cannot store")
    return "'" + value.replace("'", "''") + "'"


def _range_query(
    backend: Backend, table: Table, low: str | None, high: str | None, *, typed: bool = False
) -> tuple[str, list[Any]]:
    """The rows of ``table`` with ``low <= account_id < high`` (a missing bound: no limit that side).

    ``typed`` (SQLite): after a first row that fixes the column types (``_typed_sqlite``), in a compound
    of two plain selects rather than behind a subquery, which SQLite would run as a co-routine (about a
    third slower on a large range).
    """
    columns = ", ".join(_quoted(name) for name in table.c.keys())
    if typed:
        columns = f"{columns}, 0"
    conditions: list[str] = []
    params: list[Any] = []
    for op, bound in ((">=", low), ("<", high)):
        if bound is None:
            continue
        if backend == "postgresql":
            conditions.append(f'"account_id" {op} {_pg_text(bound)}')
        else:
            conditions.append(f'"account_id" {op} ?')
            params.append(bound)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    query = f"SELECT {columns} FROM {_quoted(table.name)}{where}"
    if typed:
        query = f"{_typed_first_row(table_schema(table))} UNION ALL {query}"
    return query, params


@contextmanager
def _range_reader(engine: Engine, *, in_worker: bool) -> Iterator[tuple[_RangeFetch, bool]]:
    """A consistent view to read ranges from: (fetch, whether fetch may run in another thread)."""
    backend = backend_of(engine)
    if backend == "postgresql":
        with _adbc_postgresql(engine) as adbc:
            with adbc.cursor() as cursor:
                cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                cursor.execute("SET LOCAL standard_conforming_strings = on")

            def fetch(sql: str, params: Sequence[Any], schema: Schema) -> pl.DataFrame:
                with adbc.cursor() as cursor:
                    cursor.execute(sql, list(params) or None)
                    frame = pl.from_arrow(cursor.fetch_arrow_table())
                if not isinstance(frame, pl.DataFrame):  # pragma: no cover - a table always gives a frame
                    raise StoreError("the database returned no table")
                return conform(frame, schema)

            try:
                yield fetch, True
            finally:
                with adbc.cursor() as cursor:
                    cursor.execute("COMMIT")
        return
    if in_worker:
        with _sqlite_worker(engine) as worker:
            worker.execute("BEGIN")  # deferred: the first read takes the snapshot every later read sees

            def fetch_typed(sql: str, params: Sequence[Any], schema: Schema) -> pl.DataFrame:
                return worker.query(sql, params, schema, typed=True)

            try:
                yield fetch_typed, True
            finally:
                with suppress(StoreError):  # a worker that failed is stopped next, which rolls back
                    worker.execute("ROLLBACK")
        return
    with engine.connect() as connection:
        raw = _sqlite3(connection)
        raw.execute("BEGIN")
        try:
            yield _sqlite_text_fetch(raw), False
        finally:
            raw.rollback()


def _sqlite_text_fetch(raw: sqlite3.Connection) -> _RangeFetch:
    def fetch(sql: str, params: Sequence[Any], schema: Schema) -> pl.DataFrame:
        return conform(_sqlite_rows_frame(raw, sql, params, schema), schema)

    return fetch


def count_accounts(engine: Engine) -> int:
    """How many accounts are stored."""
    with _translated("counting accounts"), engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(accounts)).scalar_one())


def many_accounts(engine: Engine) -> bool:
    """Whether more than ``BULK_MIN_ACCOUNTS`` accounts are stored: reads of per-account rows should then be
    ``bulk`` (on SQLite the worker's start would cost more than it saves below that)."""
    return count_accounts(engine) > BULK_MIN_ACCOUNTS


def read_by_account(
    engine: Engine, tables: Mapping[str, Table], accounts_per_chunk: int
) -> Iterator[dict[str, pl.DataFrame]]:
    """The rows of ``tables`` (each has an ``account_id``) in chunks of whole accounts, one frame per table.

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
    schemas = {name: table_schema(table) for name, table in tables.items()}
    with (
        _translated("reading the portfolio"),
        _range_reader(engine, in_worker=in_worker) as (fetch, threaded),
        ThreadPoolExecutor(1, thread_name_prefix="duecourse-read") as pool,
    ):
        ids = fetch(  # a primary key, never null: it needs no typed first row
            f'SELECT "account_id" FROM {_quoted(accounts.name)} ORDER BY "account_id"',
            (),
            {"account_id": pl.String()},
        ).get_column("account_id")
        cuts: list[str | None] = [None, *ids.gather_every(accounts_per_chunk).to_list()[1:], None]
        del ids

        def read(low: str | None, high: str | None) -> dict[str, pl.DataFrame]:
            return {
                name: fetch(*_range_query(backend, table, low, high, typed=in_worker), schemas[name])
                for name, table in tables.items()
            }

        ranges = list(itertools.pairwise(cuts))
        if not threaded:
            for low, high in ranges:
                yield read(low, high)
            return
        pending = pool.submit(read, *ranges[0])
        for nxt in [*ranges[1:], None]:
            chunk = pending.result()
            if nxt is not None:
                pending = pool.submit(read, *nxt)
            yield chunk
            del chunk


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


def _write(engine: Engine, table: Table, frame: pl.DataFrame, before: Sequence[Delete] = ()) -> int:
    """Run the ``before`` deletes, then append ``frame``, all in one transaction."""
    frame = _prepared(table, frame)
    with _translated(f"writing {table.name}"):
        if backend_of(engine) == "sqlite" and frame.height >= BULK_MIN_ROWS:
            with _sqlite_worker(engine) as worker:
                _write_in_worker(worker, table, frame, before)
            return frame.height
        if backend_of(engine) == "sqlite":
            with engine.begin() as connection:
                for stmt in before:
                    connection.execute(stmt)
                if frame.height:
                    _insert_sqlite(connection, table, frame)
            return frame.height
        with _adbc_postgresql(engine) as adbc, adbc.cursor() as cursor:
            cursor.execute("BEGIN")
            try:
                for stmt in before:
                    query, params = _compile("postgresql", stmt)
                    cursor.execute(query, params or None)
                if frame.height:
                    arrow = frame.to_arrow(compat_level=pl.CompatLevel.oldest())
                    cursor.adbc_ingest(table.name, arrow, mode="append")
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")
    return frame.height


def _write_in_worker(
    worker: _SqliteWorker, table: Table, frame: pl.DataFrame, before: Sequence[Delete]
) -> None:
    # IMMEDIATE takes the write lock first (waiting up to the busy timeout for another writer), so the
    # transaction never has to upgrade a read snapshot that a concurrent commit made stale.
    worker.execute("BEGIN IMMEDIATE")
    try:
        for stmt in before:
            worker.execute(*_compile("sqlite", stmt))
        worker.ingest(table.name, _sqlite_stored(frame))
    except BaseException:
        with suppress(StoreError):  # a worker that failed is stopped next, which rolls back
            worker.execute("ROLLBACK")
        raise
    worker.execute("COMMIT")


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


def replace_snapshots(engine: Engine, as_of: dt.date, frame: pl.DataFrame) -> int:
    """Replace the snapshots of ``as_of`` with ``frame`` in one transaction; other days are untouched."""
    if "as_of" not in frame.columns:
        raise ValueError("the snapshot frame has no as_of column")
    other_days = frame.filter(pl.col("as_of") != as_of).height
    if other_days or frame["as_of"].null_count():
        raise ValueError(f"{other_days} snapshot rows are not as of {as_of.isoformat()}")
    return _write(engine, snapshots, frame, before=[delete(snapshots).where(snapshots.c.as_of == as_of)])
