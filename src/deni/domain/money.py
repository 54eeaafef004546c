"""Money is an integer number of cents (KES minor units). Never a float."""

from __future__ import annotations

from deni.domain.errors import InvalidAmount

CENTS_PER_SHILLING = 100
# One M-PESA transaction moves at most KES 250,000; a loan is bounded the same way.
LOAN_CENTS_MIN = 10 * CENTS_PER_SHILLING
LOAN_CENTS_MAX = 250_000 * CENTS_PER_SHILLING
# A wallet movement is bounded so that a typo cannot move an absurd sum.
MOVEMENT_CENTS_MAX = 1_000_000 * CENTS_PER_SHILLING


def require_cents(
    amount_cents: object,
    *,
    amount_cents_min: int,
    amount_cents_max: int,
    what: str = "The amount",
    limit: str = "",
) -> int:
    """Return `amount_cents` if it is an int within bounds; reject anything else clearly.

    `what` names the amount in the refusal ("The fee"), `limit` what its bound is, when that
    is another amount ("the amount lent"), so a fee above the principal is not refused as if
    the principal itself were wrong."""
    assert 0 <= amount_cents_min <= amount_cents_max
    if isinstance(amount_cents, bool) or not isinstance(amount_cents, int):
        raise InvalidAmount("Amounts are whole numbers of cents.")
    if amount_cents < amount_cents_min:
        raise InvalidAmount(f"{what} must be at least {format_kes(amount_cents_min)}.")
    if amount_cents > amount_cents_max:
        bound = format_kes(amount_cents_max) + (f", {limit}" if limit else "")
        raise InvalidAmount(f"{what} must be at most {bound}.")
    return amount_cents


def format_kes(amount_cents: int) -> str:
    """Format as people read shillings: KES 1,250 or KES 1,250.50."""
    sign = "-" if amount_cents < 0 else ""
    shillings, cents = divmod(abs(amount_cents), CENTS_PER_SHILLING)
    if cents:
        return f"{sign}KES {shillings:,}.{cents:02d}"
    return f"{sign}KES {shillings:,}"
