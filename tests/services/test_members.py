"""Members through the services: a number proven by SMS, sign-in sessions, a forgotten PIN."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from deni.adapters.security import JwtAccessTokens
from deni.adapters.sessions import MemorySessionStore
from deni.domain.errors import InvalidResetCode, PhoneCodeInvalid, Unauthorized
from deni.domain.phone import normalise_msisdn
from deni.domain.security import RESET_CODE_TTL, RESET_CODE_WINDOW
from deni.domain.users import User
from deni.services import phone_proof, pin_reset, users
from deni.services.limits import LimitCounters
from deni.services.ports import Clock, PinHasher, UnitOfWorkFactory
from deni.services.users import REFRESH_ANSWER_LOST_GRACE
from tests.fakes import RecordingSmsSender
from tests.services.world import World
from tests.support.builders import next_phone, register

PEPPER = "test-pepper-0123456789abcdef-0123456789"
REFRESH_TTL_S = 30 * 24 * 3600
PIN = "3591"


@pytest.fixture
def sms() -> RecordingSmsSender:
    return RecordingSmsSender()


@pytest.fixture
def counters() -> LimitCounters:
    return LimitCounters(MemorySessionStore(), b"k" * 32)


@pytest.fixture
def tokens() -> JwtAccessTokens:
    return JwtAccessTokens(secret="test-secret-0123456789abcdef0123456789", ttl_s=900)


@dataclass(frozen=True, slots=True)
class MemberDeps:
    """What the member use cases run on, over a test world and the ports a test gives."""

    uow: UnitOfWorkFactory
    clock: Clock
    hasher: PinHasher
    sms: RecordingSmsSender | None
    limit_counters: LimitCounters | None
    tokens: JwtAccessTokens | None
    pepper: str = PEPPER
    refresh_ttl_s: int = REFRESH_TTL_S


def deps_of(
    world: World,
    *,
    sms: RecordingSmsSender | None = None,
    counters: LimitCounters | None = None,
    tokens: JwtAccessTokens | None = None,
) -> Any:
    return MemberDeps(world.uow, world.clock, world.hasher, sms, counters, tokens)


def ask_code(world: World, sms: RecordingSmsSender, counters: LimitCounters, phone: str) -> str:
    phone_proof.ask_registration_code(deps_of(world, sms=sms, counters=counters),
        phone=phone, source="person",
    )  # fmt: skip
    return sms.last_code(normalise_msisdn(phone))


def register_with(world: World, phone: str, code: str) -> User:
    return phone_proof.register_with_code(deps_of(world),
        phone=phone,
        code=code, name="Achieng", pin=PIN,
    )  # fmt: skip


def log_in(world: World, tokens: JwtAccessTokens, user: User, pin: str = PIN) -> users.Session:
    return users.login(deps_of(world, tokens=tokens),
        phone=user.phone, pin=pin, )  # fmt: skip


def refresh(world: World, tokens: JwtAccessTokens, refresh_token: str) -> users.Session:
    return users.refresh_session(deps_of(world, tokens=tokens),
        refresh_token=refresh_token,
        )  # fmt: skip


def test_a_number_proven_by_its_code_registers_once(
    world: World, sms: RecordingSmsSender, counters: LimitCounters
) -> None:
    phone = next_phone()
    code = ask_code(world, sms, counters, phone)
    wrong = "000000" if code != "000000" else "111111"
    with pytest.raises(PhoneCodeInvalid):
        register_with(world, phone, wrong)  # counted against the code, and kept
    user = register_with(world, phone, code)
    assert user.phone == normalise_msisdn(phone)
    assert user.phone_proven_at == world.clock.now()
    with pytest.raises(PhoneCodeInvalid):  # spent
        register_with(world, next_phone(), code)
    with world.uow.read_only() as uow:
        row = uow.phone_codes.lock(user.phone)
    assert row is not None
    assert (row.code_hash, row.attempts) == (None, 1)


def test_codes_of_numbers_nobody_registered_are_forgotten_after_their_hour(
    world: World, sms: RecordingSmsSender, counters: LimitCounters
) -> None:
    ask_code(world, sms, counters, next_phone())
    assert (
        phone_proof.prune_codes(
            world,
        )
        == 0
    )
    world.clock.advance(RESET_CODE_WINDOW)
    assert (
        phone_proof.prune_codes(
            world,
        )
        == 1
    )


def test_a_refresh_token_is_swapped_once_and_a_replay_ends_the_family(
    world: World, tokens: JwtAccessTokens
) -> None:
    user = register(world)
    first = log_in(world, tokens, user)
    second = refresh(world, tokens, first.refresh_token)
    assert tokens.verify(second.access_token, now=world.clock.now()) == user.id
    # The answer was lost: within the grace the spent token leads to its unused successor.
    again = refresh(world, tokens, first.refresh_token)
    world.clock.advance(REFRESH_ANSWER_LOST_GRACE + timedelta(seconds=1))
    with pytest.raises(Unauthorized):  # replayed late: stolen, the whole family ends
        refresh(world, tokens, first.refresh_token)
    for live in (second.refresh_token, again.refresh_token):
        with pytest.raises(Unauthorized):
            refresh(world, tokens, live)
    other = log_in(world, tokens, user)  # another sign-in is another family
    assert refresh(world, tokens, other.refresh_token).user_id == user.id


def test_a_wrong_pin_at_sign_in_is_answered_as_a_stranger(
    world: World, tokens: JwtAccessTokens
) -> None:
    user = register(world)
    with pytest.raises(Unauthorized) as wrong:
        log_in(world, tokens, user, pin="9999")
    with pytest.raises(Unauthorized) as stranger:
        users.login(deps_of(world, tokens=tokens),
            phone=next_phone(), pin=PIN, )  # fmt: skip
    assert wrong.value.code == stranger.value.code
    with world.uow.read_only() as uow:
        counted = uow.users.get(user.id)
    assert counted is not None
    # Counted, against the channels that do not prove the SIM (the API is one).
    assert (counted.failed_pin_attempts, counted.remote_failed_pin_attempts) == (0, 1)


def test_a_forgotten_pin_is_replaced_with_the_code_by_sms_and_sessions_end(
    world: World, tokens: JwtAccessTokens, sms: RecordingSmsSender, counters: LimitCounters
) -> None:
    user = register(world)
    session = log_in(world, tokens, user)
    pin_reset.start_pin_reset(deps_of(world, sms=sms, counters=counters),
        phone=user.phone, source="person",
    )  # fmt: skip
    code = sms.last_code(user.phone)

    def finish(code: str, new_pin: str) -> None:
        pin_reset.finish_pin_reset(deps_of(world),
            phone=user.phone, code=code, new_pin=new_pin,
        )  # fmt: skip

    with pytest.raises(InvalidResetCode):
        finish("000000" if code != "000000" else "111111", "4381")
    finish(code, "4381")
    with pytest.raises(InvalidResetCode):  # used once
        finish(code, "5683")
    with pytest.raises(Unauthorized):  # the old session ended with the old PIN
        refresh(world, tokens, session.refresh_token)
    with pytest.raises(Unauthorized):
        log_in(world, tokens, user)
    assert log_in(world, tokens, user, pin="4381").user_id == user.id


def test_an_unused_reset_code_is_forgotten_once_it_expires(
    world: World, sms: RecordingSmsSender, counters: LimitCounters
) -> None:
    user = register(world)
    pin_reset.start_pin_reset(deps_of(world, sms=sms, counters=counters),
        phone=user.phone, source="person",
    )  # fmt: skip
    assert (
        pin_reset.forget_expired_codes(
            world,
        )
        == 0
    )
    world.clock.advance(RESET_CODE_TTL)
    assert (
        pin_reset.forget_expired_codes(
            world,
        )
        == 1
    )
    with world.uow.read_only() as uow:
        row = uow.pin_resets.lock(user.id)
    assert row is not None
    assert (row.code_hash, row.expires_at) == (None, None)
