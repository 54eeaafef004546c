"""What a settled M-PESA request does to the books: a paid push credits the wallet (and the
loan), a payout's result posts or keeps its hold, money nobody can place waits in suspense.

A success is never downgraded: a failure that arrives after a success is ignored. A success
that arrives after a failure is money that really moved, and the ledger follows it. A failure
result gives nothing back until Transaction Status confirms it: the money stays held.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import structlog

from deni.domain.errors import (
    Conflict,
    Forbidden,
    InsufficientFunds,
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
from deni.domain.mpesa import (
    OPEN_STATES,
    SUCCESS,
    EventKind,
    MpesaRequest,
    RequestKind,
    RequestState,
)
from deni.services import ledger, loans
from deni.services.common import SYSTEM_ACTOR, audit, notify, require_user
from deni.services.mpesa import payments
from deni.services.mpesa.journal import DESC_CHARS_MAX, audit_request, enqueue_send, record_event
from deni.services.mpesa.ports import (
    GatewayError,
    GatewayOutcome,
    MpesaDeps,
    SuspensePayment,
    SuspenseState,
)
from deni.services.ports import UnitOfWork

log = structlog.get_logger(__name__)


# --- Settling STK pushes -----------------------------------------------------------------------


def credit_stk_payment(
    deps: MpesaDeps, request_id: str, *, receipt: str, amount_cents: int, desc: str
) -> None:
    """The customer paid what the push asked: into the wallet, then to the loan. Idempotent at
    every step (receipt, repayment key), so a crash midway is finished by a re-run."""
    with deps.uow.read_only() as uow:
        request = uow.mpesa_requests.get(request_id)
        assert request is not None
    assert request.kind is RequestKind.STK
    assert request.user_id is not None
    assert amount_cents == request.amount_cents
    if request.state is RequestState.SUCCEEDED:
        return
    payments.record_mpesa_payment(
        deps,
        user_id=request.user_id,
        amount_cents=amount_cents,
        receipt=receipt,
    )
    if request.loan_id is not None:
        repay_from_wallet(deps, request.user_id, request.loan_id, amount_cents, f"stk:{request.id}")
    now = deps.clock.now()
    with deps.uow() as uow:
        stored = uow.mpesa_requests.lock(request_id)
        assert stored is not None
        _mark_paid(stored, receipt=receipt, desc=desc)
        uow.mpesa_requests.save(stored, now)
        audit_request(uow, stored, "mpesa_stk_paid", now)
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
        request = uow.mpesa_requests.get(request_id)
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
        stored = uow.mpesa_requests.lock(request_id)
        assert stored is not None
        stored.paid_confirmed = True
        uow.mpesa_requests.save(stored, now)
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
        payments.Credit(_owner(item.request), item.amount_cents, item.receipt) for item in paid
    ]
    payments.credit_wallets(uow, credits, now=now)
    for item in paid:
        _mark_paid(item.request, receipt=item.receipt, desc=item.desc)
    uow.mpesa_requests.save_many([item.request for item in paid], now)
    for item in paid:
        audit_request(uow, item.request, "mpesa_stk_paid", now)


def _owner(request: MpesaRequest) -> str:
    """Whose money a push or a payout is (every request but a suspense reversal has one)."""
    assert request.user_id is not None
    return request.user_id


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
            deps,
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
        request = uow.mpesa_requests.lock(request_id)
        assert request is not None
        if request.state not in OPEN_STATES:
            return False
        request.state = RequestState.FAILED
        request.result_code, request.result_desc = code[:16], desc[:DESC_CHARS_MAX]
        request.next_check_at = None
        uow.mpesa_requests.save(request, now)
        audit_request(uow, request, "mpesa_stk_failed", now)
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
        added = uow.suspense.add(
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
        request = uow.mpesa_requests.lock(request_id)
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
    if request.kind is RequestKind.REVERSAL:
        post_reversal(uow, request, receipt=receipt, amount_cents=amount_cents, desc=desc, now=now)
        return
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
    _succeeded(uow, request, receipt=receipt, desc=desc, done="paid", now=now)
    audit_request(uow, request, "mpesa_payout_paid", now)


def _record_overpayment(
    uow: UnitOfWork, request: MpesaRequest, *, receipt: str, now: datetime
) -> None:
    wallet_id = wallet_account_id(_owner(request))
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
        request = uow.mpesa_requests.lock(request_id)
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
        uow.mpesa_requests.save(request, now)
        record_event(uow, request, EventKind.RESULT, f"failure {code}: {desc}", now=now)
        uow.commit()
    return True


def confirm_payout_failure(deps: MpesaDeps, request_id: str, *, desc: str) -> bool:
    """M-PESA itself says this payout did not happen (Transaction Status found it failed, or
    knows nothing of it after a failure result, asked often enough): the money goes back to the
    wallet, and the owner hears. False if the request was settled meanwhile."""
    now = deps.clock.now()
    with deps.uow() as uow:
        request = uow.mpesa_requests.lock(request_id)
        assert request is not None
        if request.state not in OPEN_STATES:
            return False
        request.result_code = (request.claimed_failure_code or "status")[:16]
        fail_payout(uow, request, desc, now=now)
        uow.commit()
    return True


def fail_payout(uow: UnitOfWork, request: MpesaRequest, desc: str, *, now: datetime) -> None:
    if request.kind is RequestKind.REVERSAL:
        fail_reversal(uow, request, desc, now=now)
        return
    assert request.hold_id is not None
    ledger.void_hold(uow, hold_id=request.hold_id, reason=desc[:DESC_CHARS_MAX], now=now)
    request.state = RequestState.FAILED
    request.result_desc = desc[:DESC_CHARS_MAX]
    request.next_check_at = None
    request.awaiting_decision = False
    uow.mpesa_requests.save(request, now)
    record_event(uow, request, EventKind.SETTLED, f"failed, money returned: {desc}", now=now)
    user = require_user(uow, _owner(request))
    notify(
        uow,
        user=user,
        kind="payout_failed",
        params={"amount_cents": request.amount_cents},
        now=now,
        loan_id=request.loan_id,
        dedupe_key=f"payout_failed:{request.id}",
    )
    audit_request(uow, request, "mpesa_payout_failed", now)


def payout_not_found(deps: MpesaDeps, request_id: str, *, desc: str) -> None:
    """Transaction Status does not know this payout's current attempt. That is no proof it never
    reached M-PESA: it may still be in M-PESA's queue, or the answer may be wrong. After a
    failure result, enough such answers confirm the failure; without one, the payout waits for
    an operator. It is never sent again by a machine."""
    now = deps.clock.now()
    with deps.uow() as uow:
        request = uow.mpesa_requests.lock(request_id)
        assert request is not None
        if request.state not in OPEN_STATES or request.state is RequestState.QUEUED:
            return
        request.not_found_answers += 1
        answers = request.not_found_answers
        record_event(uow, request, EventKind.STATUS_ANSWER, f"not found: {desc}", now=now)
        if answers < deps.policy.not_found_answers_min:
            # Not sure yet: the reconciler asks again at the request's next check.
            request.result_desc = f"not found at M-PESA yet ({answers}): {desc}"[:DESC_CHARS_MAX]
            uow.mpesa_requests.save(request, now)
        elif request.claimed_failure_code is not None:
            request.result_code = request.claimed_failure_code
            confirmed = f"{request.claimed_failure_desc} (M-PESA: not found {answers} times)"
            fail_payout(uow, request, confirmed, now=now)
        else:
            await_decision(uow, request, f"not found at M-PESA {answers} times: {desc}", now=now)
        uow.commit()


def resend_payout(uow: UnitOfWork, request: MpesaRequest, reason: str, *, now: datetime) -> None:
    """An operator's decision (decisions.py): send this payout again, as a new attempt
    with a new OriginatorConversationID. Never called by a machine."""
    assert request.kind in (RequestKind.B2C, RequestKind.REVERSAL)
    assert request.state in OPEN_STATES
    request.state = RequestState.QUEUED
    request.awaiting_decision = False
    request.next_check_at = None
    request.result_desc = f"sending again: {reason}"[:DESC_CHARS_MAX]
    uow.mpesa_requests.save(request, now)
    enqueue_send(uow, request, now=now)


def fail_held_payout(uow: UnitOfWork, request: MpesaRequest, desc: str, *, now: datetime) -> None:
    """An operator's decision: the payout did not happen, the money goes back to the wallet."""
    assert request.state in OPEN_STATES
    fail_payout(uow, request, desc, now=now)


