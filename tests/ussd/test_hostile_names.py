"""A member's name is any printable text (set online, PATCH /me); on a feature phone it is
folded to plain ASCII, where one character may become several ("\u33af" is "rads2"). The name
is cut as it is shown, so a hostile borrower's name never fills the lender's screens."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from tests.support.builders import api_user, next_phone
from tests.support.ussd import Phone, register

from deni.bootstrap import Deni
from deni.entrypoints.ussd.flows import NAME_IN_LIST_CHARS, NAME_SHOWN_CHARS, short_name
from deni.services import loans

PIN = "3591"
WIDE = "\u33af"  # one character, five when folded for the phone
WIDE_NAME = WIDE * 30 + " Kamau"


def test_a_cut_name_counts_the_characters_the_phone_shows() -> None:
    assert short_name(WIDE_NAME) == "rads2rads2rads2r"
    assert len(short_name(WIDE_NAME, NAME_IN_LIST_CHARS)) == NAME_IN_LIST_CHARS
    assert short_name("Wanjiku Kamau") == "Wanjiku Kamau"  # ASCII names as before
    assert short_name("Wanjiru Nyambura Kamau") == "Wanjiru Nyambura"


@pytest.mark.parametrize(("language", "lend"), [("1", "Lend KES 49,999"), ("2", "KES 49,999?")])
def test_a_wide_name_keeps_to_its_room_on_the_lenders_screens(
    client: TestClient, deni: Deni, language: str, lend: str
) -> None:
    lender = Phone(client, next_phone())
    register(lender, name="Otieno Lender", pin=PIN, language=language)
    borrower = api_user(client, deni, name="Borrower Online")
    renamed = client.patch("/api/v1/me", json={"name": WIDE_NAME}, headers=borrower.with_key())
    assert renamed.status_code == 200, renamed.text
    loans.request_loan(
        deni,
        borrower_id=borrower.user.id,
        lender_phone=lender.number,
        principal_cents=4_999_900,
        fee_cents=99_900,
        term_days=14,
    )
    lender.dial()
    listed = lender.send("4")
    shown = "rads2" * 3
    assert shown[:NAME_IN_LIST_CHARS] + " " in listed  # cut at 12 shown characters
    assert shown[: NAME_IN_LIST_CHARS + 1] not in listed
    for screen in (lender.send("1"), lender.send("1"), lender.send("9999")):
        assert shown + "r" in screen
        assert shown + "ra" not in screen
        assert "49,999" in screen
    assert "Wrong PIN" in lender.last or "PIN si sahihi" in lender.last
    assert lend in lender.last  # the amount stays in sight of the PIN
    assert len(short_name(WIDE_NAME)) == NAME_SHOWN_CHARS
