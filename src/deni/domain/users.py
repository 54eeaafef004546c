"""A person on Deni, and what wrong PINs do to their account."""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from deni.domain.errors import LockedBySupport, MoneyOnHold, PhoneNotProven, ValidationFailed
from deni.domain.security import (
    PIN_ATTEMPTS_MAX,
    RemoteGuesses,
    is_locked,
    is_sim_proven,
    lock_period,
    money_held_until,
)

LANGUAGES = ("en", "sw")
NAME_CHARS_MAX = 60
NAME_DIGITS_MAX = 4  # "Chama 2" yes; a phone number (9+ digits) in a name, no
# Kenya keeps East Africa Time all year; due dates and "today" are Nairobi dates.
NAIROBI = timezone(timedelta(hours=3), "EAT")


def nairobi_today(now: datetime) -> date:
    assert now.tzinfo is not None
    return now.astimezone(NAIROBI).date()


# What a closed account shows where its name was (a lender's old loans, say).
CLOSED_NAME = "Closed account"
_TOMBSTONE_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_TOMBSTONE_DIGITS = 11  # 65 bits: no two of a billion closed accounts share one, in practice


def closed_phone(user_id: str) -> str:
    """What a closed account keeps in place of its phone number, and an unproven account whose
    number its proven owner took: unique (the column is), never a phone number (they are digits
    only), and the same length as one, so the number is free for someone to register again."""
    value = int.from_bytes(hashlib.sha256(user_id.encode()).digest(), "big")
    digits = []
    for _ in range(_TOMBSTONE_DIGITS):
        value, digit = divmod(value, len(_TOMBSTONE_ALPHABET))
        digits.append(_TOMBSTONE_ALPHABET[digit])
    return "x" + "".join(digits)


def shown_contact(name: str, phone: str, *, closed: bool) -> tuple[str, str]:
    """How a member appears to those they shared loans with: a closed account shows its
    stand-in name and no number, nor does an account that lost its number (their stand-in for
    one is not a number)."""
    return name, "" if closed or not phone.isdigit() else phone


def require_name(name: object) -> str:
    """A person's or a group's name: letters of any script (with their accents), spaces,
    ' . - and a few digits ("Chama 2"). A name is pasted into other members' SMS and screens,
    so it may not carry what a message to them would: a phone number to call, a link, a
    colon that makes "Deni: …" look like Deni speaking; starting with a letter also keeps it
    from reading as a formula in a spreadsheet."""
    if not isinstance(name, str):
        raise ValidationFailed("Give your name.", code="invalid_name")
    cleaned = " ".join(name.split())
    digits = sum(c.isdigit() for c in cleaned)
    if (
        not 2 <= len(cleaned) <= NAME_CHARS_MAX
        or not _is_letter(cleaned[0])
        or not all(_is_letter(c) or c in _NAME_MARKS or c.isdigit() for c in cleaned)
        or digits > NAME_DIGITS_MAX
    ):
        raise ValidationFailed(
            f"A name has 2 to {NAME_CHARS_MAX} letters, starts with a letter, and may hold "
            f"spaces, ' . - and up to {NAME_DIGITS_MAX} digits.",
            code="invalid_name",
        )
    return cleaned


_NAME_MARKS = frozenset(" '.-\u2019")  # the space, apostrophes, the full stop and the hyphen


def _is_letter(c: str) -> bool:
    return unicodedata.category(c)[0] in "LM"  # letters and the marks that accent them


def require_language(language: object) -> str:
    if language not in LANGUAGES:
        raise ValidationFailed("Language is en or sw.", code="invalid_language")
    assert isinstance(language, str)
    return language


