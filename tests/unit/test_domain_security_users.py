"""PIN format, growing lock periods, names, languages and Nairobi dates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deni.domain.errors import InvalidPin, ValidationFailed
from deni.domain.security import (
    LOCK_FIRST,
    LOCK_MAX,
    PIN_ATTEMPTS_MAX,
    is_locked,
    lock_period,
    require_pin_format,
)
from deni.domain.users import User, nairobi_today, require_language, require_name

NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)


def make_user() -> User:
    return User("u-1", "254712345678", "Wanjiku", "sw", "hash", NOW)


# --- PINs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("pin", ["0000", "3591", "9876"])
def test_four_ascii_digits_are_a_pin(pin: str) -> None:
    assert require_pin_format(pin) == pin


@pytest.mark.parametrize(
    "pin",
    [
        "",
        "123",
        "12345",
        "12a4",
        " 1234",
        "1234 ",
        "12.4",
        "-123",
        "\u0661\u0662\u0663\u0664",
        "\uff11\uff12\uff13\uff14",
        "\u00b2\u00b3\u2074\u2075",
    ],
)
def test_anything_else_is_not_a_pin(pin: str) -> None:
    with pytest.raises(InvalidPin) as caught:
        require_pin_format(pin)
    assert caught.value.code == "invalid_pin"


@pytest.mark.parametrize("pin", [1234, None, 12.34, b"3591", ["1", "2", "3", "4"]])
def test_non_strings_are_not_pins(pin: object) -> None:
    with pytest.raises(InvalidPin):
        require_pin_format(pin)


@given(st.text(max_size=8))
def test_pin_format_is_exactly_four_ascii_digits(text: str) -> None:
    valid = len(text) == 4 and all(c in "0123456789" for c in text)
    if valid:
        assert require_pin_format(text) == text
    else:
        with pytest.raises(InvalidPin):
            require_pin_format(text)


def test_lock_periods_double_from_five_minutes_up_to_a_day() -> None:
    assert (timedelta(minutes=5), timedelta(hours=24)) == (LOCK_FIRST, LOCK_MAX)
    assert lock_period(1) == timedelta(minutes=5)
    assert lock_period(2) == timedelta(minutes=10)
    assert lock_period(3) == timedelta(minutes=20)
    assert lock_period(9) == timedelta(minutes=5 * 256)
    assert lock_period(10) == timedelta(hours=24)  # 5 * 512 minutes is past a day
    assert lock_period(10**9) == timedelta(hours=24)


def test_lock_count_starts_at_one() -> None:
    with pytest.raises(AssertionError):
        lock_period(0)


@given(st.integers(min_value=1, max_value=10**6))
def test_lock_periods_never_shrink_and_stay_within_bounds(count: int) -> None:
    assert LOCK_FIRST <= lock_period(count) <= LOCK_MAX
    assert lock_period(count + 1) >= lock_period(count)


def test_is_locked_until_the_instant_it_ends() -> None:
    until = NOW + timedelta(minutes=5)
    assert not is_locked(None, NOW)
    assert is_locked(until, NOW)
    assert is_locked(until, until - timedelta(microseconds=1))
    assert not is_locked(until, until)


# --- users and wrong PINs ----------------------------------------------------------------------


def test_three_wrong_pins_lock_and_the_lock_grows() -> None:
    user = make_user()
    assert PIN_ATTEMPTS_MAX == 3
    assert user.record_wrong_pin(NOW) is False
    assert user.record_wrong_pin(NOW) is False
    assert not user.is_locked(NOW)
    assert user.record_wrong_pin(NOW) is True
    assert user.is_locked(NOW)
    assert user.locked_until == NOW + timedelta(minutes=5)
    assert user.failed_pin_attempts == 0
    after = NOW + timedelta(minutes=5)
    assert not user.is_locked(after)
    for _ in range(2):
        assert user.record_wrong_pin(after) is False
    assert user.record_wrong_pin(after) is True
    assert user.locked_until == after + timedelta(minutes=10)
    assert user.lock_count == 2


def test_a_locked_account_cannot_count_more_wrong_pins() -> None:
    user = make_user()
    for _ in range(3):
        user.record_wrong_pin(NOW)
    with pytest.raises(AssertionError):
        user.record_wrong_pin(NOW)


def test_a_right_pin_resets_attempts_but_not_the_lock_history() -> None:
    user = make_user()
    user.record_wrong_pin(NOW)
    user.record_wrong_pin(NOW)
    user.record_right_pin()
    assert user.failed_pin_attempts == 0
    assert user.record_wrong_pin(NOW) is False  # the count started again
    for _ in range(2):
        user.record_wrong_pin(NOW)
    assert user.lock_count == 1
    later = NOW + timedelta(hours=1)
    user.record_right_pin()
    assert user.locked_until is None
    for _ in range(3):
        user.record_wrong_pin(later)
    assert user.locked_until == later + timedelta(minutes=10)  # the second lock is longer


@pytest.mark.parametrize(
    ("raw", "clean"),
    [("Wanjiku", "Wanjiku"), ("  Otieno   Odhiambo ", "Otieno Odhiambo"), ("Zé", "Zé")],
)
def test_names_are_cleaned(raw: str, clean: str) -> None:
    assert require_name(raw) == clean


@pytest.mark.parametrize("raw", ["", "A", "   ", "x" * 61, "Bad\x00Name", "Tab\x07", None, 42])
def test_bad_names_are_refused(raw: object) -> None:
    with pytest.raises(ValidationFailed) as caught:
        require_name(raw)
    assert caught.value.code == "invalid_name"


def test_names_up_to_sixty_characters() -> None:
    assert require_name("x" * 60) == "x" * 60


@pytest.mark.parametrize("language", ["en", "sw"])
def test_languages(language: str) -> None:
    assert require_language(language) == language


@pytest.mark.parametrize("language", ["fr", "EN", "", None, "swahili"])
def test_other_languages_are_refused(language: object) -> None:
    with pytest.raises(ValidationFailed) as caught:
        require_language(language)
    assert caught.value.code == "invalid_language"


def test_nairobi_today_is_three_hours_ahead_of_utc() -> None:
    assert nairobi_today(datetime(2026, 11, 26, 20, 59, tzinfo=UTC)) == date(2026, 11, 26)
    assert nairobi_today(datetime(2026, 11, 26, 21, 0, tzinfo=UTC)) == date(2026, 11, 27)


def test_nairobi_today_refuses_naive_datetimes() -> None:
    with pytest.raises(AssertionError):
        nairobi_today(datetime(2026, 11, 26, 21, 0))
