"""PIN rules: the format, how long wrong PINs lock an account, and codes by SMS (resetting a
forgotten PIN, proving a phone number).

Wrong PINs count in two places. On USSD the mobile network says which SIM dialled, so only
the SIM's holder can guess there: three wrong in a row lock the whole account. Anywhere else
(API sign-in, a PIN asked by a signed-in app) the guesser may know nothing but the number, so
those guesses are counted apart from USSD's and never lock it, under the same rule twice:
three in a row lock for a growing period, and at most REMOTE_WRONG_PINS_PER_DAY_MAX fit in any
24 hours. Sign-in has one such counter and PINs typed inside a signed-in session another. A
sign-in lock (the guesser may know only the number) stops only sign-in, never the owner's
sessions; a lock earned inside a session stops sessions and sign-in, and ends every session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from deni.domain.errors import InvalidPin, WeakPin

PIN_DIGITS = 4
PIN_ATTEMPTS_MAX = 3
LOCK_FIRST = timedelta(minutes=5)
LOCK_MAX = timedelta(hours=24)
# Doubling stops here, so the period never overflows however often someone guesses.
LOCK_DOUBLINGS_MAX = 10


# Channels where the mobile network, not the caller, proves the SIM (Africa's Talking posts
# the number that dialled). Every other channel is remote.
SIM_PROVEN_CHANNELS = frozenset({"ussd"})
REMOTE_PIN_ATTEMPTS_MAX = 3
REMOTE_LOCK_FIRST = timedelta(minutes=15)
REMOTE_LOCK_MAX = timedelta(hours=24)
# A hard cap whatever the lock history: no more than this many wrong remote PINs in any
# REMOTE_GUESS_WINDOW, so a stranger's odds stay small (docs/adr/0003).
REMOTE_WRONG_PINS_PER_DAY_MAX = 6
REMOTE_GUESS_WINDOW = timedelta(hours=24)


def is_sim_proven(channel: str) -> bool:
    return channel in SIM_PROVEN_CHANNELS


def require_pin_format(pin: object) -> str:
    if not isinstance(pin, str) or len(pin) != PIN_DIGITS or not pin.isascii() or not pin.isdigit():
        raise InvalidPin(f"A PIN is exactly {PIN_DIGITS} digits.")
    return pin


# --- Weak PINs -----------------------------------------------------------------------------------
# A thief with a member's phone has three tries before USSD locks the account. In published
# studies of four-digit PINs (DataGenetics' 3.4 million PINs, 2012; Bonneau, Preibusch and
# Anderson, "A birthday present every eleven wallets?", Financial Cryptography 2012) the three
# commonest, 1234, 1111 and 0000, are close to one PIN in five, and the next tier is more of the
# same shapes and years. Bonneau et al. found that refusing about a hundred of them, years
# included, takes most of a guesser's early advantage while costing people little. So a new PIN
# may not be:
# - one digit four times (0000 ... 9999);
# - a straight run up or down the digits, the keypad's 7890 and 0987 included;
# - the commonest two-digit repeats and pairs (1212, 1010, 1122, 6969 ...);
# - straight down the keypad's middle column (2580) or up it (0852);
# - a year from 1960 to 2029: the birth years of nearly every adult member and the years of
#   the present, the largest group of chosen PINs (the usual advice is never to use one's year
#   of birth; Deni does not know a member's, so it refuses them all).
# 105 of the 10,000 PINs. The rule is for a PIN being SET (registration, change, reset) on every
# channel; a PIN being CHECKED is never compared with the list: a member who chose one of these
# before the rule still signs in and confirms with it, and is asked for a better one only when
# they next change it.
_DIGITS = "01234567890"
WEAK_PINS: frozenset[str] = frozenset(
    {digit * PIN_DIGITS for digit in "0123456789"}
    | {_DIGITS[i : i + PIN_DIGITS] for i in range(len(_DIGITS) - PIN_DIGITS + 1)}
    | {_DIGITS[::-1][i : i + PIN_DIGITS] for i in range(len(_DIGITS) - PIN_DIGITS + 1)}
    | {"1010", "1122", "1212", "1313", "2121", "2323", "6969"}
    | {"2580", "0852"}
    | {str(year) for year in range(1960, 2030)}
)


def is_weak_pin(pin: str) -> bool:
    return pin in WEAK_PINS


def require_new_pin(pin: object) -> str:
    """A PIN being set: four digits, and not one of the commonest (WEAK_PINS)."""
    clean = require_pin_format(pin)
    if is_weak_pin(clean):
        raise WeakPin(
            "That PIN is one of the first anyone would try (like 1234, 1111 or a year). "
            "Choose another."
        )
    return clean


def lock_period(lock_count: int) -> timedelta:
    """The n-th lock lasts twice as long as the one before, up to a day."""
    assert lock_count >= 1
    doublings = min(lock_count - 1, LOCK_DOUBLINGS_MAX)
    period: timedelta = LOCK_FIRST * (1 << doublings)
    return min(period, LOCK_MAX)


def remote_lock_period(lock_count: int) -> timedelta:
    """The n-th remote lock: 15 minutes, doubling, up to a day."""
    assert lock_count >= 1
    doublings = min(lock_count - 1, LOCK_DOUBLINGS_MAX)
    period: timedelta = REMOTE_LOCK_FIRST * (1 << doublings)
    return min(period, REMOTE_LOCK_MAX)


def recent_wrong_pins(wrong_at: tuple[datetime, ...], now: datetime) -> tuple[datetime, ...]:
    """The wrong remote PINs still inside the window, oldest first, at most the cap's worth."""
    recent = tuple(t for t in wrong_at if now - t < REMOTE_GUESS_WINDOW)
    return recent[-REMOTE_WRONG_PINS_PER_DAY_MAX:]


