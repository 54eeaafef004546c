"""The one place Deni's integer cents meet M-PESA's shillings.

Outgoing: Daraja moves whole shillings, so a request amount must be a whole number of shillings.
Incoming: callbacks carry shillings as "100.00", 100, 1.0 or 8959269.60; they become exact cents
through Decimal (never through float arithmetic), and anything finer than a cent is refused.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from deni.domain.money import CENTS_PER_SHILLING

# Far above anything M-PESA moves or holds (a shortcode balance in the billions of shillings
# still fits), and small enough that a hostile "1e999999" never becomes a giant integer.
SHILLINGS_ABS_MAX = 10**12
_DECIMAL_TEXT = re.compile(r"-?\d{1,15}(\.\d{1,12})?")


class AmountError(ValueError):
    """An amount that cannot be an exact number of cents (or shillings) as required."""


def cents_to_shillings(amount_cents: int) -> int:
    """Whole shillings for a Daraja request; refuses fractions of a shilling and non-positives."""
    if isinstance(amount_cents, bool) or not isinstance(amount_cents, int):
        raise AmountError(f"amount_cents must be an int, not {type(amount_cents).__name__}")
    if amount_cents <= 0:
        raise AmountError(f"M-PESA amounts are positive; got {amount_cents} cents")
    shillings, cents = divmod(amount_cents, CENTS_PER_SHILLING)
    if cents != 0:
        raise AmountError(
            f"M-PESA moves whole shillings only; {amount_cents} cents is "
            f"KES {shillings}.{cents:02d} (round to a whole shilling before calling Daraja)"
        )
    assert shillings <= SHILLINGS_ABS_MAX
    return shillings


def _describe(value: object) -> str:
    # repr() of an int with thousands of digits raises; error messages must never raise.
    if isinstance(value, int) and abs(value) > 10**20:
        return "a very large number"
    return repr(value)[:40]


def shillings_to_cents(value: object, *, allow_negative: bool = False) -> int:
    """Exact cents for a shillings value from Daraja: "100.00", "5", 1, 1.0, 8959269.6.

    Negative values are refused unless `allow_negative` (only account balances may be negative:
    Daraja reports "Charges Paid Account|KES|-1540.00"). Fractions of a cent are refused.
    """
    if isinstance(value, bool):
        raise AmountError("an amount cannot be true/false")
    if isinstance(value, int):
        shillings = Decimal(value)
    elif isinstance(value, float):
        # repr() is the shortest text that reads back as the same float, so 8959269.6 stays
        # 8959269.6 instead of 8959269.5999999996...
        text = repr(value)
        if not _DECIMAL_TEXT.fullmatch(text):
            raise AmountError(f"not a plain shillings amount: {text}")
        shillings = Decimal(text)
    elif isinstance(value, str):
        text = value.strip()
        if not _DECIMAL_TEXT.fullmatch(text):
            raise AmountError(f"not a plain shillings amount: {value[:40]!r}")
        shillings = Decimal(text)
    else:
        raise AmountError(f"an amount must be a number or a string, not {type(value).__name__}")
    if abs(shillings) > SHILLINGS_ABS_MAX:
        raise AmountError(f"amount out of range: {_describe(value)}")
    if shillings < 0 and not allow_negative:
        raise AmountError(f"amount must not be negative: {_describe(value)}")
    try:
        cents = shillings * CENTS_PER_SHILLING
    except InvalidOperation as error:  # pragma: no cover - bounded above, kept for safety
        raise AmountError(f"not an amount: {_describe(value)}") from error
    if cents != cents.to_integral_value():
        raise AmountError(f"amount has a fraction of a cent: {_describe(value)}")
    return int(cents)