def await_decision(uow: UnitOfWork, request: MpesaRequest, reason: str, *, now: datetime) -> None:
    """Nobody can tell whether this payout left: its hold stays, and an operator decides
    (`deni payments waiting`, `deni payments decide`). Reversals wait the same way."""
    assert request.kind in (RequestKind.B2C, RequestKind.REVERSAL)
    assert request.state in OPEN_STATES
    request.state = RequestState.UNKNOWN
    request.awaiting_decision = True
    request.next_check_at = None
    request.result_desc = f"waiting for an operator: {reason}"[:DESC_CHARS_MAX]
    uow.mpesa_requests.save(request, now)
    record_event(uow, request, EventKind.WAITING, reason, now=now)
    audit_request(uow, request, "mpesa_payout_awaits_decision", now)
    log.warning("mpesa.payout_awaits_decision", request_id=request.id, reason=reason[:200])


# --- Settling reversals ---------------------------------------------------------------------------


def post_reversal(
    uow: UnitOfWork,
    request: MpesaRequest,
    *,
    receipt: str,
    amount_cents: int | None,
    desc: str,
    now: datetime,
) -> None:
    """M-PESA sent the payment back to its payer: the money leaves the paybill, once. Held
    wallet money: the hold is posted to the paybill; money in suspense: out of suspense. A
    success after a failure (the hold voided, the suspense row freed or assigned since) takes
    the money from the owner's wallet, or else from suspense, for an operator: the ledger
    follows reality."""
    assert request.kind is RequestKind.REVERSAL
    assert request.original_receipt is not None
    if amount_cents is not None and amount_cents != request.amount_cents:
        log.error("mpesa.reversal_amount_differs", request_id=request.id)
    if request.state is RequestState.SUCCEEDED:
        if request.receipt != receipt:
            log.error("mpesa.reversal_second_receipt", request_id=request.id)
        return
    if request.hold_id is not None:
        hold = uow.ledger.lock_hold(request.hold_id)
        assert hold is not None
        if hold.state is HoldState.PENDING:
            ledger.post_hold(
                uow,
                hold_id=hold.id,
                receipt=receipt,
                now=now,
                via=PlatformAccount.MPESA_PAYBILL,
                code=EntryCode.MPESA_REVERSAL,
            )
        else:
            _late_reversal(uow, request, request.user_id, receipt=receipt, now=now)
    else:
        payment = uow.suspense.lock(request.original_receipt)
        assert payment is not None
        if payment.state in (SuspenseState.REVERSING, SuspenseState.UNASSIGNED):
            _reversal_entry(uow, request, PlatformAccount.SUSPENSE.value, receipt, now=now)
        else:  # assigned to a wallet after a failure was confirmed
            _late_reversal(uow, request, payment.user_id, receipt=receipt, now=now)
        if payment.state is not SuspenseState.ASSIGNING:
            payment.state = SuspenseState.REVERSED
            uow.suspense.save(payment)
    _succeeded(uow, request, receipt=receipt, desc=desc, done="reversed", now=now)
    audit_request(uow, request, "mpesa_reversal_succeeded", now)


