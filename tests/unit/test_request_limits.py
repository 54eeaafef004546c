"""How often a borrower may ask (require_may_request), with the production bounds: open
requests to one lender, requests to one lender a day, requests a day in all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from deni.domain.errors import Conflict, TooManyRequests
from deni.domain.loans import (
    OPEN_REQUESTS_TO_ONE_LENDER_MAX,
    REQUEST_COUNT_WINDOW,
    REQUESTS_PER_DAY_MAX,
    REQUESTS_TO_ONE_LENDER_PER_DAY_MAX,
    LoanState,
    PastRequest,
    require_may_request,
)

NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
pytestmark = pytest.mark.usefixtures("real_limits")


def asked(lender_id: str, minutes_ago: int, state: LoanState = LoanState.DECLINED) -> PastRequest:
    return PastRequest(lender_id, state, NOW - minutes_ago * MINUTE)


def test_the_bounds_are_the_designed_ones() -> None:
    assert (
        OPEN_REQUESTS_TO_ONE_LENDER_MAX,
        REQUESTS_TO_ONE_LENDER_PER_DAY_MAX,
        REQUESTS_PER_DAY_MAX,
    ) == (3, 5, 10)
    assert timedelta(hours=24) == REQUEST_COUNT_WINDOW


def test_two_open_requests_to_a_lender_leave_room_for_a_third() -> None:
    past = [asked("l-1", m, LoanState.REQUESTED) for m in (1, 2)]
    require_may_request(past, lender_id="l-1", now=NOW)


def test_three_open_requests_to_a_lender_are_the_most() -> None:
    past = [asked("l-1", m, LoanState.REQUESTED) for m in (1, 2, 3)]
    with pytest.raises(Conflict) as caught:
        require_may_request(past, lender_id="l-1", now=NOW)
    assert caught.value.code == "too_many_open_requests"
    assert caught.value.message == (
        "You have 3 requests waiting for this lender: wait for an answer, or cancel one."
    )
    require_may_request(past, lender_id="l-2", now=NOW)


def test_answered_requests_are_not_open() -> None:
    past = [asked("l-1", m, LoanState.APPROVED) for m in (1, 2, 3)]
    require_may_request(past, lender_id="l-1", now=NOW)


def test_four_requests_to_a_lender_in_a_day_leave_room_for_a_fifth() -> None:
    require_may_request([asked("l-1", m) for m in range(1, 5)], lender_id="l-1", now=NOW)


def test_five_requests_to_a_lender_in_a_day_are_the_most_until_the_oldest_is_a_day_old() -> None:
    past = [asked("l-1", m) for m in (10, 20, 30, 40, 50)]
    with pytest.raises(TooManyRequests) as caught:
        require_may_request(past, lender_id="l-1", now=NOW)
    assert caught.value.code == "too_many_requests"
    assert caught.value.message == (
        "You asked 5 times in 24 hours, the most allowed. Try again later."
    )
    # The oldest, 50 minutes ago, leaves the window in 23 hours 10 minutes.
    assert caught.value.retry_after_s == (24 * 60 - 50) * 60
    require_may_request(past, lender_id="l-2", now=NOW)


def test_requests_older_than_a_day_are_not_counted() -> None:
    past = [asked("l-1", m) for m in (10, 20, 30, 40)] + [asked("l-1", 24 * 60)]
    require_may_request(past, lender_id="l-1", now=NOW)


def test_ten_requests_a_day_in_all_are_the_most() -> None:
    past = [asked(f"l-{m}", m) for m in range(1, 10)]
    require_may_request(past, lender_id="l-new", now=NOW)
    past.append(asked("l-10", 100))
    with pytest.raises(TooManyRequests) as caught:
        require_may_request(past, lender_id="l-new", now=NOW)
    assert caught.value.message == (
        "You asked 10 times in 24 hours, the most allowed. Try again later."
    )
    assert caught.value.retry_after_s == (24 * 60 - 100) * 60


def test_the_wait_is_at_least_a_second_and_rounds_up() -> None:
    oldest = NOW - REQUEST_COUNT_WINDOW + timedelta(milliseconds=1_500)
    past = [asked("l-1", m) for m in (1, 2, 3, 4)] + [
        PastRequest("l-1", LoanState.DECLINED, oldest)
    ]
    with pytest.raises(TooManyRequests) as caught:
        require_may_request(past, lender_id="l-1", now=NOW)
    assert caught.value.retry_after_s == 2
    almost = NOW - REQUEST_COUNT_WINDOW + timedelta(milliseconds=1)
    past[-1] = PastRequest("l-1", LoanState.DECLINED, almost)
    with pytest.raises(TooManyRequests) as caught:
        require_may_request(past, lender_id="l-1", now=NOW)
    assert caught.value.retry_after_s == 1
