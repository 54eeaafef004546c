"""Which day of a loan's life brings a reminder: two days before, on the day, then on the
overdue days of OVERDUE_REMINDER_DAYS and every OVERDUE_REMINDER_EVERY_DAYS after the last."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from deni.domain.loans import Loan, LoanState, Terms
from deni.domain.reminders import reminder_key, reminder_kind

DUE = date(2026, 12, 10)
AT = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
REMINDED_OVERDUE_DAYS = {1, 3, 7, 14, 30, 60, 90}


def loan(state: LoanState = LoanState.ACTIVE) -> Loan:
    terms = Terms(principal_cents=10_000, fee_cents=500, penalty_daily_cents=0, due_date=DUE)
    return Loan("l-1", "ABC123", "b-1", "l-1", terms, state, AT, AT + timedelta(days=7))


def expected_kind(due_in_days: int) -> str | None:
    if due_in_days == 2:
        return "due_soon"
    if due_in_days == 0:
        return "due_today"
    if -due_in_days in REMINDED_OVERDUE_DAYS:
        return "overdue"
    return None


@pytest.mark.parametrize("due_in_days", range(5, -95, -1))
def test_an_active_loan_is_reminded_only_on_its_days(due_in_days: int) -> None:
    today = DUE - timedelta(days=due_in_days)
    assert reminder_kind(loan(), today) == expected_kind(due_in_days)


@pytest.mark.parametrize("state", [s for s in LoanState if s is not LoanState.ACTIVE])
@pytest.mark.parametrize("due_in_days", [2, 0, -1, -60])
def test_a_loan_that_is_not_active_is_never_reminded(state: LoanState, due_in_days: int) -> None:
    assert reminder_kind(loan(state), DUE - timedelta(days=due_in_days)) is None


def test_a_reminder_key_is_one_per_kind_loan_and_day() -> None:
    assert reminder_key("overdue", "l-9", date(2026, 12, 13)) == "overdue:l-9:2026-12-13"
