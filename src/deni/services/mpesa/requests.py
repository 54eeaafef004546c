"""Money through M-PESA: STK pushes in, B2C payouts out, each one a request row settled once.

The rules (docs/design.md, "Principles"):
- A request is written with its outbox message (and, for a payout, its hold) in one
  transaction. The worker sends it later; only a callback or a query answer settles it.
- Before calling Daraja the request is marked SENDING and committed. A worker that dies after
  the call finds SENDING on its next try and treats the outcome as unknown: it never re-sends.
- A payout is never sent twice by a machine. Only a send that provably never left this
  machine (no connection, no token: the request was never written) is sent again, with a fresh
  OriginatorConversationID derived from the request id and the attempt number. A send whose
  outcome is unknown (timeout, reset, 5xx, garbage, rate limit, duplicate id) is asked about
  with Transaction Status; "not found" is no proof that it never arrived, so when the answers
  run out the payout waits, with its evidence, for an operator's decision
  (`decisions.py`).
- Callbacks are not signed. A B2C success result posts the hold at once (believing that money
  left is the safe direction); a failure result gives nothing back until Transaction Status
  confirms it: the money stays held.
- A success is never downgraded: a failure that arrives after a success is ignored. A success
  that arrives after a failure is money that really moved, and the ledger follows it.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import structlog

from deni.domain.errors import (
    Conflict,
    IdempotencyConflict,
    InvalidAmount,
    NotFound,
)
from deni.domain.ledger import (
    wallet_account_id,
)
from deni.domain.loans import LoanState
from deni.domain.money import CENTS_PER_SHILLING
from deni.domain.mpesa import (
    B2C_CENTS_MIN,
    STK_CENTS_MIN,
    EventKind,
    MpesaRequest,
    Purpose,
    RequestKind,
    RequestState,
    require_mpesa_amount,
)
from deni.domain.passkeys import MoneyAction
from deni.domain.phone import require_mpesa_number
from deni.domain.users import User, nairobi_today
from deni.ids import new_id
from deni.services import ledger
from deni.services.common import require_user
from deni.services.mpesa.journal import (
    DESC_CHARS_MAX,
    TOPIC_B2C_SEND,
    TOPIC_STK_PUSH,
    audit_request,
    enqueue_send,
    record_event,
)
from deni.services.mpesa.ports import (
    GatewayError,
    GatewayOutcome,
    MpesaDeps,
    MpesaPolicy,
    OutboxMessage,
)
from deni.services.mpesa.settle import fail_payout
from deni.services.outbox import Handler, RetryLater, enqueue
from deni.services.passkeys import PasskeyProof, money_binding, prove_member
from deni.services.ports import Deps, PinDeps, UnitOfWork

log = structlog.get_logger(__name__)
# What a member asks M-PESA for on their own number (refused off Safaricom, in plain words);
# Deni's own pushes (auto-repay on the due date) follow the loan, not a member's ask.
MEMBER_STK_PURPOSES = frozenset({Purpose.TOP_UP, Purpose.REPAYMENT})


def _earlier(
    uow: UnitOfWork,
    *,
    purpose: Purpose,
    user_id: str,
    amount_cents: object,
    amount_cents_min: int,
    idempotency_key: str,
) -> tuple[int, str, MpesaRequest | None]:
    """The checked amount, the request's key, and the request if this key already made one."""
    amount = require_mpesa_amount(amount_cents, amount_cents_min=amount_cents_min)
    key = f"{purpose.value}:{user_id}:{idempotency_key}"
    found = uow.mpesa_requests.find_by_key(key)
    if found is not None and (found.purpose, found.amount_cents) != (purpose, amount):
        raise IdempotencyConflict("This key was already used for another M-PESA request.")
    return amount, key, found


def _new_request(
    uow: UnitOfWork,
    *,
    kind: RequestKind,
    purpose: Purpose,
    user: User,
    amount_cents: int,
    key: str,
    now: datetime,
    loan_id: str | None = None,
) -> MpesaRequest:
    request = MpesaRequest(
        id=new_id(),
        kind=kind,
        purpose=purpose,
        user_id=user.id,
        loan_id=loan_id,
        phone=user.phone,
        amount_cents=amount_cents,
        idempotency_key=key,
        state=RequestState.QUEUED,
        created_at=now,
        updated_at=now,
    )
    return request


