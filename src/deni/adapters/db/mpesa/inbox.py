"""SQL for the callback inbox."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    bindparam,
    select,
)
from sqlalchemy import update as sql_update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from deni.adapters.db.mpesa import tables as m
from deni.adapters.db.mpesa.rows import ERROR_CHARS_MAX
from deni.services.mpesa.ports import (
    InboxRow,
    InboxState,
)

# Statements on the callback path are built once: building one per call (values as literals,
# then its cache key) cost more CPU than executing it.
_INBOX_COLUMNS = (
    "kind",
    "dedupe_key",
    "body",
    "source_ip",
    "state",
    "attempts",
    "error",
    "received_at",
    "updated_at",
)


def _inbox_add(dialect: str) -> Any:
    """INSERT ... ON CONFLICT (dedupe_key) DO NOTHING RETURNING id: a repeat inserts nothing and
    returns no id, in one statement; no savepoint round trips on the acknowledgement path."""
    make = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = make(m.callback_inbox).values({name: bindparam(name) for name in _INBOX_COLUMNS})
    key = [m.callback_inbox.c.dedupe_key]
    return statement.on_conflict_do_nothing(index_elements=key).returning(m.callback_inbox.c.id)


_INBOX_ADD = {dialect: _inbox_add(dialect) for dialect in ("postgresql", "sqlite")}
_INBOX_MARK = (
    sql_update(m.callback_inbox)
    .where(m.callback_inbox.c.id == bindparam("mark_id"))
    .values(
        state=bindparam("mark_state"),
        error=bindparam("mark_error"),
        attempts=m.callback_inbox.c.attempts + 1,
        updated_at=bindparam("mark_at"),
    )
)


class SqlCallbackInboxRepository:
    """Daraja's callbacks as they arrived, each stored once and applied by the worker."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(
        self,
        *,
        kind: str,
        dedupe_key: str,
        body: bytes,
        source_ip: str,
        state: InboxState,
        error: str,
        now: datetime,
    ) -> int | None:
        values = {
            "kind": kind,
            "dedupe_key": dedupe_key[:200],
            "body": body,
            "source_ip": source_ip[:64],
            "state": state.value,
            "attempts": 0,
            "error": error[:ERROR_CHARS_MAX],
            "received_at": now,
            "updated_at": now,
        }
        statement = _INBOX_ADD[self._connection.dialect.name]
        inserted = self._connection.execute(statement, values).scalar_one_or_none()
        return None if inserted is None else int(inserted)

    def get(self, inbox_id: int) -> InboxRow | None:
        row = self._connection.execute(
            select(m.callback_inbox).where(m.callback_inbox.c.id == inbox_id)
        ).first()
        return inbox_from_row(row) if row else None

    def lock(self, inbox_id: int) -> InboxRow | None:
        row = self._connection.execute(
            select(m.callback_inbox).where(m.callback_inbox.c.id == inbox_id).with_for_update()
        ).first()
        return inbox_from_row(row) if row else None

    def mark(self, inbox_id: int, *, state: InboxState, error: str, now: datetime) -> None:
        self.mark_many([(inbox_id, state, error)], now=now)

    def mark_many(self, marks: Sequence[tuple[int, InboxState, str]], *, now: datetime) -> None:
        if not marks:
            return
        self._connection.execute(
            _INBOX_MARK,
            [
                {
                    "mark_id": inbox_id,
                    "mark_state": state.value,
                    "mark_error": error[:ERROR_CHARS_MAX],
                    "mark_at": now,
                }
                for inbox_id, state, error in marks
            ],
        )

    def claim(self, *, limit: int) -> list[InboxRow]:
        c = m.callback_inbox.c
        query = (
            select(m.callback_inbox)
            .where(c.state == InboxState.RECEIVED.value)
            .order_by(c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [inbox_from_row(row) for row in self._connection.execute(query)]

    def received(self, *, limit: int) -> list[InboxRow]:
        c = m.callback_inbox.c
        query = (
            select(m.callback_inbox)
            .where(c.state == InboxState.RECEIVED.value)
            .order_by(c.id)
            .limit(limit)
        )
        return [inbox_from_row(row) for row in self._connection.execute(query)]

    def ids(self, *, states: Sequence[InboxState], limit: int) -> list[int]:
        c = m.callback_inbox.c
        query = (
            select(c.id).where(c.state.in_([s.value for s in states])).order_by(c.id).limit(limit)
        )
        return [int(i) for i in self._connection.execute(query).scalars()]

    def rows(self, *, states: Sequence[InboxState], limit: int) -> list[InboxRow]:
        c = m.callback_inbox.c
        query = (
            select(m.callback_inbox)
            .where(c.state.in_([s.value for s in states]))
            .order_by(c.id.desc())
            .limit(limit)
        )
        return [inbox_from_row(row) for row in self._connection.execute(query)]

    def keys_stored(self, dedupe_keys: Sequence[str]) -> set[str]:
        if not dedupe_keys:
            return set()
        c = m.callback_inbox.c
        query = select(c.dedupe_key).where(c.dedupe_key.in_(list(dedupe_keys)))
        return set(self._connection.execute(query).scalars())


def inbox_from_row(row: Row[Any]) -> InboxRow:
    return InboxRow(
        id=int(row.id),
        kind=row.kind,
        dedupe_key=row.dedupe_key,
        body=bytes(row.body),
        state=InboxState(row.state),
        attempts=int(row.attempts),
        error=row.error,
        received_at=row.received_at,
    )
