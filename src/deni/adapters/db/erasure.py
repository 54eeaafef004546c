"""Closing an account: which rows hold a person's data beyond the financial records.

Kept, because Deni must keep financial records (and cannot edit them): the ledger, loans and
repayments, M-PESA requests, the callback inbox and suspense, and the hash-chained audit log.
Erased: the name, phone number and PIN hash on the user's row (the account stays, closed, so
the records above still point somewhere), notifications and their SMS delivery rows, what the
fake SMS gateway kept for the number, sessions (refresh tokens), reset codes, stored API
answers, M-PESA preferences, and everything sync kept for the person's devices.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, select, update

from deni.adapters.db import mpesa_tables as m
from deni.adapters.db import sync_tables as s
from deni.adapters.db import tables as t
from deni.adapters.db import ussd_tables as u
from deni.domain.users import CLOSED_NAME, closed_phone


def erase_person(connection: Connection, user_id: str, *, now: datetime) -> None:
    """In the caller's transaction; the caller locked the user's row."""
    phone = connection.execute(select(t.users.c.phone).where(t.users.c.id == user_id)).scalar_one()
    notifications = select(t.notifications.c.id).where(t.notifications.c.user_id == user_id)
    clients = select(s.sync_clients.c.client_id).where(s.sync_clients.c.user_id == user_id)
    for statement in (
        delete(u.sms_deliveries).where(u.sms_deliveries.c.notification_id.in_(notifications)),
        delete(t.notifications).where(t.notifications.c.user_id == user_id),
        delete(u.sms_outbox).where(u.sms_outbox.c.phone == phone),
        delete(t.refresh_tokens).where(t.refresh_tokens.c.user_id == user_id),
        delete(t.pin_reset_codes).where(t.pin_reset_codes.c.user_id == user_id),
        delete(t.idempotency_keys).where(t.idempotency_keys.c.scope == user_id),
        delete(m.mpesa_preferences).where(m.mpesa_preferences.c.user_id == user_id),
        delete(s.sync_mutations).where(s.sync_mutations.c.client_id.in_(clients)),
        delete(s.sync_clients).where(s.sync_clients.c.user_id == user_id),
        delete(s.sync_changes).where(s.sync_changes.c.user_id == user_id),
        delete(s.sync_dead_letters).where(s.sync_dead_letters.c.user_id == user_id),
        delete(s.sync_conflicts).where(s.sync_conflicts.c.user_id == user_id),
        delete(s.sync_profile_fields).where(s.sync_profile_fields.c.user_id == user_id),
    ):
        connection.execute(statement)
    connection.execute(
        update(t.users)
        .where(t.users.c.id == user_id)
        .values(
            name=CLOSED_NAME,
            phone=closed_phone(user_id),
            pin_hash="",
            failed_pin_attempts=0,
            locked_until=None,
            closed_at=now,
            updated_at=now,
        )
    )
