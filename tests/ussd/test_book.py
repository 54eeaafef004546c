"""*383# 5 3: my book as lender, then 1: my history as borrower, in English and Swahili, over
the scripted book of tests/support/book.py."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from tests.fakes import ManualClock
from tests.support.book import Book, build_book
from tests.support.ussd import Phone

from deni.bootstrap import Deni


def national(msisdn: str) -> str:
    return "0" + msisdn.removeprefix("254")


@pytest.fixture
def scripted(deni: Deni) -> Book:
    assert isinstance(deni.clock, ManualClock)
    return build_book(deni, deni.clock)


def test_a_lender_reads_the_book_then_the_history(client: TestClient, scripted: Book) -> None:
    wanjiku = Phone(client, national(scripted.wanjiku.phone))
    wanjiku.dial()
    wallet = wanjiku.send("5")
    assert "3 My book" in wallet
    book = wanjiku.send("3")
    assert book.startswith("CON ")
    assert "Lent KES 350\n" in book
    assert "Owed KES 205.50\n" in book  # B and C, penalties accrued to today
    assert "Repaid KES 165\n" in book
    assert "Fees KES 15\n" in book
    assert "Late 2: KES 205.50\n" in book
    assert "1 History" in book
    history = wanjiku.send("1")  # Wanjiku never borrowed
    assert "Borrowed KES 0\nRepaid KES 0\nOwed KES 0\nLoans 0, late now 0" in history
    # 0 goes back to the book, 00 to the main menu.
    assert "Lent KES 350" in wanjiku.send("0")


def test_a_borrower_reads_the_history_in_swahili(client: TestClient, scripted: Book) -> None:
    njeri = Phone(client, national(scripted.njeri.phone))  # Njeri chose Swahili
    njeri.dial()
    assert "3 Daftari langu" in njeri.send("5")
    book = njeri.send("3")
    assert "Ulikopesha KES 0\n" in book
    history = njeri.send("1")
    assert "Ulikopa KES 90\n" in history  # C and G; F was declined
    assert "Umelipa KES 10\n" in history
    assert "Unadaiwa KES 52.50\n" in history  # C with 5 days of penalty
    assert "Mikopo 2, imechelewa 1" in history


def test_a_second_lender_sees_only_their_own(client: TestClient, scripted: Book) -> None:
    kamau = Phone(client, national(scripted.kamau.phone))
    kamau.dial()
    book = kamau.send("5", "3")
    assert "Lent KES 420\n" in book
    assert "Owed KES 315\n" in book
    assert "Repaid KES 94\n" in book
    assert "Fees KES 6\n" in book
    assert "Late 0: KES 0\n" in book
