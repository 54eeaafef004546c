"""Errors carry what a client needs besides the code: when held money may leave, how long to
wait before asking again, customer care's message."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from deni.domain.errors import ErrorKind, LockedBySupport, MoneyOnHold, TooManyRequests

UNTIL = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)


def test_money_on_hold_says_until_when() -> None:
    error = MoneyOnHold("Wait a day.", until=UNTIL)
    assert (error.code, error.kind) == ("money_on_hold", ErrorKind.LOCKED)
    assert (error.message, str(error), error.until) == ("Wait a day.", "Wait a day.", UNTIL)


def test_a_support_lock_tells_the_member_whom_to_call() -> None:
    error = LockedBySupport()
    assert (error.code, error.kind) == ("locked_by_support", ErrorKind.LOCKED)
    assert error.message == "Deni customer care locked this account. Call them to unlock it."
    assert str(error) == error.message


def test_too_many_requests_says_how_long_to_wait_and_may_name_its_limit() -> None:
    plain = TooManyRequests("Slow down.")
    assert (plain.code, plain.kind, plain.message) == (
        "too_many_requests",
        ErrorKind.TOO_MANY,
        "Slow down.",
    )
    assert plain.retry_after_s is None
    named = TooManyRequests("Slow down.", retry_after_s=1, code="too_many_sign_ins")
    assert (named.code, named.message, str(named), named.retry_after_s) == (
        "too_many_sign_ins",
        "Slow down.",
        "Slow down.",
        1,
    )


def test_a_wait_shorter_than_a_second_is_a_programmer_error() -> None:
    with pytest.raises(AssertionError):
        TooManyRequests("Slow down.", retry_after_s=0)
