"""Proving a phone number: a one-time code by SMS to it.

Opening an account through the API (the web app, the offline client) needs the code, so
nobody can register a number they do not hold. An account made online before codes were asked
is unproven: it may neither lend nor borrow until its owner proves the number, with a code
while signed in, or by dialling USSD from the SIM and entering the account's PIN
(services/ussd.py). USSD registration needs no code: the network says which SIM dialled.

Asking for a code reserves nothing and answers the same whether the number is on Deni or not.
A number whose account is proven gets no SMS: nothing can be taken from it, and a text to its
owner at a stranger's ask would only let strangers make Deni text members. A number held by an
unproven account gets its code, with a line saying so: its holder, if they are the number's
owner, may sign in and prove it, or open a new account that takes the number (users.add_member).

Codes follow the reset code's rules (domain/security.py): 6 digits, kept as an HMAC under the
PIN pepper bound to the number, 10 minutes, 3 wrong tries void it, 3 codes a number an hour,
and the asks per address and per number of services/limits.py.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import structlog

from deni.domain.errors import (
    Conflict,
    PhoneCodeInvalid,
    PhoneCodeRequired,
    SmsUnavailable,
    TooManyRequests,
)
from deni.domain.phone import mask_msisdn, normalise_msisdn
from deni.domain.security import (
    RESET_CODE_DIGITS,
    RESET_CODE_TTL,
    RESET_CODE_WINDOW,
    PhoneCode,
    require_new_pin,
)
from deni.domain.users import User, require_language, require_name
from deni.i18n import render_notification
from deni.services import limits
from deni.services.common import audit, lock_member, require_user
from deni.services.ports import (
    CodeDeps,
    Deps,
    SmsNotSent,
    SmsSender,
    UnitOfWork,
)
from deni.services.users import add_member

log = structlog.get_logger(__name__)
PRUNE_BATCH = 5_000
PRUNE_BATCHES_PER_RUN_MAX = 10


@dataclass(frozen=True, slots=True)
class CodeSms:
    """A code's SMS, ready to send: `secret` is the code, kept masked by whatever keeps it."""

    phone: str
    body: str
    idempotency_key: str
    secret: str


DeliverCode = Callable[[CodeSms], None]
# One answer for a wrong, late, used or never-sent code.
_INVALID_CODE = "The code is wrong or no longer valid. Ask for a new one."


def ask_registration_code(
    deps: CodeDeps,
    *,
    phone: str,
    source: str,
    language: str = "en",
    channel: str = "api",
    deliver: DeliverCode | None = None,
) -> None:
    """Send a code to a number someone wants to register, unless a proven member has it or
    the hour's codes are used up. `source` is who asks (an IP address). `deliver` sends the
    SMS (now, by default); an asker who may be a stranger gets the SMS after the answer
    (send_code_after_answer), so how long the answer takes does not say whether a member
    has the number (docs/security.md)."""
    msisdn = normalise_msisdn(phone)
    clean_language = require_language(language)
    now = deps.clock.now()
    limits.limit_registration_code_request(deps.limit_counters, source=source, now=now)
    with deps.uow() as uow:
        holder = lock_member(uow, msisdn)
        if holder is not None and (holder.phone_proven or holder.support_locked_at is not None):
            log.info("phone_code_not_sent", reason="number_taken")
            return
        issued = _issue(uow, pepper=deps.pepper, msisdn=msisdn, now=now)
        if issued is None:
            return
        code, sms_key = issued
        if holder is not None:
            # The unproven account's own trail (and data export) records the ask.
            audit(
                uow, actor_id=holder.id, channel=channel, command="ask_phone_code",
                details={"for": "register"}, now=now,
            )  # fmt: skip
        uow.commit()
    # In the asker's language: whoever holds the SIM reads it, not the account's maker.
    kind = "phone_code_taken" if holder is not None else "phone_code"
    message = code_sms(msisdn, kind, clean_language, code, sms_key)
    if deliver is None:
        send_code_now(deps.sms, message)
    else:
        deliver(message)


def register_with_code(
    deps: CodeDeps,
    *,
    phone: str,
    code: str | None,
    name: str,
    pin: str,
    language: str = "en",
    channel: str = "api",
) -> User:
    """Open an account with the code sent to the number. A wrong code counts against the code;
    a malformed name, PIN or language costs nothing. An unproven account holding the number
    loses it to this one; a proven one makes it `already_registered`."""
    msisdn = normalise_msisdn(phone)
    clean_name = require_name(name)
    clean_language = require_language(language)
    require_new_pin(pin)
    if code is None:
        raise PhoneCodeRequired(
            "Ask for a code first (POST /auth/register/code): Deni sends it to the number by SMS."
        )
    now = deps.clock.now()
    with deps.uow() as uow:
        # The holder's row before the code's, as every use of a number's code locks them.
        lock_member(uow, msisdn)
        _spend_code(uow, pepper=deps.pepper, msisdn=msisdn, code=code, now=now)
        user = add_member(
            uow,
            msisdn=msisdn,
            name=clean_name,
            language=clean_language,
            pin_hash=deps.hasher.hash(pin),
            phone_proven=True,
            now=now,
            channel=channel,
        )
        uow.commit()
    return user


