"""Secret fields are looked for down to NESTING_MAX levels and no deeper; fingerprints have one
spelling; keyed digests need a 16-byte key and length-prefix their parts."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import pytest

from deni.domain.secrecy import (
    MASK,
    NESTING_MAX,
    canonical_json,
    keyed_digest,
    masked,
    without_secrets,
)

KEY = bytes(range(16))


def in_dicts(levels: int) -> object:
    value: object = "leaf"
    for _ in range(levels):
        value = {"a": value}
    return value


def in_lists(levels: int) -> object:
    value: object = "leaf"
    for _ in range(levels):
        value = [value]
    return value


def innermost(value: object) -> object:
    while isinstance(value, dict | list):
        value = value["a"] if isinstance(value, dict) else value[0]
    return value


@pytest.mark.parametrize("clean", [without_secrets, masked])
@pytest.mark.parametrize("nest", [in_dicts, in_lists])
def test_values_are_kept_down_to_the_nesting_bound_and_masked_below_it(
    clean: Callable[[object], object], nest: Callable[[int], object]
) -> None:
    assert NESTING_MAX == 32
    assert clean(nest(NESTING_MAX)) == nest(NESTING_MAX)
    assert innermost(clean(nest(NESTING_MAX))) == "leaf"
    assert innermost(clean(nest(NESTING_MAX + 1))) == MASK


def test_a_fingerprint_has_sorted_keys_no_spaces_and_unescaped_text() -> None:
    value = {"b": [1, "Wanjikũ"], "a": None}
    assert canonical_json(value) == '{"a":null,"b":[1,"Wanjikũ"]}'


def test_a_keyed_digest_is_the_hmac_of_the_length_prefixed_parts() -> None:
    expected = hmac.new(
        KEY, b"\x00\x00\x00\x02ab" + b"\x00\x00\x00\x01c", hashlib.sha256
    ).hexdigest()
    assert keyed_digest(KEY, "ab", "c") == expected
    assert keyed_digest(KEY, "ab", "c") != keyed_digest(KEY, "a", "bc")


def test_a_keyed_digest_takes_a_key_of_16_bytes_and_no_shorter() -> None:
    keyed_digest(KEY, "x")
    with pytest.raises(AssertionError):
        keyed_digest(KEY[:15], "x")
