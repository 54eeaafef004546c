"""The background sweep inside `deni serve`: runs on its own, survives a failing run."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from tests.support.builders import fund, register
from tests.support.waiting import wait_until

from deni.adapters.sms import DatabaseSmsOutbox
from deni.bootstrap import Deni
from deni.bootstrap.housekeeping import Housekeeper
from deni.domain.loans import LoanState
from deni.entrypoints.api.app import create_app
from deni.services import loans, reminders, sms


def _stale_request(deni: Deni) -> str:
    lender, borrower = register(deni, name="Lender"), register(deni, name="Borrower")
    loan = loans.request_loan(
        deni,
        borrower_id=borrower.id,
        lender_phone=lender.phone,
        principal_cents=10_000,
        term_days=30,
    )
    deni.clock.advance(timedelta(days=8))  # past the 7-day answer window
    return loan.id


def _state(deni: Deni, loan_id: str) -> LoanState:
    with deni.uow.read_only() as uow:
        loan = uow.loans.get(loan_id)
    assert loan is not None
    return loan.state


def test_the_app_runs_the_sweep_in_the_background(deni: Deni) -> None:
    loan_id = _stale_request(deni)
    deni.settings.sweep_interval_s = 0.05
    with TestClient(create_app(deni)):
        wait_until(
            lambda: _state(deni, loan_id) is LoanState.EXPIRED,
            what="the background sweep to expire the stale request",
        )


def test_a_failing_sweep_is_survived_and_the_next_one_does_the_work(
    deni: Deni, monkeypatch: pytest.MonkeyPatch
) -> None:
    loan_id = _stale_request(deni)
    keeper = Housekeeper(deni, interval_s=60)
    real_sweep = reminders.sweep

    def broken_sweep(**kwargs: object) -> reminders.SweepReport:
        raise RuntimeError("database went away")

    monkeypatch.setattr(reminders, "sweep", broken_sweep)
    assert keeper.run_once() is None
    assert _state(deni, loan_id) is LoanState.REQUESTED
    monkeypatch.setattr(reminders, "sweep", real_sweep)
    report = keeper.run_once()
    assert report is not None
    assert report.expired == 1
    assert _state(deni, loan_id) is LoanState.EXPIRED


def test_the_app_delivers_pending_sms_in_the_background(deni: Deni) -> None:
    register(deni, name="Lender")
    borrower = register(deni, name="Borrower")
    fund(deni, borrower, 2_500)  # a wallet_credited notification, waiting for its SMS
    assert isinstance(deni.sms, DatabaseSmsOutbox)
    assert deni.sms.messages(phone=borrower.phone) == []
    deni.settings.sms_interval_s = 0.05
    with TestClient(create_app(deni)):
        wait_until(
            lambda: deni.sms.messages(phone=borrower.phone),
            what="the background SMS run to send the wallet_credited message",
        )
    [message] = deni.sms.messages(phone=borrower.phone)
    assert "KES 25" in message.body


def test_a_failing_sms_run_is_survived(deni: Deni, monkeypatch: pytest.MonkeyPatch) -> None:
    keeper = Housekeeper(deni, interval_s=0, sms_interval_s=60)

    def broken(**kwargs: object) -> sms.SmsReport:
        raise RuntimeError("gateway down")

    monkeypatch.setattr(sms, "send_pending_sms", broken)
    assert keeper.deliver_sms() is None
