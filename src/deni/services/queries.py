"""Read-only use cases: what people look at. Each runs in a read-only transaction."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from deni.domain.errors import NotFound
from deni.domain.ledger import wallet_account_id
from deni.domain.loans import Loan, LoanState, Owed
from deni.domain.users import nairobi_today
from deni.services.ports import (
    LIST_PAGE_MAX,
    STATEMENT_PAGE_MAX,
    Deps,
    NotificationRecord,
    RepaymentRecord,
    StatementLine,
    UnitOfWork,
)


@dataclass(frozen=True, slots=True)
class LoanView:
    loan: Loan
    owed: Owed  # with penalties accrued to today, as the borrower would pay now
    overdue: bool
    days_overdue: int
    borrower_name: str
    borrower_phone: str
    lender_name: str
    lender_phone: str


@dataclass(frozen=True, slots=True)
class LoanDetail:
    view: LoanView
    repayments: list[RepaymentRecord]


def _view(loan: Loan, today: date, names: dict[str, tuple[str, str]]) -> LoanView:
    loan.accrue_penalty(today)  # on a copy read for display; nothing is saved
    borrower, lender = names[loan.borrower_id], names[loan.lender_id]
    return LoanView(
        loan=loan,
        owed=loan.owed(),
        overdue=loan.is_overdue(today),
        days_overdue=loan.days_overdue(today),
        borrower_name=borrower[0],
        borrower_phone=borrower[1],
        lender_name=lender[0],
        lender_phone=lender[1],
    )


def list_loans(
    deps: Deps,
    *,
    user_id: str,
    role: str,
    states: Sequence[LoanState] = (),
    overdue: bool | None = None,
    limit: int = 20,
    offset: int = 0,
) -> list[LoanView]:
    """Newest first; `overdue` keeps only loans that are (True) or are not (False) overdue.
    A page of LIST_PAGE_MAX, and one more loan to tell whether another page follows."""
    assert 1 <= limit <= LIST_PAGE_MAX + 1
    today = nairobi_today(deps.clock.now())
    with deps.uow.read_only() as uow:
        loans = uow.loans.list_for(
            user_id=user_id,
            role=role,
            states=states,
            limit=limit,
            offset=offset,
            overdue_on=today if overdue is not None else None,
            overdue=bool(overdue),
        )
        names = uow.users.contacts(
            {u for loan in loans for u in (loan.borrower_id, loan.lender_id)}
        )
    return [_view(loan, today, names) for loan in loans]


def loan_detail(
    deps: Deps,
    *,
    user_id: str,
    loan_id: str,
) -> LoanDetail:
    today = nairobi_today(deps.clock.now())
    with deps.uow.read_only() as uow:
        loan = uow.loans.get(loan_id)
        if loan is None or user_id not in (loan.borrower_id, loan.lender_id):
            raise NotFound("No such loan.", code="loan_not_found")
        names = uow.users.contacts({loan.borrower_id, loan.lender_id})
        repayments = uow.loans.repayments(loan.id)
    return LoanDetail(_view(loan, today, names), repayments)


def loan_details(uow: UnitOfWork, loans: Sequence[Loan], *, today: date) -> list[LoanDetail]:
    """Several loans in full, read in the caller's transaction (the names in one query)."""
    names = uow.users.contacts({u for loan in loans for u in (loan.borrower_id, loan.lender_id)})
    return [LoanDetail(_view(loan, today, names), uow.loans.repayments(loan.id)) for loan in loans]


def loan_view(
    deps: Deps,
    *,
    loan: Loan,
) -> LoanView:
    """The view of a loan a command has just returned: it is current, so only names are read."""
    today = nairobi_today(deps.clock.now())
    with deps.uow.read_only() as uow:
        names = uow.users.contacts({loan.borrower_id, loan.lender_id})
    return _view(copy.copy(loan), today, names)


@dataclass(frozen=True, slots=True)
class Statement:
    balance_cents: int
    lines: list[StatementLine]
    next_cursor: int | None


def wallet_statement(
    deps: Deps,
    *,
    user_id: str,
    before: int | None = None,
    limit: int = 20,
) -> Statement:
    """Newest first; `next_cursor` fetches the page after this one."""
    assert 1 <= limit <= STATEMENT_PAGE_MAX
    account_id = wallet_account_id(user_id)
    with deps.uow.read_only() as uow:
        account = uow.ledger.get_account(account_id)
        if account is None:
            raise NotFound("No wallet for this user.", code="wallet_not_found")
        lines = uow.ledger.statement(account_id, before_posting_id=before, limit=limit + 1)
    next_cursor = lines[limit - 1].posting_id if len(lines) > limit else None
    return Statement(account.balance_cents, lines[:limit], next_cursor)


@dataclass(frozen=True, slots=True)
class NotificationPage:
    notifications: list[NotificationRecord]
    unread_count: int  # of all the member's notifications, not only this page's
    next_offset: int | None  # None: this is the last page


def notification_page(
    deps: Deps, *, user_id: str, unread_only: bool, limit: int, offset: int
) -> NotificationPage:
    """A page of the member's notifications, newest first, and how many are unread in all."""
    assert 1 <= limit <= LIST_PAGE_MAX
    assert offset >= 0
    with deps.uow.read_only() as uow:
        found = uow.notifications.list_for(
            user_id, unread_only=unread_only, limit=limit + 1, offset=offset
        )
        unread = uow.notifications.count_unread(user_id)
    more = len(found) > limit
    return NotificationPage(found[:limit], unread, offset + limit if more else None)


def list_notifications(
    deps: Deps,
    *,
    user_id: str,
    unread_only: bool,
    limit: int,
    offset: int,
) -> list[NotificationRecord]:
    assert 1 <= limit <= LIST_PAGE_MAX
    with deps.uow.read_only() as uow:
        return uow.notifications.list_for(
            user_id, unread_only=unread_only, limit=limit, offset=offset
        )
