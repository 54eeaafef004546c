"""Notifications, the audit chain, idempotency keys, refresh tokens and SMS codes in memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from deni.domain.audit import chain_hash
from deni.domain.security import PhoneCode, PinResetCode
from deni.services.ports import AuditRecord, IdempotentResponse, NotificationRecord, RefreshToken
from tests.fakes.tables import ConstraintViolated, IdempotencyRow, Tables, TokenRow

AUDIT_ROWS_PER_TRANSACTION_MAX = 10_000
PRUNE_LIMIT_MAX = 10_000


class FakeNotificationRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def add(self, notification: NotificationRecord) -> None:
        if notification.id in self._t.notifications:
            raise ConstraintViolated(f"notifications.id {notification.id} is taken")
        if notification.dedupe_key is not None and self.exists(notification.dedupe_key):
            raise ConstraintViolated(f"notifications.dedupe_key {notification.dedupe_key}")
        self._t.notifications[notification.id] = notification

    def exists(self, dedupe_key: str) -> bool:
        return any(n.dedupe_key == dedupe_key for n in self._t.notifications.values())

    def list_for(
        self, user_id: str, *, unread_only: bool, limit: int, offset: int
    ) -> list[NotificationRecord]:
        found = [
            n
            for n in self._t.notifications.values()
            if n.user_id == user_id and not (unread_only and n.read_at is not None)
        ]
        found.sort(key=lambda n: (n.created_at, n.id), reverse=True)
        # The SQL repository reads rows back without their dedupe key.
        return [replace(n, dedupe_key=None) for n in found[offset : offset + limit]]

    def mark_read(self, user_id: str, notification_ids: Sequence[str], now: datetime) -> int:
        marked = 0
        for notification_id in set(notification_ids):
            n = self._t.notifications.get(notification_id)
            if n is not None and n.user_id == user_id and n.read_at is None:
                self._t.notifications[notification_id] = replace(n, read_at=now)
                marked += 1
        return marked

    def count_unread(self, user_id: str) -> int:
        return sum(
            1 for n in self._t.notifications.values() if n.user_id == user_id and n.read_at is None
        )


class FakeAuditRepository:
    """Rows wait in the unit of work and are chained when it commits (flush), as in SQL."""

    def __init__(self, tables: Tables) -> None:
        self._t = tables
        self._pending: list[tuple[datetime, str, str, str, str]] = []

    def append(
        self, *, at: datetime, actor_id: str, channel: str, command: str, details: str
    ) -> None:
        assert len(self._pending) < AUDIT_ROWS_PER_TRANSACTION_MAX
        self._pending.append((at, actor_id, channel, command, details))

    def flush(self) -> None:
        seq, prev_hash = self._t.audit_head
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
            row = AuditRecord(seq, at, actor_id, channel, command, details, prev_hash, digest)
            self._t.audit_log.append(row)
            prev_hash = digest
        self._t.audit_head = (seq, prev_hash)
        self._pending.clear()

    def forget(self) -> None:
        self._pending.clear()

    def scan(self, *, after_seq: int, limit: int) -> list[AuditRecord]:
        return [row for row in self._in_order() if row.seq > after_seq][:limit]

    def by_actor(self, actor_id: str, *, after_seq: int, limit: int) -> list[AuditRecord]:
        rows = self._in_order()
        return [row for row in rows if row.actor_id == actor_id and row.seq > after_seq][:limit]

    def head(self) -> tuple[int, str]:
        return self._t.audit_head

    def _in_order(self) -> list[AuditRecord]:
        # A test may tamper with the log (delete or edit rows): always read it in seq order.
        return sorted(self._t.audit_log, key=lambda row: row.seq)


class FakeIdempotencyRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def claim(
        self, *, scope: str, key: str, request_hash: str, now: datetime, stale_before: datetime
    ) -> str | None:
        row = self._t.idempotency.get((scope, key))
        if row is None:
            self._t.idempotency[scope, key] = IdempotencyRow(request_hash, "in_progress", now, now)
            return None
        stale = row.state == "in_progress" and row.updated_at < stale_before
        if row.request_hash == request_hash and stale:
            self._t.idempotency[scope, key] = replace(row, updated_at=now)
            return None
        return row.request_hash

    def get_response(self, *, scope: str, key: str) -> IdempotentResponse | None:
        row = self._t.idempotency.get((scope, key))
        return row.response if row is not None and row.state == "done" else None

    def complete(
        self, *, scope: str, key: str, response: IdempotentResponse, now: datetime
    ) -> None:
        row = self._t.idempotency.get((scope, key))
        if row is not None:
            self._t.idempotency[scope, key] = replace(
                row, state="done", response=response, updated_at=now
            )

    def release(self, *, scope: str, key: str) -> None:
        row = self._t.idempotency.get((scope, key))
        if row is not None and row.state != "done":
            del self._t.idempotency[scope, key]

    def prune(self, *, created_before: datetime, limit: int) -> int:
        assert 1 <= limit <= PRUNE_LIMIT_MAX
        old = [k for k, row in self._t.idempotency.items() if row.created_at < created_before]
        old.sort(key=lambda k: self._t.idempotency[k].created_at)
        for k in old[:limit]:
            del self._t.idempotency[k]
        return len(old[:limit])


class FakeRefreshTokenRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def add(self, token: RefreshToken, token_hash: str, now: datetime) -> None:
        taken = any(row.token_hash == token_hash for row in self._t.tokens.values())
        if token.id in self._t.tokens or taken:
            raise ConstraintViolated("refresh_tokens: id or token_hash taken")
        self._t.tokens[token.id] = TokenRow(replace(token, replaced_by=None), token_hash)

    def lock_by_hash(self, token_hash: str) -> RefreshToken | None:
        rows = self._t.tokens.values()
        return next((row.token for row in rows if row.token_hash == token_hash), None)

    def lock(self, token_id: str) -> RefreshToken | None:
        row = self._t.tokens.get(token_id)
        return row.token if row is not None else None

    def revoke(self, token_id: str, now: datetime, *, replaced_by: str | None = None) -> None:
        row = self._t.tokens.get(token_id)
        if row is not None and row.token.revoked_at is None:
            self._set(row, revoked_at=now, replaced_by=replaced_by)

    def replace(self, token_id: str, *, replaced_by: str) -> None:
        row = self._t.tokens.get(token_id)
        if row is not None and row.token.revoked_at is not None:
            self._set(row, replaced_by=replaced_by)

    def revoke_family(self, family_id: str, now: datetime) -> None:
        for row in list(self._t.tokens.values()):
            if row.token.family_id == family_id and row.token.revoked_at is None:
                self._set(row, revoked_at=now)

    def revoke_all(self, user_id: str, now: datetime) -> None:
        for row in list(self._t.tokens.values()):
            if row.token.user_id == user_id and row.token.revoked_at is None:
                self._set(row, revoked_at=now)

    def _set(self, row: TokenRow, **changes: object) -> None:
        token = replace(row.token, **changes)  # type: ignore[arg-type]
        self._t.tokens[token.id] = replace(row, token=token)


class FakePinResetRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def lock(self, user_id: str) -> PinResetCode | None:
        code = self._t.pin_resets.get(user_id)
        return replace(code) if code is not None else None

    def save(self, code: PinResetCode, now: datetime) -> None:
        if code.user_id not in self._t.users:
            raise ConstraintViolated(f"pin_reset_codes.user_id {code.user_id}")
        self._t.pin_resets[code.user_id] = replace(code)

    def forget_expired(self, *, now: datetime, limit: int) -> int:
        assert 1 <= limit <= PRUNE_LIMIT_MAX
        expired = [
            code
            for code in self._t.pin_resets.values()
            if code.expires_at is not None and code.expires_at <= now
        ]
        expired.sort(key=lambda code: code.expires_at or now)
        for code in expired[:limit]:
            self._t.pin_resets[code.user_id] = replace(code, code_hash=None, expires_at=None)
        return len(expired[:limit])


class FakePhoneCodeRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def lock(self, phone: str) -> PhoneCode | None:
        code = self._t.phone_codes.get(phone)
        return replace(code) if code is not None else None

    def lock_or_add(self, phone: str, now: datetime) -> PhoneCode:
        if phone not in self._t.phone_codes:
            self._t.phone_codes[phone] = PhoneCode(window_started_at=now, phone=phone)
        return replace(self._t.phone_codes[phone])

    def save(self, code: PhoneCode, now: datetime) -> None:
        assert code.phone in self._t.phone_codes, "lock the number's row first"
        self._t.phone_codes[code.phone] = replace(code)

    def prune(self, *, windows_started_by: datetime, now: datetime, limit: int) -> int:
        spent = [
            phone
            for phone, code in self._t.phone_codes.items()
            if code.window_started_at <= windows_started_by
            and (code.expires_at is None or code.expires_at <= now)
        ][:limit]
        for phone in spent:
            del self._t.phone_codes[phone]
        return len(spent)
