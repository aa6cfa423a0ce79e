"""The opt-out links messages carry: whom each link's opaque subject stands for.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "opt_out_links",
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("subject", name="pk_opt_out_links"),
    )
    _backfill()


def _backfill() -> None:
    """The links of messages composed before this table existed: their subject is the hash of the
    customer and the channel (``channels/compose.opt_out_subject``), so every customer's three are
    written, and an opt-out link already in a customer's mailbox keeps working."""
    connection = op.get_bind()
    links = sa.table(
        "opt_out_links",
        sa.column("subject", sa.String()),
        sa.column("customer_id", sa.String()),
        sa.column("channel", sa.String()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    now = dt.datetime.now(dt.UTC)
    result = connection.execute(sa.text("SELECT customer_id FROM customers ORDER BY customer_id"))
    while rows := result.fetchmany(10_000):
        batch = [
            {
                "subject": "oo-" + hashlib.sha256(f"{row[0]}|{channel}".encode()).hexdigest()[:24],
                "customer_id": row[0],
                "channel": channel,
                "created_at": now,
            }
            for row in rows
            for channel in ("email", "sms", "push")
        ]
        connection.execute(sa.insert(links), batch)


def downgrade() -> None:
    op.drop_table("opt_out_links")
