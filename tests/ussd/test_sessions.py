"""Sessions: repeated hops, timeouts, resuming a dropped session, PIN lockout, pages, logs."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from tests.fakes import ManualClock
from tests.support.builders import fund, next_phone, shows_number
from tests.support.ussd import Phone, mpesa, register

from deni.bootstrap import Deni
from deni.entrypoints.ussd.engine import session_key
from deni.services import queries, users


def _loans(deni: Deni, phone: Phone, role: str = "borrower") -> list[queries.LoanView]:
    with deni.uow.read_only() as uow:
        user_id = users.find_by_phone(uow, phone.number).id
    return queries.list_loans(deni, user_id=user_id, role=role)


@pytest.fixture
def pair(client: TestClient) -> tuple[Phone, Phone]:
    lender, borrower = Phone(client, next_phone()), Phone(client, next_phone())
    register(lender, name="Lender Lucy", pin="3591")
    register(borrower, name="Borrower Ben", pin="5683")
    return lender, borrower


def test_the_same_hop_twice_gives_the_same_screen_and_acts_once(
    deni: Deni, pair: tuple[Phone, Phone]
) -> None:
    lender, borrower = pair
    borrower.dial()
    borrower.send("1", lender.number, "1000", "30", "0")
    first = borrower.send("5683")
    assert borrower.resend() == first
    assert borrower.resend() == first
    assert len(_loans(deni, borrower)) == 1


def test_mpesa_movements_wait_for_end_and_happen_once(
    deni: Deni, pair: tuple[Phone, Phone]
) -> None:
    """An STK prompt or payout during an open session fails, so M-PESA movements are queued
    on the hop and recorded only when the session ends; the END hop sent again records nothing
    more."""
    lender, _ = pair
    with deni.uow.read_only() as uow:
        fund(deni, users.find_by_phone(uow, lender.number), 100_000)
    before = len(mpesa(deni).requests)
    lender.dial()
    lender.send("5", "2", "500")  # withdraw KES 500: the PIN screen, session still open
    assert not lender.ended
    assert len(mpesa(deni).requests) == before
    end = lender.send("3591")
    assert lender.ended
    assert len(mpesa(deni).requests) == before + 1
    assert lender.resend() == end
    assert len(mpesa(deni).requests) == before + 1
    (withdrawal,) = mpesa(deni).requests[before:]
    assert (withdrawal.kind, withdrawal.amount_cents) == ("withdrawal", 50_000)


def test_an_older_hop_arriving_late_changes_nothing(pair: tuple[Phone, Phone]) -> None:
    lender, borrower = pair
    borrower.dial()
    borrower.send("1", lender.number)
    current = borrower.last
    borrower.entries = ["1"]  # the gateway re-sends a hop from before
    assert borrower.resend() == current
    borrower.entries = ["1", lender.number]
    assert "how many days" in borrower.send("1000")


def test_an_entry_with_a_star_is_one_entry(pair: tuple[Phone, Phone]) -> None:
    lender, borrower = pair
    borrower.dial()
    borrower.send("1", lender.number, "1*0")
    assert "Enter KES 10 to KES 250,000" in borrower.last
    assert not borrower.ended
    borrower.send("")
    assert "Enter KES 10" in borrower.last


def test_a_session_id_reused_by_another_phone_is_refused(
    client: TestClient, pair: tuple[Phone, Phone]
) -> None:
    lender, borrower = pair
    borrower.dial()
    borrower.send("1")
    intruder = Phone(client, lender.number)
    intruder.dial(session_id=borrower.session_id)
    assert intruder.ended
    assert "not valid" in intruder.last
    intruder.entries = list(borrower.entries)
    assert "not valid" in intruder.resend()
    assert "Lender's phone" in borrower.send("0") or borrower.send("1")


def test_a_hop_after_the_session_timed_out(
    clock: ManualClock, deni: Deni, pair: tuple[Phone, Phone]
) -> None:
    lender, borrower = pair
    borrower.dial()
    borrower.send("1", lender.number, "1000")
    clock.advance(timedelta(seconds=deni.settings.ussd_session_timeout_s + 1))
    borrower.send("30")
    assert borrower.ended
    assert "timed out" in borrower.last
    assert "*383#" in borrower.last
    assert _loans(deni, borrower) == []


def test_a_dropped_session_resumes_within_two_minutes(
    clock: ManualClock, deni: Deni, pair: tuple[Phone, Phone]
) -> None:
    lender, borrower = pair
    borrower.dial()
    borrower.send("1", lender.number, "1000")  # dropped on "days until due"
    clock.advance(timedelta(seconds=90))
    assert "Continue where you left off?" in borrower.dial()
    assert "how many days" in borrower.send("1")
    borrower.send("14", "100", "5683")
    assert borrower.ended
    (loan,) = _loans(deni, borrower)
    assert loan.loan.terms.principal_cents == 100_000
    assert loan.loan.terms.fee_cents == 10_000
    # Finished: nothing left to resume.
    assert "Request a loan" in borrower.dial()


def test_resume_declined_or_too_late_starts_at_the_menu(
    clock: ManualClock, pair: tuple[Phone, Phone]
) -> None:
    lender, borrower = pair
    borrower.dial()
    borrower.send("1", lender.number)
    borrower.dial()
    assert "Request a loan" in borrower.send("2")
    borrower.dial()
    borrower.send("5", "1")
    clock.advance(timedelta(seconds=121))
    assert "Request a loan" in borrower.dial()


def test_registration_resumes_too(client: TestClient, clock: ManualClock, deni: Deni) -> None:
    newcomer = Phone(client, next_phone())
    newcomer.dial()
    newcomer.send("2", "Achieng Atieno", "2538")
    clock.advance(timedelta(seconds=30))
    # Asked in the language chosen in the dropped session, not in English.
    offer = newcomer.dial()
    assert "Uendelee ulipoachia?" in offer
    assert "1 Ndiyo" in offer
    assert "2 Hapana" in offer
    assert "Continue" not in offer
    assert "tena" in newcomer.send("1")  # "Weka PIN hiyo tena"
    assert "umesajiliwa" in newcomer.send("2538")
    with deni.uow.read_only() as uow:
        user = users.find_by_phone(uow, newcomer.number)
    assert (user.name, user.language) == ("Achieng Atieno", "sw")


def test_an_english_newcomer_is_offered_to_continue_in_english(
    client: TestClient, clock: ManualClock
) -> None:
    newcomer = Phone(client, next_phone())
    newcomer.dial()
    newcomer.send("1", "Peter Njoroge")
    offer = newcomer.dial()
    assert "Continue where you left off?" in offer
    assert "1 Yes" in offer
    assert "Enter the same PIN again" not in newcomer.send("1")  # back at "Choose a PIN"
    assert "Choose a 4-digit PIN" in newcomer.last


def test_no_resume_after_a_screen_that_was_only_read(
    clock: ManualClock, deni: Deni, pair: tuple[Phone, Phone]
) -> None:
    """A statement, the wallet, a list or a loan's page, read and left (or left with 0): what
    was there to continue is one hop away, so dialling again opens the menu."""
    lender, borrower = pair
    for path in (("6",), ("5",), ("3",), ("5", "3"), ("5", "3", "1"), ("7",)):
        borrower.dial()
        borrower.send(*path)
        assert not borrower.ended
        clock.advance(timedelta(seconds=30))
        assert "Request a loan" in borrower.dial(), path
    # Typed something, then went to read something: the entry is left behind, nothing offered.
    borrower.dial()
    borrower.send("1", lender.number, "00", "6")
    assert "Request a loan" in borrower.dial()
    # Typed something and dropped there: offered.
    borrower.dial()
    borrower.send("1", lender.number)
    assert "Continue where you left off?" in borrower.dial()


def test_pins_that_do_not_match_ask_again(client: TestClient, deni: Deni) -> None:
    newcomer = Phone(client, next_phone())
    newcomer.dial()
    newcomer.send("1", "Peter Njoroge", "3591", "4321")
    assert "did not match" in newcomer.last
    assert "Choose a 4-digit PIN" in newcomer.last
    assert "registered" in newcomer.send("2468", "2468")


def test_three_wrong_pins_lock_and_nothing_is_half_done(
    deni: Deni, pair: tuple[Phone, Phone]
) -> None:
    lender, borrower = pair
    borrower.dial()
    borrower.send("1", lender.number, "1000", "30", "0")
    first = borrower.send("0000")
    assert "Wrong PIN" in first
    assert "1 try left" not in first
    assert not borrower.ended
    second = borrower.send("1111")
    assert "Wrong PIN. 1 try left" in second  # told before the lock, not after
    assert len(second) <= 182
    borrower.send("2222")
    assert borrower.ended
    assert "Too many wrong PINs" in borrower.last
    # Even the right PIN is refused while locked.
    borrower.dial()
    borrower.send("1", lender.number, "1000", "30", "0", "5683")
    assert "Too many wrong PINs" in borrower.last
    assert _loans(deni, borrower) == []


def test_long_lists_page(deni: Deni, pair: tuple[Phone, Phone]) -> None:
    lender, borrower = pair
    for amount in range(1001, 1008):
        borrower.dial()
        borrower.send("1", lender.number, str(amount), "30", "0", "5683")
    lender.dial()
    first = lender.send("4")
    assert "98 More" in first
    assert first.count("asks") == 3
    second = lender.send("98")
    assert second != first
    assert second.count("asks") == 3
    third = lender.send("98")
    assert third.count("asks") == 1
    assert "98 More" not in third
    assert "Choose a number" in lender.send("98")
    assert lender.send("0") == second
    assert lender.send("0") == first
    assert "Request a loan" in lender.send("00")


def test_the_pin_never_reaches_a_log(
    deni: Deni,
    pair: tuple[Phone, Phone],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    lender, borrower = pair

    def broken(*_: object, **__: object) -> object:
        raise RuntimeError("the database fell over")

    borrower.dial()
    borrower.send("1", lender.number, "1000", "30", "0", "5683")  # a right PIN, logged nowhere
    monkeypatch.setattr("deni.services.users.change_proven_pin", broken)
    borrower.dial()
    borrower.send("7", "1", "5683", "8642", "8642")
    assert borrower.ended
    assert "went wrong" in borrower.last
    logs = capsys.readouterr().out + capsys.readouterr().err + caplog.text
    assert "ussd_hop_failed" in logs
    assert "RuntimeError" in logs
    for secret in ("5683", "8642"):
        assert not shows_number(secret, logs)


def _pin_is(deni: Deni, phone: Phone, pin: str) -> bool:
    with deni.uow.read_only() as uow:
        user = users.find_by_phone(uow, phone.number)
    return deni.hasher.verify(pin, user.pin_hash)


def test_a_change_of_pin_needs_the_current_pin_proven_lately_in_the_session(
    clock: ManualClock, deni: Deni, pair: tuple[Phone, Phone]
) -> None:
    """The session keeps no PIN, only a keyed proof that the current one was right, and when:
    as long as a session and its resume last (300 s), not longer."""
    lender, _ = pair
    lender.dial()
    lender.send("7", "1", "3591")
    clock.advance(timedelta(seconds=170))  # each hop keeps the session alive
    lender.send("8642")
    clock.advance(timedelta(seconds=170))
    assert "Please start again" in lender.send("8642")
    assert _pin_is(deni, lender, "3591")


def test_a_forged_proof_of_the_current_pin_changes_nothing(
    deni: Deni, pair: tuple[Phone, Phone]
) -> None:
    """Someone who can write the session store (but holds no server key) claims the current
    PIN was proven."""
    lender, _ = pair
    lender.dial()
    lender.send("7", "1", "0000")  # wrong: no proof
    assert "Wrong PIN" in lender.last or "wrong" in lender.last.lower()
    key = session_key(lender.session_id)
    now = deni.clock.now()
    state = json.loads(deni.sessions.get(key, now=now) or "{}")
    state["screen"] = "pin_new"
    state["data"] = {"pin_proven_at": now.isoformat(), "pin_proof": "0" * 64}
    deni.sessions.put(key, json.dumps(state), ttl_s=180, now=now)
    lender.send("8642")
    assert "Please start again" in lender.send("8642")
    assert _pin_is(deni, lender, "3591")
