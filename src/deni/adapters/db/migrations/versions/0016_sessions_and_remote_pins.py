"""Sessions that end with the account (an epoch in every access token), and wrong PINs from
remote channels counted apart from USSD's (sign-in's and in-session ones apart too)

Revision ID: 0016
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("session_epoch", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column(
                "remote_failed_pin_attempts", sa.Integer(), nullable=False, server_default="0"
            )
        )
        batch.add_column(
            sa.Column("remote_lock_count", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("remote_locked_until", sa.DateTime(timezone=True), nullable=True)
        )
        batch.add_column(
            sa.Column(
                "remote_wrong_pins_at", sa.String(length=120), nullable=False, server_default=""
            )
        )
        # The same counter again, apart, for wrong PINs typed inside a signed-in session.
        batch.add_column(
            sa.Column(
                "session_failed_pin_attempts", sa.Integer(), nullable=False, server_default="0"
            )
        )
        batch.add_column(
            sa.Column("session_lock_count", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("session_locked_until", sa.DateTime(timezone=True), nullable=True)
        )
        batch.add_column(
            sa.Column(
                "session_wrong_pins_at", sa.String(length=120), nullable=False, server_default=""
            )
        )
    op.create_index("ix_loans_borrower_requested", "loans", ["borrower_id", "requested_at"])


def downgrade() -> None:
    op.drop_index("ix_loans_borrower_requested", table_name="loans")
    with op.batch_alter_table("users") as batch:
        for name in (
            "session_wrong_pins_at",
            "session_locked_until",
            "session_lock_count",
            "session_failed_pin_attempts",
            "remote_wrong_pins_at",
            "remote_locked_until",
            "remote_lock_count",
            "remote_failed_pin_attempts",
            "session_epoch",
        ):
            batch.drop_column(name)
