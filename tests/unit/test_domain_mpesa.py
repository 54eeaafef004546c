"""What one M-PESA transaction may carry, and what a request row must hold."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from deni.domain.errors import InvalidAmount
from deni.domain.mpesa import (
    B2C_CENTS_MIN,
    MPESA_CENTS_MAX,
    STK_CENTS_MIN,
    MpesaRequest,
    Purpose,
    RequestKind,
    RequestState,
    require_mpesa_amount,
)

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def test_whole_shillings_from_the_floor_to_the_ceiling_pass() -> None:
    assert require_mpesa_amount(STK_CENTS_MIN, amount_cents_min=STK_CENTS_MIN) == 100
    assert require_mpesa_amount(B2C_CENTS_MIN, amount_cents_min=B2C_CENTS_MIN) == 1_000
    assert require_mpesa_amount(MPESA_CENTS_MAX, amount_cents_min=STK_CENTS_MIN) == 25_000_000


@pytest.mark.parametrize("amount", [True, 100.0, "100", None])
def test_an_amount_that_is_not_an_int_of_cents_is_refused(amount: object) -> None:
    with pytest.raises(InvalidAmount) as refused:
        require_mpesa_amount(amount, amount_cents_min=STK_CENTS_MIN)
    assert str(refused.value) == "Amounts are whole numbers of cents."


def test_cents_that_are_not_whole_shillings_are_refused() -> None:
    with pytest.raises(InvalidAmount) as refused:
        require_mpesa_amount(150, amount_cents_min=STK_CENTS_MIN)
    assert str(refused.value) == "M-PESA moves whole shillings: the amount must end in 00 cents."


@pytest.mark.parametrize(
    ("amount", "floor"),
    [(B2C_CENTS_MIN - 100, B2C_CENTS_MIN), (MPESA_CENTS_MAX + 100, STK_CENTS_MIN)],
)
def test_an_amount_outside_what_one_transaction_carries_is_refused(amount: int, floor: int) -> None:
    with pytest.raises(InvalidAmount) as refused:
        require_mpesa_amount(amount, amount_cents_min=floor)
    shillings = floor // 100
    assert str(refused.value) == f"M-PESA amounts are KES {shillings} to KES 250,000."


def _request(**changes: object) -> MpesaRequest:
    request = MpesaRequest(
        id="r1",
        kind=RequestKind.STK,
        purpose=Purpose.TOP_UP,
        user_id="u1",
        loan_id=None,
        phone="254712345678",
        amount_cents=10_000,
        idempotency_key="k1",
        state=RequestState.QUEUED,
        created_at=NOW,
        updated_at=NOW,
    )
    return replace(request, **changes)  # type: ignore[arg-type]


def test_a_request_of_a_kind_that_fits_its_purpose_is_made() -> None:
    assert _request().amount_cents == 10_000
    assert _request(amount_cents=1).amount_cents == 1  # any positive amount; limits are above
    payout = _request(kind=RequestKind.B2C, purpose=Purpose.WITHDRAWAL, not_found_answers=0)
    assert payout.kind is RequestKind.B2C


@pytest.mark.parametrize(
    "changes",
    [
        {"amount_cents": 0},
        {"amount_cents": -100},
        {"kind": RequestKind.B2C},  # a top-up is a push, never a payout
        {"purpose": Purpose.WITHDRAWAL},  # a withdrawal is a payout, never a push
        {"not_found_answers": -1},
    ],
)
def test_a_request_that_breaks_its_rules_is_not_made(changes: dict[str, object]) -> None:
    with pytest.raises(AssertionError):
        _request(**changes)
