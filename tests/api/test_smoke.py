"""A whole loan through the API: request, approve, repay in full; the ledger stays whole."""

from __future__ import annotations

from fastapi.testclient import TestClient
from tests.support.builders import api_user, fund

from deni.bootstrap import Deni
from deni.services import ledger


def test_a_loan_from_request_to_repaid(client: TestClient, deni: Deni) -> None:
    lender = api_user(client, deni, name="Wanjiku")
    borrower = api_user(client, deni, name="Otieno")
    fund(deni, lender.user, 500_000)
    fund(deni, borrower.user, 10_000)
    body = {
        "lender_phone": lender.user.phone,
        "principal_cents": 100_000,
        "fee_cents": 5_000,
        "term_days": 7,
    }
    requested = client.post("/api/v1/loans", json=body, headers=borrower.with_key())
    assert requested.status_code == 201, requested.text
    loan_id = requested.json()["id"]
    approved = client.post(
        f"/api/v1/loans/{loan_id}/approve", json={"pin": "3591"}, headers=lender.with_key()
    )
    assert approved.json()["state"] == "active"
    repaid = client.post(
        f"/api/v1/loans/{loan_id}/repay",
        json={"amount_cents": 200_000, "pin": borrower.pin},
        headers=borrower.with_key(),
    )
    assert repaid.status_code == 200, repaid.text
    assert repaid.json()["loan"]["state"] == "repaid"
    assert repaid.json()["excess_cents"] == 95_000
    assert client.get("/api/v1/wallet", headers=borrower.headers).json()["balance_cents"] == 5_000
    assert client.get("/api/v1/wallet", headers=lender.headers).json()["balance_cents"] == 505_000
    with deni.uow.read_only() as uow:
        totals = ledger.check(uow)
    assert totals.postings_sum_cents == 0
    assert not totals.mismatched_accounts
