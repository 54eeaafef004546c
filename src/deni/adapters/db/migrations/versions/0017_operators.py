"""Operators of the back office, their console sessions, and four-eyes proposals

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from deni.adapters.db.tables import UtcDateTime

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "operators",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("username", sa.String(32), nullable=False),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("totp_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("totp_last_step", sa.Integer(), nullable=False),
        sa.Column("failed_sign_ins", sa.Integer(), nullable=False),
        sa.Column("locked_until", UtcDateTime(), nullable=True),
        sa.Column("disabled_at", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_operators"),
        sa.UniqueConstraint("username", name="uq_operators_username"),
    )
    op.create_table(
        "ops_sessions",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("operator_id", sa.String(36), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("last_seen_at", UtcDateTime(), nullable=False),
        sa.Column("ended_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name="pk_ops_sessions"),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["operators.id"], name="fk_ops_sessions_operator_id_operators"
        ),
    )
    op.create_index("ix_ops_sessions_operator_id", "ops_sessions", ["operator_id"])
    op.create_table(
        "proposals",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("proposed_by", sa.String(36), nullable=False),
        sa.Column("proposed_at", UtcDateTime(), nullable=False),
        sa.Column("decided_by", sa.String(36), nullable=True),
        sa.Column("decided_at", UtcDateTime(), nullable=True),
        sa.Column("outcome", sa.String(500), nullable=False),
        sa.Column("open_key", sa.String(100), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_proposals"),
        sa.UniqueConstraint("open_key", name="uq_proposals_open_key"),
        sa.ForeignKeyConstraint(
            ["proposed_by"], ["operators.id"], name="fk_proposals_proposed_by_operators"
        ),
        sa.ForeignKeyConstraint(
            ["decided_by"], ["operators.id"], name="fk_proposals_decided_by_operators"
        ),
    )
    op.create_index("ix_proposals_state_proposed", "proposals", ["state", "proposed_at"])


def downgrade() -> None:
    op.drop_table("proposals")
    op.drop_table("ops_sessions")
    op.drop_table("operators")
