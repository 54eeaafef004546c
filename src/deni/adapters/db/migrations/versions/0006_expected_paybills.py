"""Paybill payments accepted at validation, until their confirmation is seen

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "expected_paybills",
        sa.Column("trans_id", sa.String(length=40), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("account_reference", sa.String(length=40), nullable=False),
        sa.Column("phone_raw", sa.String(length=80), nullable=False),
        sa.Column("phone", sa.String(length=12), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("checks", sa.Integer(), nullable=False),
        sa.Column("next_check_at", _AT, nullable=True),
        sa.Column("status_conversation_id", sa.String(length=128), nullable=True),
        sa.Column("result_desc", sa.String(length=200), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("updated_at", _AT, nullable=False),
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_expected_paybills_positive")),
        sa.PrimaryKeyConstraint("trans_id", name=op.f("pk_expected_paybills")),
        sa.UniqueConstraint(
            "status_conversation_id", name=op.f("uq_expected_paybills_status_conversation_id")
        ),
    )
    op.create_index(
        "ix_expected_paybills_state_next_check_at",
        "expected_paybills",
        ["state", "next_check_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_expected_paybills_state_next_check_at", table_name="expected_paybills")
    op.drop_table("expected_paybills")
