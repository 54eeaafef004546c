"""A person's own audit rows, found by actor, for their data export

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_log_actor_id_seq", "audit_log", ["actor_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_actor_id_seq", table_name="audit_log")
