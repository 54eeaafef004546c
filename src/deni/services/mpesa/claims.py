"""Money a callback says arrived, held back until M-PESA itself confirms it.

Daraja signs no callback. Whoever learns the callback URL (its secret path token) can post a
paybill confirmation for a receipt M-PESA never issued, and a wallet credited with it could be
withdrawn by B2C at once. So money that arrives by a callback Deni cannot match to a request it
made itself (a paybill confirmation; an STK callback for a CheckoutRequestID Deni never learnt,
or whose amount is not what Deni asked, or that pays a push already paid) is first a claim:

- stored with the callback's fields, shown to its owner as arriving (not spendable);
- asked about with Transaction Status by the receipt (`check_due`, every worker pass; never in
  the callback's HTTP answer), or found in the Pull API's listing (paybill_pull.py);
- applied exactly as the callback said once M-PESA agrees: the same receipt, completed, the
  same amount, the same payer where both name one plainly (callbacks.confirm_claim);
- disputed, crediting nothing, when M-PESA says otherwise (another amount, another payer, "not
  found" `not_found_answers_min` times, or no answer after `checks_max` asks): an operator then
  accepts or rejects it (`deni payments claims`, `deni payments claim`), audited.

A Transaction Status result is itself a callback; it counts only as the answer to the query
Deni made, matched by the ConversationID Daraja returned to Deni in its synchronous answer.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog

from deni.domain.errors import InvalidPhoneNumber
from deni.domain.mpesa import SUCCESS
from deni.domain.phone import normalise_msisdn
from deni.services.mpesa.ports import (
    ClaimSource,
    ClaimState,
    ExpectedPaybill,
    GatewayError,
    MpesaDeps,
    PaymentClaim,
    StatusResultEvent,
)
from deni.services.ports import UnitOfWork

log = structlog.get_logger(__name__)

UNDECIDED = (ClaimState.WAITING, ClaimState.DISPUTED)
ARRIVING_MAX = 20  # claims shown to a member; more than this waiting is an operator's matter
COMPLETED = "completed"


def new_claim(
    *,
    receipt: str,
    source: ClaimSource,
    amount_cents: int,
    account_reference: str,
    phone_raw: str,
    phone: str | None,
    user_id: str | None,
    checkout_request_id: str | None,
    claimed_at: datetime,
    deps: MpesaDeps,
) -> PaymentClaim:
    return PaymentClaim(
        receipt=receipt,
        source=source,
        amount_cents=amount_cents,
        account_reference=account_reference,
        phone_raw=phone_raw,
        phone=phone,
        state=ClaimState.WAITING,
        claimed_at=claimed_at,
        updated_at=deps.clock.now(),
        user_id=user_id,
        checkout_request_id=checkout_request_id,
        next_check_at=claimed_at + timedelta(seconds=deps.policy.claim_check_after_s),
    )


def record(deps: MpesaDeps, claim: PaymentClaim) -> PaymentClaim:
    """Store a new claim. Another claim of the same receipt already stored is returned instead:
    if it says something else (another amount, account or payer), both cannot be true and it
    goes to an operator."""
    with deps.uow() as uow:
        if uow.claims.add(claim):
            uow.commit()
            log.info("mpesa.claim_recorded", source=claim.source.value, receipt=claim.receipt)
            return claim
        stored = uow.claims.lock(claim.receipt)
        assert stored is not None
        if _fields(stored) != _fields(claim) and stored.state is ClaimState.WAITING:
            other = f"{claim.amount_cents} cents, account {claim.account_reference!r}"
            _dispute(stored, f"another callback claims this receipt: {other}", deps)
            uow.claims.save(stored)
        elif _fields(stored) != _fields(claim):
            # Too late to hold it back: an operator must compare the two (docs/mpesa.md).
            log.error("mpesa.claim_contradicted_after_settling", receipt=claim.receipt)
        uow.commit()
    return stored


def _fields(claim: PaymentClaim) -> tuple[object, ...]:
    return (claim.amount_cents, claim.account_reference, claim.phone_raw, claim.source)


def check_due(deps: MpesaDeps) -> int:
    """One bounded pass over waiting claims whose check is due: ask Transaction Status by the
    receipt (the answer comes back as a status result, callbacks.py)."""
    now = deps.clock.now()
    with deps.uow.read_only() as uow:
        due = uow.claims.due(now=now, limit=deps.policy.batch_max)
    for claim in due:
        if claim.checks >= deps.policy.checks_max:
            settle(deps, claim.receipt, ClaimState.DISPUTED, "M-PESA never answered about it")
        else:
            _ask(deps, claim.receipt)
    return len(due)


def _ask(deps: MpesaDeps, receipt: str) -> None:
    conversation_id: str | None = None
    try:
        ack = deps.gateway.transaction_status(transaction_id=receipt)
    except GatewayError as error:
        desc = f"status query failed: {error.message}"
    else:
        conversation_id, desc = ack.conversation_id, "Transaction Status asked"
    now = deps.clock.now()
    with deps.uow() as uow:
        claim = uow.claims.lock(receipt)
        assert claim is not None
        if claim.state is not ClaimState.WAITING:
            return  # settled meanwhile
        claim.checks += 1
        claim.next_check_at = now + timedelta(seconds=deps.policy.check_backoff_s)
        claim.result_desc = desc[:200]
        if conversation_id is not None:
            claim.status_conversation_id = conversation_id
        claim.updated_at = now
        uow.claims.save(claim)
        uow.commit()


def unlike_validation(claim: PaymentClaim, validated: ExpectedPaybill | None) -> str | None:
    """What in a paybill claim disagrees with the validation M-PESA asked for the same payment.
    M-PESA asks before the payment completes, before anyone knows its receipt, so the first
    validation stored for a receipt is M-PESA's; Transaction Status does not say the account
    number, this does."""
    if validated is None or claim.source is not ClaimSource.C2B:
        return None
    if validated.amount_cents != claim.amount_cents:
        return f"validated for {validated.amount_cents} cents"
    if compact(validated.account_reference) != compact(claim.account_reference):
        return f"validated for account {validated.account_reference!r}"
    return None


def compact(reference: str) -> str:
    return "".join(reference.split()).upper()


def contradiction(claim: PaymentClaim, event: StatusResultEvent) -> str | None:
    """What in M-PESA's "completed" answer disagrees with the claim; None when it agrees."""
    if event.receipt != claim.receipt:
        return f"M-PESA answered about receipt {event.receipt}"
    if event.amount_cents != claim.amount_cents:
        return f"M-PESA says {event.amount_cents} cents, the callback {claim.amount_cents}"
    payers = {_msisdn(party) for party in event.debit_parties} - {None}
    if claim.phone is not None and payers and claim.phone not in payers:
        return "M-PESA names another payer"
    return None


