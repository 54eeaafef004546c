"""Read-only use cases: a member's own book. As lender, what they lent and what it earned,
in all and per borrower; as borrower, every loan they took and how it went.

Each runs in one read-only transaction. What is summed is summed by the database in one
statement (`LoanRepository.figures`), however many loans a member has; what is listed comes
a page at a time (at most LIST_PAGE_MAX rows), with the offset of the next page when there
is one.

Definitions (docs/api.md, "Your book"): a loan counts once its principal moved to the
borrower (disbursing, active, repaid, written off); requests, declines, cancellations and
lapses moved no money and add nothing. `fees_earned_cents` is fee and penalty actually
received; what is accrued but unpaid (the fee of an open loan, its penalty accrued to today)
is `fees_due_cents`, part of `outstanding_cents`, never of what was earned.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import Enum

from deni.domain.loans import Loan, LoanState
from deni.domain.phone import mask_msisdn
from deni.domain.users import nairobi_today
from deni.services.ports import LIST_PAGE_MAX, Deps, LoanFigures


@dataclass(frozen=True, slots=True)
class Figures:
    """A book's sums, in cents, as the member reads them."""

    loans_count: int
    lent_cents: int  # principal that reached the borrower (borrowed, in a history)
    outstanding_cents: int  # still owed, penalties accrued to today
    repaid_cents: int  # every repayment: principal, fee and penalty
    fees_earned_cents: int  # fee and penalty actually received
    fees_due_cents: int  # fee and penalty owed and not yet paid (inside outstanding)
    overdue_count: int
    overdue_cents: int
    written_off_count: int
    written_off_cents: int  # what was still owed when written off

    @classmethod
    def of(cls, figures: LoanFigures) -> Figures:
        return cls(
            loans_count=figures.loans_count,
            lent_cents=figures.principal_cents,
            outstanding_cents=figures.outstanding_cents,
            repaid_cents=figures.repaid_cents,
            fees_earned_cents=figures.fees_paid_cents,
            fees_due_cents=figures.fees_due_cents,
            overdue_count=figures.overdue_count,
            overdue_cents=figures.overdue_cents,
            written_off_count=figures.written_off_count,
            written_off_cents=figures.written_off_cents,
        )


@dataclass(frozen=True, slots=True)
class BorrowerLine:
    borrower_id: str
    name: str
    phone_masked: str  # 2547******78, never the whole number
    figures: Figures


@dataclass(frozen=True, slots=True)
class LenderBook:
    as_of: date  # Nairobi's date the penalties are accrued to
    totals: Figures
    borrowers_count: int
    borrowers: list[BorrowerLine]  # most outstanding first; one page
    next_offset: int | None  # the offset of the next page of borrowers, None on the last


class Punctuality(Enum):
    ON_TIME = "on_time"  # repaid in full by the due date (Nairobi's calendar)
    LATE = "late"  # repaid after the due date, overdue now, or written off
    OPEN = "open"  # money out, not yet due
    NOT_LENT = "not_lent"  # no money moved: a request, declined, cancelled, lapsed


@dataclass(frozen=True, slots=True)
class HistoryLine:
    loan: Loan  # penalties accrued to `as_of` on the copy read; nothing is saved
    lender_name: str
    lender_phone_masked: str
    repaid_cents: int
    outstanding_cents: int
    overdue: bool
    days_overdue: int
    punctuality: Punctuality


@dataclass(frozen=True, slots=True)
class BorrowerHistory:
    as_of: date
    borrowed_cents: int
    repaid_cents: int
    outstanding_cents: int
    loans_count: int  # loans that were lent (not_lent ones are listed, not counted)
    overdue_count: int
    loans: list[HistoryLine]  # every loan as borrower, newest request first; one page
    next_offset: int | None


def punctuality(loan: Loan, today: date) -> Punctuality:
    state = loan.state
    if state in (LoanState.REPAID, LoanState.WRITTEN_OFF):
        on_time = (
            state is LoanState.REPAID
            and loan.closed_at is not None
            and nairobi_today(loan.closed_at) <= loan.terms.due_date
        )
        return Punctuality.ON_TIME if on_time else Punctuality.LATE
    if state in (LoanState.ACTIVE, LoanState.DISBURSING):
        return Punctuality.LATE if loan.is_overdue(today) else Punctuality.OPEN
    return Punctuality.NOT_LENT


