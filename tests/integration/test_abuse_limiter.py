"""The abuse limiter on every session store (memory, SQL on SQLite and PostgreSQL, Redis):
counting is atomic across threads, a window lapses on the injected clock, keys stay short
whatever the subject, the hit past the limit is refused with the seconds to wait, and a key
gives no number or address back to whoever reads the store."""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from deni.adapters.db.engine import make_engine
from deni.adapters.sessions import MemorySessionStore, RedisSessionStore, SqlSessionStore
from deni.domain.errors import TooManyRequests
from deni.services import limits
from deni.services.ports import SessionStore

REDIS_URL = os.environ.get("DENI_TEST_REDIS_URL")
NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)  # on the hour: a window starts here
STORES = [
    "memory",
    "sql",
    pytest.param(
        "redis",
        marks=pytest.mark.skipif(not REDIS_URL, reason="DENI_TEST_REDIS_URL is not set"),
    ),
]
THREADS = 8
HITS_PER_THREAD = 25
SMALL = limits.Limit("test", 5, limits.HOUR_S, "Too many tests.")
SUBJECT_KEY = bytes(range(32))


def _limited(store: SessionStore) -> limits.LimitCounters:
    return limits.LimitCounters(store, SUBJECT_KEY)


@pytest.fixture(params=STORES)
def counters(request: pytest.FixtureRequest, database_url: str) -> Iterator[SessionStore]:
    if request.param == "memory":
        yield MemorySessionStore()
    elif request.param == "sql":
        engine = make_engine(database_url)
        yield SqlSessionStore(engine)
        engine.dispose()
    else:
        assert REDIS_URL is not None
        store = RedisSessionStore.from_url(REDIS_URL)
        yield store
        store.close()


def _subject() -> str:
    return f"198.51.100.{uuid.uuid4().int % 250}-{uuid.uuid4()}"


def test_a_counter_counts_and_lapses_with_its_window(counters: SessionStore) -> None:
    key = f"lim:test:{uuid.uuid4().hex}"
    assert [counters.increment(key, ttl_s=60, now=NOW) for _ in range(3)] == [1, 2, 3]
    # Counting does not stretch the window: it lapses 60 s after the first hit.
    assert counters.increment(key, ttl_s=60, now=NOW + timedelta(seconds=59)) == 4


def test_a_lapsed_counter_starts_again_on_memory_and_sql() -> None:
    """Memory and SQL compare the expiry with the caller's clock (Redis uses its own, and the
    limiter puts the window in the key, so all three agree on which counter a hit lands in)."""
    store = MemorySessionStore()
    key = "lim:test:lapse"
    store.increment(key, ttl_s=60, now=NOW)
    assert store.increment(key, ttl_s=60, now=NOW + timedelta(seconds=60)) == 1


def test_the_sql_counter_lapses_on_the_callers_clock(database_url: str) -> None:
    engine = make_engine(database_url)
    store = SqlSessionStore(engine)
    key = f"lim:test:{uuid.uuid4().hex}"
    store.increment(key, ttl_s=60, now=NOW)
    store.increment(key, ttl_s=60, now=NOW)
    assert store.increment(key, ttl_s=60, now=NOW + timedelta(seconds=60)) == 1
    assert store.increment(key, ttl_s=60, now=NOW + timedelta(seconds=61)) == 2
    engine.dispose()


