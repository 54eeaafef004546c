"""SQL repositories for notifications, the audit chain, idempotency keys and refresh tokens."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, and_, bindparam, or_, select, tuple_, update

from deni.adapters.db import tables as t
from deni.adapters.db.sync.tables import log_changes
from deni.adapters.db.upsert import insert_or_nothing
from deni.domain.audit import chain_hash
from deni.domain.security import PhoneCode, PinResetCode, SmsCode
from deni.services.ports import (
    AuditRecord,
    IdempotentResponse,
    NotificationRecord,
    RefreshToken,
    StorageBusy,
)

AUDIT_HEAD_ID = 1
AUDIT_ROWS_PER_TRANSACTION_MAX = 10_000
NOTIFICATIONS_PER_TRANSACTION_MAX = 10_000
PHONE_CODES_PRUNED_MAX = 10_000
NotificationsMark = tuple[int, int]  # (rows added, rows written) when a savepoint began


_NOTIFICATION_INSERT = t.notifications.insert()  # built once; values per call
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
        return [
            AuditRecord(
                seq=row.seq,
                at=row.at,
                actor_id=row.actor_id,
                channel=row.channel,
                command=row.command,
                details=row.details,
                prev_hash=row.prev_hash,
                hash=row.hash,
            )
            for row in self._connection.execute(query)
        ]

    def head(self) -> tuple[int, str]:
        row = self._connection.execute(
            select(t.audit_head).where(t.audit_head.c.id == AUDIT_HEAD_ID)
        ).one()
        return int(row.seq), str(row.hash)


CLAIM_ATTEMPTS_MAX = 2
PRUNE_LIMIT_MAX = 10_000


class SqlIdempotencyRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def claim(
        self, *, scope: str, key: str, request_hash: str, now: datetime, stale_before: datetime
    ) -> str | None:
        k = t.idempotency_keys
        values = {
            "scope": scope,
            "key": key,
            "request_hash": request_hash,
            "state": "in_progress",
            "created_at": now,
            "updated_at": now,
        }
        # A concurrent claim of the same key waits here until its transaction ends: then this
        # one inserts (the other rolled back) or finds the other's committed row.
        insert = insert_or_nothing(self._connection, k, values, conflict_columns=["scope", "key"])
        existing = None
        for _ in range(CLAIM_ATTEMPTS_MAX):  # the row we collided with may be gone by now
            if self._connection.execute(insert.returning(k.c.key)).first() is not None:
                return None
            existing = self._stored_hash(scope, key)
            if existing is not None:
                break
        if existing is None:
            raise StorageBusy("The request is being retried elsewhere; try again.")
        if existing == request_hash and self._take_over_stale(scope, key, stale_before, now):
            return None
        return existing

    def _take_over_stale(self, scope: str, key: str, stale_before: datetime, now: datetime) -> bool:
        # One UPDATE decides: of two retries racing for a stale claim, exactly one wins it.
        k = t.idempotency_keys
        taken = self._connection.execute(
            update(k)
            .where(
                and_(
                    k.c.scope == scope,
                    k.c.key == key,
                    k.c.state == "in_progress",
                    k.c.updated_at < stale_before,
                )
            )
            .values(updated_at=now)
        )
        return taken.rowcount == 1

    def _stored_hash(self, scope: str, key: str) -> str | None:
        k = t.idempotency_keys
        query = select(k.c.request_hash).where(and_(k.c.scope == scope, k.c.key == key))
        row = self._connection.execute(query).first()
        return str(row.request_hash) if row else None

    def get_response(self, *, scope: str, key: str) -> IdempotentResponse | None:
        k = t.idempotency_keys
        query = select(k).where(and_(k.c.scope == scope, k.c.key == key, k.c.state == "done"))
        row = self._connection.execute(query).first()
        if row is None:
            return None
        return IdempotentResponse(status=row.response_status, body=row.response_body)

    def complete(
        self, *, scope: str, key: str, response: IdempotentResponse, now: datetime
    ) -> None:
        k = t.idempotency_keys
        self._connection.execute(
            update(k)
            .where(and_(k.c.scope == scope, k.c.key == key))
            .values(
                state="done",
                response_status=response.status,
                response_body=response.body,
                updated_at=now,
            )
        )

    def release(self, *, scope: str, key: str) -> None:
        k = t.idempotency_keys
        self._connection.execute(
            k.delete().where(and_(k.c.scope == scope, k.c.key == key, k.c.state != "done"))
        )

    def prune(self, *, created_before: datetime, limit: int) -> int:
        assert 1 <= limit <= PRUNE_LIMIT_MAX
        k = t.idempotency_keys
        oldest = (
            select(k.c.scope, k.c.key)
            .where(k.c.created_at < created_before)
            .order_by(k.c.created_at)
            .limit(limit)
        )
        keys = tuple_(k.c.scope, k.c.key)
        return int(self._connection.execute(k.delete().where(keys.in_(oldest))).rowcount)


class SqlRefreshTokenRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, token: RefreshToken, token_hash: str, now: datetime) -> None:
        self._connection.execute(
            t.refresh_tokens.insert().values(
                id=token.id,
                user_id=token.user_id,
                family_id=token.family_id,
                token_hash=token_hash,
                expires_at=token.expires_at,
                revoked_at=token.revoked_at,
                created_at=now,
            )
        )

    def lock_by_hash(self, token_hash: str) -> RefreshToken | None:
        return self._lock(t.refresh_tokens.c.token_hash == token_hash)

    def lock(self, token_id: str) -> RefreshToken | None:
        return self._lock(t.refresh_tokens.c.id == token_id)

    def _lock(self, which: ColumnElement[bool]) -> RefreshToken | None:
        r = t.refresh_tokens
        row = self._connection.execute(select(r).where(which).with_for_update()).first()
        if row is None:
            return None
        return RefreshToken(
            row.id, row.user_id, row.family_id, row.expires_at, row.revoked_at, row.replaced_by
        )

    def revoke(self, token_id: str, now: datetime, *, replaced_by: str | None = None) -> None:
        r = t.refresh_tokens
        self._connection.execute(
            update(r)
            .where(and_(r.c.id == token_id, r.c.revoked_at.is_(None)))
            .values(revoked_at=now, replaced_by=replaced_by)
        )

    def replace(self, token_id: str, *, replaced_by: str) -> None:
        r = t.refresh_tokens
        self._connection.execute(
            update(r)
            .where(and_(r.c.id == token_id, r.c.revoked_at.is_not(None)))
            .values(replaced_by=replaced_by)
        )

    def revoke_family(self, family_id: str, now: datetime) -> None:
        self._revoke(t.refresh_tokens.c.family_id == family_id, now)

    def revoke_all(self, user_id: str, now: datetime) -> None:
        self._revoke(t.refresh_tokens.c.user_id == user_id, now)

    def _revoke(self, which: ColumnElement[bool], now: datetime) -> None:
        r = t.refresh_tokens
        self._connection.execute(
            update(r).where(and_(which, r.c.revoked_at.is_(None))).values(revoked_at=now)
        )


def _sms_code_fields(row: Row[Any]) -> dict[str, Any]:
    """The columns every code by SMS has (domain.security.SmsCode), read from its row."""
    return {
        "window_started_at": row.window_started_at,
        "sent_in_window": row.sent_in_window,
        "code_hash": row.code_hash,
        "expires_at": row.expires_at,
        "attempts": row.attempts,
    }


def _sms_code_values(code: SmsCode, now: datetime) -> dict[str, Any]:
    """The same columns, to write."""
    return {
        "code_hash": code.code_hash,
        "expires_at": code.expires_at,
        "attempts": code.attempts,
        "sent_in_window": code.sent_in_window,
        "window_started_at": code.window_started_at,
        "updated_at": now,
    }


class SqlPinResetRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def lock(self, user_id: str) -> PinResetCode | None:
        c = t.pin_reset_codes.c
        query = select(t.pin_reset_codes).where(c.user_id == user_id).with_for_update()
        row = self._connection.execute(query).first()
        if row is None:
            return None
        return PinResetCode(user_id=row.user_id, **_sms_code_fields(row))

    def save(self, code: PinResetCode, now: datetime) -> None:
        values = _sms_code_values(code, now)
        c = t.pin_reset_codes.c
        updated = self._connection.execute(
            update(t.pin_reset_codes).where(c.user_id == code.user_id).values(values)
        )
        if updated.rowcount == 0:
            self._connection.execute(
                t.pin_reset_codes.insert().values(user_id=code.user_id, **values)
            )

    def forget_expired(self, *, now: datetime, limit: int) -> int:
        assert 1 <= limit <= PRUNE_LIMIT_MAX
        c = t.pin_reset_codes.c
        expired = (
            select(c.user_id)
            .where(and_(c.expires_at.is_not(None), c.expires_at <= now))
            .order_by(c.expires_at)
            .limit(limit)
        )
        result = self._connection.execute(
            update(t.pin_reset_codes)
            .where(c.user_id.in_(expired))
            .values(code_hash=None, expires_at=None, updated_at=now)
        )
        return int(result.rowcount)


class SqlPhoneCodeRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def lock(self, phone: str) -> PhoneCode | None:
        c = t.phone_codes.c
        query = select(t.phone_codes).where(c.phone == phone).with_for_update()
        row = self._connection.execute(query).first()
        if row is None:
            return None
        return PhoneCode(phone=row.phone, **_sms_code_fields(row))

    def lock_or_add(self, phone: str, now: datetime) -> PhoneCode:
        """Made first if missing, so two first asks for one number queue on its row."""
        fresh = {
            "phone": phone,
            "attempts": 0,
            "sent_in_window": 0,
            "window_started_at": now,
            "updated_at": now,
        }
        add = insert_or_nothing(self._connection, t.phone_codes, fresh, conflict_columns=["phone"])
        self._connection.execute(add)
        found = self.lock(phone)
        assert found is not None
        return found

    def save(self, code: PhoneCode, now: datetime) -> None:
        c = t.phone_codes.c
        values = _sms_code_values(code, now)
        updated = self._connection.execute(
            update(t.phone_codes).where(c.phone == code.phone).values(values)
        )
        assert updated.rowcount == 1, "lock the number's row first"

    def prune(self, *, windows_started_by: datetime, now: datetime, limit: int) -> int:
        c = t.phone_codes.c
        assert 1 <= limit <= PHONE_CODES_PRUNED_MAX
        spent = (
            select(c.phone)
            .where(
                c.window_started_at <= windows_started_by,
                or_(c.expires_at.is_(None), c.expires_at <= now),
            )
            .limit(limit)
        )
        result = self._connection.execute(t.phone_codes.delete().where(c.phone.in_(spent)))
        return int(result.rowcount)
