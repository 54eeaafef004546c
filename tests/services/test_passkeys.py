"""Passkeys through the services, on the fake WebAuthn: adding one takes the PIN, signing in
gives the PIN's session, and money out takes a signature bound to the very action and amount.
Challenges work once and lapse; wrong origins, relying parties, keys, members and sign counts
are refused and counted as wrong PINs are."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from deni.adapters.security import JwtAccessTokens
from deni.domain.errors import (
    AccountLocked,
    Conflict,
    DomainError,
    NotFound,
    Unauthorized,
    ValidationFailed,
    WrongPin,
)
from deni.domain.loans import Loan, LoanState
from deni.domain.mpesa import Purpose
from deni.domain.passkeys import CHALLENGE_TTL, MoneyAction
from deni.domain.users import User
from deni.services import loans, passkeys, users
from deni.services.mpesa import preferences, requests
from deni.services.passkey_ports import RelyingParty
from deni.services.passkeys import PasskeyProof
from deni.services.ports import Clock, PinHasher, UnitOfWorkFactory
from tests.fakes import ManualClock
from tests.fakes.passkeys import FakeAuthenticator, FakeWebAuthn
from tests.services.world import World
from tests.support.builders import fund, register, wallet_cents

PIN = "3591"
RP = RelyingParty(id="deni.test", origin="https://deni.test")
PHISHING_ORIGIN = "https://deni-login.example"


@dataclass(frozen=True, slots=True)
class PasskeyWorld:
    uow: UnitOfWorkFactory
    clock: Clock
    hasher: PinHasher
    tokens: JwtAccessTokens
    webauthn: FakeWebAuthn
    relying_party: RelyingParty
    refresh_ttl_s: int = 30 * 24 * 3600


@pytest.fixture
def deps(world: World) -> PasskeyWorld:
    tokens = JwtAccessTokens(secret="test-secret-0123456789abcdef0123456789", ttl_s=900)
    return PasskeyWorld(world.uow, world.clock, world.hasher, tokens, FakeWebAuthn(), RP)


def clock_of(deps: PasskeyWorld) -> ManualClock:
    assert isinstance(deps.clock, ManualClock)
    return deps.clock


def add(
    deps: PasskeyWorld, user: User, phone: FakeAuthenticator, *, origin: str = RP.origin
) -> str:
    ceremony = passkeys.registration_options(deps, user_id=user.id, pin=PIN)
    answer = phone.create(ceremony.options, origin=origin)
    added = passkeys.add_passkey(
        deps,
        user_id=user.id,
        challenge_id=ceremony.challenge_id,
        response=answer,
        name="My phone",
    )
    return added.id


def member_with_passkey(
    deps: PasskeyWorld, name: str = "Wanjiku"
) -> tuple[User, FakeAuthenticator]:
    user = register(deps, name=name)
    phone = FakeAuthenticator()
    add(deps, user, phone)
    return user, phone


def signed(
    deps: PasskeyWorld,
    user: User,
    phone: FakeAuthenticator,
    action: MoneyAction,
    *,
    origin: str = RP.origin,
    **what: Any,
) -> PasskeyProof:
    """The phone's signature over a challenge for `action`, as a command takes it."""
    ceremony = passkeys.action_options(deps, user_id=user.id, action=action, **what)
    answer = phone.get(ceremony.options, origin=origin)
    return PasskeyProof(ceremony.challenge_id, answer, deps.webauthn, RP)


def sign_in_answer(
    deps: PasskeyWorld, phone: FakeAuthenticator, *, origin: str = RP.origin
) -> tuple[str, dict[str, object]]:
    ceremony = passkeys.sign_in_options(deps)
    return ceremony.challenge_id, phone.get(ceremony.options, origin=origin)


def requested_loan(deps: PasskeyWorld, lender: User, principal: int = 10_000) -> Loan:
    borrower = register(deps, name="Otieno")
    return loans.request_loan(
        deps,
        borrower_id=borrower.id,
        lender_phone=lender.phone,
        principal_cents=principal,
        fee_cents=500,
        term_days=7,
    )


def wrong_pins_in_session(deps: PasskeyWorld, user: User) -> int:
    with deps.uow.read_only() as uow:
        found = uow.users.get(user.id)
    assert found is not None
    return found.wrong_pins_in_a_row("api", in_session=True)


# --- adding, listing, removing -------------------------------------------------------------


