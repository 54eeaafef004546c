"""PIN rules: the format, and how long wrong PINs lock an account."""

from __future__ import annotations

from datetime import datetime, timedelta

from deni.domain.errors import InvalidPin

PIN_DIGITS = 4
PIN_ATTEMPTS_MAX = 3
LOCK_FIRST = timedelta(minutes=5)
LOCK_MAX = timedelta(hours=24)
# Doubling stops here, so the period never overflows however often someone guesses.
LOCK_DOUBLINGS_MAX = 10


def require_pin_format(pin: object) -> str:
    if not isinstance(pin, str) or len(pin) != PIN_DIGITS or not pin.isascii() or not pin.isdigit():
        raise InvalidPin(f"A PIN is exactly {PIN_DIGITS} digits.")
    return pin


def lock_period(lock_count: int) -> timedelta:
    """The n-th lock lasts twice as long as the one before, up to a day."""
    assert lock_count >= 1
    doublings = min(lock_count - 1, LOCK_DOUBLINGS_MAX)
    period: timedelta = LOCK_FIRST * (1 << doublings)
    return min(period, LOCK_MAX)


def is_locked(locked_until: datetime | None, now: datetime) -> bool:
    return locked_until is not None and now < locked_until
