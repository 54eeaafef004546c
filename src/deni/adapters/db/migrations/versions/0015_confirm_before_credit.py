"""Payouts an operator decides, each request's evidence, and payments claimed by a callback
until M-PESA confirms them

Revision ID: 0015
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_AT = sa.DateTime(timezone=True)
_ID = sa.String(length=36)
_SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column(
        "mpesa_requests",
        sa.Column("not_found_answers", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column(
        "mpesa_requests",
        sa.Column("awaiting_decision", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "mpesa_requests", sa.Column("claimed_failure_code", sa.String(length=16), nullable=True)
    )
    op.add_column(
        "mpesa_requests",
        sa.Column("claimed_failure_desc", sa.String(length=200), nullable=False, server_default=""),
    )
    op.add_column(
        "mpesa_requests",
        sa.Column("paid_confirmed", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_mpesa_requests_awaiting_decision", "mpesa_requests", ["awaiting_decision"])
    op.create_table(
        "mpesa_request_events",
        sa.Column("id", _SERIAL, nullable=False),
        sa.Column("request_id", _ID, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("detail", sa.String(length=300), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("at", _AT, nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["mpesa_requests.id"],
            name=op.f("fk_mpesa_request_events_request_id_mpesa_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mpesa_request_events")),
    )
    op.create_index(
        "ix_mpesa_request_events_request_id_id", "mpesa_request_events", ["request_id", "id"]
    )
    op.create_table(
        "payment_claims",
        sa.Column("receipt", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("account_reference", sa.String(length=40), nullable=False),
        sa.Column("phone_raw", sa.String(length=80), nullable=False),
        sa.Column("phone", sa.String(length=12), nullable=True),
        sa.Column("user_id", _ID, nullable=True),
        sa.Column("checkout_request_id", sa.String(length=128), nullable=True),
        sa.Column("inbox_id", sa.BigInteger(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("checks", sa.Integer(), nullable=False),
        sa.Column("not_found_answers", sa.Integer(), nullable=False),
        sa.Column("next_check_at", _AT, nullable=True),
        sa.Column("status_conversation_id", sa.String(length=128), nullable=True),
        sa.Column("result_desc", sa.String(length=200), nullable=False),
        sa.Column("claimed_at", _AT, nullable=False),
        sa.Column("settled_at", _AT, nullable=True),
        sa.Column("confirm_wait_ms", sa.BigInteger(), nullable=True),
        sa.Column("decided_by", sa.String(length=100), nullable=False),
        sa.Column("updated_at", _AT, nullable=False),
        sa.CheckConstraint("amount_cents > 0", name=op.f("ck_payment_claims_positive")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_payment_claims_user_id_users")
        ),
        sa.PrimaryKeyConstraint("receipt", name=op.f("pk_payment_claims")),
        sa.UniqueConstraint(
            "status_conversation_id", name=op.f("uq_payment_claims_status_conversation_id")
        ),
    )
    op.create_index(
        "ix_payment_claims_state_next_check_at", "payment_claims", ["state", "next_check_at"]
    )
    op.create_index("ix_payment_claims_user_id_state", "payment_claims", ["user_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_payment_claims_user_id_state", table_name="payment_claims")
    op.drop_index("ix_payment_claims_state_next_check_at", table_name="payment_claims")
    op.drop_table("payment_claims")
    op.drop_index("ix_mpesa_request_events_request_id_id", table_name="mpesa_request_events")
    op.drop_table("mpesa_request_events")
    op.drop_index("ix_mpesa_requests_awaiting_decision", table_name="mpesa_requests")
    with op.batch_alter_table("mpesa_requests") as batch:
        batch.drop_column("paid_confirmed")
        batch.drop_column("claimed_failure_desc")
        batch.drop_column("claimed_failure_code")
        batch.drop_column("awaiting_decision")
        batch.drop_column("not_found_answers")
