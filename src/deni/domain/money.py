"""Money is an integer number of cents (KES minor units). Never a float."""

from __future__ import annotations

from deni.domain.errors import InvalidAmount

CENTS_PER_SHILLING = 100
# One M-PESA transaction moves at most KES 250,000; a loan is bounded the same way.
LOAN_MIN_CENTS = 10 * CENTS_PER_SHILLING
LOAN_MAX_CENTS = 250_000 * CENTS_PER_SHILLING
# A wallet movement is bounded so that a typo cannot move an absurd sum.
MOVEMENT_MAX_CENTS = 1_000_000 * CENTS_PER_SHILLING


def require_cents(amount_cents: object, *, minimum_cents: int, maximum_cents: int) -> int:
    """Return `amount_cents` if it is an int within bounds; reject anything else clearly."""
    assert 0 <= minimum_cents <= maximum_cents
    if isinstance(amount_cents, bool) or not isinstance(amount_cents, int):
        raise InvalidAmount("Amounts are whole numbers of cents.")
    if amount_cents < minimum_cents:
        raise InvalidAmount(f"The amount must be at least {format_kes(minimum_cents)}.")
    if amount_cents > maximum_cents:
        raise InvalidAmount(f"The amount must be at most {format_kes(maximum_cents)}.")
    return amount_cents


def format_kes(amount_cents: int) -> str:
    """Format as people read shillings: KES 1,250 or KES 1,250.50."""
    sign = "-" if amount_cents < 0 else ""
    shillings, cents = divmod(abs(amount_cents), CENTS_PER_SHILLING)
    if cents:
        return f"{sign}KES {shillings:,}.{cents:02d}"
    return f"{sign}KES {shillings:,}"
