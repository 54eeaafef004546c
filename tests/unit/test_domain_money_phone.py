"""Money is integer cents within bounds; phone numbers normalise to 2547…/2541… or are refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deni.domain.errors import InvalidAmount, InvalidPhoneNumber
from deni.domain.money import (
    LOAN_CENTS_MAX,
    LOAN_CENTS_MIN,
    MOVEMENT_CENTS_MAX,
    format_kes,
    require_cents,
)
from deni.domain.phone import mask_msisdn, normalise_msisdn

# --- money -------------------------------------------------------------------------------------


def test_loan_bounds_are_kes_10_and_kes_250000() -> None:
    assert LOAN_CENTS_MIN == 1_000
    assert LOAN_CENTS_MAX == 25_000_000
    assert MOVEMENT_CENTS_MAX == 100_000_000


@pytest.mark.parametrize("amount", [1_000, 1_001, 25_000_000])
def test_require_cents_returns_amounts_within_bounds(amount: int) -> None:
    assert require_cents(amount, amount_cents_min=1_000, amount_cents_max=25_000_000) == amount


@pytest.mark.parametrize(
    ("amount", "fragment"),
    [
        (999, "at least KES 10"),
        (0, "at least KES 10"),
        (-5_000, "at least KES 10"),
        (25_000_001, "at most KES 250,000"),
        (10**30, "at most KES 250,000"),
    ],
)
def test_require_cents_refuses_out_of_bounds(amount: int, fragment: str) -> None:
    with pytest.raises(InvalidAmount, match=fragment) as caught:
        require_cents(amount, amount_cents_min=1_000, amount_cents_max=25_000_000)
    assert caught.value.code == "invalid_amount"


@pytest.mark.parametrize(
    "amount", [True, False, 1_000.0, 1_000.5, "1000", None, [1_000], float("nan")]
)
def test_require_cents_refuses_anything_but_int(amount: object) -> None:
    with pytest.raises(InvalidAmount, match="whole numbers of cents"):
        require_cents(amount, amount_cents_min=0, amount_cents_max=10**9)


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_require_cents_accepts_exactly_the_closed_interval(amount: int) -> None:
    low, high = 100, 10**9
    if low <= amount <= high:
        assert require_cents(amount, amount_cents_min=low, amount_cents_max=high) == amount
    else:
        with pytest.raises(InvalidAmount):
            require_cents(amount, amount_cents_min=low, amount_cents_max=high)


@pytest.mark.parametrize(
    ("cents", "text"),
    [
        (0, "KES 0"),
        (5, "KES 0.05"),
        (100, "KES 1"),
        (125_050, "KES 1,250.50"),
        (125_000, "KES 1,250"),
        (-125_050, "-KES 1,250.50"),
        (25_000_000, "KES 250,000"),
        (123_456_789_01, "KES 123,456,789.01"),
    ],
)
def test_format_kes(cents: int, text: str) -> None:
    assert format_kes(cents) == text


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_format_kes_round_trips_to_the_same_cents(cents: int) -> None:
    text = format_kes(cents)
    negative = text.startswith("-")
    number = text.removeprefix("-").removeprefix("KES ").replace(",", "")
    shillings, _, fraction = number.partition(".")
    parsed = int(shillings) * 100 + (int(fraction) if fraction else 0)
    assert len(fraction) in (0, 2)
    assert (-parsed if negative else parsed) == cents


# --- phone numbers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "msisdn"),
    [
        ("0712345678", "254712345678"),
        ("+254712345678", "254712345678"),
        ("254712345678", "254712345678"),
        ("0112345678", "254112345678"),
        ("+254112345678", "254112345678"),
        ("0712 345 678", "254712345678"),
        ("0712-345-678", "254712345678"),
        ("(0712) 345678", "254712345678"),
        ("+254 712 345 678", "254712345678"),
        ("  0722000111  ", "254722000111"),
        ("0110123456", "254110123456"),
    ],
)
def test_common_kenyan_forms_normalise(raw: str, msisdn: str) -> None:
    assert normalise_msisdn(raw) == msisdn


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "hello",
        "071234567",  # one digit short
        "07123456789",  # one digit long
        "0201234567",  # Nairobi landline
        "0800123456",  # toll free
        "+255712345678",  # Tanzania
        "+1 202 555 0123",
        "0712345678" + "0" * 40,  # absurdly long input
        "07123ABCDE",  # letters are not digits (vanity mapping would dial someone else)
        "0712345678x12",  # an extension is not part of a mobile number
        "0712345678;ext=1",
        "tel:+254712345678",
        "0712345678#",
    ],
)
def test_malformed_or_foreign_numbers_are_refused(raw: str) -> None:
    with pytest.raises(InvalidPhoneNumber) as caught:
        normalise_msisdn(raw)
    assert caught.value.code == "invalid_phone_number"


@pytest.mark.parametrize("raw", [None, 712345678, b"0712345678", ["0712345678"]])
def test_non_strings_are_refused(raw: object) -> None:
    with pytest.raises(InvalidPhoneNumber):
        normalise_msisdn(raw)


@given(
    prefix=st.sampled_from(["70", "71", "72", "74", "79", "11"]),
    rest=st.text(alphabet="0123456789", min_size=7, max_size=7),
    form=st.sampled_from(["0{}", "+254{}", "254{}", "+254 {}"]),
)
def test_every_form_of_one_number_normalises_to_the_same_msisdn(
    prefix: str, rest: str, form: str
) -> None:
    national = prefix + rest
    result = normalise_msisdn(form.format(national))
    assert result == "254" + national
    assert normalise_msisdn(result) == result  # normalising is idempotent


@given(st.text(max_size=40))
def test_normalise_either_refuses_or_returns_the_canonical_form(raw: str) -> None:
    try:
        msisdn = normalise_msisdn(raw)
    except InvalidPhoneNumber:
        return
    assert len(msisdn) == 12
    assert msisdn.isascii()
    assert msisdn.isdigit()
    assert msisdn[:4] in ("2547", "2541")


def test_mask_hides_the_middle() -> None:
    assert mask_msisdn("254712345678") == "2547******78"
    assert "345" not in mask_msisdn("254712345678")