@dataclass(frozen=True, slots=True)
class RemoteGuesses:
    """One remote counter (sign-in's, or in-session's): wrong PINs in a row, locks so far, the
    lock in force, the last day's wrong PINs (oldest first, at most the cap)."""

    in_a_row: int = 0
    lock_count: int = 0
    locked_until: datetime | None = None
    wrong_at: tuple[datetime, ...] = ()

    def after_wrong(self, now: datetime) -> tuple[RemoteGuesses, bool]:
        """The counter after one more wrong PIN, and whether that locked. Three in a row lock
        for a growing period; the cap's worth within the window locks until the oldest of
        them leaves the window."""
        recent = (*recent_wrong_pins(self.wrong_at, now), now)
        wrong_at = recent[-REMOTE_WRONG_PINS_PER_DAY_MAX:]
        capped = len(recent) >= REMOTE_WRONG_PINS_PER_DAY_MAX
        if self.in_a_row + 1 < REMOTE_PIN_ATTEMPTS_MAX and not capped:
            return RemoteGuesses(
                self.in_a_row + 1, self.lock_count, self.locked_until, wrong_at
            ), False
        lock_count = self.lock_count + 1
        until = now + remote_lock_period(lock_count)
        if capped:
            until = max(until, wrong_at[0] + REMOTE_GUESS_WINDOW)
        return RemoteGuesses(0, lock_count, until, wrong_at), True

    def tries_left(self, now: datetime) -> int:
        """Wrong PINs that may still come before one locks: the fewer of the rule's two."""
        in_window = len(recent_wrong_pins(self.wrong_at, now))
        left = min(
            REMOTE_PIN_ATTEMPTS_MAX - self.in_a_row,
            REMOTE_WRONG_PINS_PER_DAY_MAX - in_window,
        )
        return max(left, 0)

    def to_text(self) -> str:
        """Kept where no member row holds it (sign-in guesses at a number that is not on Deni:
        they are answered exactly as a member's are)."""
        until = "" if self.locked_until is None else self.locked_until.isoformat()
        times = ",".join(t.isoformat() for t in self.wrong_at)
        return f"{self.in_a_row}|{self.lock_count}|{until}|{times}"

    @classmethod
    def from_text(cls, text: str | None) -> RemoteGuesses:
        if not text:
            return cls()
        in_a_row, lock_count, until, times = text.split("|")
        return cls(
            int(in_a_row),
            int(lock_count),
            datetime.fromisoformat(until) if until else None,
            tuple(datetime.fromisoformat(t) for t in times.split(",") if t),
        )