def request_stk(
    deps: Deps,
    *,
    user_id: str,
    amount_cents: object,
    idempotency_key: str,
    purpose: Purpose = Purpose.TOP_UP,
    loan_id: str | None = None,
) -> MpesaRequest:
    """A member asks M-PESA to take money from their phone (M-PESA asks for its own PIN on
    the handset). The worker sends the push."""
    with deps.uow() as uow:
        request = record_stk(
            uow,
            user_id=user_id,
            amount_cents=amount_cents,
            idempotency_key=idempotency_key,
            now=deps.clock.now(),
            purpose=purpose,
            loan_id=loan_id,
        )
        uow.commit()
    return request


def record_stk(
    uow: UnitOfWork,
    *,
    user_id: str,
    amount_cents: object,
    idempotency_key: str,
    now: datetime,
    purpose: Purpose = Purpose.TOP_UP,
    loan_id: str | None = None,
) -> MpesaRequest:
    """An STK push written in the caller's transaction; the worker sends it."""
    amount, key, earlier = _earlier(
        uow,
        purpose=purpose,
        user_id=user_id,
        amount_cents=amount_cents,
        amount_cents_min=STK_CENTS_MIN,
        idempotency_key=idempotency_key,
    )
    if earlier is not None:
        return earlier
    user = require_user(uow, user_id)
    if purpose in MEMBER_STK_PURPOSES:
        require_mpesa_number(user.phone)
    if loan_id is not None:
        _require_repayable(uow, user_id=user.id, loan_id=loan_id, amount_cents=amount, now=now)
    request = _new_request(
        uow,
        kind=RequestKind.STK,
        purpose=purpose,
        user=user,
        amount_cents=amount,
        key=key,
        now=now,
        loan_id=loan_id,
    )
    uow.mpesa_requests.add(request)
    enqueue(uow, topic=TOPIC_STK_PUSH, payload={"request_id": request.id}, unique_key=key, now=now)
    audit_request(uow, request, "request_stk", now)
    return request


def _require_repayable(
    uow: UnitOfWork, *, user_id: str, loan_id: str, amount_cents: int, now: datetime
) -> None:
    loan = uow.loans.get(loan_id)
    if loan is None or loan.borrower_id != user_id:
        raise NotFound("No such loan.", code="loan_not_found")
    if loan.state is not LoanState.ACTIVE:
        raise Conflict(f"This loan is {loan.state.value}.", code="loan_not_active")
    loan.accrue_penalty(nairobi_today(now))
    owed_cents = loan.owed().total_cents
    # Whole shillings at M-PESA: the last shilling may carry a few cents more than is owed.
    if amount_cents - owed_cents >= CENTS_PER_SHILLING:
        raise InvalidAmount("That is more than the loan still owes.", code="more_than_owed")


def withdraw(
    deps: PinDeps,
    *,
    user_id: str,
    pin: str | None = None,
    amount_cents: object,
    idempotency_key: str,
    channel: str,
    passkey: PasskeyProof | None = None,
) -> MpesaRequest:
    """A member sends wallet money to their M-PESA, proved with the PIN (a wrong PIN is
    committed, and counts, before the refusal) or a passkey bound to this amount. The worker
    sends the payout."""
    now = deps.clock.now()
    binding = ""
    if passkey is not None:
        amount = require_mpesa_amount(amount_cents, amount_cents_min=B2C_CENTS_MIN)
        binding = money_binding(MoneyAction.WITHDRAW, amount_cents=amount)
    with deps.uow() as uow:
        user = require_user(uow, user_id, lock=True)
        prove_member(
            uow,
            hasher=deps.hasher,
            user=user,
            pin=pin,
            passkey=passkey,
            binding=binding,
            now=now,
            channel=channel,
        )
        request = request_payout(
            uow,
            user_id=user.id,
            amount_cents=amount_cents,
            idempotency_key=idempotency_key,
            now=now,
        )
        uow.commit()
    return request


