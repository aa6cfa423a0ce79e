"""What channels deliver to us: customers' replies and delivery receipts, stored before they are acknowledged.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(name: str) -> sa.Column[str]:
    return sa.Column(name, sa.String(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "inbound",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _text("channel"),
        _text("sender"),
        _text("recipient"),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        _text("provider_id"),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_inbound"),
    )
    op.create_index("ix_inbound_handled_at", "inbound", ["handled_at"])


def downgrade() -> None:
    op.drop_index("ix_inbound_handled_at", table_name="inbound")
    op.drop_table("inbound")
