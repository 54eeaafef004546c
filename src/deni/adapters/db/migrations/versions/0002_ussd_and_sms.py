"""USSD sessions and SMS delivery

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ussd_sessions",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_ussd_sessions")),
    )
    op.create_index("ix_ussd_sessions_expires_at", "ussd_sessions", ["expires_at"])
    op.create_table(
        "sms_outbox",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("phone", sa.String(length=16), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_outbox")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_sms_outbox_idempotency_key")),
    )
    op.create_index("ix_sms_outbox_created_at", "sms_outbox", ["created_at"])
    op.create_table(
        "sms_deliveries",
        sa.Column("notification_id", sa.String(length=36), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name=op.f("fk_sms_deliveries_notification_id_notifications"),
        ),
        sa.PrimaryKeyConstraint("notification_id", name=op.f("pk_sms_deliveries")),
    )
    op.create_index(
        "ix_notifications_sms_state_created_at", "notifications", ["sms_state", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_notifications_sms_state_created_at", table_name="notifications")
    op.drop_table("sms_deliveries")
    op.drop_index("ix_sms_outbox_created_at", table_name="sms_outbox")
    op.drop_table("sms_outbox")
    op.drop_index("ix_ussd_sessions_expires_at", table_name="ussd_sessions")
    op.drop_table("ussd_sessions")
