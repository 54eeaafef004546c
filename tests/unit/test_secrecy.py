"""Which fields are secret, how they are left out or masked at any depth, and keyed digests."""

from __future__ import annotations

import pytest

from deni.domain.secrecy import (
    MASK,
    NESTING_MAX,
    canonical_json,
    derive_key,
    digests_match,
    is_secret_field,
    keyed_digest,
    masked,
    without_secrets,
)


@pytest.mark.parametrize(
    "name",
    ["pin", "PIN", "old_pin", "new_pin", "newPin", "oldPIN", "pin2", "code", "reset_code",
     "otpCode", "refresh_token", "password", "api-secret", "pins", "codes"],
)  # fmt: skip
def test_fields_named_like_a_secret_are_secret(name: str) -> None:
    assert is_secret_field(name)


@pytest.mark.parametrize(
    "name",
    ["loan_id", "phone", "lender_phone", "name", "language", "amount_cents", "principal_cents",
     "due_date", "choice", "spinning", "pinned", "barcode_scanner", "decode"],
)  # fmt: skip
def test_other_fields_are_not(name: str) -> None:
    assert not is_secret_field(name)


def test_secret_fields_are_left_out_at_any_depth() -> None:
    body = {
        "loan_id": "L1",
        "pin": "1234",
        "approval": {"newPin": "4321", "note": "ok", "steps": [{"code": "613572", "n": 1}]},
        "codes": ["1", "2"],
    }
    assert without_secrets(body) == {
        "loan_id": "L1",
        "approval": {"note": "ok", "steps": [{"n": 1}]},
    }
    assert masked(body) == {
        "loan_id": "L1",
        "pin": MASK,
        "approval": {"newPin": MASK, "note": "ok", "steps": [{"code": MASK, "n": 1}]},
        "codes": MASK,
    }
    assert without_secrets("1234") == "1234"  # a bare value has no field name to go by


def test_data_nested_deeper_than_looked_into_is_masked_whole() -> None:
    deep: object = {"pin": "1234"}
    for _ in range(NESTING_MAX + 5):
        deep = [deep]
    assert "1234" not in canonical_json(without_secrets(deep))
    assert "1234" not in canonical_json(masked(deep))


def test_keyed_digests_need_the_key_and_keep_parts_apart() -> None:
    key = derive_key("a-server-secret-of-some-length", "purpose-a")
    assert key != derive_key("a-server-secret-of-some-length", "purpose-b")
    assert key != derive_key("another-server-secret-entirely", "purpose-a")
    digest = keyed_digest(key, "ab", "c")
    assert len(digest) == 64
    assert digest != keyed_digest(key, "a", "bc")
    assert digests_match(digest, keyed_digest(key, "ab", "c"))
    assert not digests_match(None, digest)
    assert not digests_match(digest[:-1] + "0" if digest[-1] != "0" else digest[:-1] + "1", digest)


def test_canonical_json_has_one_spelling() -> None:
    assert canonical_json({"b": 1, "a": [2, "é"]}) == canonical_json({"a": [2, "é"], "b": 1})
