"""Push: exactly once per (client, mutation id), gaps, replays, dead letters, errors."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from deni.bootstrap import Deni
from deni.services.sync import protocol
from deni.services.sync import pull as sync_pull
from tests.fakes import ManualClock
from tests.support.api import assert_error, assert_ledger_whole, log_in_again
from tests.support.builders import (
    ApiUser,
    api_user,
    fund,
    with_pin_chosen_before_the_weak_pin_rule,
)
from tests.support.sync import PUSH, STATUS, Device, push_raw


def _pair(client: TestClient, deni: Deni) -> tuple[ApiUser, ApiUser]:
    lender = api_user(client, deni, name="Lender Lee")
    borrower = api_user(client, deni, name="Borrower Bo")
    fund(deni, lender.user, 500_000)
    return lender, borrower


def _request(device: Device, lender: ApiUser, **overrides: Any) -> str:
    loan_id = str(uuid.uuid4())
    args = {"loan_id": loan_id, "lender_phone": lender.user.phone, "principal_cents": 100_000}
    device.queue_mutation("request_loan", **{**args, "term_days": 7, **overrides})
    return loan_id


def _kinds(device: Device) -> list[str]:
    return [n["kind"] for n in device.records("notification").values()]


def test_a_replayed_push_returns_the_stored_results_and_applies_nothing_twice(
    client: TestClient, deni: Deni
) -> None:
    lender, borrower = _pair(client, deni)
    b = Device(client, borrower)
    loan_id = _request(b, lender)
    first = b.push(drop_answer=True)  # the answer is lost on the way back
    again = b.push()
    assert [r["status"] for r in first["results"]] == ["applied"]
    assert again["results"][0]["replayed"] is True
    assert again["results"][0]["entity_id"] == loan_id
    lender_device = Device(client, lender)
    lender_device.queue_mutation("approve_loan", loan_id=loan_id, pin=lender.pin)
    lender_device.queue_mutation("repay_loan", loan_id=loan_id, amount_cents=1)  # not borrower
    lender_device.push(drop_answer=True)
    replay = lender_device.push()
    assert [r["replayed"] for r in replay["results"]] == [True, True]
    assert replay["results"][1]["status"] == "rejected"
    b.queue_mutation("repay_loan", loan_id=loan_id, amount_cents=40_000)
    b.push(drop_answer=True)
    b.push()
    b.pull()
    assert b.balance() == 60_000
    assert b.loan(loan_id)["owed_cents"] == 60_000
    assert_ledger_whole(deni)


def test_same_id_other_content_stops_the_batch(client: TestClient, deni: Deni) -> None:
    lender, borrower = _pair(client, deni)
    b = Device(client, borrower)
    _request(b, lender)
    b.push()
    other = [{"id": 1, "name": "cancel_loan", "args": {"loan_id": str(uuid.uuid4())}}]
    answer = push_raw(client, borrower, b.client_id, other).json()
    assert answer["results"] == []
    assert answer["stopped"]["code"] == "mutation_id_reused"
    assert answer["stopped"]["expected_mutation_id"] == 2


def test_a_replayed_approval_with_the_pin_typed_again_gets_the_stored_result(
    client: TestClient, deni: Deni
) -> None:
    lender, borrower = _pair(client, deni)
    b = Device(client, borrower)
    loan_id = _request(b, lender)
    b.push()
    approve = [{"id": 1, "name": "approve_loan", "args": {"loan_id": loan_id, "pin": lender.pin}}]
    lost = push_raw(client, lender, "3f1b6d2e-9a4c-4e1f-8b7a-0c2d4e6f8a1b", approve).json()
    assert lost["results"][0]["status"] == "applied"
    # The answer never arrived; the lender re-types the PIN (wrongly, this time) and re-sends.
    again = [{**approve[0], "args": {"loan_id": loan_id, "pin": "0000"}}]
    replay = push_raw(client, lender, "3f1b6d2e-9a4c-4e1f-8b7a-0c2d4e6f8a1b", again).json()
    assert replay["results"][0]["replayed"] is True
    assert replay["results"][0]["status"] == "applied"
    assert_ledger_whole(deni)


def test_a_gap_stops_the_batch_and_says_which_id_is_expected(
    client: TestClient, deni: Deni
) -> None:
    _, borrower = _pair(client, deni)
    b = Device(client, borrower)
    loan_id = str(uuid.uuid4())
    mutations = [
        {"id": 1, "name": "mark_notification_read", "args": {"notification_ids": ["x"]}},
        {"id": 3, "name": "cancel_loan", "args": {"loan_id": loan_id}},
    ]
    answer = push_raw(client, borrower, b.client_id, mutations).json()
    assert [r["mutation_id"] for r in answer["results"]] == [1]
    assert answer["stopped"]["code"] == "mutation_gap"
    assert answer["stopped"]["expected_mutation_id"] == 2
    assert answer["last_mutation_id"] == 1


def test_a_reordered_batch_is_applied_in_id_order(client: TestClient, deni: Deni) -> None:
    lender, borrower = _pair(client, deni)
    b = Device(client, borrower)
    loan_id = _request(b, lender)
    b.queue_mutation("cancel_loan", loan_id=loan_id)
    b.queue.reverse()
    answer = b.push()
    assert [(r["mutation_id"], r["status"]) for r in answer["results"]] == [
        (1, "applied"),
        (2, "applied"),
    ]
    b.pull()
    assert b.loan(loan_id)["state"] == "cancelled"


def test_invalid_intents_are_rejected_with_the_domain_code_and_a_notification(
    client: TestClient, deni: Deni
) -> None:
    lender, borrower = _pair(client, deni)
    b, l1 = Device(client, borrower), Device(client, lender)
    loan_id = _request(b, lender)
    b.push()
    l1.queue_mutation("approve_loan", loan_id=loan_id, pin=lender.pin)
    l1.queue_mutation("approve_loan", loan_id=loan_id, pin=lender.pin)  # approve twice
    l1.queue_mutation("repay_loan", loan_id=loan_id, amount_cents=10)  # not the borrower
    l1.queue_mutation("top_up", amount_cents=10_000)  # M-PESA is off in tests
    l1.queue_mutation("approve_loan", loan_id=str(uuid.uuid4()), pin=lender.pin)
    results = l1.push()["results"]
    assert [(r["status"], r["code"]) for r in results] == [
        ("applied", None),
        ("rejected", "invalid_transition"),
        ("rejected", "not_the_borrower"),
        ("rejected", "mpesa_off"),
        ("rejected", "loan_not_found"),
    ]
    assert all(r["resolution"] == "server_wins" for r in results[1:])
    l1.pull()
    assert _kinds(l1).count("sync_rejected") == 4
    assert_ledger_whole(deni)


def test_wrong_pin_is_rejected_and_counts(client: TestClient, deni: Deni) -> None:
    lender, borrower = _pair(client, deni)
    b, l1 = Device(client, borrower), Device(client, lender)
    loan_id = _request(b, lender)
    b.push()
    l1.queue_mutation("approve_loan", loan_id=loan_id, pin="0000")
    assert l1.push()["results"][0]["code"] == "wrong_pin"
    with deni.uow.read_only() as uow:
        user = uow.users.get(lender.user.id)
    assert user is not None
    assert user.session_failed_pin_attempts == 1  # a synced PIN is typed in a session, not USSD


def test_malformed_mutations_go_to_dead_letters_and_never_block(
    client: TestClient, deni: Deni
) -> None:
    lender, borrower = _pair(client, deni)
    b = Device(client, borrower)
    b.queue_mutation("teleport_money", amount_cents=5)
    b.queue_mutation("repay_loan", loan_id="x", amount_cents="100")
    b.queue_mutation("approve_loan", loan_id="x", pin="3591", extra=1)
    b.queue_mutation("cancel_loan")
    loan_id = _request(b, lender)
    answer = b.push()
    statuses = [(r["status"], r["code"]) for r in answer["results"]]
    assert statuses == [
        ("dead_letter", "unknown_mutation"),
        ("dead_letter", "invalid_args"),
        ("dead_letter", "invalid_args"),
        ("dead_letter", "invalid_args"),
        ("applied", None),
    ]
    assert answer["last_mutation_id"] == 5
    listed = client.get(
        "/api/v1/sync/dead-letters", params={"client_id": b.client_id}, headers=borrower.headers
    ).json()["dead_letters"]
    assert [d["name"] for d in listed] == [
        "teleport_money",
        "repay_loan",
        "approve_loan",
        "cancel_loan",
    ]
    assert listed[2]["args"]["pin"] == "***"
    status = client.get(STATUS, params={"client_id": b.client_id}, headers=borrower.headers)
    assert status.json()["pending_dead_letters"] == 4
    assert status.json()["last_mutation_id"] == 5
    # Retry the last one, corrected: it now cancels the loan.
    retry = client.post(
        f"/api/v1/sync/dead-letters/{listed[3]['id']}/retry",
        json={"args": {"loan_id": loan_id}},
        headers=borrower.headers,
    )
    assert retry.status_code == 200, retry.text
    assert retry.json()["result"]["status"] == "applied"
    assert retry.json()["dead_letter"]["state"] == "retried"
    again = client.post(
        f"/api/v1/sync/dead-letters/{listed[3]['id']}/retry", json={}, headers=borrower.headers
    )
    assert_error(again, 409, "dead_letter_closed")
    still_bad = client.post(
        f"/api/v1/sync/dead-letters/{listed[0]['id']}/retry", json={}, headers=borrower.headers
    )
    assert still_bad.json()["result"]["status"] == "dead_letter"
    assert still_bad.json()["dead_letter"]["state"] == "open"
    discarded = client.post(
        f"/api/v1/sync/dead-letters/{listed[0]['id']}/discard", headers=borrower.headers
    )
    assert discarded.json()["dead_letter"]["state"] == "discarded"
    foreign = client.post(
        f"/api/v1/sync/dead-letters/{listed[1]['id']}/retry", json={}, headers=lender.headers
    )
    assert_error(foreign, 404, "dead_letter_not_found")
    b.pull()
    assert b.loan(loan_id)["state"] == "cancelled"


def test_a_client_id_belongs_to_its_first_user(client: TestClient, deni: Deni) -> None:
    lender, borrower = _pair(client, deni)
    b = Device(client, borrower)
    b.pull()
    mutations = [{"id": 1, "name": "cancel_loan", "args": {"loan_id": "x"}}]
    assert_error(push_raw(client, lender, b.client_id, mutations), 403, "client_not_yours")
    params: dict[str, Any] = {"client_id": b.client_id, "schema_version": 1}
    pulled = client.get("/api/v1/sync/pull", params=params, headers=lender.headers)
    assert_error(pulled, 403, "client_not_yours")
    status = client.get(STATUS, params={"client_id": b.client_id}, headers=lender.headers)
    assert_error(status, 403, "client_not_yours")
    forged = push_raw(client, lender, "not-a-uuid", mutations)
    assert_error(forged, 422, "invalid_client_id")


def test_bad_envelopes_are_clear_errors_never_500(client: TestClient, deni: Deni) -> None:
    _, borrower = _pair(client, deni)
    cid = str(uuid.uuid4())
    h = borrower.headers
    ok = {"id": 1, "name": "x", "args": {}}
    cases: list[tuple[Any, int, str]] = [
        ({"client_id": cid, "schema_version": 0, "mutations": [ok]}, 426, "client_upgrade_required"),  # noqa: E501
        ({"client_id": cid, "schema_version": 1, "mutations": []}, 422, "validation_failed"),
        ({"client_id": cid, "schema_version": 1, "mutations": [ok] * 501}, 422, "validation_failed"),  # noqa: E501
        ({"client_id": cid, "schema_version": 1, "mutations": [{**ok, "id": 0}]}, 422, "validation_failed"),  # noqa: E501
        ({"client_id": cid, "schema_version": 1, "mutations": [{**ok, "id": "1"}]}, 422, "validation_failed"),  # noqa: E501
        ({"client_id": cid, "schema_version": 1, "mutations": [{**ok, "name": 5}]}, 422, "validation_failed"),  # noqa: E501
        ({"client_id": cid, "mutations": [ok]}, 422, "validation_failed"),
        ({"client_id": "\u0000", "schema_version": 1, "mutations": [ok]}, 422, "invalid_client_id"),
        ([1, 2], 422, "validation_failed"),
    ]  # fmt: skip
    for body, status, code in cases:
        assert_error(client.post(PUSH, json=body, headers=h), status, code)
    raw = {**h, "Content-Type": "application/json"}
    assert_error(client.post(PUSH, content=b"{nope", headers=raw), 400, "malformed_json")
    assert_error(client.post(PUSH, json=cases[0][0]), 401, "unauthorized")
    upgrade = client.post(PUSH, json=cases[0][0], headers=h).json()["error"]
    assert upgrade["min_client_schema_version"] == 1
    newer = {"client_id": cid, "schema_version": 7, "mutations": [ok]}
    assert client.post(PUSH, json=newer, headers=h).json()["results"][0]["status"] == "dead_letter"
    weird_args: list[Any] = [None, [], "x", 1.5, {"loan_id": {"a": 1}}, {"loan_id": "\u0000"}]
    mutations = [
        {"id": 2 + i, "name": "cancel_loan", "args": args} for i, args in enumerate(weird_args)
    ]
    body = {"client_id": cid, "schema_version": 1, "mutations": mutations}
    answer = client.post(PUSH, json=body, headers=h).json()
    assert {r["status"] for r in answer["results"]} == {"dead_letter"}


def test_profile_fields_are_last_writer_wins_per_field(client: TestClient, deni: Deni) -> None:
    _, borrower = _pair(client, deni)
    phone, tablet = Device(client, borrower), Device(client, borrower)
    phone.pull()
    tablet.pull()
    base = phone.records("user")[borrower.user.id]["version"]
    phone.queue_mutation("update_profile", base_version=base, name="Bo Phone")
    tablet.queue_mutation("update_profile", base_version=base, name="Bo Tablet")
    tablet.queue_mutation("update_profile", base_version=base, language="sw")
    assert phone.push()["results"][0]["status"] == "applied"
    results = tablet.push()["results"]
    assert (results[0]["status"], results[0]["resolution"]) == ("conflict", "last_writer_wins")
    assert results[1]["status"] == "applied"  # language: no one else changed it
    phone.pull()
    tablet.pull()
    me = phone.records("user")[borrower.user.id]
    assert (me["name"], me["language"]) == ("Bo Tablet", "sw")
    assert phone.view == tablet.view


def test_read_flags_and_preferences_are_client_wins(client: TestClient, deni: Deni) -> None:
    lender, borrower = _pair(client, deni)
    b = Device(client, borrower)
    _request(b, lender)
    b.push()
    l1, l2 = Device(client, lender), Device(client, lender)
    l1.pull()
    ids = list(l1.records("notification"))
    l1.queue_mutation("mark_notification_read", notification_ids=ids)
    l1.queue_mutation("set_preferences", auto_payout=True)
    l1.queue_mutation("set_preferences", auto_payout=False, disburse_to_mpesa=False)
    assert {r["status"] for r in l1.push()["results"]} == {"applied"}
    l2.pull()
    assert all(n["read_at"] for n in l2.records("notification").values())
    prefs = l2.records("preferences")[lender.user.id]
    assert prefs == {"disburse_to_mpesa": False, "auto_payout": False}


def test_two_offline_edits_of_a_request_become_a_manual_conflict(
    client: TestClient, deni: Deni
) -> None:
    lender, borrower = _pair(client, deni)
    phone, tablet = Device(client, borrower), Device(client, borrower)
    loan_id = _request(phone, lender)
    phone.push()
    phone.pull()
    tablet.pull()
    seen = tablet.loan(loan_id)["version"]
    phone.queue_mutation(
        "edit_loan_request", loan_id=loan_id, base_version=seen, principal_cents=120_000
    )
    tablet.queue_mutation("edit_loan_request", loan_id=loan_id, base_version=seen, principal_cents=90_000)  # fmt: skip  # noqa: E501
    assert phone.push()["results"][0]["status"] == "applied"
    result = tablet.push()["results"][0]
    assert (result["status"], result["resolution"]) == ("conflict", "manual")
    tablet.pull()
    conflict = tablet.records("conflict")[result["conflict_id"]]
    assert conflict["server_version"]["principal_cents"] == 120_000
    assert conflict["client_version"]["principal_cents"] == 90_000
    assert "sync_conflict" in _kinds(tablet)
    # The lender, who saw the old terms, cannot approve them blindly.
    l1 = Device(client, lender)
    l1.queue_mutation("approve_loan", loan_id=loan_id, pin=lender.pin, base_version=seen)
    assert l1.push()["results"][0]["code"] == "loan_changed"
    # The borrower keeps the tablet's version.
    tablet.queue_mutation("resolve_conflict", conflict_id=result["conflict_id"], choice="client")
    assert tablet.push()["results"][0]["status"] == "applied"
    tablet.pull()
    assert tablet.records("conflict") == {}
    assert tablet.loan(loan_id)["principal_cents"] == 90_000
    again = client.post(
        f"/api/v1/sync/conflicts/{result['conflict_id']}/resolve",
        json={"choice": "server"},
        headers=borrower.headers,
    )
    assert again.json()["result"]["code"] == "conflict_resolved"
    foreign = client.post(
        f"/api/v1/sync/conflicts/{result['conflict_id']}/resolve",
        json={"choice": "server"},
        headers=lender.headers,
    )
    assert_error(foreign, 404, "conflict_not_found")
    l1.pull()
    assert "loan_request_changed" in _kinds(l1)


def test_status_of_a_new_client(client: TestClient, deni: Deni) -> None:
    _, borrower = _pair(client, deni)
    cid = str(uuid.uuid4())
    body = client.get(STATUS, params={"client_id": cid}, headers=borrower.headers).json()
    assert body["registered"] is False
    assert body["last_mutation_id"] == 0
    assert body["server_schema_version"] == 1
    assert body["head_cursor"]


def test_results_older_than_the_retention_are_pruned_and_a_late_repush_hears_forgotten(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    """A device that never heard its answer for 90 days: the result is gone, the push still
    answers (no 500, nothing applied twice), and says so."""
    lender, borrower = _pair(client, deni)
    old = Device(client, borrower)
    loan_id = _request(old, lender)
    old.push(drop_answer=True)  # the answer never arrives
    clock.advance(protocol.MUTATION_RESULT_RETENTION - timedelta(days=1))
    log_in_again(deni, borrower, lender)
    recent = Device(client, lender)
    recent.queue_mutation("decline_loan", loan_id=str(uuid.uuid4()))  # kept: young enough
    recent.push(drop_answer=True)
    clock.advance(timedelta(days=1, minutes=1))
    assert (
        sync_pull.prune_mutation_results(
            deni,
        )
        == 1
    )
    assert (
        sync_pull.prune_mutation_results(
            deni,
        )
        == 0
    )
    log_in_again(deni, borrower, lender)
    late = old.push()
    assert late["results"] == [
        {
            "mutation_id": 1,
            "status": "forgotten",
            "code": "result_forgotten",
            "message": late["results"][0]["message"],
            "resolution": None,
            "entity_id": None,
            "conflict_id": None,
            "dead_letter_id": None,
            "replayed": True,
        }
    ]
    assert "90 days" in late["results"][0]["message"]
    old.pull()
    assert old.loan(loan_id)["state"] == "requested"  # requested once, the truth from the pull
    replay = recent.push()
    assert replay["results"][0]["replayed"] is True
    assert replay["results"][0]["status"] == "rejected"  # its stored result is still kept


def test_a_pin_chosen_before_the_weak_pin_rule_still_confirms_a_pushed_approval(
    client: TestClient, deni: Deni
) -> None:
    """Sync never sets a PIN (no mutation does), only checks one: the weak-PIN rule, which
    judges PINs being set, leaves it alone."""
    lender, borrower = _pair(client, deni)
    with_pin_chosen_before_the_weak_pin_rule(deni, lender.user, "1234")
    b, lender_device = Device(client, borrower), Device(client, lender)
    loan_id = _request(b, lender)
    b.push()
    lender_device.queue_mutation("approve_loan", loan_id=loan_id, pin="1234")
    [result] = lender_device.push()["results"]
    assert result["status"] == "applied", result
    assert_ledger_whole(deni)
