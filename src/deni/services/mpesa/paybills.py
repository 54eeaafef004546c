"""Paybill payments whose confirmation never came.

M-PESA asks Deni to validate a paybill (C2B) payment, completes it, then posts the confirmation;
only the confirmation credits a wallet. Confirmations can be lost, and Daraja offers no way to
list the payments a paybill received except the Pull API, which only production has. So every
payment Deni accepts at validation is written down here, with what the validation body said.
The reconciler looks again after `paybill_confirm_after_s`: a confirmation received settles it
(the claim that confirmation made is then checked with M-PESA, claims.py); otherwise
Transaction Status by the receipt is asked, and a "Completed" answer with the same amount (and
payer, where both are plain) is applied as the confirmation would have been (callbacks.py).
Crediting is keyed by the receipt, so a confirmation arriving after that, or both at once,
credits once.

Payments M-PESA completes without asking (validation off at Safaricom, or our answer too late
with ResponseType "Completed") are not seen here; the daily balance report shows those.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog

from deni.services.mpesa.ports import (
    C2BEvent,
    ExpectedPaybill,
    GatewayError,
    MpesaDeps,
    MpesaPolicy,
    PaybillCheck,
)

log = structlog.get_logger(__name__)


def confirmation_key(trans_id: str) -> str:
    """How the inbox dedupe key of a paybill payment's confirmation begins (what the body says
    follows it: callbacks.dedupe_key)."""
    return f"c2b:{trans_id}"


def expected_from(event: C2BEvent, *, now: datetime, policy: MpesaPolicy) -> ExpectedPaybill:
    return ExpectedPaybill(
        trans_id=event.trans_id,
        amount_cents=event.amount_cents,
        account_reference=event.account_reference,
        phone_raw=event.phone_raw,
        phone=event.phone,
        state=PaybillCheck.WAITING,
        created_at=now,
        updated_at=now,
        next_check_at=now + timedelta(seconds=policy.paybill_confirm_after_s),
    )


def as_confirmation(expected: ExpectedPaybill) -> C2BEvent:
    """The confirmation M-PESA would have sent, from what its validation said."""
    return C2BEvent(
        expected.trans_id,
        expected.amount_cents,
        expected.account_reference,
        expected.phone,
        expected.phone_raw,
    )


def check_due(deps: MpesaDeps) -> int:
    """One bounded pass over the expected payments whose check is due."""
    now = deps.clock.now()
    with deps.uow.read_only() as uow:
        due = uow.paybills.due(now=now, limit=deps.policy.batch_max)
        claimed = uow.claims.for_receipts([expected.trans_id for expected in due])
    for expected in due:
        if expected.trans_id in claimed:
            # Its confirmation came: the claim it made is checked with M-PESA (claims.py).
            settle(deps, expected.trans_id, PaybillCheck.CONFIRMED, "confirmation received")
        elif expected.checks >= deps.policy.checks_max:
            desc = "no answer from M-PESA: an operator must look"
            settle(deps, expected.trans_id, PaybillCheck.UNRESOLVED, desc)
        else:
            _ask(deps, expected.trans_id)
    return len(due)


def _ask(deps: MpesaDeps, trans_id: str) -> None:
    conversation_id: str | None = None
    try:
        ack = deps.gateway.transaction_status(transaction_id=trans_id)
    except GatewayError as error:
        desc = f"status query failed: {error.message}"
    else:
        conversation_id, desc = ack.conversation_id, "status asked"
    now = deps.clock.now()
    with deps.uow() as uow:
        expected = uow.paybills.lock(trans_id)
        assert expected is not None
        if expected.state is not PaybillCheck.WAITING:
            return  # settled meanwhile
        expected.checks += 1
        expected.next_check_at = now + timedelta(seconds=deps.policy.check_backoff_s)
        expected.result_desc = desc
        if conversation_id is not None:
            expected.status_conversation_id = conversation_id
        expected.updated_at = now
        uow.paybills.save(expected)
        uow.commit()


def settle(deps: MpesaDeps, trans_id: str, state: PaybillCheck, desc: str) -> bool:
    """Ends the wait (no more checks); False when it had ended already."""
    assert state is not PaybillCheck.WAITING
    now = deps.clock.now()
    with deps.uow() as uow:
        expected = uow.paybills.lock(trans_id)
        if expected is None or expected.state is not PaybillCheck.WAITING:
            return False
        expected.state, expected.result_desc = state, desc
        expected.next_check_at, expected.updated_at = None, now
        uow.paybills.save(expected)
        uow.commit()
    log_at = log.warning if state is PaybillCheck.UNRESOLVED else log.info
    log_at("mpesa.paybill_settled", state=state.value, desc=desc)
    return True
