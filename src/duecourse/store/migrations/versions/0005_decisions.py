"""The governor's decisions: every planned contact's verdict, the rule that decided, and why.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(name: str) -> sa.Column[str]:
    return sa.Column(name, sa.String(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("day", sa.Date(), nullable=False),
        _text("key"),
        _text("account_id"),
        _text("customer_id"),
        _text("stage"),
        _text("action"),
        _text("channel"),
        _text("kind"),
        _text("verdict"),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=True),
        _text("rule_id"),
        sa.Column("citation", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("seen", sa.Text(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("verdict IN ('planned', 'deferred', 'suppressed')", name="ck_decisions_verdict"),
        sa.PrimaryKeyConstraint("day", "key", name="pk_decisions"),
    )
    op.create_index("ix_decisions_account_id_day", "decisions", ["account_id", "day"])


def downgrade() -> None:
    op.drop_index("ix_decisions_account_id_day", table_name="decisions")
    op.drop_table("decisions")
