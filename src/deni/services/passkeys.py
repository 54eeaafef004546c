"""Passkeys: a member adds the phone's fingerprint or face, signs in with it, and approves money
out with it instead of the PIN (docs/passkeys.md).

Every ceremony answers a challenge this module made and stored: single use (taken, deleted, by
the answer that uses it, right or wrong), short-lived (CHALLENGE_TTL), made for one purpose and,
for money out, one action and amount (domain/passkeys.py, `action_binding`). A passkey that does
not verify counts as a wrong PIN on the same counter and locks the same way; a locked account
refuses passkeys as it refuses PINs. Adding a passkey takes the PIN, so a stolen session token
cannot add its thief's own.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import structlog

from deni.domain.errors import (
    Conflict,
    DomainError,
    NotFound,
    Unauthorized,
    ValidationFailed,
)
from deni.domain.passkeys import (
    CHALLENGE_BYTES,
    CHALLENGE_TTL,
    PASSKEYS_PER_MEMBER_MAX,
    Challenge,
    ChallengePurpose,
    MoneyAction,
    Passkey,
    action_binding,
    challenge_invalid,
    passkey_refused,
    preference_choices,
    require_passkey_name,
    require_sign_count_moved_on,
)
from deni.domain.users import User
from deni.ids import new_id
from deni.services.common import audit, require_user
from deni.services.passkey_ports import (
    CHALLENGE_PRUNE_MAX,
    PASSKEYS_LIST_MAX,
    CeremonyRefused,
    PasskeyDeps,
    RelyingParty,
    WebAuthn,
)
from deni.services.ports import PinHasher, UnitOfWork
from deni.services.users import (
    Session,
    begin_session,
    check_pin,
    count_failed_proof,
    issue_session,
    locked_refusal,
    record_right_proof,
    require_not_locked,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Ceremony:
    """Options for the browser's passkey prompt, and the challenge's id to send back with the
    answer."""

    challenge_id: str
    options: dict[str, object]


@dataclass(frozen=True, slots=True)
class PasskeyProof:
    """A member's passkey signature over a challenge made for one action: what a money-out
    command takes instead of the PIN. It carries the WebAuthn port and the relying party that
    check it, so the commands keep the dependencies they had."""

    challenge_id: str
    response: Mapping[str, object]
    webauthn: WebAuthn
    rp: RelyingParty


def _new_challenge(
    uow: UnitOfWork,
    *,
    purpose: ChallengePurpose,
    user_id: str | None,
    binding: str,
    now: datetime,
) -> Challenge:
    """A fresh challenge, stored. Lapsed ones are swept here, a bounded few each time, so
    asking many times leaves nothing behind for long."""
    uow.passkeys.prune_challenges(now=now, limit=CHALLENGE_PRUNE_MAX)
    challenge = Challenge(
        id=new_id(),
        purpose=purpose,
        user_id=user_id,
        binding=binding,
        challenge=secrets.token_bytes(CHALLENGE_BYTES),
        created_at=now,
        expires_at=now + CHALLENGE_TTL,
    )
    uow.passkeys.add_challenge(challenge)
    return challenge


# --- Adding, listing and removing ---------------------------------------------------------------


def registration_options(
    deps: PasskeyDeps, *, user_id: str, pin: str, channel: str = "api"
) -> Ceremony:
    """The first step of adding a passkey: the PIN (a wrong one counts), then the options for
    the phone's prompt. The passkeys the member has are excluded, so a phone is not added
    twice."""
    now = deps.clock.now()
    with deps.uow() as uow:
        user = require_user(uow, user_id, lock=True)
        check_pin(uow, hasher=deps.hasher, user=user, pin=pin, now=now, channel=channel)
        mine = uow.passkeys.for_user(user.id, limit=PASSKEYS_LIST_MAX)
        if len(mine) >= PASSKEYS_PER_MEMBER_MAX:
            raise Conflict(
                f"You have {PASSKEYS_PER_MEMBER_MAX} passkeys; remove one first.",
                code="too_many_passkeys",
            )
        challenge = _new_challenge(
            uow, purpose=ChallengePurpose.REGISTER, user_id=user.id, binding="", now=now
        )
        options = deps.webauthn.registration_options(
            rp=deps.relying_party,
            user_handle=user_handle(user.id),
            user_name=user.phone,
            display_name=user.name,
            challenge=challenge.challenge,
            exclude=[p.credential_id for p in mine],
        )
        uow.commit()
    return Ceremony(challenge.id, options)


def add_passkey(
    deps: PasskeyDeps,
    *,
    user_id: str,
    challenge_id: str,
    response: Mapping[str, object],
    name: object = None,
    channel: str = "api",
) -> Passkey:
    """The second step: the phone's answer, verified (attestation, origin, relying party, the
    challenge, user verification), and its public key kept."""
    clean_name = require_passkey_name(name)
    now = deps.clock.now()
    with deps.uow() as uow:
        user = require_user(uow, user_id, lock=True)
        challenge = uow.passkeys.take_challenge(challenge_id)
        try:
            if challenge is None:
                raise challenge_invalid()
            challenge.require_answers(
                purpose=ChallengePurpose.REGISTER, user_id=user.id, binding="", now=now
            )
            try:
                made = deps.webauthn.verify_registration(
                    rp=deps.relying_party, response=response, challenge=challenge.challenge
                )
            except CeremonyRefused as refused:
                log.info("passkey_registration_refused", user_id=user.id, reason=str(refused))
                raise passkey_refused() from None
            passkey = Passkey(
                id=new_id(),
                user_id=user.id,
                credential_id=made.credential_id,
                public_key=made.public_key,
                sign_count=made.sign_count,
                name=clean_name,
                created_at=now,
                last_used_at=None,
            )
            if not uow.passkeys.add(passkey):
                raise Conflict("This passkey is already on Deni.", code="passkey_taken")
        except DomainError:
            uow.commit()  # the challenge stays used
            raise
        audit(
            uow,
            actor_id=user.id,
            channel=channel,
            command="add_passkey",
            details={"passkey_id": passkey.id, "name": clean_name},
            now=now,
        )
        uow.commit()
    return passkey


def list_passkeys(deps: PasskeyDeps, *, user_id: str) -> list[Passkey]:
    with deps.uow.read_only() as uow:
        require_user(uow, user_id)
        return uow.passkeys.for_user(user_id, limit=PASSKEYS_LIST_MAX)


def remove_passkey(
    deps: PasskeyDeps, *, user_id: str, passkey_id: str, channel: str = "api"
) -> None:
    """One tap, signed in: a passkey removed can neither sign in nor approve anything."""
    now = deps.clock.now()
    with deps.uow() as uow:
        user = require_user(uow, user_id, lock=True)
        if not uow.passkeys.remove(user_id=user.id, passkey_id=passkey_id):
            raise NotFound("You have no such passkey.", code="passkey_not_found")
        audit(
            uow,
            actor_id=user.id,
            channel=channel,
            command="remove_passkey",
            details={"passkey_id": passkey_id},
            now=now,
        )
        uow.commit()


def user_handle(user_id: str) -> bytes:
    """The WebAuthn user handle of a member: their id (no phone number, no name)."""
    return user_id.encode()


# --- Signing in ------------------------------------------------------------------------------


def sign_in_options(deps: PasskeyDeps) -> Ceremony:
    """Options for signing in with any passkey of Deni's the phone holds: the phone offers
    them, and the answer says whose it is."""
    now = deps.clock.now()
    with deps.uow() as uow:
        challenge = _new_challenge(
            uow, purpose=ChallengePurpose.SIGN_IN, user_id=None, binding="", now=now
        )
        options = deps.webauthn.authentication_options(
            rp=deps.relying_party, challenge=challenge.challenge, allow=[]
        )
        uow.commit()
    return Ceremony(challenge.id, options)


def sign_in(
    deps: PasskeyDeps,
    *,
    challenge_id: str,
    response: Mapping[str, object],
    channel: str = "api",
) -> Session:
    """The same session a PIN sign-in gives, for a passkey's signature. A refusal says no
    more than a wrong PIN does; a signature that fails counts against sign-in like one."""
    now = deps.clock.now()
    with deps.uow() as uow:
        challenge = uow.passkeys.take_challenge(challenge_id)
        user = _verify(
            uow,
            deps.webauthn,
            deps.relying_party,
            challenge=challenge,
            response=response,
            member=None,
            purpose=ChallengePurpose.SIGN_IN,
            binding="",
            now=now,
            channel=channel,
            in_session=False,
        )
        refresh = begin_session(
            uow, deps, user=user, now=now, channel=channel, details={"with": "passkey"}
        )
        uow.commit()
    return issue_session(deps, user=user, now=now, refresh_token=refresh)


# --- Money out -------------------------------------------------------------------------------


def action_options(
    deps: PasskeyDeps,
    *,
    user_id: str,
    action: MoneyAction,
    loan_id: str | None = None,
    amount_cents: int | None = None,
    disburse_to_mpesa: bool | None = None,
    auto_payout: bool | None = None,
) -> Ceremony:
    """Options for approving one action with a passkey: the challenge is bound to the action
    and its amount, so its signature approves that and nothing else. Only this member's
    passkeys are offered."""
    choices = None
    if action is MoneyAction.SET_PREFERENCES:
        choices = preference_choices(disburse_to_mpesa=disburse_to_mpesa, auto_payout=auto_payout)
    binding = _binding_of_request(
        action, loan_id=loan_id, amount_cents=amount_cents, choices=choices
    )
    now = deps.clock.now()
    with deps.uow() as uow:
        user = require_user(uow, user_id)
        require_not_locked(user, now=now, channel="api", in_session=True)
        mine = uow.passkeys.for_user(user.id, limit=PASSKEYS_LIST_MAX)
        if not mine:
            raise Conflict("You have no passkey yet; use your PIN.", code="no_passkey")
        challenge = _new_challenge(
            uow, purpose=ChallengePurpose.ACTION, user_id=user.id, binding=binding, now=now
        )
        options = deps.webauthn.authentication_options(
            rp=deps.relying_party,
            challenge=challenge.challenge,
            allow=[p.credential_id for p in mine],
        )
        uow.commit()
    return Ceremony(challenge.id, options)


def _binding_of_request(
    action: MoneyAction, *, loan_id: str | None, amount_cents: int | None, choices: str | None
) -> str:
    """action_binding for what a client asked to approve: what the action needs, no more."""
    loan_actions = (MoneyAction.APPROVE_LOAN, MoneyAction.REPAY_LOAN, MoneyAction.WRITE_OFF_LOAN)
    amount_actions = (MoneyAction.APPROVE_LOAN, MoneyAction.REPAY_LOAN, MoneyAction.WITHDRAW)
    if (loan_id is not None) != (action in loan_actions):
        raise ValidationFailed(
            "Name the loan for a loan's action, and only then.", code="invalid_action"
        )
    if (amount_cents is not None) != (action in amount_actions):
        raise ValidationFailed(
            "Give the amount for an action that moves money, and only then.",
            code="invalid_action",
        )
    if amount_cents is not None and (isinstance(amount_cents, bool) or amount_cents <= 0):
        raise ValidationFailed("The amount is a positive number of cents.", code="invalid_amount")
    return action_binding(action, loan_id=loan_id, amount_cents=amount_cents, choices=choices)


def prove_member(
    uow: UnitOfWork,
    *,
    hasher: PinHasher,
    user: User,
    pin: str | None,
    passkey: PasskeyProof | None,
    binding: str,
    now: datetime,
    channel: str,
) -> None:
    """A money-out command's proof of its member, inside its transaction: the PIN
    (users.check_pin), or a passkey's signature over a challenge bound to `binding`, this
    exact action (domain/passkeys.py, action_binding). A refusal commits what it counted."""
    if passkey is None:
        if pin is None:
            raise ValidationFailed(
                "Send your PIN, or approve with your passkey.", code="pin_required"
            )
        check_pin(uow, hasher=hasher, user=user, pin=pin, now=now, channel=channel)
        return
    if pin is not None:
        raise ValidationFailed("Send your PIN or a passkey, not both.", code="pin_or_passkey")
    assert binding, "a passkey approves one named action"
    challenge = uow.passkeys.take_challenge(passkey.challenge_id)
    _verify(
        uow,
        passkey.webauthn,
        passkey.rp,
        challenge=challenge,
        response=passkey.response,
        member=user,
        purpose=ChallengePurpose.ACTION,
        binding=binding,
        now=now,
        channel=channel,
        in_session=True,
    )


def money_binding(
    action: MoneyAction, *, loan_id: str | None = None, amount_cents: int | None = None
) -> str:
    return action_binding(action, loan_id=loan_id, amount_cents=amount_cents)


def preferences_binding(*, disburse_to_mpesa: bool | None, auto_payout: bool | None) -> str:
    return action_binding(
        MoneyAction.SET_PREFERENCES,
        choices=preference_choices(disburse_to_mpesa=disburse_to_mpesa, auto_payout=auto_payout),
    )


def _verify(
    uow: UnitOfWork,
    webauthn: WebAuthn,
    rp: RelyingParty,
    *,
    challenge: Challenge | None,
    response: Mapping[str, object],
    member: User | None,
    purpose: ChallengePurpose,
    binding: str,
    now: datetime,
    channel: str,
    in_session: bool,
) -> User:
    """Check an answer to `challenge` (already taken: used, whatever happens next) and return
    the member it proves. `member`: who must have signed (money out); None for sign-in, where
    the passkey says who it is.

    Refused without counting: a challenge that is unknown, lapsed, or made for something else,
    and (signing in) a passkey Deni does not know. Refused and counted as a wrong PIN of the
    member concerned: another member's passkey or an unknown one offered for a money-out
    action, a user handle that is not the passkey's, a signature that does not verify, a sign
    count that went back."""
    user = member
    try:
        if challenge is None:
            raise challenge_invalid()
        challenge.require_answers(
            purpose=purpose,
            user_id=member.id if member is not None else None,
            binding=binding,
            now=now,
        )
        if member is not None:
            require_not_locked(member, now=now, channel=channel, in_session=in_session)
        try:
            credential_id, handle = webauthn.credential_of(response)
        except CeremonyRefused:
            raise passkey_refused() from None
        if user is None:  # signing in: the passkey says whose it is
            owner = uow.passkeys.owner_of(credential_id)
            user = uow.users.lock(owner) if owner is not None else None
            if user is None or user.is_closed:
                raise passkey_refused()
            require_not_locked(user, now=now, channel=channel, in_session=in_session)
        # Locked after the member, as every command locks its member first.
        passkey = uow.passkeys.lock_by_credential(credential_id)
        if passkey is None or passkey.user_id != user.id:
            if member is not None:
                _count(uow, member, now=now, channel=channel, in_session=in_session)
            raise passkey_refused()
        if handle is not None and handle != user_handle(user.id):
            _count(uow, user, now=now, channel=channel, in_session=in_session)
            raise passkey_refused()
        try:
            verified = webauthn.verify_authentication(
                rp=rp,
                response=response,
                challenge=challenge.challenge,
                public_key=passkey.public_key,
                sign_count=passkey.sign_count,
            )
            require_sign_count_moved_on(stored=passkey.sign_count, received=verified.sign_count)
        except (CeremonyRefused, Unauthorized) as refused:
            log.info("passkey_refused", user_id=user.id, reason=str(refused))
            _count(uow, user, now=now, channel=channel, in_session=in_session)
            raise passkey_refused() from None
    except DomainError:
        uow.commit()  # the challenge stays used, and what was counted stays counted
        raise
    uow.passkeys.record_use(passkey.id, sign_count=verified.sign_count, now=now)
    record_right_proof(uow, user=user, now=now, channel=channel, in_session=in_session)
    return user


def _count(uow: UnitOfWork, user: User, *, now: datetime, channel: str, in_session: bool) -> None:
    """Count a passkey that failed as a wrong PIN; a lock it causes is the refusal."""
    until = count_failed_proof(
        uow, user=user, now=now, channel=channel, in_session=in_session, command="passkey_refused"
    )
    if until is not None:
        raise locked_refusal(until, now)
