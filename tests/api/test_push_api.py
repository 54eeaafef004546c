"""The Web Push routes as a client meets them: the public key, subscribing, unsubscribing and
choosing events, refused without a session, with a body over its limit, with fields that are
not a subscription's, and a closed account takes its browsers with it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests.fakes.clock import ManualClock
from tests.support.api import assert_error, request_loan
from tests.support.builders import api_user
from tests.support.push import Browser, unb64url

from deni.adapters.db.push_tables import push_deliveries, push_preferences, push_subscriptions
from deni.bootstrap import Deni, database_engine
from deni.domain import push as rules
from deni.services import push

ENDPOINT = "https://updates.push.services.mozilla.com/wpush/v2/gAAAAABk"


def test_the_public_key_is_a_p256_point_and_needs_no_session(client: TestClient) -> None:
    response = client.get("/api/v1/push/key")
    assert response.status_code == 200
    point = unb64url(response.json()["public_key"])
    assert len(point) == 65
    assert point[0] == 4


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/v1/me/push", None),
        ("put", "/api/v1/me/push/subscription", Browser().subscription(ENDPOINT)),
        ("post", "/api/v1/me/push/unsubscribe", {"endpoint": ENDPOINT}),
        ("put", "/api/v1/me/push/kinds", {"kinds": []}),
    ],
)
def test_every_member_route_needs_a_session(
    client: TestClient, method: str, path: str, body: object
) -> None:
    response = client.request(method, path, json=body)
    assert_error(response, 401, "unauthorized")


def test_subscribe_answers_the_settings_and_a_repeat_keeps_one(
    client: TestClient, deni: Deni
) -> None:
    member = api_user(client, deni)
    browser = Browser()
    for _ in range(2):
        response = client.put(
            "/api/v1/me/push/subscription",
            json=browser.subscription(ENDPOINT),
            headers=member.headers,
        )
        assert response.status_code == 200, response.text
    body = response.json()
    assert body["subscriptions"] == 1
    assert body["kinds"] == list(rules.PUSH_KINDS)
    assert [g["group"] for g in body["groups"]] == [g for g, _ in rules.PUSH_KIND_GROUPS]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"endpoint": "http://push.example/x"}, "invalid_push_endpoint"),
        ({"endpoint": "https://push.example/é"}, "invalid_push_endpoint"),
        (
            {"keys": {"p256dh": "AAAA", "auth": "AAAAAAAAAAAAAAAAAAAAAA"}},
            "invalid_push_subscription",
        ),
        ({"keys": {"p256dh": "x" * 200, "auth": "y"}}, "validation_failed"),
        ({"keys": {"p256dh": "x"}}, "validation_failed"),
        ({"expirationTime": "soon"}, "validation_failed"),
        ({"expirationTime": -5}, "invalid_push_subscription"),
        ({"expirationTime": 10**15}, "invalid_push_subscription"),
        ({"extra": 1}, "validation_failed"),
        ({"endpoint": 5}, "validation_failed"),
    ],
)
def test_what_is_not_a_subscription_is_refused_and_nothing_is_kept(
    client: TestClient, deni: Deni, change: dict[str, object], code: str
) -> None:
    member = api_user(client, deni)
    body = {**Browser().subscription(ENDPOINT), **change}
    response = client.put("/api/v1/me/push/subscription", json=body, headers=member.headers)
    assert_error(response, 422, code)
    assert deni.push.store.subscriptions_of(member.user.id) == []


def test_a_body_over_the_limit_is_refused_while_it_arrives(client: TestClient, deni: Deni) -> None:
    member = api_user(client, deni)
    body = {**Browser().subscription(ENDPOINT), "endpoint": "https://p.example/" + "a" * 5000}
    response = client.put("/api/v1/me/push/subscription", json=body, headers=member.headers)
    assert_error(response, 413, "body_too_large")


def test_kinds_are_checked_and_kept_in_the_screens_order(client: TestClient, deni: Deni) -> None:
    member = api_user(client, deni)
    refused = client.put(
        "/api/v1/me/push/kinds", json={"kinds": ["phone_code"]}, headers=member.headers
    )
    assert_error(refused, 422, "invalid_push_kind")
    chosen = client.put(
        "/api/v1/me/push/kinds",
        json={"kinds": ["overdue", "loan_requested", "overdue"]},
        headers=member.headers,
    )
    assert chosen.json()["kinds"] == ["loan_requested", "overdue"]
    none = client.put("/api/v1/me/push/kinds", json={"kinds": []}, headers=member.headers)
    assert none.json()["kinds"] == []
    got = client.get("/api/v1/me/push", headers=member.headers).json()
    assert got["kinds"] == []


def test_closing_the_account_forgets_its_browsers_and_what_waited_for_them(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    lender = api_user(client, deni)
    borrower = api_user(client, deni)
    subscribed = client.put(
        "/api/v1/me/push/subscription",
        json=Browser().subscription(ENDPOINT),
        headers=lender.headers,
    )
    assert subscribed.status_code == 200
    client.put("/api/v1/me/push/kinds", json={"kinds": ["loan_requested"]}, headers=lender.headers)
    loan = request_loan(client, borrower, lender)
    now = clock.now()
    deni.push.store.enqueue_new(
        now=now, since=now - timedelta(minutes=1), default_kinds=rules.PUSH_KINDS
    )
    with database_engine(deni).connect() as connection:
        waiting = connection.execute(select(func.count()).select_from(push_deliveries))
        assert waiting.scalar_one() == 1
    declined = client.post(f"/api/v1/loans/{loan['id']}/decline", headers=lender.with_key())
    assert declined.status_code == 200, declined.text  # no open loan stands in the way
    closed = client.post("/api/v1/me/close", json={"pin": lender.pin}, headers=lender.headers)
    assert closed.status_code == 200, closed.text
    with database_engine(deni).connect() as connection:
        for table in (push_subscriptions, push_preferences, push_deliveries):
            count = connection.execute(select(func.count()).select_from(table)).scalar_one()
            assert count == 0, table.name
    assert push.deliver(deni.push).sent == 0


def test_the_data_export_names_the_browsers_and_the_chosen_events(
    client: TestClient, deni: Deni
) -> None:
    member = api_user(client, deni)
    client.put(
        "/api/v1/me/push/subscription",
        json=Browser().subscription(ENDPOINT),
        headers=member.headers,
    )
    client.put("/api/v1/me/push/kinds", json={"kinds": ["overdue"]}, headers=member.headers)
    exported = client.get("/api/v1/me/export", headers=member.headers)
    assert exported.status_code == 200, exported.text
    web_push = exported.json()["web_push"]
    assert web_push["kinds"] == ["overdue"]
    [browser] = web_push["browsers"]
    assert browser["endpoint"] == ENDPOINT
    assert "auth" not in browser  # the browser's secret stays where it is needed
