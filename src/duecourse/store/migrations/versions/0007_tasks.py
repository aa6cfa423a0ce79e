"""Escalation tasks: agency placement, charge-off review, credit reporting, legal review.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(name: str) -> sa.Column[str]:
    return sa.Column(name, sa.String(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "tasks",
        _text("key"),
        _text("account_id"),
        _text("customer_id"),
        _text("stage"),
        _text("action"),
        _text("kind"),
        _text("state"),
        sa.Column("planned_on", sa.Date(), nullable=False),
        sa.Column("ready_on", sa.Date(), nullable=True),
        _text("rule_id"),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("state IN ('waiting', 'open', 'done', 'cancelled')", name="ck_tasks_state"),
        sa.PrimaryKeyConstraint("key", name="pk_tasks"),
    )
    op.create_index("ix_tasks_state_ready_on", "tasks", ["state", "ready_on"])
    op.create_index("ix_tasks_account_id", "tasks", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_tasks_account_id", table_name="tasks")
    op.drop_index("ix_tasks_state_ready_on", table_name="tasks")
    op.drop_table("tasks")
