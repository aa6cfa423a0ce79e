"""The databases integration tests run on: a SQLite file and a fresh PostgreSQL database.

PostgreSQL is reached through ``$DUECOURSE_TEST_POSTGRES_URL`` (default: the local server's ``test``
database); each test gets its own database, created from there and dropped afterwards. Where the server
cannot be reached the PostgreSQL cases are skipped, unless ``DUECOURSE_REQUIRE_POSTGRES=1`` (CI), where
they fail.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from duecourse.store.db import init_db, make_engine

SERVER_URL = os.environ.get(
    "DUECOURSE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _admin_connection() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(_libpq(SERVER_URL), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL is unreachable at {make_url(SERVER_URL)!r}: {exc}"
        if os.environ.get("DUECOURSE_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{message} (DUECOURSE_REQUIRE_POSTGRES=1)", pytrace=False)
        pytest.skip(message)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped after the test."""
    name = f"duecourse_test_{secrets.token_hex(6)}"
    with _admin_connection() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(SERVER_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with _admin_connection() as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind: a SQLite file, then a PostgreSQL database of its own."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'duecourse.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on a database migrated to the newest revision."""
    init_db(db_url)
    engine = make_engine(db_url)
    try:
        yield engine
    finally:
        engine.dispose()
