"""Web Push in a real Chromium: the Settings screen turns notifications on for this browser and
saves the events chosen on the server; a push the worker sent (to a local push service, which
decrypts it as a browser would) is delivered to the service worker with DevTools'
`ServiceWorker.deliverPushMessage`, the service worker shows it as a notification, and a tap on
it opens the app at the loan it is about.

Headless Chromium cannot reach a real push service, so `PushManager.subscribe` is answered in
the page with a subscription made of a real key pair and the local push service's endpoint;
everything after it is real: the API, the store, the worker, pywebpush's encryption, and the
service worker's own handlers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser as Chromium
from playwright.sync_api import BrowserContext, CDPSession, Page, expect

from deni.bootstrap import Deni
from deni.bootstrap.housekeeping import Housekeeper
from deni.domain import push as rules
from deni.entrypoints.api.app import create_app
from deni.sandbox.server import BackgroundServer
from deni.services import loans, push
from tests.support.builders import register
from tests.support.push import (
    Browser,
    LocalPushService,
    b64url,
    free_port_in_range,
    local_push_service,
)

PIN = "2468"
SOME_SHOWN = """async () => {
    const registration = await navigator.serviceWorker.ready;
    return (await registration.getNotifications()).length > 0;
}"""
TIMEOUT_MS = 10_000

# PushManager answered in the page: the subscription the test's browser keys make.
FAKE_PUSH_MANAGER = """
(() => {
  const wanted = %s;
  // Kept across page loads, as a browser keeps its subscription.
  const make = () => ({
    endpoint: wanted.endpoint,
    expirationTime: null,
    toJSON: () => wanted,
    unsubscribe: async () => { localStorage.removeItem("fake-push"); current = null; return true; },
  });
  let current = localStorage.getItem("fake-push") ? make() : null;
  PushManager.prototype.subscribe = async function (options) {
    if (!options || !options.userVisibleOnly || !options.applicationServerKey) {
      throw new DOMException("bad options", "NotAllowedError");
    }
    window.__applicationServerKey = Array.from(new Uint8Array(options.applicationServerKey));
    localStorage.setItem("fake-push", "1");
    current = make();
    return current;
  };
  PushManager.prototype.getSubscription = async function () { return current; };
})();
"""


@pytest.fixture
def web_server(deni: Deni) -> Iterator[BackgroundServer]:
    """The whole app on a loopback port of this file's own range."""
    with BackgroundServer(create_app(deni), port=free_port_in_range()) as server:
        yield server


@pytest.fixture
def service() -> Iterator[LocalPushService]:
    with local_push_service() as running:
        yield running


@pytest.fixture
def context(chromium: Chromium, web_server: BackgroundServer) -> Iterator[BrowserContext]:
    context = chromium.new_context(base_url=web_server.url)
    context.set_default_timeout(TIMEOUT_MS)
    context.grant_permissions(["notifications"], origin=web_server.url)
    yield context
    context.close()


