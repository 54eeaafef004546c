"""What a user record does on a PIN reset, a right PIN and signing out everywhere, when money
may leave it, and how a closed account shows itself."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from deni.domain.security import (
    MONEY_HOLD_AFTER_RESET,
    PIN_ATTEMPTS_MAX,
    REMOTE_PIN_ATTEMPTS_MAX,
    RemoteGuesses,
)
from deni.domain.users import User, closed_phone, shown_contact

NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def make_user() -> User:
    return User("u-1", "254712345678", "Wanjiku", "sw", "hash", NOW)


def locked_everywhere() -> User:
    """Locked at sign-in, in a session and on USSD (in that order: each lock stops the next)."""
    user = make_user()
    for in_session in (False, True):
        for _ in range(REMOTE_PIN_ATTEMPTS_MAX):
            user.record_wrong_pin(NOW, channel="api", in_session=in_session)
    for _ in range(PIN_ATTEMPTS_MAX):
        user.record_wrong_pin(NOW, channel="ussd")
    assert user.locked_until is not None
    assert user.remote_locked_until is not None
    assert user.session_locked_until is not None
    return user


def test_a_pin_reset_unlocks_every_channel_and_clears_the_guesses() -> None:
    user = locked_everywhere()
    user.record_wrong_pin(NOW + timedelta(days=2), channel="api")
    user.record_wrong_pin(NOW + timedelta(days=2), channel="api", in_session=True)
    user.record_wrong_pin(NOW + timedelta(days=2), channel="ussd")
    lock_counts = (user.lock_count, user.remote_lock_count, user.session_lock_count)
    later = NOW + timedelta(days=2, seconds=1)
    user.reset_pin("new-hash", later)
    assert user.pin_hash == "new-hash"
    assert user.pin_reset_at == later
    assert (user.failed_pin_attempts, user.locked_until) == (0, None)
    assert (user.remote_failed_pin_attempts, user.remote_locked_until) == (0, None)
    assert (user.session_failed_pin_attempts, user.session_locked_until) == (0, None)
    assert (user.remote_wrong_pins_at, user.session_wrong_pins_at) == ((), ())
    assert (user.lock_count, user.remote_lock_count, user.session_lock_count) == lock_counts


def test_money_waits_a_day_after_a_pin_reset_and_while_customer_care_holds_it() -> None:
    user = make_user()
    assert user.money_may_leave(NOW)
    user.reset_pin("new-hash", NOW)
    assert not user.money_may_leave(NOW + MONEY_HOLD_AFTER_RESET - SECOND)
    assert user.money_may_leave(NOW + MONEY_HOLD_AFTER_RESET)
    user.support_locked_at = NOW
    assert not user.money_may_leave(NOW + MONEY_HOLD_AFTER_RESET)


@pytest.mark.parametrize("in_session", [False, True])
def test_a_right_remote_pin_clears_only_its_own_counter(in_session: bool) -> None:
    user = make_user()
    user.record_wrong_pin(NOW, channel="ussd")
    user.record_wrong_pin(NOW, channel="api", in_session=False)
    user.record_wrong_pin(NOW, channel="api", in_session=True)
    user.record_right_pin(channel="api", in_session=in_session)
    assert user.failed_pin_attempts == 1
    assert user.session_failed_pin_attempts == (0 if in_session else 1)
    assert user.remote_failed_pin_attempts == (1 if in_session else 0)


def test_a_sign_in_lock_leaves_ussd_counting_its_own_wrong_pins() -> None:
    user = make_user()
    for _ in range(REMOTE_PIN_ATTEMPTS_MAX):
        user.record_wrong_pin(NOW, channel="api")
    assert user.locked_until_for("api", NOW) is not None
    assert user.locked_until_for("ussd", NOW) is None
    assert user.record_wrong_pin(NOW, channel="ussd") is False
    assert user.failed_pin_attempts == 1


def test_a_wrong_pin_never_shortens_a_lock_in_force() -> None:
    until = NOW + timedelta(hours=1)
    guesses, locked = RemoteGuesses(0, 1, until, ()).after_wrong(NOW)
    assert locked is False
    assert guesses.locked_until == until
    assert (guesses.in_a_row, guesses.lock_count, guesses.wrong_at) == (1, 1, (NOW,))


def test_signing_out_everywhere_moves_the_session_epoch_on_by_one_each_time() -> None:
    user = make_user()
    user.end_sessions()
    assert user.session_epoch == 1
    user.end_sessions()
    assert user.session_epoch == 2


def test_a_closed_account_keeps_a_stable_stand_in_that_is_no_phone_number() -> None:
    # Fixed values: the stand-in must not change between releases (erasing twice, a re-run
    # of the same closure, must write the same value into a unique column).
    assert closed_phone("u-1") == "xYmm3r7MTiVu"
    assert closed_phone("0f8b6c2e-4a1d-4d3e-9b1a-2c3d4e5f6a7b") == "xLc2kU218ijX"
    stand_in = closed_phone("u-2")
    assert re.fullmatch(r"x[0-9A-Za-z]{11}", stand_in)
    assert len(stand_in) == len("254712345678")
    assert not stand_in.isdigit()


@pytest.mark.parametrize(
    ("phone", "closed", "shown"),
    [
        ("254712345678", False, ("Wanjiku", "254712345678")),
        ("254712345678", True, ("Wanjiku", "")),
        ("xYmm3r7MTiVu", False, ("Wanjiku", "")),
    ],
)
def test_only_an_open_account_with_a_number_shows_it(
    phone: str, closed: bool, shown: tuple[str, str]
) -> None:
    assert shown_contact("Wanjiku", phone, closed=closed) == shown
