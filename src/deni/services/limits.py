"""Abuse limits: how often one source address, or one phone number or account, may do a thing
that costs Deni (an SMS, a PIN hash) or narrows down a secret (a PIN, a code).

One mechanism for all of them: a counter per (limit, subject, fixed window) in the session
store (services/ports.SessionStore: memory, SQL or Redis, the same as USSD sessions), counted
with one atomic `increment` before the work is done, so the limit holds while the request is
read and across API processes sharing the store. The hit that goes past the limit is refused
with `429 too_many_requests` and the seconds to the window's end; refused hits count too, so
hammering does not help. A fixed window lets up to twice a limit through around its edge; the
figures below allow for that.

Subjects are digested into the key with an HMAC under a subkey of the pepper (LimitCounters),
so a key is short whatever the input, and whoever reads the store cannot get a number or an
address back by trying them all (there are few enough numbers for a plain hash to fall). An
IPv6 source counts by its /64: one host
usually holds a whole /64, and one limit per address in it would be no limit at all.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime

from deni.domain.errors import InvalidPhoneNumber, TooManyRequests
from deni.domain.phone import normalise_msisdn
from deni.domain.secrecy import keyed_digest
from deni.domain.security import RESET_ASKS_PER_SOURCE_MAX
from deni.services.ports import SessionStore

HOUR_S = 3600
KEY_PREFIX = "lim:"
SUBJECT_DIGEST_CHARS = 24  # 96 bits: two subjects sharing a counter by chance never happens
NAME_CHARS_MAX = 16
SUBJECT_CHARS_MAX = 256  # input past this is cut before hashing (it is garbage anyway)
IPV6_PREFIX_BITS = 64
# The purpose the subject key is derived for from the pepper (domain/secrecy.derive_key).
SUBJECT_KEY_LABEL = "limit-subjects"
SUBJECT_KEY_BYTES_MIN = 16


@dataclass(frozen=True, slots=True)
class LimitCounters:
    """Where the counters live, and the key their subjects are digested under."""

    store: SessionStore
    subject_key: bytes

    def __post_init__(self) -> None:
        assert len(self.subject_key) >= SUBJECT_KEY_BYTES_MIN

    def key(self, limit_name: str, subject: str, window: int) -> str:
        digest = keyed_digest(self.subject_key, subject)
        return f"{KEY_PREFIX}{limit_name}:{digest[:SUBJECT_DIGEST_CHARS]}:{window}"


@dataclass(frozen=True, slots=True)
class Limit:
    name: str  # part of every counter key
    hits_max: int  # per window; the next one is refused
    window_s: int
    message: str

    def __post_init__(self) -> None:
        assert 0 < len(self.name) <= NAME_CHARS_MAX
        assert ":" not in self.name
        assert self.hits_max >= 1
        assert 0 < self.window_s <= 24 * HOUR_S


# Signing in. The PIN guesses themselves are capped per account by the remote PIN lock
# (domain/security.py); these bound the argon2 work and spraying many numbers from one place.
LOGIN_PER_SOURCE_HOURLY = Limit("login-src", 100, HOUR_S, "Too many sign-ins from here.")
LOGIN_PER_PHONE_HOURLY = Limit("login-phone", 20, HOUR_S, "Too many sign-ins to this number.")
# The staff console's sign-in: a password and a TOTP code per try, and few operators; each
# operator is also locked after a few wrong tries in a row (domain/operators.py).
OPS_SIGN_IN_PER_SOURCE_HOURLY = Limit("ops-src", 30, HOUR_S, "Too many console sign-ins from here.")
# Creating accounts (each may later cost SMS), and asking for a registration code by SMS.
# A number registers once (then `409 already_registered`), so sign-ups count per source only.
REGISTER_PER_SOURCE_HOURLY = Limit("reg-src", 20, HOUR_S, "Too many sign-ups from here.")
REGISTRATION_CODE_PER_SOURCE_HOURLY = Limit(
    "regcode-src", 10, HOUR_S, "Too many codes asked from here."
)
# Asking for a PIN-reset code (the number itself has its own cap of codes, domain/security.py).
PIN_RESET_ASKS_PER_SOURCE_HOURLY = Limit(
    "reset-src", RESET_ASKS_PER_SOURCE_MAX, HOUR_S, "Too many reset codes asked from here."
)
# Trying a code sent by SMS (PIN reset, registration): each code also dies after 3 wrong tries.
CODE_CHECKS_PER_SOURCE_HOURLY = Limit("code-src", 30, HOUR_S, "Too many codes tried from here.")
CODE_CHECKS_PER_PHONE_HOURLY = Limit(
    "code-phone", 10, HOUR_S, "Too many codes tried for this number."
)

# Naming a lender by number: the answer says whether the number is on Deni (USSD also shows
# the name, to check it is the right person). A member asks a few people a day (at most 10
# requests a day in all, services/loans.py); more lookups than this is a list being tried.
LENDER_LOOKUPS_PER_MEMBER_DAILY = Limit(
    "lookup-member", 30, 24 * HOUR_S, "Too many numbers looked up today."
)


def hit(counters: LimitCounters, limit: Limit, subject: str, *, now: datetime) -> None:
    """Count one hit of `limit` for `subject`; refuse it if it is one too many."""
    now_s = int(now.timestamp())
    window = now_s // limit.window_s
    key = counters.key(limit.name, subject, window)
    count = counters.store.increment(key, ttl_s=limit.window_s, now=now)
    if count > limit.hits_max:
        retry_after_s = max(1, (window + 1) * limit.window_s - now_s)
        minutes = -(-retry_after_s // 60)
        raise TooManyRequests(
            f"{limit.message} Try again in {minutes} minutes.", retry_after_s=retry_after_s
        )


def source_subject(address: str) -> str:
    """What a source address counts as: itself, or its /64 for IPv6."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:SUBJECT_CHARS_MAX]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, IPV6_PREFIX_BITS), strict=False))
    return str(parsed)


