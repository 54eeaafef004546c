"""Proven phone numbers: when the SIM's holder proved each account's number, and the codes
sent by SMS to prove one

Accounts made by USSD were proven by the network; so were those whose holder later showed the
SIM with the account's PIN (a USSD command confirmed with it) or reset the PIN by SMS code or
USSD. Every other account (made through the API, the web app or the offline client before
codes were asked) starts unproven: it may not lend or borrow until its owner proves the number.

Revision ID: 0014
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_AT = sa.DateTime(timezone=True)
# Audit rows that only the SIM's holder could have made: on USSD, the network says which SIM
# dialled, and these commands took the account's PIN (or made the account); a PIN reset took a
# code sent to the number, or a USSD dial.
_PROVEN_ON_USSD = ("register_user", "request_loan", "approve_loan", "write_off_loan", "change_pin")
_PROVEN_ANYWHERE = ("reset_pin",)


def upgrade() -> None:
    op.add_column("users", sa.Column("phone_proven_at", _AT, nullable=True))
    op.create_table(
        "phone_codes",
        sa.Column("phone", sa.String(length=12), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=True),
        sa.Column("expires_at", _AT, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("sent_in_window", sa.Integer(), nullable=False),
        sa.Column("window_started_at", _AT, nullable=False),
        sa.Column("updated_at", _AT, nullable=False),
        sa.PrimaryKeyConstraint("phone", name=op.f("pk_phone_codes")),
    )
    users = sa.table("users", sa.column("id"), sa.column("closed_at"), sa.column("phone_proven_at"))
    audit = sa.table(
        "audit_log", sa.column("at"), sa.column("actor_id"), sa.column("channel"),
        sa.column("command"),
    )  # fmt: skip
    first_proof = (
        sa.select(sa.func.min(audit.c.at))
        .where(
            audit.c.actor_id == users.c.id,
            sa.or_(
                sa.and_(audit.c.channel == "ussd", audit.c.command.in_(_PROVEN_ON_USSD)),
                audit.c.command.in_(_PROVEN_ANYWHERE),
            ),
        )
        .scalar_subquery()
    )
    op.execute(
        sa.update(users).where(users.c.closed_at.is_(None)).values(phone_proven_at=first_proof)
    )


def downgrade() -> None:
    op.drop_table("phone_codes")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("phone_proven_at")
