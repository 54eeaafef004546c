"""Loans: quote, request, list, detail, and what borrower and lender may do to one."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query

from deni.domain.errors import Conflict, NotFound, ValidationFailed
from deni.domain.loans import STATE_GROUPS, Loan, LoanState
from deni.entrypoints.api.contract import refusals
from deni.entrypoints.api.deps import DeniDep, IdempotencyKey, UserId
from deni.entrypoints.api.idempotency import run_idempotent
from deni.entrypoints.api.json_body import TextJsonRoute
from deni.entrypoints.api.routes.passkeys import proof_of
from deni.entrypoints.api.schemas import (
    ApproveIn,
    EmptyIn,
    LoanDetailOut,
    LoanListOut,
    LoanOut,
    LoanRequestIn,
    MessageOut,
    PinnedAmountIn,
    QuoteOut,
    RepayOut,
    TermsIn,
    WriteOffIn,
)
from deni.services import limits, loans, queries, reminders
from deni.services.ports import LIST_PAGE_MAX, UnitOfWorkFactory

router = APIRouter(prefix="/loans", tags=["loans"], route_class=TextJsonRoute)
LOAN_ID_CHARS_MAX = 64


def loan_id_param(
    loan_id: Annotated[str, Path(json_schema_extra={"format": "uuid"})], user_id: UserId
) -> str:
    """The {loan_id} of the path. One that cannot be an id is simply a loan that is not there.

    A NUL character would otherwise reach PostgreSQL, which refuses it (a 500). Depending on
    the signed-in user (resolved once per request) keeps "log in first" ahead of "not found".
    """
    if len(loan_id) > LOAN_ID_CHARS_MAX or "\x00" in loan_id:
        raise NotFound("No such loan.", code="loan_not_found")
    return loan_id


LoanId = Annotated[str, Depends(loan_id_param)]


def _view(deni: DeniDep, uows: UnitOfWorkFactory, loan: Loan) -> LoanOut:
    """The answer to a command: the loan it returned, read inside the command's transaction."""
    return LoanOut.of(queries.loan_view(deni.within(uows), loan=loan))


@router.post("/quote", response_model=QuoteOut)
def quote(body: TermsIn, user_id: UserId, deni: DeniDep) -> QuoteOut:
    """The total to repay and the due date, before you ask anyone (nothing is saved)."""
    offer = loans.quote_loan(
        clock=deni.clock,
        principal_cents=body.principal_cents,
        fee_cents=body.fee_cents,
        penalty_daily_cents=body.penalty_daily_cents,
        due_date=body.due_date,
        term_days=body.term_days,
    )
    return QuoteOut(
        principal_cents=offer.principal_cents,
        fee_cents=offer.fee_cents,
        total_cents=offer.total_cents,
        due_date=offer.due_date,
        term_days=offer.term_days,
        penalty_daily_cents=offer.penalty_daily_cents,
        penalty_max_cents=offer.penalty_max_cents,
        summary=offer.summary(),
    )


@router.post("", status_code=201, response_model=LoanOut)
def request_loan(
    body: LoanRequestIn, user_id: UserId, deni: DeniDep, key: IdempotencyKey
) -> object:
    """Ask a lender (by phone number) for a loan on the quoted terms."""
    # Whether the number is on Deni shows in the answer: counted like USSD's lookups, before
    # the transaction opens (its write lock would hold up the counters' own write on SQLite).
    limits.limit_lender_lookup(deni.limit_counters, member_id=user_id, now=deni.clock.now())

    def action(uows: UnitOfWorkFactory) -> tuple[int, LoanOut]:
        loan = loans.request_loan(
            deni.within(uows),
            borrower_id=user_id,
            lender_phone=body.lender_phone,
            principal_cents=body.principal_cents,
            fee_cents=body.fee_cents,
            penalty_daily_cents=body.penalty_daily_cents,
            due_date=body.due_date,
            term_days=body.term_days,
            loan_id=None if body.loan_id is None else str(body.loan_id),
        )
        return 201, _view(deni, uows, loan)

    return run_idempotent(
        deni, scope=user_id, key=key, route="request_loan", body=body, action=action
    )


@router.get("", response_model=LoanListOut)
def list_loans(
    user_id: UserId,
    deni: DeniDep,
    role: Literal["borrower", "lender", "any"] = "any",
    state: Annotated[
        list[str] | None,
        Query(
            description="Repeat to ask for several. `pending`: requests still waiting for the "
            'lender (USSD\'s "my requests"); `past`: loans that are over (repaid, written '
            "off, declined, cancelled, expired)."
        ),
    ] = None,
    overdue: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=LIST_PAGE_MAX)] = 20,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> LoanListOut:
    """Loans you borrowed, lent, or both; newest first. `overdue=true` filters active loans.
    `next_offset` asks for the next page (null on the last)."""
    views = queries.list_loans(
        deni,
        user_id=user_id,
        role=role,
        states=_states(state or []),
        overdue=overdue,
        limit=limit + 1,
        offset=offset,
    )
    more = len(views) > limit
    return LoanListOut(
        loans=[LoanOut.of(v) for v in views[:limit]],
        next_offset=offset + limit if more else None,
    )


def _states(names: list[str]) -> list[LoanState]:
    known = {s.value: frozenset({s}) for s in LoanState} | STATE_GROUPS
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValidationFailed(
            f"Unknown state {unknown[0]!r}; use one of {', '.join(known)}.", code="invalid_state"
        )
    chosen = {state for name in names for state in known[name]}
    return sorted(chosen, key=lambda s: s.value)


