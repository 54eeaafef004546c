"""Background sync: what was queued offline reaches the server with the app closed, sent by the
service worker (static/sw-sync.js) when the browser's `sync` event wakes it, exactly once.

Chromium's own network state is not DevTools' emulated one: the browser fires a registered
sync as soon as it is asked (it believes it is online; the worker's push then fails, offline by
emulation, and the browser retries minutes later), and it does not fire it when the emulation
goes back online. So these tests fire the event themselves, as DevTools does
(`ServiceWorker.dispatchSyncEvent`), after checking the page asked for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from playwright.sync_api import CDPSession, Page, Route, expect

from deni.bootstrap import Deni
from deni.domain.users import User
from tests.web import test_browser as journeys
from tests.web.test_browser import Person, ask_for_loan, loans_of, on_the_phone, sign_in, synced

# The journeys' fixtures, shared: two members with money, and a browser per person.
open_browser = journeys.open_browser
lender = journeys.lender
borrower = journeys.borrower

SYNC_TAG = "deni-push"
WAIT_S = 10.0


class Worker:
    """DevTools' view of the app's service worker, from a page of the same browser context
    that is not the app (about:blank): it stays when the app's pages are closed."""

    def __init__(self, person: Person, origin: str) -> None:
        self.origin = origin
        self.page = person.context.new_page()
        self.cdp: CDPSession = person.context.new_cdp_session(self.page)
        self.registrations: dict[str, str] = {}  # scope URL -> registration id
        self.cdp.on("ServiceWorker.workerRegistrationUpdated", self._updated)
        self.cdp.send("ServiceWorker.enable")

    def _updated(self, params: dict[str, Any]) -> None:
        for registration in params["registrations"]:
            if not registration["isDeleted"]:
                self.registrations[registration["scopeURL"]] = registration["registrationId"]

    def registration_id(self) -> str:
        scope = f"{self.origin}/app/"
        deadline = time.monotonic() + WAIT_S
        while scope not in self.registrations and time.monotonic() < deadline:
            self.page.wait_for_timeout(20)  # lets Playwright deliver DevTools' events
        assert scope in self.registrations, self.registrations
        return self.registrations[scope]

    def fire_sync(self) -> None:
        """The `sync` event the browser sends when the network is back."""
        self.cdp.send(
            "ServiceWorker.dispatchSyncEvent",
            {
                "origin": self.origin,
                "registrationId": self.registration_id(),
                "tag": SYNC_TAG,
                "lastChance": False,
            },
        )


def sync_tags(page: Page) -> list[str]:
    tags: list[str] = page.evaluate(
        "async () => (await navigator.serviceWorker.ready).sync.getTags()"
    )
    return tags


def wait_for(pump: Page, condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"waited {WAIT_S} s for {what}"
        pump.wait_for_timeout(50)


def queue_a_request_offline(person: Person, lender: User, amount: str) -> str:
    """Offline: a loan request waits in the queue, and the page asked for a background sync.
    Returns the loan id made on the phone."""
    journeys.wait_for_offline_shell(person)
    person.go_offline(True)
    ask_for_loan(person, lender, amount=amount, fee="0", days="7")
    person.page.get_by_role("button", name="Send my request").click()
    expect(person.page.locator("#queue")).to_contain_text("Waiting to sync (1)")
    expect(person.page.locator("#status")).to_contain_text("Offline")
    [queued] = on_the_phone(person.page)["queue"]
    loan_id: str = queued["args"]["loan_id"]
    return loan_id


def test_a_request_queued_offline_is_sent_by_the_worker_with_the_app_closed(
    deni: Deni,
    lender: User,
    borrower: User,
    open_browser: Callable[[User], Person],
    web_server: Any,
) -> None:
    wanjiku = open_browser(borrower)
    sign_in(wanjiku)
    worker = Worker(wanjiku, web_server.url)
    loan_id = queue_a_request_offline(wanjiku, lender, "400")
    print("tags", sync_tags(wanjiku.page))

    wanjiku.page.close()  # the app is closed
    wanjiku.go_offline(False)
    worker.page.wait_for_timeout(3000)
    print("before fire", loans_of(deni, borrower))
    worker.fire_sync()
    wait_for(worker.page, lambda: len(loans_of(deni, borrower)) == 1, "the loan on the server")
    [loan] = loans_of(deni, borrower)
    assert loan.id == loan_id
