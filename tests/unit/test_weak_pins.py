"""The weak-PIN rule: which PINs a member may not choose (domain/security.py)."""

from __future__ import annotations

import pytest

from deni.domain.errors import InvalidPin, WeakPin
from deni.domain.security import WEAK_PINS, is_weak_pin, require_new_pin, require_pin_format


@pytest.mark.parametrize(
    "pin",
    [
        *(d * 4 for d in "0123456789"),
        "0123", "1234", "2345", "3456", "4567", "5678", "6789", "7890",
        "0987", "9876", "8765", "7654", "6543", "5432", "4321", "3210",
        "1010", "1122", "1212", "1313", "2121", "2323", "6969",
        "2580", "0852",
        "1960", "1975", "1990", "2000", "2001", "2010", "2024", "2029",
    ],
)  # fmt: skip
def test_the_commonest_pins_may_not_be_chosen(pin: str) -> None:
    assert is_weak_pin(pin)
    with pytest.raises(WeakPin) as refused:
        require_new_pin(pin)
    assert refused.value.code == "weak_pin"
    assert isinstance(refused.value, InvalidPin)  # still a PIN the member must type again


@pytest.mark.parametrize("pin", ["3591", "4821", "7391", "1357", "2468", "1959", "2030", "0853"])
def test_other_pins_may_be_chosen(pin: str) -> None:
    assert require_new_pin(pin) == pin


def test_the_list_is_about_a_hundred_pins_all_well_formed() -> None:
    assert len(WEAK_PINS) == 105
    assert all(require_pin_format(pin) == pin for pin in WEAK_PINS)


def test_a_malformed_pin_is_a_format_error_first() -> None:
    with pytest.raises(InvalidPin) as refused:
        require_new_pin("12a4")
    assert refused.value.code == "invalid_pin"


def test_checking_a_pin_never_judges_it() -> None:
    # What every PIN check uses: a member who chose 1234 before the rule still types it.
    assert require_pin_format("1234") == "1234"