def _msisdn(party: str) -> str | None:
    """The phone number in "254708374149 - JOHN DOE", when M-PESA shows it plainly."""
    try:
        return normalise_msisdn(party.split(" - ", 1)[0].strip())
    except InvalidPhoneNumber:
        return None


def completed(event: StatusResultEvent) -> bool:
    status = (event.transaction_status or COMPLETED).lower()
    return event.result_code == SUCCESS and status == COMPLETED and event.receipt is not None


def count_not_found(deps: MpesaDeps, receipt: str, desc: str) -> bool:
    """One more "not found" answer; True when enough of them ended the wait (disputed)."""
    now = deps.clock.now()
    with deps.uow() as uow:
        claim = uow.claims.lock(receipt)
        assert claim is not None
        if claim.state is not ClaimState.WAITING:
            return False
        claim.not_found_answers += 1
        claim.updated_at = now
        ended = claim.not_found_answers >= deps.policy.not_found_answers_min
        if ended:
            _dispute(claim, f"M-PESA knows no such payment ({desc})", deps)
        else:
            claim.result_desc = f"not found at M-PESA yet: {desc}"[:200]
        uow.claims.save(claim)
        uow.commit()
    return ended


def settle(
    deps: MpesaDeps, receipt: str, state: ClaimState, desc: str, *, by: str = ""
) -> PaymentClaim | None:
    """End a claim's wait; None when it had ended already (or never existed)."""
    assert state is not ClaimState.WAITING
    now = deps.clock.now()
    with deps.uow() as uow:
        claim = uow.claims.lock(receipt)
        allowed = (ClaimState.WAITING,) if state is ClaimState.CONFIRMED else UNDECIDED
        if claim is None or claim.state not in allowed:
            return None
        if state is ClaimState.DISPUTED:
            _dispute(claim, desc, deps)
        else:
            claim.state, claim.result_desc = state, desc[:200]
            claim.settled_at, claim.next_check_at, claim.decided_by = now, None, by
            if state is ClaimState.CONFIRMED:
                wait = now - claim.claimed_at
                claim.confirm_wait_ms = max(0, round(wait.total_seconds() * 1000))
        claim.updated_at = now
        uow.claims.save(claim)
        uow.commit()
    return claim


def _dispute(claim: PaymentClaim, desc: str, deps: MpesaDeps) -> None:
    claim.state, claim.result_desc, claim.next_check_at = ClaimState.DISPUTED, desc[:200], None
    claim.updated_at = deps.clock.now()
    log.warning("mpesa.claim_disputed", receipt=claim.receipt, reason=desc[:200])


def arriving(uow: UnitOfWork, *, user_id: str) -> list[PaymentClaim]:
    """A member's money on its way, newest first: claimed by a callback, not yet confirmed by
    M-PESA, so not in the wallet and not spendable (inside the caller's transaction)."""
    return uow.claims.arriving(user_id, limit=ARRIVING_MAX)
