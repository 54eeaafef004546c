"""GET /api/v1/me/export: a person's own data, whole, and nobody else's beyond their loans."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from tests.support.api import (
    approve,
    assert_error,
    assert_ledger_whole,
    assert_nothing_written,
    balance,
    db_state,
    get_loan,
    request_loan,
)
from tests.support.builders import ApiUser, api_user, fund, registration_code

from deni.bootstrap import Deni
from deni.services import privacy
from deni.services.audit import verify_audit_log

EXPORT = "/api/v1/me/export"


def _export(client: TestClient, who: ApiUser) -> dict[str, Any]:
    response = client.get(EXPORT, headers=who.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    assert response.headers["cache-control"] == "no-store"
    data: dict[str, Any] = response.json()
    return data


def _repay(client: TestClient, borrower: ApiUser, loan_id: str, amount_cents: int) -> None:
    response = client.post(
        f"/api/v1/loans/{loan_id}/repay",
        json={"amount_cents": amount_cents, "pin": borrower.pin},
        headers=borrower.with_key(),
    )
    assert response.status_code == 200, response.text


def test_the_export_holds_the_whole_story_of_a_loan(client: TestClient, deni: Deni) -> None:
    borrower = api_user(client, deni, name="Achieng Otieno")
    lender = api_user(client, deni, name="Baraka Mwangi")
    fund(deni, lender.user, 200_000)
    loan = request_loan(client, borrower, lender)
    approve(client, lender, loan["id"])
    _repay(client, borrower, loan["id"], 40_000)

    data = _export(client, borrower)

    assert data["user"]["name"] == "Achieng Otieno"
    assert data["user"]["phone"] == borrower.user.phone
    [exported_loan] = data["loans"]
    assert exported_loan == get_loan(client, borrower, loan["id"])
    assert exported_loan["lender"]["name"] == "Baraka Mwangi"
    [repayment] = exported_loan["repayments"]
    assert repayment["amount_cents"] == 40_000
    statement = data["wallet"]["statement"]
    assert [line["amount_cents"] for line in statement] == [-40_000, 100_000]
    assert sum(line["amount_cents"] for line in statement) == data["wallet"]["balance_cents"]
    kinds = [n["kind"] for n in data["notifications"]]
    assert "loan_disbursed_mpesa" in kinds
    assert "repayment_made" in kinds
    commands = [row["command"] for row in data["audit"]]
    assert commands == ["register_user", "login", "request_loan", "repay_loan"]
    assert all(row["details"] is not None for row in data["audit"])


def test_the_export_holds_no_secret_and_no_one_elses_own_data(
    client: TestClient, deni: Deni
) -> None:
    borrower, lender = api_user(client, deni), api_user(client, deni)
    fund(deni, lender.user, 200_000)
    approve(client, lender, request_loan(client, borrower, lender)["id"])

    data = _export(client, borrower)
    text = str(data)

    with deni.uow.read_only() as uow:
        stored = uow.users.get(borrower.user.id)
    assert stored is not None
    assert stored.pin_hash not in text
    assert "pin_hash" not in text
    # The lender's side of the same loan (their wallet lines, their commands) stays theirs.
    assert all(row["command"] != "approve_loan" for row in data["audit"])
    lender_data = _export(client, lender)
    lender_commands = [row["command"] for row in lender_data["audit"]]
    assert lender_commands == ["register_user", "login", "approve_loan"]
    assert lender_data["wallet"]["balance_cents"] == 100_000


def test_a_new_member_gets_a_small_complete_export(client: TestClient, deni: Deni) -> None:
    member = api_user(client, deni)
    data = _export(client, member)
    assert data["wallet"] == {"balance_cents": 0, "balance": "KES 0", "statement": []}
    assert data["loans"] == []
    assert data["mpesa_requests"] == []
    assert data["mpesa_preferences"] == {"disburse_to_mpesa": True, "auto_payout": False}
    assert [row["command"] for row in data["audit"]] == ["register_user", "login"]


def test_the_export_needs_a_signed_in_person(client: TestClient) -> None:
    assert_error(client.get(EXPORT), 401, "unauthorized")


def test_a_statement_longer_than_one_page_comes_whole(client: TestClient, deni: Deni) -> None:
    member = api_user(client, deni)
    deposits = privacy.STATEMENT_PAGE_MAX + 3
    for n in range(deposits):
        fund(deni, member.user, 100 + n)
    statement = _export(client, member)["wallet"]["statement"]
    assert len(statement) == deposits
    assert [line["amount_cents"] for line in statement] == [
        100 + n for n in reversed(range(deposits))
    ]


def test_an_export_too_large_is_refused_with_a_clear_error(
    client: TestClient, deni: Deni, monkeypatch: pytest.MonkeyPatch
) -> None:
    member = api_user(client, deni)
    for _ in range(3):
        fund(deni, member.user, 100)
    monkeypatch.setattr(privacy, "SECTION_ITEMS_MAX", 2)
    assert_error(client.get(EXPORT, headers=member.headers), 422, "export_too_large")


CLOSE = "/api/v1/me/close"


def _close(client: TestClient, who: ApiUser, pin: str | None = None) -> httpx.Response:
    return client.post(CLOSE, json={"pin": pin or who.pin}, headers=who.headers)


def _repaid_loan(client: TestClient, deni: Deni, borrower: ApiUser, lender: ApiUser) -> str:
    """A whole loan, after which the borrower's wallet is empty again."""
    fund(deni, lender.user, 100_000)
    loan = request_loan(client, borrower, lender)  # 100,000 + 5,000 fee
    approve(client, lender, loan["id"])
    fund(deni, borrower.user, 5_000)
    _repay(client, borrower, loan["id"], 105_000)
    assert get_loan(client, borrower, loan["id"])["state"] == "repaid"
    return str(loan["id"])


