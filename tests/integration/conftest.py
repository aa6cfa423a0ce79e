"""The databases integration tests run on: a SQLite file and a fresh PostgreSQL database.

PostgreSQL is reached through ``$DUECOURSE_TEST_POSTGRES_URL`` (default: the local server's ``test``
database); each test gets its own database, created from there and dropped afterwards. Where the server
cannot be reached the PostgreSQL cases are skipped, unless ``DUECOURSE_REQUIRE_POSTGRES=1`` (CI), where
they fail.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
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


@contextmanager
def new_postgres_database(template: str = "") -> Iterator[str]:
    """The URL of a new PostgreSQL database, dropped on the way out: empty, or a copy of the database
    named ``template`` (which nobody may be connected to meanwhile)."""
    name = f"duecourse_test_{secrets.token_hex(6)}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with _admin_connection() as admin:
        admin.execute(create)
    try:
        yield make_url(SERVER_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with _admin_connection() as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped after the test."""
    with new_postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_databases() -> Callable[..., AbstractContextManager[str]]:
    """``new_postgres_database``, for a fixture that outlives one test (a template database)."""
    return new_postgres_database


@contextmanager
def _copy_of_database(template_url: str, folder: Path) -> Iterator[str]:
    """The URL of a database of its own holding what the database at ``template_url`` holds: a copy of
    the SQLite file in ``folder``, or a PostgreSQL database made from it as a template (dropped on the way
    out). Nothing may be connected to the template meanwhile."""
    template = make_url(template_url)
    if template.get_backend_name() != "sqlite":
        with new_postgres_database(template=template.database or "") as url:
            yield url
        return
    path = folder / "duecourse.db"
    for suffix in ("", "-wal"):  # no connection is left: the file, and its log if one was kept
        if Path(f"{template.database}{suffix}").exists():
            shutil.copyfile(f"{template.database}{suffix}", f"{path}{suffix}")
    yield f"sqlite:///{path}"


@pytest.fixture(scope="session")
def database_copy() -> Callable[[str, Path], AbstractContextManager[str]]:
    """Copies a database (see ``_copy_of_database``): a module builds what its tests start from once (a
    module-scoped template), and each test changes a copy of its own."""
    return _copy_of_database


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
