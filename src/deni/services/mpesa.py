"""Money through M-PESA: STK pushes in, B2C payouts out, each one a request row settled once.

The rules (DESIGN.md sections 1 and 5):
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
  (`operator_decisions.py`).
- Callbacks are not signed. A B2C success result posts the hold at once (believing that money
  left is the safe direction); a failure result gives nothing back until Transaction Status
  confirms it: the money stays held.
- A success is never downgraded: a failure that arrives after a success is ignored. A success
  that arrives after a failure is money that really moved, and the ledger follows it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import structlog

from deni.domain.errors import (
    Conflict,
    Forbidden,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidAmount,
    NotFound,
)
from deni.domain.ledger import (
    MPESA_RECEIPT_CAUSE,
    EntryCode,
    EntryDraft,
    HoldState,
    PlatformAccount,
    movement,
    wallet_account_id,
)
from deni.domain.loans import LoanState
from deni.domain.money import CENTS_PER_SHILLING
from deni.domain.users import User, nairobi_today
from deni.services import ledger, loans, payments
from deni.services.common import SYSTEM_ACTOR, audit, new_id, notify, require_user
from deni.services.mpesa_ports import (
    OPEN_STATES,
    EventKind,
    GatewayError,
    GatewayOutcome,
    MpesaPolicy,
    MpesaPreferences,
    MpesaRequest,
    OutboxMessage,
    Purpose,
    RequestEvent,
    RequestKind,
    RequestState,
    SuspensePayment,
    SuspenseState,
)
from deni.services.outbox import Handler, RetryLater, enqueue
from deni.services.ports import Clock, MpesaGateway, PinHasher, UnitOfWork, UnitOfWorkFactory
from deni.services.users import check_pin

log = structlog.get_logger(__name__)

TOPIC_STK_PUSH = "stk_push"
TOPIC_B2C_SEND = "b2c_send"
STK_MIN_CENTS = 1 * CENTS_PER_SHILLING
B2C_MIN_CENTS = 10 * CENTS_PER_SHILLING
MPESA_MAX_CENTS = 250_000 * CENTS_PER_SHILLING
DESC_CHARS_MAX = 200
SUCCESS = "0"


@dataclass(frozen=True, slots=True)
class MpesaDeps:
    """What the M-PESA use cases run on (bootstrap builds it)."""

    uow: UnitOfWorkFactory
    clock: Clock
    gateway: MpesaGateway
    policy: MpesaPolicy


# --- Asking for money to move ---------------------------------------------------------------


def _require_mpesa_amount(amount_cents: object, *, minimum_cents: int) -> int:
    if isinstance(amount_cents, bool) or not isinstance(amount_cents, int):
        raise InvalidAmount("Amounts are whole numbers of cents.")
    if amount_cents % CENTS_PER_SHILLING != 0:
        raise InvalidAmount("M-PESA moves whole shillings: the amount must end in 00 cents.")
    if not minimum_cents <= amount_cents <= MPESA_MAX_CENTS:
        raise InvalidAmount(
            f"M-PESA amounts are KES {minimum_cents // CENTS_PER_SHILLING} "
            f"to KES {MPESA_MAX_CENTS // CENTS_PER_SHILLING:,}."
        )
    return amount_cents


def _earlier(
    uow: UnitOfWork,
    *,
    purpose: Purpose,
    user_id: str,
    amount_cents: object,
    minimum_cents: int,
    idempotency_key: str,
) -> tuple[int, str, MpesaRequest | None]:
    """The checked amount, the request's key, and the request if this key already made one."""
    amount = _require_mpesa_amount(amount_cents, minimum_cents=minimum_cents)
    key = f"{purpose.value}:{user_id}:{idempotency_key}"
    found = uow.mpesa.find_request(key)
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
    uow: UnitOfWork,
    *,
    user_id: str,
    amount_cents: object,
    idempotency_key: str,
    now: datetime,
    purpose: Purpose = Purpose.TOP_UP,
    loan_id: str | None = None,
) -> MpesaRequest:
    """Record an STK push (inside the caller's transaction); the worker sends it."""
    amount, key, earlier = _earlier(
        uow,
        purpose=purpose,
        user_id=user_id,
        amount_cents=amount_cents,
        minimum_cents=STK_MIN_CENTS,
        idempotency_key=idempotency_key,
    )
    if earlier is not None:
        return earlier
    user = require_user(uow, user_id)
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
    uow.mpesa.add_request(request)
    enqueue(uow, topic=TOPIC_STK_PUSH, payload={"request_id": request.id}, unique_key=key, now=now)
    _audit(uow, request, "request_stk", now)
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
    uow: UnitOfWork,
    *,
    hasher: PinHasher,
    user_id: str,
    pin: str,
    amount_cents: object,
    idempotency_key: str,
    now: datetime,
    channel: str,
) -> MpesaRequest:
    """A member sends wallet money to their M-PESA, proved with the PIN (inside the caller's
    transaction: a wrong PIN is committed, and counts, before the refusal)."""
    user = require_user(uow, user_id, lock=True)
    check_pin(uow, hasher=hasher, user=user, pin=pin, now=now, channel=channel)
    return request_payout(
        uow, user_id=user.id, amount_cents=amount_cents, idempotency_key=idempotency_key, now=now
    )


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
        minimum_cents=B2C_MIN_CENTS,
        idempotency_key=idempotency_key,
    )
    if earlier is not None:
        return earlier
    user = require_user(uow, user_id)
    user.require_money_may_leave(now)
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
    )
    request.hold_id = hold.id
    uow.mpesa.add_request(request)
    _enqueue_send(uow, request, now=now)
    record_event(uow, request, EventKind.QUEUED, f"hold {hold.id}", now=now)
    _audit(uow, request, "request_payout", now)
    return request


