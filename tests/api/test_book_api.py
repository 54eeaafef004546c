"""GET /me/book and /me/history: each member's own book, over the scripted book of
tests/support/book.py, and nobody else's."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.fakes import ManualClock
from tests.support.api import assert_error
from tests.support.book import (
    HISTORY,
    KAMAU_TOTALS,
    PIN,
    WANJIKU_BORROWERS,
    WANJIKU_TOTALS,
    Book,
    build_book,
)

from deni.bootstrap import Deni
from deni.domain.phone import mask_msisdn
from deni.domain.users import User

BOOK = "/api/v1/me/book"
HISTORY_PATH = "/api/v1/me/history"


@pytest.fixture
def scripted(deni: Deni) -> Book:
    assert isinstance(deni.clock, ManualClock)
    return build_book(deni, deni.clock)


def _headers(client: TestClient, user: User) -> dict[str, str]:
    login = client.post("/api/v1/auth/login", json={"phone": user.phone, "pin": PIN})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def _get(client: TestClient, path: str, user: User, **params: Any) -> dict[str, Any]:
    response = client.get(path, params=params, headers=_headers(client, user))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_a_lenders_book_in_all_and_by_borrower(client: TestClient, scripted: Book) -> None:
    answer = _get(client, BOOK, scripted.wanjiku)
    assert answer["as_of"] == "2026-12-06"
    assert answer["totals"] == WANJIKU_TOTALS
    assert answer["borrowers_count"] == 3
    assert answer["next_offset"] is None
    assert [
        (
            b["name"],
            b["figures"]["loans_count"],
            b["figures"]["lent_cents"],
            b["figures"]["outstanding_cents"],
            b["figures"]["repaid_cents"],
            b["figures"]["overdue_cents"],
        )
        for b in answer["borrowers"]
    ] == WANJIKU_BORROWERS
    akinyi = answer["borrowers"][0]
    assert akinyi["phone_masked"] == mask_msisdn(scripted.akinyi.phone)
    assert akinyi["figures"]["overdue_count"] == 1
    # No whole number of anyone in the book.
    for member in (scripted.otieno, scripted.akinyi, scripted.njeri):
        assert member.phone not in str(answer)
    assert _get(client, BOOK, scripted.kamau)["totals"] == KAMAU_TOTALS


def test_the_borrowers_come_a_page_at_a_time(client: TestClient, scripted: Book) -> None:
    first = _get(client, BOOK, scripted.wanjiku, limit=2)
    assert [b["name"] for b in first["borrowers"]] == ["Akinyi Atieno", "Njeri Wambui"]
    assert first["next_offset"] == 2
    assert first["totals"] == WANJIKU_TOTALS  # the totals cover every page
    rest = _get(client, BOOK, scripted.wanjiku, limit=2, offset=2)
    assert [b["name"] for b in rest["borrowers"]] == ["Otieno Odhiambo"]
    assert rest["next_offset"] is None


def test_a_borrowers_history(client: TestClient, scripted: Book) -> None:
    by_id = {loan.id: name for name, loan in scripted.loans.items()}
    for who, ((borrowed, repaid, outstanding), lines) in HISTORY.items():
        answer = _get(client, HISTORY_PATH, getattr(scripted, who))
        assert (
            answer["borrowed_cents"],
            answer["repaid_cents"],
            answer["outstanding_cents"],
        ) == (borrowed, repaid, outstanding), who
        assert [
            (
                by_id[loan["id"]],
                loan["state"],
                loan["punctuality"],
                loan["repaid_cents"],
                loan["outstanding_cents"],
            )
            for loan in answer["loans"]
        ] == lines, who
    akinyi = _get(client, HISTORY_PATH, scripted.akinyi)
    late = akinyi["loans"][1]
    assert late["lender"] == {
        "name": "Wanjiku Kamau",
        "phone": mask_msisdn(scripted.wanjiku.phone),
    }
    assert (late["overdue"], late["days_overdue"], late["penalty_charged_cents"]) == (True, 3, 300)
    assert late["due_date"] == "2026-12-03"
    assert late["disbursed_at"] is not None
    assert late["closed_at"] is None
    repaid_late = akinyi["loans"][0]
    assert repaid_late["closed_at"].startswith("2026-11-30")


def test_each_member_sees_only_their_own(client: TestClient, scripted: Book) -> None:
    # A borrower has no lender's book; a lender no history as borrower.
    otieno = _get(client, BOOK, scripted.otieno)
    assert otieno["borrowers"] == []
    assert otieno["totals"] == dict.fromkeys(WANJIKU_TOTALS, 0)
    wanjiku = _get(client, HISTORY_PATH, scripted.wanjiku)
    assert wanjiku["loans"] == []
    assert wanjiku["borrowed_cents"] == 0
    # Kamau's book names his borrowers, never Wanjiku's.
    kamau = _get(client, BOOK, scripted.kamau)
    assert {b["borrower_id"] for b in kamau["borrowers"]} == {
        scripted.otieno.id,
        scripted.akinyi.id,
        scripted.njeri.id,
    }
    assert scripted.wanjiku.id not in str(kamau)
    # Nothing names another member: there is no parameter for it.
    smuggled = client.get(
        BOOK,
        params={"user_id": scripted.wanjiku.id},
        headers=_headers(client, scripted.kamau),
    )
    assert smuggled.json()["totals"] == KAMAU_TOTALS


def test_signed_in_members_only(client: TestClient) -> None:
    for path in (BOOK, HISTORY_PATH):
        assert_error(client.get(path), 401, "unauthorized")
        bad = client.get(path, headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"offset": -1}])
def test_pages_are_bounded(client: TestClient, scripted: Book, params: dict[str, int]) -> None:
    headers = _headers(client, scripted.wanjiku)
    for path in (BOOK, HISTORY_PATH):
        assert_error(client.get(path, params=params, headers=headers), 422, "validation_failed")
