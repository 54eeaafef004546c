"""The deployment-wide token: reuse while fresh, refresh before expiry, replace when refused."""

from __future__ import annotations

from datetime import timedelta

import pytest
from tests.fakes import ManualClock
from tests.unit.daraja.support import START

from deni.adapters.daraja.tokens import AccessTokens, InMemoryTokenStore


class FakeFetcher:
    def __init__(self, lifetime_s: int = 3599) -> None:
        self.calls = 0
        self.lifetime_s = lifetime_s

    def __call__(self) -> tuple[str, int]:
        self.calls += 1
        return f"token-{self.calls}", self.lifetime_s


def tokens(
    fetcher: FakeFetcher, clock: ManualClock, store: InMemoryTokenStore | None = None
) -> AccessTokens:
    return AccessTokens(
        store=store or InMemoryTokenStore(), fetch=fetcher, clock=clock.now, refresh_margin_s=300
    )


def test_fetches_once_and_reuses_while_fresh() -> None:
    clock, fetcher, store = ManualClock(START), FakeFetcher(), InMemoryTokenStore()
    access = tokens(fetcher, clock, store)
    assert access.current() == "token-1"
    assert store.get() == ("token-1", START + timedelta(seconds=3599))
    clock.advance(timedelta(seconds=3599 - 301))
    assert access.current() == "token-1"
    assert fetcher.calls == 1


def test_refreshes_within_the_margin_before_expiry() -> None:
    clock, fetcher = ManualClock(START), FakeFetcher()
    access = tokens(fetcher, clock)
    access.current()
    clock.advance(timedelta(seconds=3599 - 300))
    assert access.current() == "token-2"
    assert fetcher.calls == 2


def test_a_token_stored_by_another_process_is_used() -> None:
    clock, store = ManualClock(START), InMemoryTokenStore()
    store.put("shared", START + timedelta(hours=1))
    fetcher = FakeFetcher()
    assert tokens(fetcher, clock, store).current() == "shared"
    assert fetcher.calls == 0


def test_replace_fetches_when_the_stored_token_is_the_refused_one() -> None:
    clock, fetcher, store = ManualClock(START), FakeFetcher(), InMemoryTokenStore()
    access = tokens(fetcher, clock, store)
    refused = access.current()
    assert access.replace(rejected=refused) == "token-2"
    assert store.get() == ("token-2", START + timedelta(seconds=3599))


def test_replace_takes_a_newer_stored_token_instead_of_fetching() -> None:
    # Another process refreshed (which killed our token): fetching again would kill theirs.
    clock, fetcher, store = ManualClock(START), FakeFetcher(), InMemoryTokenStore()
    access = tokens(fetcher, clock, store)
    refused = access.current()
    store.put("from-another-process", START + timedelta(hours=1))
    assert access.replace(rejected=refused) == "from-another-process"
    assert fetcher.calls == 1


def test_a_failed_fetch_stores_nothing() -> None:
    clock, store = ManualClock(START), InMemoryTokenStore()

    def failing() -> tuple[str, int]:
        raise RuntimeError("no network")

    access = AccessTokens(store=store, fetch=failing, clock=clock.now)
    with pytest.raises(RuntimeError):
        access.current()
    assert store.get() is None


def test_a_short_lived_token_is_still_used_once() -> None:
    clock, fetcher = ManualClock(START), FakeFetcher(lifetime_s=60)
    access = tokens(fetcher, clock)
    assert access.current() == "token-1"
    assert access.current() == "token-2"  # within the margin at once: fetched every time


def test_the_clock_must_be_aware() -> None:
    from datetime import datetime

    access = AccessTokens(
        store=InMemoryTokenStore(),
        fetch=FakeFetcher(),
        clock=lambda: datetime(2026, 1, 1),
    )
    with pytest.raises(AssertionError):
        access.current()
