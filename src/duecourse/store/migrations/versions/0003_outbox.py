"""The outbox, its state changes, and contact points found bad.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(name: str) -> sa.Column[str]:
    return sa.Column(name, sa.String(), nullable=False)


def _instant(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


STATES = "'planned', 'rendered', 'sending', 'sent', 'delivered', 'bounced', 'failed', 'cancelled'"


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _text("key"),
        _text("account_id"),
        _text("customer_id"),
        _text("stage"),
        _text("action"),
        _text("kind"),
        _text("channel"),
        _text("fallback"),
        sa.Column("replaces_id", sa.Integer(), nullable=True),
        sa.Column("planned_on", sa.Date(), nullable=False),
        _instant("scheduled_at"),
        _text("state"),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _instant("next_attempt_at", nullable=True),
        sa.Column("claimed_by", sa.BigInteger(), nullable=True),
        _text("recipient"),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.Column("meta", sa.Text(), nullable=False),
        _text("provider_id"),
        sa.Column("payments_seen", sa.Integer(), nullable=False),
        sa.Column("paid_minor_seen", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        _instant("created_at"),
        _instant("updated_at"),
        _instant("sent_at", nullable=True),
        sa.CheckConstraint(f"state IN ({STATES})", name="ck_outbox_state"),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("key", name="uq_outbox_key"),
    )
    op.create_index("ix_outbox_state_scheduled_at", "outbox", ["state", "scheduled_at"])
    op.create_index("ix_outbox_account_id", "outbox", ["account_id"])
    op.create_index("ix_outbox_provider_id", "outbox", ["provider_id"])
    op.create_table(
        "outbox_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        _instant("at"),
        _text("from_state"),
        _text("to_state"),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_outbox_events"),
        sa.ForeignKeyConstraint(["message_id"], ["outbox.id"], name="fk_outbox_events_message_id_outbox"),
    )
    op.create_index("ix_outbox_events_message_id", "outbox_events", ["message_id"])
    op.create_table(
        "bad_contact_points",
        _text("customer_id"),
        _text("channel"),
        _text("address"),
        sa.Column("reason", sa.Text(), nullable=False),
        _instant("since"),
        _text("source"),
        sa.PrimaryKeyConstraint("customer_id", "channel", "address", name="pk_bad_contact_points"),
    )


def downgrade() -> None:
    op.drop_table("bad_contact_points")
    op.drop_index("ix_outbox_events_message_id", table_name="outbox_events")
    op.drop_table("outbox_events")
    op.drop_index("ix_outbox_provider_id", table_name="outbox")
    op.drop_index("ix_outbox_account_id", table_name="outbox")
    op.drop_index("ix_outbox_state_scheduled_at", table_name="outbox")
    op.drop_table("outbox")
