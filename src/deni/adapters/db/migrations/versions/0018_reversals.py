"""Reversals: a payment received, sent back to its payer through M-PESA

An M-PESA request of kind "reversal" carries the receipt of the payment it returns; one of money
in suspense belongs to no member, so a request's user becomes optional.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mpesa_requests") as batch:
        batch.add_column(sa.Column("original_receipt", sa.String(40), nullable=True))
        batch.alter_column("user_id", existing_type=sa.String(36), nullable=True)
        batch.create_index("ix_mpesa_requests_original_receipt", ["original_receipt"])
        batch.create_index("ix_mpesa_requests_kind_created_at", ["kind", "created_at"])


def downgrade() -> None:
    op.execute(
        "DELETE FROM mpesa_request_events WHERE request_id IN "
        "(SELECT id FROM mpesa_requests WHERE kind = 'reversal')"
    )
    op.execute("DELETE FROM mpesa_requests WHERE kind = 'reversal'")
    op.execute("UPDATE suspense_payments SET state = 'unassigned' WHERE state = 'reversing'")
    with op.batch_alter_table("mpesa_requests") as batch:
        batch.drop_index("ix_mpesa_requests_kind_created_at")
        batch.drop_index("ix_mpesa_requests_original_receipt")
        batch.alter_column("user_id", existing_type=sa.String(36), nullable=False)
        batch.drop_column("original_receipt")
