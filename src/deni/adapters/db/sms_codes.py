"""SQL for codes sent by SMS (a forgotten PIN, the proof of a phone), kept as hashes only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, or_, select, update

from deni.adapters.db import tables as t
from deni.adapters.db.idempotency import PRUNE_LIMIT_MAX
from deni.adapters.db.upsert import insert_or_nothing
from deni.domain.security import PhoneCode, PinResetCode, SmsCode

PHONE_CODES_PRUNED_MAX = 10_000


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
