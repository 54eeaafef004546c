"""Pull: pages, cursors (opaque, signed, per user, expiring), tombstones, full resync."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from deni.adapters.db.sync.tables import sync_changes
from deni.bootstrap import Deni, database_engine
from deni.services.sync import pull as sync_pull
from tests.fakes import ManualClock
from tests.support.api import assert_error, log_in_again
from tests.support.builders import api_user, fund
from tests.support.sync import PULL, Device, server_view


def _busy_user(client: TestClient, deni: Deni) -> tuple[Device, Device]:
    lender = api_user(client, deni, name="Lender Lee")
    borrower = api_user(client, deni, name="Borrower Bo")
    fund(deni, lender.user, 900_000)
    b, lnd = Device(client, borrower), Device(client, lender)
    for _ in range(6):
        loan_id = str(uuid.uuid4())
        b.queue_mutation(
            "request_loan",
            loan_id=loan_id,
            lender_phone=lender.user.phone,
            principal_cents=10_000,
            term_days=5,
        )
        lnd.queue_mutation("approve_loan", loan_id=loan_id, pin=lender.pin)
    b.push()
    lnd.push()
    return b, lnd


def test_small_pages_deliver_the_same_view_as_one_big_page(client: TestClient, deni: Deni) -> None:
    b, _ = _busy_user(client, deni)
    small = Device(client, b.who)
    small.pull(limit=1)
    b.pull(limit=1000)
    assert small.view == b.view == server_view(client, b.who)
    assert len(b.records("loan")) == 6
    assert b.balance() == 60_000


def test_incremental_pulls_bring_only_what_changed(client: TestClient, deni: Deni) -> None:
    b, _ = _busy_user(client, deni)
    b.pull()
    assert b.pull() == []  # nothing new
    loan_id = next(iter(b.records("loan")))
    b.queue_mutation("repay_loan", loan_id=loan_id, amount_cents=5_000)
    b.push()
    changes = b.pull()
    assert {c["entity"] for c in changes} == {
        "loan",
        "wallet",
        "transaction",
        "repayment",
        "notification",
    }
    assert b.view == server_view(client, b.who)
    assert b.last_mutation_id == 7


def test_a_cursor_of_another_user_tampered_or_too_old_asks_for_a_full_resync(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    b, lnd = _busy_user(client, deni)
    b.pull()
    lnd.pull()
    for cursor in (lnd.cursor, b.cursor[:-2] + "AA", "garbage", "a.b", "\u00e9.x"):  # type: ignore[index]
        params = {"client_id": b.client_id, "schema_version": 1, "cursor": cursor}
        page = client.get(PULL, params=params, headers=b.who.headers).json()
        assert page["reset"] is True
        assert all(c["entity"] != "user" or c["id"] == b.who.user.id for c in page["changes"]), (
            "another user's record leaked"
        )
    clock.advance(timedelta(days=31))
    log_in_again(deni, b.who)
    params = {"client_id": b.client_id, "schema_version": 1, "cursor": b.cursor}
    assert client.get(PULL, params=params, headers=b.who.headers).json()["reset"] is True
    before = dict(b.view)
    b.view[("loan", "stale-local-row")] = {"id": "stale"}
    b.pull()  # the device follows the reset: replacement sync
    assert ("loan", "stale-local-row") not in b.view
    assert set(b.view) == set(before)


def test_pull_errors(client: TestClient, deni: Deni) -> None:
    b, _ = _busy_user(client, deni)
    h = b.who.headers
    base: dict[str, Any] = {"client_id": b.client_id, "schema_version": 1}
    assert_error(
        client.get(PULL, params={**base, "schema_version": 0}, headers=h),
        426,
        "client_upgrade_required",
    )
    assert_error(
        client.get(PULL, params={**base, "limit": 1001}, headers=h), 422, "validation_failed"
    )
    assert_error(client.get(PULL, params={**base, "limit": 0}, headers=h), 422, "validation_failed")
    assert_error(
        client.get(PULL, params={"client_id": b.client_id}, headers=h), 422, "validation_failed"
    )
    assert_error(
        client.get(PULL, params={**base, "client_id": "nope"}, headers=h), 422, "invalid_client_id"
    )
    assert_error(client.get(PULL, params=base), 401, "unauthorized")
    assert_error(client.get(PULL, params={**base, "cursor": "x" * 2000}, headers=h), 422, "validation_failed")  # fmt: skip  # noqa: E501


def test_resolved_conflicts_come_as_tombstones(client: TestClient, deni: Deni) -> None:
    lender = api_user(client, deni, name="Lender Lee")
    borrower = api_user(client, deni, name="Borrower Bo")
    phone, tablet = Device(client, borrower), Device(client, borrower)
    loan_id = str(uuid.uuid4())
    phone.queue_mutation("request_loan", loan_id=loan_id, lender_phone=lender.user.phone, principal_cents=10_000, term_days=5)  # fmt: skip  # noqa: E501
    phone.push()
    tablet.pull()
    seen = tablet.loan(loan_id)["version"]
    phone.queue_mutation("edit_loan_request", loan_id=loan_id, base_version=seen, fee_cents=100)
    tablet.queue_mutation("edit_loan_request", loan_id=loan_id, base_version=seen, fee_cents=200)
    phone.push()
    conflict_id = tablet.push()["results"][0]["conflict_id"]
    tablet.pull()
    assert conflict_id in tablet.records("conflict")
    tablet.queue_mutation("resolve_conflict", conflict_id=conflict_id, choice="server")
    tablet.push()
    changes = tablet.pull()
    assert {"entity": "conflict", "id": conflict_id, "op": "delete", "data": None} in changes
    assert tablet.loan(loan_id)["fee_cents"] == 100


def test_the_change_log_is_pruned_only_where_no_accepted_cursor_can_reach(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    """Rows older than the cursor horizon (plus a day) go; a device whose cursor is still
    accepted loses nothing, and one that was away longer gets a full resync."""
    away, _ = _busy_user(client, deni)  # old history, then the device goes quiet
    away.pull()
    clock.advance(timedelta(days=15))
    recent, recent_lender = _busy_user(client, deni)  # history half the horizon old
    recent.pull()
    old_rows, all_rows = _change_log_counts(deni, before=clock.now() - timedelta(days=14))
    assert 0 < old_rows < all_rows
    clock.advance(timedelta(days=16, minutes=1))  # the old history is now 31 days old
    assert (
        sync_pull.prune_change_log(
            deni,
        )
        == old_rows
    )
    assert _change_log_counts(deni, before=clock.now())[1] == all_rows - old_rows
    assert (
        sync_pull.prune_change_log(
            deni,
        )
        == 0
    )
    log_in_again(deni, recent.who)
    log_in_again(deni, recent_lender.who)
    before = dict(recent.view)
    recent_lender.queue_mutation("cancel_loan", loan_id=str(uuid.uuid4()))  # a new change
    recent_lender.push()
    assert recent.pull() is not None  # its cursor (16 days old) is still accepted
    assert set(recent.view) == set(before) == set(server_view(client, recent.who))
    log_in_again(deni, away.who)
    params = {"client_id": away.client_id, "schema_version": 1, "cursor": away.cursor}
    assert client.get(PULL, params=params, headers=away.who.headers).json()["reset"] is True


def _change_log_counts(deni: Deni, *, before: datetime) -> tuple[int, int]:
    c = sync_changes
    with database_engine(deni).connect() as connection:
        old = connection.execute(
            select(func.count()).select_from(c).where(c.c.created_at < before)
        ).scalar_one()
        total = connection.execute(select(func.count()).select_from(c)).scalar_one()
    return int(old), int(total)
