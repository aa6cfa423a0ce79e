"""The first tables: portfolio, snapshots, stage history, runs, imports, holds.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(name: str, *, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.String(), nullable=nullable)


def _money(name: str, *, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def _instant(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "customers",
        _text("customer_id"),
        _text("name"),
        _text("locale"),
        _text("timezone"),
        _text("jurisdiction"),
        _text("phone"),
        _text("email"),
        _text("address_line1"),
        _text("address_line2"),
        _text("city"),
        _text("region"),
        _text("postal_code"),
        _text("country"),
        sa.PrimaryKeyConstraint("customer_id", name="pk_customers"),
    )
    op.create_table(
        "accounts",
        _text("account_id"),
        _text("customer_id"),
        _text("product_code"),
        sa.Column("opened_on", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name="pk_accounts"),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.customer_id"], name="fk_accounts_customer_id_customers"
        ),
    )
    op.create_index("ix_accounts_customer_id", "accounts", ["customer_id"])
    op.create_table(
        "dues",
        _text("account_id"),
        _text("due_id"),
        sa.Column("due_date", sa.Date(), nullable=False),
        _money("amount_minor"),
        _text("component"),
        _money("minimum_minor", nullable=True),
        sa.Column("posted_on", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("account_id", "due_id", name="pk_dues"),
    )
    op.create_index("ix_dues_account_id_due_date", "dues", ["account_id", "due_date"])
    op.create_table(
        "payments",
        _text("payment_id"),
        _text("account_id"),
        sa.Column("paid_on", sa.Date(), nullable=False),
        _money("amount_minor"),
        sa.PrimaryKeyConstraint("payment_id", name="pk_payments"),
    )
    op.create_index("ix_payments_account_id_paid_on", "payments", ["account_id", "paid_on"])
    op.create_table(
        "snapshots",
        _text("account_id"),
        sa.Column("as_of", sa.Date(), nullable=False),
        _text("currency"),
        sa.Column("days_past_due", sa.Integer(), nullable=False),
        sa.Column("delinquency_days", sa.Integer(), nullable=False),
        _text("bucket"),
        _money("amount_past_due_minor"),
        _money("principal_past_due_minor"),
        _money("interest_past_due_minor"),
        _money("fee_past_due_minor"),
        _money("penalty_past_due_minor"),
        sa.Column("oldest_unpaid_due_date", sa.Date(), nullable=True),
        sa.Column("missed_dues", sa.Integer(), nullable=False),
        _text("stage"),
        sa.Column("on_hold", sa.Boolean(), nullable=False),
        _money("outstanding_minor"),
        _money("credit_minor"),
        _money("penalty_interest_minor"),
        _money("card_interest_minor"),
        _money("late_fees_minor"),
        sa.PrimaryKeyConstraint("as_of", "account_id", name="pk_snapshots"),
    )
    op.create_table(
        "stage_history",
        _text("account_id"),
        _text("stage"),
        sa.Column("entered_on", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "entered_on", name="pk_stage_history"),
    )
    op.create_table(
        "runs",
        sa.Column("as_of", sa.Date(), nullable=False),
        _instant("started_at"),
        _instant("finished_at"),
        sa.Column("accounts", sa.Integer(), nullable=False),
        _text("status"),
        _text("engine"),
        sa.PrimaryKeyConstraint("as_of", name="pk_runs"),
    )
    op.create_table(
        "imports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _text("kind"),
        _text("file_name"),
        _text("sha256"),
        sa.Column("rows_added", sa.Integer(), nullable=False),
        sa.Column("rows_unchanged", sa.Integer(), nullable=False),
        _instant("imported_at"),
        sa.PrimaryKeyConstraint("id", name="pk_imports"),
    )
    op.create_index("ix_imports_kind_sha256", "imports", ["kind", "sha256"])
    op.create_table(
        "holds",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _text("scope"),
        _text("customer_id"),
        _text("account_id", nullable=True),
        _text("channel", nullable=True),
        _text("kind"),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        _instant("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_holds"),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.customer_id"], name="fk_holds_customer_id_customers"
        ),
        sa.CheckConstraint("scope IN ('customer', 'account', 'channel')", name=op.f("ck_holds_scope")),
    )
    op.create_index("ix_holds_customer_id", "holds", ["customer_id"])


def downgrade() -> None:
    for table in (
        "holds",
        "imports",
        "runs",
        "stage_history",
        "snapshots",
        "payments",
        "dues",
        "accounts",
        "customers",
    ):
        op.drop_table(table)
