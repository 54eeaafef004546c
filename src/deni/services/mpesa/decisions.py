"""What M-PESA could not settle, a person decides, once, and is on the record.

Payouts nobody can settle by asking M-PESA:

A payout reaches this list when an attempt may have reached Safaricom (a timeout, a reset after
the request was written, an answer Deni could not read) and Transaction Status never said what
became of it: "not found" is no proof that it never arrived, so no machine sends it again or
gives the money back. The money stays held. An operator reads the evidence (each attempt, its
time and outcome, each status answer), asks Safaricom if need be, and decides:

- `resend`: a new send, with a new OriginatorConversationID;
- `fail`: the hold is voided, the money returns to the wallet;
- `succeeded`: the hold is posted, with the M-PESA receipt the operator found.

Each decision is one audit row whose actor is the operator, and one line of the evidence. A
decision is taken under the request's row lock and clears the wait, so a second decision on the
same wait is refused.

Money a callback claimed that M-PESA did not confirm (claims.py): an operator who has checked
with Safaricom `accept`s it (applied exactly as its callback said) or `reject`s it (nothing is
credited). Also once, and audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from deni.domain.errors import Conflict, NotFound, ValidationFailed
from deni.domain.mpesa import OPEN_STATES, EventKind, MpesaRequest, RequestEvent, RequestKind
from deni.domain.operators import require_actor
from deni.services.common import audit
from deni.services.mpesa import callbacks
from deni.services.mpesa.journal import DESC_CHARS_MAX, record_event
from deni.services.mpesa.payments import RECEIPT_CHARS_MAX
from deni.services.mpesa.ports import ClaimState, MpesaDeps, PaymentClaim
from deni.services.mpesa.settle import fail_held_payout, post_payout, resend_payout

# Payouts, and reversals (money going back to a payer) wait and are decided alike.
DECIDABLE = frozenset({RequestKind.B2C, RequestKind.REVERSAL})
WAITING_LIST_MAX = 100
EVIDENCE_MAX = 200  # lines of evidence shown per payout
REASON_CHARS_MAX = 200


class Decision(StrEnum):
    RESEND = "resend"
    FAIL = "fail"
    SUCCEEDED = "succeeded"


@dataclass(frozen=True, slots=True)
class WaitingPayout:
    request: MpesaRequest
    evidence: list[RequestEvent]


def waiting_payouts(deps: MpesaDeps, *, limit: int = WAITING_LIST_MAX) -> list[WaitingPayout]:
    """Payouts waiting for a decision, oldest first, each with its evidence."""
    assert 1 <= limit <= WAITING_LIST_MAX
    with deps.uow.read_only() as uow:
        requests = uow.mpesa_requests.awaiting_decision(limit=limit)
        return [
            WaitingPayout(request, uow.mpesa_requests.events_for(request.id, limit=EVIDENCE_MAX))
            for request in requests
        ]


def evidence(deps: MpesaDeps, request_id: str) -> WaitingPayout:
    with deps.uow.read_only() as uow:
        request = uow.mpesa_requests.get(request_id)
        if request is None or request.kind not in DECIDABLE:
            raise NotFound("No such payout.", code="payout_not_found")
        return WaitingPayout(request, uow.mpesa_requests.events_for(request.id, limit=EVIDENCE_MAX))


def decide_payout(
    deps: MpesaDeps,
    *,
    request_id: str,
    decision: Decision,
    operator: str,
    reason: str,
    receipt: str | None = None,
) -> MpesaRequest:
    """Settle a payout waiting for a decision, once; audited with the operator as actor."""
    operator, reason = require_actor(operator), _checked_reason(reason)
    if decision is Decision.SUCCEEDED:
        receipt = _checked_receipt(receipt)
    elif receipt is not None:
        raise ValidationFailed("Only a payout that succeeded has a receipt.", code="no_receipt")
    now = deps.clock.now()
    with deps.uow() as uow:
        request = uow.mpesa_requests.lock(request_id)
        if request is None or request.kind not in DECIDABLE:
            raise NotFound("No such payout.", code="payout_not_found")
        if not request.awaiting_decision or request.state not in OPEN_STATES:
            raise Conflict(
                f"This payout is not waiting for a decision (it is {request.state.value}).",
                code="not_awaiting_decision",
            )
        attempt = request.attempt
        detail = f"{decision.value} by {operator}: {reason}"
        if receipt is not None:
            detail += f" (receipt {receipt})"
        record_event(uow, request, EventKind.DECISION, detail, now=now, actor=operator)
        if decision is Decision.RESEND:
            resend_payout(uow, request, f"decided by {operator}: {reason}", now=now)
        elif decision is Decision.FAIL:
            request.result_code = "operator"
            fail_held_payout(uow, request, f"failed by {operator}: {reason}", now=now)
        else:
            assert receipt is not None
            desc = f"paid, says {operator}: {reason}"
            post_payout(uow, request, receipt=receipt, amount_cents=None, desc=desc, now=now)
        audit(
            uow,
            actor_id=operator,
            channel="cli",
            command="payout_decision",
            details={
                "request_id": request.id,
                "decision": decision.value,
                "attempt": attempt,
                "reason": reason,
                "receipt": receipt,
                "amount_cents": request.amount_cents,
            },
            now=now,
        )
        uow.commit()
    return request


class ClaimDecision(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"


UNDECIDED = (ClaimState.WAITING, ClaimState.DISPUTED)


def open_claims(deps: MpesaDeps, *, limit: int = WAITING_LIST_MAX) -> list[PaymentClaim]:
    """Claims M-PESA has not confirmed: disputed ones (an operator decides) and waiting ones."""
    assert 1 <= limit <= WAITING_LIST_MAX
    with deps.uow.read_only() as uow:
        return uow.claims.in_states(states=list(UNDECIDED), limit=limit)


def decide_claim(
    deps: MpesaDeps,
    *,
    receipt: str,
    decision: ClaimDecision,
    operator: str,
    reason: str,
    account_reference: str | None = None,
) -> PaymentClaim:
    """Accept (apply as its callback said) or reject (credit nothing) a claim, once; audited.
    An operator who found at Safaricom that the payment was for another account number (two
    callbacks disagreed) accepts it with that `account_reference`. Accepting an accepted claim
    again only finishes applying it (every step is keyed by the receipt): no second decision."""
    operator, reason = require_actor(operator), _checked_reason(reason)
    if account_reference is not None and (
        decision is not ClaimDecision.ACCEPT or not 1 <= len(account_reference) <= 40
    ):
        raise ValidationFailed(
            "Only an accepted payment takes an account number (1 to 40 characters).",
            code="invalid_account",
        )
    now = deps.clock.now()
    state = ClaimState.ACCEPTED if decision is ClaimDecision.ACCEPT else ClaimState.REJECTED
    with deps.uow() as uow:
        claim = uow.claims.lock(receipt)
        if claim is None:
            raise NotFound("No such claimed payment.", code="claim_not_found")
        finishing = claim.state is ClaimState.ACCEPTED and state is ClaimState.ACCEPTED
        if claim.state not in UNDECIDED and not finishing:
            raise Conflict(
                f"This payment was already decided ({claim.state.value}).",
                code="claim_decided",
            )
        push = uow.mpesa_requests.find_by_checkout(claim.checkout_request_id or "")
        if (
            state is ClaimState.ACCEPTED
            and push is not None
            and push.receipt
            not in (
                None,
                claim.receipt,
            )
        ):
            raise Conflict(
                f"Its push was already credited under receipt {push.receipt}: reject this one, "
                "or correct that credit first.",
                code="push_already_credited",
            )
        if not finishing:
            claim.state, claim.decided_by = state, operator
            if account_reference is not None:
                claim.account_reference = account_reference
            claim.result_desc = f"{decision.value}ed by {operator}: {reason}"[:DESC_CHARS_MAX]
            claim.settled_at, claim.next_check_at, claim.updated_at = now, None, now
            uow.claims.save(claim)
            audit(
                uow,
                actor_id=operator,
                channel="cli",
                command="claim_decision",
                details={
                    "receipt": claim.receipt,
                    "decision": decision.value,
                    "reason": reason,
                    "amount_cents": claim.amount_cents,
                    "source": claim.source.value,
                    "account_reference": claim.account_reference,
                },
                now=now,
            )
        uow.commit()
    if state is ClaimState.ACCEPTED:
        held = callbacks.apply_claim(deps, claim)
        assert held is None, held  # checked under the lock above
    return claim


def _checked_reason(reason: str) -> str:
    reason = " ".join(reason.split())
    if not reason or len(reason) > REASON_CHARS_MAX:
        raise ValidationFailed(
            f"Say why, in 1 to {REASON_CHARS_MAX} characters.", code="invalid_reason"
        )
    return reason[:DESC_CHARS_MAX]


def _checked_receipt(receipt: str | None) -> str:
    if not receipt or len(receipt) > RECEIPT_CHARS_MAX or not receipt.isalnum():
        raise ValidationFailed(
            "A payout that succeeded needs the M-PESA receipt the operator found.",
            code="invalid_receipt",
        )
    return receipt.upper()