def _page(limit: int, offset: int) -> None:
    assert 1 <= limit <= LIST_PAGE_MAX, limit
    assert offset >= 0, offset


def lender_book(deps: Deps, *, user_id: str, limit: int = 20, offset: int = 0) -> LenderBook:
    """The lender's totals over every loan they lent, and one page of them per borrower."""
    _page(limit, offset)
    today = nairobi_today(deps.clock.now())
    with deps.uow.read_only() as uow:
        totals = uow.loans.figures(user_id=user_id, role="lender", today=today)
        rows = uow.loans.figures_by_counterparty(
            user_id=user_id, role="lender", today=today, limit=limit + 1, offset=offset
        )
        contacts = uow.users.contacts({borrower_id for borrower_id, _ in rows[:limit]})
    borrowers = [
        BorrowerLine(
            borrower_id=borrower_id,
            name=contacts[borrower_id][0],
            phone_masked=mask_msisdn(contacts[borrower_id][1]),
            figures=Figures.of(figures),
        )
        for borrower_id, figures in rows[:limit]
    ]
    return LenderBook(
        as_of=today,
        totals=Figures.of(totals),
        borrowers_count=totals.counterparties_count,
        borrowers=borrowers,
        next_offset=offset + limit if len(rows) > limit else None,
    )


def lender_totals(deps: Deps, *, user_id: str) -> Figures:
    """Only the totals (one statement): what a USSD screen shows."""
    today = nairobi_today(deps.clock.now())
    with deps.uow.read_only() as uow:
        return Figures.of(uow.loans.figures(user_id=user_id, role="lender", today=today))


def borrower_totals(deps: Deps, *, user_id: str) -> Figures:
    """The borrower's side, summed the same way (lent_cents is what they borrowed)."""
    today = nairobi_today(deps.clock.now())
    with deps.uow.read_only() as uow:
        return Figures.of(uow.loans.figures(user_id=user_id, role="borrower", today=today))


def _history_line(loan: Loan, today: date, contacts: dict[str, tuple[str, str]]) -> HistoryLine:
    loan.accrue_penalty(today)  # on the copy read, for display
    lent = loan.state in (LoanState.DISBURSING, LoanState.ACTIVE)
    name, phone = contacts.get(loan.lender_id, ("", ""))
    return HistoryLine(
        loan=loan,
        lender_name=name,
        lender_phone_masked=mask_msisdn(phone),
        repaid_cents=loan.principal_paid_cents + loan.fee_paid_cents + loan.penalty_paid_cents,
        outstanding_cents=loan.owed().total_cents if lent else 0,
        overdue=loan.is_overdue(today),
        days_overdue=loan.days_overdue(today),
        punctuality=punctuality(loan, today),
    )


def borrower_history(
    deps: Deps, *, user_id: str, limit: int = 20, offset: int = 0
) -> BorrowerHistory:
    """Every loan the member asked for or took, newest first, a page at a time; the totals
    over all of them."""
    _page(limit, offset)
    today = nairobi_today(deps.clock.now())
    with deps.uow.read_only() as uow:
        totals = uow.loans.figures(user_id=user_id, role="borrower", today=today)
        loans = uow.loans.list_for(
            user_id=user_id, role="borrower", states=(), limit=limit + 1, offset=offset
        )
        contacts = uow.users.contacts({loan.lender_id for loan in loans[:limit]})
    return BorrowerHistory(
        as_of=today,
        borrowed_cents=totals.principal_cents,
        repaid_cents=totals.repaid_cents,
        outstanding_cents=totals.outstanding_cents,
        loans_count=totals.loans_count,
        overdue_count=totals.overdue_count,
        loans=[_history_line(loan, today, contacts) for loan in loans[:limit]],
        next_offset=offset + limit if len(loans) > limit else None,
    )
