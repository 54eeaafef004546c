"""Partitions: offline devices making conflicting moves, then everyone syncs.

After all sync: every device shows the server's state, money is neither created nor lost,
and each user got a sync_rejected notification for every action of theirs that was refused.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from fastapi.testclient import TestClient

from deni.bootstrap import Deni
from tests.support.api import assert_ledger_whole
from tests.support.builders import ApiUser, api_user, fund
from tests.support.sync import Device, server_view

FUNDED_CENTS = 500_000


@dataclass
class World:
    lender: ApiUser
    borrower: ApiUser
    phone_a: Device  # the lender's two phones
    phone_b: Device
    borrower_phone: Device
    borrower_tablet: Device

    @property
    def devices(self) -> list[Device]:
        return [self.phone_a, self.phone_b, self.borrower_phone, self.borrower_tablet]

    def everyone_syncs(self) -> None:
        for device in self.devices:
            device.sync()
        for device in self.devices:  # a second round brings what the others pushed
            device.pull()

    def check_converged(self, client: TestClient, deni: Deni) -> None:
        for device in self.devices:
            assert device.queue == []
            assert device.view == server_view(client, device.who), device.client_id
        assert_ledger_whole(deni)
        total = sum(d.balance() for d in (self.phone_a, self.borrower_phone))
        assert total == FUNDED_CENTS  # no M-PESA here: money only moves between the two
        for who in (self.lender, self.borrower):
            rejected = sum(
                1
                for d in self.devices
                if d.who is who
                for r in d.results.values()
                if r["status"] == "rejected"
            )
            mine = next(d for d in self.devices if d.who is who)
            told = [
                n for n in mine.records("notification").values() if n["kind"] == "sync_rejected"
            ]
            assert len(told) == rejected


def _world(client: TestClient, deni: Deni) -> tuple[World, str]:
    lender = api_user(client, deni, name="Lender Lee")
    borrower = api_user(client, deni, name="Borrower Bo")
    fund(deni, lender.user, FUNDED_CENTS)
    world = World(
        lender,
        borrower,
        Device(client, lender),
        Device(client, lender),
        Device(client, borrower),
        Device(client, borrower),
    )
    loan_id = str(uuid.uuid4())
    world.borrower_phone.queue_mutation(
        "request_loan",
        loan_id=loan_id,
        lender_phone=lender.user.phone,
        principal_cents=100_000,
        fee_cents=10_000,
        term_days=7,
    )
    world.everyone_syncs()
    return world, loan_id


def test_cancel_vs_approve_borrower_first(client: TestClient, deni: Deni) -> None:
    w, loan_id = _world(client, deni)
    w.borrower_phone.queue_mutation("cancel_loan", loan_id=loan_id)
    w.phone_a.queue_mutation("approve_loan", loan_id=loan_id, pin=w.lender.pin)
    w.borrower_phone.push()
    assert w.phone_a.push()["results"][0]["code"] == "invalid_transition"
    w.everyone_syncs()
    assert w.phone_b.loan(loan_id)["state"] == "cancelled"
    w.check_converged(client, deni)


def test_cancel_vs_approve_lender_first(client: TestClient, deni: Deni) -> None:
    w, loan_id = _world(client, deni)
    w.borrower_phone.queue_mutation("cancel_loan", loan_id=loan_id)
    w.phone_a.queue_mutation("approve_loan", loan_id=loan_id, pin=w.lender.pin)
    w.phone_a.push()
    assert w.borrower_phone.push()["results"][0]["code"] == "invalid_transition"
    w.everyone_syncs()
    assert w.borrower_tablet.loan(loan_id)["state"] == "active"
    assert w.borrower_tablet.balance() == 100_000
    w.check_converged(client, deni)


def test_approve_twice_from_two_phones(client: TestClient, deni: Deni) -> None:
    w, loan_id = _world(client, deni)
    w.phone_a.queue_mutation("approve_loan", loan_id=loan_id, pin=w.lender.pin)
    w.phone_b.queue_mutation("approve_loan", loan_id=loan_id, pin=w.lender.pin)
    w.everyone_syncs()
    statuses = sorted(d.results[1]["status"] for d in (w.phone_a, w.phone_b))
    assert statuses == ["applied", "rejected"]
    assert w.phone_a.balance() == FUNDED_CENTS - 100_000  # the principal moved once
    w.check_converged(client, deni)


def test_repay_twice_and_more_than_owed(client: TestClient, deni: Deni) -> None:
    w, loan_id = _world(client, deni)
    w.phone_a.queue_mutation("approve_loan", loan_id=loan_id, pin=w.lender.pin)
    w.everyone_syncs()
    fund(deni, w.borrower.user, 200_000)  # enough to pay twice over
    w.everyone_syncs()
    owed = w.borrower_phone.loan(loan_id)["owed_cents"]
    assert owed == 110_000
    w.borrower_phone.queue_mutation("repay_loan", loan_id=loan_id, amount_cents=owed)
    w.borrower_tablet.queue_mutation("repay_loan", loan_id=loan_id, amount_cents=owed * 2)
    w.borrower_phone.push()
    second = w.borrower_tablet.push()["results"][-1]
    assert (second["status"], second["code"]) == ("rejected", "loan_not_active")
    w.everyone_syncs()
    assert w.borrower_phone.loan(loan_id)["state"] == "repaid"
    assert w.borrower_phone.balance() == 100_000 + 200_000 - 110_000
    # Money from outside (the borrower's top-up) is part of the total now.
    assert_ledger_whole(deni)
    assert w.phone_a.balance() + w.borrower_phone.balance() == FUNDED_CENTS + 200_000


def test_two_repayments_more_than_the_wallet_holds(client: TestClient, deni: Deni) -> None:
    w, loan_id = _world(client, deni)
    w.phone_a.queue_mutation("approve_loan", loan_id=loan_id, pin=w.lender.pin)
    w.everyone_syncs()
    # Offline, each device believes the wallet's 100,000 is there to spend.
    w.borrower_tablet.queue_mutation("repay_loan", loan_id=loan_id, amount_cents=10_000)
    w.borrower_phone.queue_mutation("repay_loan", loan_id=loan_id, amount_cents=100_000)
    w.everyone_syncs()  # the phone syncs before the tablet
    assert w.borrower_phone.results[2]["status"] == "applied"
    assert w.borrower_tablet.results[1]["code"] == "insufficient_funds"
    assert w.borrower_phone.loan(loan_id)["owed_cents"] == 10_000
    assert w.borrower_phone.balance() == 0
    w.check_converged(client, deni)
