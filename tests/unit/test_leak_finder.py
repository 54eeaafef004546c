"""The tests' leak finder: a PIN standing as a number is found; the same digits inside an id
or a longer number are not, so the secrecy tests fail on leaks and not at random."""

import pytest
from tests.support.builders import shows_number


@pytest.mark.parametrize(
    "text",
    ["PIN 5039 was typed", "pin=5039", '{"pin": "5039"}', "*383*1*5039#", "5039"],
)
def test_a_pin_standing_alone_is_found(text: str) -> None:
    assert shows_number("5039", text)


@pytest.mark.parametrize(
    "text",
    [
        "332c4f2d-8954-5039-a178-9955a29774ea",
        "loan 332c4f2d-8954-5039-a178-9955a29774ea paid",
        "disburse:5039a178-8954-4039-a178-9955a29774ea",
        "09:31:38.150390Z",
        "a35039f0",
        "250391",
    ],
)
def test_the_same_digits_inside_an_id_or_a_longer_number_are_not(text: str) -> None:
    assert not shows_number("5039", text)


def test_a_pin_beside_an_id_is_still_found() -> None:
    assert shows_number("5039", "332c4f2d-8954-4039-a178-9955a29774ea 5039")
