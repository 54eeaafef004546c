"""The wallet: balance and statement (newest first, cursor pagination), each user only their own."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.support.api import approve, assert_error, request_loan
from tests.support.builders import ApiUser, api_user, fund

from deni.bootstrap import Deni

WALLET = "/api/v1/wallet"
STATEMENT = "/api/v1/wallet/statement"


def _page(client: TestClient, who: ApiUser, **params: object) -> dict[str, Any]:
    response = client.get(STATEMENT, params=params, headers=who.headers)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def test_a_new_wallet_is_empty(client: TestClient, deni: Deni) -> None:
    owner = api_user(client, deni)
    assert client.get(WALLET, headers=owner.headers).json() == {
        "balance_cents": 0,
        "balance": "KES 0",
        "arriving_cents": 0,
    }
    assert _page(client, owner) == {
        "balance_cents": 0,
        "lines": [],
        "next_cursor": None,
        "arriving": [],
    }


def test_balance_shows_cents_and_shillings(client: TestClient, deni: Deni) -> None:
    owner = api_user(client, deni)
    fund(deni, owner.user, 125_050)
    assert client.get(WALLET, headers=owner.headers).json() == {
        "balance_cents": 125_050,
        "balance": "KES 1,250.50",
        "arriving_cents": 0,
    }
    me = client.get("/api/v1/me", headers=owner.headers).json()
    assert me["balance_cents"] == 125_050
    assert me["balance"] == "KES 1,250.50"


def test_statement_pages_newest_first_with_a_cursor(client: TestClient, deni: Deni) -> None:
    owner = api_user(client, deni)
    for amount in (100, 200, 300, 400, 500):
        fund(deni, owner.user, amount)

    first = _page(client, owner, limit=2)
    assert first["balance_cents"] == 1_500
    assert [line["amount_cents"] for line in first["lines"]] == [500, 400]
    assert [line["balance_after_cents"] for line in first["lines"]] == [1_500, 1_000]
    assert first["next_cursor"] == first["lines"][-1]["id"]

    second = _page(client, owner, limit=2, cursor=first["next_cursor"])
    assert [line["amount_cents"] for line in second["lines"]] == [300, 200]
    assert [line["balance_after_cents"] for line in second["lines"]] == [600, 300]
    assert second["next_cursor"] is not None

    last = _page(client, owner, limit=2, cursor=second["next_cursor"])
    assert [line["amount_cents"] for line in last["lines"]] == [100]
    assert last["next_cursor"] is None

    ids = [line["id"] for page in (first, second, last) for line in page["lines"]]
    assert ids == sorted(ids, reverse=True)
    assert len(set(ids)) == 5
    assert {line["kind"] for page in (first, second, last) for line in page["lines"]} == {"deposit"}
    whole = _page(client, owner, limit=100)
    assert [line["id"] for line in whole["lines"]] == ids
    assert whole["next_cursor"] is None


def test_statement_has_no_next_cursor_when_the_last_page_is_exactly_full(
    client: TestClient, deni: Deni
) -> None:
    owner = api_user(client, deni)
    for amount in (100, 200, 300, 400):
        fund(deni, owner.user, amount)
    first = _page(client, owner, limit=2)
    second = _page(client, owner, limit=2, cursor=first["next_cursor"])
    assert [line["amount_cents"] for line in second["lines"]] == [200, 100]
    assert second["next_cursor"] is None


def test_statement_shows_loan_movements_with_the_loan_and_its_code(
    client: TestClient, deni: Deni
) -> None:
    lender = api_user(client, deni, name="Wanjiku")
    borrower = api_user(client, deni, name="Otieno")
    fund(deni, lender.user, 300_000)
    loan = request_loan(client, borrower, lender)
    approve(client, lender, loan["id"])
    repaid = client.post(
        f"/api/v1/loans/{loan['id']}/repay",
        json={"amount_cents": 40_000, "pin": borrower.pin},
        headers=borrower.with_key(),
    )
    assert repaid.status_code == 200, repaid.text

    borrower_lines = _page(client, borrower)["lines"]
    assert [line["amount_cents"] for line in borrower_lines] == [-40_000, 100_000]
    assert [line["balance_after_cents"] for line in borrower_lines] == [60_000, 100_000]
    assert all(line["loan_id"] == loan["id"] for line in borrower_lines)
    assert all(line["reference"] == loan["code"] for line in borrower_lines)
    assert [line["kind"] for line in borrower_lines] == ["loan_repayment", "loan_disbursement"]

    lender_lines = _page(client, lender)["lines"]
    assert [line["amount_cents"] for line in lender_lines] == [40_000, -100_000, 300_000]
    assert lender_lines[2]["loan_id"] is None  # the M-PESA deposit is no loan's
    # Each side of the same journal entry shows up in each wallet.
    assert lender_lines[0]["entry_id"] == borrower_lines[0]["entry_id"]


def test_each_user_sees_only_their_own_wallet(client: TestClient, deni: Deni) -> None:
    rich = api_user(client, deni, name="Rich")
    poor = api_user(client, deni, name="Poor")
    fund(deni, poor.user, 100)
    fund(deni, rich.user, 99_900)
    assert client.get(WALLET, headers=poor.headers).json()["balance_cents"] == 100
    assert [line["amount_cents"] for line in _page(client, poor)["lines"]] == [100]
    # A cursor is only a position: it never lets anyone read another wallet's lines.
    rich_line = _page(client, rich)["lines"][0]
    assert rich_line["amount_cents"] == 99_900
    after_rich = _page(client, poor, cursor=rich_line["id"] + 1)
    assert [line["amount_cents"] for line in after_rich["lines"]] == [100]
    assert after_rich["balance_cents"] == 100


def test_wallet_needs_a_login(client: TestClient) -> None:
    assert_error(client.get(WALLET), 401, "unauthorized")
    assert_error(client.get(STATEMENT), 401, "unauthorized")


def test_statement_refuses_bad_paging(
    client: TestClient, deni: Deni, subtests: pytest.Subtests
) -> None:
    owner = api_user(client, deni)
    cases: list[dict[str, object]] = [
        {"limit": 0},
        {"limit": 101},
        {"limit": -1},
        {"limit": "ten"},
        {"cursor": 0},
        {"cursor": -5},
        {"cursor": "abc"},
        {"cursor": 1.5},
        {"cursor": 2**63},  # beyond a 64-bit posting id: the database driver would overflow
        {"cursor": 10**20},
        {"limit": 10**20},
    ]
    for params in cases:
        with subtests.test(**params):
            response = client.get(STATEMENT, params=params, headers=owner.headers)
            assert_error(response, 422, "validation_failed")


def test_statement_cursor_beyond_every_posting_is_the_first_page(
    client: TestClient, deni: Deni
) -> None:
    owner = api_user(client, deni)
    fund(deni, owner.user, 700)
    page = _page(client, owner, cursor=2**63 - 1)
    assert [line["amount_cents"] for line in page["lines"]] == [700]
