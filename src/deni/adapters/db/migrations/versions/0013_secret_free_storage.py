"""No PIN or code left where a copy of the database gives it back

- idempotency_keys: every fingerprint so far was an unkeyed sha256 of the body, PINs
  included (10,000 tries find one). They are overwritten with a marker no request matches, so
  a retry of an old key is refused (409) rather than run a second time; housekeeping prunes
  the rows after their retention (indexed by creation time for that).
- sms_outbox: messages learn whether they hold a secret; reset codes already "sent" by the
  fake gateway (idempotency key "pin-reset:...") are masked.
- ussd_sessions: every stored session may hold a typed PIN in its last text: dropped (a phone
  mid-session starts again).
- pin_reset_codes: indexed by expiry, so housekeeping can clear hashes of expired codes.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# Not a hex digest, so no request's fingerprint ever equals it.
PURGED_FINGERPRINT = "purged:unkeyed-sha256"
CODE_MASK = "******"
_CODE = re.compile(r"(?<!\d)\d{6}(?!\d)")  # a reset code in its own, known message
ROWS_PER_BATCH = 500
BATCHES_MAX = 1_000_000  # a bound, not a plan: the fake outbox holds far fewer

_idempotency = sa.table(
    "idempotency_keys", sa.column("request_hash", sa.String), sa.column("state", sa.String)
)
_outbox = sa.table(
    "sms_outbox",
    sa.column("id", sa.String),
    sa.column("idempotency_key", sa.String),
    sa.column("body", sa.Text),
    sa.column("holds_secret", sa.Boolean),
)
_sessions = sa.table("ussd_sessions", sa.column("key", sa.String))


def upgrade() -> None:
    op.execute(sa.update(_idempotency).values(request_hash=PURGED_FINGERPRINT))
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])
    op.create_index("ix_pin_reset_codes_expires_at", "pin_reset_codes", ["expires_at"])
    op.add_column(
        "sms_outbox",
        sa.Column("holds_secret", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("sms_outbox", sa.Column("sealed_body", sa.Text(), nullable=True))
    op.add_column("sms_outbox", sa.Column("readable_until", sa.DateTime(timezone=True)))
    op.create_index("ix_sms_outbox_readable_until", "sms_outbox", ["readable_until"])
    _mask_sent_reset_codes()
    op.execute(sa.delete(_sessions))


def _mask_sent_reset_codes() -> None:
    connection = op.get_bind()
    reset_codes = sa.and_(
        _outbox.c.idempotency_key.like("pin-reset:%"), _outbox.c.holds_secret.is_(sa.false())
    )
    for _ in range(BATCHES_MAX):
        rows = connection.execute(
            sa.select(_outbox.c.id, _outbox.c.body).where(reset_codes).limit(ROWS_PER_BATCH)
        ).all()
        for row in rows:
            connection.execute(
                sa.update(_outbox)
                .where(_outbox.c.id == row.id)
                .values(body=_CODE.sub(CODE_MASK, row.body), holds_secret=True)
            )
        if len(rows) < ROWS_PER_BATCH:
            return


def downgrade() -> None:
    op.drop_index("ix_sms_outbox_readable_until", table_name="sms_outbox")
    with op.batch_alter_table("sms_outbox") as batch:
        batch.drop_column("readable_until")
        batch.drop_column("sealed_body")
        batch.drop_column("holds_secret")
    op.drop_index("ix_pin_reset_codes_expires_at", table_name="pin_reset_codes")
    op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys")
