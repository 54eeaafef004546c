"""Time-based one-time codes (RFC 6238 over RFC 4226's HOTP), as authenticator apps make them.

An operator signs in with a password and the six digits their app shows. A code is good for
its 30-second step and the steps either side (phones drift), and for one sign-in only: the
step it was accepted for is kept, and no code of that step or an earlier one works again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime
from urllib.parse import quote, urlencode

STEP_S = 30
DIGITS = 6
DRIFT_STEPS = 1  # one step either side of the server's clock
SEED_BYTES = 20  # 160 bits, the size RFC 4226 recommends for HMAC-SHA1


def new_seed() -> bytes:
    return secrets.token_bytes(SEED_BYTES)


def seed_text(seed: bytes) -> str:
    """The seed as authenticator apps take it typed in: base32, without padding."""
    return base64.b32encode(seed).decode().rstrip("=")


def provisioning_uri(seed: bytes, *, account: str, issuer: str) -> str:
    """The otpauth:// address an authenticator app reads from a QR code."""
    query = urlencode({"secret": seed_text(seed), "issuer": issuer, "digits": DIGITS})
    return f"otpauth://totp/{quote(issuer)}:{quote(account)}?{query}"


def step_at(at: datetime) -> int:
    assert at.tzinfo is not None, "an aware time"
    return int(at.timestamp()) // STEP_S


def code_for_step(seed: bytes, step: int) -> str:
    assert step >= 0
    digest = hmac.new(seed, step.to_bytes(8, "big"), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = int.from_bytes(digest[offset : offset + 4], "big") & 0x7FFF_FFFF
    return str(number % 10**DIGITS).zfill(DIGITS)


def code_at(seed: bytes, at: datetime) -> str:
    return code_for_step(seed, step_at(at))


def matching_step(seed: bytes, code: str, *, at: datetime, last_step: int) -> int | None:
    """The step `code` belongs to, if it is one of the steps around `at` not used before;
    None otherwise. Every candidate is compared, in constant time, so timing shows nothing."""
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    now_step = step_at(at)
    found: int | None = None
    for step in range(now_step - DRIFT_STEPS, now_step + DRIFT_STEPS + 1):
        if hmac.compare_digest(code_for_step(seed, step), code) and step > last_step:
            found = step
    return found