def test_adding_a_passkey_takes_the_pin_and_a_wrong_one_counts(deps: PasskeyWorld) -> None:
    user = register(deps)
    with pytest.raises(WrongPin):
        passkeys.registration_options(deps, user_id=user.id, pin="0000")
    assert wrong_pins_in_session(deps, user) == 1
    phone = FakeAuthenticator()
    passkey_id = add(deps, user, phone)
    assert wrong_pins_in_session(deps, user) == 0  # the right PIN cleared it
    [listed] = passkeys.list_passkeys(deps, user_id=user.id)
    assert (listed.id, listed.name, listed.last_used_at) == (passkey_id, "My phone", None)
    assert listed.created_at == deps.clock.now()
    # The phone is not offered to be added twice.
    again = passkeys.registration_options(deps, user_id=user.id, pin=PIN)
    assert again.options["excludeCredentials"] == [phone.keys[0].credential_id.hex()]


def test_a_registration_answer_works_once_for_its_member_and_in_time(deps: PasskeyWorld) -> None:
    user, other = register(deps), register(deps, name="Otieno")
    phone = FakeAuthenticator()
    ceremony = passkeys.registration_options(deps, user_id=user.id, pin=PIN)
    answer = phone.create(ceremony.options, origin=RP.origin)
    # Another member cannot spend this member's challenge.
    with pytest.raises(Unauthorized) as refused:
        passkeys.add_passkey(
            deps, user_id=other.id, challenge_id=ceremony.challenge_id, response=answer
        )
    assert refused.value.code == "passkey_challenge_invalid"
    # ...and that try used it up: the member must ask again.
    with pytest.raises(Unauthorized):
        passkeys.add_passkey(
            deps, user_id=user.id, challenge_id=ceremony.challenge_id, response=answer
        )
    late = passkeys.registration_options(deps, user_id=user.id, pin=PIN)
    clock_of(deps).advance(CHALLENGE_TTL)
    with pytest.raises(Unauthorized) as lapsed:
        passkeys.add_passkey(
            deps,
            user_id=user.id,
            challenge_id=late.challenge_id,
            response=phone.create(late.options, origin=RP.origin),
        )
    assert lapsed.value.code == "passkey_challenge_invalid"
    assert passkeys.list_passkeys(deps, user_id=user.id) == []


@pytest.mark.parametrize(
    "tamper",
    [
        {"origin": PHISHING_ORIGIN},
        {"rp_id": "deni-login.example"},
        {"uv": False},
        {"challenge": "00" * 32},
    ],
    ids=["another origin", "another relying party", "no user verification", "another challenge"],
)
def test_a_registration_answer_made_elsewhere_is_refused(
    deps: PasskeyWorld, tamper: dict[str, object]
) -> None:
    user = register(deps)
    ceremony = passkeys.registration_options(deps, user_id=user.id, pin=PIN)
    answer = {**FakeAuthenticator().create(ceremony.options, origin=RP.origin), **tamper}
    with pytest.raises(Unauthorized) as refused:
        passkeys.add_passkey(
            deps, user_id=user.id, challenge_id=ceremony.challenge_id, response=answer
        )
    assert refused.value.code == "passkey_refused"
    assert passkeys.list_passkeys(deps, user_id=user.id) == []


def test_a_removed_passkey_signs_in_and_approves_nothing(deps: PasskeyWorld) -> None:
    user, phone = member_with_passkey(deps)
    [passkey] = passkeys.list_passkeys(deps, user_id=user.id)
    fund(deps, user, 50_000)
    proof = signed(deps, user, phone, MoneyAction.WITHDRAW, amount_cents=10_000)
    challenge_id, answer = sign_in_answer(deps, phone)
    other = register(deps, name="Otieno")
    with pytest.raises(NotFound):  # nobody removes another member's passkey
        passkeys.remove_passkey(deps, user_id=other.id, passkey_id=passkey.id)
    passkeys.remove_passkey(deps, user_id=user.id, passkey_id=passkey.id)
    assert passkeys.list_passkeys(deps, user_id=user.id) == []
    with pytest.raises(Unauthorized) as refused:
        passkeys.sign_in(deps, challenge_id=challenge_id, response=answer)
    assert refused.value.code == "passkey_refused"
    with pytest.raises(Unauthorized):
        _withdraw(deps, user, 10_000, passkey=proof)
    assert wallet_cents(deps, user) == 50_000
    with pytest.raises(Conflict) as none_left:
        passkeys.action_options(
            deps, user_id=user.id, action=MoneyAction.WITHDRAW, amount_cents=10_000
        )
    assert none_left.value.code == "no_passkey"


