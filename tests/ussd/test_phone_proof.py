"""USSD and proven numbers: the network says which SIM dialled, so registering by USSD proves
the number, and an account made online before numbers were proven is proven when the SIM's
holder enters its PIN; a SIM holder who did not make it opens their own, taking the number."""

from __future__ import annotations

from fastapi.testclient import TestClient
from tests.support.builders import next_phone, register
from tests.support.ussd import Phone
from tests.support.ussd import register as dial_register

from deni.bootstrap import Deni
from deni.domain.users import User
from deni.services import users


def _member(deni: Deni, user_id: str) -> User:
    with deni.uow.read_only() as uow:
        user = uow.users.get(user_id)
    assert user is not None
    return user


def _by_phone(deni: Deni, phone: Phone) -> User:
    with deni.uow.read_only() as uow:
        return users.find_by_phone(uow, phone.number)


def _legacy(deni: Deni, number: str, *, name: str, pin: str) -> User:
    return users.register_user(
        deni,
        phone=number,
        name=name,
        pin=pin,
        phone_proven=False,
    )


def test_registering_by_ussd_proves_the_number(client: TestClient, deni: Deni) -> None:
    phone = Phone(client, next_phone())
    assert "you are registered" in dial_register(phone, name="Jane Wanjiku", pin="4821")
    assert _by_phone(deni, phone).phone_proven


def test_the_maker_of_an_unproven_account_proves_it_with_its_pin(
    client: TestClient, deni: Deni
) -> None:
    phone = Phone(client, next_phone())
    legacy = _legacy(deni, phone.number, name="Legacy Lucy", pin="1357")
    screen = phone.dial()
    assert "Legacy Lucy" in screen
    assert "not confirmed" in screen
    assert "Wrong PIN" in phone.send("1", "2468")  # a wrong PIN proves nothing, and counts
    assert not _member(deni, legacy.id).phone_proven
    assert _member(deni, legacy.id).failed_pin_attempts == 1
    screen = phone.send("1357")
    assert "Your number is confirmed" in screen
    assert "Hi Legacy Lucy" in screen
    assert _member(deni, legacy.id).phone_proven
    # Now a member like any other: the next dial goes straight to the menu.
    assert "Hi Legacy Lucy" in phone.dial()


def test_a_sim_holder_who_did_not_make_the_account_registers_and_takes_the_number(
    client: TestClient, deni: Deni
) -> None:
    """A fake "Mama Wanjiku" registered this number online; its owner dials in."""
    phone = Phone(client, next_phone())
    squatter = _legacy(deni, phone.number, name="Mama Wanjiku", pin="1357")
    phone.dial()
    assert "you are registered" in phone.send("2", "1", "Wanjiku Real", "2468", "2468")
    owner = _by_phone(deni, phone)
    assert owner.id != squatter.id
    assert owner.phone_proven
    assert not _member(deni, squatter.id).phone.isdigit()  # it gave the number up
    assert "Hi Wanjiku Real" in phone.dial()


def test_an_unproven_member_cannot_be_named_lender(client: TestClient, deni: Deni) -> None:
    legacy = register(deni, name="Legacy Lender", phone_proven=False)
    borrower = Phone(client, next_phone())
    dial_register(borrower, name="Borrower Ben", pin="5683")
    borrower.dial()
    screen = borrower.send("1", "0" + legacy.phone[3:])
    assert "has not confirmed their number" in screen
