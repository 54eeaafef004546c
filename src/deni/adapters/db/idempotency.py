"""SQL for idempotency keys: a request's key claimed, its answer kept, and both pruned in time."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, and_, select, tuple_, update

from deni.adapters.db import tables as t
from deni.adapters.db.upsert import insert_or_nothing
from deni.services.ports import (
    IdempotentResponse,
    StorageBusy,
)

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
