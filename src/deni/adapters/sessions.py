"""USSD session stores: in memory (one process), SQL (any number, one database), Redis.

Every store keeps the expiry time next to the value and compares it with the caller's `now`,
so a session lapses the same way on all three (and tests can move a manual clock). Redis and
SQL also drop expired values on their own, so nothing grows without bound.

A USSD hop reads its session and the phone's resume snapshot together (`get_many`) and writes
what changed together (`write`): one Redis round trip each way, one SQL statement or
transaction.

The same stores keep the abuse limits' counters (services/limits.py): `increment` adds one and
answers the new count in one atomic step (a Redis script, an SQL upsert with RETURNING, a lock
in memory), so concurrent requests are each counted.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import redis
from sqlalchemy import Engine, Integer, Text, case, cast, delete, literal, select
from sqlalchemy.dialects import postgresql, sqlite

from deni.adapters.db.engine import reading
from deni.adapters.db.ussd_tables import ussd_sessions

KEY_CHARS_MAX = 200
VALUE_CHARS_MAX = 64_000
TTL_S_MAX = 24 * 3600
KEYS_PER_CALL_MAX = 16
MEMORY_ENTRIES_MAX = 100_000
SQL_PURGE_BATCH = 500
REDIS_TIMEOUT_S = 0.5
REDIS_ATTEMPTS = 2  # a connection Redis dropped is retried once, at once
REDIS_CONNECTIONS_MAX = 1_024  # one per thread that calls the store
REDIS_PREFIX = "deni:ussd:"
REDIS_COUNTER_PREFIX = "deni:count:"  # plain integers, apart from the wrapped values
_INCREMENT_SCRIPT = (
    "local n = redis.call('INCR', KEYS[1]) "
    "if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end "
    "return n"
)
_UNTIL_END = "|"  # an ISO 8601 time never holds one

# What a hop writes: key -> (value, ttl_s) to put, or None to delete.
Changes = Mapping[str, tuple[str, int] | None]


def _check(key: str, ttl_s: int | None = None, value: str | None = None) -> None:
    assert 0 < len(key) <= KEY_CHARS_MAX, "session keys are short"
    assert ttl_s is None or 0 < ttl_s <= TTL_S_MAX
    assert value is None or len(value) <= VALUE_CHARS_MAX, "a session value is small"


def _check_changes(changes: Changes) -> None:
    assert len(changes) <= KEYS_PER_CALL_MAX
    for key, change in changes.items():
        if change is None:
            _check(key)
        else:
            _check(key, change[1], change[0])


class MemorySessionStore:
    """For one process (the embedded default). Bounded: when full, expired entries go first,
    then the entries closest to expiry."""

    def __init__(self, *, entries_max: int = MEMORY_ENTRIES_MAX) -> None:
        assert entries_max > 0
        self._entries_max = entries_max
        self._values: dict[str, tuple[datetime, str]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, *, now: datetime) -> str | None:
        return self.get_many([key], now=now)[0]

    def get_many(self, keys: Sequence[str], *, now: datetime) -> list[str | None]:
        assert 0 < len(keys) <= KEYS_PER_CALL_MAX
        for key in keys:
            _check(key)
        with self._lock:
            return [self._get(key, now) for key in keys]

    def put(self, key: str, value: str, *, ttl_s: int, now: datetime) -> None:
        self.write({key: (value, ttl_s)}, now=now)

    def delete(self, key: str) -> None:
        _check(key)
        with self._lock:
            self._values.pop(key, None)

    def write(self, changes: Changes, *, now: datetime) -> None:
        _check_changes(changes)
        with self._lock:
            for key, change in changes.items():
                if change is None:
                    self._values.pop(key, None)
                    continue
                if key not in self._values and len(self._values) >= self._entries_max:
                    self._evict(now)
                value, ttl_s = change
                self._values[key] = (now + timedelta(seconds=ttl_s), value)

    def increment(self, key: str, *, ttl_s: int, now: datetime) -> int:
        _check(key, ttl_s)
        with self._lock:
            found = self._get(key, now)
            count = int(found) + 1 if found is not None and found.isdigit() else 1
            until = self._values[key][0] if found is not None else now + timedelta(seconds=ttl_s)
            if key not in self._values and len(self._values) >= self._entries_max:
                self._evict(now)
            self._values[key] = (until, str(count))
            return count

    def _get(self, key: str, now: datetime) -> str | None:
        found = self._values.get(key)
        if found is None:
            return None
        if found[0] <= now:
            del self._values[key]
            return None
        return found[1]

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
        return self.get_many([key], now=now)[0]

    def get_many(self, keys: Sequence[str], *, now: datetime) -> list[str | None]:
        assert 0 < len(keys) <= KEYS_PER_CALL_MAX
        for key in keys:
            _check(key)
        s = ussd_sessions
        query = select(s.c.key, s.c.value).where(s.c.key.in_(list(keys)), s.c.expires_at > now)
        with reading(self._engine, one_statement=True) as connection:
            found = {row.key: row.value for row in connection.execute(query)}
        return [found.get(key) for key in keys]

    def put(self, key: str, value: str, *, ttl_s: int, now: datetime) -> None:
        self.write({key: (value, ttl_s)}, now=now)

    def delete(self, key: str) -> None:
        _check(key)
        with self._engine.begin() as connection:
            connection.execute(delete(ussd_sessions).where(ussd_sessions.c.key == key))

    def write(self, changes: Changes, *, now: datetime) -> None:
        _check_changes(changes)
        gone = [key for key, change in changes.items() if change is None]
        dialect = postgresql if self._postgres else sqlite
        with self._engine.begin() as connection:
            if gone:
                connection.execute(delete(ussd_sessions).where(ussd_sessions.c.key.in_(gone)))
            for key, change in changes.items():
                if change is None:
                    continue
                value, ttl_s = change
                expires_at = now + timedelta(seconds=ttl_s)
                statement = dialect.insert(ussd_sessions).values(
                    key=key, value=value, expires_at=expires_at
                )
                statement = statement.on_conflict_do_update(
                    index_elements=[ussd_sessions.c.key],
                    set_={"value": value, "expires_at": expires_at},
                )
                connection.execute(statement)

    def increment(self, key: str, *, ttl_s: int, now: datetime) -> int:
        """One upsert that counts and answers (RETURNING): concurrent callers each see their
        own count, on SQLite (one writer at a time) and PostgreSQL (the row lock) alike."""
        _check(key, ttl_s)
        s = ussd_sessions
        dialect = postgresql if self._postgres else sqlite
        live = s.c.expires_at > now
        statement = dialect.insert(s).values(
            key=key, value="1", expires_at=now + timedelta(seconds=ttl_s)
        )
        statement = statement.on_conflict_do_update(
            index_elements=[s.c.key],
            set_={
                "value": case(
                    (live, cast(cast(s.c.value, Integer) + 1, Text)), else_=literal("1", Text)
                ),
                "expires_at": case((live, s.c.expires_at), else_=statement.excluded.expires_at),
            },
        ).returning(s.c.value)
        with self._engine.begin() as connection:
            value = connection.execute(statement).scalar_one()
        return int(value)

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
    """Sessions in Redis (production): shared by every API process, dropped by Redis' own TTL.

    Each call is one round trip: `get_many` one MGET, `write` SET ... EX and DEL commands sent
    together. The commands go straight onto the calling thread's own connection: redis-py's
    command and pipeline objects, and its pool's bookkeeping, cost more CPU than the round trip
    itself, and a hop makes two. A connection that broke (Redis restarted) is retried once at
    once; a timeout is not retried, so a stuck Redis fails the hop within the timeout.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._pool = client.connection_pool
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[tuple[threading.Thread, Any]] = []  # to close them all

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = REDIS_TIMEOUT_S) -> RedisSessionStore:
        # Short timeouts: a USSD hop has ~2 s in all; a stuck Redis must fail the hop, not hang.
        assert 0 < timeout_s <= 5
        client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        return cls(client)

    def get(self, key: str, *, now: datetime) -> str | None:
        return self.get_many([key], now=now)[0]

    def get_many(self, keys: Sequence[str], *, now: datetime) -> list[str | None]:
        assert 0 < len(keys) <= KEYS_PER_CALL_MAX
        for key in keys:
            _check(key)
        (raws,) = self._round_trip([("MGET", *(REDIS_PREFIX + key for key in keys))])
        assert isinstance(raws, list)
        assert len(raws) == len(keys)
        return [_unwrap(raw, now) for raw in raws]

    def put(self, key: str, value: str, *, ttl_s: int, now: datetime) -> None:
        self.write({key: (value, ttl_s)}, now=now)

    def delete(self, key: str) -> None:
        _check(key)
        self._round_trip([("DEL", REDIS_PREFIX + key)])

    def write(self, changes: Changes, *, now: datetime) -> None:
        _check_changes(changes)
        commands: list[tuple[object, ...]] = []
        for key, change in changes.items():
            if change is None:
                commands.append(("DEL", REDIS_PREFIX + key))
                continue
            value, ttl_s = change
            until = (now + timedelta(seconds=ttl_s)).isoformat()
            commands.append(("SET", REDIS_PREFIX + key, f"{until}{_UNTIL_END}{value}", "EX", ttl_s))
        if commands:
            self._round_trip(commands)

    def increment(self, key: str, *, ttl_s: int, now: datetime) -> int:
        """INCR, and EXPIRE when it made the key, in one script: atomic, and a counter never
        outlives its window. Redis' own clock lapses it; callers put their window in the key,
        so the caller's `now` still decides which counter a hit lands in."""
        _check(key, ttl_s)
        (count,) = self._round_trip(
            [("EVAL", _INCREMENT_SCRIPT, 1, REDIS_COUNTER_PREFIX + key, ttl_s)]
        )
        assert isinstance(count, int)
        return count

    def ping(self) -> None:
        """One PING round trip (readiness); raises when Redis cannot be reached in time."""
        self._round_trip([("PING",)])

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for _, connection in connections:
            connection.disconnect()
        self._redis.close()

    def _round_trip(self, commands: Sequence[tuple[object, ...]]) -> list[object]:
        """Sends the commands in one write and reads their replies; an error reply raises."""
        assert 0 < len(commands) <= KEYS_PER_CALL_MAX
        for attempt in range(REDIS_ATTEMPTS):
            connection = self._connection()
            try:
                connection.send_packed_command(connection.pack_commands(commands))
                return [connection.read_response() for _ in commands]
            except redis.ConnectionError:
                connection.disconnect()
                if attempt + 1 == REDIS_ATTEMPTS:
                    raise
            except BaseException:
                # Mid-exchange (a timeout, say): replies may still be on their way, and the
                # next user of this connection must not read them.
                connection.disconnect()
                raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _connection(self) -> Any:
        """This thread's connection (made on its first call; it connects on first use, and again
        after a disconnect). Any: redis-py leaves its Connection's methods unannotated. A
        process forked after a call must not share the parent's socket, hence the pid."""
        pid = os.getpid()
        mine = getattr(self._local, "connection", None)
        if mine is not None and mine[0] == pid:
            return mine[1]
        connection = self._pool.make_connection()
        with self._lock:
            # Threads that ended (a pool that shrank) leave theirs behind: closed here.
            for thread, gone in [c for c in self._connections if not c[0].is_alive()]:
                gone.disconnect()
                self._connections.remove((thread, gone))
            assert len(self._connections) < REDIS_CONNECTIONS_MAX, "one per live thread"
            self._connections.append((threading.current_thread(), connection))
        self._local.connection = (pid, connection)
        return connection


def _unwrap(raw: object, now: datetime) -> str | None:
    """A stored value is "<expiry, ISO 8601>|<value>"; a release before it wrote JSON."""
    if raw is None:
        return None
    assert isinstance(raw, bytes)
    text = raw.decode()
    if text.startswith("{"):
        stored = json.loads(text)
        until, value = stored["until"], stored["value"]
    else:
        until, _, value = text.partition(_UNTIL_END)
    if datetime.fromisoformat(until) <= now:
        return None
    assert isinstance(value, str)
    return value