def ask_own_code(
    deps: CodeDeps,
    *,
    user_id: str,
    source: str,
    channel: str = "api",
) -> None:
    """A signed-in member whose number is unproven asks for a code to prove it."""
    now = deps.clock.now()
    limits.limit_registration_code_request(deps.limit_counters, source=source, now=now)
    with deps.uow() as uow:
        user = require_user(uow, user_id, lock=True)
        _require_unproven(user)
        issued = _issue(uow, pepper=deps.pepper, msisdn=user.phone, now=now)
        if issued is None:
            raise TooManyRequests("Codes for this number are used up for now. Try in an hour.")
        code, sms_key = issued
        audit(
            uow, actor_id=user.id, channel=channel, command="ask_phone_code",
            details={"for": "prove"}, now=now,
        )  # fmt: skip
        uow.commit()
    send_code_now(deps.sms, code_sms(user.phone, "phone_code", user.language, code, sms_key))


def prove_own_phone(
    deps: CodeDeps,
    *,
    user_id: str,
    code: str,
    channel: str = "api",
) -> User:
    """The code from the SMS proves the signed-in member's number. Proving it again is a no-op."""
    now = deps.clock.now()
    with deps.uow() as uow:
        user = require_user(uow, user_id, lock=True)
        if user.phone_proven:
            return user
        _spend_code(uow, pepper=deps.pepper, msisdn=user.phone, code=code, now=now)
        _mark_proven(uow, user, how="sms_code", now=now, channel=channel)
        uow.commit()
    return user


def prove_by_ussd_pin(uow: UnitOfWork, user: User, *, now: datetime) -> None:
    """In the caller's transaction, after the PIN was right: the network said which SIM dialled,
    and its holder knows the account's PIN, so whoever made the account holds the SIM."""
    if not user.phone_proven:
        _mark_proven(uow, user, how="ussd_pin", now=now, channel="ussd")


def prune_codes(deps: Deps) -> int:
    """Forget the numbers whose codes can neither work nor count any more: most are strangers'
    numbers (asked for and never registered), which Deni has no reason to keep."""
    now = deps.clock.now()
    pruned = 0
    for _ in range(PRUNE_BATCHES_PER_RUN_MAX):
        with deps.uow() as uow:
            count = uow.phone_codes.prune(
                windows_started_by=now - RESET_CODE_WINDOW, now=now, limit=PRUNE_BATCH
            )
            uow.commit()
        pruned += count
        if count < PRUNE_BATCH:
            break
    return pruned


def _mark_proven(uow: UnitOfWork, user: User, *, how: str, now: datetime, channel: str) -> None:
    user.prove_phone(now)
    uow.users.save(user, now)
    audit(
        uow, actor_id=user.id, channel=channel, command="prove_phone", details={"how": how},
        now=now,
    )  # fmt: skip


def _require_unproven(user: User) -> None:
    if user.phone_proven:
        raise Conflict("Your phone number is already confirmed.", code="phone_already_proven")


def _issue(uow: UnitOfWork, *, pepper: str, msisdn: str, now: datetime) -> tuple[str, str] | None:
    """A fresh code for the number, replacing any earlier one, and its SMS's idempotency key;
    None when the number's codes for this hour are used up."""
    row = uow.phone_codes.lock_or_add(msisdn, now)
    if not row.may_send(now):
        log.info("phone_codes_used_up", phone=mask_msisdn(msisdn))
        return None
    code = f"{secrets.randbelow(10**RESET_CODE_DIGITS):0{RESET_CODE_DIGITS}d}"
    row.issue(_code_hash(pepper, msisdn, code), now)
    uow.phone_codes.save(row, now)
    return code, _sms_key(row)


def _spend_code(uow: UnitOfWork, *, pepper: str, msisdn: str, code: str, now: datetime) -> None:
    """The number's code, used up; a wrong one counts (committed before the refusal)."""
    row = uow.phone_codes.lock(msisdn)
    if row is None or not row.usable(now):
        raise PhoneCodeInvalid(_INVALID_CODE)
    assert row.code_hash is not None
    if not hmac.compare_digest(row.code_hash, _code_hash(pepper, msisdn, code)):
        row.record_wrong()
        uow.phone_codes.save(row, now)
        uow.commit()
        raise PhoneCodeInvalid(_INVALID_CODE)
    row.spend()
    uow.phone_codes.save(row, now)


def code_sms(msisdn: str, kind: str, language: str, code: str, key: str) -> CodeSms:
    minutes = int(RESET_CODE_TTL.total_seconds()) // 60
    body = render_notification(kind, language, {"code": code, "minutes": minutes})
    return CodeSms(phone=msisdn, body=body, idempotency_key=key, secret=code)


def send_code_now(sms: SmsSender, message: CodeSms) -> None:
    """Send it while the asker waits: a failure is theirs to hear (503 `sms_unavailable`)."""
    try:
        sms.send(
            phone=message.phone,
            body=message.body,
            idempotency_key=message.idempotency_key,
            secret=message.secret,
        )
    except SmsNotSent as error:
        raise SmsUnavailable("The SMS could not be sent. Try again in a minute.") from error


def send_code_after_answer(sms: SmsSender, message: CodeSms) -> None:
    """Send it once the asker has the answer every number gets: a failure is logged, never
    answered, as a number that gets no SMS has none to fail (they ask again)."""
    try:
        send_code_now(sms, message)
    except SmsUnavailable:
        log.warning("code_sms_not_sent", phone=mask_msisdn(message.phone))


def _code_hash(pepper: str, msisdn: str, code: str) -> str:
    """Bound to the number, and apart from reset codes (another prefix)."""
    message = f"phone-proof:{msisdn}:{code}".encode()
    return hmac.new(pepper.encode(), message, hashlib.sha256).hexdigest()


def _sms_key(row: PhoneCode) -> str:
    """One SMS per code issued."""
    return f"phone-code:{row.phone}:{row.window_started_at.timestamp()}:{row.sent_in_window}"
