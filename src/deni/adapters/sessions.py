"""USSD session stores: in memory (one process), SQL (any number, one database), Redis.

Every store keeps the expiry time next to the value and compares it with the caller's `now`,
so a session lapses the same way on all three (and tests can move a manual clock). Redis and
SQL also drop expired values on their own, so nothing grows without bound.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta

import redis
from sqlalchemy import Engine, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from deni.adapters.db.engine import BEGIN_MODE_KEY
from deni.adapters.db.ussd_tables import ussd_sessions

KEY_CHARS_MAX = 200
VALUE_CHARS_MAX = 64_000
TTL_S_MAX = 24 * 3600
MEMORY_ENTRIES_MAX = 100_000
SQL_PURGE_BATCH = 500
REDIS_TIMEOUT_S = 0.5
REDIS_PREFIX = "deni:ussd:"


def _check(key: str, ttl_s: int | None = None, value: str | None = None) -> None:
    assert 0 < len(key) <= KEY_CHARS_MAX, "session keys are short"
    assert ttl_s is None or 0 < ttl_s <= TTL_S_MAX
    assert value is None or len(value) <= VALUE_CHARS_MAX, "a session value is small"


class MemorySessionStore:
    """For one process (the embedded default). Bounded: when full, expired entries go first,
    then the entries closest to expiry."""

    def __init__(self, *, entries_max: int = MEMORY_ENTRIES_MAX) -> None:
        assert entries_max > 0
        self._entries_max = entries_max
        self._values: dict[str, tuple[datetime, str]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, *, now: datetime) -> str | None:
        _check(key)
        with self._lock:
            found = self._values.get(key)
            if found is None:
                return None
            if found[0] <= now:
                del self._values[key]
                return None
            return found[1]

    def put(self, key: str, value: str, *, ttl_s: int, now: datetime) -> None:
        _check(key, ttl_s, value)
        with self._lock:
            if key not in self._values and len(self._values) >= self._entries_max:
                self._evict(now)
            self._values[key] = (now + timedelta(seconds=ttl_s), value)

    def delete(self, key: str) -> None:
        _check(key)
        with self._lock:
            self._values.pop(key, None)

    def _evict(self, now: datetime) -> None:
        expired = [k for k, (until, _) in self._values.items() if until <= now]
        for key in expired:
            del self._values[key]
        if len(self._values) >= self._entries_max:
            soonest = min(self._values, key=lambda k: self._values[k][0])
            del self._values[soonest]
        assert len(self._values) < self._entries_max


class SqlSessionStore:
    """Sessions in the main database: works across processes without Redis."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"

    def get(self, key: str, *, now: datetime) -> str | None:
        _check(key)
        s = ussd_sessions
        query = select(s.c.value).where(s.c.key == key, s.c.expires_at > now)
        with self._engine.connect() as connection:
            connection.info[BEGIN_MODE_KEY] = "BEGIN"  # a read never waits for SQLite writers
            value = connection.execute(query).scalar_one_or_none()
            connection.rollback()
        return value

    def put(self, key: str, value: str, *, ttl_s: int, now: datetime) -> None:
        _check(key, ttl_s, value)
        expires_at = now + timedelta(seconds=ttl_s)
        dialect = postgresql if self._postgres else sqlite
        statement = dialect.insert(ussd_sessions).values(
            key=key, value=value, expires_at=expires_at
        )
        statement = statement.on_conflict_do_update(
            index_elements=[ussd_sessions.c.key],
            set_={"value": value, "expires_at": expires_at},
        )
        with self._engine.begin() as connection:
            connection.execute(statement)

    def delete(self, key: str) -> None:
        _check(key)
        with self._engine.begin() as connection:
            connection.execute(delete(ussd_sessions).where(ussd_sessions.c.key == key))

    def purge_expired(self, *, now: datetime, batch: int = SQL_PURGE_BATCH) -> int:
        """Delete up to `batch` expired rows; the worker calls it now and then."""
        assert 0 < batch <= 10_000
        s = ussd_sessions
        with self._engine.begin() as connection:
            keys = list(
                connection.execute(select(s.c.key).where(s.c.expires_at <= now).limit(batch))
                .scalars()
                .all()
            )
            if keys:
                connection.execute(delete(s).where(s.c.key.in_(keys)))
        return len(keys)


class RedisSessionStore:
    """Sessions in Redis (production): shared by every API process, dropped by Redis' own TTL."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = REDIS_TIMEOUT_S) -> RedisSessionStore:
        # Short timeouts: a USSD hop has ~2 s in all; a stuck Redis must fail the hop, not hang.
        assert 0 < timeout_s <= 5
        client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        return cls(client)

    def get(self, key: str, *, now: datetime) -> str | None:
        _check(key)
        raw = self._redis.get(REDIS_PREFIX + key)
        if raw is None:
            return None
        assert isinstance(raw, bytes)
        stored = json.loads(raw)
        if datetime.fromisoformat(stored["until"]) <= now:
            return None
        value = stored["value"]
        assert isinstance(value, str)
        return value

    def put(self, key: str, value: str, *, ttl_s: int, now: datetime) -> None:
        _check(key, ttl_s, value)
        until = (now + timedelta(seconds=ttl_s)).isoformat()
        payload = json.dumps({"until": until, "value": value})
        self._redis.set(REDIS_PREFIX + key, payload, ex=ttl_s)

    def delete(self, key: str) -> None:
        _check(key)
        self._redis.delete(REDIS_PREFIX + key)

    def close(self) -> None:
        self._redis.close()
