"""Daraja OAuth tokens: one per deployment, shared through a store, refreshed before expiry.

Daraja invalidates the previous token whenever a new one is generated ("each request invalidates
the previous token"), so every process must use the same token: a per-process cache would have
processes knocking each other's tokens out all day. The store is the shared copy (the database
in production, see `TokenStore`); `AccessTokens` decides when to fetch a new one.

Backing the store with the database: one row (say `daraja_tokens`, keyed by environment and
consumer key so sandbox and production never mix) holding the token and its aware expiry.
get() reads the row in its own short transaction; put() upserts it and commits at once (never
inside a business unit of work: a token must survive that transaction's rollback). The token
is a bearer secret for at most an hour: never log it. Two processes that find the token stale
at the same moment may both fetch; the later token wins and the earlier one dies. That costs
one InvalidAccessToken on the loser's next call, which `replace()` heals by picking up the stored
token instead of fetching yet another. A store that wants to avoid even that can take a row
lock (SELECT ... FOR UPDATE) in get() when the token is stale and release it in put().
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

# Fetch a new token this long before the old one expires, so a token never dies mid-request and
# clocks that disagree by a few minutes still agree the token is good.
DEFAULT_REFRESH_MARGIN_S = 5 * 60
# Daraja says 3599 s. Anything outside these bounds is a garbled answer, not a policy change.
TOKEN_LIFETIME_S_MIN = 1
TOKEN_LIFETIME_S_MAX = 24 * 3600

Clock = Callable[[], datetime]
# Fetches a new token from Daraja: returns (access_token, expires_in_s).
TokenFetcher = Callable[[], tuple[str, int]]


class TokenStore(Protocol):
    """The deployment-wide copy of the current Daraja token.

    get(): the stored (token, expires_at) or None. put(): replace it. expires_at is aware.
    A database implementation is one row (see the module docstring of tokens.py).
    """

    def get(self) -> tuple[str, datetime] | None: ...

    def put(self, token: str, expires_at: datetime) -> None: ...


class InMemoryTokenStore:
    """For one process (tests, the embedded default)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: tuple[str, datetime] | None = None

    def get(self) -> tuple[str, datetime] | None:
        with self._lock:
            return self._value

    def put(self, token: str, expires_at: datetime) -> None:
        assert token
        assert expires_at.tzinfo is not None
        with self._lock:
            self._value = (token, expires_at)


class AccessTokens:
    """Hands out a usable token: the stored one while it is fresh, else a newly fetched one."""

    def __init__(
        self,
        *,
        store: TokenStore,
        fetch: TokenFetcher,
        clock: Clock,
        refresh_margin_s: int = DEFAULT_REFRESH_MARGIN_S,
    ) -> None:
        assert 0 <= refresh_margin_s < TOKEN_LIFETIME_S_MAX
        self._store = store
        self._fetch = fetch
        self._clock = clock
        self._refresh_margin = timedelta(seconds=refresh_margin_s)
        # Threads of one process fetch one at a time; across processes the store decides.
        self._lock = threading.Lock()

    def current(self) -> str:
        """A token that is not within the refresh margin of its expiry."""
        with self._lock:
            now = self._now()
            fresh = self._fresh_stored(now)
            if fresh is not None:
                return fresh
            return self._fetch_and_store(now)

    def replace(self, rejected: str) -> str:
        """Daraja refused `rejected`. If another process has already stored a newer token, use
        that one (fetching again would invalidate it); otherwise fetch a new one."""
        with self._lock:
            now = self._now()
            fresh = self._fresh_stored(now)
            if fresh is not None and fresh != rejected:
                return fresh
            return self._fetch_and_store(now)

    def _now(self) -> datetime:
        now = self._clock()
        assert now.tzinfo is not None, "the clock must return an aware datetime"
        return now

    def _fresh_stored(self, now: datetime) -> str | None:
        stored = self._store.get()
        if stored is None:
            return None
        token, expires_at = stored
        if now >= expires_at - self._refresh_margin:
            return None
        return token

    def _fetch_and_store(self, now: datetime) -> str:
        token, expires_in_s = self._fetch()
        assert token, "the fetcher returned an empty token"
        assert TOKEN_LIFETIME_S_MIN <= expires_in_s <= TOKEN_LIFETIME_S_MAX, expires_in_s
        # Counted from before the fetch: the token cannot outlive what we record.
        self._store.put(token, now + timedelta(seconds=expires_in_s))
        # Returned even when its lifetime is shorter than the margin: it is the newest there is.
        return token