def sign_in(page: Page, phone: str) -> None:
    page.goto("/app/")
    page.get_by_label("Phone number").fill("0" + phone.removeprefix("254"))
    page.get_by_label("PIN").fill(PIN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#balance")).not_to_have_text("—")
    page.wait_for_function("navigator.serviceWorker.controller !== null")


def registration_id(cdp: CDPSession, page: Page, scope: str) -> str:
    found: dict[str, str] = {}

    def seen(event: dict[str, Any]) -> None:
        for registration in event["registrations"]:
            if registration["scopeURL"] == scope and not registration["isDeleted"]:
                found["id"] = registration["registrationId"]

    cdp.on("ServiceWorker.workerRegistrationUpdated", seen)
    cdp.send("ServiceWorker.enable")
    page.wait_for_timeout(200)
    for _ in range(50):
        if "id" in found:
            break
        page.wait_for_timeout(100)
    assert "id" in found, "no service worker registration reported"
    return found["id"]


def shown_notifications(page: Page) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = page.evaluate(
        """async () => {
            const registration = await navigator.serviceWorker.ready;
            const shown = await registration.getNotifications();
            return shown.map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data }));
        }"""
    )
    return result


def test_a_member_turns_pushes_on_chooses_events_and_a_push_opens_the_loan(
    context: BrowserContext,
    deni: Deni,
    web_server: BackgroundServer,
    service: LocalPushService,
) -> None:
    lender = register(deni, name="Otieno Lender", pin=PIN, language="sw")
    borrower = register(deni, name="Wanjiku Borrower", pin=PIN)
    browser = Browser()
    subscription = browser.subscription(service.endpoint())
    context.add_init_script(FAKE_PUSH_MANAGER % json.dumps(subscription))
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    sign_in(page, lender.phone)

    page.goto("/app/#/settings")
    card = page.locator("#push")
    expect(card.get_by_role("heading")).to_have_text("Arifa kwenye simu hii")
    card.get_by_role("button", name="Washa arifa").click()
    expect(card.get_by_role("button", name="Zima arifa")).to_be_visible()
    [kept] = deni.push.store.subscriptions_of(lender.id)
    assert kept.endpoint == subscription["endpoint"]
    assert kept.p256dh == browser.p256dh
    server_key = page.evaluate("window.__applicationServerKey")
    assert b64url(bytes(server_key)) == push.public_key(deni.push)

    # Every event is on at first; the member keeps only loan requests and security.
    card.get_by_text("Chagua kinachoonyeshwa kwenye simu zangu").click()
    boxes = card.locator("input[name=kind]")
    assert boxes.count() == len(rules.PUSH_KINDS)
    for kind in rules.PUSH_KINDS:
        if kind not in ("loan_requested", "pin_locked"):
            card.locator(f"input[value={kind}]").uncheck()
    card.get_by_role("button", name="Hifadhi machaguo yangu").click()
    expect(page.locator("#push-status")).to_have_text("Imehifadhiwa.")
    settings = push.settings_of(deni.push, user_id=lender.id)
    assert settings.kinds == ("loan_requested", "pin_locked")
    page.reload()
    page.locator("#push summary").click()
    expect(page.locator("#push input[value=loan_requested]")).to_be_checked()
    expect(page.locator("#push input[value=loan_approved]")).not_to_be_checked()

    # A real event, sent by the worker to the local push service, decrypted as a browser would.
    loan = loans.request_loan(
        deni,
        borrower_id=borrower.id,
        lender_phone=lender.phone,
        principal_cents=100_000,
        fee_cents=5_000,
        term_days=7,
    )
    report = Housekeeper(deni, interval_s=0, sms_interval_s=1).deliver_push()
    assert report is not None
    assert report.sent == 1
    [arrived] = service.received
    message = browser.decrypt(arrived.body)
    assert message["url"] == f"/app/#/loan/{loan.id}"

    # What the push service would hand the service worker, handed to it by DevTools.
    page.goto("/app/")
    cdp = context.new_cdp_session(page)
    registration = registration_id(cdp, page, f"{web_server.url}/app/")
    deliver = {"origin": web_server.url, "registrationId": registration}
    cdp.send("ServiceWorker.deliverPushMessage", {**deliver, "data": json.dumps(message)})
    page.wait_for_function(SOME_SHOWN)
    [shown] = shown_notifications(page)
    assert shown["title"] == "Deni"
    assert shown["body"] == message["body"]
    assert shown["body"].startswith("Wanjiku Borrower anaomba mkopo")
    assert shown["tag"] == message["id"]
    assert shown["data"]["url"] == f"/app/#/loan/{loan.id}"

    # The same notification again replaces it (its id is the tag), never a second one.
    cdp.send("ServiceWorker.deliverPushMessage", {**deliver, "data": json.dumps(message)})
    page.wait_for_timeout(300)
    assert len(shown_notifications(page)) == 1

    # A tap: the service worker's notificationclick opens the app at the loan.
    [worker] = context.service_workers
    worker.evaluate(
        """async () => {
            const [shown] = await self.registration.getNotifications();
            self.dispatchEvent(new NotificationEvent("notificationclick", { notification: shown }));
        }"""
    )
    page.wait_for_url(f"**/app/#/loan/{loan.id}")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    assert shown_notifications(page) == []  # closed by the tap

    # Off again: the browser unsubscribes and the server forgets it.
    page.goto("/app/#/settings")
    page.locator("#push").get_by_role("button", name="Zima arifa").click()
    expect(page.locator("#push").get_by_role("button", name="Washa arifa")).to_be_visible()
    assert deni.push.store.subscriptions_of(lender.id) == []
    assert problems == []


def test_a_push_that_is_not_json_still_shows_and_opens_only_the_app(
    context: BrowserContext, deni: Deni, web_server: BackgroundServer
) -> None:
    member = register(deni, name="Akinyi Member", pin=PIN)
    page = context.new_page()
    sign_in(page, member.phone)
    cdp = context.new_cdp_session(page)
    registration = registration_id(cdp, page, f"{web_server.url}/app/")
    deliver = {"origin": web_server.url, "registrationId": registration}
    hostile = json.dumps({"id": "x", "body": "hi", "url": "https://evil.example/x"})
    for data in ("not json", hostile):
        cdp.send("ServiceWorker.deliverPushMessage", {**deliver, "data": data})
    page.wait_for_function(SOME_SHOWN)
    page.wait_for_timeout(300)
    shown = shown_notifications(page)
    assert len(shown) == 2
    assert {n["data"]["url"] for n in shown} == {"/app/"}  # never another site
    assert {n["title"] for n in shown} == {"Deni"}
