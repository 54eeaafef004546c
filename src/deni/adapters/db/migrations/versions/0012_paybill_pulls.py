"""Passes of the Pull API over the paybill's payments, so lost confirmations are found

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "paybill_pulls",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("window_start", _AT, nullable=False),
        sa.Column("window_end", _AT, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("recovered", sa.Integer(), nullable=False),
        sa.Column("left_to_stk", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=200), nullable=False),
        sa.Column("started_at", _AT, nullable=False),
        sa.Column("finished_at", _AT, nullable=True),
        sa.CheckConstraint("window_start <= window_end", name=op.f("ck_paybill_pulls_window")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paybill_pulls")),
    )
    op.create_index("ix_paybill_pulls_state_window_end", "paybill_pulls", ["state", "window_end"])


def downgrade() -> None:
    op.drop_index("ix_paybill_pulls_state_window_end", table_name="paybill_pulls")
    op.drop_table("paybill_pulls")
