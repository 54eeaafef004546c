"""The session-store contract on memory, SQL (SQLite, PostgreSQL) and Redis, and a USSD journey
on each. Redis runs when DENI_TEST_REDIS_URL is set (CI: redis://127.0.0.1:6379/15)."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from fastapi.testclient import TestClient
from tests.fakes import ManualClock
from tests.support.builders import next_phone
from tests.support.ussd import Phone, register
from tests.support.waiting import wait_until

from deni.adapters.db.engine import make_engine
from deni.adapters.security import PepperedArgon2PinHasher
from deni.adapters.sessions import (
    REDIS_PREFIX,
    MemorySessionStore,
    RedisSessionStore,
    SqlSessionStore,
)
from deni.bootstrap import bootstrap
from deni.config import Settings
from deni.entrypoints.api.app import create_app
from deni.services.ports import SessionStore

REDIS_URL = os.environ.get("DENI_TEST_REDIS_URL")
NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
STORES = [
    "memory",
    "sql",
    pytest.param(
        "redis",
        marks=pytest.mark.skipif(
            not REDIS_URL, reason="DENI_TEST_REDIS_URL is not set: Redis tier off"
        ),
    ),
]


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(store_kind: str, database_url: str) -> Iterator[SessionStore]:
    if store_kind == "memory":
        yield MemorySessionStore()
    elif store_kind == "sql":
        engine = make_engine(database_url)
        yield SqlSessionStore(engine)
        engine.dispose()
    else:
        assert REDIS_URL is not None
        redis_store = RedisSessionStore.from_url(REDIS_URL)
        yield redis_store
        redis_store.close()


def _key() -> str:
    return f"test:{uuid.uuid4()}"


def test_put_get_delete(store: SessionStore) -> None:
    key = _key()
    assert store.get(key, now=NOW) is None
    store.put(key, '{"screen": "main"}', ttl_s=60, now=NOW)
    assert store.get(key, now=NOW) == '{"screen": "main"}'
    store.put(key, "second ✓ value", ttl_s=60, now=NOW)
    assert store.get(key, now=NOW) == "second ✓ value"
    store.delete(key)
    assert store.get(key, now=NOW) is None
    store.delete(key)  # deleting twice is fine


def test_values_lapse_after_their_ttl_and_a_put_renews_it(store: SessionStore) -> None:
    key = _key()
    store.put(key, "v1", ttl_s=60, now=NOW)
    assert store.get(key, now=NOW + timedelta(seconds=59)) == "v1"
    assert store.get(key, now=NOW + timedelta(seconds=60)) is None
    store.put(key, "v2", ttl_s=60, now=NOW + timedelta(seconds=50))
    assert store.get(key, now=NOW + timedelta(seconds=100)) == "v2"
    store.delete(key)


def test_keys_are_independent_and_values_can_be_large(store: SessionStore) -> None:
    a, b = _key(), _key()
    big = "x" * 60_000
    store.put(a, big, ttl_s=30, now=NOW)
    store.put(b, "small", ttl_s=30, now=NOW)
    assert store.get(a, now=NOW) == big
    store.delete(a)
    assert store.get(b, now=NOW) == "small"
    store.delete(b)


def test_memory_store_is_bounded() -> None:
    memory = MemorySessionStore(entries_max=3)
    for n in range(3):
        memory.put(f"k{n}", "v", ttl_s=10 + n, now=NOW)
    memory.put("k3", "v", ttl_s=60, now=NOW)
    assert memory.get("k0", now=NOW) is None  # the one closest to expiry made room
    assert memory.get("k3", now=NOW) == "v"


def test_sql_store_purges_expired_rows_in_batches(database_url: str) -> None:
    engine = make_engine(database_url)
    sql = SqlSessionStore(engine)
    for n in range(5):
        sql.put(f"purge:{n}", "v", ttl_s=10, now=NOW)
    sql.put("purge:keep", "v", ttl_s=100, now=NOW)
    later = NOW + timedelta(seconds=20)
    assert sql.purge_expired(now=later, batch=3) == 3
    assert sql.purge_expired(now=later, batch=3) == 2
    assert sql.purge_expired(now=later, batch=3) == 0
    assert sql.get("purge:keep", now=later) == "v"
    engine.dispose()


def test_a_journey_on_each_store(
    store_kind: str, settings: Settings, clock: ManualClock, hasher: PepperedArgon2PinHasher
) -> None:
    wired = bootstrap(
        settings.model_copy(update={"session_store": store_kind, "redis_url": REDIS_URL or ""}),
        clock=clock,
        hasher=hasher,
    )
    try:
        with TestClient(create_app(wired), raise_server_exceptions=False) as client:
            lender, borrower = Phone(client, next_phone()), Phone(client, next_phone())
            register(lender, name="Store Lender", pin="3591")
            register(borrower, name="Store Borrower", pin="5683")
            borrower.dial()
            borrower.send("1", lender.number, "1000")
            assert borrower.resend() == borrower.last
            clock.advance(timedelta(seconds=30))  # dropped; dials again
            assert "Continue where" in borrower.dial()
            borrower.send("1", "7", "0")
            assert "Enter PIN" in borrower.last
            assert "Request sent" in borrower.send("5683")
            assert "Request sent" in borrower.resend()
    finally:
        wired.close()


def test_get_many_and_write_are_one_call_each(store: SessionStore) -> None:
    a, b, c = _key(), _key(), _key()
    store.write({a: ("first", 60), b: ("second ✓", 30)}, now=NOW)
    assert store.get_many([a, b, c], now=NOW) == ["first", "second ✓", None]
    assert store.get_many([b, a], now=NOW + timedelta(seconds=30)) == [None, "first"]
    store.write({a: None, c: ("third", 60)}, now=NOW)  # a delete and a put together
    assert store.get_many([a, c], now=NOW) == [None, "third"]
    store.write({}, now=NOW)  # a hop with nothing to write
    store.write({b: None, c: None}, now=NOW)
    assert store.get_many([b, c], now=NOW) == [None, None]


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    if not REDIS_URL:
        pytest.skip("DENI_TEST_REDIS_URL is not set: Redis tier off")
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


def test_redis_values_are_compact_and_the_earlier_json_form_still_reads(
    redis_client: redis.Redis,
) -> None:
    assert REDIS_URL is not None
    store = RedisSessionStore.from_url(REDIS_URL)
    try:
        key = _key()
        store.put(key, "v|1", ttl_s=60, now=NOW)
        raw = redis_client.get(REDIS_PREFIX + key)
        assert raw == b"2026-11-26T06:01:00+00:00|v|1"
        assert 0 < redis_client.ttl(REDIS_PREFIX + key) <= 60
        assert store.get(key, now=NOW) == "v|1"
        # What a release before this one wrote.
        old = json.dumps({"until": (NOW + timedelta(seconds=60)).isoformat(), "value": "{}"})
        redis_client.set(REDIS_PREFIX + key, old, ex=60)
        assert store.get_many([key], now=NOW) == ["{}"]
        assert store.get(key, now=NOW + timedelta(seconds=60)) is None
        store.delete(key)
    finally:
        store.close()


def _named_store() -> tuple[RedisSessionStore, str]:
    """A store whose connections carry a name of their own, to find them in CLIENT LIST."""
    assert REDIS_URL is not None
    name = f"deni-test-{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in REDIS_URL else "?"
    return RedisSessionStore.from_url(f"{REDIS_URL}{separator}client_name={name}"), name


def test_redis_store_reconnects_after_its_connection_is_dropped(
    redis_client: redis.Redis,
) -> None:
    """Redis restarted (or a proxy dropped idle connections): the next hop still works."""
    store, name = _named_store()
    try:
        key = _key()
        store.put(key, "kept", ttl_s=60, now=NOW)
        ours = [c for c in redis_client.client_list() if c.get("name") == name]
        assert ours
        for connection in ours:
            redis_client.client_kill_filter(_id=connection["id"])
        assert store.get_many([key, _key()], now=NOW) == ["kept", None]
        store.write({key: None}, now=NOW)
        assert store.get(key, now=NOW) is None
    finally:
        store.close()


def test_redis_store_fails_a_stuck_call_within_its_timeout_and_reads_no_late_reply(
    redis_client: redis.Redis,
) -> None:
    """Redis stalls (paused here): the hop fails within its timeout instead of waiting the
    stall out, and the reply that arrives later is not mistaken for the next call's."""
    assert REDIS_URL is not None
    store = RedisSessionStore.from_url(REDIS_URL, timeout_s=0.05)
    try:
        stale, fresh = _key(), _key()
        store.write({stale: ("stale", 60), fresh: ("fresh", 60)}, now=NOW)
        redis_client.client_pause(300)  # six times the timeout; the pause holds every client
        # Waiting the stall out, the call would get its answer and raise nothing.
        with pytest.raises(redis.TimeoutError):
            store.get_many([stale], now=NOW)
        # Redis answers this once the stall is over, and so has sent the late reply by then.
        assert redis_client.ping()
        assert store.get_many([fresh], now=NOW) == ["fresh"]
    finally:
        redis_client.client_unpause()
        store.close()


def test_redis_store_gives_each_thread_a_connection_and_closes_those_of_ended_threads(
    redis_client: redis.Redis,
) -> None:
    store, name = _named_store()

    def ours(expected: int) -> int:
        """Our connections Redis lists, once it has seen closed ones go."""

        def count() -> int:
            return sum(1 for c in redis_client.client_list() if c.get("name") == name)

        wait_until(lambda: count() == expected, what=f"Redis to list {expected} of ours")
        return count()

    def in_a_thread() -> None:
        store.put(_key(), "v", ttl_s=60, now=NOW)

    try:
        in_a_thread()
        in_a_thread()
        assert ours(1) == 1  # the same thread's calls share its connection
        for _ in range(3):
            thread = threading.Thread(target=in_a_thread)
            thread.start()
            thread.join()
        # Each new thread's first call closed the connection of the one that ended before it.
        assert ours(2) == 2
    finally:
        store.close()
    assert ours(0) == 0
