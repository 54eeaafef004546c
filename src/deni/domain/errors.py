"""Errors a user can cause. Each has a stable code for clients and a kind for the transport.

Programmer errors are not here: they are assertions and crash loudly.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum


class ErrorKind(Enum):
    INVALID = "invalid"  # the request itself is wrong
    UNAUTHORIZED = "unauthorized"  # who you are could not be proven
    FORBIDDEN = "forbidden"  # you may not do this
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"  # the request clashes with the current state
    LOCKED = "locked"  # too many wrong PINs, or money held after a PIN reset
    UNAVAILABLE = "unavailable"  # something outside Deni failed; try again later
    TOO_MANY = "too_many"  # too many requests of this kind from one source; wait


class DomainError(Exception):
    """Base of every error a user can cause; `code` is stable, `message` is for people."""

    code = "error"
    kind = ErrorKind.INVALID

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ValidationFailed(DomainError):
    code = "validation_failed"


class InvalidPhoneNumber(ValidationFailed):
    code = "invalid_phone_number"


class NotOnMpesa(ValidationFailed):
    """A number on another network than Safaricom's, where M-PESA must move the money."""

    code = "not_safaricom"


class InvalidAmount(ValidationFailed):
    code = "invalid_amount"


class InvalidDueDate(ValidationFailed):
    code = "invalid_due_date"


class InvalidPin(ValidationFailed):
    code = "invalid_pin"


class WeakPin(InvalidPin):
    """A new PIN that is one of the commonest (domain/security.py, WEAK_PINS)."""

    code = "weak_pin"


class SelfLending(ValidationFailed):
    code = "self_lending"


class NotFound(DomainError):
    code = "not_found"
    kind = ErrorKind.NOT_FOUND


class Unauthorized(DomainError):
    code = "unauthorized"
    kind = ErrorKind.UNAUTHORIZED


class WrongPin(Unauthorized):
    code = "wrong_pin"


class WrongPinLastTry(WrongPin):
    """A wrong PIN, and the next wrong one locks: the member is told before it happens."""

    code = "wrong_pin_last_try"


class AccountLocked(DomainError):
    code = "account_locked"
    kind = ErrorKind.LOCKED


class MoneyOnHold(DomainError):
    """A PIN was reset lately: money may not leave the wallet until `until`."""

    code = "money_on_hold"
    kind = ErrorKind.LOCKED

    def __init__(self, message: str, *, until: datetime) -> None:
        super().__init__(message)
        self.until = until


class LockedBySupport(DomainError):
    code = "locked_by_support"
    kind = ErrorKind.LOCKED

    def __init__(self) -> None:
        super().__init__("Deni customer care locked this account. Call them to unlock it.")


class InvalidResetCode(Unauthorized):
    code = "invalid_code"


class PhoneCodeRequired(ValidationFailed):
    """Registering through the API needs the code sent by SMS to the number (ask for it first)."""

    code = "phone_code_required"


class PhoneCodeInvalid(Unauthorized):
    """The code that proves a number is wrong, late, used up or was never sent."""

    code = "phone_code_invalid"


class TooManyRequests(DomainError):
    """A limit on how often something may be done; `retry_after_s` says when it may again."""

    code = "too_many_requests"
    kind = ErrorKind.TOO_MANY

    def __init__(
        self, message: str, *, retry_after_s: int | None = None, code: str | None = None
    ) -> None:
        super().__init__(message, code=code)
        assert retry_after_s is None or retry_after_s >= 1
        self.retry_after_s = retry_after_s


class SmsUnavailable(DomainError):
    code = "sms_unavailable"
    kind = ErrorKind.UNAVAILABLE


class Forbidden(DomainError):
    code = "forbidden"
    kind = ErrorKind.FORBIDDEN


class PhoneNotProven(Forbidden):
    """An account whose number nobody proved (made online before proofs were asked) may not lend
    or borrow, nor be asked to, until its owner proves the number."""

    code = "phone_not_proven"


class Conflict(DomainError):
    code = "conflict"
    kind = ErrorKind.CONFLICT


class AlreadyRegistered(Conflict):
    code = "already_registered"


class InsufficientFunds(Conflict):
    code = "insufficient_funds"


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"


class InvalidTransition(Conflict):
    code = "invalid_transition"