@router.get("/{loan_id}", response_model=LoanDetailOut)
def loan_detail(loan_id: LoanId, user_id: UserId, deni: DeniDep) -> LoanDetailOut:
    """One loan with what is owed today and every repayment."""
    detail = queries.loan_detail(deni, user_id=user_id, loan_id=loan_id)
    return LoanDetailOut.of_detail(detail)


@router.post("/{loan_id}/approve", response_model=LoanOut, responses=refusals(403, 409))
def approve(
    loan_id: LoanId, body: ApproveIn, user_id: UserId, deni: DeniDep, key: IdempotencyKey
) -> object:
    """Lender: approve with your PIN, or a passkey (`passkey`, its challenge from POST
    /me/passkeys/approval). The money moves now, or when your wallet holds it. Send the
    `version` you showed as `base_version`: terms changed since are refused."""

    def action(uows: UnitOfWorkFactory) -> tuple[int, LoanOut]:
        loan = loans.approve_loan(
            deni.within(uows),
            lender_id=user_id,
            loan_id=loan_id,
            pin=body.pin,
            passkey=proof_of(deni, body.passkey),
            base_version=body.base_version,
        )
        return 200, _view(deni, uows, loan)

    return run_idempotent(
        deni, scope=user_id, key=key, route=f"approve:{loan_id}", body=body, action=action
    )


@router.post("/{loan_id}/decline", response_model=LoanOut, responses=refusals(403, 409))
def decline(
    loan_id: LoanId,
    user_id: UserId,
    deni: DeniDep,
    key: IdempotencyKey,
    body: EmptyIn | None = None,
) -> object:
    """Lender: say no to a request."""
    return _close(deni, user_id, loan_id, key, body, command="decline")


@router.post("/{loan_id}/cancel", response_model=LoanOut, responses=refusals(403, 409))
def cancel(
    loan_id: LoanId,
    user_id: UserId,
    deni: DeniDep,
    key: IdempotencyKey,
    body: EmptyIn | None = None,
) -> object:
    """Borrower: withdraw your request before any money moves."""
    return _close(deni, user_id, loan_id, key, body, command="cancel")


def _close(
    deni: DeniDep,
    user_id: str,
    loan_id: str,
    key: str,
    body: EmptyIn | None,
    *,
    command: Literal["decline", "cancel"],
) -> object:
    def action(uows: UnitOfWorkFactory) -> tuple[int, LoanOut]:
        if command == "decline":
            loan = loans.decline_loan(deni.within(uows), lender_id=user_id, loan_id=loan_id)
        else:
            loan = loans.cancel_loan(deni.within(uows), borrower_id=user_id, loan_id=loan_id)
        return 200, _view(deni, uows, loan)

    # No body and an empty object are the same request (the same Idempotency-Key replays).
    return run_idempotent(
        deni,
        scope=user_id,
        key=key,
        route=f"{command}:{loan_id}",
        body=body or EmptyIn(),
        action=action,
    )


@router.post("/{loan_id}/repay", response_model=RepayOut, responses=refusals(403, 409))
def repay(
    loan_id: LoanId, body: PinnedAmountIn, user_id: UserId, deni: DeniDep, key: IdempotencyKey
) -> object:
    """Borrower: pay from your wallet, with your PIN. Penalty first, then fee, then principal."""

    def action(uows: UnitOfWorkFactory) -> tuple[int, RepayOut]:
        result = loans.repay_loan(
            deni.within(uows),
            borrower_id=user_id,
            loan_id=loan_id,
            amount_cents=body.amount_cents,
            pin=body.pin,
            passkey=proof_of(deni, body.passkey),
            idempotency_key=key,
        )
        allocation = result.allocation
        return 200, RepayOut(
            loan=_view(deni, uows, result.loan),
            applied_cents=allocation.applied_cents,
            penalty_cents=allocation.penalty_cents,
            fee_cents=allocation.fee_cents,
            principal_cents=allocation.principal_cents,
            excess_cents=body.amount_cents - allocation.applied_cents,
        )

    return run_idempotent(
        deni,
        scope=user_id,
        key=key,
        route=f"repay:{loan_id}",
        body=body.without_pin(),
        action=action,
    )


@router.post("/{loan_id}/remind", response_model=MessageOut, responses=refusals(403, 409))
def remind(
    loan_id: LoanId,
    user_id: UserId,
    deni: DeniDep,
    key: IdempotencyKey,
    body: EmptyIn | None = None,
) -> object:
    """Lender: remind the borrower of an active loan by SMS, at most once a day per loan."""

    def action(uows: UnitOfWorkFactory) -> tuple[int, MessageOut]:
        sent = reminders.remind_borrower(
            deni.within(uows), lender_id=user_id, loan_id=loan_id, channel="api"
        )
        if not sent:
            raise Conflict("You reminded them today already.", code="already_reminded")
        return 200, MessageOut(message="The borrower is reminded by SMS.")

    return run_idempotent(
        deni, scope=user_id, key=key, route=f"remind:{loan_id}", body=body, action=action
    )


@router.post("/{loan_id}/write-off", response_model=LoanOut, responses=refusals(403, 409))
def write_off(
    loan_id: LoanId, body: WriteOffIn, user_id: UserId, deni: DeniDep, key: IdempotencyKey
) -> object:
    """Lender: forgive what is still owed, with your PIN or a passkey. It cannot be undone."""

    def action(uows: UnitOfWorkFactory) -> tuple[int, LoanOut]:
        loan = loans.write_off_loan(
            deni.within(uows),
            lender_id=user_id,
            loan_id=loan_id,
            pin=body.pin,
            passkey=proof_of(deni, body.passkey),
        )
        return 200, _view(deni, uows, loan)

    return run_idempotent(
        deni, scope=user_id, key=key, route=f"write_off:{loan_id}", body=body, action=action
    )
