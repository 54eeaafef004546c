"""Tables for M-PESA through Daraja, on the shared `metadata` (migration 0003).

- mpesa_requests: one row per STK push or B2C payout Deni asked for; the row is the truth.
- callback_inbox: every body Daraja POSTed, stored before anything else; the dedupe key
  (CheckoutRequestID, OriginatorConversationID, TransID, ...) makes a repeat a no-op.
- outbox: work to send (an STK push, a B2C payout), written in the business transaction.
- daraja_tokens: the deployment-wide OAuth token (one row per environment and consumer key).
- suspense_payments: money received that matched nothing, until an operator assigns it.
- mpesa_preferences: per user: pay loans out to M-PESA (default on), lender auto-payout.
- balance_reports: Daraja's account balance beside the ledger's M-PESA accounts.
- expected_paybills: paybill payments accepted at validation, until their confirmation is seen
  (migration 0006).
- mpesa_request_events: each request's evidence (sends, answers, results, status answers,
  operator decisions), and payment_claims: money a callback says arrived, until M-PESA
  confirms it (migration 0015).
- Reversals (a payment sent back to its payer) are mpesa_requests of kind "reversal", with the
  original receipt; one of money in suspense has no user (migration 0018).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
)

from deni.adapters.db.tables import ID, UtcDateTime, metadata

mpesa_requests = Table(
    "mpesa_requests",
    metadata,
    Column("id", ID, primary_key=True),
    Column("kind", String(8), nullable=False),  # stk | b2c | reversal
    Column("purpose", String(16), nullable=False),  # top_up, repayment, withdrawal, ...
    # Whose money: none only for a reversal of money in suspense (migration 0018).
    Column("user_id", ID, ForeignKey("users.id"), nullable=True),
    Column("loan_id", ID, ForeignKey("loans.id"), nullable=True),
    Column("phone", String(12), nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("state", String(16), nullable=False),
    Column("hold_id", ID, ForeignKey("holds.id"), nullable=True),
    Column("attempt", Integer, nullable=False, default=0),
    Column("checkout_request_id", String(128), nullable=True, unique=True),
    Column("originator_conversation_id", String(64), nullable=True, unique=True),
    Column("conversation_id", String(128), nullable=True),
    Column("status_conversation_id", String(128), nullable=True, unique=True),
    Column("acknowledged", Boolean, nullable=False, default=False),
    Column("receipt", String(40), nullable=True),
    Column("result_code", String(16), nullable=False, default=""),
    Column("result_desc", String(200), nullable=False, default=""),
    Column("status_checks", Integer, nullable=False, default=0),
    Column("next_check_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("not_found_answers", Integer, nullable=False, default=0),
    Column("awaiting_decision", Boolean, nullable=False, default=False),
    Column("claimed_failure_code", String(16), nullable=True),
    Column("claimed_failure_desc", String(200), nullable=False, default=""),
    Column("paid_confirmed", Boolean, nullable=False, default=False),
    # A reversal's original payment, the receipt it sends back (migration 0018).
    Column("original_receipt", String(40), nullable=True),
    CheckConstraint("amount_cents > 0", name="positive"),
    Index("ix_mpesa_requests_state_next_check_at", "state", "next_check_at"),
    Index("ix_mpesa_requests_loan_id", "loan_id"),
    Index("ix_mpesa_requests_awaiting_decision", "awaiting_decision"),
    Index("ix_mpesa_requests_original_receipt", "original_receipt"),
    Index("ix_mpesa_requests_kind_created_at", "kind", "created_at"),
)

mpesa_request_events = Table(
    "mpesa_request_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("request_id", ID, ForeignKey("mpesa_requests.id"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("kind", String(24), nullable=False),
    Column("detail", String(300), nullable=False, default=""),
    Column("actor", String(100), nullable=False, default=""),
    Column("at", UtcDateTime, nullable=False),
    Index("ix_mpesa_request_events_request_id_id", "request_id", "id"),
)

payment_claims = Table(
    "payment_claims",
    metadata,
    Column("receipt", String(40), primary_key=True),
    Column("source", String(8), nullable=False),  # c2b | stk
    Column("amount_cents", BigInteger, nullable=False),
    Column("account_reference", String(40), nullable=False, default=""),
    Column("phone_raw", String(80), nullable=False, default=""),
    Column("phone", String(12), nullable=True),
    Column("user_id", ID, ForeignKey("users.id"), nullable=True),
    Column("checkout_request_id", String(128), nullable=True),
    Column("inbox_id", BigInteger, nullable=True),
    # waiting, confirmed, disputed, accepted, rejected
    Column("state", String(16), nullable=False),
    Column("checks", Integer, nullable=False, default=0),
    Column("not_found_answers", Integer, nullable=False, default=0),
    Column("next_check_at", UtcDateTime, nullable=True),
    Column("status_conversation_id", String(128), nullable=True, unique=True),
    Column("result_desc", String(200), nullable=False, default=""),
    Column("claimed_at", UtcDateTime, nullable=False),
    Column("settled_at", UtcDateTime, nullable=True),
    Column("confirm_wait_ms", BigInteger, nullable=True),
    Column("decided_by", String(100), nullable=False, default=""),
    Column("updated_at", UtcDateTime, nullable=False),
    CheckConstraint("amount_cents > 0", name="positive"),
    Index("ix_payment_claims_state_next_check_at", "state", "next_check_at"),
    Index("ix_payment_claims_user_id_state", "user_id", "state"),
)

callback_inbox = Table(
    "callback_inbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("dedupe_key", String(200), nullable=False, unique=True),
    Column("body", LargeBinary, nullable=False),
    Column("source_ip", String(64), nullable=False, default=""),
    Column("state", String(16), nullable=False),  # received, applied, ignored, malformed, failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("error", String(300), nullable=False, default=""),
    Column("received_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_callback_inbox_state_id", "state", "id"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", ID, primary_key=True),
    Column("topic", String(32), nullable=False),
    Column("payload", Text, nullable=False),
    Column("unique_key", String(200), nullable=False, unique=True),
    Column("state", String(16), nullable=False),  # pending, sending, done, dead
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("claimed_until", UtcDateTime, nullable=True),
    Column("last_error", String(300), nullable=False, default=""),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_outbox_state_next_attempt_at", "state", "next_attempt_at"),
)

daraja_tokens = Table(
    "daraja_tokens",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("token", Text, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

suspense_payments = Table(
    "suspense_payments",
    metadata,
    Column("receipt", String(40), primary_key=True),
    Column("amount_cents", BigInteger, nullable=False),
    Column("source", String(8), nullable=False),  # c2b | stk
    Column("account_reference", String(40), nullable=False, default=""),
    Column("phone", String(40), nullable=False, default=""),  # as Daraja sent it (may be masked)
    Column("reason", String(200), nullable=False),
    Column("entry_id", ID, ForeignKey("journal_entries.id"), nullable=False),
    # unassigned, assigning, assigned; reversing, reversed (migration 0018: sent back)
    Column("state", String(16), nullable=False),
    Column("user_id", ID, ForeignKey("users.id"), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("assigned_at", UtcDateTime, nullable=True),
    CheckConstraint("amount_cents > 0", name="positive"),
    Index("ix_suspense_payments_state", "state"),
)

mpesa_preferences = Table(
    "mpesa_preferences",
    metadata,
    Column("user_id", ID, ForeignKey("users.id"), primary_key=True),
    Column("disburse_to_mpesa", Boolean, nullable=False, default=True),
    Column("auto_payout", Boolean, nullable=False, default=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

balance_reports = Table(
    "balance_reports",
    metadata,
    Column("id", ID, primary_key=True),
    Column("conversation_id", String(128), nullable=True, unique=True),
    Column("state", String(16), nullable=False),  # requested, received, failed
    Column("working_cents", BigInteger, nullable=True),
    Column("utility_cents", BigInteger, nullable=True),
    Column("ledger_paybill_cents", BigInteger, nullable=False),
    Column("ledger_float_cents", BigInteger, nullable=False),
    Column("result_desc", String(200), nullable=False, default=""),
    Column("requested_at", UtcDateTime, nullable=False),
    Column("received_at", UtcDateTime, nullable=True),
    Column("struck_at", UtcDateTime, nullable=True),
    # JSON: the ledger and the money in flight when asked, and when the answer was applied.
    Column("position_before", Text, nullable=True),
    Column("position_after", Text, nullable=True),
    Column("working_difference_cents", BigInteger, nullable=True),
    Column("utility_difference_cents", BigInteger, nullable=True),
    # Money at M-PESA outside the ledger, as narrowed so far: [low, high] per account.
    Column("working_outside_low_cents", BigInteger, nullable=True),
    Column("working_outside_high_cents", BigInteger, nullable=True),
    Column("utility_outside_low_cents", BigInteger, nullable=True),
    Column("utility_outside_high_cents", BigInteger, nullable=True),
)

expected_paybills = Table(
    "expected_paybills",
    metadata,
    Column("trans_id", String(40), primary_key=True),
    Column("amount_cents", BigInteger, nullable=False),
    Column("account_reference", String(40), nullable=False, default=""),
    Column("phone_raw", String(80), nullable=False, default=""),
    Column("phone", String(12), nullable=True),
    Column("state", String(16), nullable=False),  # waiting, confirmed, not_paid, unresolved
    Column("checks", Integer, nullable=False, default=0),
    Column("next_check_at", UtcDateTime, nullable=True),
    Column("status_conversation_id", String(128), nullable=True, unique=True),
    Column("result_desc", String(200), nullable=False, default=""),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    CheckConstraint("amount_cents > 0", name="positive"),
    Index("ix_expected_paybills_state_next_check_at", "state", "next_check_at"),
)

# One row per pass of the Pull API; the newest finished one says where the next window starts.
paybill_pulls = Table(
    "paybill_pulls",
    metadata,
    Column("id", ID, primary_key=True),
    Column("window_start", UtcDateTime, nullable=False),
    Column("window_end", UtcDateTime, nullable=False),
    Column("state", String(16), nullable=False),  # running, done, failed
    Column("rows", Integer, nullable=False, default=0),
    Column("recovered", Integer, nullable=False, default=0),
    Column("left_to_stk", Integer, nullable=False, default=0),
    Column("error", String(200), nullable=False, default=""),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=True),
    CheckConstraint("window_start <= window_end", name="window"),
    Index("ix_paybill_pulls_state_window_end", "state", "window_end"),
)
