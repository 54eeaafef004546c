"""Identifiers, timestamps and amounts in the shapes M-PESA uses on the wire."""

from __future__ import annotations

import hashlib
import secrets
import string
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

# M-PESA stamps times in Nairobi time (EAT, UTC+3, no daylight saving).
EAT = timezone(timedelta(hours=3), "EAT")
CENTS_PER_SHILLING = 100
_RECEIPT_ALPHABET = string.ascii_uppercase + string.digits
_ID_ATTEMPTS_MAX = 100


def compact_time(moment: datetime) -> str:
    """yyyyMMddHHmmss in Nairobi time: STK TransactionDate, C2B TransTime, BOCompletedTime."""
    return moment.astimezone(EAT).strftime("%Y%m%d%H%M%S")


def dotted_time(moment: datetime) -> str:
    """DD.MM.YYYY HH:MM:SS: B2C TransactionCompletedDateTime."""
    return moment.astimezone(EAT).strftime("%d.%m.%Y %H:%M:%S")


def shillings(amount_cents: int) -> int:
    assert amount_cents % CENTS_PER_SHILLING == 0, "M-PESA moves whole shillings"
    return amount_cents // CENTS_PER_SHILLING


def decimal_shillings(amount_cents: int) -> str:
    """ "5.00": C2B TransAmount, account balances."""
    sign = "-" if amount_cents < 0 else ""
    whole, cents = divmod(abs(amount_cents), CENTS_PER_SHILLING)
    return f"{sign}{whole}.{cents:02d}"


def float_shillings(amount_cents: int) -> float:
    """1.00 as a JSON number: STK Amount, B2C available funds (Safaricom sends floats)."""
    return amount_cents / CENTS_PER_SHILLING


def mask_msisdn(phone: str) -> str:
    """C2B v2 since 2023: "2547 ***** 126"."""
    return f"{phone[:4]} ***** {phone[-3:]}"


def hash_msisdn(phone: str) -> str:
    """C2B v1 since 2023: a SHA-256 of the number."""
    return hashlib.sha256(phone.encode()).hexdigest()


def _hex(length: int) -> str:
    return secrets.token_hex(length)[:length]


def _digits(length: int) -> str:
    return "".join(secrets.choice(string.digits) for _ in range(length))


class IdMint:
    """Makes identifiers in Safaricom's formats, never the same one twice per sandbox."""

    def __init__(self) -> None:
        self._issued: set[str] = set()

    def _unique(self, make: Callable[[], str]) -> str:
        for _ in range(_ID_ATTEMPTS_MAX):
            candidate = make()
            if candidate not in self._issued:
                self._issued.add(candidate)
                return candidate
        raise AssertionError("identifier space exhausted")

    def request_id(self) -> str:
        """ "2654-4b64-97ff-b827b542881d3130": MerchantRequestID, requestId, C2B conversation."""
        return self._unique(lambda: f"{_hex(4)}-{_hex(4)}-{_hex(4)}-{_hex(12)}{_digits(7)}")

    def checkout_request_id(self, moment: datetime, phone: str) -> str:
        """ "ws_CO_21072024125243250722943992": date, time, milliseconds, then the MSISDN."""
        local = moment.astimezone(EAT)
        stamp = local.strftime("%d%m%Y%H%M%S")
        return self._unique(lambda: f"ws_CO_{stamp}{_digits(3)}{phone[3:]}")

    def conversation_id(self, moment: datetime) -> str:
        """ "AG_20240706_20106e9209f64bebd05b"."""
        day = moment.astimezone(EAT).strftime("%Y%m%d")
        return self._unique(lambda: f"AG_{day}_{_hex(20)}")

    def receipt(self, moment: datetime) -> str:
        """Ten uppercase alphanumerics, like "SG632NMUAB" (year, month and day letters first)."""
        prefix = receipt_prefix(moment)
        return self._unique(
            lambda: prefix + "".join(secrets.choice(_RECEIPT_ALPHABET) for _ in range(7))
        )


def receipt_prefix(moment: datetime) -> str:
    """S = 2024, A = January, day 1-9 then A-V: "SG6" is 6 July 2024."""
    local = moment.astimezone(EAT)
    year_letter = string.ascii_uppercase[(local.year - 2024 + 18) % 26]
    month_letter = string.ascii_uppercase[local.month - 1]
    day_char = (string.digits[1:] + string.ascii_uppercase)[local.day - 1]
    return f"{year_letter}{month_letter}{day_char}"


def placeholder_transaction_id(moment: datetime) -> str:
    """Failed results carry a TransactionID that names no transaction, like "NLJ0000000"."""
    return receipt_prefix(moment) + "0000000"
