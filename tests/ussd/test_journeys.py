"""Whole journeys through POST /ussd only, checked against the ledger."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.fakes import ManualClock
from tests.support.api import assert_ledger_whole
from tests.support.builders import next_phone, next_receipt
from tests.support.ussd import Phone, mpesa, register

from deni.adapters.db import tables
from deni.bootstrap import Deni, database_engine
from deni.domain.loans import LoanState
from deni.domain.security import MONEY_HOLD_AFTER_RESET
from deni.services import ledger, queries, users
from deni.services.mpesa import payments


def _user_id(deni: Deni, phone: Phone) -> str:
    with deni.uow.read_only() as uow:
        return users.find_by_phone(uow, phone.number).id


def _balance(deni: Deni, phone: Phone) -> int:
    with deni.uow.read_only() as uow:
        return ledger.wallet_balance_cents(uow, user_id=_user_id(deni, phone))


def _mpesa_confirms(deni: Deni, phone: Phone, amount_cents: int) -> None:
    """What the Daraja callback does once the STK push the session queued is paid."""
    payments.record_mpesa_payment(
        deni,
        user_id=_user_id(deni, phone),
        amount_cents=amount_cents,
        receipt=next_receipt(),
    )


def _only_loan(deni: Deni, phone: Phone, role: str) -> queries.LoanView:
    views = queries.list_loans(deni, user_id=_user_id(deni, phone), role=role)
    assert len(views) == 1
    return views[0]


def test_borrower_and_lender_from_registration_to_a_repaid_loan(
    client: TestClient, deni: Deni
) -> None:
    lender, borrower = Phone(client, next_phone()), Phone(client, next_phone())
    assert "you are registered" in register(lender, name="Jane Wanjiku", pin="4821")
    assert "umesajiliwa" in register(borrower, name="Otieno Omondi", pin="7391", language="2")

    # The lender tops up by M-PESA: the STK push is queued, and recorded once the session ends.
    lender.dial()
    assert "KES 5,000" in lender.send("5", "1", "5000")
    assert lender.ended
    (top_up,) = mpesa(deni).requests
    assert (top_up.kind, top_up.amount_cents) == ("top_up", 500_000)
    _mpesa_confirms(deni, lender, 500_000)

    # The borrower asks: lender, amount, days, fee; sees the cost of credit; confirms by PIN.
    borrower.dial()
    borrower.send("1", lender.number, "1000", "30", "50")
    assert "KES 1,050" in borrower.last
    assert "Weka PIN" in borrower.last
    assert "Ombi limetumwa" in borrower.send("7391")
    assert borrower.ended
    loan = _only_loan(deni, borrower, "borrower").loan
    assert loan.state is LoanState.REQUESTED

    # The lender approves with the PIN: the principal moves wallet to wallet.
    lender.dial()
    assert "Otieno" in lender.send("4")
    assert "KES 1,050" in lender.send("1")
    lender.send("1")
    assert "Approved" in lender.send("4821")
    assert _balance(deni, lender) == 400_000
    assert _balance(deni, borrower) == 100_000

    # Part from the wallet (PIN), part by M-PESA (queued STK push), the rest from the wallet.
    borrower.dial()
    borrower.send("2", "1", "1")  # My loans, Loans I owe, the loan
    assert "KES 1,050" in borrower.last
    borrower.send("1", "600")
    assert "Umelipa KES 600" in borrower.send("7391")
    borrower.dial()
    borrower.send("2", "1", "1", "2", "450")
    assert borrower.ended
    assert mpesa(deni).requests[-1].kind == "stk_repayment"
    assert mpesa(deni).requests[-1].amount_cents == 45_000
    _mpesa_confirms(deni, borrower, 45_000)
    borrower.dial()
    borrower.send("2", "1", "1", "1", "450")
    assert "umelipwa wote" in borrower.send("7391")

    view = _only_loan(deni, borrower, "borrower")
    assert view.loan.state is LoanState.REPAID
    assert _balance(deni, lender) == 400_000 + 105_000
    assert _balance(deni, borrower) == 100_000 - 105_000 + 45_000
    assert_ledger_whole(deni)

    # Both see it in their mini-statements; the lender has nothing left to chase.
    borrower.dial()
    statement = borrower.send("6")
    assert "Salio KES 400" in statement
    assert statement.count("\n") >= 4
    lender.dial()
    assert "Nothing here yet" in lender.send("3")


def test_lender_reminds_then_writes_off(client: TestClient, deni: Deni) -> None:
    lender, borrower = Phone(client, next_phone()), Phone(client, next_phone())
    register(lender, name="Akinyi Lender", pin="1357")
    register(borrower, name="Kamau Borrower", pin="2468")
    _mpesa_confirms(deni, lender, 200_000)
    borrower.dial()
    borrower.send("1", lender.number, "2000", "7", "0", "2468")
    lender.dial()
    lender.send("4", "1", "1", "1357")

    lender.dial()
    assert "Kamau" in lender.send("3")
    assert "KES 2,000" in lender.send("1")
    assert "Reminder sent" in lender.send("1")
    lender.dial()
    lender.send("3", "1", "1")
    assert "already sent a reminder" in lender.last
    assert not lender.ended
    lender.send("2")
    assert "Enter PIN" in lender.last
    assert "written off" in lender.send("1357")

    assert _only_loan(deni, borrower, "borrower").loan.state is LoanState.WRITTEN_OFF
    with database_engine(deni).connect() as connection:
        kinds = list(connection.execute(select(tables.notifications.c.kind)).scalars())
    assert "lender_reminder" in kinds
    assert "loan_written_off" in kinds
    assert_ledger_whole(deni)


def test_decline_withdraw_and_settings(client: TestClient, deni: Deni) -> None:
    lender, borrower = Phone(client, next_phone()), Phone(client, next_phone())
    register(lender, name="Wairimu", pin="7141")
    register(borrower, name="Mutua", pin="2724")
    borrower.dial()
    borrower.send("1", lender.number, "500", "10", "0", "2724")
    lender.dial()
    assert "Declined" in lender.send("4", "1", "2")
    assert _only_loan(deni, borrower, "borrower").loan.state is LoanState.DECLINED

    # Withdraw: only what the wallet holds, confirmed by PIN, queued for after END.
    _mpesa_confirms(deni, lender, 100_000)
    lender.dial()
    lender.send("5", "2", "5000")
    assert "KES 1,000" in lender.last  # refused: more than the wallet holds
    assert not lender.ended
    lender.send("700", "7141")
    assert lender.ended
    assert mpesa(deni).requests[-1].kind == "withdrawal"
    assert mpesa(deni).requests[-1].amount_cents == 70_000

    # Settings: change the PIN, then the language.
    lender.dial()
    lender.send("7", "1", "7141", "9497", "9497")
    assert "PIN is changed" in lender.last
    lender.dial()
    assert "Lugha sasa ni Kiswahili" in lender.send("7", "2", "2")
    with deni.uow.read_only() as uow:
        user = users.find_by_phone(uow, lender.number)
    assert user.language == "sw"
    assert deni.hasher.verify("9497", user.pin_hash)


def test_a_withdrawal_waits_a_day_after_a_pin_reset(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    member = Phone(client, next_phone())
    register(member, name="Njeri", pin="7141")
    _mpesa_confirms(deni, member, 100_000)
    with deni.uow() as uow:  # the SMS code proved the SIM; see tests/api/test_pin_reset_api.py
        user = users.find_by_phone(uow, member.number)
        user.reset_pin(deni.hasher.hash("2468"), clock.now())
        uow.users.save(user, clock.now())
        uow.commit()
    requests_before = len(mpesa(deni).requests)

    member.dial()
    member.send("5", "2", "500", "2468")
    assert "PIN was reset" in member.last
    assert not member.ended  # a reason on the same screen, not a dropped session
    assert len(mpesa(deni).requests) == requests_before

    clock.advance(MONEY_HOLD_AFTER_RESET)
    member.dial()
    member.send("5", "2", "500", "2468")
    assert member.ended
    assert mpesa(deni).requests[-1].kind == "withdrawal"


def test_a_forgotten_pin_is_replaced_from_the_phone_itself(client: TestClient, deni: Deni) -> None:
    member = Phone(client, next_phone())
    register(member, name="Kamau", pin="7141")
    _mpesa_confirms(deni, member, 100_000)
    member.dial()
    member.send("5", "2", "500", "9999", "9998", "9997")  # forgotten: three wrong tries
    assert member.ended  # locked

    member.dial()
    member.send("7", "3", "2468", "2469")
    assert "did not match" in member.last
    member.send("2468", "2468")
    assert member.ended
    assert "new PIN is set" in member.last

    with deni.uow.read_only() as uow:
        user = users.find_by_phone(uow, member.number)
        notices = uow.notifications.list_for(user.id, unread_only=False, limit=5, offset=0)
    assert deni.hasher.verify("2468", user.pin_hash)
    assert not user.is_locked(deni.clock.now())
    assert notices[0].kind == "pin_reset"  # the owner hears of it by SMS


def test_an_account_locked_by_customer_care_says_so_on_the_pin_screen(
    client: TestClient, deni: Deni
) -> None:
    member = Phone(client, next_phone())
    register(member, name="Wafula", pin="7141")
    _mpesa_confirms(deni, member, 100_000)
    users.set_support_lock(deni, phone=member.number, locked=True)
    requests_before = len(mpesa(deni).requests)

    member.dial()
    member.send("5", "2", "500", "7141")
    assert "Customer care locked" in member.last
    member.send("00", "7", "3", "2468", "2468")  # nor can the SIM reset the PIN
    assert "Customer care locked" in member.last
    assert len(mpesa(deni).requests) == requests_before


def test_an_account_is_closed_from_the_phone_once_it_holds_nothing(
    client: TestClient, deni: Deni
) -> None:
    keeper, leaver = Phone(client, next_phone()), Phone(client, next_phone())
    register(keeper, name="Chebet", pin="7141")
    register(leaver, name="Kiprop", pin="2724")
    _mpesa_confirms(deni, keeper, 100_000)

    keeper.dial()
    keeper.send("7", "4", "7141")
    assert "Withdraw your balance first" in keeper.last  # a reason, the session goes on
    assert not keeper.ended

    leaver.dial()
    leaver.send("7", "4", "2724")
    assert leaver.ended
    assert "account is closed" in leaver.last
    leaver.dial()
    assert "Welcome to Deni" in leaver.last  # the number is free to join again
