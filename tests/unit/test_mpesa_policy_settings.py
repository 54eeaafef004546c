"""The M-PESA timings an operator (or the soak) sets reach the policy the use cases read."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from deni.bootstrap import mpesa_policy
from deni.config import Settings


def test_the_check_backoff_is_five_minutes_unless_set() -> None:
    assert mpesa_policy(Settings()).check_backoff_s == 300.0
    policy = mpesa_policy(Settings(mpesa_check_backoff_s=3, mpesa_status_after_s=2))
    assert policy.check_backoff_s == 3.0
    assert policy.status_after_s == 2.0


@pytest.mark.parametrize("bad", [0, -1, 86_401])
def test_a_check_backoff_out_of_bounds_is_refused(bad: float) -> None:
    with pytest.raises(ValidationError, match="mpesa_check_backoff_s"):
        Settings(mpesa_check_backoff_s=bad)
