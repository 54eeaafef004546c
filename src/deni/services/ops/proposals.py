"""Four-eyes: an operator proposes a money action, another approves it, and the approval is
what acts. The proposer can withdraw; another operator can reject. Each step is audited with
the operator's name, and at most one proposal is open for the same action on the same thing.

Approving runs in two transactions around the action: the proposal turns `approving` (which
only one approver can do), the action's own use case runs and commits, then the proposal
records the outcome. If the process dies between, the proposal stays `approving` on the
console for a person to look at: every action is itself once-only (keyed by its receipt,
request or loan), so approving again is never needed and never possible.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from deni.domain.errors import Conflict, DomainError, NotFound, ValidationFailed
from deni.domain.loans import LoanState
from deni.domain.operators import (
    KIND_PERMISSION,
    Operator,
    Proposal,
    ProposalKind,
    ProposalNotOpen,
    ProposalState,
    require_reason,
)
from deni.domain.phone import normalise_msisdn
from deni.ids import new_id
from deni.services import loans, users
from deni.services.common import audit
from deni.services.mpesa import decisions, reconcile, reversals
from deni.services.mpesa.ports import MpesaDeps, SuspenseState
from deni.services.ops.operators import actor
from deni.services.ops.ports import PROPOSALS_LIST_MAX, OpsDeps
from deni.services.ports import UnitOfWork

TARGET_CHARS_MAX = 64
OPEN_STATES = (ProposalState.OPEN, ProposalState.APPROVING)


@dataclass(frozen=True, slots=True)
class ProposalView:
    proposal: Proposal
    proposed_by: str  # usernames, for the console
    decided_by: str | None


def propose(
    deps: OpsDeps,
    *,
    operator: Operator,
    kind: ProposalKind,
    target: str,
    reason: str,
    params: Mapping[str, str] | None = None,
) -> Proposal:
    operator.require(KIND_PERMISSION[kind])
    reason = require_reason(reason)
    target = _require_target(target)
    cleaned = _PARAMS[kind](dict(params or {}))
    now = deps.clock.now()
    proposal = Proposal(
        id=new_id(),
        kind=kind,
        target=target,
        params=cleaned,
        reason=reason,
        state=ProposalState.OPEN,
        proposed_by=operator.id,
        proposed_at=now,
    )
    _CHECKS[kind](deps, proposal)
    with deps.uow() as uow:
        if not uow.proposals.add(proposal):
            raise Conflict(
                "This is proposed already; approve or reject that proposal.",
                code="already_proposed",
            )
        _audit(uow, operator, "ops_propose", proposal, now)
        uow.commit()
    return proposal


def approve(deps: OpsDeps, *, operator: Operator, proposal_id: str) -> Proposal:
    now = deps.clock.now()
    with deps.uow() as uow:
        proposal = _locked(uow, proposal_id).approve(operator, now)
        proposer = uow.operators.get(proposal.proposed_by)
        if proposer is None or proposer.disabled_at is not None:
            raise ProposalNotOpen("The operator who proposed this was disabled; propose it anew.")
        uow.proposals.save(proposal)
        _audit(uow, operator, "ops_approve", proposal, now)
        uow.commit()
    try:
        outcome = _ACTIONS[proposal.kind](deps, proposal, operator)
        finished = proposal.finish(succeeded=True, outcome=outcome)
    except DomainError as error:
        finished = proposal.finish(succeeded=False, outcome=f"{error.code}: {error.message}")
    with deps.uow() as uow:
        if _locked(uow, proposal.id).state is not ProposalState.APPROVING:
            raise ProposalNotOpen("This proposal was settled meanwhile.")  # by a person
        uow.proposals.save(finished)
        _audit(uow, operator, f"ops_{finished.state.value}", finished, deps.clock.now())
        uow.commit()
    return finished


def reject(deps: OpsDeps, *, operator: Operator, proposal_id: str, reason: str) -> Proposal:
    reason = require_reason(reason)
    now = deps.clock.now()
    with deps.uow() as uow:
        proposal = _locked(uow, proposal_id).reject(operator, now, outcome=reason)
        uow.proposals.save(proposal)
        _audit(uow, operator, f"ops_{proposal.state.value}", proposal, now)
        uow.commit()
    return proposal


def settle_stuck(deps: OpsDeps, *, operator: Operator, proposal_id: str, reason: str) -> Proposal:
    """Record, after looking, what became of an approval whose action never reported back."""
    reason = require_reason(reason)
    now = deps.clock.now()
    with deps.uow() as uow:
        proposal = _locked(uow, proposal_id).settle_stuck(
            operator, now, outcome=f"settled by hand: {reason}"
        )
        uow.proposals.save(proposal)
        _audit(uow, operator, "ops_settle_stuck", proposal, now)
        uow.commit()
    return proposal


def list_proposals(
    deps: OpsDeps, *, states: tuple[ProposalState, ...] = OPEN_STATES
) -> list[ProposalView]:
    with deps.uow.read_only() as uow:
        found = uow.proposals.in_states(states, limit=PROPOSALS_LIST_MAX)
        names = {o.id: o.username for o in uow.operators.list(limit=PROPOSALS_LIST_MAX)}
    return [
        ProposalView(p, names.get(p.proposed_by, "?"), names.get(p.decided_by or "")) for p in found
    ]


def get_proposal(deps: OpsDeps, *, proposal_id: str) -> Proposal:
    with deps.uow.read_only() as uow:
        proposal = uow.proposals.get(proposal_id)
    if proposal is None:
        raise NotFound("No such proposal.", code="proposal_not_found")
    return proposal


# --- What each kind checks when proposed, and does when approved ---------------------------


def _mpesa(deps: OpsDeps) -> MpesaDeps:
    if deps.mpesa is None:
        raise Conflict("M-PESA is off on this server.", code="mpesa_off")
    return deps.mpesa


def _no_params(params: dict[str, str]) -> dict[str, str]:
    if params:
        raise ValidationFailed("This action takes no details.", code="invalid_params")
    return {}


def _assign_params(params: dict[str, str]) -> dict[str, str]:
    if set(params) != {"phone"}:
        raise ValidationFailed("Say whose wallet it goes to.", code="invalid_params")
    return {"phone": normalise_msisdn(params["phone"])}


def _succeeded_params(params: dict[str, str]) -> dict[str, str]:
    receipt = params.get("receipt", "").strip().upper()
    if set(params) != {"receipt"} or not receipt.isalnum() or not 8 <= len(receipt) <= 20:
        raise ValidationFailed(
            "A payout that succeeded needs the M-PESA receipt you found.", code="invalid_receipt"
        )
    return {"receipt": receipt}


_PARAMS: dict[ProposalKind, Callable[[dict[str, str]], dict[str, str]]] = {
    ProposalKind.ASSIGN_SUSPENSE: _assign_params,
    ProposalKind.REVERSE_PAYMENT: _no_params,
    ProposalKind.RESEND_PAYOUT: _no_params,
    ProposalKind.FAIL_PAYOUT: _no_params,
    ProposalKind.PAYOUT_SUCCEEDED: _succeeded_params,
    ProposalKind.ACCEPT_CLAIM: _no_params,
    ProposalKind.REJECT_CLAIM: _no_params,
    ProposalKind.WRITE_OFF: _no_params,
    ProposalKind.UNLOCK_MEMBER: _no_params,
}


def _check_suspense(deps: OpsDeps, proposal: Proposal) -> None:
    with _mpesa(deps).uow() as uow:  # read, then rolled back: suspense rows are read locked
        payment = uow.suspense.lock(proposal.target)
        member = uow.users.get_by_phone(proposal.params["phone"])
    if payment is None or payment.state is not SuspenseState.UNASSIGNED:
        raise NotFound("No unassigned suspense payment has that receipt.", code="not_in_suspense")
    if member is None:
        raise NotFound("Nobody with that phone number uses Deni.", code="user_not_found")


def _check_payout(deps: OpsDeps, proposal: Proposal) -> None:
    waiting = decisions.waiting_payouts(_mpesa(deps))
    if proposal.target not in {w.request.id for w in waiting}:
        raise NotFound("No payout waiting for a decision has that id.", code="payout_not_waiting")


def _check_claim(deps: OpsDeps, proposal: Proposal) -> None:
    claims = decisions.open_claims(_mpesa(deps))
    if proposal.target not in {c.receipt for c in claims}:
        raise NotFound("No open claim has that receipt.", code="claim_not_found")


def _check_reversal(deps: OpsDeps, proposal: Proposal) -> None:
    """Only the receipt's form here: whether it can be reversed (confirmed, not reversed,
    the wallet still holding it) is decided when the approval runs the reversal."""
    _mpesa(deps)
    receipt = proposal.target
    if not receipt.isascii() or not receipt.isalnum() or not 8 <= len(receipt) <= 20:
        raise ValidationFailed(
            "An M-PESA receipt is 8 to 20 letters and digits.", code="invalid_receipt"
        )


def _check_write_off(deps: OpsDeps, proposal: Proposal) -> None:
    with deps.uow.read_only() as uow:
        loan = uow.loans.get(proposal.target)
    if loan is None or loan.state is not LoanState.ACTIVE:
        raise NotFound("No active loan has that id.", code="loan_not_active")


def _check_unlock(deps: OpsDeps, proposal: Proposal) -> None:
    with deps.uow.read_only() as uow:
        member = uow.users.get(proposal.target)
    if member is None or member.support_locked_at is None:
        raise NotFound("No member locked by support has that id.", code="not_support_locked")


_CHECKS: dict[ProposalKind, Callable[[OpsDeps, Proposal], None]] = {
    ProposalKind.ASSIGN_SUSPENSE: _check_suspense,
    ProposalKind.REVERSE_PAYMENT: _check_reversal,
    ProposalKind.RESEND_PAYOUT: _check_payout,
    ProposalKind.FAIL_PAYOUT: _check_payout,
    ProposalKind.PAYOUT_SUCCEEDED: _check_payout,
    ProposalKind.ACCEPT_CLAIM: _check_claim,
    ProposalKind.REJECT_CLAIM: _check_claim,
    ProposalKind.WRITE_OFF: _check_write_off,
    ProposalKind.UNLOCK_MEMBER: _check_unlock,
}


def _assign(deps: OpsDeps, proposal: Proposal, approver: Operator) -> str:
    mpesa = _mpesa(deps)
    with deps.uow.read_only() as uow:
        member = uow.users.get_by_phone(proposal.params["phone"])
    if member is None:
        raise NotFound("Nobody with that phone number uses Deni.", code="user_not_found")
    reconcile.assign_suspense(mpesa, receipt=proposal.target, user_id=member.id)
    return f"{proposal.target} credited to {member.name}'s wallet."


def _decide_payout(decision: decisions.Decision) -> Callable[[OpsDeps, Proposal, Operator], str]:
    def act(deps: OpsDeps, proposal: Proposal, approver: Operator) -> str:
        request = decisions.decide_payout(
            _mpesa(deps),
            request_id=proposal.target,
            decision=decision,
            operator=actor(approver),
            reason=proposal.reason,
            receipt=proposal.params.get("receipt"),
        )
        return f"Payout {request.id} is {request.state.value}."

    return act


def _decide_claim(
    decision: decisions.ClaimDecision,
) -> Callable[[OpsDeps, Proposal, Operator], str]:
    def act(deps: OpsDeps, proposal: Proposal, approver: Operator) -> str:
        claim = decisions.decide_claim(
            _mpesa(deps),
            receipt=proposal.target,
            decision=decision,
            operator=actor(approver),
            reason=proposal.reason,
        )
        return f"Claim {claim.receipt} is {claim.state.value}."

    return act


def _reverse(deps: OpsDeps, proposal: Proposal, approver: Operator) -> str:
    request = reversals.request_reversal(
        _mpesa(deps), receipt=proposal.target, operator=actor(approver), reason=proposal.reason
    )
    return (
        f"Reversal of {proposal.target} sent ({request.id}); the money is held until M-PESA "
        "answers."
    )


def _write_off(deps: OpsDeps, proposal: Proposal, approver: Operator) -> str:
    loan = loans.write_off_for_lender(deps, loan_id=proposal.target, actor_id=actor(approver))
    return f"Loan {loan.code} written off for its lender."


def _unlock(deps: OpsDeps, proposal: Proposal, approver: Operator) -> str:
    with deps.uow.read_only() as uow:
        member = uow.users.get(proposal.target)
    if member is None:
        raise NotFound("No such member.", code="user_not_found")
    users.set_support_lock(
        deps, phone=member.phone, locked=False, channel="ops", actor_id=actor(approver)
    )
    return f"{member.name}'s account is unlocked."


_ACTIONS: dict[ProposalKind, Callable[[OpsDeps, Proposal, Operator], str]] = {
    ProposalKind.ASSIGN_SUSPENSE: _assign,
    ProposalKind.REVERSE_PAYMENT: _reverse,
    ProposalKind.RESEND_PAYOUT: _decide_payout(decisions.Decision.RESEND),
    ProposalKind.FAIL_PAYOUT: _decide_payout(decisions.Decision.FAIL),
    ProposalKind.PAYOUT_SUCCEEDED: _decide_payout(decisions.Decision.SUCCEEDED),
    ProposalKind.ACCEPT_CLAIM: _decide_claim(decisions.ClaimDecision.ACCEPT),
    ProposalKind.REJECT_CLAIM: _decide_claim(decisions.ClaimDecision.REJECT),
    ProposalKind.WRITE_OFF: _write_off,
    ProposalKind.UNLOCK_MEMBER: _unlock,
}
assert set(_ACTIONS) == set(_CHECKS) == set(_PARAMS) == set(ProposalKind)


def _require_target(target: str) -> str:
    cleaned = target.strip()
    if not 1 <= len(cleaned) <= TARGET_CHARS_MAX or not cleaned.isprintable():
        raise ValidationFailed("Say what this acts on.", code="invalid_target")
    return cleaned


def _locked(uow: UnitOfWork, proposal_id: str) -> Proposal:
    proposal = uow.proposals.lock(proposal_id)
    if proposal is None:
        raise NotFound("No such proposal.", code="proposal_not_found")
    return proposal


def _audit(
    uow: UnitOfWork, operator: Operator, command: str, proposal: Proposal, now: datetime
) -> None:
    audit(
        uow,
        actor_id=actor(operator),
        channel="ops",
        command=command,
        details={
            "proposal": proposal.id,
            "kind": proposal.kind.value,
            "target": proposal.target,
            "params": json.dumps(proposal.params, sort_keys=True),
            "reason": proposal.reason,
            "outcome": proposal.outcome,
        },
        now=now,
    )
