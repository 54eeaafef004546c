"""The weak-PIN rule on *383#: a new PIN (registration, change, forgotten PIN) that anyone
would try first is refused at its first entry, in the member's language; a PIN being checked
is never judged, so a member who chose one before the rule goes on using it."""

from __future__ import annotations

from fastapi.testclient import TestClient
from tests.support.builders import next_phone, with_pin_chosen_before_the_weak_pin_rule
from tests.support.ussd import Phone, register

from deni.bootstrap import Deni
from deni.services import users


def _member(deni: Deni, phone: Phone) -> users.User:
    with deni.uow.read_only() as uow:
        return users.find_by_phone(uow, phone.number)


def test_registering_in_english_refuses_a_weak_pin_then_takes_a_good_one(
    client: TestClient, deni: Deni
) -> None:
    phone = Phone(client, next_phone())
    phone.dial()
    phone.send("1", "Amina Weak")
    screen = phone.send("1234")
    assert "Too easy to guess" in screen
    assert "Choose a 4-digit PIN" in screen  # the same screen again
    assert "Too easy to guess" in phone.send("2001")
    assert "Enter the same PIN again" in phone.send("7391")
    assert "you are registered" in phone.send("7391")
    assert deni.hasher.verify("7391", _member(deni, phone).pin_hash)


def test_registering_in_kiswahili_refuses_a_weak_pin_in_kiswahili(
    client: TestClient, deni: Deni
) -> None:
    phone = Phone(client, next_phone())
    phone.dial()
    phone.send("2", "Baraka Dhaifu")
    assert "Ni rahisi kukisia" in phone.send("0000")
    assert "umesajiliwa" in phone.send("7391", "7391")


def test_changing_or_resetting_to_a_weak_pin_is_refused_in_the_members_language(
    client: TestClient, deni: Deni
) -> None:
    english, swahili = Phone(client, next_phone()), Phone(client, next_phone())
    register(english, name="Njeri", pin="7391")
    register(swahili, name="Kiprop", pin="7391", language="2")
    english.dial()
    english.send("7", "1", "7391")
    assert "Too easy to guess" in english.send("4321")
    assert "PIN is changed" in english.send("4826", "4826")
    swahili.dial()
    assert "Ni rahisi kukisia" in swahili.send("7", "3", "1111")
    assert not swahili.ended
    assert deni.hasher.verify("7391", _member(deni, swahili).pin_hash)  # nothing was reset


def test_a_member_with_a_weak_pin_from_before_the_rule_still_confirms_with_it(
    client: TestClient, deni: Deni
) -> None:
    phone = Phone(client, next_phone())
    register(phone, name="Otieno Zamani", pin="7391")
    with_pin_chosen_before_the_weak_pin_rule(deni, _member(deni, phone), "1234")
    phone.dial()
    phone.send("7", "1", "1234")  # the current PIN: checked, not judged
    assert "Enter a new 4-digit PIN" in phone.last
    assert "Too easy to guess" in phone.send("1234")  # it may not be chosen again
