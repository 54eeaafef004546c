"""Codes by SMS: at most RESET_CODES_PER_WINDOW_MAX sent an hour, each good for ten minutes and
RESET_CODE_ATTEMPTS_MAX tries, and good once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from deni.domain.security import (
    RESET_CODE_ATTEMPTS_MAX,
    RESET_CODE_TTL,
    RESET_CODE_WINDOW,
    RESET_CODES_PER_WINDOW_MAX,
    SmsCode,
)

NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def test_the_limits_are_the_designed_ones() -> None:
    assert (RESET_CODES_PER_WINDOW_MAX, RESET_CODE_ATTEMPTS_MAX) == (3, 3)
    assert timedelta(minutes=10) == RESET_CODE_TTL
    assert timedelta(hours=1) == RESET_CODE_WINDOW


def test_a_few_codes_may_be_sent_in_a_window_and_more_once_it_ends() -> None:
    code = SmsCode(window_started_at=NOW)
    for i in range(RESET_CODES_PER_WINDOW_MAX):
        assert code.may_send(NOW + i * SECOND)
        code.issue(f"h{i}", NOW + i * SECOND)
        assert code.sent_in_window == i + 1
    last_in_window = NOW + RESET_CODE_WINDOW - SECOND
    assert not code.may_send(last_in_window)
    assert code.may_send(NOW + RESET_CODE_WINDOW)
    code.issue("fresh", NOW + RESET_CODE_WINDOW)
    assert code.window_started_at == NOW + RESET_CODE_WINDOW
    assert code.sent_in_window == 1


def test_an_issued_code_is_usable_until_it_expires() -> None:
    code = SmsCode(window_started_at=NOW)
    assert not code.usable(NOW)
    code.issue("hash", NOW)
    assert (code.code_hash, code.expires_at, code.attempts) == ("hash", NOW + RESET_CODE_TTL, 0)
    assert code.usable(NOW + RESET_CODE_TTL - SECOND)
    assert not code.usable(NOW + RESET_CODE_TTL)


def test_a_code_without_an_expiry_is_not_usable() -> None:
    assert not SmsCode(window_started_at=NOW, code_hash="hash").usable(NOW)


def test_wrong_tries_use_a_code_up() -> None:
    code = SmsCode(window_started_at=NOW)
    code.issue("hash", NOW)
    for tries in range(1, RESET_CODE_ATTEMPTS_MAX):
        code.record_wrong()
        assert code.attempts == tries
        assert code.usable(NOW)
    code.record_wrong()
    assert code.attempts == RESET_CODE_ATTEMPTS_MAX
    assert (code.code_hash, code.expires_at) == (None, None)
    assert not code.usable(NOW)


def test_a_new_code_starts_its_tries_afresh() -> None:
    code = SmsCode(window_started_at=NOW)
    code.issue("first", NOW)
    code.record_wrong()
    code.issue("second", NOW + SECOND)
    assert (code.code_hash, code.attempts) == ("second", 0)


def test_a_used_code_is_gone() -> None:
    code = SmsCode(window_started_at=NOW)
    code.issue("hash", NOW)
    code.spend()
    assert (code.code_hash, code.expires_at) == (None, None)
    assert not code.usable(NOW)
