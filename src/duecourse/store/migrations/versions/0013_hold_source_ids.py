"""Holds imported from the institution's other systems (``duecourse import holds``) carry their id there.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from duecourse.store.downgrades import needed, refuse_contact_messages_pending

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("holds") as batch:
        batch.add_column(sa.Column("source_id", sa.String(), nullable=True))
    # Null for the holds the system records itself (opt-outs, answers): several nulls are allowed.
    op.create_index("ux_holds_source_id", "holds", ["source_id"], unique=True)


def downgrade() -> None:
    # Below 0012, its check first: nothing may change before a downgrade is refused (store/downgrades.py).
    if needed(context.get_revision_argument(), "0012"):
        refuse_contact_messages_pending(op.get_bind())
    op.drop_index("ux_holds_source_id", table_name="holds")
    with op.batch_alter_table("holds") as batch:
        batch.drop_column("source_id")