@dataclass(slots=True)
class User:
    id: str
    phone: str
    name: str
    language: str
    pin_hash: str
    created_at: datetime
    failed_pin_attempts: int = 0
    lock_count: int = 0
    locked_until: datetime | None = None
    pin_reset_at: datetime | None = None  # the last forgotten-PIN reset: money waits a day
    closed_at: datetime | None = None  # closed by its owner: personal data erased
    # Locked by customer care (a SIM swap reported, say): nothing works, not even a PIN reset,
    # until they unlock it.
    support_locked_at: datetime | None = None
    # Part of every access token; raising it ends every session at once (sign out everywhere,
    # a PIN change or reset, a lock, closing the account).
    session_epoch: int = 0
    # Wrong PINs from channels that do not prove the SIM (security.py): they lock only those.
    remote_failed_pin_attempts: int = 0
    remote_lock_count: int = 0
    remote_locked_until: datetime | None = None
    remote_wrong_pins_at: tuple[datetime, ...] = ()
    # Wrong PINs typed inside a signed-in session, under the same rule but counted apart, so
    # a stranger's guesses at sign-in never lock the owner's sessions.
    session_failed_pin_attempts: int = 0
    session_lock_count: int = 0
    session_locked_until: datetime | None = None
    session_wrong_pins_at: tuple[datetime, ...] = ()
    # When the holder of the SIM proved the number: an SMS code, a USSD dial with the PIN, or
    # registering by USSD. None for accounts made online before codes were asked: they may not
    # lend or borrow until proven, and the number's proven owner may take the number from them.
    phone_proven_at: datetime | None = None

    @property
    def is_closed(self) -> bool:
        return self.closed_at is not None

    @property
    def phone_proven(self) -> bool:
        return self.phone_proven_at is not None

    def prove_phone(self, now: datetime) -> None:
        if self.phone_proven_at is None:
            self.phone_proven_at = now

    def require_phone_proven(self, *, mine: bool = True) -> None:
        """`mine`: the caller's own account; else the other party of a loan."""
        if self.phone_proven_at is not None:
            return
        if mine:
            raise PhoneNotProven(
                "Confirm your phone number first: Deni sends a code to it by SMS "
                "(or dial *383# from it and enter your PIN)."
            )
        raise PhoneNotProven(
            f"{self.name} has not confirmed their phone number yet, so they cannot lend or "
            "borrow on Deni until they do.",
            code="other_party_not_proven",
        )

    def is_locked(self, now: datetime) -> bool:
        return is_locked(self.locked_until, now)

    def locked_until_for(
        self, channel: str, now: datetime, *, in_session: bool = False
    ) -> datetime | None:
        """When PINs from this channel are heard again; None if they are now. A lock earned on
        USSD (the SIM's holder guessing) stops every channel. Off USSD, a lock earned inside a
        session stops sessions and sign-in; one earned at sign-in (perhaps by a stranger who
        knows only the number) stops only sign-in, never a PIN typed in a live session."""
        locks = [self.locked_until]
        if not is_sim_proven(channel):
            locks.append(self.session_locked_until)
            if not in_session:
                locks.append(self.remote_locked_until)
        in_force = [until for until in locks if until is not None and is_locked(until, now)]
        return max(in_force) if in_force else None

    def record_wrong_pin(
        self, now: datetime, *, channel: str = "ussd", in_session: bool = False
    ) -> bool:
        """Count a wrong PIN on its counter (USSD, sign-in or in a session). True if it locked."""
        assert self.locked_until_for(channel, now, in_session=in_session) is None
        if not is_sim_proven(channel):
            if in_session:
                return self._record_wrong_session_pin(now)
            return self._record_wrong_remote_pin(now)
        self.failed_pin_attempts += 1
        if self.failed_pin_attempts < PIN_ATTEMPTS_MAX:
            return False
        self.lock_count += 1
        self.failed_pin_attempts = 0
        self.locked_until = now + lock_period(self.lock_count)
        return True

    def _record_wrong_session_pin(self, now: datetime) -> bool:
        guesses, locked = self._session_guesses().after_wrong(now)
        self.session_failed_pin_attempts, self.session_lock_count = (
            guesses.in_a_row,
            guesses.lock_count,
        )
        self.session_locked_until, self.session_wrong_pins_at = (
            guesses.locked_until,
            guesses.wrong_at,
        )
        return locked

    def _record_wrong_remote_pin(self, now: datetime) -> bool:
        guesses, locked = self._sign_in_guesses().after_wrong(now)
        self.remote_failed_pin_attempts, self.remote_lock_count = (
            guesses.in_a_row,
            guesses.lock_count,
        )
        self.remote_locked_until, self.remote_wrong_pins_at = guesses.locked_until, guesses.wrong_at
        return locked

    def _sign_in_guesses(self) -> RemoteGuesses:
        return RemoteGuesses(
            self.remote_failed_pin_attempts,
            self.remote_lock_count,
            self.remote_locked_until,
            self.remote_wrong_pins_at,
        )

    def _session_guesses(self) -> RemoteGuesses:
        return RemoteGuesses(
            self.session_failed_pin_attempts,
            self.session_lock_count,
            self.session_locked_until,
            self.session_wrong_pins_at,
        )

    def end_sessions(self) -> None:
        """Every access token issued so far stops working (the caller revokes refresh tokens)."""
        self.session_epoch += 1

    def reset_pin(self, pin_hash: str, now: datetime) -> None:
        """A forgotten PIN replaced (the SMS code proved the SIM): unlocked now on every
        channel, but the lock history stays, and money may not leave the wallet for a while
        (security.py). The wrong guesses before it no longer narrow down a PIN that changed."""
        self.pin_hash = pin_hash
        self.failed_pin_attempts = 0
        self.locked_until = None
        self.remote_failed_pin_attempts = 0
        self.remote_locked_until = None
        self.remote_wrong_pins_at = ()
        self.session_failed_pin_attempts = 0
        self.session_locked_until = None
        self.session_wrong_pins_at = ()
        self.pin_reset_at = now

    def require_money_may_leave(self, now: datetime) -> None:
        if self.support_locked_at is not None:
            raise LockedBySupport
        until = money_held_until(self.pin_reset_at, now)
        if until is not None:
            when = until.astimezone(NAIROBI).strftime("%d %b %H:%M")
            message = f"Your PIN was reset: money can leave your wallet from {when}, Nairobi time."
            raise MoneyOnHold(message, until=until)

    def money_may_leave(self, now: datetime) -> bool:
        return self.support_locked_at is None and money_held_until(self.pin_reset_at, now) is None

    def pin_tries_left(self, channel: str, now: datetime, *, in_session: bool = False) -> int:
        """Wrong PINs from here that may still come before one locks."""
        if is_sim_proven(channel):
            return PIN_ATTEMPTS_MAX - self.failed_pin_attempts
        guesses = self._session_guesses() if in_session else self._sign_in_guesses()
        return guesses.tries_left(now)

    def wrong_pins_in_a_row(self, channel: str, *, in_session: bool = False) -> int:
        """What a right PIN from here would clear."""
        if is_sim_proven(channel):
            return self.failed_pin_attempts
        return self.session_failed_pin_attempts if in_session else self.remote_failed_pin_attempts

    def record_right_pin(self, *, channel: str = "ussd", in_session: bool = False) -> None:
        # The growing lock period is kept: a right PIN after a lock does not forgive history,
        # and a right remote PIN leaves the day's wrong ones counted (they stay in the cap).
        # Each remote counter is cleared only by a right PIN of its own kind.
        if not is_sim_proven(channel):
            if in_session:
                self.session_failed_pin_attempts = 0
            else:
                self.remote_failed_pin_attempts = 0
            return
        self.failed_pin_attempts = 0
        self.locked_until = None
