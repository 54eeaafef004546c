"""Operators, their console sessions and four-eyes proposals (migration 0017)."""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, Integer, LargeBinary, String, Table, Text

from deni.adapters.db.tables import ID, UtcDateTime, metadata

operators = Table(
    "operators",
    metadata,
    Column("id", ID, primary_key=True),
    Column("username", String(32), nullable=False, unique=True),
    Column("name", String(80), nullable=False),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(255), nullable=False),
    # The TOTP seed, sealed with a key the database does not hold (AES-GCM under the pepper).
    Column("totp_sealed", LargeBinary, nullable=False),
    # The last 30-second step a code was accepted for: a code works once.
    Column("totp_last_step", Integer, nullable=False, default=0),
    Column("failed_sign_ins", Integer, nullable=False, default=0),
    Column("locked_until", UtcDateTime, nullable=True),
    Column("disabled_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

ops_sessions = Table(
    "ops_sessions",
    metadata,
    # The SHA-256 of the cookie's token: the table alone opens no session.
    Column("token_hash", String(64), primary_key=True),
    Column("operator_id", ID, ForeignKey("operators.id"), nullable=False, index=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    Column("ended_at", UtcDateTime, nullable=True),
)

proposals = Table(
    "proposals",
    metadata,
    Column("id", ID, primary_key=True),
    Column("kind", String(32), nullable=False),
    # What it acts on (a receipt, a request id, a loan id, a user id) and its other inputs.
    Column("target", String(64), nullable=False),
    Column("params", Text, nullable=False),
    Column("reason", String(500), nullable=False),
    Column("state", String(16), nullable=False),
    Column("proposed_by", ID, ForeignKey("operators.id"), nullable=False),
    Column("proposed_at", UtcDateTime, nullable=False),
    Column("decided_by", ID, ForeignKey("operators.id"), nullable=True),
    Column("decided_at", UtcDateTime, nullable=True),
    Column("outcome", String(500), nullable=False, default=""),
    # At most one open proposal per thing: `open_key` is kind:target while open, NULL after.
    Column("open_key", String(100), nullable=True, unique=True),
    Index("ix_proposals_state_proposed", "state", "proposed_at"),
)
