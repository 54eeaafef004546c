"""SQL for members' M-PESA preferences."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Connection,
    insert,
    select,
)
from sqlalchemy import update as sql_update

from deni.adapters.db.mpesa import tables as m
from deni.services.mpesa.ports import (
    MpesaPreferences,
)


class SqlPreferencesRepository:
    """A member's M-PESA preferences."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def get(self, user_id: str) -> MpesaPreferences:
        row = self._connection.execute(
            select(m.mpesa_preferences).where(m.mpesa_preferences.c.user_id == user_id)
        ).first()
        if row is None:
            return MpesaPreferences(user_id)
        return MpesaPreferences(user_id, bool(row.disburse_to_mpesa), bool(row.auto_payout))

    def set(self, preferences: MpesaPreferences, now: datetime) -> None:
        values = {
            "disburse_to_mpesa": preferences.disburse_to_mpesa,
            "auto_payout": preferences.auto_payout,
            "updated_at": now,
        }
        changed = self._connection.execute(
            sql_update(m.mpesa_preferences)
            .where(m.mpesa_preferences.c.user_id == preferences.user_id)
            .values(**values)
        )
        if changed.rowcount == 0:
            self._connection.execute(
                insert(m.mpesa_preferences).values(user_id=preferences.user_id, **values)
            )
