"""Bounded retries with exponential backoff and full jitter (AWS architecture blog's variant).

delay_n = uniform(0, min(cap, base * 2**n)); a server's Retry-After is a floor. The number of
attempts is bounded: after `attempts_max` the caller gets the last error and nothing is lost
(the queue keeps the mutations for the next sync).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, TypeVar

from deni.offline.api import Transient

T = TypeVar("T")

ATTEMPTS_MAX: Final = 6
BASE_DELAY_S: Final = 0.25
CAP_DELAY_S: Final = 8.0


@dataclass
class Backoff:
    attempts_max: int = ATTEMPTS_MAX
    base_delay_s: float = BASE_DELAY_S
    cap_delay_s: float = CAP_DELAY_S
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    # What happened, for status displays and tests: (attempt, delay_s, error).
    history: list[tuple[int, float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        assert 1 <= self.attempts_max <= 100
        assert 0 <= self.base_delay_s <= self.cap_delay_s <= 600

    def delay_s(self, attempt: int, retry_after_s: float | None = None) -> float:
        """The wait before retry number `attempt` (0-based): full jitter, capped."""
        assert attempt >= 0
        ceiling_s = min(self.cap_delay_s, self.base_delay_s * (2 ** min(attempt, 30)))
        delay_s = self.rng.uniform(0.0, ceiling_s)
        if retry_after_s is not None:
            delay_s = max(delay_s, min(retry_after_s, self.cap_delay_s))
        assert 0.0 <= delay_s <= self.cap_delay_s
        return delay_s

    def run(self, action: Callable[[], T], *, on_retry: Callable[[str], None] | None = None) -> T:
        """Call `action` until it succeeds or raises something not Transient, at most
        `attempts_max` times; the last Transient error is re-raised."""
        for attempt in range(self.attempts_max):
            try:
                return action()
            except Transient as error:
                if attempt + 1 >= self.attempts_max:
                    raise
                delay_s = self.delay_s(attempt, error.retry_after_s)
                self.history.append((attempt + 1, delay_s, error.message))
                if on_retry is not None:
                    on_retry(f"{error.message} (retry {attempt + 1} in {delay_s:.1f} s)")
                self.sleep(delay_s)
        raise AssertionError("unreachable: the loop returns or raises")