def test_concurrent_hits_are_each_counted_once(counters: SessionStore) -> None:
    """Read-then-write would lose hits here; the atomic increment loses none, so a crowd of
    requests at one instant cannot slip past a limit together."""
    key = f"lim:test:{uuid.uuid4().hex}"
    seen: list[int] = []
    lock = threading.Lock()

    def hit_many() -> None:
        mine = [counters.increment(key, ttl_s=600, now=NOW) for _ in range(HITS_PER_THREAD)]
        with lock:
            seen.extend(mine)

    threads = [threading.Thread(target=hit_many) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    total = THREADS * HITS_PER_THREAD
    assert sorted(seen) == list(range(1, total + 1))


def test_the_hit_past_the_limit_is_refused_until_the_window_ends(counters: SessionStore) -> None:
    subject = _subject()
    for _ in range(SMALL.hits_max):
        limits.hit(_limited(counters), SMALL, subject, now=NOW)
    with pytest.raises(TooManyRequests) as refused:
        limits.hit(_limited(counters), SMALL, subject, now=NOW + timedelta(minutes=20))
    assert refused.value.retry_after_s == 40 * 60
    assert refused.value.code == "too_many_requests"
    # Others are not touched, and the next window starts afresh.
    limits.hit(_limited(counters), SMALL, _subject(), now=NOW)
    limits.hit(_limited(counters), SMALL, subject, now=NOW + timedelta(hours=1))


def test_keys_stay_short_whatever_the_subject(counters: SessionStore) -> None:
    huge = "x" * 100_000 + _subject()
    for _ in range(SMALL.hits_max):
        limits.hit(_limited(counters), SMALL, huge, now=NOW)  # the store would assert on a long key
    with pytest.raises(TooManyRequests):
        limits.hit(_limited(counters), SMALL, huge, now=NOW)


def test_one_ipv6_host_counts_as_its_64() -> None:
    """Anyone with IPv6 holds a /64 (18 billion billion addresses): counting per address
    would be no limit at all."""
    one = limits.source_subject("2001:db8:1:2::1")
    other = limits.source_subject("2001:db8:1:2:ffff:ffff:ffff:ffff")
    assert one == other == "2001:db8:1:2::/64"
    assert limits.source_subject("2001:db8:1:3::1") != one
    assert limits.source_subject("::ffff:198.51.100.7") == "198.51.100.7"


def test_one_number_however_it_is_written() -> None:
    assert limits.phone_subject("0712 345 678") == limits.phone_subject("+254712345678")
    assert limits.phone_subject("not a number").startswith("raw:")
    assert limits.phone_subject(12345) == "raw:12345"


def _a_number() -> str:
    """A number of its own for each test (Redis keeps its counters between runs)."""
    return f"2547{uuid.uuid4().int % 10**8:08d}"


def test_a_stored_counter_key_does_not_give_the_number_back(counters: SessionStore) -> None:
    """Someone reading the store hashes every Kenyan number (a few hundred million) and looks
    for the sign-in counter's key: without the pepper's subkey there is nothing to match."""
    msisdn = _a_number()
    window = int(NOW.timestamp()) // limits.HOUR_S
    limited = _limited(counters)
    limits.limit_login(limited, source="198.51.100.7", phone="0" + msisdn[3:], now=NOW)

    plain = hashlib.sha256(msisdn.encode()).hexdigest()[: limits.SUBJECT_DIGEST_CHARS]
    keyed = limited.key("login-phone", msisdn, window)
    assert plain not in keyed
    assert msisdn not in keyed
    assert len(keyed) == len(f"lim:login-phone:{plain}:{window}")  # as short as before
    # The hit landed on the keyed counter (a second hit counts 2), none on the plain one.
    assert counters.increment(keyed, ttl_s=limits.HOUR_S, now=NOW) == 2
    plain_key = f"lim:login-phone:{plain}:{window}"
    assert counters.increment(plain_key, ttl_s=limits.HOUR_S, now=NOW) == 1
    other_pepper = limits.LimitCounters(counters, b"another pepper's subkey, 32 bytes")
    assert other_pepper.key("login-phone", msisdn, window) != keyed


def test_one_number_still_maps_to_one_counter(counters: SessionStore) -> None:
    limited = _limited(counters)
    msisdn = _a_number()
    local = msisdn[3:]
    spellings = (f"0{local}", f"+{msisdn}", msisdn, f"0{local[:3]} {local[3:]}", local)
    for spelling in spellings:
        limits.hit(limited, SMALL, limits.phone_subject(spelling), now=NOW)
    with pytest.raises(TooManyRequests):
        limits.hit(limited, SMALL, limits.phone_subject(f"+{msisdn}"), now=NOW)
    limits.hit(limited, SMALL, limits.phone_subject(_a_number()), now=NOW)  # another number