def _enqueue_send(uow: UnitOfWork, request: MpesaRequest, *, now: datetime) -> None:
    enqueue(
        uow,
        topic=TOPIC_B2C_SEND,
        payload={"request_id": request.id},
        unique_key=f"b2c:{request.id}:{request.attempt + 1}",
        now=now,
    )


def record_event(
    uow: UnitOfWork,
    request: MpesaRequest,
    kind: EventKind,
    detail: str,
    *,
    now: datetime,
    actor: str = "",
) -> None:
    """One line of a payout's evidence (what was sent, what came back), for the operator who
    may have to decide it. Payouts only: pushes settle themselves."""
    if request.kind is RequestKind.B2C:
        event = RequestEvent(request.id, request.attempt, kind, detail, now, actor)
        uow.mpesa.add_events([event])


def _audit(uow: UnitOfWork, request: MpesaRequest, command: str, now: datetime) -> None:
    audit(
        uow,
        actor_id=SYSTEM_ACTOR,
        channel="mpesa",
        command=command,
        details={
            "request_id": request.id,
            "purpose": request.purpose.value,
            "user_id": request.user_id,
            "amount_cents": request.amount_cents,
            "state": request.state.value,
            "receipt": request.receipt,
        },
        now=now,
    )


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
        request_stk(
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
        request_stk(
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


def _begin_send(deps: MpesaDeps, request_id: str) -> MpesaRequest | None:
    """Mark the request SENDING (committed) before Daraja hears of it; None: nothing to send."""
    policy, now = deps.policy, deps.clock.now()
    with deps.uow() as uow:
        request = uow.mpesa.lock_request(request_id)
        assert request is not None, request_id
        if request.state is RequestState.SENDING:
            # A worker died between marking and recording Daraja's answer: maybe sent.
            wait_s = policy.status_after_s if request.kind is RequestKind.B2C else 0.0
            _mark_unknown(request, STOPPED_MID_SEND, now=now, wait_s=wait_s)
            record_event(uow, request, EventKind.SEND_ERROR, STOPPED_MID_SEND, now=now)
            uow.mpesa.save_request(request, now)
            uow.commit()
            return None
        if request.state is not RequestState.QUEUED:
            return None  # sent or settled already: this message is a repeat
        request.state = RequestState.SENDING
        request.attempt += 1
        request.acknowledged = False
        if request.kind is RequestKind.B2C:
            request.originator_conversation_id = originator_id(request.id, request.attempt)
            request.not_found_answers, request.status_checks = 0, 0
            request.claimed_failure_code, request.claimed_failure_desc = None, ""
            detail = f"OriginatorConversationID {request.originator_conversation_id}"
            record_event(uow, request, EventKind.SEND, detail, now=now)
        uow.mpesa.save_request(request, now)
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


def _mark_unknown(request: MpesaRequest, desc: str, *, now: datetime, wait_s: float) -> None:
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
    request = _begin_send(deps, request_id)
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
        stored = uow.mpesa.lock_request(request.id)
        assert stored is not None
        stored.checkout_request_id = ack.checkout_request_id
        stored.acknowledged = True
        if stored.state is RequestState.SENDING:
            stored.state = RequestState.SENT
            stored.next_check_at = now + timedelta(seconds=deps.policy.stk_query_after_s)
        uow.mpesa.save_request(stored, now)
        uow.commit()


def _stk_not_accepted(deps: MpesaDeps, request_id: str, error: GatewayError) -> None:
    now = deps.clock.now()
    with deps.uow() as uow:
        request = uow.mpesa.lock_request(request_id)
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
            _mark_unknown(request, error.message, now=now, wait_s=deps.policy.stk_query_after_s)
        uow.mpesa.save_request(request, now)
        uow.commit()
    if error.outcome in (GatewayOutcome.NOT_SENT, GatewayOutcome.BUSY):
        raise RetryLater(error.message)


def send_b2c(deps: MpesaDeps, request_id: str) -> None:
    request = _begin_send(deps, request_id)
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
        _b2c_not_accepted(deps, request.id, error)
        return
    now = deps.clock.now()
    with deps.uow() as uow:
        stored = uow.mpesa.lock_request(request.id)
        assert stored is not None
        if stored.originator_conversation_id == ack.originator_conversation_id:
            stored.conversation_id = ack.conversation_id
            stored.acknowledged = True
            if stored.state is RequestState.SENDING:
                stored.state = RequestState.SENT
                stored.next_check_at = now + timedelta(seconds=deps.policy.status_after_s)
            uow.mpesa.save_request(stored, now)
            detail = f"accepted, ConversationID {ack.conversation_id}"
            record_event(uow, stored, EventKind.ACCEPTED, detail, now=now)
        uow.commit()


def _remarks(request: MpesaRequest) -> str:
    return {
        Purpose.DISBURSEMENT: "Deni loan disbursement",
        Purpose.AUTO_PAYOUT: "Deni loan repayment payout",
    }.get(request.purpose, "Deni wallet withdrawal")


def _b2c_not_accepted(deps: MpesaDeps, request_id: str, error: GatewayError) -> None:
    now = deps.clock.now()
    with deps.uow() as uow:
        request = uow.mpesa.lock_request(request_id)
        assert request is not None
        request.result_code, request.result_desc = error.code[:16], error.message[:DESC_CHARS_MAX]
        detail = f"{error.outcome.value}: {error.message}"
        record_event(uow, request, EventKind.SEND_ERROR, detail, now=now)
        if error.outcome is GatewayOutcome.NOT_SENT:
            # The request was never written (no connection, no token): nothing reached
            # Safaricom, so the outbox sends it again, as a new attempt with a new id.
            request.state = RequestState.QUEUED
            uow.mpesa.save_request(request, now)
        elif error.outcome is GatewayOutcome.REFUSED:
            _fail_payout(uow, request, error.message, now=now)
        else:
            # Maybe sent (and a rate limit may have been processed anyway): ask first.
            _mark_unknown(request, error.message, now=now, wait_s=deps.policy.status_after_s)
            uow.mpesa.save_request(request, now)
        uow.commit()
    if error.outcome is GatewayOutcome.NOT_SENT:
        raise RetryLater(error.message)


# --- Settling STK pushes -----------------------------------------------------------------------


def credit_stk_payment(
    deps: MpesaDeps, request_id: str, *, receipt: str, amount_cents: int, desc: str
) -> None:
    """The customer paid what the push asked: into the wallet, then to the loan. Idempotent at
    every step (receipt, repayment key), so a crash midway is finished by a re-run."""
    with deps.uow.read_only() as uow:
        request = uow.mpesa.get_request(request_id)
        assert request is not None
    assert request.kind is RequestKind.STK
    assert amount_cents == request.amount_cents
    if request.state is RequestState.SUCCEEDED:
        return
    payments.record_mpesa_payment(
        uow=deps.uow(),
        clock=deps.clock,
        user_id=request.user_id,
        amount_cents=amount_cents,
        receipt=receipt,
    )
    if request.loan_id is not None:
        repay_from_wallet(deps, request.user_id, request.loan_id, amount_cents, f"stk:{request.id}")
    now = deps.clock.now()
    with deps.uow() as uow:
        stored = uow.mpesa.lock_request(request_id)
        assert stored is not None
        _mark_paid(stored, receipt=receipt, desc=desc)
        uow.mpesa.save_request(stored, now)
        _audit(uow, stored, "mpesa_stk_paid", now)
        uow.commit()


class PushAnswer(StrEnum):
    PAID = "paid"
    NOT_PAID = "not_paid"
    PENDING = "pending"  # the customer has not answered yet
    UNKNOWN = "unknown"  # STK Query could not be asked or answered


def confirm_push_paid(deps: MpesaDeps, request_id: str) -> tuple[PushAnswer, str]:
    """Ask STK Query whether this push was paid before a success callback credits it. It is
    Deni's own question, answered over Deni's own connection to Daraja, by the CheckoutRequestID
    Daraja gave Deni: a forged callback cannot answer it (and a CheckoutRequestID is a date, a
    time and the payer's number, so it can be guessed). A "paid" answer is kept on the request."""
    with deps.uow.read_only() as uow:
        request = uow.mpesa.get_request(request_id)
    assert request is not None
    assert request.kind is RequestKind.STK
    if request.paid_confirmed:
        return PushAnswer.PAID, ""
    if request.checkout_request_id is None:
        return PushAnswer.UNKNOWN, "no CheckoutRequestID to ask about"
    try:
        answer = deps.gateway.stk_query(checkout_request_id=request.checkout_request_id)
    except GatewayError as error:
        pending = error.outcome is GatewayOutcome.BUSY
        return (PushAnswer.PENDING if pending else PushAnswer.UNKNOWN), error.message
    if answer.result_code != SUCCESS:
        return PushAnswer.NOT_PAID, f"{answer.result_code} {answer.result_desc}"
    now = deps.clock.now()
    with deps.uow() as uow:
        stored = uow.mpesa.lock_request(request_id)
        assert stored is not None
        stored.paid_confirmed = True
        uow.mpesa.save_request(stored, now)
        uow.commit()
    return PushAnswer.PAID, ""


@dataclass(frozen=True, slots=True)
class StkPaid:
    """A top-up push the customer paid, as its callback says."""

    request: MpesaRequest  # locked by the caller, open, not for a loan
    receipt: str
    amount_cents: int
    desc: str


def credit_stk_top_ups(uow: UnitOfWork, paid: Sequence[StkPaid], *, now: datetime) -> None:
    """`credit_stk_payment` for several paid top-ups, inside the caller's transaction (which
    commits, so all of them happen or none). The callers locked the requests; the credits
    themselves go through `payments.credit_wallets` (same keys, same lock order)."""
    for item in paid:
        request = item.request
        assert request.kind is RequestKind.STK
        assert request.loan_id is None
        assert request.state in OPEN_STATES
        assert item.amount_cents == request.amount_cents
    credits = [
        payments.Credit(item.request.user_id, item.amount_cents, item.receipt) for item in paid
    ]
    payments.credit_wallets(uow, credits, now=now)
    for item in paid:
        _mark_paid(item.request, receipt=item.receipt, desc=item.desc)
    uow.mpesa.save_requests([item.request for item in paid], now)
    for item in paid:
        _audit(uow, item.request, "mpesa_stk_paid", now)


def _mark_paid(request: MpesaRequest, *, receipt: str, desc: str) -> None:
    request.state, request.receipt = RequestState.SUCCEEDED, receipt
    request.result_code, request.result_desc = SUCCESS, desc[:DESC_CHARS_MAX]
    request.next_check_at = None


def repay_from_wallet(
    deps: MpesaDeps, borrower_id: str, loan_id: str, amount_cents: int, key: str
) -> None:
    """Money for a loan reached the borrower's wallet: apply it. If the loan is closed, or an
    overdue loan already took the money, it simply stays in the wallet."""
    try:
        loans.repay_loan_by_system(
            uow=deps.uow(),
            clock=deps.clock,
            borrower_id=borrower_id,
            loan_id=loan_id,
            amount_cents=amount_cents,
            idempotency_key=key,
            channel="mpesa",
        )
    except (Conflict, InsufficientFunds, Forbidden, NotFound) as error:
        log.info("mpesa.repayment_skipped", loan_id=loan_id, reason=error.code)


def fail_stk(deps: MpesaDeps, request_id: str, *, code: str, desc: str) -> bool:
    """The push ended without payment. A settled request is never downgraded."""
    now = deps.clock.now()
    with deps.uow() as uow:
        request = uow.mpesa.lock_request(request_id)
        assert request is not None
        if request.state not in OPEN_STATES:
            return False
        request.state = RequestState.FAILED
        request.result_code, request.result_desc = code[:16], desc[:DESC_CHARS_MAX]
        request.next_check_at = None
        uow.mpesa.save_request(request, now)
        _audit(uow, request, "mpesa_stk_failed", now)
        uow.commit()
    return True


def to_suspense(
    deps: MpesaDeps,
    *,
    receipt: str,
    amount_cents: int,
    source: str,
    account_reference: str,
    phone: str,
    reason: str,
) -> bool:
    """Money that reached the paybill and matches nothing: M-PESA cash up, suspense up, until
    an operator assigns it (`deni payments assign`). False if this receipt was already there."""
    now = deps.clock.now()
    with deps.uow() as uow:
        draft = EntryDraft(
            f"suspense:{receipt}",
            EntryCode.DEPOSIT,
            movement(
                debit_account_id=PlatformAccount.MPESA_PAYBILL.value,
                credit_account_id=PlatformAccount.SUSPENSE.value,
                amount_cents=amount_cents,
            ),
            MPESA_RECEIPT_CAUSE,
            receipt,
            memo=receipt,
        )
        posted = ledger.post_entry(uow, draft, now=now)
        added = uow.mpesa.suspense_add(
            SuspensePayment(
                receipt=receipt,
                amount_cents=amount_cents,
                source=source,
                account_reference=account_reference,
                phone=phone,
                reason=reason,
                entry_id=posted.entry_id,
                state=SuspenseState.UNASSIGNED,
                created_at=now,
            )
        )
        if added:
            audit(
                uow,
                actor_id=SYSTEM_ACTOR,
                channel="mpesa",
                command="mpesa_to_suspense",
                details={"receipt": receipt, "amount_cents": amount_cents, "reason": reason},
                now=now,
            )
        uow.commit()
    log.warning("mpesa.suspense", source=source, amount_cents=amount_cents, reason=reason)
    return added


# --- Settling B2C payouts ----------------------------------------------------------------------


def settle_payout_success(
    deps: MpesaDeps, request_id: str, *, receipt: str, amount_cents: int | None, desc: str
) -> None:
    """Daraja says the money reached the customer. Post the hold once; a success after a
    failure (the hold was voided) takes the money back from the wallet, or, if it is gone,
    records the overpayment in suspense for an operator: the ledger follows reality."""
    now = deps.clock.now()
    with deps.uow() as uow:
        request = uow.mpesa.lock_request(request_id)
        assert request is not None
        post_payout(uow, request, receipt=receipt, amount_cents=amount_cents, desc=desc, now=now)
        uow.commit()


def post_payout(
    uow: UnitOfWork,
    request: MpesaRequest,
    *,
    receipt: str,
    amount_cents: int | None,
    desc: str,
    now: datetime,
) -> None:
    """`settle_payout_success` inside the caller's transaction, on a request it locked."""
    assert request.kind is RequestKind.B2C
    assert request.hold_id is not None
    if amount_cents is not None and amount_cents != request.amount_cents:
        log.error("mpesa.payout_amount_differs", request_id=request.id)
    if request.state is RequestState.SUCCEEDED:
        if request.receipt != receipt:
            _record_overpayment(uow, request, receipt=receipt, now=now)
        return
    hold = uow.ledger.lock_hold(request.hold_id)
    assert hold is not None
    if hold.state is HoldState.VOIDED:
        _record_overpayment(uow, request, receipt=receipt, now=now)
    else:
        ledger.post_hold(uow, hold_id=hold.id, receipt=receipt, now=now)
    request.state, request.receipt = RequestState.SUCCEEDED, receipt
    request.result_code, request.result_desc = SUCCESS, desc[:DESC_CHARS_MAX]
    request.next_check_at = None
    request.awaiting_decision = False
    request.claimed_failure_code, request.claimed_failure_desc = None, ""
    uow.mpesa.save_request(request, now)
    record_event(uow, request, EventKind.SETTLED, f"paid, receipt {receipt}: {desc}", now=now)
    _audit(uow, request, "mpesa_payout_paid", now)


def _record_overpayment(
    uow: UnitOfWork, request: MpesaRequest, *, receipt: str, now: datetime
) -> None:
    wallet_id = wallet_account_id(request.user_id)
    wallet = uow.ledger.lock_accounts([wallet_id])[wallet_id]
    source = wallet_id if wallet.balance_cents >= request.amount_cents else None
    postings = movement(
        debit_account_id=source or PlatformAccount.SUSPENSE.value,
        credit_account_id=PlatformAccount.MPESA_B2C_FLOAT.value,
        amount_cents=request.amount_cents,
    )
    draft = EntryDraft(
        f"late_payout:{receipt}",
        EntryCode.PAYOUT_POST,
        postings,
        MPESA_RECEIPT_CAUSE,
        receipt,
        memo=receipt,
    )
    ledger.post_entry(uow, draft, now=now)
    log.error(
        "mpesa.payout_after_failure",
        request_id=request.id,
        taken_from="wallet" if source else "suspense",
    )
    audit(
        uow,
        actor_id=SYSTEM_ACTOR,
        channel="mpesa",
        command="mpesa_late_payout",
        details={"request_id": request.id, "receipt": receipt, "from_wallet": bool(source)},
        now=now,
    )


def claim_payout_failure(
    deps: MpesaDeps, request_id: str, *, code: str, desc: str, attempt: int
) -> bool:
    """A result callback says this attempt failed. Callbacks are not signed, so this is a claim:
    the money stays held, and Transaction Status is asked (`policy.status_after_s` from now)
    before anything is given back. Ignored for a settled request or an earlier attempt."""
    now = deps.clock.now()
    with deps.uow() as uow:
        request = uow.mpesa.lock_request(request_id)
        assert request is not None
        if request.state not in OPEN_STATES or attempt != request.attempt:
            return False
        request.state = RequestState.UNKNOWN
        request.acknowledged = True  # a result for this attempt: it reached M-PESA
        request.claimed_failure_code = code[:16]
        request.claimed_failure_desc = desc[:DESC_CHARS_MAX]
        request.not_found_answers = 0  # the claim is confirmed by answers given after it
        request.result_desc = f"failure result {code}: confirming with M-PESA"[:DESC_CHARS_MAX]
        request.next_check_at = now + timedelta(seconds=deps.policy.status_after_s)
        request.awaiting_decision = False
        uow.mpesa.save_request(request, now)
        record_event(uow, request, EventKind.RESULT, f"failure {code}: {desc}", now=now)
        uow.commit()
    return True


def confirm_payout_failure(deps: MpesaDeps, request_id: str, *, desc: str) -> bool:
    """M-PESA itself says this payout did not happen (Transaction Status found it failed, or
    knows nothing of it after a failure result, asked often enough): the money goes back to the
    wallet, and the owner hears. False if the request was settled meanwhile."""
    now = deps.clock.now()
    with deps.uow() as uow:
        request = uow.mpesa.lock_request(request_id)
        assert request is not None
        if request.state not in OPEN_STATES:
            return False
        request.result_code = (request.claimed_failure_code or "status")[:16]
        _fail_payout(uow, request, desc, now=now)
        uow.commit()
    return True


def _fail_payout(uow: UnitOfWork, request: MpesaRequest, desc: str, *, now: datetime) -> None:
    assert request.hold_id is not None
    ledger.void_hold(uow, hold_id=request.hold_id, reason=desc[:DESC_CHARS_MAX], now=now)
    request.state = RequestState.FAILED
    request.result_desc = desc[:DESC_CHARS_MAX]
    request.next_check_at = None
    request.awaiting_decision = False
    uow.mpesa.save_request(request, now)
    record_event(uow, request, EventKind.SETTLED, f"failed, money returned: {desc}", now=now)
    user = require_user(uow, request.user_id)
    notify(
        uow,
        user=user,
        kind="payout_failed",
        params={"amount_cents": request.amount_cents},
        now=now,
        loan_id=request.loan_id,
        dedupe_key=f"payout_failed:{request.id}",
    )
    _audit(uow, request, "mpesa_payout_failed", now)


def payout_not_found(deps: MpesaDeps, request_id: str, *, desc: str) -> None:
    """Transaction Status does not know this payout's current attempt. That is no proof it never
    reached M-PESA: it may still be in M-PESA's queue, or the answer may be wrong. After a
    failure result, enough such answers confirm the failure; without one, the payout waits for
    an operator. It is never sent again by a machine."""
    now = deps.clock.now()
    with deps.uow() as uow:
        request = uow.mpesa.lock_request(request_id)
        assert request is not None
        if request.state not in OPEN_STATES or request.state is RequestState.QUEUED:
            return
        request.not_found_answers += 1
        answers = request.not_found_answers
        record_event(uow, request, EventKind.STATUS_ANSWER, f"not found: {desc}", now=now)
        if answers < deps.policy.not_found_answers_min:
            # Not sure yet: the reconciler asks again at the request's next check.
            request.result_desc = f"not found at M-PESA yet ({answers}): {desc}"[:DESC_CHARS_MAX]
            uow.mpesa.save_request(request, now)
        elif request.claimed_failure_code is not None:
            request.result_code = request.claimed_failure_code
            confirmed = f"{request.claimed_failure_desc} (M-PESA: not found {answers} times)"
            _fail_payout(uow, request, confirmed, now=now)
        else:
            await_decision(uow, request, f"not found at M-PESA {answers} times: {desc}", now=now)
        uow.commit()


def resend_payout(uow: UnitOfWork, request: MpesaRequest, reason: str, *, now: datetime) -> None:
    """An operator's decision (operator_decisions.py): send this payout again, as a new attempt
    with a new OriginatorConversationID. Never called by a machine."""
    assert request.kind is RequestKind.B2C
    assert request.state in OPEN_STATES
    request.state = RequestState.QUEUED
    request.awaiting_decision = False
    request.next_check_at = None
    request.result_desc = f"sending again: {reason}"[:DESC_CHARS_MAX]
    uow.mpesa.save_request(request, now)
    _enqueue_send(uow, request, now=now)


def fail_held_payout(uow: UnitOfWork, request: MpesaRequest, desc: str, *, now: datetime) -> None:
    """An operator's decision: the payout did not happen, the money goes back to the wallet."""
    assert request.state in OPEN_STATES
    _fail_payout(uow, request, desc, now=now)


def await_decision(uow: UnitOfWork, request: MpesaRequest, reason: str, *, now: datetime) -> None:
    """Nobody can tell whether this payout left: its hold stays, and an operator decides
    (`deni payments waiting`, `deni payments decide`)."""
    assert request.kind is RequestKind.B2C
    assert request.state in OPEN_STATES
    request.state = RequestState.UNKNOWN
    request.awaiting_decision = True
    request.next_check_at = None
    request.result_desc = f"waiting for an operator: {reason}"[:DESC_CHARS_MAX]
    uow.mpesa.save_request(request, now)
    record_event(uow, request, EventKind.WAITING, reason, now=now)
    _audit(uow, request, "mpesa_payout_awaits_decision", now)
    log.warning("mpesa.payout_awaits_decision", request_id=request.id, reason=reason[:200])


# --- Preferences -------------------------------------------------------------------------------


def set_preferences(
    *,
    uow: UnitOfWork,
    hasher: PinHasher,
    clock: Clock,
    user_id: str,
    pin: str,
    disburse_to_mpesa: bool | None = None,
    auto_payout: bool | None = None,
    channel: str = "api",
) -> tuple[bool, bool]:
    """Where a member's money goes without asking each time (a loan's principal, a lender's
    repayments: straight on to M-PESA). It decides future payouts, so it takes the PIN."""
    now = clock.now()
    with uow:
        user = require_user(uow, user_id, lock=True)
        check_pin(uow, hasher=hasher, user=user, pin=pin, now=now, channel=channel)
        current = uow.mpesa.preferences(user_id)
        updated = MpesaPreferences(
            user_id,
            current.disburse_to_mpesa if disburse_to_mpesa is None else disburse_to_mpesa,
            current.auto_payout if auto_payout is None else auto_payout,
        )
        uow.mpesa.set_preferences(updated, now)
        audit(
            uow,
            actor_id=user_id,
            channel=channel,
            command="set_preferences",
            details={
                "disburse_to_mpesa": updated.disburse_to_mpesa,
                "auto_payout": updated.auto_payout,
            },
            now=now,
        )
        uow.commit()
    return updated.disburse_to_mpesa, updated.auto_payout
