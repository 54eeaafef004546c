"""Passkeys (WebAuthn): the rules, with no cryptography and no I/O.

A passkey is a key pair the member's phone keeps behind its fingerprint, face or screen lock;
Deni keeps only the public half. Every use answers a challenge Deni made for one purpose: adding
a passkey, signing in, or one money-out action. The challenge for an action names the action
and its amount (`action_binding`), so a signature given for "withdraw KES 500" proves nothing
about "withdraw KES 5,000" or about approving a loan.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from deni.domain.errors import Unauthorized, ValidationFailed

# A challenge lives long enough for the phone's prompt (the browser's own timeout is 60 s) and
# no longer: it is a one-time ticket, not a session.
CHALLENGE_TTL = timedelta(minutes=2)
CHALLENGE_BYTES = 32
PASSKEYS_PER_MEMBER_MAX = 10
PASSKEY_NAME_CHARS_MAX = 40
DEFAULT_PASSKEY_NAME = "Passkey"
CREDENTIAL_ID_BYTES_MAX = 1023  # WebAuthn's own bound on a credential id
# What a browser sends back is small (a few hundred bytes of JSON); anything far larger is not
# an authenticator's answer.
RESPONSE_CHARS_MAX = 16_384


class ChallengePurpose(Enum):
    REGISTER = "register"
    SIGN_IN = "sign_in"
    ACTION = "action"


class MoneyAction(Enum):
    """The member's commands that move money out of a wallet or decide where it goes; each
    takes the PIN, or a passkey signature over a challenge bound to it."""

    APPROVE_LOAN = "approve_loan"
    REPAY_LOAN = "repay_loan"
    WRITE_OFF_LOAN = "write_off_loan"
    WITHDRAW = "withdraw"
    SET_PREFERENCES = "set_preferences"


def action_binding(
    action: MoneyAction,
    *,
    loan_id: str | None = None,
    amount_cents: int | None = None,
    choices: str | None = None,
) -> str:
    """One spelling of one action: what a challenge is bound to and what the command, when it
    runs, must spell the same way. `choices`: set_preferences's new values."""
    needs_loan = action in (
        MoneyAction.APPROVE_LOAN,
        MoneyAction.REPAY_LOAN,
        MoneyAction.WRITE_OFF_LOAN,
    )
    needs_amount = action in (
        MoneyAction.APPROVE_LOAN,
        MoneyAction.REPAY_LOAN,
        MoneyAction.WITHDRAW,
    )
    assert (loan_id is not None) == needs_loan, action
    assert (amount_cents is not None) == needs_amount, action
    assert (choices is not None) == (action is MoneyAction.SET_PREFERENCES), action
    parts = [action.value]
    if loan_id is not None:
        parts.append(f"loan={loan_id}")
    if amount_cents is not None:
        assert isinstance(amount_cents, int)
        assert not isinstance(amount_cents, bool)
        parts.append(f"amount_cents={amount_cents}")
    if choices is not None:
        parts.append(f"choices={choices}")
    return ";".join(parts)


def preference_choices(*, disburse_to_mpesa: bool | None, auto_payout: bool | None) -> str:
    """set_preferences's values as action_binding names them (unchanged ones as "same")."""

    def word(value: bool | None) -> str:
        return "same" if value is None else ("on" if value else "off")

    return f"disburse_to_mpesa={word(disburse_to_mpesa)},auto_payout={word(auto_payout)}"


@dataclass(frozen=True, slots=True)
class Challenge:
    """A random challenge Deni handed out, kept until it is answered once or lapses.
    `user_id` is None only for signing in, where the passkey says who it is."""

    id: str
    purpose: ChallengePurpose
    user_id: str | None
    binding: str  # action_binding(...) for an action; "" otherwise
    challenge: bytes
    created_at: datetime
    expires_at: datetime

    def __post_init__(self) -> None:
        assert len(self.challenge) == CHALLENGE_BYTES
        assert (self.user_id is None) == (self.purpose is ChallengePurpose.SIGN_IN)
        assert bool(self.binding) == (self.purpose is ChallengePurpose.ACTION)
        assert self.expires_at > self.created_at

    def require_answers(
        self, *, purpose: ChallengePurpose, user_id: str | None, binding: str, now: datetime
    ) -> None:
        """This challenge was made for this purpose, member and action, and has not lapsed."""
        if now >= self.expires_at:
            raise challenge_invalid()
        if self.purpose is not purpose or self.binding != binding:
            raise challenge_invalid()
        if user_id is not None and self.user_id != user_id:
            raise challenge_invalid()


@dataclass(frozen=True, slots=True)
class Passkey:
    """A member's passkey as Deni keeps it: the public key only, and how often it was used."""

    id: str
    user_id: str
    credential_id: bytes
    public_key: bytes  # COSE-encoded, as the authenticator made it
    sign_count: int
    name: str
    created_at: datetime
    last_used_at: datetime | None


def require_sign_count_moved_on(*, stored: int, received: int) -> None:
    """An authenticator that counts its signatures must count up: a count at or below the one
    Deni saw last means a copied key (WebAuthn Level 3, 7.2 step 21). Passkeys that do not
    count (synced ones) send 0 each time, which is allowed while Deni has seen only 0."""
    assert stored >= 0
    assert received >= 0
    if (stored > 0 or received > 0) and received <= stored:
        raise passkey_refused()


def require_passkey_name(name: object) -> str:
    if name is None:
        return DEFAULT_PASSKEY_NAME
    if not isinstance(name, str):
        raise ValidationFailed("A passkey's name is text.", code="invalid_passkey_name")
    clean = " ".join(name.split())
    if not clean:
        return DEFAULT_PASSKEY_NAME
    if len(clean) > PASSKEY_NAME_CHARS_MAX or not clean.isprintable():
        raise ValidationFailed(
            f"Name the passkey in at most {PASSKEY_NAME_CHARS_MAX} printable characters.",
            code="invalid_passkey_name",
        )
    return clean


def challenge_invalid() -> Unauthorized:
    return Unauthorized(
        "That passkey prompt has expired or was already used. Try again.",
        code="passkey_challenge_invalid",
    )


def passkey_refused() -> Unauthorized:
    return Unauthorized("The passkey could not be verified.", code="passkey_refused")
