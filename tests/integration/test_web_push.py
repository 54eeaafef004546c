"""Web Push end to end: a member subscribes through the API with a browser's keys and a local
push service's endpoint (a real HTTP server on loopback), a real event happens (a loan is
requested of them), the worker's tick sends it, and the push service receives what a browser
would: a VAPID token signed with the key the app subscribed with, and a payload that decrypts
with the browser's private key and auth secret to the notification's text in the member's
language. A push service that answers 410 has dropped the subscription, and so does Deni."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.fakes.clock import ManualClock
from tests.support.api import assert_error, request_loan
from tests.support.builders import ApiUser, api_user, sms_texts
from tests.support.push import Browser, LocalPushService, local_push_service, verify_vapid

from deni.adapters.db import tables as t
from deni.bootstrap import Deni, database_engine
from deni.bootstrap.housekeeping import Housekeeper


@pytest.fixture
def service() -> Iterator[LocalPushService]:
    with local_push_service() as running:
        yield running


def tick(deni: Deni) -> None:
    """One housekeeping tick of a worker: SMS, then Web Push."""
    keeper = Housekeeper(deni, interval_s=0, sms_interval_s=1)
    assert keeper.deliver_sms() is not None
    assert keeper.deliver_push() is not None


def subscribe(
    client: TestClient, who: ApiUser, subscription: dict[str, object]
) -> dict[str, object]:
    response = client.put("/api/v1/me/push/subscription", json=subscription, headers=who.headers)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def latest_notification(deni: Deni, user_id: str) -> tuple[str, str, str | None]:
    n = t.notifications
    query = (
        select(n.c.id, n.c.body, n.c.loan_id)
        .where(n.c.user_id == user_id)
        .order_by(n.c.created_at.desc(), n.c.id.desc())
    )
    with database_engine(deni).connect() as connection:
        row = connection.execute(query).first()
    assert row is not None
    return row.id, row.body, row.loan_id


def test_a_loan_request_reaches_the_lenders_browser_encrypted_signed_and_in_swahili(
    client: TestClient, deni: Deni, service: LocalPushService
) -> None:
    lender = api_user(client, deni, name="Wanjiku Lender", language="sw")
    borrower = api_user(client, deni, name="Otieno Borrower")
    browser = Browser()
    public_key = client.get("/api/v1/push/key").json()["public_key"]
    endpoint = service.endpoint()
    assert subscribe(client, lender, browser.subscription(endpoint))["subscriptions"] == 1

    tick(deni)
    assert service.received == []  # nothing happened yet: nothing is pushed

    loan = request_loan(client, borrower, lender)
    assert service.received == []  # never sent in the request
    tick(deni)

    [arrived] = service.received
    assert arrived.path == endpoint.removeprefix(service.origin)
    notification_id, body, loan_id = latest_notification(deni, lender.user.id)
    assert loan_id == loan["id"]
    message = browser.decrypt(arrived.body)
    assert message == {
        "id": notification_id,
        "kind": "loan_requested",
        "lang": "sw",
        "title": "Deni",
        "body": body,
        "url": f"/app/#/loan/{loan['id']}",
    }
    # The member's language, as the SMS says it: Swahili, naming the borrower and the amount.
    assert message["body"].startswith("Otieno Borrower anaomba mkopo wa ")
    assert "Kubali au kataa kwenye Deni." in message["body"]
    sms = sms_texts(deni, lender.user.phone)
    assert message["body"] in sms  # the very text the SMS carried
    assert arrived.headers["content-encoding"] == "aes128gcm"
    assert arrived.headers["topic"] == notification_id.replace("-", "")  # a retry replaces
    assert int(arrived.headers["ttl"]) > 0
    claims = verify_vapid(
        arrived.headers["authorization"], public_key=public_key, audience=service.origin
    )
    assert claims["sub"].startswith("mailto:")
    assert time.time() < claims["exp"] <= time.time() + 24 * 3600

    tick(deni)  # sent is sent: nothing twice
    assert len(service.received) == 1


def test_the_borrower_gets_the_answer_and_unchosen_events_stay_off_the_phone(
    client: TestClient, deni: Deni, service: LocalPushService
) -> None:
    lender = api_user(client, deni, name="Lender")
    borrower = api_user(client, deni, name="Borrower")
    browser = Browser()
    subscribe(client, borrower, browser.subscription(service.endpoint()))
    chosen = client.put(
        "/api/v1/me/push/kinds", json={"kinds": ["loan_declined"]}, headers=borrower.headers
    )
    assert chosen.status_code == 200, chosen.text
    assert chosen.json()["kinds"] == ["loan_declined"]
    first = request_loan(client, borrower, lender)
    second = request_loan(client, borrower, lender)
    cancelled = client.post(f"/api/v1/loans/{first['id']}/cancel", headers=borrower.with_key())
    assert cancelled.status_code == 200, cancelled.text
    declined = client.post(f"/api/v1/loans/{second['id']}/decline", headers=lender.with_key())
    assert declined.status_code == 200, declined.text
    tick(deni)
    [arrived] = service.received
    message = browser.decrypt(arrived.body)
    assert message["kind"] == "loan_declined"
    assert message["lang"] == "en"
    assert message["url"] == f"/app/#/loan/{second['id']}"


def test_a_gone_subscription_is_dropped_and_a_busy_service_is_tried_again(
    client: TestClient, deni: Deni, clock: ManualClock, service: LocalPushService
) -> None:
    lender = api_user(client, deni, name="Lender")
    borrower = api_user(client, deni, name="Borrower")
    gone, busy = Browser(), Browser()
    gone_endpoint, busy_endpoint = service.endpoint("gone"), service.endpoint("busy")
    subscribe(client, lender, gone.subscription(gone_endpoint))
    assert subscribe(client, lender, busy.subscription(busy_endpoint))["subscriptions"] == 2
    service.status_by_path = {"/push/gone": [410], "/push/busy": [503]}

    request_loan(client, borrower, lender)
    tick(deni)
    assert sorted(r.path for r in service.received) == ["/push/busy", "/push/gone"]
    settings = client.get("/api/v1/me/push", headers=lender.headers).json()
    assert settings["subscriptions"] == 1  # 410: the browser is gone, and so is its row

    tick(deni)  # not due yet: the retry waits its backoff
    assert len(service.received) == 2
    clock.advance(timedelta(seconds=31))
    tick(deni)
    assert [r.path for r in service.received][2:] == ["/push/busy"]
    first, retry = (r for r in service.received if r.path == "/push/busy")
    assert retry.headers["topic"] == first.headers["topic"]  # the same message, recognisably
    assert busy.decrypt(retry.body) == busy.decrypt(first.body)
    clock.advance(timedelta(hours=2))
    tick(deni)
    assert len(service.received) == 3


def test_an_expired_subscription_is_dropped_without_sending(
    client: TestClient, deni: Deni, clock: ManualClock, service: LocalPushService
) -> None:
    lender = api_user(client, deni, name="Lender")
    borrower = api_user(client, deni, name="Borrower")
    soon_ms = int((clock.now() + timedelta(minutes=5)).timestamp() * 1000)
    subscribe(client, lender, Browser().subscription(service.endpoint(), soon_ms))
    clock.advance(timedelta(minutes=6))
    request_loan(client, borrower, lender)
    tick(deni)
    assert service.received == []
    assert client.get("/api/v1/me/push", headers=lender.headers).json()["subscriptions"] == 0
    past_ms = int((clock.now() - timedelta(seconds=1)).timestamp() * 1000)
    refused = client.put(
        "/api/v1/me/push/subscription",
        json=Browser().subscription(service.endpoint(), past_ms),
        headers=lender.headers,
    )
    assert_error(refused, 422, "invalid_push_subscription")


def test_unsubscribing_stops_the_pushes_and_touches_nobody_elses(
    client: TestClient, deni: Deni, service: LocalPushService
) -> None:
    lender = api_user(client, deni, name="Lender")
    borrower = api_user(client, deni, name="Borrower")
    endpoint = service.endpoint()
    subscribe(client, lender, Browser().subscription(endpoint))
    theirs = client.post(
        "/api/v1/me/push/unsubscribe", json={"endpoint": endpoint}, headers=borrower.headers
    )
    assert theirs.status_code == 200, theirs.text
    assert client.get("/api/v1/me/push", headers=lender.headers).json()["subscriptions"] == 1
    mine = client.post(
        "/api/v1/me/push/unsubscribe", json={"endpoint": endpoint}, headers=lender.headers
    )
    assert mine.json()["subscriptions"] == 0
    request_loan(client, borrower, lender)
    tick(deni)
    assert service.received == []