# --- signing in ------------------------------------------------------------------------------


def test_a_passkey_signs_in_with_the_session_a_pin_gives(deps: PasskeyWorld) -> None:
    user, phone = member_with_passkey(deps)
    challenge_id, answer = sign_in_answer(deps, phone)
    session = passkeys.sign_in(deps, challenge_id=challenge_id, response=answer)
    assert session.user_id == user.id
    assert deps.tokens.verify_session(session.access_token, now=deps.clock.now()) == (user.id, 0)
    swapped = users.refresh_session(deps, refresh_token=session.refresh_token)  # a real one
    assert swapped.user_id == user.id
    [listed] = passkeys.list_passkeys(deps, user_id=user.id)
    assert listed.last_used_at == deps.clock.now()
    assert listed.sign_count == 1
    # The same answer again is a replay: its challenge is gone.
    with pytest.raises(Unauthorized) as replay:
        passkeys.sign_in(deps, challenge_id=challenge_id, response=answer)
    assert replay.value.code == "passkey_challenge_invalid"
    # The PIN still signs in.
    assert users.login(deps, phone=user.phone, pin=PIN).user_id == user.id


def test_a_sign_in_answer_for_another_origin_or_late_is_refused(deps: PasskeyWorld) -> None:
    user, phone = member_with_passkey(deps)
    challenge_id, answer = sign_in_answer(deps, phone, origin=PHISHING_ORIGIN)
    with pytest.raises(Unauthorized) as phished:
        passkeys.sign_in(deps, challenge_id=challenge_id, response=answer)
    assert phished.value.code == "passkey_refused"
    with deps.uow.read_only() as uow:
        stored = uow.users.get(user.id)
    assert stored is not None
    assert stored.wrong_pins_in_a_row("api", in_session=False) == 1  # counted as at sign-in
    challenge_id, answer = sign_in_answer(deps, phone)
    clock_of(deps).advance(CHALLENGE_TTL + timedelta(seconds=1))
    with pytest.raises(Unauthorized) as late:
        passkeys.sign_in(deps, challenge_id=challenge_id, response=answer)
    assert late.value.code == "passkey_challenge_invalid"


def test_a_sign_count_that_goes_back_is_a_copied_key(deps: PasskeyWorld) -> None:
    _, phone = member_with_passkey(deps)
    challenge_id, answer = sign_in_answer(deps, phone)
    passkeys.sign_in(deps, challenge_id=challenge_id, response=answer)
    phone.keys[0].sign_count = 0  # a clone of the key, from before that signature
    challenge_id, answer = sign_in_answer(deps, phone)
    assert answer["sign_count"] == 1
    with pytest.raises(Unauthorized) as refused:
        passkeys.sign_in(deps, challenge_id=challenge_id, response=answer)
    assert refused.value.code == "passkey_refused"


def test_a_passkey_that_never_counts_signs_in_each_time(deps: PasskeyWorld) -> None:
    user = register(deps)
    phone = FakeAuthenticator(counts=False)  # a synced passkey: its count stays 0
    add(deps, user, phone)
    for _ in range(3):
        challenge_id, answer = sign_in_answer(deps, phone)
        assert passkeys.sign_in(deps, challenge_id=challenge_id, response=answer).user_id == user.id


def test_a_user_handle_that_is_not_the_passkeys_is_refused(deps: PasskeyWorld) -> None:
    _, phone = member_with_passkey(deps)
    other = register(deps, name="Otieno")
    challenge_id, answer = sign_in_answer(deps, phone)
    answer["user_handle"] = other.id.encode().hex()
    with pytest.raises(Unauthorized):
        passkeys.sign_in(deps, challenge_id=challenge_id, response=answer)


def test_a_closed_account_or_a_locked_one_does_not_sign_in_with_a_passkey(
    deps: PasskeyWorld,
) -> None:
    user, phone = member_with_passkey(deps)
    users.set_support_lock(deps, phone=user.phone, locked=True)
    challenge_id, answer = sign_in_answer(deps, phone)
    with pytest.raises(DomainError) as refused:
        passkeys.sign_in(deps, challenge_id=challenge_id, response=answer)
    assert refused.value.code == "locked_by_support"


# --- money out -------------------------------------------------------------------------------


def _withdraw(
    deps: PasskeyWorld,
    user: User,
    amount_cents: int,
    *,
    passkey: PasskeyProof | None = None,
    pin: str | None = None,
) -> Any:
    return requests.withdraw(
        deps,
        user_id=user.id,
        pin=pin,
        passkey=passkey,
        amount_cents=amount_cents,
        idempotency_key=str(uuid.uuid4()),
        channel="api",
    )


