"""Exact edges of the domain's input rules (phone numbers, PINs, server secrets, the money hold
after a PIN reset) and the audit chain's hash format, which stored chains depend on."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from deni.domain.audit import chain_hash
from deni.domain.errors import InvalidPhoneNumber, InvalidPin
from deni.domain.phone import mask_msisdn, normalise_msisdn
from deni.domain.secrecy import derive_key
from deni.domain.security import MONEY_HOLD_AFTER_RESET, money_held_until, require_pin_format

NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
NOT_A_NUMBER = "Give a Kenyan mobile number such as 0712 345 678."


def test_a_phone_number_may_take_32_characters_with_its_spaces() -> None:
    padded = "0712345678".ljust(32)
    assert normalise_msisdn(padded) == "254712345678"
    with pytest.raises(InvalidPhoneNumber) as caught:
        normalise_msisdn(padded + " ")
    assert caught.value.message == NOT_A_NUMBER


@pytest.mark.parametrize("raw", ["", "   ", None, 712345678])
def test_no_phone_number_is_refused_in_plain_words(raw: object) -> None:
    with pytest.raises(InvalidPhoneNumber) as caught:
        normalise_msisdn(raw)
    assert caught.value.message == NOT_A_NUMBER


def test_a_phone_number_with_letters_is_refused_in_plain_words() -> None:
    with pytest.raises(InvalidPhoneNumber) as caught:
        normalise_msisdn("07123ABCDE")
    assert caught.value.message == "A phone number is digits only, such as 0712 345 678."


def test_a_short_value_is_masked_to_its_ends_only() -> None:
    assert mask_msisdn("254712345678") == "2547******78"
    assert mask_msisdn("123456") == "123456"
    assert mask_msisdn("12345") == "123445"


def test_a_bad_pin_is_refused_in_plain_words() -> None:
    with pytest.raises(InvalidPin) as caught:
        require_pin_format("12a4")
    assert caught.value.message == "A PIN is exactly 4 digits."


def test_a_server_secret_has_at_least_8_characters_and_a_subkey_a_purpose() -> None:
    assert len(derive_key("12345678", "sessions")) == 32
    with pytest.raises(AssertionError, match=r"^a server secret is long$"):
        derive_key("1234567", "sessions")
    with pytest.raises(AssertionError, match=r"^every subkey has a purpose$"):
        derive_key("12345678", "")


def test_money_is_held_for_exactly_a_day_after_a_pin_reset() -> None:
    until = NOW + MONEY_HOLD_AFTER_RESET
    assert timedelta(hours=24) == MONEY_HOLD_AFTER_RESET
    assert money_held_until(None, NOW) is None
    assert money_held_until(NOW, NOW) == until
    assert money_held_until(NOW, until - timedelta(microseconds=1)) == until
    assert money_held_until(NOW, until) is None


def test_an_audit_hash_covers_its_fields_joined_by_a_unit_separator() -> None:
    prev = "0" * 64
    fields = [prev, "7", NOW.isoformat(), "u-1", "api", "repay_loan", '{"a":1}']
    expected = hashlib.sha256("\x1f".join(fields).encode()).hexdigest()
    assert (
        chain_hash(
            prev_hash=prev,
            seq=7,
            at=NOW,
            actor_id="u-1",
            channel="api",
            command="repay_loan",
            details='{"a":1}',
        )
        == expected
    )
