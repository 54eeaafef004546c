"""Random and hostile entries at every screen: always a CON/END screen of ≤ 182 characters,
never a 500, never the "something went wrong" screen. Each random example runs on a database of
its own."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import Example
from tests.fakes import ManualClock
from tests.support.builders import fund, lend, next_phone, register
from tests.support.ussd import CODE, Phone, assert_screen

from deni.bootstrap import Deni
from deni.entrypoints.ussd.menus import SCREENS
from deni.services import loans

NASTY = (
    "",
    "0",
    "00",
    "98",
    "99",
    "000",
    "1",
    "7",
    "*",
    "**",
    "1*1",
    "#",
    " ",
    "\t1",
    "12345",
    "3591",
    "-1",
    "1.5",
    "1e9",
    "99999999999999999999",
    "\x00",
    "\u202e1",
    "\U0001f600",
    "' OR 1=1 --",
    "<script>alert(1)</script>",
    "{name}",
    "%s%s%s",
    "A" * 300,
    "9" * 64,
    "\uff34\uff45\uff53\uff54",  # fullwidth "Test"
)
SOMETHING_WENT_WRONG = ("went wrong", "hitilafu")
LOCKED = ("Too many wrong PINs", "Umekosea PIN mara nyingi")


@dataclass
class World:
    lender: Phone
    borrower: Phone
    newcomer: Phone
    legacy: Phone  # an account made online, its number never proven
    clock: ManualClock


@pytest.fixture
def world(client: TestClient, deni: Deni, clock: ManualClock) -> World:
    return make_world(client, deni, clock)


def make_world(client: TestClient, deni: Deni, clock: ManualClock) -> World:
    lender_user = register(deni, name="Lender Lucy", pin="3591")
    borrower_user = register(deni, name="Borrower Ben", pin="5683", language="sw")
    legacy_user = register(deni, name="Legacy Lucy", pin="8642", phone_proven=False)
    fund(deni, lender_user, 1_000_000)
    fund(deni, borrower_user, 10_000)
    for approve in (True, False):
        lend(
            deni,
            lender=lender_user,
            borrower=borrower_user,
            approve_with_pin="3591" if approve else None,
        )
    # A loan that is over, for the borrower's past loans.
    declined = lend(deni, lender=lender_user, borrower=borrower_user, approve_with_pin=None)
    loans.decline_loan(deni, lender_id=lender_user.id, loan_id=declined.id)
    return World(
        lender=Phone(client, "0" + lender_user.phone[3:]),
        borrower=Phone(client, "0" + borrower_user.phone[3:]),
        newcomer=Phone(client, next_phone()),
        legacy=Phone(client, "0" + legacy_user.phone[3:]),
        clock=clock,
    )


# (who, entries that reach the screen): together they reach every screen of the journey.
PATHS: dict[str, tuple[str, tuple[str, ...]]] = {
    "welcome": ("newcomer", ()),
    "reg_name": ("newcomer", ("1",)),
    "reg_pin": ("newcomer", ("1", "Fuzz Tester")),
    "reg_pin2": ("newcomer", ("2", "Fuzz Tester", "2468")),
    "claim": ("legacy", ()),
    "claim_pin": ("legacy", ("1",)),
    "main": ("borrower", ()),
    "loan_phone": ("borrower", ("1",)),
    "loan_amount": ("borrower", ("1", "@lender")),
    "loan_days": ("borrower", ("1", "@lender", "1000")),
    "loan_fee": ("borrower", ("1", "@lender", "1000", "30")),
    "loan_confirm": ("borrower", ("1", "@lender", "1000", "30", "0")),
    "my_loans": ("borrower", ("2",)),
    "owe_list": ("borrower", ("2", "1")),
    "owe_detail": ("borrower", ("2", "1", "1")),
    "repay_amount": ("borrower", ("2", "1", "1", "1")),
    "repay_pin": ("borrower", ("2", "1", "1", "1", "50")),
    "repay_mpesa": ("borrower", ("2", "1", "1", "2")),
    "mine_list": ("borrower", ("2", "2")),
    "mine_detail": ("borrower", ("2", "2", "1")),
    "mine_cancel": ("borrower", ("2", "2", "1", "1")),
    "past_list": ("borrower", ("2", "3")),
    "past_detail": ("borrower", ("2", "3", "1")),
    "payout": ("borrower", ("7", "5")),
    "payout_pin": ("borrower", ("7", "5", "2")),
    "gave_list": ("lender", ("3",)),
    "gave_detail": ("lender", ("3", "1")),
    "write_off_pin": ("lender", ("3", "1", "2")),
    "ask_list": ("lender", ("4",)),
    "ask_detail": ("lender", ("4", "1")),
    "approve_pin": ("lender", ("4", "1", "1")),
    "wallet": ("lender", ("5",)),
    "top_up": ("lender", ("5", "1")),
    "withdraw_amount": ("lender", ("5", "2")),
    "withdraw_pin": ("lender", ("5", "2", "100")),
    "statement": ("lender", ("6",)),
    "book": ("lender", ("5", "3")),
    "history": ("lender", ("5", "3", "1")),
    "settings": ("lender", ("7",)),
    "pin_old": ("lender", ("7", "1")),
    "pin_new": ("lender", ("7", "1", "3591")),
    "pin_new2": ("lender", ("7", "1", "3591", "1357")),
    "language": ("lender", ("7", "2")),
    "reset_new": ("borrower", ("7", "3")),
    "reset_new2": ("borrower", ("7", "3", "1357")),
    "close_pin": ("borrower", ("7", "4")),
}


def test_the_paths_reach_every_screen() -> None:
    assert set(PATHS) | {"resume"} == set(SCREENS)


def _reach(world: World, screen_id: str) -> Phone:
    who, entries = PATHS[screen_id]
    phone: Phone = getattr(world, who)
    for _ in range(2):
        phone.dial()
        if "Continue where" in phone.last or "Uendelee" in phone.last:
            phone.send("2")  # an earlier entry's session dropped mid-way: start afresh
        locked = False
        for entry in entries:
            phone.send(world.lender.number if entry == "@lender" else entry)
            if any(words in phone.last for words in LOCKED):
                locked = True
                break
        if not locked:
            break
        # Earlier entries typed three wrong PINs in a row: wait out the lock.
        world.clock.advance(timedelta(days=1))
    assert not phone.ended, (screen_id, phone.last)
    return phone


def _check(phone: Phone) -> None:
    assert_screen(phone.last)
    assert not any(words in phone.last for words in SOMETHING_WENT_WRONG), phone.last


@pytest.mark.parametrize("screen_id", sorted(PATHS))
def test_hostile_entries_at_every_screen(world: World, screen_id: str) -> None:
    for entry in NASTY:
        phone = _reach(world, screen_id)
        phone.send(entry)
        _check(phone)
        if not phone.ended:
            phone.send(entry)
            _check(phone)


entries = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=40),
    st.from_regex(r"[0-9*#]{0,12}", fullmatch=True),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(screen_id=st.sampled_from(sorted(PATHS)), typed=st.lists(entries, min_size=1, max_size=4))
def test_random_entries_at_every_screen(
    fresh_deni: Callable[[], AbstractContextManager[Example]], screen_id: str, typed: list[str]
) -> None:
    with fresh_deni() as example:
        world = make_world(example.client, example.deni, example.clock)
        phone = _reach(world, screen_id)
        for entry in typed:
            if phone.ended:
                break
            phone.send(entry)
            _check(phone)


def test_hostile_requests(client: TestClient, world: World) -> None:
    """Gateway fields that are missing, too long, or not a Kenyan phone: END, never an error."""
    base = {
        "sessionId": "ATUid_hostile",
        "serviceCode": CODE,
        "phoneNumber": "+254711000999",
        "networkCode": "63902",
        "text": "",
    }
    cases = [
        {},
        {**base, "sessionId": ""},
        {**base, "sessionId": "x" * 500},
        {**base, "sessionId": "../../etc/passwd"},
        {**base, "phoneNumber": "+14155550123"},
        {**base, "phoneNumber": "0800123456"},
        {**base, "phoneNumber": "not a phone"},
        {**base, "phoneNumber": ""},
        {**base, "serviceCode": "*999#"},
        {**base, "text": "1*" * 2_000},
        {**base, "sessionId": "ATUid_fresh", "text": "1*2*3"},  # unknown session mid-way
    ]
    for form in cases:
        response = client.post("/ussd", data=form)
        assert response.status_code == 200, (form, response.text)
        assert response.text.startswith("END "), (form, response.text)
        assert_screen(response.text)
    for body, content_type in (
        (b'{"sessionId": "x"}', "application/json"),
        (b"\xff\xfe\x00garbage", "application/x-www-form-urlencoded"),
        (b"a=" + b"b" * 20_000, "application/x-www-form-urlencoded"),
        (b"&&&===&&", "application/x-www-form-urlencoded"),
    ):
        response = client.post("/ussd", content=body, headers={"content-type": content_type})
        assert response.status_code == 200, response.text
        assert response.text.startswith("END ")
