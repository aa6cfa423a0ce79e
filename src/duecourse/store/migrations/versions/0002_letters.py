"""Stored letters and print batches.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(name: str) -> sa.Column[str]:
    return sa.Column(name, sa.String(), nullable=False)


def _instant(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "letters",
        _text("sha256"),
        _text("reference"),
        _text("account_id"),
        _text("customer_id"),
        _text("kind"),
        _text("locale"),
        sa.Column("letter_date", sa.Date(), nullable=False),
        _text("template_version"),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("data_json", sa.Text(), nullable=False),
        sa.Column("pdf", sa.LargeBinary(), nullable=False),
        _instant("created_at"),
        sa.PrimaryKeyConstraint("sha256", name="pk_letters"),
    )
    op.create_index("ix_letters_account_id_letter_date", "letters", ["account_id", "letter_date"])
    op.create_index("ix_letters_reference", "letters", ["reference"])
    op.create_table(
        "letter_batches",
        sa.Column("batch_date", sa.Date(), nullable=False),
        sa.Column("letters", sa.Integer(), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        _text("sha256"),
        _text("manifest_sha256"),
        _instant("created_at"),
        sa.PrimaryKeyConstraint("batch_date", name="pk_letter_batches"),
    )
    op.create_table(
        "letter_batch_items",
        sa.Column("batch_date", sa.Date(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        _text("letter_sha256"),
        sa.PrimaryKeyConstraint("batch_date", "sequence", name="pk_letter_batch_items"),
        sa.ForeignKeyConstraint(
            ["batch_date"],
            ["letter_batches.batch_date"],
            name="fk_letter_batch_items_batch_date_letter_batches",
        ),
        sa.ForeignKeyConstraint(
            ["letter_sha256"], ["letters.sha256"], name="fk_letter_batch_items_letter_sha256_letters"
        ),
    )


def downgrade() -> None:
    op.drop_table("letter_batch_items")
    op.drop_table("letter_batches")
    op.drop_index("ix_letters_reference", table_name="letters")
    op.drop_index("ix_letters_account_id_letter_date", table_name="letters")
    op.drop_table("letters")
