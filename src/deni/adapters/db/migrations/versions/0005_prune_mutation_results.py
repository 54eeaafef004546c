"""Processed mutations by age, so that old stored results can be pruned without a full scan

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_sync_mutations_created_at", "sync_mutations", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_sync_mutations_created_at", table_name="sync_mutations")
