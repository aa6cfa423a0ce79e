"""The decisions keep why each contact was wanted that day, beside the governor's verdict and reason.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("planned_because", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("planned_because")
