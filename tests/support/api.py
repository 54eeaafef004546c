"""Shared helpers for the API tests: loans through the HTTP API, and "nothing was written" checks.

`db_state` reads every row of every table, so comparing it before and after a refused request
proves the request wrote nothing at all (no loan, no ledger entry, no notification, no audit
row, no idempotency key left claimed).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from deni.adapters.db import tables
from deni.bootstrap import Deni, database_engine
from deni.services import ledger
from tests.support.builders import ApiUser

DbState = dict[str, list[tuple[Any, ...]]]


def db_state(deni: Deni, *, ignore: Iterable[str] = ()) -> DbState:
    """Every row of every table (sorted, so the order rows come back in does not matter)."""
    skipped = set(ignore)
    state: DbState = {}
    with database_engine(deni).connect() as connection:
        for table in tables.metadata.sorted_tables:
            if table.name in skipped:
                continue
            rows = [tuple(row) for row in connection.execute(select(table))]
            state[table.name] = sorted(rows, key=repr)
    return state


def assert_nothing_written(deni: Deni, before: DbState, *, ignore: Iterable[str] = ()) -> None:
    after = db_state(deni, ignore=ignore)
    changed = [name for name in before if before[name] != after.get(name)]
    assert not changed, f"tables written by a refused request: {changed}"


def assert_error(response: Any, status: int, code: str) -> dict[str, str]:
    """The response is the JSON error envelope with this status and code; returns the error."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert error["code"] == code, body
    assert isinstance(error["message"], str)
    assert error["message"]
    return dict(error)


def assert_ledger_whole(deni: Deni) -> None:
    with deni.uow.read_only() as uow:
        totals = ledger.check(uow)
    assert totals.postings_sum_cents == 0
    assert not totals.unbalanced_entry_ids
    assert not totals.mismatched_accounts
    assert not totals.negative_wallets


def balance(client: TestClient, who: ApiUser) -> int:
    response = client.get("/api/v1/wallet", headers=who.headers)
    assert response.status_code == 200, response.text
    value = response.json()["balance_cents"]
    assert isinstance(value, int)
    return value


def loan_body(lender: ApiUser, **overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "lender_phone": lender.user.phone,
        "principal_cents": 100_000,
        "fee_cents": 5_000,
        "term_days": 7,
    }
    body.update(overrides)
    return body


def request_loan(
    client: TestClient, borrower: ApiUser, lender: ApiUser, **overrides: object
) -> dict[str, Any]:
    response = client.post(
        "/api/v1/loans", json=loan_body(lender, **overrides), headers=borrower.with_key()
    )
    assert response.status_code == 201, response.text
    loan: dict[str, Any] = response.json()
    return loan


def approve(client: TestClient, lender: ApiUser, loan_id: str) -> dict[str, Any]:
    response = client.post(
        f"/api/v1/loans/{loan_id}/approve", json={"pin": lender.pin}, headers=lender.with_key()
    )
    assert response.status_code == 200, response.text
    loan: dict[str, Any] = response.json()
    return loan


def get_loan(client: TestClient, who: ApiUser, loan_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/loans/{loan_id}", headers=who.headers)
    assert response.status_code == 200, response.text
    loan: dict[str, Any] = response.json()
    return loan


def notifications(client: TestClient, who: ApiUser) -> list[dict[str, Any]]:
    response = client.get("/api/v1/notifications", params={"limit": 100}, headers=who.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["notifications"]
    return items


def log_in_again(deni: Deni, *users: ApiUser) -> None:
    """Fresh access tokens, after a test moved the clock past their 15 minutes or ended the
    sessions (a PIN reset): as signing in again would give."""
    for who in users:
        with deni.uow.read_only() as uow:
            current = uow.users.get(who.user.id)
        assert current is not None
        token, _ = deni.tokens.issue(
            user_id=who.user.id, now=deni.clock.now(), session_epoch=current.session_epoch
        )
        who.headers["Authorization"] = f"Bearer {token}"
