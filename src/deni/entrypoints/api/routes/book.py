"""The signed-in member's own book: as lender, what they lent and to whom; as borrower,
every loan they took. Read-only; the totals cover every loan, the lists come a page at a time."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from deni.entrypoints.api.deps import DeniDep, UserId
from deni.entrypoints.api.json_body import TextJsonRoute
from deni.entrypoints.api.schemas import HistoryOut, LenderBookOut
from deni.services import book
from deni.services.ports import LIST_PAGE_MAX

router = APIRouter(tags=["book"], route_class=TextJsonRoute)
OFFSET_MAX = 100_000


@router.get("/me/book", response_model=LenderBookOut)
def lender_book(
    user_id: UserId,
    deni: DeniDep,
    limit: Annotated[int, Query(ge=1, le=LIST_PAGE_MAX, description="Borrowers per page.")] = 20,
    offset: Annotated[int, Query(ge=0, le=OFFSET_MAX)] = 0,
) -> LenderBookOut:
    """Your book as lender: totals lent, outstanding, repaid, fees earned (received) and due
    (accrued, unpaid), overdue and written off; then the same per borrower, most outstanding
    first, one page of borrowers at a time."""
    return LenderBookOut.of(book.lender_book(deni, user_id=user_id, limit=limit, offset=offset))


@router.get("/me/history", response_model=HistoryOut)
def borrower_history(
    user_id: UserId,
    deni: DeniDep,
    limit: Annotated[int, Query(ge=1, le=LIST_PAGE_MAX, description="Loans per page.")] = 20,
    offset: Annotated[int, Query(ge=0, le=OFFSET_MAX)] = 0,
) -> HistoryOut:
    """Your history as borrower: every loan, newest first, with its lender, amounts, dates,
    state, what you repaid and whether on time; totals borrowed and repaid over all of them."""
    return HistoryOut.of(book.borrower_history(deni, user_id=user_id, limit=limit, offset=offset))
