"""Forgotten PINs: a reset code per user (hashed), and when a user last reset their PIN

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_ID = sa.String(length=36)
_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("users", sa.Column("pin_reset_at", _AT, nullable=True))
    op.create_table(
        "pin_reset_codes",
        sa.Column("user_id", _ID, nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=True),
        sa.Column("expires_at", _AT, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("sent_in_window", sa.Integer(), nullable=False),
        sa.Column("window_started_at", _AT, nullable=False),
        sa.Column("updated_at", _AT, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_pin_reset_codes_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_pin_reset_codes")),
    )


def downgrade() -> None:
    op.drop_table("pin_reset_codes")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("pin_reset_at")
