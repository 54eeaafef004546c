"""Tables for the USSD channel and SMS delivery, on the shared `metadata` (migration 0002)."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, ForeignKey, Index, Integer, String, Table, Text

from deni.adapters.db.tables import ID, UtcDateTime, metadata, notifications

# USSD sessions and resume snapshots when DENI_SESSION_STORE=sql. Expired rows are ignored on
# read and purged in bounded batches.
ussd_sessions = Table(
    "ussd_sessions",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("value", Text, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Index("ix_ussd_sessions_expires_at", "expires_at"),
)

# What the fake SMS gateway "sent", so `deni sms outbox` in another process can list it. A
# message holding a secret keeps it masked in `body`; the whole text is sealed for the fake
# handset until `readable_until`, then dropped (migration 0013).
sms_outbox = Table(
    "sms_outbox",
    metadata,
    Column("id", ID, primary_key=True),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("phone", String(16), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("holds_secret", Boolean, nullable=False, default=False),
    Column("sealed_body", Text, nullable=True),
    Column("readable_until", UtcDateTime, nullable=True),
    Index("ix_sms_outbox_created_at", "created_at"),
    Index("ix_sms_outbox_readable_until", "readable_until"),
)

# Delivery attempts per notification (notifications.sms_state holds the outcome).
sms_deliveries = Table(
    "sms_deliveries",
    metadata,
    Column("notification_id", ID, ForeignKey("notifications.id"), primary_key=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("claimed_until", UtcDateTime, nullable=True),
    Column("next_attempt_at", UtcDateTime, nullable=True),
    Column("last_error", String(200), nullable=False, default=""),
    Column("updated_at", UtcDateTime, nullable=False),
)

# The sender scans pending notifications oldest first.
ix_notifications_sms_state = Index(
    "ix_notifications_sms_state_created_at",
    notifications.c.sms_state,
    notifications.c.created_at,
)
