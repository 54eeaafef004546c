"""The back office through its use cases: operators signing in with a password and a TOTP
code, short sessions, roles, and four-eyes proposals that act only on a second operator's
approval."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.exceptions import InvalidTag

from deni.adapters.security import AesGcmSeedSealer
from deni.domain import totp
from deni.domain.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from deni.domain.loans import LoanState
from deni.domain.operators import (
    SESSION_IDLE,
    SESSION_LIFETIME,
    SIGN_IN_FAILURES_MAX,
    SIGN_IN_LOCK,
    STUCK_AFTER,
    FourEyes,
    NotPermitted,
    Operator,
    ProposalKind,
    ProposalNotOpen,
    ProposalState,
    Role,
    SignInFailed,
)
from deni.services import users
from deni.services.mpesa.ports import MpesaDeps
from deni.services.ops import operators, proposals
from deni.services.ops.operators import NewOperator
from deni.services.ports import Clock, PinHasher, UnitOfWorkFactory
from tests.fakes import ManualClock
from tests.services.test_loans import active_loan, stored
from tests.services.world import World
from tests.support.builders import register

PASSWORD = "correct horse battery"


@dataclass(frozen=True, slots=True)
class OpsWorld:
    uow: UnitOfWorkFactory
    clock: Clock
    hasher: PinHasher
    sealer: AesGcmSeedSealer
    mpesa: MpesaDeps | None = None


@pytest.fixture
def ops(world: World) -> OpsWorld:
    return OpsWorld(world.uow, world.clock, world.hasher, AesGcmSeedSealer(pepper="p" * 32))


def add(ops: OpsWorld, username: str, role: Role) -> NewOperator:
    return operators.add_operator(
        ops, username=username, name=username.title(), role=role, password=PASSWORD
    )


def code(ops: OpsWorld, new: NewOperator, *, steps_later: int = 0) -> str:
    at = ops.clock.now() + timedelta(seconds=totp.STEP_S * steps_later)
    return totp.code_at(new.totp_seed, at)


def signed_in(ops: OpsWorld, new: NewOperator) -> tuple[Operator, str]:
    clock = ops.clock
    assert isinstance(clock, ManualClock)
    clock.advance(timedelta(seconds=totp.STEP_S))  # each sign-in a code of its own step
    return operators.sign_in(
        ops, username=new.operator.username, password=PASSWORD, code=code(ops, new)
    )


def advance(ops: OpsWorld, by: timedelta) -> None:
    assert isinstance(ops.clock, ManualClock)
    ops.clock.advance(by)


# --- TOTP ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unix_s", "expected"),
    [
        (59, "287082"),
        (1_111_111_109, "081804"),
        (1_234_567_890, "005924"),
        (2_000_000_000, "279037"),
    ],
)
def test_codes_match_rfc_6238s_sha1_test_vectors(unix_s: int, expected: str) -> None:
    seed = b"12345678901234567890"
    assert totp.code_for_step(seed, unix_s // totp.STEP_S) == expected


def test_a_code_is_good_one_step_either_side_and_once() -> None:
    seed = totp.new_seed()
    step = 1_000_000
    at = datetime_of_step(step)
    for drift in (-1, 0, 1):
        assert (
            totp.matching_step(seed, totp.code_for_step(seed, step + drift), at=at, last_step=0)
            == step + drift
        )
    assert totp.matching_step(seed, totp.code_for_step(seed, step + 2), at=at, last_step=0) is None
    assert totp.matching_step(seed, totp.code_for_step(seed, step), at=at, last_step=step) is None
    for bad in ("", "12345", "1234567", "12a456", "\uff11\uff12\uff13\uff14\uff15\uff16"):
        assert totp.matching_step(seed, bad, at=at, last_step=0) is None


def datetime_of_step(step: int) -> datetime:
    return datetime.fromtimestamp(step * totp.STEP_S + 1, tz=UTC)


def test_the_provisioning_uri_carries_the_seed_an_app_needs() -> None:
    seed = bytes(range(20))
    uri = totp.provisioning_uri(seed, account="amina", issuer="Deni ops")
    assert uri.startswith("otpauth://totp/Deni%20ops:amina?")
    assert f"secret={totp.seed_text(seed)}" in uri


# --- Operators and sessions ------------------------------------------------------------------


def test_a_seed_is_stored_sealed_and_opens_only_for_its_operator(ops: OpsWorld) -> None:
    new = add(ops, "amina", Role.SUPPORT)
    with ops.uow.read_only() as uow:
        stored_op = uow.operators.get_by_username("amina")
    assert stored_op is not None
    assert new.totp_seed not in stored_op.totp_sealed
    assert ops.sealer.open(stored_op.totp_sealed, operator_id=stored_op.id) == new.totp_seed
    with pytest.raises(InvalidTag):
        ops.sealer.open(stored_op.totp_sealed, operator_id="someone-else")
    assert stored_op.password_hash != PASSWORD
    assert ops.hasher.verify(PASSWORD, stored_op.password_hash)


def test_bad_operator_details_are_refused_with_a_code(ops: OpsWorld) -> None:
    cases = [
        ({"username": "a!", "password": PASSWORD}, "invalid_username"),
        ({"username": "amina", "password": "short"}, "invalid_password"),
    ]
    for fields, expected in cases:
        with pytest.raises(ValidationFailed) as caught:
            operators.add_operator(ops, name="Amina", role=Role.SUPPORT, **fields)
        assert caught.value.code == expected
    add(ops, "amina", Role.SUPPORT)
    with pytest.raises(Conflict) as taken:
        add(ops, "Amina", Role.ADMIN)
    assert taken.value.code == "username_taken"


def test_sign_in_needs_the_password_and_a_fresh_code(ops: OpsWorld) -> None:
    new = add(ops, "amina", Role.SUPPORT)
    advance(ops, timedelta(seconds=totp.STEP_S))
    good = code(ops, new)
    with pytest.raises(SignInFailed):
        operators.sign_in(ops, username="amina", password="wrong password!", code=good)
    with pytest.raises(SignInFailed):
        operators.sign_in(
            ops,
            username="amina",
            password=PASSWORD,
            code="000000" if good != "000000" else "111111",
        )
    with pytest.raises(SignInFailed):
        operators.sign_in(ops, username="nobody", password=PASSWORD, code=good)
    operator, token = operators.sign_in(ops, username="amina", password=PASSWORD, code=good)
    assert operators.session_operator(ops, token=token).id == operator.id
    with pytest.raises(SignInFailed):  # the same code again: replayed
        operators.sign_in(ops, username="amina", password=PASSWORD, code=good)


def test_wrong_tries_lock_the_operator_for_a_while(ops: OpsWorld) -> None:
    new = add(ops, "amina", Role.SUPPORT)
    for _ in range(SIGN_IN_FAILURES_MAX):
        with pytest.raises(SignInFailed):
            operators.sign_in(
                ops, username="amina", password="not the password", code=code(ops, new)
            )
    advance(ops, timedelta(seconds=totp.STEP_S))
    with pytest.raises(SignInFailed):  # locked: even the right password and code fail
        operators.sign_in(ops, username="amina", password=PASSWORD, code=code(ops, new))
    advance(ops, SIGN_IN_LOCK)
    signed_in(ops, new)


@dataclass
class CountingHasher:
    """The world's hasher, counting `verify`: a refused sign-in costs one, whatever the cause,
    so its time says nothing about which cause it was."""

    inner: PinHasher
    verified: int = 0

    def hash(self, pin: str) -> str:
        return self.inner.hash(pin)

    def verify(self, pin: str, hashed: str) -> bool:
        self.verified += 1
        return self.inner.verify(pin, hashed)

    def needs_rehash(self, hashed: str) -> bool:
        return self.inner.needs_rehash(hashed)


def test_a_refused_sign_in_takes_one_password_check_whatever_the_cause(ops: OpsWorld) -> None:
    counting = CountingHasher(ops.hasher)
    ops = replace(ops, hasher=counting)
    amina, baraka = add(ops, "amina", Role.SUPPORT), add(ops, "baraka", Role.SUPPORT)
    operators.disable_operator(ops, username="baraka")
    for _ in range(SIGN_IN_FAILURES_MAX):
        with pytest.raises(SignInFailed):
            operators.sign_in(ops, username="amina", password="not the password", code="000000")
    for username, new in (("nobody", amina), ("amina", amina), ("baraka", baraka)):
        counting.verified = 0  # nobody; amina, locked; baraka, disabled
        with pytest.raises(SignInFailed):
            operators.sign_in(ops, username=username, password=PASSWORD, code=code(ops, new))
        assert counting.verified == 1, username


def test_a_session_ends_when_idle_at_its_lifetime_on_sign_out_and_when_disabled(
    ops: OpsWorld,
) -> None:
    new = add(ops, "amina", Role.SUPPORT)
    _, idle = signed_in(ops, new)
    advance(ops, SESSION_IDLE)
    with pytest.raises(Unauthorized):
        operators.session_operator(ops, token=idle)

    _, busy = signed_in(ops, new)
    elapsed = timedelta(0)
    while elapsed + SESSION_IDLE / 2 < SESSION_LIFETIME:
        advance(ops, SESSION_IDLE / 2)
        elapsed += SESSION_IDLE / 2
        operators.session_operator(ops, token=busy)  # each request keeps it alive...
    advance(ops, SESSION_IDLE / 2)
    with pytest.raises(Unauthorized):  # ...up to its lifetime
        operators.session_operator(ops, token=busy)

    _, left = signed_in(ops, new)
    operators.sign_out(ops, token=left)
    with pytest.raises(Unauthorized):
        operators.session_operator(ops, token=left)

    _, other = signed_in(ops, new)
    operators.disable_operator(ops, username="amina")
    with pytest.raises(Unauthorized):
        operators.session_operator(ops, token=other)
    with pytest.raises(SignInFailed):
        signed_in(ops, new)
    with pytest.raises(Unauthorized):
        operators.session_operator(ops, token="made-up-token")


def test_sessions_are_stored_as_hashes_only(ops: OpsWorld) -> None:
    _, token = signed_in(ops, add(ops, "amina", Role.SUPPORT))
    with ops.uow.read_only() as uow:
        assert uow.ops_sessions.get(token) is None
        assert uow.ops_sessions.get(operators.session_hash(token)) is not None


# --- Four-eyes -------------------------------------------------------------------------------


def locked_member(world: World, ops: OpsWorld) -> str:
    member = register(world, name="Akinyi")
    users.set_support_lock(world, phone=member.phone, locked=True)
    return member.id


def test_an_unlock_needs_a_second_operator(world: World, ops: OpsWorld) -> None:
    member_id = locked_member(world, ops)
    first, _ = signed_in(ops, add(ops, "amina", Role.SUPPORT))
    second, _ = signed_in(ops, add(ops, "baraka", Role.SUPPORT))
    proposal = proposals.propose(
        ops,
        operator=first,
        kind=ProposalKind.UNLOCK_MEMBER,
        target=member_id,
        reason="ID seen at the shop",
    )
    with pytest.raises(FourEyes):
        proposals.approve(ops, operator=first, proposal_id=proposal.id)
    with world.uow.read_only() as uow:
        assert uow.users.get(member_id).support_locked_at is not None  # type: ignore[union-attr]

    done = proposals.approve(ops, operator=second, proposal_id=proposal.id)
    assert done.state is ProposalState.DONE, done.outcome
    with world.uow.read_only() as uow:
        assert uow.users.get(member_id).support_locked_at is None  # type: ignore[union-attr]
    commands = [(command, actor) for _, command, actor in world.rows.audit_rows()]
    assert ("ops_propose", "ops:amina") in commands
    assert ("ops_approve", "ops:baraka") in commands
    assert ("support_unlock", "ops:baraka") in commands
    assert ("ops_done", "ops:baraka") in commands
    with pytest.raises(ProposalNotOpen):  # once
        proposals.approve(ops, operator=second, proposal_id=proposal.id)


def test_disabling_an_operator_withdraws_what_they_proposed(world: World, ops: OpsWorld) -> None:
    """Someone who has left cannot answer for a proposal: nobody may approve it after."""
    member_id = locked_member(world, ops)
    first, _ = signed_in(ops, add(ops, "amina", Role.SUPPORT))
    second, _ = signed_in(ops, add(ops, "baraka", Role.SUPPORT))
    proposal = proposals.propose(
        ops,
        operator=first,
        kind=ProposalKind.UNLOCK_MEMBER,
        target=member_id,
        reason="ID seen at the shop",
    )
    operators.disable_operator(ops, username="amina")
    assert proposals.get_proposal(ops, proposal_id=proposal.id).state is ProposalState.WITHDRAWN
    with pytest.raises(ProposalNotOpen):
        proposals.approve(ops, operator=second, proposal_id=proposal.id)
    with world.uow.read_only() as uow:
        assert uow.users.get(member_id).support_locked_at is not None  # type: ignore[union-attr]
    # The thing is free to propose again, by someone still here; and should a proposer be
    # turned off some other way, the approval refuses their proposal all the same.
    again = proposals.propose(
        ops,
        operator=second,
        kind=ProposalKind.UNLOCK_MEMBER,
        target=member_id,
        reason="ID seen at the shop",
    )
    third, _ = signed_in(ops, add(ops, "chebet", Role.SUPPORT))
    with ops.uow() as uow:
        uow.operators.save(replace(second, disabled_at=ops.clock.now()), ops.clock.now())
        uow.commit()
    with pytest.raises(ProposalNotOpen):
        proposals.approve(ops, operator=third, proposal_id=again.id)


def test_roles_bound_who_may_propose_and_approve(world: World, ops: OpsWorld) -> None:
    member_id = locked_member(world, ops)
    lender, _, loan = active_loan(world)
    support, _ = signed_in(ops, add(ops, "amina", Role.SUPPORT))
    finance, _ = signed_in(ops, add(ops, "fatuma", Role.FINANCE))
    admin, _ = signed_in(ops, add(ops, "root", Role.ADMIN))
    with pytest.raises(NotPermitted):
        proposals.propose(
            ops,
            operator=support,
            kind=ProposalKind.WRITE_OFF,
            target=loan.id,
            reason="lender asked",
        )
    with pytest.raises(NotPermitted):
        proposals.propose(
            ops,
            operator=finance,
            kind=ProposalKind.UNLOCK_MEMBER,
            target=member_id,
            reason="seen ID",
        )
    unlock = proposals.propose(
        ops, operator=support, kind=ProposalKind.UNLOCK_MEMBER, target=member_id, reason="seen ID"
    )
    with pytest.raises(NotPermitted):
        proposals.approve(ops, operator=finance, proposal_id=unlock.id)
    assert proposals.approve(ops, operator=admin, proposal_id=unlock.id).state is ProposalState.DONE

    write_off = proposals.propose(
        ops,
        operator=finance,
        kind=ProposalKind.WRITE_OFF,
        target=loan.id,
        reason="lender asked by phone",
    )
    assert stored(world, loan).state is LoanState.ACTIVE
    with pytest.raises(NotPermitted):
        proposals.approve(ops, operator=support, proposal_id=write_off.id)
    done = proposals.approve(ops, operator=admin, proposal_id=write_off.id)
    assert done.state is ProposalState.DONE, done.outcome
    assert stored(world, loan).state is LoanState.WRITTEN_OFF
    assert ("write_off_loan", "ops:root") in [(c, a) for _, c, a in world.rows.audit_rows()]
    assert lender.id != "ops:root"


def test_one_open_proposal_per_action_and_thing(world: World, ops: OpsWorld) -> None:
    _, _, loan = active_loan(world)
    first, _ = signed_in(ops, add(ops, "fatuma", Role.FINANCE))
    second, _ = signed_in(ops, add(ops, "juma", Role.FINANCE))
    kind = ProposalKind.WRITE_OFF
    proposal = proposals.propose(
        ops, operator=first, kind=kind, target=loan.id, reason="lender asked"
    )
    with pytest.raises(Conflict) as twice:
        proposals.propose(
            ops, operator=second, kind=kind, target=loan.id, reason="lender asked again"
        )
    assert twice.value.code == "already_proposed"
    rejected = proposals.reject(
        ops, operator=second, proposal_id=proposal.id, reason="lender did not ask"
    )
    assert rejected.state is ProposalState.REJECTED
    assert stored(world, loan).state is LoanState.ACTIVE
    again = proposals.propose(
        ops, operator=second, kind=kind, target=loan.id, reason="lender asked in writing"
    )
    withdrawn = proposals.reject(
        ops, operator=second, proposal_id=again.id, reason="wrong loan, sorry"
    )
    assert withdrawn.state is ProposalState.WITHDRAWN
    assert [v.proposal.id for v in proposals.list_proposals(ops)] == []


def test_proposals_for_things_that_are_not_there_are_refused(world: World, ops: OpsWorld) -> None:
    finance, _ = signed_in(ops, add(ops, "fatuma", Role.FINANCE))
    support, _ = signed_in(ops, add(ops, "amina", Role.SUPPORT))
    member = register(world, name="Not locked")
    with pytest.raises(NotFound):
        proposals.propose(
            ops,
            operator=finance,
            kind=ProposalKind.WRITE_OFF,
            target="no-such-loan",
            reason="lender asked",
        )
    with pytest.raises(NotFound):
        proposals.propose(
            ops,
            operator=support,
            kind=ProposalKind.UNLOCK_MEMBER,
            target=member.id,
            reason="seen ID",
        )
    with pytest.raises(ValidationFailed):
        proposals.propose(
            ops, operator=support, kind=ProposalKind.UNLOCK_MEMBER, target=member.id, reason="no"
        )
    with pytest.raises(Conflict) as off:  # M-PESA off on this server
        proposals.propose(
            ops,
            operator=finance,
            kind=ProposalKind.ASSIGN_SUSPENSE,
            target="QKX1234567",
            reason="payer called",
            params={"phone": member.phone},
        )
    assert off.value.code == "mpesa_off"


def test_an_approval_that_never_reported_back_is_settled_by_an_admin_after_looking(
    world: World, ops: OpsWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, loan = active_loan(world)
    fatuma, _ = signed_in(ops, add(ops, "fatuma", Role.FINANCE))
    juma, _ = signed_in(ops, add(ops, "juma", Role.FINANCE))
    root, _ = signed_in(ops, add(ops, "root", Role.ADMIN))
    kind = ProposalKind.WRITE_OFF
    proposal = proposals.propose(ops, operator=fatuma, kind=kind, target=loan.id, reason="asked")

    def dies(*_: object) -> str:
        raise RuntimeError("the process lost its database mid-way")

    monkeypatch.setitem(proposals._ACTIONS, kind, dies)
    with pytest.raises(RuntimeError):
        proposals.approve(ops, operator=juma, proposal_id=proposal.id)
    monkeypatch.undo()
    with pytest.raises(Conflict):  # blocked while it is approving
        proposals.propose(ops, operator=fatuma, kind=kind, target=loan.id, reason="again")
    with pytest.raises(ProposalNotOpen):  # it may still be running
        proposals.settle_stuck(ops, operator=root, proposal_id=proposal.id, reason="looked")
    advance(ops, STUCK_AFTER)
    with pytest.raises(NotPermitted):
        proposals.settle_stuck(ops, operator=juma, proposal_id=proposal.id, reason="looked")
    settled = proposals.settle_stuck(
        ops, operator=root, proposal_id=proposal.id, reason="loan still active, nothing done"
    )
    assert settled.state is ProposalState.FAILED
    assert "nothing done" in settled.outcome
    assert ("ops_settle_stuck", "ops:root") in [(c, a) for _, c, a in world.rows.audit_rows()]
    again = proposals.propose(ops, operator=fatuma, kind=kind, target=loan.id, reason="again")
    assert again.state is ProposalState.OPEN