def request_payout(
    uow: UnitOfWork,
    *,
    user_id: str,
    amount_cents: object,
    idempotency_key: str,
    now: datetime,
    purpose: Purpose = Purpose.WITHDRAWAL,
    loan_id: str | None = None,
) -> MpesaRequest:
    """Hold the money and record a B2C payout (inside the caller's transaction). No PIN here:
    Deni's own payouts (a loan's principal, a lender's automatic payout) call this, and so
    does USSD once its hop has proved the PIN; a member's request goes through `withdraw`."""
    amount, key, earlier = _earlier(
        uow,
        purpose=purpose,
        user_id=user_id,
        amount_cents=amount_cents,
        amount_cents_min=B2C_CENTS_MIN,
        idempotency_key=idempotency_key,
    )
    if earlier is not None:
        return earlier
    user = require_user(uow, user_id)
    user.require_money_may_leave(now)
    if purpose is Purpose.WITHDRAWAL:
        require_mpesa_number(user.phone)
    request = _new_request(
        uow,
        kind=RequestKind.B2C,
        purpose=purpose,
        user=user,
        amount_cents=amount,
        key=key,
        now=now,
        loan_id=loan_id,
    )
    hold = ledger.place_hold(
        uow,
        wallet_id=wallet_account_id(user.id),
        amount_cents=amount,
        idempotency_key=f"b2c:{request.id}",
        now=now,
        loan=_disbursed_loan(uow, purpose, loan_id),
    )
    request.hold_id = hold.id
    uow.mpesa_requests.add(request)
    enqueue_send(uow, request, now=now)
    record_event(uow, request, EventKind.QUEUED, f"hold {hold.id}", now=now)
    audit_request(uow, request, "request_payout", now)
    return request


def _disbursed_loan(
    uow: UnitOfWork, purpose: Purpose, loan_id: str | None
) -> tuple[str, str] | None:
    """The loan (id, code) whose principal this payout sends to the borrower's M-PESA."""
    if purpose is not Purpose.DISBURSEMENT or loan_id is None:
        return None
    loan = uow.loans.get(loan_id)
    assert loan is not None
    return loan.id, loan.code


class MpesaOutbox:
    """The `MpesaRequests` port for channels (USSD): records in the caller's transaction."""

    def request_top_up(
        self,
        uow: UnitOfWork,
        *,
        user_id: str,
        amount_cents: int,
        idempotency_key: str,
        now: datetime,
    ) -> None:
        record_stk(
            uow,
            user_id=user_id,
            amount_cents=amount_cents,
            idempotency_key=idempotency_key,
            now=now,
        )

    def request_withdrawal(
        self,
        uow: UnitOfWork,
        *,
        user_id: str,
        amount_cents: int,
        idempotency_key: str,
        now: datetime,
    ) -> None:
        request_payout(
            uow,
            user_id=user_id,
            amount_cents=amount_cents,
            idempotency_key=idempotency_key,
            now=now,
        )

    def request_stk_repayment(
        self,
        uow: UnitOfWork,
        *,
        user_id: str,
        loan_id: str,
        amount_cents: int,
        idempotency_key: str,
        now: datetime,
    ) -> None:
        record_stk(
            uow,
            user_id=user_id,
            amount_cents=amount_cents,
            idempotency_key=idempotency_key,
            now=now,
            purpose=Purpose.REPAYMENT,
            loan_id=loan_id,
        )


# --- Sending (the worker's outbox handlers) -------------------------------------------------


def handlers(deps: MpesaDeps) -> dict[str, Handler]:
    return {
        TOPIC_STK_PUSH: lambda message: send_stk(deps, _request_id(message)),
        TOPIC_B2C_SEND: lambda message: send_b2c(deps, _request_id(message)),
    }


def _request_id(message: OutboxMessage) -> str:
    payload = json.loads(message.payload)
    assert isinstance(payload, dict)
    request_id = payload["request_id"]
    assert isinstance(request_id, str)
    return request_id


