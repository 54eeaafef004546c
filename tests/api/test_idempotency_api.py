"""Idempotency-Key on every mutating POST: same key and body → the stored answer, once;
same key, other body → 409; no key → 422; a refused request leaves the key free."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.fakes import ManualClock
from tests.support.api import (
    approve,
    assert_error,
    assert_nothing_written,
    balance,
    db_state,
    get_loan,
    loan_body,
    log_in_again,
    request_loan,
)
from tests.support.builders import ApiUser, api_user, fund, registration_code

from deni.bootstrap import Deni
from deni.bootstrap.housekeeping import Housekeeper
from deni.domain.secrecy import is_secret_field
from deni.entrypoints.api.idempotency import (
    CLAIM_STALE_AFTER,
    request_fingerprint,
)
from deni.entrypoints.api.schemas import LoanRequestIn
from deni.services import idempotency
from deni.services.idempotency import ANSWER_RETENTION

LOANS = "/api/v1/loans"
REPLAYED = "Idempotent-Replayed"


def _with(who: ApiUser, idempotency_key: str) -> dict[str, str]:
    return {**who.headers, "Idempotency-Key": idempotency_key}


def _loan_count(deni: Deni) -> int:
    with deni.uow.read_only() as uow:
        return sum(uow.loans.count_by_state().values())


def _entries(deni: Deni) -> int:
    with deni.uow.read_only() as uow:
        return uow.ledger.totals().entries_checked


@pytest.fixture
def pair(client: TestClient, deni: Deni) -> tuple[ApiUser, ApiUser]:
    lender = api_user(client, deni, name="Lender")
    borrower = api_user(client, deni, name="Borrower")
    fund(deni, lender.user, 500_000)
    return lender, borrower


def test_a_repeated_request_gets_the_stored_answer_and_creates_one_loan(
    client: TestClient, deni: Deni, pair: tuple[ApiUser, ApiUser]
) -> None:
    lender, borrower = pair
    headers = _with(borrower, str(uuid.uuid4()))
    first = client.post(LOANS, json=loan_body(lender), headers=headers)
    assert first.status_code == 201, first.text
    assert REPLAYED not in first.headers
    before = db_state(deni)

    again = client.post(LOANS, json=loan_body(lender), headers=headers)
    assert again.status_code == 201
    assert again.headers[REPLAYED] == "true"
    assert again.content == first.content  # byte for byte
    assert_nothing_written(deni, before)
    assert _loan_count(deni) == 1
    requests = [
        n
        for n in client.get("/api/v1/notifications", headers=lender.headers).json()["notifications"]
        if n["kind"] == "loan_requested"
    ]
    assert len(requests) == 1  # the lender was asked once


def test_the_stored_answer_is_replayed_even_after_the_loan_moved_on(
    client: TestClient, deni: Deni, pair: tuple[ApiUser, ApiUser]
) -> None:
    lender, borrower = pair
    loan = request_loan(client, borrower, lender)
    headers = _with(lender, "approve-once")
    first = client.post(f"{LOANS}/{loan['id']}/approve", json={"pin": "3591"}, headers=headers)
    assert first.json()["state"] == "active"
    repaid = client.post(
        f"{LOANS}/{loan['id']}/repay",
        json={"amount_cents": 100_000, "pin": borrower.pin},
        headers=borrower.with_key(),
    )
    assert repaid.status_code == 200, repaid.text
    again = client.post(f"{LOANS}/{loan['id']}/approve", json={"pin": "3591"}, headers=headers)
    assert again.status_code == 200
    assert again.headers[REPLAYED] == "true"
    assert again.json() == first.json()  # the answer as it was, not a second approval
    assert balance(client, lender) == 500_000  # 1,000 lent, 1,000 of 1,050 repaid
    assert get_loan(client, lender, loan["id"])["owed"]["total_cents"] == 5_000


def test_a_repeated_repayment_moves_money_once(
    client: TestClient, deni: Deni, pair: tuple[ApiUser, ApiUser]
) -> None:
    lender, borrower = pair
    loan = request_loan(client, borrower, lender)
    approve(client, lender, loan["id"])
    headers = _with(borrower, str(uuid.uuid4()))
    url = f"{LOANS}/{loan['id']}/repay"
    first = client.post(url, json={"amount_cents": 30_000, "pin": borrower.pin}, headers=headers)
    assert first.status_code == 200, first.text
    entries = _entries(deni)
    for _ in range(3):
        again = client.post(
            url, json={"amount_cents": 30_000, "pin": borrower.pin}, headers=headers
        )
        assert again.headers[REPLAYED] == "true"
        assert again.content == first.content
    assert _entries(deni) == entries
    assert balance(client, borrower) == 70_000
    assert len(get_loan(client, borrower, loan["id"])["repayments"]) == 1


def test_the_same_key_with_another_body_conflicts_and_writes_nothing(
    client: TestClient, deni: Deni, pair: tuple[ApiUser, ApiUser]
) -> None:
    lender, borrower = pair
    headers = _with(borrower, "one-key")
    first = client.post(LOANS, json=loan_body(lender), headers=headers)
    assert first.status_code == 201
    before = db_state(deni)
    other = client.post(LOANS, json=loan_body(lender, principal_cents=200_000), headers=headers)
    assert_error(other, 409, "idempotency_conflict")
    assert REPLAYED not in other.headers
    # The same key on another route is another request too.
    loan_id = first.json()["id"]
    cancel = client.post(f"{LOANS}/{loan_id}/cancel", headers=headers)
    assert_error(cancel, 409, "idempotency_conflict")
    body = {"amount_cents": 1, "pin": borrower.pin}
    repay = client.post(f"{LOANS}/{loan_id}/repay", json=body, headers=headers)
    assert_error(repay, 409, "idempotency_conflict")
    assert_nothing_written(deni, before)
    assert get_loan(client, borrower, loan_id)["state"] == "requested"


def test_a_repeated_repayment_with_another_amount_conflicts(
    client: TestClient, deni: Deni, pair: tuple[ApiUser, ApiUser]
) -> None:
    lender, borrower = pair
    loan = request_loan(client, borrower, lender)
    approve(client, lender, loan["id"])
    headers = _with(borrower, "pay-1")
    url = f"{LOANS}/{loan['id']}/repay"
    paid = client.post(url, json={"amount_cents": 10_000, "pin": borrower.pin}, headers=headers)
    assert paid.status_code == 200
    before = db_state(deni)
    assert_error(
        client.post(url, json={"amount_cents": 20_000, "pin": borrower.pin}, headers=headers),
        409,
        "idempotency_conflict",
    )
    assert_nothing_written(deni, before)


def test_keys_belong_to_their_user(
    client: TestClient, deni: Deni, pair: tuple[ApiUser, ApiUser]
) -> None:
    lender, borrower = pair
    third = api_user(client, deni, name="Third")
    mine = client.post(LOANS, json=loan_body(lender), headers=_with(borrower, "shared-key"))
    theirs = client.post(LOANS, json=loan_body(lender), headers=_with(third, "shared-key"))
    assert mine.status_code == theirs.status_code == 201
    assert REPLAYED not in theirs.headers
    assert mine.json()["id"] != theirs.json()["id"]
    assert theirs.json()["borrower"]["name"] == "Third"  # never someone else's stored answer
    assert _loan_count(deni) == 2


def test_a_refused_request_leaves_its_key_free_for_the_corrected_one(
    client: TestClient, deni: Deni, pair: tuple[ApiUser, ApiUser]
) -> None:
    lender, borrower = pair
    headers = _with(borrower, "fix-and-retry")
    wrong = client.post(
        LOANS, json=loan_body(borrower, lender_phone=borrower.user.phone), headers=headers
    )
    assert_error(wrong, 422, "self_lending")
    right = client.post(LOANS, json=loan_body(lender), headers=headers)
    assert right.status_code == 201, right.text
    assert REPLAYED not in right.headers
    # A wrong PIN, too, is no answer to keep: the right PIN may follow with the same key.
    loan_id = right.json()["id"]
    approve_headers = _with(lender, "approve-retry")
    url = f"{LOANS}/{loan_id}/approve"
    assert_error(client.post(url, json={"pin": "0000"}, headers=approve_headers), 401, "wrong_pin")
    approved = client.post(url, json={"pin": "3591"}, headers=approve_headers)
    assert approved.status_code == 200, approved.text
    assert approved.json()["state"] == "active"


def test_no_body_and_an_empty_body_are_the_same_request(
    client: TestClient, pair: tuple[ApiUser, ApiUser]
) -> None:
    lender, borrower = pair
    loan = request_loan(client, borrower, lender)
    headers = _with(lender, "decline-once")
    url = f"{LOANS}/{loan['id']}/decline"
    first = client.post(url, headers=headers)
    assert first.status_code == 200, first.text
    again = client.post(url, json={}, headers=headers)
    assert again.status_code == 200, again.text
    assert again.headers[REPLAYED] == "true"
    assert again.content == first.content


def test_a_request_still_in_flight_is_not_run_twice(
    client: TestClient, deni: Deni, pair: tuple[ApiUser, ApiUser]
) -> None:
    lender, borrower = pair
    body = loan_body(lender)
    # Another process has claimed this key for this very request and is still working on it.
    _claim_elsewhere(deni, borrower, "in-flight", body)
    before = db_state(deni)
    response = client.post(LOANS, json=body, headers=_with(borrower, "in-flight"))
    assert_error(response, 409, "request_in_progress")
    assert_nothing_written(deni, before)
    assert _loan_count(deni) == 0


def test_a_claim_left_by_a_dead_process_goes_stale_and_the_retry_runs(
    client: TestClient, deni: Deni, clock: ManualClock, pair: tuple[ApiUser, ApiUser]
) -> None:
    lender, borrower = pair
    body = loan_body(lender)
    _claim_elsewhere(deni, borrower, "orphan", body)  # ... and then that process died
    clock.advance(CLAIM_STALE_AFTER - timedelta(seconds=1))
    assert_error(
        client.post(LOANS, json=body, headers=_with(borrower, "orphan")), 409, "request_in_progress"
    )
    clock.advance(timedelta(seconds=2))

    retried = client.post(LOANS, json=body, headers=_with(borrower, "orphan"))

    assert retried.status_code == 201, retried.text
    assert _loan_count(deni) == 1
    again = client.post(LOANS, json=body, headers=_with(borrower, "orphan"))
    assert again.headers[REPLAYED] == "true"
    assert again.content == retried.content
    # A stale claim is only ever taken over by the same request: another body is refused.
    other = {**body, "principal_cents": body["principal_cents"] + 100}
    _claim_elsewhere(deni, borrower, "orphan-2", body)
    clock.advance(CLAIM_STALE_AFTER * 2)
    assert_error(
        client.post(LOANS, json=other, headers=_with(borrower, "orphan-2")),
        409,
        "idempotency_conflict",
    )
    assert _loan_count(deni) == 1


def _claim_elsewhere(deni: Deni, user: ApiUser, key: str, body: dict[str, Any]) -> None:
    now = deni.clock.now()
    with deni.uow() as uow:
        claimed = uow.idempotency.claim(
            scope=user.user.id,
            key=key,
            request_hash=request_fingerprint(
                deni.settings.pin_pepper, "request_loan", LoanRequestIn.model_validate(body)
            ),
            now=now,
            stale_before=now - CLAIM_STALE_AFTER,
        )
        uow.commit()
    assert claimed is None


def test_register_with_a_key_is_idempotent(client: TestClient, deni: Deni) -> None:
    code = registration_code(deni, "0733 000 111")
    body = {"phone": "0733 000 111", "code": code, "name": "Njeri", "pin": "3591"}
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    first = client.post("/api/v1/auth/register", json=body, headers=headers)
    assert first.status_code == 201, first.text
    again = client.post("/api/v1/auth/register", json=body, headers=headers)
    assert again.status_code == 201
    assert again.headers[REPLAYED] == "true"
    assert again.json()["id"] == first.json()["id"]
    # Without the key, the same registration finds its code spent.
    assert_error(client.post("/api/v1/auth/register", json=body), 401, "phone_code_invalid")


MUTATING: list[tuple[str, dict[str, Any] | None]] = [
    ("/api/v1/me/pin", {"old_pin": "3591", "new_pin": "4381"}),
    (LOANS, None),  # filled in with a valid request body
    (LOANS + "/{loan}/approve", {"pin": "3591"}),
    (LOANS + "/{loan}/decline", {}),
    (LOANS + "/{loan}/cancel", {}),
    (LOANS + "/{active}/repay", {"amount_cents": 1_000, "pin": "3591"}),
    (LOANS + "/{active}/write-off", {"pin": "3591"}),
    (LOANS + "/{active}/remind", {}),
    ("/api/v1/notifications/read", {"ids": ["00000000-0000-0000-0000-000000000000"]}),
]


def test_every_mutating_post_needs_a_valid_key(
    client: TestClient, deni: Deni, pair: tuple[ApiUser, ApiUser], subtests: pytest.Subtests
) -> None:
    lender, borrower = pair
    requested = request_loan(client, borrower, lender)["id"]
    active = request_loan(client, borrower, lender)["id"]
    approve(client, lender, active)
    before = db_state(deni)
    bad_keys: list[tuple[str | None, str]] = [
        (None, "idempotency_key_missing"),
        ("", "idempotency_key_missing"),
        ("   ", "idempotency_key_missing"),
        ("k" * 129, "idempotency_key_invalid"),
        ("tab\there", "idempotency_key_invalid"),
    ]
    for template, body in MUTATING:
        path = template.format(loan=requested, active=active)
        who = borrower if path.endswith(("/cancel", "/repay")) or path == LOANS else lender
        payload = loan_body(lender) if body is None else body
        for bad_key, code in bad_keys:
            with subtests.test(path=template, key=bad_key):
                headers = dict(who.headers)
                if bad_key is not None:
                    headers["Idempotency-Key"] = bad_key
                assert_error(client.post(path, json=payload, headers=headers), 422, code)
                assert_nothing_written(deni, before)


def test_a_key_of_128_printable_characters_is_accepted(
    client: TestClient, pair: tuple[ApiUser, ApiUser]
) -> None:
    lender, borrower = pair
    headers = _with(borrower, "K" * 127 + "~")
    assert client.post(LOANS, json=loan_body(lender), headers=headers).status_code == 201


def test_a_retry_that_differs_only_in_its_pin_replays_the_first_answer(
    client: TestClient, deni: Deni, pair: tuple[ApiUser, ApiUser]
) -> None:
    """The PIN is not part of a fingerprint (a copy of the database must say nothing about
    it), so a retry with another PIN is the same request: it gets the first answer, of a
    command the right PIN ran, and nothing more happens; the wrong PIN is not even looked at."""
    lender, borrower = pair
    loan = request_loan(client, borrower, lender)
    url, headers = f"{LOANS}/{loan['id']}/approve", _with(lender, "approve-pin")
    first = client.post(url, json={"pin": "3591"}, headers=headers)
    assert first.status_code == 200, first.text
    before = db_state(deni)

    other_pin = client.post(url, json={"pin": "0000"}, headers=headers)

    assert other_pin.status_code == 200
    assert other_pin.headers[REPLAYED] == "true"
    assert other_pin.content == first.content
    assert_nothing_written(deni, before)
    with deni.uow.read_only() as uow:
        member = uow.users.get(lender.user.id)
    assert member is not None
    assert member.failed_pin_attempts == 0


def test_keys_are_kept_a_day_then_housekeeping_prunes_them_in_batches(
    client: TestClient,
    deni: Deni,
    clock: ManualClock,
    pair: tuple[ApiUser, ApiUser],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lender, borrower = pair
    for n in range(5):
        body = loan_body(lender, loan_id=str(uuid.UUID(int=n + 1)))
        assert client.post(LOANS, json=body, headers=_with(borrower, f"day-{n}")).status_code == 201
    keeper = Housekeeper(deni, interval_s=60)
    clock.advance(ANSWER_RETENTION - timedelta(seconds=1))
    keeper.run_once()
    log_in_again(deni, borrower)
    body = loan_body(lender, loan_id=str(uuid.UUID(int=1)))
    kept = client.post(LOANS, json=body, headers=_with(borrower, "day-0"))
    assert kept.headers[REPLAYED] == "true"

    clock.advance(timedelta(seconds=2))
    monkeypatch.setattr(idempotency, "PRUNE_BATCH", 2)
    monkeypatch.setattr(idempotency, "PRUNE_BATCHES_PER_RUN_MAX", 2)
    assert (
        idempotency.prune_expired(
            deni,
        )
        == 4
    )  # two batches
    assert (
        idempotency.prune_expired(
            deni,
        )
        == 1
    )
    assert (
        idempotency.prune_expired(
            deni,
        )
        == 0
    )

    # The key is free again: the request runs anew, and the loan's own id keeps it one loan.
    again = client.post(LOANS, json=body, headers=_with(borrower, "day-0"))
    assert again.status_code == 201, again.text
    assert REPLAYED not in again.headers
    assert _loan_count(deni) == 5


# Fields named like a secret are left out of fingerprints (domain/secrecy.py). A field that is
# not a secret must not be named like one, or a retry that changed it would replay the answer
# of the first request; one that is a secret must be, or it would be in the fingerprint.
SECRET_REQUEST_FIELDS = {"pin", "old_pin", "new_pin", "code", "refresh_token"}


def test_every_request_field_named_like_a_secret_is_one(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]

    def fields(schema: dict[str, Any], depth: int = 0) -> set[str]:
        assert depth < 20
        if "$ref" in schema:
            return fields(schemas[schema["$ref"].rsplit("/", 1)[1]], depth + 1)
        found = set(schema.get("properties", {}))
        nested = [*schema.get("properties", {}).values(), *schema.get("anyOf", [])]
        if "items" in schema:
            nested.append(schema["items"])
        for inner in nested:
            found |= fields(inner, depth + 1)
        return found

    sent = set()
    for operations in spec["paths"].values():
        for operation in operations.values():
            content = operation.get("requestBody", {}).get("content", {})
            for media in content.values():
                sent |= fields(media["schema"])
    named_like_a_secret = {field for field in sent if is_secret_field(field)}
    assert named_like_a_secret <= SECRET_REQUEST_FIELDS
    assert {"pin", "old_pin", "new_pin", "code"} <= named_like_a_secret
