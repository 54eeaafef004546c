"""Daraja's OAuth token, shared by every process through the database."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Engine,
    insert,
    select,
)
from sqlalchemy import update as sql_update

from deni.adapters.db.mpesa import tables as m


class SqlTokenStore:
    """The Daraja OAuth token in one row, read and written in short transactions of its own
    (never inside a business unit of work: the token must survive that one's rollback)."""

    def __init__(self, engine: Engine, *, name: str, clock: Any) -> None:
        assert name
        self._engine = engine
        self._name = name[:100]
        self._clock = clock

    def get(self) -> tuple[str, datetime] | None:
        c = m.daraja_tokens.c
        with self._engine.connect() as connection:
            row = connection.execute(
                select(c.token, c.expires_at).where(c.name == self._name)
            ).first()
            connection.rollback()
        return (row.token, row.expires_at) if row else None

    def put(self, token: str, expires_at: datetime) -> None:
        assert token
        assert expires_at.tzinfo is not None
        c = m.daraja_tokens.c
        now = self._clock()
        with self._engine.begin() as connection:
            changed = connection.execute(
                sql_update(m.daraja_tokens)
                .where(c.name == self._name)
                .values(token=token, expires_at=expires_at, updated_at=now)
            )
            if changed.rowcount == 0:
                connection.execute(
                    insert(m.daraja_tokens).values(
                        name=self._name, token=token, expires_at=expires_at, updated_at=now
                    )
                )
