"""SQL for refresh tokens, kept as hashes only."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, Connection, and_, select, update

from deni.adapters.db import tables as t
from deni.services.ports import (
    RefreshToken,
)


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
