"""SQL for the audit chain: a command's rows are chained at its commit, behind one head row."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, bindparam, select, update

from deni.adapters.db import tables as t
from deni.domain.audit import chain_hash
from deni.services.ports import (
    AuditRecord,
)

AUDIT_HEAD_ID = 1
AUDIT_ROWS_PER_TRANSACTION_MAX = 10_000
_AUDIT_COLUMNS = ("seq", "at", "actor_id", "channel", "command", "details", "prev_hash", "hash")
_AUDIT_INSERT = t.audit_log.insert().values({c: bindparam(c) for c in _AUDIT_COLUMNS})
_AUDIT_HEAD_LOCK = (
    select(t.audit_head).where(t.audit_head.c.id == bindparam("id")).with_for_update()
)
_AUDIT_HEAD_MOVE = (
    update(t.audit_head)
    .where(t.audit_head.c.id == bindparam("head_id"))
    .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
)
# PostgreSQL: one round trip on every command, the head moving in a CTE of the insert.
_AUDIT_APPEND_PG = _AUDIT_INSERT.add_cte(_AUDIT_HEAD_MOVE.cte("moved_head"))


class SqlAuditRepository:
    """Rows are chained when the transaction commits, not when the command appends them.

    The chain's head row orders every writer in the system, so it is locked for the length of
    flush() (called by the unit of work's commit), not from a command's first audit row on:
    a transaction's rows get consecutive numbers, in commit order.
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._pending: list[tuple[datetime, str, str, str, str]] = []

    def append(
        self, *, at: datetime, actor_id: str, channel: str, command: str, details: str
    ) -> None:
        assert len(self._pending) < AUDIT_ROWS_PER_TRANSACTION_MAX
        self._pending.append((at, actor_id, channel, command, details))

    def mark(self) -> int:
        """Where the rows appended from now on begin (see forget_since)."""
        return len(self._pending)

    def forget_since(self, mark: int) -> None:
        """Drop the rows appended after `mark`: their savepoint was rolled back."""
        assert 0 <= mark <= len(self._pending)
        del self._pending[mark:]

    def flush(self) -> list[AuditRecord]:
        """Chain and write the pending rows; the caller commits right after."""
        if not self._pending:
            return []
        head = self._connection.execute(_AUDIT_HEAD_LOCK, {"id": AUDIT_HEAD_ID}).one()
        seq, prev_hash = int(head.seq), str(head.hash)
        records: list[AuditRecord] = []
        for at, actor_id, channel, command, details in self._pending:
            seq += 1
            digest = chain_hash(
                prev_hash=prev_hash,
                seq=seq,
                at=at,
                actor_id=actor_id,
                channel=channel,
                command=command,
                details=details,
            )
            records.append(
                AuditRecord(seq, at, actor_id, channel, command, details, prev_hash, digest)
            )
            prev_hash = digest
        self._pending.clear()
        rows = [
            {
                "seq": r.seq,
                "at": r.at,
                "actor_id": r.actor_id,
                "channel": r.channel,
                "command": r.command,
                "details": r.details,
                "prev_hash": r.prev_hash,
                "hash": r.hash,
            }
            for r in records
        ]
        head_moves = {"head_id": AUDIT_HEAD_ID, "new_seq": seq, "new_hash": prev_hash}
        if len(rows) == 1 and self._connection.dialect.name == "postgresql":
            self._connection.execute(_AUDIT_APPEND_PG, {**rows[0], **head_moves})
        else:
            self._connection.execute(_AUDIT_INSERT, rows)
            self._connection.execute(_AUDIT_HEAD_MOVE, head_moves)
        return records

    def scan(self, *, after_seq: int, limit: int) -> list[AuditRecord]:
        return self._rows(t.audit_log.c.seq > after_seq, limit=limit)

    def by_actor(self, actor_id: str, *, after_seq: int, limit: int) -> list[AuditRecord]:
        c = t.audit_log.c
        return self._rows(c.actor_id == actor_id, c.seq > after_seq, limit=limit)

    def _rows(self, *where: ColumnElement[bool], limit: int) -> list[AuditRecord]:
        query = select(t.audit_log).where(*where).order_by(t.audit_log.c.seq).limit(limit)
        return [audit_record(row) for row in self._connection.execute(query)]

    def head(self) -> tuple[int, str]:
        row = self._connection.execute(
            select(t.audit_head).where(t.audit_head.c.id == AUDIT_HEAD_ID)
        ).one()
        return int(row.seq), str(row.hash)


def audit_record(row: Any) -> AuditRecord:
    """One stored row of the audit chain, as the domain reads it."""
    return AuditRecord(
        seq=int(row.seq),
        at=row.at,
        actor_id=row.actor_id,
        channel=row.channel,
        command=row.command,
        details=row.details,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )
