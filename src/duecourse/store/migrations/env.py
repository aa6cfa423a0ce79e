"""Alembic environment: migrates the connection that ``duecourse.store.db`` hands over.

``init_db`` passes an open connection in ``config.attributes["connection"]``; the ``alembic`` command line
(for writing a new revision) may instead set ``sqlalchemy.url``. SQLite migrations run in batch mode, since
SQLite alters a table by copying it.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from duecourse.store.db import default_url, make_engine
from duecourse.store.tables import metadata

config = context.config


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url") or default_url(),
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if isinstance(connection, Connection):
        _configure(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or default_url())
    try:
        with engine.begin() as owned:
            _configure(owned)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
