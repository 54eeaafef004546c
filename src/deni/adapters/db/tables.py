"""The schema, as SQLAlchemy Core tables. Alembic migrations are written against it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every database (SQLite would otherwise hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        assert value.tzinfo is not None, "store aware datetimes only"
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


ID = String(36)

users = Table(
    "users",
    metadata,
    Column("id", ID, primary_key=True),
    Column("phone", String(12), nullable=False, unique=True),
    Column("name", String(60), nullable=False),
    Column("language", String(2), nullable=False),
    Column("pin_hash", String(255), nullable=False),
    Column("failed_pin_attempts", Integer, nullable=False, default=0),
    Column("lock_count", Integer, nullable=False, default=0),
    Column("locked_until", UtcDateTime, nullable=True),
    Column("pin_reset_at", UtcDateTime, nullable=True),  # migration 0008
    Column("closed_at", UtcDateTime, nullable=True),  # migration 0009
    Column("support_locked_at", UtcDateTime, nullable=True),  # migration 0010
    # migration 0016: sessions that end with the account, remote wrong PINs apart from USSD's
    Column("session_epoch", Integer, nullable=False, default=0, server_default="0"),
    Column("remote_failed_pin_attempts", Integer, nullable=False, default=0, server_default="0"),
    Column("remote_lock_count", Integer, nullable=False, default=0, server_default="0"),
    Column("remote_locked_until", UtcDateTime, nullable=True),
    # Unix seconds of the last wrong remote PINs, comma-separated (at most the day's cap).
    Column("remote_wrong_pins_at", String(120), nullable=False, default="", server_default=""),
    # The same, counted apart, for wrong PINs typed inside a signed-in session.
    Column("session_failed_pin_attempts", Integer, nullable=False, default=0, server_default="0"),
    Column("session_lock_count", Integer, nullable=False, default=0, server_default="0"),
    Column("session_locked_until", UtcDateTime, nullable=True),
    Column("session_wrong_pins_at", String(120), nullable=False, default="", server_default=""),
    Column("phone_proven_at", UtcDateTime, nullable=True),  # migration 0014
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# A forgotten PIN's reset code, hashed; one row per user who ever asked (migration 0008).
pin_reset_codes = Table(
    "pin_reset_codes",
    metadata,
    Column("user_id", ID, ForeignKey("users.id"), primary_key=True),
    Column("code_hash", String(64), nullable=True),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("sent_in_window", Integer, nullable=False, default=0),
    Column("window_started_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # Housekeeping clears the hashes of codes that expired unused (migration 0013).
    Index("ix_pin_reset_codes_expires_at", "expires_at"),
)

# The code that proves a phone number, hashed; one row per number that ever asked, whether or
# not anyone on Deni has it, so a number's hourly count holds (migration 0014).
phone_codes = Table(
    "phone_codes",
    metadata,
    Column("phone", String(12), primary_key=True),
    Column("code_hash", String(64), nullable=True),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("sent_in_window", Integer, nullable=False, default=0),
    Column("window_started_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("normal_side", String(8), nullable=False),
    Column("owner_id", ID, ForeignKey("users.id"), nullable=True, unique=True),
    Column("no_overdraft", Boolean, nullable=False),
    Column("balance_cents", BigInteger, nullable=False, default=0),
    Column("postings_count", BigInteger, nullable=False, default=0),
    Column("created_at", UtcDateTime, nullable=False),
    # The last line of defence: even a bug in the service cannot overdraw a wallet.
    CheckConstraint("NOT no_overdraft OR balance_cents >= 0", name="no_overdraft"),
)

journal_entries = Table(
    "journal_entries",
    metadata,
    Column("id", ID, primary_key=True),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("content_hash", String(64), nullable=False),
    Column("code", String(32), nullable=False),
    Column("cause_type", String(32), nullable=False),
    Column("cause_id", String(64), nullable=False),
    Column("reverses_entry_id", ID, ForeignKey("journal_entries.id"), unique=True),
    Column("memo", String(200), nullable=False, default=""),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_journal_entries_cause", "cause_type", "cause_id"),
)

postings = Table(
    "postings",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("entry_id", ID, ForeignKey("journal_entries.id"), nullable=False, index=True),
    Column("account_id", String(64), ForeignKey("accounts.id"), nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("balance_after_cents", BigInteger, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    CheckConstraint("amount_cents <> 0", name="non_zero"),
    Index("ix_postings_account_id_id", "account_id", "id"),
)

holds = Table(
    "holds",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", String(64), ForeignKey("accounts.id"), nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("hold_entry_id", ID, ForeignKey("journal_entries.id"), nullable=False),
    Column("resolve_entry_id", ID, ForeignKey("journal_entries.id"), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("resolved_at", UtcDateTime, nullable=True),
    CheckConstraint("amount_cents > 0", name="positive"),
)

loans = Table(
    "loans",
    metadata,
    Column("id", ID, primary_key=True),
    Column("code", String(12), nullable=False, unique=True),
    Column("borrower_id", ID, ForeignKey("users.id"), nullable=False),
    Column("lender_id", ID, ForeignKey("users.id"), nullable=False),
    Column("principal_cents", BigInteger, nullable=False),
    Column("fee_cents", BigInteger, nullable=False),
    Column("penalty_daily_cents", BigInteger, nullable=False),
    Column("due_date", Date, nullable=False),
    Column("state", String(16), nullable=False),
    Column("requested_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("disbursed_at", UtcDateTime, nullable=True),
    Column("closed_at", UtcDateTime, nullable=True),
    Column("principal_paid_cents", BigInteger, nullable=False, default=0),
    Column("fee_paid_cents", BigInteger, nullable=False, default=0),
    Column("penalty_charged_cents", BigInteger, nullable=False, default=0),
    Column("penalty_paid_cents", BigInteger, nullable=False, default=0),
    Column("version", Integer, nullable=False, default=0),
    Column("updated_at", UtcDateTime, nullable=False),
    CheckConstraint("borrower_id <> lender_id", name="not_self"),
    CheckConstraint("principal_paid_cents <= principal_cents", name="principal_paid"),
    CheckConstraint("fee_paid_cents <= fee_cents", name="fee_paid"),
    CheckConstraint("penalty_paid_cents <= penalty_charged_cents", name="penalty_paid"),
    Index("ix_loans_borrower_state", "borrower_id", "state"),
    Index("ix_loans_borrower_requested", "borrower_id", "requested_at"),  # migration 0016
    Index("ix_loans_lender_state", "lender_id", "state"),
    Index("ix_loans_state_expires", "state", "expires_at"),
    Index("ix_loans_state_due", "state", "due_date"),
)

repayments = Table(
    "repayments",
    metadata,
    Column("id", ID, primary_key=True),
    Column("loan_id", ID, ForeignKey("loans.id"), nullable=False, index=True),
    Column("entry_id", ID, ForeignKey("journal_entries.id"), nullable=False, unique=True),
    Column("amount_cents", BigInteger, nullable=False),
    Column("penalty_cents", BigInteger, nullable=False),
    Column("fee_cents", BigInteger, nullable=False),
    Column("principal_cents", BigInteger, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", ID, primary_key=True),
    Column("user_id", ID, ForeignKey("users.id"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("language", String(2), nullable=False),
    Column("body", Text, nullable=False),
    Column("loan_id", ID, ForeignKey("loans.id"), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("read_at", UtcDateTime, nullable=True),
    Column("sms_state", String(16), nullable=False, default="pending"),
    # Reminders carry a key such as "due_today:<loan>:<date>", so a re-run sends nothing twice.
    Column("dedupe_key", String(120), nullable=True, unique=True),
    Index("ix_notifications_user_created", "user_id", "created_at"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("at", UtcDateTime, nullable=False),
    Column("actor_id", String(64), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("command", String(48), nullable=False),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    # A person's own commands, for their data export (migration 0007).
    Index("ix_audit_log_actor_id_seq", "actor_id", "seq"),
)

# One row. Locking it orders appends, so two writers can never fork the hash chain.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("scope", String(64), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("response_status", Integer, nullable=True),
    Column("response_body", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # Housekeeping prunes keys past their retention, oldest first (migration 0013).
    Index("ix_idempotency_keys_created_at", "created_at"),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("id", ID, primary_key=True),
    Column("user_id", ID, ForeignKey("users.id"), nullable=False, index=True),
    Column("family_id", ID, nullable=False, index=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("replaced_by", ID, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
)

# Each worker process's last sign of life, written by its M-PESA worker loop (migration 0019):
# /health/ready and /metrics read the newest. One row per process (host and pid), pruned when a
# worker starts.
worker_heartbeats = Table(
    "worker_heartbeats",
    metadata,
    Column("worker_id", String(200), primary_key=True),
    Column("started_at", UtcDateTime, nullable=False),
    Column("beat_at", UtcDateTime, nullable=False),
    Index("ix_worker_heartbeats_beat_at", "beat_at"),
)
