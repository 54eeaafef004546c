"""Money moved by staff, end to end against the Daraja sandbox: one operator proposes, a second
approves, and only then does M-PESA or the ledger move; the books are checked after each."""

from __future__ import annotations

from datetime import timedelta

import pytest

from deni.bootstrap.worker import work_once
from deni.domain import totp
from deni.domain.ledger import PlatformAccount
from deni.domain.mpesa import RequestState
from deni.domain.operators import FourEyes, Operator, ProposalKind, ProposalState, Role
from deni.domain.users import User
from deni.services.ops import operators, proposals
from tests.support.mpesa import PIN, World

PASSWORD = "correct horse battery"


def _operator(world: World, username: str, role: Role) -> Operator:
    new = operators.add_operator(
        world.deni, username=username, name=username.title(), role=role, password=PASSWORD
    )
    world.clock.advance(timedelta(seconds=totp.STEP_S))
    operator, _ = operators.sign_in(
        world.deni,
        username=username,
        password=PASSWORD,
        code=totp.code_at(new.totp_seed, world.clock.now()),
    )
    return operator


def _paid(world: World, user: User, amount: int, account: str | None = None) -> str:
    paid = world.admin.pay_paybill(user.phone, amount, account or user.phone)
    world.admin.flush()
    world.clock.advance(timedelta(seconds=2))
    world.work()
    world.clock.advance(timedelta(seconds=1))
    world.confirm()
    return str(paid["TransID"])


def _platform(world: World, account: PlatformAccount) -> int:
    with world.deni.uow.read_only() as uow:
        found = uow.ledger.get_account(account.value)
    assert found is not None
    return found.balance_cents


def test_a_reversal_runs_only_on_a_second_operators_approval(world: World) -> None:
    member = world.user()
    receipt = _paid(world, member, 640)
    paid_back_before = int(world.admin.customer(member.phone)["balance_cents"])
    fatuma, juma = _operator(world, "fatuma", Role.FINANCE), _operator(world, "juma", Role.FINANCE)

    proposal = proposals.propose(
        world.deni,
        operator=fatuma,
        kind=ProposalKind.REVERSE_PAYMENT,
        target=receipt,
        reason="sent to Deni by mistake, payer called",
    )
    with pytest.raises(FourEyes):
        proposals.approve(world.deni, operator=fatuma, proposal_id=proposal.id)
    world.settle()
    assert world.balance(member) == 640_00  # nothing moved on a proposal alone
    assert [t for t in world.admin.transactions(member.phone) if t.get("reversed_by")] == []

    done = proposals.approve(world.deni, operator=juma, proposal_id=proposal.id)
    assert done.state is ProposalState.DONE, done.outcome
    assert world.balance(member) == 0  # held at once
    world.settle()

    assert int(world.admin.customer(member.phone)["balance_cents"]) == paid_back_before + 640_00
    assert _platform(world, PlatformAccount.PAYOUTS_IN_FLIGHT) == 0
    world.assert_conserved()
    actors = [(r.command, r.actor_id) for r in _audit(world)]
    assert ("ops_propose", "ops:fatuma") in actors
    assert ("ops_approve", "ops:juma") in actors
    assert ("request_reversal", "ops:juma") in actors


def test_a_refused_reversal_fails_the_proposal_and_moves_nothing(world: World) -> None:
    member = world.user()
    receipt = _paid(world, member, 300)
    withdrawn = world.post(member, "/mpesa/withdrawals", {"amount_cents": 250_00, "pin": PIN})
    assert withdrawn.status_code == 202, withdrawn.text
    fatuma, juma = _operator(world, "fatuma", Role.FINANCE), _operator(world, "juma", Role.FINANCE)
    proposal = proposals.propose(
        world.deni,
        operator=fatuma,
        kind=ProposalKind.REVERSE_PAYMENT,
        target=receipt,
        reason="sent to Deni by mistake",
    )
    failed = proposals.approve(world.deni, operator=juma, proposal_id=proposal.id)
    assert failed.state is ProposalState.FAILED
    assert failed.outcome.startswith("wallet_short_for_reversal")
    assert world.balance(member) == 50_00
    world.settle()
    world.assert_conserved()


def test_a_suspense_payment_reaches_a_wallet_on_a_second_approval(world: World) -> None:
    world.deni.settings.__dict__["c2b_validation"] = False  # accept every account number
    payer, owner = world.user(), world.user("Owner")
    receipt = _paid(world, payer, 250, account="TYPO123")
    assert _platform(world, PlatformAccount.SUSPENSE) == 250_00
    fatuma, juma = _operator(world, "fatuma", Role.FINANCE), _operator(world, "juma", Role.FINANCE)
    proposal = proposals.propose(
        world.deni,
        operator=fatuma,
        kind=ProposalKind.ASSIGN_SUSPENSE,
        target=receipt,
        reason="owner showed the M-PESA message",
        params={"phone": owner.phone},
    )
    assert world.balance(owner) == 0
    done = proposals.approve(world.deni, operator=juma, proposal_id=proposal.id)
    assert done.state is ProposalState.DONE, done.outcome
    assert world.balance(owner) == 250_00
    assert _platform(world, PlatformAccount.SUSPENSE) == 0
    world.assert_conserved()


def test_a_payout_nobody_can_tell_about_is_abandoned_on_two_operators_word(world: World) -> None:
    user = world.user()
    world.fund(user, 1_000_00)
    world.admin.add_fault(kind="b2c", action="slow", delay_s=1.5)
    world.admin.add_fault(kind="b2c", action="drop")
    world.admin.add_fault(kind="status", action="result_code", result_code="R000002", times=10)
    answer = world.post(user, "/mpesa/withdrawals", {"amount_cents": 300_00, "pin": PIN})
    request_id = answer.json()["id"]
    impatient = world.other_worker(daraja_timeout_s=0.5)
    try:
        assert impatient.mpesa is not None
        work_once(impatient.mpesa, rng=world.rng, reconcile_now=False)
    finally:
        impatient.close()
    world.admin.flush()
    world.reconcile(rounds=6)
    assert world.request(request_id).awaiting_decision
    assert world.balance(user) == 700_00

    fatuma, juma = _operator(world, "fatuma", Role.FINANCE), _operator(world, "juma", Role.FINANCE)
    proposal = proposals.propose(
        world.deni,
        operator=fatuma,
        kind=ProposalKind.FAIL_PAYOUT,
        target=request_id,
        reason="M-PESA statement shows nothing paid",
    )
    done = proposals.approve(world.deni, operator=juma, proposal_id=proposal.id)
    assert done.state is ProposalState.DONE, done.outcome
    assert world.request(request_id).state is RequestState.FAILED
    assert world.balance(user) == 1_000_00


def _audit(world: World) -> list:  # type: ignore[type-arg]
    with world.deni.uow.read_only() as uow:
        return uow.audit.scan(after_seq=0, limit=10_000)
