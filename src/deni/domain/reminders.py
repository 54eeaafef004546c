"""When a borrower hears about a due date: two days before, on the day, and while overdue."""

from __future__ import annotations

from datetime import date

from deni.domain.loans import Loan, LoanState

DUE_SOON_DAYS = 2
# Reminding every day would be harassment (CBK's debt collection rules); these days are enough.
OVERDUE_REMINDER_DAYS = frozenset({1, 3, 7, 14, 30})
OVERDUE_REMINDER_EVERY_DAYS = 30


def reminder_kind(loan: Loan, today: date) -> str | None:
    """The notification kind due for `loan` today, if any."""
    if loan.state is not LoanState.ACTIVE:
        return None
    due_in_days = (loan.terms.due_date - today).days
    if due_in_days == DUE_SOON_DAYS:
        return "due_soon"
    if due_in_days == 0:
        return "due_today"
    days_overdue = -due_in_days
    if days_overdue in OVERDUE_REMINDER_DAYS:
        return "overdue"
    if (
        days_overdue > max(OVERDUE_REMINDER_DAYS)
        and days_overdue % OVERDUE_REMINDER_EVERY_DAYS == 0
    ):
        return "overdue"
    return None


def reminder_key(kind: str, loan_id: str, today: date) -> str:
    """One reminder of a kind per loan per day, however often the sweep runs."""
    return f"{kind}:{loan_id}:{today.isoformat()}"