def is_locked(locked_until: datetime | None, now: datetime) -> bool:
    return locked_until is not None and now < locked_until


# --- Codes by SMS --------------------------------------------------------------------------------
# A code sent by SMS to a number proves the person holds that SIM: a forgotten PIN's reset code,
# and the code that proves a number before it may open an account (or lend and borrow). Both
# follow these rules. A SIM swap would prove a number too, so money cannot leave the wallet for
# a day after a PIN reset: time for the real owner, told by SMS, to call before a thief can
# withdraw or lend it out.
RESET_CODE_DIGITS = 6
RESET_CODE_TTL = timedelta(minutes=10)
RESET_CODE_ATTEMPTS_MAX = 3  # then the code is void; ask for a new one
RESET_CODES_PER_WINDOW_MAX = 3
RESET_CODE_WINDOW = timedelta(hours=1)
# Asks for codes from one network source in that window, whatever the numbers: each ask may
# send an SMS Deni pays for, so one caller cannot make it send many.
RESET_ASKS_PER_SOURCE_MAX = 10
MONEY_HOLD_AFTER_RESET = timedelta(hours=24)


@dataclass(slots=True)
class SmsCode:
    """The one code of its kind a user or a number may hold, kept only as a hash: at most a few
    sent an hour, void after a few wrong tries or ten minutes, good once."""

    window_started_at: datetime
    sent_in_window: int = 0
    code_hash: str | None = None
    expires_at: datetime | None = None
    attempts: int = 0

    def may_send(self, now: datetime) -> bool:
        if now - self.window_started_at >= RESET_CODE_WINDOW:
            return True
        return self.sent_in_window < RESET_CODES_PER_WINDOW_MAX

    def issue(self, code_hash: str, now: datetime) -> None:
        """A new code replaces any earlier one."""
        assert self.may_send(now)
        if now - self.window_started_at >= RESET_CODE_WINDOW:
            self.window_started_at, self.sent_in_window = now, 0
        self.sent_in_window += 1
        self.code_hash, self.expires_at, self.attempts = code_hash, now + RESET_CODE_TTL, 0

    def usable(self, now: datetime) -> bool:
        return (
            self.code_hash is not None
            and self.expires_at is not None
            and now < self.expires_at
            and self.attempts < RESET_CODE_ATTEMPTS_MAX
        )

    def record_wrong(self) -> None:
        assert self.code_hash is not None
        self.attempts += 1
        if self.attempts >= RESET_CODE_ATTEMPTS_MAX:
            self.spend()

    def spend(self) -> None:
        self.code_hash, self.expires_at = None, None


@dataclass(slots=True)
class PinResetCode(SmsCode):
    """A forgotten PIN's reset code, one per user."""

    user_id: str = field(kw_only=True)


@dataclass(slots=True)
class PhoneCode(SmsCode):
    """The code that proves a number (normalised), one per number, whether or not anyone on
    Deni has it: asking for it reserves nothing, so nobody can hold a number they cannot prove."""

    phone: str = field(kw_only=True)


def money_held_until(pin_reset_at: datetime | None, now: datetime) -> datetime | None:
    """When money may leave a wallet again after a PIN reset; None if it may now."""
    if pin_reset_at is None:
        return None
    until = pin_reset_at + MONEY_HOLD_AFTER_RESET
    return until if now < until else None
