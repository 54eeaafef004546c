"""SQL for notifications: queued in the transaction and written at its commit, in one insert."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, func, select, update

from deni.adapters.db import tables as t
from deni.adapters.db.sync.tables import log_changes
from deni.services.ports import (
    NotificationRecord,
)

NOTIFICATIONS_PER_TRANSACTION_MAX = 10_000
NotificationsMark = tuple[int, int]  # (rows added, rows written) when a savepoint began


_NOTIFICATION_INSERT = t.notifications.insert()  # built once; values per call


class SqlNotificationRepository:
    """Notifications are queued and written together when the transaction commits (or before
    anything here reads the table), one statement for all of them: a sync push group or a
    callback batch notifies many people. One with a dedupe key is written at once, so that a
    concurrent duplicate fails in the command, as it did before queueing.

    Every row added in the transaction is kept, with how many of them are written. A savepoint
    rolled back after a flush inside it undid rows queued before it began too: those are
    queued again, its own are dropped (forget_since).
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._rows: list[dict[str, Any]] = []  # every row added, in order
        self._written = 0  # how many of _rows are in the database (in this transaction)

    def add(self, notification: NotificationRecord) -> None:
        assert len(self._rows) < NOTIFICATIONS_PER_TRANSACTION_MAX
        values = {
            "id": notification.id,
            "user_id": notification.user_id,
            "kind": notification.kind,
            "language": notification.language,
            "body": notification.body,
            "loan_id": notification.loan_id,
            "created_at": notification.created_at,
            "read_at": notification.read_at,
            "sms_state": "pending",
            "dedupe_key": notification.dedupe_key,
        }
        self._rows.append(values)
        if notification.dedupe_key is not None:
            self.flush()
        change = (notification.user_id, "notification", notification.id, "put")
        log_changes(self._connection, [change], notification.created_at)

    def mark(self) -> NotificationsMark:
        """Where a savepoint begins: rows added and rows written so far."""
        return len(self._rows), self._written

    def forget_since(self, mark: NotificationsMark) -> None:
        """The savepoint that began at `mark` was rolled back: drop the rows added since, and
        queue again the earlier ones it had written (the rollback undid them)."""
        added, written = mark
        assert 0 <= written <= added <= len(self._rows)
        del self._rows[added:]
        self._written = min(self._written, written)

    def flush(self) -> None:
        if self._written < len(self._rows):
            self._connection.execute(_NOTIFICATION_INSERT, self._rows[self._written :])
            self._written = len(self._rows)

    def exists(self, dedupe_key: str) -> bool:
        self.flush()
        n = t.notifications
        query = select(n.c.id).where(n.c.dedupe_key == dedupe_key)
        return self._connection.execute(query).first() is not None

    def list_for(
        self, user_id: str, *, unread_only: bool, limit: int, offset: int
    ) -> list[NotificationRecord]:
        self.flush()
        n = t.notifications
        query = select(n).where(n.c.user_id == user_id)
        if unread_only:
            query = query.where(n.c.read_at.is_(None))
        # Ids are time-ordered (UUIDv7): the tie-break keeps same-instant rows newest first.
        query = query.order_by(n.c.created_at.desc(), n.c.id.desc()).limit(limit).offset(offset)
        return [notification_record(row) for row in self._connection.execute(query)]

    def mark_read(self, user_id: str, notification_ids: Sequence[str], now: datetime) -> int:
        self.flush()
        n = t.notifications
        unread = and_(n.c.user_id == user_id, n.c.id.in_(notification_ids), n.c.read_at.is_(None))
        marked = list(self._connection.execute(select(n.c.id).where(unread)).scalars())
        if not marked:
            return 0
        result = self._connection.execute(
            update(n).where(and_(unread, n.c.id.in_(marked))).values(read_at=now)
        )
        changes = [(user_id, "notification", notification_id, "put") for notification_id in marked]
        log_changes(self._connection, changes, now)
        return int(result.rowcount)

    def count_unread(self, user_id: str) -> int:
        self.flush()
        n = t.notifications
        unread = and_(n.c.user_id == user_id, n.c.read_at.is_(None))
        return int(self._connection.execute(select(func.count()).where(unread)).scalar_one())


def notification_record(row: Row[Any]) -> NotificationRecord:
    return NotificationRecord(
        id=row.id,
        user_id=row.user_id,
        kind=row.kind,
        language=row.language,
        body=row.body,
        loan_id=row.loan_id,
        created_at=row.created_at,
        read_at=row.read_at,
    )
