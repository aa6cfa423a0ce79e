"""Bulk I/O between Polars frames and the tables, on SQLite files and PostgreSQL alike.

The whole portfolio moves through here every night, so rows never pass one by one through SQLAlchemy's
row machinery. Measured with bench/store_speed.py (1,000,000 dues rows; numbers in its docstring):

- **PostgreSQL writes:** ADBC ``adbc_ingest``, a binary ``COPY`` encoded from Arrow in C, with any
  delete before it (``replace_snapshots``) in the same transaction on that connection. psycopg's binary
  ``COPY`` fed by ``write_row`` and a text ``COPY`` of CSV written by Polars came out level with it
  (130-250k rows/s each, within the noise of a shared 2-CPU machine): the server's index upkeep sets
  the pace. ADBC is kept because it spends no Python call per row, so the client leaves the CPU to the
  server, and it is the same Arrow path as the reads.
- **PostgreSQL reads:** ADBC ``fetch_arrow_table`` (the driver copies out in binary into Arrow; no Python
  object per value), about 20 % faster than a CSV ``COPY TO`` parsed by Polars.
- **SQLite, both ways:** the standard library driver, on the SQLAlchemy connection: ``executemany`` in one
  transaction, and ``fetchmany`` batches built into frames. ADBC's SQLite driver was about twice as fast
  but links its own copy of SQLite, and two copies of SQLite in one process corrupt a database: POSIX
  locks are per process, so when one copy closes the file it drops the other's locks and takes itself
  for the last connection (sqlite.org/howtocorrupt.html, 2.2.1; reproduced here as a lost write and
  "disk I/O error" in WAL mode). SQLite is the single-machine store; PostgreSQL is the one that scales.

Every frame is cast to its schema on the way out: dates as ``Date``, money as ``Int64``, instants as UTC
``Datetime``; SQLite's ISO text dates and 0/1 booleans are parsed, and written back the same way, as
SQLAlchemy stores them, so Core queries and frames see the same rows.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any, cast

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
    MetaData,
    Select,
    SmallInteger,
    String,
    Table,
    TextClause,
    and_,
    delete,
    select,
    text,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.types import TypeEngine

from duecourse.store.db import Backend, StoreConflict, StoreError, backend_of
from duecourse.store.tables import metadata, snapshots

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


def _sqlite_fetch(raw: sqlite3.Connection) -> Fetch:
    def fetch(stmt: Statement, hint: Schema) -> pl.DataFrame:
        query, params = _compile("sqlite", stmt)
        cursor = raw.cursor()
        try:
            cursor.execute(query, params)
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
) -> pl.DataFrame:
    """Read a table or a query into a frame, typed by ``schema``.

    ``sql_or_table`` is a table name, a ``Table``, a Core ``select()`` or SQL text with ``:name``
    parameters given in ``params``. Without ``schema``, a table or a ``select()`` is typed by its columns
    (dates as Date, money as Int64), and a column of SQL text that is named like a stored column
    (``account_id``, ``as_of``, ``amount_minor``, ...) takes that column's dtype; other columns of SQL text
    keep the type the database gave them, so SQL text that computes dates should pass a ``schema``.
    """
    stmt, derived = _statement(sql_or_table, params)
    with _translated("reading a frame"), _reading(engine) as (_backend, _connection, fetch):
        return _read(fetch, stmt, schema, derived)


def read_frames(engine: Engine, sources: Mapping[str, Source]) -> dict[str, pl.DataFrame]:
    """Read several tables or queries from one consistent view of the database (one read transaction)."""
    statements = {name: _statement(source, None) for name, source in sources.items()}
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


def _sqlite_rows(frame: pl.DataFrame) -> Iterator[tuple[Any, ...]]:
    """The rows as the SQLite driver binds them, as SQLAlchemy stores them: ISO dates, 0/1, UTC text."""
    stored = frame.with_columns(
        pl.col(pl.Date).cast(pl.String),
        pl.col(pl.Boolean).cast(pl.Int64),
        pl.col(pl.Datetime).dt.convert_time_zone("UTC").dt.strftime(_SQLITE_DATETIME_FORMAT),
    )
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


def write_frame(engine: Engine, table_name: str, frame: pl.DataFrame) -> int:
    """Append the rows of ``frame`` to ``table_name`` in one transaction; returns the number written.

    The frame's columns must be columns of the table (any order; absent ones take their defaults) and are
    cast to the table's dtypes. PostgreSQL: ADBC ingest (a binary COPY); SQLite: ``executemany`` (see
    the module docstring for why). A duplicate key or a broken reference raises ``StoreConflict`` and
    writes nothing.
    """
    return _write(engine, table_named(table_name), frame)


def replace_rows(engine: Engine, table_name: str, frame: pl.DataFrame, where: Delete) -> int:
    """Run the delete ``where``, then append ``frame`` to ``table_name``, in one transaction."""
    return _write(engine, table_named(table_name), frame, before=[where])


def replace_snapshots(engine: Engine, as_of: dt.date, frame: pl.DataFrame) -> int:
    """Replace the snapshots of ``as_of`` with ``frame`` in one transaction; other days are untouched."""
    if "as_of" not in frame.columns:
        raise ValueError("the snapshot frame has no as_of column")
    other_days = frame.filter(pl.col("as_of") != as_of).height
    if other_days or frame["as_of"].null_count():
        raise ValueError(f"{other_days} snapshot rows are not as of {as_of.isoformat()}")
    return _write(engine, snapshots, frame, before=[delete(snapshots).where(snapshots.c.as_of == as_of)])
