"""2 My loans, as borrower: my requests waiting for the lender (and cancelling one), past
loans a page at a time; where the loans I borrow go (7 Settings, with the PIN); and the
approval that says where the money went. In English and in Kiswahili."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from tests.fakes import ManualClock
from tests.support.builders import fund, next_phone
from tests.support.ussd import Phone, register

from deni.bootstrap import Deni
from deni.domain.loans import LoanState
from deni.domain.users import User
from deni.services import loans, queries, users

PIN = "3591"


def _user(deni: Deni, phone: Phone) -> User:
    with deni.uow.read_only() as uow:
        return users.find_by_phone(uow, phone.number)


def _ask(deni: Deni, borrower: Phone, lender: Phone, shillings: int) -> str:
    loan = loans.request_loan(
        deni,
        borrower_id=_user(deni, borrower).id,
        lender_phone=lender.number,
        principal_cents=shillings * 100,
        term_days=14,
    )
    return loan.id


def _pair(client: TestClient, *, language: str = "1") -> tuple[Phone, Phone]:
    lender, borrower = Phone(client, next_phone()), Phone(client, next_phone())
    register(lender, name="Otieno Lender", pin=PIN)
    register(borrower, name="Wanjiku Borrower", pin=PIN, language=language)
    return lender, borrower


def test_a_borrower_sees_and_cancels_a_waiting_request_in_english(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    lender, borrower = _pair(client)
    kept = _ask(deni, borrower, lender, 700)
    clock.advance(timedelta(minutes=1))
    cancelled = _ask(deni, borrower, lender, 1_500)
    borrower.dial()
    assert "2 My loans" in borrower.last
    assert "2 Waiting for the lender" in borrower.send("2")
    listed = borrower.send("2")
    assert "1 Otieno KES 1,500" in listed  # newest first
    assert "2 Otieno KES 700" in listed
    assert "Borrow KES 1,500" in borrower.send("1")
    confirm = borrower.send("1")
    assert "Cancel request" in confirm
    assert "1 Yes, cancel it" in confirm
    assert "0 Back" in confirm
    assert "Borrow KES 1,500" in borrower.send("0")  # changed their mind: nothing happened
    assert "can no longer approve" in borrower.send("1", "1")
    assert borrower.ended
    views = queries.list_loans(deni, user_id=_user(deni, borrower).id, role="borrower")
    states = {view.loan.id: view.loan.state for view in views}
    assert states == {kept: LoanState.REQUESTED, cancelled: LoanState.CANCELLED}
    # The lender no longer sees it.
    lender.dial()
    assert "KES 1,500" not in lender.send("4")
    assert "KES 700" in lender.last


def test_past_loans_a_page_at_a_time_in_kiswahili(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    lender, borrower = _pair(client, language="2")
    for shillings in (510, 520, 530, 540):
        loan_id = _ask(deni, borrower, lender, shillings)
        loans.cancel_loan(deni, borrower_id=_user(deni, borrower).id, loan_id=loan_id)
        clock.advance(timedelta(minutes=1))
    declined = _ask(deni, borrower, lender, 550)
    loans.decline_loan(deni, lender_id=_user(deni, lender).id, loan_id=declined)
    _ask(deni, borrower, lender, 560)  # still waiting: not past
    borrower.dial()
    assert "3 Mikopo iliyopita" in borrower.send("2")
    first = borrower.send("3")
    assert "1 Otieno KES 550 Imekataliwa" in first
    assert "2 Otieno KES 540 Imefutwa" in first
    assert "3 Otieno KES 530 Imefutwa" in first
    assert "98 Zaidi" in first
    assert "KES 560" not in first
    second = borrower.send("98")
    assert "1 Otieno KES 520 Imefutwa" in second
    assert "2 Otieno KES 510 Imefutwa" in second
    assert "98" not in second
    assert "KES 550" in borrower.send("0")  # back a page
    detail = borrower.send("1")
    assert "Mkopo DN" in detail
    assert "Imekataliwa" in detail


def test_where_loans_go_is_a_setting_with_the_pin_and_the_approval_says_where(
    client: TestClient, deni: Deni
) -> None:
    lender, borrower = _pair(client, language="2")
    fund(deni, _user(deni, lender), 500_000)

    # By default loans go on to M-PESA, and the approval says so.
    _ask(deni, borrower, lender, 1_000)
    lender.dial()
    lender.send("4", "1", "1")
    assert "on its way to Wanjiku Borrower's M-PESA" in lender.send(PIN)

    # The borrower keeps loans in the wallet from now on: the PIN is asked, and a wrong one
    # changes nothing.
    borrower.dial()
    assert "Mikopo unayokopa sasa inaenda M-PESA yako" in borrower.send("7", "5")
    assert "Weka PIN kuhifadhi" in borrower.send("2")
    assert "PIN si sahihi" in borrower.send("9999")
    assert "inaenda akaunti yako ya Deni" in borrower.send(PIN)
    assert borrower.ended
    borrower.dial()
    assert "sasa inaenda akaunti yako ya Deni" in borrower.send("7", "5")

    _ask(deni, borrower, lender, 2_000)
    lender.dial()
    lender.send("4", "1", "1")
    assert "has gone to Wanjiku Borrower's Deni wallet" in lender.send(PIN)
