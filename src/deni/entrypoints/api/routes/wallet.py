"""The signed-in user's wallet: balance and statement."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from deni.entrypoints.api.deps import DeniDep, UserId
from deni.entrypoints.api.json_body import TextJsonRoute
from deni.entrypoints.api.schemas import (
    ArrivingOut,
    BalanceOut,
    StatementLineOut,
    StatementOut,
)
from deni.services import ledger, queries
from deni.services.mpesa import claims
from deni.services.ports import STATEMENT_PAGE_MAX

router = APIRouter(tags=["wallet"], route_class=TextJsonRoute)
# Posting ids are 64-bit; a larger cursor would overflow the database driver (a 500).
CURSOR_MAX = 2**63 - 1


@router.get("/wallet", response_model=BalanceOut)
def balance(user_id: UserId, deni: DeniDep) -> BalanceOut:
    """What Deni holds for you, in cents and as people read it, and what M-PESA has yet to
    confirm (`arriving_cents`: not spendable until it does)."""
    with deni.uow.read_only() as uow:
        balance_cents = ledger.wallet_balance_cents(uow, user_id=user_id)
        arriving = claims.arriving(uow, user_id=user_id)
    return BalanceOut.of(balance_cents, sum(claim.amount_cents for claim in arriving))


@router.get("/wallet/statement", response_model=StatementOut)
def statement(
    user_id: UserId,
    deni: DeniDep,
    cursor: Annotated[
        int | None,
        Query(ge=1, le=CURSOR_MAX, description="next_cursor of the page before."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=STATEMENT_PAGE_MAX)] = 20,
) -> StatementOut:
    """Every movement of your wallet, newest first, with the balance after each; and money
    on its way that M-PESA has yet to confirm (`arriving`, not in the balance)."""
    page = queries.wallet_statement(deni, user_id=user_id, before=cursor, limit=limit)
    with deni.uow.read_only() as uow:
        arriving = claims.arriving(uow, user_id=user_id)
    return StatementOut(
        balance_cents=page.balance_cents,
        lines=[StatementLineOut.of(line) for line in page.lines],
        next_cursor=page.next_cursor,
        arriving=[
            ArrivingOut(receipt=c.receipt, amount_cents=c.amount_cents, since=c.claimed_at)
            for c in arriving
        ],
    )
