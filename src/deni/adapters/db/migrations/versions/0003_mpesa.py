"""M-PESA: requests, callback inbox, outbox, Daraja token, suspense, preferences, balances

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.String(length=36)
_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    _requests()
    _inbox_and_outbox()
    _operator_tables()


def _requests() -> None:
    op.create_table(
        "mpesa_requests",
        sa.Column("id", _ID, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("user_id", _ID, nullable=False),
        sa.Column("loan_id", _ID, nullable=True),
        sa.Column("phone", sa.String(length=12), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("hold_id", _ID, nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("checkout_request_id", sa.String(length=128), nullable=True),
        sa.Column("originator_conversation_id", sa.String(length=64), nullable=True),
        sa.Column("conversation_id", sa.String(length=128), nullable=True),
        sa.Column("status_conversation_id", sa.String(length=128), nullable=True),
        sa.Column("acknowledged", sa.Boolean(), nullable=False),
        sa.Column("receipt", sa.String(length=40), nullable=True),
        sa.Column("result_code", sa.String(length=16), nullable=False),
        sa.Column("result_desc", sa.String(length=200), nullable=False),
        sa.Column("status_checks", sa.Integer(), nullable=False),
        sa.Column("next_check_at", _AT, nullable=True),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("updated_at", _AT, nullable=False),
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_mpesa_requests_positive")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_mpesa_requests_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["loan_id"], ["loans.id"], name=op.f("fk_mpesa_requests_loan_id_loans")
        ),
        sa.ForeignKeyConstraint(
            ["hold_id"], ["holds.id"], name=op.f("fk_mpesa_requests_hold_id_holds")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mpesa_requests")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_mpesa_requests_idempotency_key")),
        sa.UniqueConstraint(
            "checkout_request_id", name=op.f("uq_mpesa_requests_checkout_request_id")
        ),
        sa.UniqueConstraint(
            "originator_conversation_id",
            name=op.f("uq_mpesa_requests_originator_conversation_id"),
        ),
        sa.UniqueConstraint(
            "status_conversation_id", name=op.f("uq_mpesa_requests_status_conversation_id")
        ),
    )
    op.create_index(
        "ix_mpesa_requests_state_next_check_at", "mpesa_requests", ["state", "next_check_at"]
    )
    op.create_index("ix_mpesa_requests_loan_id", "mpesa_requests", ["loan_id"])


def _inbox_and_outbox() -> None:
    op.create_table(
        "callback_inbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("source_ip", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=300), nullable=False),
        sa.Column("received_at", _AT, nullable=False),
        sa.Column("updated_at", _AT, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_inbox")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_callback_inbox_dedupe_key")),
    )
    op.create_index("ix_callback_inbox_state_id", "callback_inbox", ["state", "id"])
    op.create_table(
        "outbox",
        sa.Column("id", _ID, nullable=False),
        sa.Column("topic", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("unique_key", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _AT, nullable=False),
        sa.Column("claimed_until", _AT, nullable=True),
        sa.Column("last_error", sa.String(length=300), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("updated_at", _AT, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("unique_key", name=op.f("uq_outbox_unique_key")),
    )
    op.create_index("ix_outbox_state_next_attempt_at", "outbox", ["state", "next_attempt_at"])


def _operator_tables() -> None:
    op.create_table(
        "daraja_tokens",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("expires_at", _AT, nullable=False),
        sa.Column("updated_at", _AT, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_daraja_tokens")),
    )
    op.create_table(
        "suspense_payments",
        sa.Column("receipt", sa.String(length=40), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("account_reference", sa.String(length=40), nullable=False),
        sa.Column("phone", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("entry_id", _ID, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("user_id", _ID, nullable=True),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("assigned_at", _AT, nullable=True),
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_suspense_payments_positive")),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["journal_entries.id"],
            name=op.f("fk_suspense_payments_entry_id_journal_entries"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_suspense_payments_user_id_users")
        ),
        sa.PrimaryKeyConstraint("receipt", name=op.f("pk_suspense_payments")),
    )
    op.create_index("ix_suspense_payments_state", "suspense_payments", ["state"])
    op.create_table(
        "mpesa_preferences",
        sa.Column("user_id", _ID, nullable=False),
        sa.Column("disburse_to_mpesa", sa.Boolean(), nullable=False),
        sa.Column("auto_payout", sa.Boolean(), nullable=False),
        sa.Column("updated_at", _AT, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_mpesa_preferences_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_mpesa_preferences")),
    )
    op.create_table(
        "balance_reports",
        sa.Column("id", _ID, nullable=False),
        sa.Column("conversation_id", sa.String(length=128), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("working_cents", sa.BigInteger(), nullable=True),
        sa.Column("utility_cents", sa.BigInteger(), nullable=True),
        sa.Column("ledger_paybill_cents", sa.BigInteger(), nullable=False),
        sa.Column("ledger_float_cents", sa.BigInteger(), nullable=False),
        sa.Column("result_desc", sa.String(length=200), nullable=False),
        sa.Column("requested_at", _AT, nullable=False),
        sa.Column("received_at", _AT, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_balance_reports")),
        sa.UniqueConstraint("conversation_id", name=op.f("uq_balance_reports_conversation_id")),
    )


def downgrade() -> None:
    op.drop_table("balance_reports")
    op.drop_table("mpesa_preferences")
    op.drop_index("ix_suspense_payments_state", table_name="suspense_payments")
    op.drop_table("suspense_payments")
    op.drop_table("daraja_tokens")
    op.drop_index("ix_outbox_state_next_attempt_at", table_name="outbox")
    op.drop_table("outbox")
    op.drop_index("ix_callback_inbox_state_id", table_name="callback_inbox")
    op.drop_table("callback_inbox")
    op.drop_index("ix_mpesa_requests_loan_id", table_name="mpesa_requests")
    op.drop_index("ix_mpesa_requests_state_next_check_at", table_name="mpesa_requests")
    op.drop_table("mpesa_requests")
