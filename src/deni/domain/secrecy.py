"""Secrets at rest: which fields of a request are secret, and keys derived from a server secret.

A PIN has 10,000 values and a reset code a million, so any unkeyed hash of one gives it back
at once. What Deni keeps about a request (an idempotency fingerprint, a sync mutation's
fingerprint, a dead letter's arguments) therefore leaves secret fields out or masks them, and
what it must keep of a secret for a moment (a USSD session comparing two entries of a new PIN)
is an HMAC under a key only the server holds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping

# A field whose name has one of these words (`pin`, `old_pin`, `newPin`, `pin2`,
# `reset_code`, `refresh_token`) holds a secret, wherever it is nested.
_SECRET_WORD_STEMS = ("pin", "code", "otp", "password", "passcode", "secret", "token")
SECRET_WORDS = frozenset(_SECRET_WORD_STEMS) | {stem + "s" for stem in _SECRET_WORD_STEMS}
MASK = "***"
NESTING_MAX = 32  # deeper than this nothing is looked into: it is all masked
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
KEY_LABEL_PREFIX = b"deni-subkey:"


def is_secret_field(name: str) -> bool:
    """Whether a field called `name` holds a secret: its words, split at `_`, `-`, digits and
    camelCase humps, include one of SECRET_WORDS."""
    return any(word.lower() in SECRET_WORDS for word in _WORD.findall(name))


def without_secrets(value: object, *, depth: int = 0) -> object:
    """`value` (JSON data) with every secret field left out, at any depth (past NESTING_MAX
    levels a value is replaced by MASK whole: too deep to look into, so treated as secret)."""
    if depth > NESTING_MAX:
        return MASK
    if isinstance(value, Mapping):
        return {
            k: without_secrets(v, depth=depth + 1)
            for k, v in value.items()
            if not (isinstance(k, str) and is_secret_field(k))
        }
    if isinstance(value, list | tuple):
        return [without_secrets(v, depth=depth + 1) for v in value]
    return value


def masked(value: object, *, depth: int = 0) -> object:
    """`value` (JSON data) with every secret field's value replaced by MASK, at any depth: the
    shape stays readable (which field was sent), the secret does not."""
    if depth > NESTING_MAX:
        return MASK
    if isinstance(value, Mapping):
        return {
            k: MASK if isinstance(k, str) and is_secret_field(k) else masked(v, depth=depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [masked(v, depth=depth + 1) for v in value]
    return value


def canonical_json(value: object) -> str:
    """One spelling per value: sorted keys, no spaces (for fingerprints)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def derive_key(secret: str, label: str) -> bytes:
    """A key of its own for one purpose (`label`), from a server secret: an HMAC made for one
    purpose can never be taken for another's, and no subkey gives the secret back."""
    assert len(secret) >= 8, "a server secret is long"
    assert label, "every subkey has a purpose"
    assert label.isascii(), label
    return hmac.new(secret.encode(), KEY_LABEL_PREFIX + label.encode(), hashlib.sha256).digest()


ACCESS_TOKEN_KID_LABEL = "access-token-kid"  # noqa: S105 (a label, no secret)


def derived_key_id(secret: str) -> str:
    """The key id of a signing key named by no one (DENI_JWT_SECRET alone): a digest of it,
    so changing the secret changes the id, and the id gives nothing of the secret away."""
    return "k" + derive_key(secret, ACCESS_TOKEN_KID_LABEL).hex()[:12]


def keyed_digest(key: bytes, *parts: str) -> str:
    """HMAC-SHA256 of the parts (length-prefixed, so ("ab", "c") and ("a", "bc") differ), hex."""
    assert len(key) >= 16
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        encoded = part.encode()
        mac.update(len(encoded).to_bytes(4, "big"))
        mac.update(encoded)
    return mac.hexdigest()


def digests_match(expected: object, actual: str) -> bool:
    """Constant-time comparison of a stored digest (any JSON value) with a fresh one."""
    return isinstance(expected, str) and hmac.compare_digest(expected, actual)
