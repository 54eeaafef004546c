"""Paybill payments nobody told Deni about: found with the Pull API.

paybills.py follows the payments Deni accepted at validation. A payment M-PESA completes
without asking (validation off at Safaricom, or Deni's answer too late with ResponseType
"Completed") is known only from its confirmation, and if that is lost, only the Pull API lists
it (Daraja keeps 48 hours; production only at Safaricom, the local sandbox has it too).

A payment a callback claimed (claims.py) and the listing shows alike (amount, account number,
payer where both are plain) is confirmed by it, and applied as the callback said.

Every `pull_interval_s` one pass lists the window from where the last finished pass ended
(reaching back `pull_overlap_s`, as M-PESA may list a payment late) to `pull_settle_s` ago
(younger payments still have their confirmation on the way). Each payment Deni has no trace of
is applied as its confirmation would have been. Everything that credits is keyed by the
receipt, so a confirmation arriving afterwards, or a pass overlapping the last, credits once.

A payment that may be one of Deni's own STK pushes (same amount, the push made in the hour
before and not yet settled, the same account number, the same phone when M-PESA lists it
plainly) is left alone: the push's own checks (STK Query, then Transaction Status) settle it
with its purpose, such as a loan repayment, and applying it here as well would apply it twice.
"""

from __future__ import annotations

from datetime import timedelta

import structlog

from deni.ids import new_id
from deni.services.mpesa import callbacks, claims
from deni.services.mpesa.ports import (
    ClaimSource,
    ClaimState,
    GatewayError,
    MpesaDeps,
    PaybillPull,
    PaymentClaim,
    PulledPayment,
)
from deni.services.mpesa.requests import compact_reference, stk_account_reference

PULL_WINDOW_MAX = timedelta(hours=48) - timedelta(minutes=10)  # clear of Daraja's edge
PULL_PAGES_MAX = 500  # 500 pages of Daraja's rows a pass; a pass that needs more fails loudly
STK_LOOKBACK = timedelta(hours=1)  # a push older than this is not paid now
# M-PESA lists whole seconds on its own clock; Deni's push was stamped on Deni's.
CLOCK_SKEW = timedelta(minutes=2)
STK_LIKE_MAX = 100  # more look-alike pushes than this: leave the payment, to be safe

log = structlog.get_logger(__name__)


def pull_due(deps: MpesaDeps) -> bool:
    interval_s = deps.policy.pull_interval_s
    if interval_s == 0:
        return False
    with deps.uow.read_only() as uow:
        last = uow.pulls.last(finished_only=False)
    return last is None or last.started_at + timedelta(seconds=interval_s) <= deps.clock.now()


def pull_missed_payments(deps: MpesaDeps) -> PaybillPull:
    """One pass: list the window, apply what Deni has never seen. Returns the pass's record."""
    pull = _begin(deps)
    try:
        _list_window(deps, pull)
    except GatewayError as error:
        pull.state, pull.error = "failed", f"Daraja: {error.message}"
    except _TooManyPages:
        pull.state, pull.error = "failed", f"more than {PULL_PAGES_MAX} pages in one window"
    else:
        pull.state = "done"
    pull.finished_at = deps.clock.now()
    with deps.uow() as uow:
        uow.pulls.save(pull)
        uow.commit()
    log_at = log.info if pull.state == "done" else log.warning
    log_at(
        "mpesa.pull_finished",
        state=pull.state,
        rows=pull.rows,
        recovered=pull.recovered,
        left_to_stk=pull.left_to_stk,
        error=pull.error or None,
    )
    return pull


class _TooManyPages(Exception):
    pass


def _begin(deps: MpesaDeps) -> PaybillPull:
    now = deps.clock.now()
    end = now - timedelta(seconds=deps.policy.pull_settle_s)
    earliest = now - PULL_WINDOW_MAX
    with deps.uow.read_only() as uow:
        last = uow.pulls.last(finished_only=True)
    start = earliest
    if last is not None:
        start = max(earliest, last.window_end - timedelta(seconds=deps.policy.pull_overlap_s))
    pull = PaybillPull(new_id(), window_start=min(start, end), window_end=end, started_at=now)
    with deps.uow() as uow:
        uow.pulls.add(pull)
        uow.commit()
    return pull


def _list_window(deps: MpesaDeps, pull: PaybillPull) -> None:
    for _ in range(PULL_PAGES_MAX):
        page = deps.gateway.pull_payments(
            start=pull.window_start, end=pull.window_end, offset=pull.rows
        )
        if page.rows == 0:
            return
        pull.rows += page.rows
        _apply_unseen(deps, pull, page.payments)
    raise _TooManyPages


def _apply_unseen(deps: MpesaDeps, pull: PaybillPull, payments: tuple[PulledPayment, ...]) -> None:
    receipts = [payment.trans_id for payment in payments]
    with deps.uow.read_only() as uow:
        claimed = uow.claims.for_receipts(receipts)
        seen = uow.claims.receipts_seen(receipts)
    for payment in payments:
        claim = claimed.get(payment.trans_id)
        if claim is not None:
            _confirm_by_listing(deps, claim, payment)
            continue
        if payment.trans_id in seen:
            continue
        if _maybe_own_push(deps, payment):
            pull.left_to_stk += 1
            log.info("mpesa.pull_left_to_stk", receipt=payment.trans_id)
            continue
        callbacks.apply_pulled_payment(deps, payment)
        pull.recovered += 1
        log.warning("mpesa.pull_recovered", receipt=payment.trans_id)


def _confirm_by_listing(deps: MpesaDeps, claim: PaymentClaim, payment: PulledPayment) -> None:
    """M-PESA lists a payment a callback claimed: a waiting claim holds if the listing agrees
    (a disputed one is an operator's, whatever the listing says)."""
    if claim.state is not ClaimState.WAITING:
        return
    with deps.uow.read_only() as uow:
        validated = uow.paybills.get(claim.receipt)
    wrong = _listing_differs(claim, payment) or claims.unlike_validation(claim, validated)
    if wrong is None:
        callbacks.confirm_claim(deps, claim, "confirmed by the Pull API")
        log.info("mpesa.pull_confirmed_claim", receipt=claim.receipt)
    else:
        claims.settle(deps, claim.receipt, ClaimState.DISPUTED, f"the Pull API: {wrong}")


def _listing_differs(claim: PaymentClaim, payment: PulledPayment) -> str | None:
    if payment.amount_cents != claim.amount_cents:
        return f"M-PESA lists {payment.amount_cents} cents, the callback {claim.amount_cents}"
    if claim.source is ClaimSource.C2B and compact_reference(
        payment.account_reference
    ) != compact_reference(claim.account_reference):
        return "M-PESA lists another account number"
    if claim.phone is not None and payment.phone is not None and claim.phone != payment.phone:
        return "M-PESA lists another payer"
    return None


def _maybe_own_push(deps: MpesaDeps, payment: PulledPayment) -> bool:
    with deps.uow.read_only() as uow:
        pushes = uow.mpesa_requests.stk_pushes_like(
            amount_cents=payment.amount_cents,
            phone=payment.phone,
            created_from=payment.paid_at - STK_LOOKBACK,
            created_to=payment.paid_at + CLOCK_SKEW,
            limit=STK_LIKE_MAX,
        )
        if len(pushes) >= STK_LIKE_MAX:
            return True
        references = {
            compact_reference(stk_account_reference(deps.policy, uow, push)) for push in pushes
        }
    return compact_reference(payment.account_reference) in references