def begin_send(deps: MpesaDeps, request_id: str) -> MpesaRequest | None:
    """Mark the request SENDING (committed) before Daraja hears of it; None: nothing to send."""
    policy, now = deps.policy, deps.clock.now()
    with deps.uow() as uow:
        request = uow.mpesa_requests.lock(request_id)
        assert request is not None, request_id
        if request.state is RequestState.SENDING:
            # A worker died between marking and recording Daraja's answer: maybe sent.
            wait_s = policy.status_after_s if request.kind is not RequestKind.STK else 0.0
            mark_unknown(request, STOPPED_MID_SEND, now=now, wait_s=wait_s)
            record_event(uow, request, EventKind.SEND_ERROR, STOPPED_MID_SEND, now=now)
            uow.mpesa_requests.save(request, now)
            uow.commit()
            return None
        if request.state is not RequestState.QUEUED:
            return None  # sent or settled already: this message is a repeat
        request.state = RequestState.SENDING
        request.attempt += 1
        request.acknowledged = False
        if request.kind is not RequestKind.STK:  # a payout or a reversal
            request.originator_conversation_id = originator_id(request.id, request.attempt)
            request.not_found_answers, request.status_checks = 0, 0
            request.claimed_failure_code, request.claimed_failure_desc = None, ""
            detail = f"OriginatorConversationID {request.originator_conversation_id}"
            record_event(uow, request, EventKind.SEND, detail, now=now)
        uow.mpesa_requests.save(request, now)
        uow.commit()
    return request


STOPPED_MID_SEND = "the worker stopped mid-send: maybe sent"


def originator_id(request_id: str, attempt: int) -> str:
    """Fresh per attempt and derived, never random: a re-run computes the same id."""
    assert attempt >= 1
    return f"{request_id}-{attempt}"


def request_of_originator(originator_conversation_id: str) -> tuple[str, int] | None:
    request_id, _, attempt = originator_conversation_id.rpartition("-")
    if not request_id or not attempt.isdigit():
        return None
    return request_id, int(attempt)


def mark_unknown(request: MpesaRequest, desc: str, *, now: datetime, wait_s: float) -> None:
    request.state = RequestState.UNKNOWN
    request.result_desc = desc[:DESC_CHARS_MAX]
    request.next_check_at = now + timedelta(seconds=wait_s)


def stk_account_reference(policy: MpesaPolicy, uow: UnitOfWork, request: MpesaRequest) -> str:
    """The account number a push carries: its loan's code, or the top-up reference."""
    if request.loan_id is not None:
        loan = uow.loans.get(request.loan_id)
        if loan is not None:
            return loan.code
    return policy.stk_account_reference


def compact_reference(reference: str) -> str:
    """An account number as M-PESA users type it, read one way: no spaces, upper case."""
    return "".join(reference.split()).upper()


def send_stk(deps: MpesaDeps, request_id: str) -> None:
    request = begin_send(deps, request_id)
    if request is None:
        return
    reference = deps.policy.stk_account_reference
    if request.loan_id is not None:  # a top-up needs no read
        with deps.uow.read_only() as uow:
            reference = stk_account_reference(deps.policy, uow, request)
    try:
        ack = deps.gateway.stk_push(
            phone=request.phone,
            amount_cents=request.amount_cents,
            account_reference=reference,
            description="Deni loan" if request.loan_id else "Deni top up",
        )
    except GatewayError as error:
        _stk_not_accepted(deps, request.id, error)
        return
    now = deps.clock.now()
    with deps.uow() as uow:
        stored = uow.mpesa_requests.lock(request.id)
        assert stored is not None
        stored.checkout_request_id = ack.checkout_request_id
        stored.acknowledged = True
        if stored.state is RequestState.SENDING:
            stored.state = RequestState.SENT
            stored.next_check_at = now + timedelta(seconds=deps.policy.stk_query_after_s)
        uow.mpesa_requests.save(stored, now)
        uow.commit()