def _succeeded(
    uow: UnitOfWork, request: MpesaRequest, *, receipt: str, desc: str, done: str, now: datetime
) -> None:
    """An asynchronous request M-PESA says it carried out: settled, with its receipt, and no
    claim of failure or decision left waiting."""
    request.state, request.receipt = RequestState.SUCCEEDED, receipt
    request.result_code, request.result_desc = SUCCESS, desc[:DESC_CHARS_MAX]
    request.next_check_at = None
    request.awaiting_decision = False
    request.claimed_failure_code, request.claimed_failure_desc = None, ""
    uow.mpesa_requests.save(request, now)
    record_event(uow, request, EventKind.SETTLED, f"{done}, receipt {receipt}: {desc}", now=now)


def _reversal_entry(
    uow: UnitOfWork, request: MpesaRequest, source_id: str, receipt: str, *, now: datetime
) -> None:
    draft = EntryDraft(
        f"reversal:{request.id}",
        EntryCode.MPESA_REVERSAL,
        movement(
            debit_account_id=source_id,
            credit_account_id=PlatformAccount.MPESA_PAYBILL.value,
            amount_cents=request.amount_cents,
        ),
        MPESA_RECEIPT_CAUSE,
        receipt,
        memo=f"{request.original_receipt} reversed by {receipt}",
    )
    ledger.post_entry(uow, draft, now=now)


def _late_reversal(
    uow: UnitOfWork, request: MpesaRequest, user_id: str | None, *, receipt: str, now: datetime
) -> None:
    source = PlatformAccount.SUSPENSE.value
    if user_id is not None:
        wallet_id = wallet_account_id(user_id)
        wallet = uow.ledger.lock_accounts([wallet_id])[wallet_id]
        if wallet.balance_cents >= request.amount_cents:
            source = wallet_id
    _reversal_entry(uow, request, source, receipt, now=now)
    log.error("mpesa.reversal_after_failure", request_id=request.id, taken_from=source)
    audit(
        uow,
        actor_id=SYSTEM_ACTOR,
        channel="mpesa",
        command="mpesa_late_reversal",
        details={"request_id": request.id, "receipt": receipt, "taken_from": source},
        now=now,
    )


def fail_reversal(uow: UnitOfWork, request: MpesaRequest, desc: str, *, now: datetime) -> None:
    """M-PESA did not send the payment back: the money stays where it was, the member's (the
    hold is voided) or in suspense (free to be assigned again)."""
    assert request.kind is RequestKind.REVERSAL
    assert request.original_receipt is not None
    if request.hold_id is not None:
        ledger.void_hold(uow, hold_id=request.hold_id, reason=desc[:DESC_CHARS_MAX], now=now)
    else:
        payment = uow.suspense.lock(request.original_receipt)
        assert payment is not None
        if payment.state is SuspenseState.REVERSING:
            payment.state = SuspenseState.UNASSIGNED
            uow.suspense.save(payment)
    request.state = RequestState.FAILED
    request.result_desc = desc[:DESC_CHARS_MAX]
    request.next_check_at = None
    request.awaiting_decision = False
    uow.mpesa_requests.save(request, now)
    record_event(uow, request, EventKind.SETTLED, f"failed, money stays: {desc}", now=now)
    audit_request(uow, request, "mpesa_reversal_failed", now)
