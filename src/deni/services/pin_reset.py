"""Forgotten PINs: a one-time code by SMS to the registered number, then a new PIN.

Asking for a code says the same whether the number is on Deni or not (who uses Deni is not for
strangers to learn), and at most a few codes go to one number an hour. The code is kept only
as an HMAC under the server's pepper, is void after a few wrong tries or ten minutes, and
works once. A reset unlocks the account, ends every session, tells the owner by SMS, and holds
money in the wallet for a day (domain/security.py): an SMS code proves the SIM, and a swapped
SIM would prove it too. Proving the SIM proves the number: an account made before numbers were
proven is proven by a reset (services/phone_proof.py).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

import structlog

from deni.domain.errors import (
    InvalidResetCode,
    LockedBySupport,
)
from deni.domain.phone import normalise_msisdn
from deni.domain.security import (
    MONEY_HOLD_AFTER_RESET,
    RESET_CODE_DIGITS,
    RESET_CODE_TTL,
    PinResetCode,
    require_new_pin,
)
from deni.domain.users import User
from deni.i18n import render_notification
from deni.services import limits
from deni.services.common import audit, lock_member, notify, require_user
from deni.services.phone_proof import CodeSms, DeliverCode, send_code_now
from deni.services.ports import (
    CodeDeps,
    Deps,
    PinDeps,
    PinHasher,
    UnitOfWork,
)

log = structlog.get_logger(__name__)
# One answer for a wrong, late, used or never-sent code, and for a number not on Deni.
_INVALID_CODE = "The code is wrong or no longer valid. Ask for a new one."
FORGET_BATCH = 500
FORGET_BATCHES_PER_RUN_MAX = 20


def start_pin_reset(
    deps: CodeDeps,
    *,
    phone: str,
    source: str,
    channel: str = "api",
    deliver: DeliverCode | None = None,
) -> None:
    """Send a reset code to this number if it is a member's and the hour's codes allow.
    `source` is who asks (an IP address): it may ask only so often, whatever the number.
    `deliver` sends the SMS (now, by default); the API sends it after the answer
    (phone_proof.send_code_after_answer), so neither the time the answer takes nor an SMS
    failure says whether the number is a member's."""
    msisdn = normalise_msisdn(phone)
    now = deps.clock.now()
    _count_ask(deps.limit_counters, source, now)
    with deps.uow() as uow:
        user = lock_member(uow, msisdn)
        if user is None or user.support_locked_at is not None:
            return
        reset = uow.pin_resets.lock(user.id) or PinResetCode(user_id=user.id, window_started_at=now)
        if not reset.may_send(now):
            log.info("pin_reset_codes_used_up")
            return
        code = f"{secrets.randbelow(10**RESET_CODE_DIGITS):0{RESET_CODE_DIGITS}d}"
        reset.issue(_code_hash(deps.pepper, user.id, code), now)
        uow.pin_resets.save(reset, now)
        audit(uow, actor_id=user.id, channel=channel, command="ask_pin_reset", details={}, now=now)
        uow.commit()
    minutes = int(RESET_CODE_TTL.total_seconds()) // 60
    body = render_notification("pin_reset_code", user.language, {"code": code, "minutes": minutes})
    message = CodeSms(phone=user.phone, body=body, idempotency_key=_sms_key(reset), secret=code)
    if deliver is None:
        send_code_now(deps.sms, message)
    else:
        deliver(message)


def finish_pin_reset(
    deps: CodeDeps,
    *,
    phone: str,
    code: str,
    new_pin: str,
    channel: str = "api",
) -> None:
    """The code from the SMS and a new PIN. A wrong code counts against the code, not the
    account's PIN tries; a malformed new PIN costs nothing."""
    require_new_pin(new_pin)
    msisdn = normalise_msisdn(phone)
    now = deps.clock.now()
    with deps.uow() as uow:
        user = lock_member(uow, msisdn)
        reset = uow.pin_resets.lock(user.id) if user is not None else None
        if user is None or user.support_locked_at or reset is None or not reset.usable(now):
            raise InvalidResetCode(_INVALID_CODE)
        assert reset.code_hash is not None
        if not hmac.compare_digest(reset.code_hash, _code_hash(deps.pepper, user.id, code)):
            reset.record_wrong()
            uow.pin_resets.save(reset, now)
            uow.commit()
            raise InvalidResetCode(_INVALID_CODE)
        reset.spend()
        uow.pin_resets.save(reset, now)
        _replace_pin(uow, deps.hasher, user, new_pin, now=now, channel=channel)
        uow.commit()


def reset_pin_on_this_sim(
    deps: PinDeps,
    *,
    user_id: str,
    new_pin: str,
    channel: str,
) -> None:
    """A forgotten PIN replaced from a USSD session: the mobile network, not the caller, says
    which SIM dialled (Africa's Talking posts to Deni's secret path), which proves as much as
    an SMS code would. Everything else is as after an SMS code: unlocked, sessions ended, the
    owner told, money held for a day."""
    require_new_pin(new_pin)
    now = deps.clock.now()
    with deps.uow() as uow:
        user = require_user(uow, user_id, lock=True)
        if user.support_locked_at is not None:
            raise LockedBySupport
        _replace_pin(uow, deps.hasher, user, new_pin, now=now, channel=channel)
        uow.commit()


def _replace_pin(
    uow: UnitOfWork, hasher: PinHasher, user: User, new_pin: str, *, now: datetime, channel: str
) -> None:
    user.reset_pin(hasher.hash(new_pin), now)
    user.end_sessions()
    user.prove_phone(now)  # the SIM's holder, and only they, now holds the PIN too
    uow.users.save(user, now)
    uow.tokens.revoke_all(user.id, now)
    hours = int(MONEY_HOLD_AFTER_RESET.total_seconds()) // 3600
    notify(uow, user=user, kind="pin_reset", params={"hours": hours}, now=now)
    audit(uow, actor_id=user.id, channel=channel, command="reset_pin", details={}, now=now)


def forget_expired_codes(deps: Deps) -> int:
    """Clear the hashes of codes that expired unused: worthless to anyone, and no reason to
    keep an HMAC of a six-digit number. Short transactions, a bounded number per run."""
    forgotten = 0
    for _ in range(FORGET_BATCHES_PER_RUN_MAX):
        with deps.uow() as uow:
            count = uow.pin_resets.forget_expired(now=deps.clock.now(), limit=FORGET_BATCH)
            uow.commit()
        forgotten += count
        if count < FORGET_BATCH:
            break
    return forgotten


def _count_ask(counters: limits.LimitCounters, source: str, now: datetime) -> None:
    """Each ask may send an SMS Deni pays for: one source may ask only so often."""
    limits.hit(
        counters, limits.PIN_RESET_ASKS_PER_SOURCE_HOURLY, limits.source_subject(source), now=now
    )


def _code_hash(pepper: str, user_id: str, code: str) -> str:
    """Bound to the user, so a row copied to another user's is worthless."""
    message = f"pin-reset:{user_id}:{code}".encode()
    return hmac.new(pepper.encode(), message, hashlib.sha256).hexdigest()


def _sms_key(reset: PinResetCode) -> str:
    """One SMS per code issued."""
    return f"pin-reset:{reset.user_id}:{reset.window_started_at.timestamp()}:{reset.sent_in_window}"