def test_a_passkey_approves_a_loan_for_the_principal_it_was_asked_for(
    deps: PasskeyWorld,
) -> None:
    lender, phone = member_with_passkey(deps)
    fund(deps, lender, 10_000)
    loan = requested_loan(deps, lender, principal=10_000)
    wrong_amount = signed(
        deps, lender, phone, MoneyAction.APPROVE_LOAN, loan_id=loan.id, amount_cents=99_999
    )
    with pytest.raises(Unauthorized) as refused:
        loans.approve_loan(deps, lender_id=lender.id, loan_id=loan.id, passkey=wrong_amount)
    assert refused.value.code == "passkey_challenge_invalid"
    proof = signed(
        deps, lender, phone, MoneyAction.APPROVE_LOAN, loan_id=loan.id, amount_cents=10_000
    )
    approved = loans.approve_loan(deps, lender_id=lender.id, loan_id=loan.id, passkey=proof)
    assert approved.state is LoanState.ACTIVE
    assert wallet_cents(deps, lender) == 0
    assert wallet_cents(deps, register_of(deps, loan.borrower_id)) == 10_000


def register_of(deps: PasskeyWorld, user_id: str) -> User:
    return users.get_user(deps, user_id=user_id)


def test_a_withdrawal_signature_is_for_its_amount_only_and_once(deps: PasskeyWorld) -> None:
    user, phone = member_with_passkey(deps)
    fund(deps, user, 50_000)
    small = signed(deps, user, phone, MoneyAction.WITHDRAW, amount_cents=10_000)
    with pytest.raises(Unauthorized) as bigger:
        _withdraw(deps, user, 40_000, passkey=small)  # a thief's amount on the member's yes
    assert bigger.value.code == "passkey_challenge_invalid"
    assert wallet_cents(deps, user) == 50_000
    proof = signed(deps, user, phone, MoneyAction.WITHDRAW, amount_cents=10_000)
    request = _withdraw(deps, user, 10_000, passkey=proof)
    assert (request.purpose, request.amount_cents) == (Purpose.WITHDRAWAL, 10_000)
    assert wallet_cents(deps, user) == 40_000
    with pytest.raises(Unauthorized) as replay:
        _withdraw(deps, user, 10_000, passkey=proof)
    assert replay.value.code == "passkey_challenge_invalid"
    assert wallet_cents(deps, user) == 40_000
    # A signature for approving a loan approves no withdrawal of the same amount either.
    loan = requested_loan(deps, user, principal=10_000)
    for_loan = signed(
        deps, user, phone, MoneyAction.APPROVE_LOAN, loan_id=loan.id, amount_cents=10_000
    )
    with pytest.raises(Unauthorized):
        _withdraw(deps, user, 10_000, passkey=for_loan)
    # The PIN still works; neither proof is nothing.
    _withdraw(deps, user, 10_000, pin=PIN)
    with pytest.raises(ValidationFailed) as nothing:
        _withdraw(deps, user, 10_000)
    assert nothing.value.code == "pin_required"
    assert wallet_cents(deps, user) == 30_000


def test_another_members_passkey_approves_nothing_and_counts(deps: PasskeyWorld) -> None:
    """A thief with the member's session and a passkey of their own account."""
    victim, _ = member_with_passkey(deps, "Wanjiku")
    thief, thief_phone = member_with_passkey(deps, "Thief")
    fund(deps, victim, 50_000)
    ceremony = passkeys.action_options(
        deps, user_id=victim.id, action=MoneyAction.WITHDRAW, amount_cents=50_000
    )
    answer = thief_phone.get(ceremony.options, origin=RP.origin)
    proof = PasskeyProof(ceremony.challenge_id, answer, deps.webauthn, RP)
    with pytest.raises(Unauthorized) as refused:
        _withdraw(deps, victim, 50_000, passkey=proof)
    assert refused.value.code == "passkey_refused"
    assert wallet_cents(deps, victim) == 50_000
    assert wrong_pins_in_session(deps, victim) == 1
    # Nor may the thief spend a challenge made for the victim as their own.
    ceremony = passkeys.action_options(
        deps, user_id=victim.id, action=MoneyAction.WITHDRAW, amount_cents=10_000
    )
    proof = PasskeyProof(
        ceremony.challenge_id,
        thief_phone.get(ceremony.options, origin=RP.origin),
        deps.webauthn,
        RP,
    )
    fund(deps, thief, 10_000)
    with pytest.raises(Unauthorized) as not_theirs:
        _withdraw(deps, thief, 10_000, passkey=proof)
    assert not_theirs.value.code == "passkey_challenge_invalid"


