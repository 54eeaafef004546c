"""The reconciler: re-drives whatever the callbacks did not settle, and the daily sweeps.

- Pushes with no callback after a few minutes: STK Query; a paid one is then confirmed (and its
  receipt learnt) by Transaction Status, because only a receipt may credit a wallet.
- Payouts with no result (or an unknown send), and payouts whose failure result is not yet
  confirmed: Transaction Status by OriginatorConversationID. A payout nobody can settle this
  way waits for an operator's decision; it is never sent again by the reconciler.
- Paybill payments accepted at validation with no confirmation after a few minutes:
  Transaction Status by receipt (paybills.py).
  Each check is bounded (`checks_max`); what is left waits for an operator.
- Sweeps: loan principals to borrowers who want M-PESA, repayments to lenders with auto-payout,
  auto-repay on the due date, suspense assignments left halfway.
- A daily balance report: Daraja's account balances beside the ledger's M-PESA accounts.
Every step is idempotent, so any number of reconcilers may run at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import structlog

from deni.domain.errors import (
    Conflict,
    DomainError,
    InsufficientFunds,
    LockedBySupport,
    MoneyOnHold,
    NotFound,
)
from deni.domain.loans import LoanState
from deni.domain.money import CENTS_PER_SHILLING
from deni.domain.mpesa import (
    B2C_CENTS_MIN,
    MPESA_CENTS_MAX,
    OPEN_STATES,
    SUCCESS,
    UNANSWERED_PUSH_CODE,
    EventKind,
    MpesaRequest,
    Purpose,
    RequestKind,
    RequestState,
)
from deni.domain.users import nairobi_today
from deni.ids import new_id
from deni.services import ledger, loans
from deni.services.common import SYSTEM_ACTOR, audit
from deni.services.mpesa import balances, paybill_pull, paybills, payments
from deni.services.mpesa.journal import record_event
from deni.services.mpesa.ports import (
    BalanceReport,
    GatewayError,
    GatewayOutcome,
    MpesaDeps,
    PayoutCandidate,
    SuspenseState,
)
from deni.services.mpesa.requests import record_stk, request_payout
from deni.services.mpesa.settle import await_decision, fail_stk
from deni.services.ports import UnitOfWork

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    checked: int = 0
    paybills_checked: int = 0
    disbursements: int = 0
    auto_payouts: int = 0
    auto_repaid: int = 0
    assignments_resumed: int = 0
    pulled_recovered: int = 0  # paybill payments found only by the Pull API


def reconcile_once(deps: MpesaDeps) -> ReconcileReport:
    """One bounded pass of everything the reconciler does (the worker calls it on a schedule)."""
    recovered = 0
    if paybill_pull.pull_due(deps):
        recovered = paybill_pull.pull_missed_payments(deps).recovered
    return ReconcileReport(
        pulled_recovered=recovered,
        checked=check_due(deps),
        paybills_checked=paybills.check_due(deps),
        disbursements=sweep_disbursements(deps),
        auto_payouts=sweep_auto_payouts(deps),
        auto_repaid=auto_repay(deps),
        assignments_resumed=resume_assignments(deps),
    )


# --- Requests with no answer ---------------------------------------------------------------------


def check_due(deps: MpesaDeps) -> int:
    now = deps.clock.now()
    with deps.uow.read_only() as uow:
        due = uow.mpesa_requests.due_checks(now=now, limit=deps.policy.batch_max)
    for request_id in due:
        check_request(deps, request_id)
    return len(due)


def check_request(deps: MpesaDeps, request_id: str) -> None:
    with deps.uow.read_only() as uow:
        request = uow.mpesa_requests.get(request_id)
    assert request is not None
    if request.state is RequestState.SENDING:
        _settle_check(deps, request_id, desc="the worker stopped mid-send", unknown=True)
    elif request.status_checks >= deps.policy.checks_max:
        _settle_check(deps, request_id, desc="no answer from M-PESA: an operator must look")
    elif request.kind is RequestKind.STK:
        _check_stk(deps, request)
    else:
        _ask_status(deps, request, originator_conversation_id=request.originator_conversation_id)


def _settle_check(deps: MpesaDeps, request_id: str, *, desc: str, unknown: bool = False) -> None:
    now = deps.clock.now()
    with deps.uow() as uow:
        request = uow.mpesa_requests.lock(request_id)
        assert request is not None
        if unknown and request.state is RequestState.SENDING:
            request.state = RequestState.UNKNOWN
            request.next_check_at = now  # ask at once: the send was at least a lease ago
            request.result_desc = desc[:200]
            uow.mpesa_requests.save(request, now)
            record_event(uow, request, EventKind.SEND_ERROR, desc, now=now)
        elif request.kind is not RequestKind.STK and request.state in OPEN_STATES:
            await_decision(uow, request, desc, now=now)  # a payout or a reversal
        else:
            request.next_check_at = None  # `deni payments open` shows it for an operator
            request.result_desc = desc[:200]
            uow.mpesa_requests.save(request, now)
        uow.commit()
    log.warning("mpesa.check_settled", request_id=request_id, desc=desc)


def _check_stk(deps: MpesaDeps, request: MpesaRequest) -> None:
    if request.checkout_request_id is None:
        # Never acknowledged: nothing to ask about. A payment, if any, comes with an id Deni
        # never learnt; its callback is matched back by phone and amount (callbacks.py).
        desc = "no answer from Daraja to the push"
        fail_stk(deps, request.id, code=UNANSWERED_PUSH_CODE, desc=desc)
        return
    try:
        answer = deps.gateway.stk_query(checkout_request_id=request.checkout_request_id)
    except GatewayError as error:
        pending = error.outcome is GatewayOutcome.BUSY
        _next_check(deps, request.id, desc="still waiting" if pending else error.message)
        return
    if answer.result_code != SUCCESS:
        fail_stk(deps, request.id, code=answer.result_code, desc=answer.result_desc)
        return
    # Paid, says the query; the receipt comes from Transaction Status.
    _ask_status(deps, request, originator_conversation_id=request.checkout_request_id)


def _ask_status(
    deps: MpesaDeps, request: MpesaRequest, *, originator_conversation_id: str | None
) -> None:
    if originator_conversation_id is None:
        _next_check(deps, request.id, desc="no id to ask about")
        return
    try:
        ack = deps.gateway.transaction_status(originator_conversation_id=originator_conversation_id)
    except GatewayError as error:
        _next_check(deps, request.id, desc=f"status query failed: {error.message}")
        return
    desc = f"status asked about {originator_conversation_id}"
    _next_check(deps, request.id, desc=desc, status_conversation_id=ack.conversation_id)


def _next_check(
    deps: MpesaDeps, request_id: str, *, desc: str, status_conversation_id: str | None = None
) -> None:
    now = deps.clock.now()
    with deps.uow() as uow:
        request = uow.mpesa_requests.lock(request_id)
        assert request is not None
        if request.state in (RequestState.SUCCEEDED, RequestState.FAILED):
            return  # settled meanwhile
        request.status_checks += 1
        request.next_check_at = now + timedelta(seconds=deps.policy.check_backoff_s)
        if request.claimed_failure_code is None:  # else keep saying what is being confirmed
            request.result_desc = desc[:200]
        if status_conversation_id is not None:
            request.status_conversation_id = status_conversation_id
        uow.mpesa_requests.save(request, now)
        record_event(uow, request, EventKind.STATUS_ASKED, desc, now=now)
        uow.commit()


# --- Sweeps --------------------------------------------------------------------------------------


def _whole_shillings(amount_cents: int) -> int:
    return amount_cents - amount_cents % CENTS_PER_SHILLING


def sweep_disbursements(deps: MpesaDeps) -> int:
    """Approved loans whose borrower wants the money on M-PESA: pay the principal out."""
    since = deps.clock.now() - timedelta(seconds=deps.policy.sweep_window_s)
    with deps.uow.read_only() as uow:
        found = uow.payouts_due.loans_to_disburse(since=since, limit=deps.policy.batch_max)
    for candidate in found:
        queue_payout(deps, candidate, purpose=Purpose.DISBURSEMENT, key=candidate.loan_id)
    return len(found)


def sweep_auto_payouts(deps: MpesaDeps) -> int:
    """Repayments that reached lenders who asked for automatic payout."""
    since = deps.clock.now() - timedelta(seconds=deps.policy.sweep_window_s)
    with deps.uow.read_only() as uow:
        found = uow.payouts_due.repayments_to_pay_out(since=since, limit=deps.policy.batch_max)
    for candidate in found:
        queue_payout(deps, candidate, purpose=Purpose.AUTO_PAYOUT, key=candidate.source_id)
    return len(found)


def queue_payout(
    deps: MpesaDeps, candidate: PayoutCandidate, *, purpose: Purpose, key: str
) -> None:
    """Hold and queue a B2C for a wallet's fresh money. If the wallet no longer holds it (spent,
    or taken by an overdue loan), a failed request records that it stays in the wallet."""
    now = deps.clock.now()
    amount_cents = _whole_shillings(candidate.amount_cents)
    with deps.uow() as uow:
        # Two workers' sweeps can find the same candidate: the member's row orders them, and
        # the second finds the first's request (paid out or kept) instead of adding its own.
        owner = uow.users.lock(candidate.user_id)
        assert owner is not None
        if uow.mpesa_requests.find_by_key(f"{purpose.value}:{owner.id}:{key}") is not None:
            return
        if not owner.money_may_leave(now):
            return  # held (a PIN reset, customer care): a sweep after the hold pays it out
        balance_cents = ledger.wallet_balance_cents(uow, user_id=candidate.user_id)
        if amount_cents >= B2C_CENTS_MIN and balance_cents >= amount_cents:
            request_payout(
                uow,
                user_id=candidate.user_id,
                amount_cents=amount_cents,
                idempotency_key=key,
                now=now,
                purpose=purpose,
                loan_id=candidate.loan_id,
            )
        else:
            _record_kept(uow, candidate, purpose=purpose, key=key, now=now)
        uow.commit()


def _record_kept(
    uow: UnitOfWork, candidate: PayoutCandidate, *, purpose: Purpose, key: str, now: datetime
) -> None:
    user = uow.users.get(candidate.user_id)
    assert user is not None
    uow.mpesa_requests.add(
        MpesaRequest(
            id=new_id(),
            kind=RequestKind.B2C,
            purpose=purpose,
            user_id=user.id,
            loan_id=candidate.loan_id,
            phone=user.phone,
            amount_cents=max(candidate.amount_cents, 1),
            idempotency_key=f"{purpose.value}:{user.id}:{key}",
            state=RequestState.FAILED,
            created_at=now,
            updated_at=now,
            result_desc="kept in the wallet: it no longer holds the amount, or it is too small",
        )
    )


def auto_repay(deps: MpesaDeps) -> int:
    """On (and after) the due date: take what the borrower's wallet holds; if short, an STK push
    for the rest, at most once a day and `auto_repay_stk_max` times per loan."""
    now = deps.clock.now()
    today = nairobi_today(now)
    with deps.uow.read_only() as uow:
        due = uow.loans.ids_in_state(
            states=[LoanState.ACTIVE],
            due_before=today + timedelta(days=1),
            limit=deps.policy.batch_max,
        )
    repaid = 0
    for loan_id in due:
        repaid += _auto_repay_loan(deps, loan_id, today)
    return repaid


def _auto_repay_loan(deps: MpesaDeps, loan_id: str, today: date) -> int:
    with deps.uow.read_only() as uow:
        loan = uow.loans.get(loan_id)
        assert loan is not None
        balance_cents = ledger.wallet_balance_cents(uow, user_id=loan.borrower_id)
    if loan.state is not LoanState.ACTIVE:
        return 0
    taken = 0
    if balance_cents > 0:
        try:
            loans.repay_loan_by_system(
                deps,
                borrower_id=loan.borrower_id,
                loan_id=loan.id,
                amount_cents=balance_cents,
                idempotency_key=f"auto_repay:{loan.id}:{today.isoformat()}",
                channel="system",
            )
            taken = 1
        except (Conflict, InsufficientFunds, NotFound, MoneyOnHold, LockedBySupport) as error:
            # Held after a PIN reset (or by support): a later sweep tries again.
            log.info("mpesa.auto_repay_skipped", loan_id=loan.id, reason=error.code)
    _auto_repay_push(deps, loan.id, today)
    return taken


def _auto_repay_push(deps: MpesaDeps, loan_id: str, today: date) -> None:
    now = deps.clock.now()
    with deps.uow() as uow:
        loan = uow.loans.get(loan_id)
        assert loan is not None
        if loan.state is not LoanState.ACTIVE:
            return
        if uow.mpesa_requests.count(loan_id=loan.id, purpose=Purpose.AUTO_REPAY) >= (
            deps.policy.auto_repay_stk_max
        ):
            return
        loan.accrue_penalty(today)
        owed_cents = loan.owed().total_cents
        if owed_cents <= 0:
            return
        shillings = -(-owed_cents // CENTS_PER_SHILLING)  # round up: M-PESA moves shillings
        try:
            record_stk(
                uow,
                user_id=loan.borrower_id,
                amount_cents=min(shillings * CENTS_PER_SHILLING, MPESA_CENTS_MAX),
                idempotency_key=f"{loan.id}:{today.isoformat()}",
                now=now,
                purpose=Purpose.AUTO_REPAY,
                loan_id=loan.id,
            )
        except DomainError as error:
            log.info("mpesa.auto_repay_push_skipped", loan_id=loan.id, reason=error.code)
            return
        uow.commit()


# --- Suspense -------------------------------------------------------------------------------------


def assign_suspense(deps: MpesaDeps, *, receipt: str, user_id: str) -> None:
    """An operator says whose money a suspense payment is: it moves to that wallet, through
    `record_mpesa_payment` (so overdue loans and waiting approvals see it like any deposit).
    Resumable: each step is keyed, and `resume_assignments` finishes one left halfway."""
    now = deps.clock.now()
    with deps.uow() as uow:
        payment = uow.suspense.lock(receipt)
        if payment is None:
            raise NotFound("No such suspense payment.", code="suspense_not_found")
        if uow.users.get(user_id) is None:
            raise NotFound("No such user.", code="user_not_found")
        if payment.state in (SuspenseState.REVERSING, SuspenseState.REVERSED):
            raise Conflict(
                f"This payment is {payment.state.value}: it goes back to its payer.",
                code="payment_reversed",
            )
        if payment.state is not SuspenseState.UNASSIGNED and payment.user_id != user_id:
            raise Conflict("This payment is already assigned to someone else.", code="assigned")
        if payment.state is SuspenseState.UNASSIGNED:
            payment.state, payment.user_id = SuspenseState.ASSIGNING, user_id
            uow.suspense.save(payment)
            audit(
                uow,
                actor_id=SYSTEM_ACTOR,
                channel="cli",
                command="assign_suspense",
                details={"receipt": receipt, "user_id": user_id},
                now=now,
            )
        uow.commit()
    _finish_assignment(deps, receipt)


def _finish_assignment(deps: MpesaDeps, receipt: str) -> None:
    now = deps.clock.now()
    with deps.uow() as uow:
        payment = uow.suspense.lock(receipt)
        assert payment is not None
        assert payment.user_id is not None
        if payment.state is SuspenseState.ASSIGNED:
            return
        # Out of suspense and back to "received, not yet credited"...
        ledger.reverse_entry(
            uow,
            entry_id=payment.entry_id,
            idempotency_key=f"unsuspense:{receipt}",
            reason=f"assigned {receipt}",
            now=now,
        )
        uow.commit()
    # ...then credited the one way money enters a wallet.
    payments.record_mpesa_payment(
        deps,
        user_id=payment.user_id,
        amount_cents=payment.amount_cents,
        receipt=receipt,
    )
    with deps.uow() as uow:
        stored = uow.suspense.lock(receipt)
        assert stored is not None
        stored.state, stored.assigned_at = SuspenseState.ASSIGNED, deps.clock.now()
        uow.suspense.save(stored)
        uow.commit()


def resume_assignments(deps: MpesaDeps) -> int:
    with deps.uow.read_only() as uow:
        halfway = uow.suspense.in_states(
            states=[SuspenseState.ASSIGNING], limit=deps.policy.batch_max
        )
    for payment in halfway:
        _finish_assignment(deps, payment.receipt)
    return len(halfway)


# --- Balances ------------------------------------------------------------------------------------


def request_balance_report(deps: MpesaDeps) -> BalanceReport:
    """Ask Daraja for the shortcode's balances; the answer fills the report in. The ledger and
    the money in flight are read now and again when the answer is applied (balances.py)."""
    now = deps.clock.now()
    with deps.uow.read_only() as uow:
        before = balances.position(deps, uow, at=now)
    report = BalanceReport(
        id=new_id(),
        state="requested",
        ledger_paybill_cents=before.ledger_paybill_cents,
        ledger_float_cents=before.ledger_float_cents,
        requested_at=now,
        before=before,
    )
    try:
        ack = deps.gateway.account_balance()
        report.conversation_id = ack.conversation_id
    except GatewayError as error:
        report.state, report.result_desc = "failed", error.message[:200]
    with deps.uow() as uow:
        uow.balance_reports.add(report)
        uow.commit()
    return report


def balance_report_due(deps: MpesaDeps) -> bool:
    """Once a Nairobi day."""
    with deps.uow.read_only() as uow:
        latest = uow.balance_reports.latest(limit=1)
    today = nairobi_today(deps.clock.now())
    return not latest or nairobi_today(latest[0].requested_at) != today
