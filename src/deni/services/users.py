"""User use cases: register, prove who you are with a PIN, sessions, change PIN."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from deni.domain.errors import (
    AccountLocked,
    AlreadyRegistered,
    LockedBySupport,
    NotFound,
    Unauthorized,
    WrongPin,
    WrongPinLastTry,
)
from deni.domain.phone import mask_msisdn, normalise_msisdn
from deni.domain.security import (
    REMOTE_GUESS_WINDOW,
    RemoteGuesses,
    is_locked,
    is_sim_proven,
    require_new_pin,
)
from deni.domain.users import User, require_language, require_name
from deni.ids import new_id
from deni.services import ledger
from deni.services.common import audit, lock_member, notify, require_user
from deni.services.limits import LimitCounters
from deni.services.ports import (
    Deps,
    PinDeps,
    PinHasher,
    RefreshToken,
    SessionDeps,
    SessionGate,
    UnitOfWork,
)

log = structlog.get_logger(__name__)

REFRESH_TOKEN_BYTES = 32
# A spent refresh token presented again this soon, whose successor was never used, is taken as
# a swap whose answer never arrived (a dropped connection, a closed tab), not as theft: the
# phone would otherwise be signed out by a bad network. Identity providers offer the same
# (Amazon Cognito's RetryGracePeriodSeconds, up to 60 s, "for client-side retries").
REFRESH_ANSWER_LOST_GRACE = timedelta(seconds=30)
SUPPORT_ACTOR = "support"  # customer care, through the CLI
DECOY_HASHERS_MAX = 4  # one hasher per process; tests make a few


@dataclass(frozen=True, slots=True)
class Session:
    user_id: str
    access_token: str
    access_expires_in_s: int
    refresh_token: str


def register_user(
    deps: PinDeps,
    *,
    phone: str,
    name: str,
    pin: str,
    language: str = "en",
    channel: str = "api",
    phone_proven: bool = False,
) -> User:
    """Create a user with an empty wallet. The phone number is the identity.

    `phone_proven` says the caller knows the SIM's holder is registering: on USSD the network
    says which SIM dialled. (The API proves it with a code by SMS: services/phone_proof.py.)
    Without it the account may not lend or borrow until its owner proves the number."""
    msisdn = normalise_msisdn(phone)
    clean_name = require_name(name)
    clean_language = require_language(language)
    pin_hash = deps.hasher.hash(require_new_pin(pin))
    now = deps.clock.now()
    with deps.uow() as uow:
        user = add_member(
            uow,
            msisdn=msisdn,
            name=clean_name,
            language=clean_language,
            pin_hash=pin_hash,
            phone_proven=phone_proven,
            now=now,
            channel=channel,
        )
        uow.commit()
    return user


def add_member(
    uow: UnitOfWork,
    *,
    msisdn: str,
    name: str,
    language: str,
    pin_hash: str,
    phone_proven: bool,
    now: datetime,
    channel: str,
) -> User:
    """A new account, in the caller's transaction (inputs already checked). The number's proven
    owner takes it from an account that never proved it: whoever made that one could not have
    held the SIM, or did and lost it (a number recycled by the network)."""
    user = User(new_id(), msisdn, name, language, pin_hash, now)
    if phone_proven:
        user.prove_phone(now)
    holder = lock_member(uow, msisdn)
    if holder is not None:
        if not phone_proven or holder.phone_proven:
            raise AlreadyRegistered("This phone number already has a Deni account.")
        _take_number(uow, holder, new_user_id=user.id, now=now, channel=channel)
    uow.users.add(user)
    ledger.open_wallet(uow, user_id=user.id, now=now)
    audit(
        uow,
        actor_id=user.id,
        channel=channel,
        command="register_user",
        details={
            "phone": mask_msisdn(msisdn),
            "language": language,
            "phone_proven": phone_proven,
        },
        now=now,
    )
    return user


def _take_number(
    uow: UnitOfWork, holder: User, *, new_user_id: str, now: datetime, channel: str
) -> None:
    """The unproven `holder` gives its number up to the account being made: its sessions end
    and SMS for it stop; its money, loans and records stay with it, for whoever made it to
    claim through customer care."""
    assert not holder.phone_proven
    _end_sessions(uow, holder, now)  # access tokens too, at their next request
    uow.users.save(holder, now)  # before the number goes: a save writes the whole row
    uow.users.release_phone(holder.id, now=now)
    log.info("unproven_number_taken", user_id=holder.id)
    audit(
        uow,
        actor_id=new_user_id,
        channel=channel,
        command="take_unproven_number",
        details={"from_user_id": holder.id, "phone": mask_msisdn(holder.phone)},
        now=now,
    )


def check_pin(
    uow: UnitOfWork,
    *,
    hasher: PinHasher,
    user: User,
    pin: object,
    now: datetime,
    channel: str,
    in_session: bool = True,
) -> None:
    """Prove the PIN inside the caller's transaction.

    A wrong PIN is committed before the error is raised, so the attempt counts even though the
    command fails. A locked account is refused without looking at the PIN (fail closed).
    Wrong PINs count per channel kind (domain/security.py): on USSD, where the network proves
    the SIM, they lock the account. Elsewhere sign-in (`in_session=False`) and PINs typed in a
    session have counters of their own: a sign-in lock stops only sign-in and ends no session
    (the guesser holds none, and the owner's must not end or lock at a stranger's word); a lock
    earned in a session stops sessions and sign-in and ends every session.
    """
    require_not_locked(user, now=now, channel=channel, in_session=in_session)
    if isinstance(pin, str) and hasher.verify(pin, user.pin_hash):
        rehash = hasher.needs_rehash(user.pin_hash)
        if rehash:
            user.pin_hash = hasher.hash(pin)
        counted = user.wrong_pins_in_a_row(channel, in_session=in_session)
        if counted or rehash:
            user.record_right_pin(channel=channel, in_session=in_session)
            uow.users.save(user, now)
        return
    until = count_failed_proof(
        uow, user=user, now=now, channel=channel, in_session=in_session, command="wrong_pin"
    )
    uow.commit()
    if until is not None:
        raise AccountLocked(_locked_message(until, now))
    if user.pin_tries_left(channel, now, in_session=in_session) == 1:
        raise WrongPinLastTry(LAST_TRY_MESSAGE)
    raise WrongPin("Wrong PIN.")


def require_not_locked(user: User, *, now: datetime, channel: str, in_session: bool) -> None:
    """What check_pin refuses before looking at the PIN; a passkey is refused the same way."""
    if user.support_locked_at is not None:
        raise LockedBySupport
    if (until := user.locked_until_for(channel, now, in_session=in_session)) is not None:
        raise AccountLocked(_locked_message(until, now))


def count_failed_proof(
    uow: UnitOfWork,
    *,
    user: User,
    now: datetime,
    channel: str,
    in_session: bool,
    command: str,
) -> datetime | None:
    """A failed proof of who the member is (a wrong PIN, a passkey that did not verify) counts
    on the same counter, locks at the same count and says so the same way. Returns when the
    lock it caused ends, if it caused one. The caller commits, then refuses."""
    locked_now = user.record_wrong_pin(now, channel=channel, in_session=in_session)
    if locked_now and (in_session or is_sim_proven(channel)):
        _end_sessions(uow, user, now)
    uow.users.save(user, now)
    audit(
        uow,
        actor_id=user.id,
        channel=channel,
        command=command,
        details={"locked": locked_now},
        now=now,
    )
    until = user.locked_until_for(channel, now, in_session=in_session)
    if locked_now:
        assert until is not None
        notify(
            uow,
            user=user,
            kind="pin_locked" if is_sim_proven(channel) else "pin_locked_remote",
            params={"minutes": _minutes_until(until, now)},
            now=now,
        )
    return until


def record_right_proof(
    uow: UnitOfWork, *, user: User, now: datetime, channel: str, in_session: bool
) -> None:
    """A proof that held (a passkey's signature) clears the wrong attempts in a row, as a
    right PIN does."""
    if user.wrong_pins_in_a_row(channel, in_session=in_session):
        user.record_right_pin(channel=channel, in_session=in_session)
        uow.users.save(user, now)


def _end_sessions(uow: UnitOfWork, user: User, now: datetime) -> None:
    """Every access token stops at its next request, every refresh token now. The caller
    saves the user."""
    user.end_sessions()
    uow.tokens.revoke_all(user.id, now)


def _minutes_until(until: datetime, now: datetime) -> int:
    return max(1, -(-int((until - now).total_seconds()) // 60))


def _locked_message(until: datetime, now: datetime) -> str:
    return f"Too many wrong PINs. Try again in {_minutes_until(until, now)} minutes."


def locked_refusal(until: datetime, now: datetime) -> AccountLocked:
    return AccountLocked(_locked_message(until, now))


LAST_TRY_MESSAGE = "Wrong PIN. 1 try left: one more wrong PIN locks it for a while."


def _wrong_credentials(*, last_try: bool = False) -> Unauthorized:
    if last_try:
        return Unauthorized(
            "Wrong phone number or PIN. 1 try left: one more wrong PIN stops sign-in to this "
            "number for a while.",
            code="wrong_credentials_last_try",
        )
    return Unauthorized("Wrong phone number or PIN.", code="wrong_credentials")


# Sign-in guesses at a number that is not on Deni are counted under the member's own rule
# (domain/security.py RemoteGuesses), in the abuse limits' store, so that every answer (wrong,
# one try left, locked for N minutes) is the one a member's number would give: sign-in never
# tells who is on Deni. The record lapses a day after its last guess (the rule's window: no
# lock it holds lasts longer).
STRANGER_GUESSES = "signin-none"
STRANGER_GUESSES_TTL_S = int(REMOTE_GUESS_WINDOW.total_seconds())  # every lock ends within it


def _stranger_guess(counters: LimitCounters, msisdn: str, now: datetime) -> Unauthorized:
    """Count a sign-in guess at a number with no member; the answer a member's would get."""
    key = counters.key(STRANGER_GUESSES, msisdn, 0)
    guesses = RemoteGuesses.from_text(counters.store.get(key, now=now))
    if guesses.locked_until is not None and is_locked(guesses.locked_until, now):
        raise AccountLocked(_locked_message(guesses.locked_until, now))
    guesses, locked = guesses.after_wrong(now)
    counters.store.put(key, guesses.to_text(), ttl_s=STRANGER_GUESSES_TTL_S, now=now)
    if locked:
        assert guesses.locked_until is not None
        raise AccountLocked(_locked_message(guesses.locked_until, now))
    return _wrong_credentials(last_try=guesses.tries_left(now) == 1)


_decoy_hashes: dict[int, str] = {}


def _decoy_pin_hash(hasher: PinHasher) -> str:
    """A hash no PIN is known for, made once per hasher with its own cost."""
    decoy = _decoy_hashes.get(id(hasher))
    if decoy is None:
        if len(_decoy_hashes) >= DECOY_HASHERS_MAX:
            _decoy_hashes.clear()
        decoy = _decoy_hashes[id(hasher)] = hasher.hash(secrets.token_hex(16))
    return decoy


def login(
    deps: SessionDeps,
    *,
    phone: str,
    pin: str,
    channel: str = "api",
    stranger_guesses: LimitCounters | None = None,
) -> Session:
    """`stranger_guesses`: where guesses at numbers not on Deni are counted, so they are
    answered as a member's are (without it, such a number is only ever "wrong")."""
    msisdn = normalise_msisdn(phone)
    now = deps.clock.now()
    with deps.uow() as uow:
        user = lock_member(uow, msisdn)
        if user is None:
            # A PIN is checked all the same, so an unknown number takes as long to refuse.
            deps.hasher.verify(pin, _decoy_pin_hash(deps.hasher))
            if stranger_guesses is None:
                raise _wrong_credentials()
            raise _stranger_guess(stranger_guesses, msisdn, now)
        try:
            check_pin(
                uow,
                hasher=deps.hasher,
                user=user,
                pin=pin,
                now=now,
                channel=channel,
                in_session=False,
            )
        except WrongPin as wrong:
            # Counted (check_pin committed it), but answered as an unknown number is: sign-in
            # must not tell members from strangers.
            raise _wrong_credentials(last_try=isinstance(wrong, WrongPinLastTry)) from None
        refresh = begin_session(uow, deps, user=user, now=now, channel=channel, details={})
        uow.commit()
    return issue_session(deps, user=user, now=now, refresh_token=refresh)


def begin_session(
    uow: UnitOfWork,
    deps: SessionDeps,
    *,
    user: User,
    now: datetime,
    channel: str,
    details: dict[str, object],
) -> str:
    """A new sign-in for a member who just proved who they are (a PIN, a passkey), in the
    caller's transaction: its refresh token and its audit row. issue_session, once committed,
    gives the pair."""
    refresh = _new_refresh_token(
        uow, user_id=user.id, family_id=new_id(), now=now, ttl_s=deps.refresh_ttl_s
    )
    audit(uow, actor_id=user.id, channel=channel, command="login", details=details, now=now)
    return refresh


def issue_session(deps: SessionDeps, *, user: User, now: datetime, refresh_token: str) -> Session:
    access, expires_in_s = deps.tokens.issue(
        user_id=user.id, now=now, session_epoch=user.session_epoch
    )
    return Session(user.id, access, expires_in_s, refresh_token)


def refresh_session(
    deps: SessionDeps,
    *,
    refresh_token: str,
) -> Session:
    """Swap a refresh token for a new pair. Reusing a spent token revokes its whole family,
    unless its answer was lost (REFRESH_ANSWER_LOST_GRACE): then its unused successor is swapped."""
    now = deps.clock.now()
    with deps.uow() as uow:
        stored = uow.tokens.lock_by_hash(_token_hash(refresh_token))
        if stored is None or stored.expires_at <= now:
            raise Unauthorized("The refresh token is not valid.", code="invalid_refresh_token")
        token_id = new_id()
        if stored.revoked_at is not None:
            successor = _unused_successor(uow, stored, now)
            if successor is None:
                # Someone replayed a token that was already swapped: assume it was stolen.
                uow.tokens.revoke_family(stored.family_id, now)
                uow.commit()
                raise Unauthorized("The refresh token is not valid.", code="invalid_refresh_token")
            log.info("refresh_answer_lost", family_id=stored.family_id)
            # The spent token now leads to the newest one, so the phone may lose this answer
            # too and still ask again within the grace.
            uow.tokens.replace(stored.id, replaced_by=token_id)
            stored = successor
        user = uow.users.get(stored.user_id)
        if user is None or user.is_closed or user.support_locked_at is not None:
            raise Unauthorized("The refresh token is not valid.", code="invalid_refresh_token")
        uow.tokens.revoke(stored.id, now, replaced_by=token_id)
        refresh = _new_refresh_token(
            uow,
            user_id=stored.user_id,
            family_id=stored.family_id,
            now=now,
            ttl_s=deps.refresh_ttl_s,
            token_id=token_id,
        )
        uow.commit()
    access, expires_in_s = deps.tokens.issue(
        user_id=stored.user_id, now=now, session_epoch=user.session_epoch
    )
    return Session(stored.user_id, access, expires_in_s, refresh)


def require_live_session(*, gate: SessionGate, user_id: str, session_epoch: int) -> None:
    """An access token speaks for its user only while the user's sessions have not ended
    since it was issued, and the account is neither closed nor locked by support."""
    standing = gate.standing(user_id)
    if (
        standing is None
        or standing.closed
        or standing.support_locked
        or standing.session_epoch != session_epoch
    ):
        raise Unauthorized("This session has ended. Sign in again.", code="session_ended")


def sign_out_everywhere(
    deps: Deps,
    *,
    user_id: str,
    channel: str,
) -> None:
    """Every access token and refresh token of this user stops working now."""
    now = deps.clock.now()
    with deps.uow() as uow:
        user = require_user(uow, user_id, lock=True)
        _end_sessions(uow, user, now)
        uow.users.save(user, now)
        audit(
            uow,
            actor_id=user.id,
            channel=channel,
            command="sign_out_everywhere",
            details={},
            now=now,
        )
        uow.commit()


def log_out(
    deps: Deps,
    *,
    refresh_token: str,
) -> None:
    """This sign-in ends: its refresh token and every one swapped from it. Says nothing about
    whether the token was known (an unknown or spent one changes nothing)."""
    now = deps.clock.now()
    with deps.uow() as uow:
        stored = uow.tokens.lock_by_hash(_token_hash(refresh_token))
        if stored is not None:
            uow.tokens.revoke_family(stored.family_id, now)
        uow.commit()


def _unused_successor(uow: UnitOfWork, spent: RefreshToken, now: datetime) -> RefreshToken | None:
    """The token `spent` was just swapped for, if nobody has used it: the swap's answer was
    lost. A family revoked since (sign-out everywhere, a PIN reset) has no live successor."""
    assert spent.revoked_at is not None
    if spent.replaced_by is None or now - spent.revoked_at > REFRESH_ANSWER_LOST_GRACE:
        return None
    successor = uow.tokens.lock(spent.replaced_by)
    if successor is None or successor.revoked_at is not None or successor.expires_at <= now:
        return None
    return successor


def _new_refresh_token(
    uow: UnitOfWork,
    *,
    user_id: str,
    family_id: str,
    now: datetime,
    ttl_s: int,
    token_id: str | None = None,
) -> str:
    secret = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
    expires_at = now + timedelta(seconds=ttl_s)
    token = RefreshToken(token_id or new_id(), user_id, family_id, expires_at, None)
    uow.tokens.add(token, _token_hash(secret), now)
    return secret


def _token_hash(secret: str) -> str:
    # Refresh tokens are long random strings, so a fast hash is enough (unlike PINs).
    return hashlib.sha256(secret.encode()).hexdigest()


def change_pin(
    deps: PinDeps,
    *,
    user_id: str,
    old_pin: str,
    new_pin: str,
    channel: str = "api",
) -> None:
    require_new_pin(new_pin)
    now = deps.clock.now()
    with deps.uow() as uow:
        user = uow.users.lock(user_id)
        if user is None:
            raise NotFound("No such user.", code="user_not_found")
        check_pin(uow, hasher=deps.hasher, user=user, pin=old_pin, now=now, channel=channel)
        _set_pin(uow, deps.hasher, user, new_pin, now=now, channel=channel)
        uow.commit()


def change_proven_pin(
    deps: PinDeps,
    *,
    user_id: str,
    new_pin: str,
    channel: str,
) -> None:
    """A new PIN for a member who proved the current one moments ago in the same session: USSD
    checks it on its own screen (check_pin) and asks for the new one on the next two, keeping
    no PIN in between. Refused, as a PIN check would be, while the account is locked."""
    require_new_pin(new_pin)
    now = deps.clock.now()
    with deps.uow() as uow:
        user = uow.users.lock(user_id)
        if user is None:
            raise NotFound("No such user.", code="user_not_found")
        if user.support_locked_at is not None:
            raise LockedBySupport
        if user.is_locked(now):
            assert user.locked_until is not None
            raise AccountLocked(_locked_message(user.locked_until, now))
        _set_pin(uow, deps.hasher, user, new_pin, now=now, channel=channel)
        uow.commit()


def _set_pin(
    uow: UnitOfWork, hasher: PinHasher, user: User, new_pin: str, *, now: datetime, channel: str
) -> None:
    user.pin_hash = hasher.hash(new_pin)
    _end_sessions(uow, user, now)  # whoever knew the old PIN may hold one
    uow.users.save(user, now)
    audit(uow, actor_id=user.id, channel=channel, command="change_pin", details={}, now=now)


def get_user(
    deps: Deps,
    *,
    user_id: str,
) -> User:
    with deps.uow.read_only() as uow:
        return require_user(uow, user_id)


def find_by_phone(uow: UnitOfWork, phone: str) -> User:
    user = uow.users.get_by_phone(normalise_msisdn(phone))
    if user is None:
        raise NotFound("Nobody with that phone number uses Deni.", code="user_not_found")
    return user


def update_profile(
    deps: Deps,
    *,
    user_id: str,
    name: str | None = None,
    language: str | None = None,
    channel: str = "api",
) -> User:
    """Change the name and/or language; the fields not given stay as they are."""
    clean_name = require_name(name) if name is not None else None
    clean_language = require_language(language) if language is not None else None
    now = deps.clock.now()
    with deps.uow() as uow:
        user = uow.users.lock(user_id)
        if user is None:
            raise NotFound("No such user.", code="user_not_found")
        user.name = clean_name if clean_name is not None else user.name
        user.language = clean_language if clean_language is not None else user.language
        uow.users.save(user, now)
        fields = sorted(k for k, v in (("name", name), ("language", language)) if v is not None)
        audit(
            uow,
            actor_id=user.id,
            channel=channel,
            command="update_profile",
            details={"fields": fields},
            now=now,
        )
        uow.commit()
    return user


def set_support_lock(
    deps: Deps,
    *,
    phone: str,
    locked: bool,
    channel: str = "cli",
    actor_id: str = SUPPORT_ACTOR,
) -> User:
    """Customer care locks an account (a member reports a SIM swap, a lost phone) or unlocks
    it. While locked nothing works, not even a PIN reset, and every session has ended."""
    msisdn = normalise_msisdn(phone)
    now = deps.clock.now()
    with deps.uow() as uow:
        user = lock_member(uow, msisdn)
        if user is None:
            raise NotFound("No member has this number.", code="user_not_found")
        user.support_locked_at = now if locked else None
        if locked:
            _end_sessions(uow, user, now)
        uow.users.save(user, now)
        command = "support_lock" if locked else "support_unlock"
        audit(
            uow,
            actor_id=actor_id,
            channel=channel,
            command=command,
            details={"user_id": user.id},
            now=now,
        )
        uow.commit()
    return user