def phone_subject(phone: object) -> str:
    """One number however it is written; what is not a number counts as what was sent."""
    text = phone if isinstance(phone, str) else repr(phone)
    try:
        return normalise_msisdn(text[:SUBJECT_CHARS_MAX])
    except InvalidPhoneNumber:
        return "raw:" + text[:SUBJECT_CHARS_MAX]


def limit_pair(
    counters: LimitCounters,
    per_source: Limit,
    per_phone: Limit,
    *,
    source: str,
    phone: object,
    now: datetime,
) -> None:
    """The common shape: the caller's address first, then the number acted on. A refusal by
    the source does not count against the number (a crowd cannot use it up for its owner)."""
    hit(counters, per_source, source_subject(source), now=now)
    hit(counters, per_phone, phone_subject(phone), now=now)


def limit_login(counters: LimitCounters, *, source: str, phone: object, now: datetime) -> None:
    limit_pair(
        counters,
        LOGIN_PER_SOURCE_HOURLY,
        LOGIN_PER_PHONE_HOURLY,
        source=source,
        phone=phone,
        now=now,
    )


def limit_ops_sign_in(counters: LimitCounters, *, source: str, now: datetime) -> None:
    hit(counters, OPS_SIGN_IN_PER_SOURCE_HOURLY, source_subject(source), now=now)


def limit_registration(counters: LimitCounters, *, source: str, now: datetime) -> None:
    hit(counters, REGISTER_PER_SOURCE_HOURLY, source_subject(source), now=now)


def limit_registration_code_request(counters: LimitCounters, *, source: str, now: datetime) -> None:
    """For the routes that send a code proving a number: call before sending. Each number
    also gets only a few codes an hour (domain/security.py), answered like any other ask."""
    hit(counters, REGISTRATION_CODE_PER_SOURCE_HOURLY, source_subject(source), now=now)


def limit_code_check(counters: LimitCounters, *, source: str, phone: object, now: datetime) -> None:
    """For every route that checks a code sent by SMS (PIN reset, registration): call before
    comparing the code."""
    limit_pair(
        counters,
        CODE_CHECKS_PER_SOURCE_HOURLY,
        CODE_CHECKS_PER_PHONE_HOURLY,
        source=source,
        phone=phone,
        now=now,
    )


def limit_lender_lookup(counters: LimitCounters, *, member_id: str, now: datetime) -> None:
    """For every place a member names a lender by number (USSD's lender screen, a loan request
    on the API): call before looking the number up. Every lookup counts, found or not, so the
    cap bounds what a member learns of who is on Deni, not only the misses."""
    hit(counters, LENDER_LOOKUPS_PER_MEMBER_DAILY, f"member:{member_id}", now=now)
