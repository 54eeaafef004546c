"""What a loan owes is three parts, none of them negative, and a repayment of a single cent
counts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from deni.domain.loans import Loan, LoanEvent, LoanState, Owed, Terms, allocate

NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "parts",
    [
        {"penalty_cents": -1, "fee_cents": 0, "principal_cents": 0},
        {"penalty_cents": 0, "fee_cents": -1, "principal_cents": 0},
        {"penalty_cents": 0, "fee_cents": 0, "principal_cents": -1},
    ],
    ids=["penalty", "fee", "principal"],
)
def test_no_part_of_what_is_owed_may_be_negative(parts: dict[str, int]) -> None:
    with pytest.raises(AssertionError):
        Owed(**parts)


def test_nothing_owed_is_zero_in_every_part() -> None:
    owed = Owed(penalty_cents=0, fee_cents=0, principal_cents=0)
    assert owed.total_cents == 0


def test_what_is_owed_totals_its_parts() -> None:
    assert Owed(penalty_cents=1, fee_cents=20, principal_cents=300).total_cents == 321


def test_a_repayment_of_one_cent_is_counted() -> None:
    terms = Terms(
        principal_cents=1_000, fee_cents=0, penalty_daily_cents=0, due_date=date(2026, 12, 3)
    )
    loan = Loan("l-1", "DNABCDEF", "b", "l", terms, LoanState.ACTIVE, NOW, NOW + timedelta(days=7))
    loan.record_repayment(allocate(loan.owed(), 1), NOW)
    assert loan.principal_paid_cents == 1
    assert loan.owed() == Owed(penalty_cents=0, fee_cents=0, principal_cents=999)
    assert loan.events == [LoanEvent.REPAY]
