"""Tables for Web Push, on the shared `metadata` (migration 0021)."""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, Integer, PrimaryKeyConstraint, String, Table, Text

from deni.adapters.db.tables import ID, UtcDateTime, metadata, notifications

# A browser's subscription: where its push service takes messages for it, and the keys a
# message is encrypted with. The endpoint is the browser's: one row each, whoever signed in.
push_subscriptions = Table(
    "push_subscriptions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("user_id", ID, ForeignKey("users.id"), nullable=False),
    Column("endpoint", String(1024), nullable=False, unique=True),
    Column("p256dh", String(128), nullable=False),
    Column("auth", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=True),
    Index("ix_push_subscriptions_user_id", "user_id"),
)

# The events a member wants pushed (comma-separated kinds); no row: every kind.
push_preferences = Table(
    "push_preferences",
    metadata,
    Column("user_id", ID, ForeignKey("users.id"), primary_key=True),
    Column("kinds", Text, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# One row per notification and subscription: pending, sending (leased), sent, failed, or
# skipped (an event the member did not choose, recorded so it is not looked at again).
push_deliveries = Table(
    "push_deliveries",
    metadata,
    Column("notification_id", ID, ForeignKey("notifications.id"), nullable=False),
    Column("subscription_id", ID, ForeignKey("push_subscriptions.id"), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("claimed_until", UtcDateTime, nullable=True),
    Column("next_attempt_at", UtcDateTime, nullable=True),
    Column("last_error", String(200), nullable=False, default=""),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("notification_id", "subscription_id"),
    Index("ix_push_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
    Index("ix_push_deliveries_subscription_id", "subscription_id"),
)

# The fan-out reads the last minutes of notifications.
ix_notifications_created_at = Index("ix_notifications_created_at", notifications.c.created_at)
