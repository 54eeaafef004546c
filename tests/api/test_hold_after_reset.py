"""The day after a PIN reset, as a SIM-swap thief would use it: reset on USSD (the network is
the only proof), sign in with the new PIN, borrow from an accomplice at a fee as big as the
principal, and pay the accomplice back from the victim's wallet. Nothing may move until the
hold ends, whichever way the wallet is asked: REST, sync, USSD or Deni's own due-date sweep."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from tests.fakes import ManualClock
from tests.support.api import (
    approve,
    assert_error,
    balance,
    db_state,
    get_loan,
    log_in_again,
    request_loan,
)
from tests.support.builders import ApiUser, api_user, fund, wallet_cents
from tests.support.sync import Device
from tests.support.ussd import Phone

from deni.bootstrap import Deni
from deni.domain.errors import MoneyOnHold
from deni.domain.security import MONEY_HOLD_AFTER_RESET
from deni.services import loans

NEW_PIN = "9847"
SAVINGS_CENTS = 300_000
PRINCIPAL_CENTS = 100_000


def _thief_resets_on_ussd(client: TestClient, deni: Deni, victim: ApiUser) -> None:
    """Settings → Forgot PIN from the victim's SIM, then a sign-in with the new PIN."""
    sim = Phone(client, victim.user.phone)
    sim.dial()
    sim.send("7", "3", NEW_PIN, NEW_PIN)
    assert sim.ended
    assert "new PIN is set" in sim.last, sim.last
    login = client.post("/api/v1/auth/login", json={"phone": victim.user.phone, "pin": NEW_PIN})
    assert login.status_code == 200, login.text
    victim.pin = NEW_PIN
    victim.headers = {"Authorization": f"Bearer {login.json()['access_token']}"}


def _borrow_from_accomplice(
    client: TestClient, deni: Deni, victim: ApiUser, accomplice: ApiUser
) -> dict[str, object]:
    loan = request_loan(
        client, victim, accomplice, principal_cents=PRINCIPAL_CENTS, fee_cents=PRINCIPAL_CENTS
    )
    approve(client, accomplice, str(loan["id"]))
    return loan


def _repay(client: TestClient, victim: ApiUser, loan_id: str, amount_cents: int) -> object:
    return client.post(
        f"/api/v1/loans/{loan_id}/repay",
        json={"amount_cents": amount_cents, "pin": victim.pin},
        headers=victim.with_key(),
    )


def _world(client: TestClient, deni: Deni) -> tuple[ApiUser, ApiUser]:
    victim = api_user(client, deni, name="Victim")
    accomplice = api_user(client, deni, name="Accomplice")
    fund(deni, victim.user, SAVINGS_CENTS)
    fund(deni, accomplice.user, PRINCIPAL_CENTS)
    return victim, accomplice


def test_the_thiefs_loan_from_an_accomplice_cannot_be_repaid_from_the_wallet_in_the_hold(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    victim, accomplice = _world(client, deni)
    _thief_resets_on_ussd(client, deni, victim)
    loan = _borrow_from_accomplice(client, deni, victim, accomplice)
    loan_id = str(loan["id"])
    owed_cents = 2 * PRINCIPAL_CENTS
    victim_cents = SAVINGS_CENTS + PRINCIPAL_CENTS
    money_tables = ("journal_entries", "postings", "holds", "repayments")
    before = {name: db_state(deni)[name] for name in money_tables}

    # REST, with the new PIN.
    refusal = assert_error(_repay(client, victim, loan_id, owed_cents), 423, "money_on_hold")
    assert "Nairobi time" in refusal["message"]
    # Sync, the way the apps repay.
    device = Device(client, victim)
    device.queue_mutation("repay_loan", loan_id=loan_id, amount_cents=owed_cents)
    [result] = device.push()["results"]
    assert (result["status"], result["code"]) == ("rejected", "money_on_hold"), result
    # USSD: 2 My loans → 1 Loans I owe → the loan → 1 from the wallet, the amount, the PIN.
    sim = Phone(client, victim.user.phone)
    sim.dial()
    sim.send("2", "1", "1", "1", str(owed_cents // 100), NEW_PIN)
    assert "PIN was reset" in sim.last, sim.last
    # Deni's own due-date repayment from the wallet.
    clock.advance(timedelta(hours=23))
    try:
        loans.repay_loan_by_system(
            deni,
            borrower_id=victim.user.id,
            loan_id=loan_id,
            amount_cents=owed_cents,
            idempotency_key="auto_repay:attack",
            channel="system",
        )
    except MoneyOnHold:
        pass
    else:
        raise AssertionError("the system repaid from a held wallet")

    assert wallet_cents(deni, victim.user) == victim_cents
    assert wallet_cents(deni, accomplice.user) == 0
    log_in_again(deni, victim)
    assert get_loan(client, victim, loan_id)["state"] == "active"
    assert {name: db_state(deni)[name] for name in money_tables} == before

    # Once the hold is over, the wallet pays like any other day.
    clock.advance(MONEY_HOLD_AFTER_RESET)
    log_in_again(deni, victim)
    paid = _repay(client, victim, loan_id, owed_cents)
    assert paid.status_code == 200, paid.text  # type: ignore[attr-defined]
    assert balance(client, victim) == victim_cents - owed_cents


def test_money_from_mpesa_still_repays_in_the_hold(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    """An STK push is paid from M-PESA with the M-PESA PIN, not from the held wallet."""
    victim, accomplice = _world(client, deni)
    _thief_resets_on_ussd(client, deni, victim)
    loan_id = str(_borrow_from_accomplice(client, deni, victim, accomplice)["id"])
    fund(deni, victim.user, 50_000)  # the push's money arriving
    loans.repay_loan_by_system(
        deni,
        borrower_id=victim.user.id,
        loan_id=loan_id,
        amount_cents=50_000,
        idempotency_key="stk:paid",
        channel="mpesa",
    )
    assert wallet_cents(deni, accomplice.user) == 50_000


def test_a_lender_in_the_hold_cannot_write_a_debt_off(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    """Writing off gives up money owed to the wallet: the thief could forgive an accomplice."""
    lender, borrower = _world(client, deni)
    loan_id = str(request_loan(client, borrower, lender)["id"])
    approve(client, lender, loan_id)
    _thief_resets_on_ussd(client, deni, lender)

    held = client.post(
        f"/api/v1/loans/{loan_id}/write-off", json={"pin": NEW_PIN}, headers=lender.with_key()
    )
    assert_error(held, 423, "money_on_hold")
    assert get_loan(client, lender, loan_id)["state"] == "active"

    clock.advance(MONEY_HOLD_AFTER_RESET)
    log_in_again(deni, lender)
    done = client.post(
        f"/api/v1/loans/{loan_id}/write-off", json={"pin": NEW_PIN}, headers=lender.with_key()
    )
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "written_off"
