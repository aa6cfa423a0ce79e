"""Third parties the customers named (emergency, family, employer, reference contacts), the contacts who
asked to hear no more, and the outbox's ``contact_id`` (a message to a contact, not to the customer).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from duecourse.store.downgrades import refuse_contact_messages_pending

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "third_parties",
        sa.Column("contact_id", sa.String(), nullable=False),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("relation", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("phone", sa.String(), nullable=False),
        sa.Column("email", sa.String(), nullable=False),
        sa.Column("locale", sa.String(), nullable=False),
        sa.Column("timezone", sa.String(), nullable=False),
        sa.Column("agreed_on", sa.Date(), nullable=True),
        sa.Column("link_subject", sa.String(), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("contact_id", name="pk_third_parties"),
    )
    op.create_index("ix_third_parties_customer_id", "third_parties", ["customer_id"])
    op.create_index("ix_third_parties_link_subject", "third_parties", ["link_subject"])
    op.create_table(
        "third_party_stops",
        sa.Column("contact_id", sa.String(), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("how", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("contact_id", name="pk_third_party_stops"),
    )
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("contact_id", sa.String(), nullable=False, server_default=""))


# The outbox states after which nothing more is sent or learnt of a message (``store/outbox.FINAL`` when
# this revision was written); a copy, so that this migration keeps meaning what it meant.
def downgrade() -> None:
    refuse_contact_messages_pending(op.get_bind())  # see store/downgrades.py
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("contact_id")
    op.drop_table("third_party_stops")
    op.drop_index("ix_third_parties_link_subject", table_name="third_parties")
    op.drop_index("ix_third_parties_customer_id", table_name="third_parties")
    op.drop_table("third_parties")
