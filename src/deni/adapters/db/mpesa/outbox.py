"""SQL for the outbox: the messages the worker sends, each leased and retried with bounds."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    and_,
    insert,
    or_,
    select,
)
from sqlalchemy import update as sql_update

from deni.adapters.db.mpesa import tables as m
from deni.adapters.db.mpesa.rows import ERROR_CHARS_MAX, inserted
from deni.services.mpesa.ports import (
    OutboxMessage,
    OutboxState,
)


class SqlOutboxRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, message: OutboxMessage, now: datetime) -> bool:
        return inserted(
            self._connection,
            insert(m.outbox).values(
                id=message.id,
                topic=message.topic,
                payload=message.payload,
                unique_key=message.unique_key,
                state=message.state.value,
                attempts=message.attempts,
                next_attempt_at=message.next_attempt_at,
                claimed_until=None,
                last_error=message.last_error,
                created_at=now,
                updated_at=now,
            ),
        )

    def claim_due(self, *, now: datetime, limit: int, lease_s: float) -> list[OutboxMessage]:
        c = m.outbox.c
        due = or_(
            and_(c.state == OutboxState.PENDING.value, c.next_attempt_at <= now),
            and_(c.state == OutboxState.SENDING.value, c.claimed_until < now),
        )
        # SKIP LOCKED: several workers each take different rows (PostgreSQL); on SQLite the
        # writer lock taken by BEGIN IMMEDIATE already serialises claimers.
        query = (
            select(c.id)
            .where(due)
            .order_by(c.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        ids = list(self._connection.execute(query).scalars())
        if not ids:
            return []
        self._connection.execute(
            sql_update(m.outbox)
            .where(c.id.in_(ids))
            .values(
                state=OutboxState.SENDING.value,
                claimed_until=now + timedelta(seconds=lease_s),
                attempts=c.attempts + 1,
                updated_at=now,
            )
        )
        rows = self._connection.execute(select(m.outbox).where(c.id.in_(ids)))
        return sorted((_message(row) for row in rows), key=lambda msg: msg.next_attempt_at)

    def get(self, message_id: str) -> OutboxMessage | None:
        row = self._connection.execute(select(m.outbox).where(m.outbox.c.id == message_id)).first()
        return _message(row) if row else None

    def _set(self, message_id: str, now: datetime, **values: Any) -> None:
        self._connection.execute(
            sql_update(m.outbox)
            .where(m.outbox.c.id == message_id)
            .values(**values, claimed_until=None, updated_at=now)
        )

    def mark_done(self, message_id: str, *, now: datetime) -> None:
        self._set(message_id, now, state=OutboxState.DONE.value)

    def mark_retry(
        self, message_id: str, *, now: datetime, next_attempt_at: datetime, error: str
    ) -> None:
        self._set(
            message_id,
            now,
            state=OutboxState.PENDING.value,
            next_attempt_at=next_attempt_at,
            last_error=error[:ERROR_CHARS_MAX],
        )

    def mark_dead(self, message_id: str, *, now: datetime, error: str) -> None:
        self._set(message_id, now, state=OutboxState.DEAD.value, last_error=error[:ERROR_CHARS_MAX])

    def rearm(self, message_id: str, *, now: datetime) -> bool:
        c = m.outbox.c
        result = self._connection.execute(
            sql_update(m.outbox)
            .where(c.id == message_id, c.state == OutboxState.DEAD.value)
            .values(
                state=OutboxState.PENDING.value, attempts=0, next_attempt_at=now, updated_at=now
            )
        )
        return result.rowcount == 1

    def list(self, *, states: Sequence[OutboxState], limit: int) -> list[OutboxMessage]:
        c = m.outbox.c
        query = (
            select(m.outbox)
            .where(c.state.in_([s.value for s in states]))
            .order_by(c.created_at)
            .limit(limit)
        )
        return [_message(row) for row in self._connection.execute(query)]


def _message(row: Row[Any]) -> OutboxMessage:
    return OutboxMessage(
        id=row.id,
        topic=row.topic,
        payload=row.payload,
        unique_key=row.unique_key,
        state=OutboxState(row.state),
        attempts=int(row.attempts),
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        created_at=row.created_at,
    )