def _stk_not_accepted(deps: MpesaDeps, request_id: str, error: GatewayError) -> None:
    now = deps.clock.now()
    with deps.uow() as uow:
        request = uow.mpesa_requests.lock(request_id)
        assert request is not None
        request.result_code, request.result_desc = error.code[:16], error.message[:DESC_CHARS_MAX]
        if error.outcome in (GatewayOutcome.NOT_SENT, GatewayOutcome.BUSY):
            request.state = RequestState.QUEUED
        elif error.outcome is GatewayOutcome.REFUSED:
            request.state = RequestState.FAILED
            request.next_check_at = None
        else:
            # No CheckoutRequestID to ask about: if the customer pays anyway, the callback
            # names an id Deni never learnt and is matched back by phone and amount.
            mark_unknown(request, error.message, now=now, wait_s=deps.policy.stk_query_after_s)
        uow.mpesa_requests.save(request, now)
        uow.commit()
    if error.outcome in (GatewayOutcome.NOT_SENT, GatewayOutcome.BUSY):
        raise RetryLater(error.message)


def send_b2c(deps: MpesaDeps, request_id: str) -> None:
    request = begin_send(deps, request_id)
    if request is None:
        return
    assert request.originator_conversation_id is not None
    try:
        ack = deps.gateway.b2c_payment(
            phone=request.phone,
            amount_cents=request.amount_cents,
            originator_conversation_id=request.originator_conversation_id,
            remarks=_remarks(request),
        )
    except GatewayError as error:
        not_accepted(deps, request.id, error)
        return
    record_accepted(
        deps,
        request.id,
        originator_conversation_id=ack.originator_conversation_id,
        conversation_id=ack.conversation_id,
    )


def record_accepted(
    deps: MpesaDeps, request_id: str, *, originator_conversation_id: str, conversation_id: str
) -> None:
    """M-PESA took an asynchronous request (a payout, a reversal): its result comes by
    callback, or Transaction Status asks after `status_after_s`. An answer to an earlier
    attempt (another OriginatorConversationID) changes nothing."""
    now = deps.clock.now()
    with deps.uow() as uow:
        stored = uow.mpesa_requests.lock(request_id)
        assert stored is not None
        if stored.originator_conversation_id == originator_conversation_id:
            stored.conversation_id = conversation_id
            stored.acknowledged = True
            if stored.state is RequestState.SENDING:
                stored.state = RequestState.SENT
                stored.next_check_at = now + timedelta(seconds=deps.policy.status_after_s)
            uow.mpesa_requests.save(stored, now)
            detail = f"accepted, ConversationID {conversation_id}"
            record_event(uow, stored, EventKind.ACCEPTED, detail, now=now)
        uow.commit()


def _remarks(request: MpesaRequest) -> str:
    return {
        Purpose.DISBURSEMENT: "Deni loan disbursement",
        Purpose.AUTO_PAYOUT: "Deni loan repayment payout",
    }.get(request.purpose, "Deni wallet withdrawal")


def not_accepted(deps: MpesaDeps, request_id: str, error: GatewayError) -> None:
    """An asynchronous request (a payout, a reversal) M-PESA did not take: sent again only
    when it never left the machine; failed (the money stays the member's) when M-PESA refused
    it; else maybe sent, so Transaction Status asks first, never a blind second send."""
    now = deps.clock.now()
    with deps.uow() as uow:
        request = uow.mpesa_requests.lock(request_id)
        assert request is not None
        request.result_code, request.result_desc = error.code[:16], error.message[:DESC_CHARS_MAX]
        detail = f"{error.outcome.value}: {error.message}"
        record_event(uow, request, EventKind.SEND_ERROR, detail, now=now)
        if error.outcome is GatewayOutcome.NOT_SENT:
            # The request was never written (no connection, no token): nothing reached
            # Safaricom, so the outbox sends it again, as a new attempt with a new id.
            request.state = RequestState.QUEUED
            uow.mpesa_requests.save(request, now)
        elif error.outcome is GatewayOutcome.REFUSED:
            fail_payout(uow, request, error.message, now=now)
        else:
            # Maybe sent (and a rate limit may have been processed anyway): ask first.
            mark_unknown(request, error.message, now=now, wait_s=deps.policy.status_after_s)
            uow.mpesa_requests.save(request, now)
        uow.commit()
    if error.outcome is GatewayOutcome.NOT_SENT:
        raise RetryLater(error.message)
