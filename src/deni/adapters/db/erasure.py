"""Closing an account: which rows hold a person's data beyond the financial records.

Kept, because Deni must keep financial records (and cannot edit them): the ledger, loans and
repayments, M-PESA requests, the callback inbox and suspense, and the hash-chained audit log.
Erased: the name, phone number and PIN hash on the user's row (the account stays, closed, so
the records above still point somewhere), notifications and their SMS and push delivery rows,
the browsers subscribed to Web Push and the events chosen for them, what the fake SMS gateway
kept for the number, sessions (refresh tokens), reset codes, stored API answers, M-PESA
preferences, and everything sync kept for the person's devices.

An unproven account whose number its proven owner takes (release_phone) loses only the number
and what depends on it: its sessions, its reset code, and SMS not yet sent. Its name, PIN hash,
notifications and records stay, for whoever made it to claim through customer care.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, and_, delete, or_, select, update

from deni.adapters.db import push_tables as push
from deni.adapters.db import tables as t
from deni.adapters.db import ussd_tables as u
from deni.adapters.db.mpesa import tables as m
from deni.adapters.db.sync import tables as s
from deni.domain.users import CLOSED_NAME, closed_phone


def erase_person(connection: Connection, user_id: str, *, now: datetime) -> None:
    """In the caller's transaction; the caller locked the user's row."""
    phone = connection.execute(select(t.users.c.phone).where(t.users.c.id == user_id)).scalar_one()
    notifications = select(t.notifications.c.id).where(t.notifications.c.user_id == user_id)
    clients = select(s.sync_clients.c.client_id).where(s.sync_clients.c.user_id == user_id)
    subscriptions = select(push.push_subscriptions.c.id).where(
        push.push_subscriptions.c.user_id == user_id
    )
    for statement in (
        delete(push.push_deliveries).where(
            or_(
                push.push_deliveries.c.notification_id.in_(notifications),
                push.push_deliveries.c.subscription_id.in_(subscriptions),
            )
        ),
        delete(push.push_subscriptions).where(push.push_subscriptions.c.user_id == user_id),
        delete(push.push_preferences).where(push.push_preferences.c.user_id == user_id),
        delete(u.sms_deliveries).where(u.sms_deliveries.c.notification_id.in_(notifications)),
        delete(t.notifications).where(t.notifications.c.user_id == user_id),
        delete(u.sms_outbox).where(u.sms_outbox.c.phone == phone),
        delete(t.refresh_tokens).where(t.refresh_tokens.c.user_id == user_id),
        delete(t.pin_reset_codes).where(t.pin_reset_codes.c.user_id == user_id),
        delete(t.phone_codes).where(t.phone_codes.c.phone == phone),
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


def release_phone(connection: Connection, user_id: str, *, now: datetime) -> None:
    """The account gives its number up (it never proved it, and the number's owner has): in the
    caller's transaction, which locked the user's row. The reset code goes (it was the
    number's), and notifications not yet sent by SMS are never sent: they were the account's,
    not the number's new owner's."""
    u, n = t.users.c, t.notifications.c
    unsent = and_(n.user_id == user_id, n.sms_state.in_(("pending", "sending")))
    connection.execute(delete(t.pin_reset_codes).where(t.pin_reset_codes.c.user_id == user_id))
    connection.execute(update(t.notifications).where(unsent).values(sms_state="failed"))
    connection.execute(
        update(t.users).where(u.id == user_id).values(phone=closed_phone(user_id), updated_at=now)
    )
