"""Waiting for something another thread or process does: poll the condition, with a bound.

A test never sleeps and hopes that something has happened by then: on a busy machine it has
not, and the test fails at random. It waits for the condition itself; the bound only turns a
wait that would never end into a failure that says what did not happen, so it is generous.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

POLL_INTERVAL_S = 0.01
WAIT_TIMEOUT_S = 10.0


def wait_until(
    condition: Callable[[], T],
    *,
    what: str,
    timeout_s: float = WAIT_TIMEOUT_S,
    interval_s: float = POLL_INTERVAL_S,
) -> T:
    """Call `condition` until it returns something true, and return that; fail naming `what`
    if `timeout_s` passes first."""
    assert 0 < interval_s < timeout_s
    deadline = time.monotonic() + timeout_s
    polls_max = int(timeout_s / interval_s) + 1  # a bound on the loop should the clock stall
    for _ in range(polls_max):
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            break
        time.sleep(interval_s)
    raise AssertionError(f"waited {timeout_s} s for {what}; it did not happen")
