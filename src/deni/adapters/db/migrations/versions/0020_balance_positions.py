"""Balance reports compare like with like: M-PESA's time for its figures, the ledger and the
money in flight when asked and when answered, and the difference found (nullable: older
reports have none)

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from deni.adapters.db.tables import UtcDateTime

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


_OUTSIDE = (
    "working_outside_low_cents",
    "working_outside_high_cents",
    "utility_outside_low_cents",
    "utility_outside_high_cents",
)


def upgrade() -> None:
    with op.batch_alter_table("balance_reports") as batch:
        batch.add_column(sa.Column("struck_at", UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("position_before", sa.Text(), nullable=True))
        batch.add_column(sa.Column("position_after", sa.Text(), nullable=True))
        batch.add_column(sa.Column("working_difference_cents", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("utility_difference_cents", sa.BigInteger(), nullable=True))
        for name in _OUTSIDE:
            batch.add_column(sa.Column(name, sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("balance_reports") as batch:
        for name in (
            *_OUTSIDE,
            "utility_difference_cents",
            "working_difference_cents",
            "position_after",
            "position_before",
            "struck_at",
        ):
            batch.drop_column(name)
