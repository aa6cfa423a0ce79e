"""Engines, the schema version, and the store's errors.

One SQLAlchemy URL names the database, SQLite file or PostgreSQL, for every part of the store: the engine,
the migrations and the bulk frame I/O (``frames.py``), which derives its own ADBC or psycopg connection
from the same URL. Nothing connects at import time; ``make_engine`` connects lazily, on first use.

Exceptions (database errors are translated at the store's boundary)::

    DuecourseError
     └── StoreError                 a database error that the store does not name more precisely
          ├── UnsupportedDatabase   a URL the store cannot serve (another backend, SQLite in memory)
          └── StoreConflict         a write broke a key or constraint (duplicate id, unknown customer)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url

from duecourse.domain.errors import DuecourseError

ENV_VAR = "DUECOURSE_DATABASE_URL"
DEFAULT_URL = "sqlite:///./duecourse.db"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# Held for the length of a PostgreSQL migration so that two processes starting together migrate once.
_MIGRATION_LOCK_KEY = 0x6475_6563_6F75_7273  # "duecours"

# How long a SQLite writer waits for another writer before giving up (milliseconds).
SQLITE_BUSY_TIMEOUT_MS = 30_000

Backend = Literal["sqlite", "postgresql"]


class StoreError(DuecourseError):
    """A database error, translated at the store's boundary."""


class UnsupportedDatabase(StoreError):
    """A database URL that the store cannot serve."""


class StoreConflict(StoreError):
    """A write broke a key or a constraint (a duplicate id, a row that refers to nothing)."""


def default_url() -> str:
    """The database URL: ``$DUECOURSE_DATABASE_URL``, else a SQLite file in the working directory."""
    return os.environ.get(ENV_VAR) or DEFAULT_URL


def normalize_url(url: str | URL) -> URL:
    """The URL the store uses: PostgreSQL through psycopg 3, or a SQLite file; anything else is refused."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    driver = parsed.get_driver_name()
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            return parsed.set(drivername="postgresql+psycopg")
        if driver != "psycopg":
            raise UnsupportedDatabase(
                f"PostgreSQL is reached through psycopg 3 (postgresql+psycopg://), not {driver}"
            )
        return parsed
    if backend == "sqlite":
        if driver != "pysqlite":
            raise UnsupportedDatabase(f"SQLite is reached through the standard library driver, not {driver}")
        if parsed.database in (None, "", ":memory:") or (parsed.database or "").startswith("file:"):
            raise UnsupportedDatabase("SQLite must be a file (sqlite:///./x.db or sqlite:////abs/x.db)")
        return parsed
    raise UnsupportedDatabase(f"unsupported database {backend!r}: use sqlite:/// or postgresql+psycopg://")


def backend_of(engine: Engine) -> Backend:
    """Which of the two supported databases an engine talks to."""
    name = engine.dialect.name
    if name == "postgresql":
        return "postgresql"
    if name == "sqlite":
        return "sqlite"
    raise UnsupportedDatabase(f"unsupported database {name!r}")


# Pages of a new SQLite file (an existing file keeps its own). Against SQLite's 4 KiB, 16 KiB pages took
# a fifth less CPU to write 12.2 million dues in key order and a tenth less to read them back
# (docs/performance.md): fewer pages to split, link and look up per row.
SQLITE_PAGE_SIZE = 16_384


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the daily run read while an import writes; foreign keys are off in SQLite unless asked.
    cursor = dbapi_connection.cursor()
    try:
        # Before WAL: the page size of a new file is fixed by its first write (here, entering WAL mode).
        cursor.execute(f"PRAGMA page_size = {SQLITE_PAGE_SIZE}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def make_engine(url: str | URL) -> Engine:
    """An engine for a SQLite file (WAL, foreign keys on) or PostgreSQL; it connects on first use."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed)
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    return create_engine(parsed, pool_pre_ping=True)


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    """The newest revision among the packaged migrations."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:
        raise StoreError("the packaged migrations have no head revision")
    return head


def init_db(url: str | URL) -> str:
    """Create or upgrade the schema to the newest revision and return that revision; safe to repeat."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(parsed)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            config = _alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        with engine.connect() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    if revision is None:
        raise StoreError("the migrations ran but left no revision behind")
    return revision


def current_revision(url: str | URL) -> str | None:
    """The schema revision the database is at; None when it was never initialised."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