def test_failed_passkeys_lock_as_wrong_pins_do_and_the_lock_stops_the_pin_too(
    deps: PasskeyWorld,
) -> None:
    user, phone = member_with_passkey(deps)
    fund(deps, user, 50_000)
    refusals = []
    for _ in range(3):
        proof = signed(
            deps, user, phone, MoneyAction.WITHDRAW, amount_cents=10_000, origin=PHISHING_ORIGIN
        )
        with pytest.raises(DomainError) as refused:
            _withdraw(deps, user, 10_000, passkey=proof)
        refusals.append(refused.value.code)
    assert refusals == ["passkey_refused", "passkey_refused", "account_locked"]
    with pytest.raises(AccountLocked):
        _withdraw(deps, user, 10_000, pin=PIN)
    with pytest.raises(AccountLocked):  # no new challenge while locked
        passkeys.action_options(
            deps, user_id=user.id, action=MoneyAction.WITHDRAW, amount_cents=10_000
        )
    assert wallet_cents(deps, user) == 50_000


def test_a_passkey_repays_writes_off_and_sets_preferences_bound_to_each(
    deps: PasskeyWorld,
) -> None:
    lender, lender_phone = member_with_passkey(deps, "Wanjiku")
    fund(deps, lender, 20_000)
    loan = requested_loan(deps, lender, principal=10_000)
    borrower = register_of(deps, loan.borrower_id)
    borrower_phone = FakeAuthenticator()
    add(deps, borrower, borrower_phone)
    loans.approve_loan(deps, lender_id=lender.id, loan_id=loan.id, pin=PIN)
    proof = signed(
        deps, borrower, borrower_phone, MoneyAction.REPAY_LOAN, loan_id=loan.id, amount_cents=3_000
    )
    repaid = loans.repay_loan(
        deps,
        borrower_id=borrower.id,
        loan_id=loan.id,
        amount_cents=3_000,
        passkey=proof,
        idempotency_key="r1",
    )
    assert repaid.allocation.applied_cents == 3_000
    proof = signed(deps, lender, lender_phone, MoneyAction.WRITE_OFF_LOAN, loan_id=loan.id)
    written_off = loans.write_off_loan(deps, lender_id=lender.id, loan_id=loan.id, passkey=proof)
    assert written_off.state is LoanState.WRITTEN_OFF
    proof = signed(deps, lender, lender_phone, MoneyAction.SET_PREFERENCES, auto_payout=True)
    with pytest.raises(Unauthorized):  # signed for auto-payout on, not for loans off M-PESA
        preferences.set_preferences(deps, user_id=lender.id, passkey=proof, disburse_to_mpesa=False)
    proof = signed(deps, lender, lender_phone, MoneyAction.SET_PREFERENCES, auto_payout=True)
    assert preferences.set_preferences(
        deps, user_id=lender.id, passkey=proof, auto_payout=True
    ) == (True, True)


def test_an_approval_challenge_names_what_its_action_needs(deps: PasskeyWorld) -> None:
    user, _ = member_with_passkey(deps)
    bad: list[dict[str, Any]] = [
        {"action": MoneyAction.WITHDRAW},  # no amount
        {"action": MoneyAction.WITHDRAW, "amount_cents": 0},
        {"action": MoneyAction.WITHDRAW, "amount_cents": 100, "loan_id": "x"},
        {"action": MoneyAction.APPROVE_LOAN, "amount_cents": 100},  # no loan
        {"action": MoneyAction.WRITE_OFF_LOAN, "loan_id": "x", "amount_cents": 100},
    ]
    for what in bad:
        with pytest.raises(ValidationFailed):
            passkeys.action_options(deps, user_id=user.id, **what)


def test_lapsed_challenges_are_swept_when_new_ones_are_made(deps: PasskeyWorld) -> None:
    old = [passkeys.sign_in_options(deps).challenge_id for _ in range(3)]
    clock_of(deps).advance(CHALLENGE_TTL)
    new = passkeys.sign_in_options(deps).challenge_id
    with deps.uow() as uow:  # looked at, never committed
        assert [uow.passkeys.take_challenge(c) for c in old] == [None, None, None]
        assert uow.passkeys.take_challenge(new) is not None
