"""Reversals: a payment that reached Deni's paybill (a C2B payment or a paid STK push) sent
back to whoever paid it, through Daraja's Reversal API (docs/mpesa.md, "Reversals").

- An operator asks for it (`request_reversal`, once a second operator approved it: the console
  does the four eyes) by the payment's receipt. The payment is either in a member's wallet
  (credited through `payments.credit_wallets`, key `mpesa:<receipt>`) or in suspense.
- The money is held at once: wallet money by a ledger hold (wallet → payouts in flight), so the
  member cannot withdraw, lend or repay with it while M-PESA decides; a suspense payment by its
  row (`reversing`), so nobody can assign it meanwhile. The request of kind `reversal` and its
  outbox message are written in the same transaction, and the worker sends it with Deni's own
  OriginatorConversationID (derived from the request id and the attempt, like a payout's).
- Only M-PESA's word moves the ledger: a success result posts the hold to the paybill (or takes
  the money out of suspense), `EntryCode.MPESA_REVERSAL`, which no correction may reverse. A
  failure result is a claim, like a payout's: the money stays held until Transaction Status
  confirms it, then the hold is voided (the money stays the member's) or the suspense row is
  freed. "Already reversed" (R000001) says the money went back some other way: that reversal
  waits for an operator. A timeout or no answer leaves it to the reconciler, which asks
  Transaction Status and never sends a second reversal; when nobody can tell, an operator
  decides (`decisions.py`), as for payouts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

from deni.domain.errors import Conflict, InsufficientFunds, NotFound, ValidationFailed
from deni.domain.ledger import wallet_account_id
from deni.domain.mpesa import (
    OPEN_STATES,
    STK_CENTS_MIN,
    EventKind,
    MpesaRequest,
    Purpose,
    RequestEvent,
    RequestKind,
    RequestState,
    require_mpesa_amount,
)
from deni.domain.operators import require_actor
from deni.ids import new_id
from deni.services import ledger
from deni.services.common import audit, require_user
from deni.services.mpesa.journal import (
    TOPIC_REVERSAL_SEND,
    enqueue_send,
    record_event,
)
from deni.services.mpesa.payments import RECEIPT_CHARS_MAX
from deni.services.mpesa.ports import (
    ClaimState,
    GatewayError,
    MpesaDeps,
    OutboxMessage,
    PaybillCheck,
    SuspensePayment,
    SuspenseState,
)
from deni.services.mpesa.requests import begin_send, not_accepted, record_accepted
from deni.services.mpesa.settle import await_decision
from deni.services.outbox import Handler
from deni.services.ports import UnitOfWork

REMARKS = "Deni payment reversal"
REASON_CHARS_MAX = 200
LIST_MAX = 200
EVIDENCE_MAX = 200
# Daraja's result code for a payment that was already reversed (by another request, or by
# Safaricom on the org portal): the money left the paybill, but not through this reversal.
ALREADY_REVERSED = "R000001"
_MSISDN = re.compile(r"2547\d{8}|2541\d{8}")


class ReversalSource:
    WALLET = "wallet"  # credited to a member's wallet: held there
    SUSPENSE = "suspense"  # in suspense: the row is marked, it cannot be assigned meanwhile


@dataclass(frozen=True, slots=True)
class Reversal:
    """A reversal as the operator console shows it."""

    request: MpesaRequest  # kind reversal: state, amount, original_receipt, receipt (M-PESA's)
    source: str  # ReversalSource
    requested_by: str  # the operator named when it was asked for
    reason: str
    evidence: list[RequestEvent]  # what was sent, what came back, oldest first


def request_reversal(deps: MpesaDeps, *, receipt: str, operator: str, reason: str) -> MpesaRequest:
    """Send the payment with this M-PESA receipt back to whoever paid it. The money is held
    at once; the worker sends the reversal. Refused (DomainError codes): `unknown_receipt`,
    `payment_not_confirmed` (a callback claims it, M-PESA has not confirmed it), `payment_being_
    assigned`, `already_reversed`, `reversal_pending`, `wallet_short_for_reversal` (the member
    has spent or holds part of it), `invalid_receipt`, `invalid_operator`, `reason_required`."""
    receipt = _checked_receipt(receipt)
    operator, reason = require_actor(operator), _checked_reason(reason)
    now = deps.clock.now()
    with deps.uow() as uow:
        payment = uow.suspense.lock(receipt)
        if payment is not None and payment.state is not SuspenseState.ASSIGNED:
            request = _from_suspense(uow, payment, now=now)
        else:  # an assigned suspense payment was credited to a wallet under its receipt
            request = _from_wallet(uow, receipt, now=now)
        source = ReversalSource.WALLET if request.hold_id else ReversalSource.SUSPENSE
        record_event(uow, request, EventKind.QUEUED, reason, now=now, actor=operator)
        audit(
            uow,
            actor_id=operator,
            channel="ops",
            command="request_reversal",
            details={
                "request_id": request.id,
                "receipt": receipt,
                "amount_cents": request.amount_cents,
                "source": source,
                "user_id": request.user_id,
                "reason": reason,
            },
            now=now,
        )
        uow.commit()
    return request


def _from_wallet(uow: UnitOfWork, receipt: str, *, now: datetime) -> MpesaRequest:
    entry = uow.ledger.find_entry(f"mpesa:{receipt}")
    if entry is None:
        _refuse_unknown(uow, receipt)
    assert entry is not None
    [credit] = [p for p in entry.postings if p.amount_cents < 0]
    account = uow.ledger.get_account(credit.account_id)
    assert account is not None
    assert account.owner_id is not None, credit.account_id
    wallet_id = wallet_account_id(account.owner_id)
    amount_cents = _reversible(-credit.amount_cents)
    # The wallet's lock orders two requests for one payment: the second sees the first.
    wallet = uow.ledger.lock_accounts([wallet_id])[wallet_id]
    attempt = _require_not_reversed(uow, receipt)
    if uow.ledger.find_reversal(entry.id) is not None:
        raise Conflict(
            "This payment was corrected in the ledger already.", code="payment_corrected"
        )
    if wallet.balance_cents < amount_cents:
        raise InsufficientFunds(
            "The member's wallet no longer holds this payment: it was spent, lent or is held.",
            code="wallet_short_for_reversal",
        )
    user = require_user(uow, account.owner_id)
    request = _new_request(
        receipt, attempt, user_id=user.id, phone=user.phone, amount_cents=amount_cents, now=now
    )
    hold = ledger.place_hold(
        uow,
        wallet_id=wallet_id,
        amount_cents=amount_cents,
        idempotency_key=f"reversal:{request.id}",
        now=now,
    )
    request.hold_id = hold.id
    uow.mpesa_requests.add(request)
    enqueue_send(uow, request, now=now)
    return request


def _from_suspense(uow: UnitOfWork, payment: SuspensePayment, *, now: datetime) -> MpesaRequest:
    if payment.state is SuspenseState.ASSIGNING:
        raise Conflict(
            "This payment is being assigned to a wallet; try once that is done.",
            code="payment_being_assigned",
        )
    attempt = _require_not_reversed(uow, payment.receipt)
    assert payment.state is SuspenseState.UNASSIGNED, payment.state
    phone = payment.phone if _MSISDN.fullmatch(payment.phone) else ""
    request = _new_request(
        payment.receipt,
        attempt,
        user_id=None,
        phone=phone,
        amount_cents=_reversible(payment.amount_cents),
        now=now,
    )
    payment.state = SuspenseState.REVERSING
    uow.suspense.save(payment)
    uow.mpesa_requests.add(request)
    enqueue_send(uow, request, now=now)
    return request


def _new_request(
    receipt: str,
    attempt: int,
    *,
    user_id: str | None,
    phone: str,
    amount_cents: int,
    now: datetime,
) -> MpesaRequest:
    return MpesaRequest(
        id=new_id(),
        kind=RequestKind.REVERSAL,
        purpose=Purpose.REVERSAL,
        user_id=user_id,
        loan_id=None,
        phone=phone,
        amount_cents=amount_cents,
        # One key per try: a failed reversal may be asked for again, never two at once.
        idempotency_key=f"reversal:{receipt}:{attempt}",
        state=RequestState.QUEUED,
        created_at=now,
        updated_at=now,
        original_receipt=receipt,
    )


def _require_not_reversed(uow: UnitOfWork, receipt: str) -> int:
    """The number of this try; refused while one is open or once one succeeded."""
    earlier = uow.mpesa_requests.reversals_of(receipt)
    for request in earlier:
        if request.state is RequestState.SUCCEEDED:
            raise Conflict("This payment was reversed already.", code="already_reversed")
        if request.state in OPEN_STATES:
            raise Conflict(
                "A reversal of this payment is waiting for M-PESA.", code="reversal_pending"
            )
    return len(earlier) + 1


def _refuse_unknown(uow: UnitOfWork, receipt: str) -> None:
    claim = uow.claims.for_receipts([receipt]).get(receipt)
    expected = uow.paybills.get(receipt)
    unconfirmed = (
        claim is not None and claim.state in (ClaimState.WAITING, ClaimState.DISPUTED)
    ) or (
        expected is not None and expected.state in (PaybillCheck.WAITING, PaybillCheck.UNRESOLVED)
    )
    if unconfirmed:
        raise Conflict(
            "M-PESA has not confirmed this payment yet: nothing was credited to reverse.",
            code="payment_not_confirmed",
        )
    raise NotFound("No payment with this receipt reached Deni.", code="unknown_receipt")


def _reversible(amount_cents: int) -> int:
    # Payments arrive in whole shillings; the reversal sends back the whole payment.
    return require_mpesa_amount(amount_cents, amount_cents_min=STK_CENTS_MIN)


def _checked_receipt(receipt: str) -> str:
    receipt = receipt.strip().upper()
    if not receipt or len(receipt) > RECEIPT_CHARS_MAX or not receipt.isalnum():
        raise ValidationFailed("An M-PESA receipt is letters and digits.", code="invalid_receipt")
    return receipt


def _checked_reason(reason: str) -> str:
    reason = " ".join(reason.split())
    if not reason:
        raise ValidationFailed("Say why the payment goes back.", code="reason_required")
    return reason[:REASON_CHARS_MAX]


def already_reversed(deps: MpesaDeps, request_id: str, *, desc: str, attempt: int) -> bool:
    """M-PESA answers that the payment was reversed already: it went back, but not by this
    request as far as Deni can tell (an earlier attempt, or Safaricom on the org portal). The
    money stays held, neither given back to the member nor taken: an operator decides. False
    for a settled reversal or an earlier attempt."""
    now = deps.clock.now()
    with deps.uow() as uow:
        request = uow.mpesa_requests.lock(request_id)
        assert request is not None
        if request.state not in OPEN_STATES or attempt != request.attempt:
            return False
        request.acknowledged = True
        request.result_code = ALREADY_REVERSED
        record_event(uow, request, EventKind.RESULT, f"{ALREADY_REVERSED}: {desc}", now=now)
        await_decision(uow, request, f"M-PESA says already reversed: {desc}", now=now)
        uow.commit()
    return True


# --- Reading ------------------------------------------------------------------------------------


def list_reversals(deps: MpesaDeps, *, limit: int) -> list[Reversal]:
    """Reversals, newest first, each with who asked, why, and its evidence."""
    if not 1 <= limit <= LIST_MAX:
        raise ValidationFailed(f"Ask for 1 to {LIST_MAX} reversals.", code="invalid_limit")
    with deps.uow.read_only() as uow:
        return [
            _view(request, uow.mpesa_requests.events_for(request.id, limit=EVIDENCE_MAX))
            for request in uow.mpesa_requests.reversals(limit=limit)
        ]


def _view(request: MpesaRequest, evidence: list[RequestEvent]) -> Reversal:
    asked = next((e for e in evidence if e.kind is EventKind.QUEUED), None)
    return Reversal(
        request=request,
        source=ReversalSource.WALLET if request.hold_id else ReversalSource.SUSPENSE,
        requested_by=asked.actor if asked else "",
        reason=asked.detail if asked else "",
        evidence=evidence,
    )


# --- Sending (the worker's outbox handler) --------------------------------------------------------


def handlers(deps: MpesaDeps) -> dict[str, Handler]:
    return {TOPIC_REVERSAL_SEND: lambda message: send_reversal(deps, _request_id(message))}


def _request_id(message: OutboxMessage) -> str:
    payload = json.loads(message.payload)
    assert isinstance(payload, dict)
    request_id = payload["request_id"]
    assert isinstance(request_id, str)
    return request_id


def send_reversal(deps: MpesaDeps, request_id: str) -> None:
    """Send one attempt. Marked SENDING (committed) first, so a worker that dies mid-send
    leaves "maybe sent" for Transaction Status, never a second send."""
    request = begin_send(deps, request_id)
    if request is None:
        return
    assert request.kind is RequestKind.REVERSAL
    assert request.original_receipt is not None
    assert request.originator_conversation_id is not None
    try:
        ack = deps.gateway.reversal(
            original_receipt=request.original_receipt,
            amount_cents=request.amount_cents,
            originator_conversation_id=request.originator_conversation_id,
            remarks=REMARKS,
        )
    except GatewayError as error:
        not_accepted(deps, request.id, error)
        return
    record_accepted(
        deps,
        request.id,
        originator_conversation_id=request.originator_conversation_id,
        conversation_id=ack.conversation_id,
    )
