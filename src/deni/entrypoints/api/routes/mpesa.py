"""M-PESA for the signed-in user: top up by STK push, withdraw by B2C, repay a loan by STK push,
the payout preferences, and the requests with their state and receipts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, StrictBool, StrictStr

from deni.bootstrap import Deni
from deni.domain.errors import Conflict
from deni.domain.mpesa import MpesaRequest, Purpose
from deni.entrypoints.api.contract import refusals
from deni.entrypoints.api.deps import DeniDep, IdempotencyKey, UserId
from deni.entrypoints.api.idempotency import run_idempotent
from deni.entrypoints.api.json_body import TextJsonRoute
from deni.entrypoints.api.routes.loans import LoanId
from deni.entrypoints.api.schemas import PinnedAmountIn, RepayIn, Strict
from deni.services.mpesa import preferences as mpesa_preferences
from deni.services.mpesa import requests
from deni.services.ports import LIST_PAGE_MAX, UnitOfWorkFactory

router = APIRouter(tags=["mpesa"], route_class=TextJsonRoute)


class MpesaRequestOut(BaseModel):
    id: str
    purpose: str
    state: str
    amount_cents: int
    loan_id: str | None
    receipt: str | None
    result_code: str
    result_desc: str
    created_at: datetime

    @classmethod
    def of(cls, request: MpesaRequest) -> MpesaRequestOut:
        return cls(
            id=request.id,
            purpose=request.purpose.value,
            state=request.state.value,
            amount_cents=request.amount_cents,
            loan_id=request.loan_id,
            receipt=request.receipt,
            result_code=request.result_code,
            result_desc=request.result_desc,
            created_at=request.created_at,
        )


class MpesaRequestListOut(BaseModel):
    requests: list[MpesaRequestOut]


class PreferencesIn(Strict):
    disburse_to_mpesa: StrictBool | None = None
    auto_payout: StrictBool | None = None
    pin: StrictStr = Field(description="Your PIN: these choices send money to M-PESA.")


class PreferencesOut(BaseModel):
    disburse_to_mpesa: bool
    auto_payout: bool


def _require_mpesa(deni: Deni) -> None:
    if deni.mpesa is None:
        raise Conflict("M-PESA is not switched on here.", code="mpesa_off")


def _record(
    deni: Deni,
    uows: UnitOfWorkFactory,
    user_id: str,
    key: str,
    amount_cents: int,
    purpose: Purpose,
    loan_id: str | None,
) -> MpesaRequestOut:
    """An STK push: M-PESA asks the member for their M-PESA PIN on the phone."""
    _require_mpesa(deni)
    request = requests.request_stk(
        deni.within(uows),
        user_id=user_id,
        amount_cents=amount_cents,
        idempotency_key=key,
        purpose=purpose,
        loan_id=loan_id,
    )
    return MpesaRequestOut.of(request)


def _withdraw(
    deni: Deni, uows: UnitOfWorkFactory, user_id: str, key: str, body: PinnedAmountIn
) -> MpesaRequestOut:
    _require_mpesa(deni)
    request = requests.withdraw(
        deni.within(uows),
        user_id=user_id,
        pin=body.pin,
        amount_cents=body.amount_cents,
        idempotency_key=key,
        channel="api",
    )
    return MpesaRequestOut.of(request)


@router.post(
    "/mpesa/top-ups", status_code=202, response_model=MpesaRequestOut, responses=refusals(409)
)
def top_up(body: RepayIn, user_id: UserId, deni: DeniDep, key: IdempotencyKey) -> object:
    """Ask M-PESA to push a PIN prompt to your phone; the wallet grows once you pay."""
    return run_idempotent(
        deni,
        scope=user_id,
        key=key,
        route="mpesa_top_up",
        body=body,
        action=lambda uows: (
            202,
            _record(deni, uows, user_id, key, body.amount_cents, Purpose.TOP_UP, None),
        ),
    )


@router.post(
    "/mpesa/withdrawals",
    status_code=202,
    response_model=MpesaRequestOut,
    responses=refusals(409, 423),
)
def withdraw(body: PinnedAmountIn, user_id: UserId, deni: DeniDep, key: IdempotencyKey) -> object:
    """Send wallet money to your M-PESA, with your PIN. It is held at once, and returns if the
    payout fails."""
    return run_idempotent(
        deni,
        scope=user_id,
        key=key,
        route="mpesa_withdraw",
        body=body.without_pin(),
        action=lambda uows: (202, _withdraw(deni, uows, user_id, key, body)),
    )


@router.post(
    "/loans/{loan_id}/mpesa-repayments",
    status_code=202,
    response_model=MpesaRequestOut,
    responses=refusals(409),
)
def repay_by_stk(
    loan_id: LoanId, body: RepayIn, user_id: UserId, deni: DeniDep, key: IdempotencyKey
) -> object:
    """Repay (any whole-shilling amount up to what is owed) by a PIN prompt on your phone."""
    return run_idempotent(
        deni,
        scope=user_id,
        key=key,
        route=f"mpesa_repay:{loan_id}",
        body=body,
        action=lambda uows: (
            202,
            _record(deni, uows, user_id, key, body.amount_cents, Purpose.REPAYMENT, loan_id),
        ),
    )


@router.get("/mpesa/requests", response_model=MpesaRequestListOut)
def list_requests(
    user_id: UserId, deni: DeniDep, limit: Annotated[int, Query(ge=1, le=LIST_PAGE_MAX)] = 20
) -> MpesaRequestListOut:
    """Your M-PESA requests, newest first, with their state and M-PESA receipts."""
    with deni.uow.read_only() as uow:
        found = uow.mpesa_requests.in_states(states=[], limit=limit, user_id=user_id)
    return MpesaRequestListOut(requests=[MpesaRequestOut.of(r) for r in found])


@router.get("/mpesa/preferences", response_model=PreferencesOut)
def preferences(user_id: UserId, deni: DeniDep) -> PreferencesOut:
    """Loans pay out to your M-PESA (default), or stay in the wallet; lenders' auto-payout."""
    with deni.uow.read_only() as uow:
        found = uow.mpesa_preferences.get(user_id)
    return PreferencesOut(disburse_to_mpesa=found.disburse_to_mpesa, auto_payout=found.auto_payout)


@router.put("/mpesa/preferences", response_model=PreferencesOut)
def set_preferences(body: PreferencesIn, user_id: UserId, deni: DeniDep) -> PreferencesOut:
    """Change where your money goes on its own, with your PIN; what you leave out stays."""
    disburse, auto_payout = mpesa_preferences.set_preferences(
        deni,
        user_id=user_id,
        pin=body.pin,
        disburse_to_mpesa=body.disburse_to_mpesa,
        auto_payout=body.auto_payout,
    )
    return PreferencesOut(disburse_to_mpesa=disburse, auto_payout=auto_payout)