def test_closing_erases_the_person_and_keeps_the_books(client: TestClient, deni: Deni) -> None:
    borrower = api_user(client, deni, name="Achieng Otieno")
    lender = api_user(client, deni, name="Baraka Mwangi")
    loan_id = _repaid_loan(client, deni, borrower, lender)
    phone = borrower.user.phone

    assert _close(client, borrower).status_code == 200

    with deni.uow.read_only() as uow:
        closed = uow.users.get(borrower.user.id)
        notes = uow.notifications.list_for(borrower.user.id, unread_only=False, limit=5, offset=0)
    assert closed is not None
    assert (closed.name, closed.pin_hash) == ("Closed account", "")
    assert closed.phone != phone
    assert not closed.phone.isdigit()
    assert notes == []
    # Gone for its owner: no login, and the session it closed from ended with it.
    login = client.post("/api/v1/auth/login", json={"phone": phone, "pin": borrower.pin})
    assert_error(login, 401, "wrong_credentials")
    assert_error(client.get("/api/v1/me", headers=borrower.headers), 401, "session_ended")
    assert_error(client.get(EXPORT, headers=borrower.headers), 401, "session_ended")
    assert_error(_close(client, borrower), 401, "session_ended")
    # The lender keeps the loan, the money and its history; the borrower is nobody now.
    kept = get_loan(client, lender, loan_id)
    assert kept["borrower"] == {"name": "Closed account", "phone": ""}
    assert kept["state"] == "repaid"
    assert balance(client, lender) == 105_000
    assert_ledger_whole(deni)
    assert (
        verify_audit_log(
            deni,
        ).problems
        == []
    )
    # The number is free: its owner (or whoever has it next) can join again, from nothing.
    body = {"phone": phone, "name": "Achieng O.", "pin": "2468"}
    code = registration_code(deni, phone)
    again = client.post("/api/v1/auth/register", json={**body, "code": code})
    assert again.status_code == 201, again.text
    assert again.json()["id"] != borrower.user.id


def test_an_account_with_money_or_an_open_loan_cannot_close(client: TestClient, deni: Deni) -> None:
    borrower, lender = api_user(client, deni), api_user(client, deni)
    fund(deni, lender.user, 100_000)
    before = db_state(deni)
    assert_error(_close(client, lender), 409, "wallet_not_empty")
    assert_nothing_written(deni, before)

    loan = request_loan(client, borrower, lender)
    assert_error(_close(client, borrower), 409, "open_loans")  # asked, not yet answered
    cancel = f"/api/v1/loans/{loan['id']}/cancel"
    assert client.post(cancel, json={}, headers=borrower.with_key()).status_code == 200
    assert _close(client, borrower).status_code == 200


def test_closing_needs_the_pin(client: TestClient, deni: Deni) -> None:
    member = api_user(client, deni, pin="3591")
    assert_error(_close(client, member, pin="9999"), 401, "wrong_pin")
    assert client.get("/api/v1/me", headers=member.headers).status_code == 200
