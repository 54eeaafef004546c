"""Background sync: what was queued offline reaches the server with the app closed, sent by the
service worker (static/js/sync-sw.js) when the browser's `sync` event wakes it, exactly once.

Who fires the event: Chromium itself. A sync asked for while the context is offline (Playwright's
offline switch reaches the worker too) waits, and Chromium fires it when the switch goes back
online, with no page of the app open: the first test sees the worker's push land before any
DevTools command. DevTools' `ServiceWorker.dispatchSyncEvent` then fires it again on demand,
for a second event and for a retry after a lost answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Browser, CDPSession, Page, Route, expect

from deni.bootstrap import Deni
from deni.domain.users import User
from tests.support.builders import shows_number, wallet_cents
from tests.web import test_browser as journeys
from tests.web.test_browser import Person, ask_for_loan, loans_of, on_the_phone, sign_in, synced

# The journeys' fixtures, shared: two members with money, and a browser per person.
open_browser = journeys.open_browser
lender = journeys.lender
borrower = journeys.borrower

SYNC_TAG = "deni-queue"
PERIODIC_TAG = "deni-queue-periodic"
WAIT_S = 10.0


class Worker:
    """DevTools' view of the app's service worker, from a page of the same browser context
    that is not the app (about:blank): it stays when the app's pages are closed."""

    def __init__(self, person: Person, origin: str) -> None:
        self.origin = origin
        self.page = person.context.new_page()
        self.cdp: CDPSession = person.context.new_cdp_session(self.page)
        self.registrations: dict[str, str] = {}  # scope URL -> registration id
        self.browser_session: CDPSession | None = None
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

    def fire_periodic_sync(self) -> None:
        """The `periodicsync` event the browser sends now and then to an installed app."""
        self.cdp.send(
            "ServiceWorker.dispatchPeriodicSyncEvent",
            {
                "origin": self.origin,
                "registrationId": self.registration_id(),
                "tag": PERIODIC_TAG,
            },
        )

    def grant_periodic_sync(self, browser: Browser) -> None:
        """What Chromium grants an installed app, granted to this context by DevTools (for as
        long as the granting session stays attached)."""
        target = self.cdp.send("Target.getTargetInfo")["targetInfo"]
        self.browser_session = browser.new_browser_cdp_session()
        self.browser_session.send(
            "Browser.grantPermissions",
            {
                # The list replaces the context's grants: the one-off sync stays allowed.
                "permissions": ["backgroundSync", "periodicBackgroundSync"],
                "origin": self.origin,
                "browserContextId": target["browserContextId"],
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


class Pushes:
    """Every sync push the context sends from now on, and who sent it (the worker or a page)."""

    def __init__(self, person: Person) -> None:
        self.sent: list[str] = []  # "worker" or "page", in the order the requests left
        self.answers: list[tuple[str, Any]] = []
        person.context.on("request", self._request)
        person.context.on("response", self._response)

    @staticmethod
    def _who(request: Any) -> str:
        return "worker" if request.service_worker is not None else "page"

    def _request(self, request: Any) -> None:
        if request.url.endswith("/api/v1/sync/push"):
            self.sent.append(self._who(request))

    def _response(self, response: Any) -> None:
        if response.url.endswith("/api/v1/sync/push"):
            self.answers.append((self._who(response.request), response))


def reopen_with_nothing_queued(person: Person) -> Page:
    """The app opened again: signed in, synced, and nothing left in the phone's queue."""
    app = person.context.new_page()
    person.page = app
    app.goto("/app/")
    synced(person)
    assert on_the_phone(app)["queue"] == []
    return app


def the_app_is_closed(person: Person, origin: str) -> bool:
    return not any(page.url.startswith(f"{origin}/app") for page in person.context.pages)


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
    assert sync_tags(wanjiku.page) == [SYNC_TAG]  # the page asked the browser for a sync
    assert loans_of(deni, borrower) == []

    wanjiku.page.close()  # the app is closed
    pushes = Pushes(wanjiku)
    assert the_app_is_closed(wanjiku, web_server.url)
    wanjiku.go_offline(False)  # Chromium fires the sync event itself: no DevTools command yet
    wait_for(worker.page, lambda: len(loans_of(deni, borrower)) == 1, "the loan on the server")
    [loan] = loans_of(deni, borrower)
    assert loan.id == loan_id  # the id made offline, pushed by the worker
    assert loan.terms.principal_cents == 40_000
    # Playwright hands over the request events when the test next talks to the browser: the
    # loan can be on the server before its push is in the list.
    wait_for(
        worker.page, lambda: "worker" in pushes.sent, "the worker's push, as the browser saw it"
    )
    assert "page" not in pushes.sent
    assert the_app_is_closed(wanjiku, web_server.url)

    worker.fire_sync()  # a second event: nothing is left to send
    wait_for(worker.page, lambda: len(pushes.answers) == len(pushes.sent), "the pushes' answers")
    app = reopen_with_nothing_queued(wanjiku)  # the worker's answer left the queue
    expect(app.locator("#waiting-lender")).to_contain_text("Waiting for approval")
    assert [loan.id for loan in loans_of(deni, borrower)] == [loan_id]  # still once
    assert "page" not in pushes.sent  # the page found nothing left to push


def test_a_push_whose_answer_was_lost_is_sent_again_and_lands_once(
    deni: Deni,
    lender: User,
    borrower: User,
    open_browser: Callable[[User], Person],
    web_server: Any,
) -> None:
    wanjiku = open_browser(borrower)
    sign_in(wanjiku)
    worker = Worker(wanjiku, web_server.url)
    answers: list[dict[str, Any]] = []

    def lose_the_first_answer(route: Route) -> None:
        answer = route.fetch()  # Deni applies the push...
        answers.append(answer.json())
        if len(answers) == 1:
            route.abort("connectionreset")  # ...and the worker never hears of it
        else:
            route.fulfill(response=answer)

    wanjiku.context.route("**/api/v1/sync/push", lose_the_first_answer)
    loan_id = queue_a_request_offline(wanjiku, lender, "250")
    wanjiku.page.close()
    wanjiku.go_offline(False)  # the context's own route stays: it is not under the cut
    wait_for(worker.page, lambda: len(answers) == 1, "the worker's first push")
    assert answers[0]["results"][0]["status"] == "applied"
    assert answers[0]["results"][0]["replayed"] is False
    assert [loan.id for loan in loans_of(deni, borrower)] == [loan_id]

    worker.fire_sync()  # the retry: the same client id, the same mutation id
    wait_for(worker.page, lambda: len(answers) == 2, "the worker's retry")
    [result] = answers[1]["results"]
    assert (result["mutation_id"], result["status"], result["replayed"]) == (1, "applied", True)
    assert answers[1]["client_id"] == answers[0]["client_id"]
    assert [loan.id for loan in loans_of(deni, borrower)] == [loan_id]  # once

    reopen_with_nothing_queued(wanjiku)
    assert len(answers) == 2  # the page had nothing left to push
    assert [loan.id for loan in loans_of(deni, borrower)] == [loan_id]


def test_a_refresh_answer_the_worker_lost_does_not_sign_the_phone_out(
    deni: Deni,
    lender: User,
    borrower: User,
    open_browser: Callable[[User], Person],
    web_server: Any,
) -> None:
    wanjiku = open_browser(borrower)
    sign_in(wanjiku)
    refreshes: list[tuple[str, int]] = []  # (who, status) of each refresh the worker made

    def lose_the_workers_first_answer(route: Route) -> None:
        if route.request.service_worker is None:
            route.continue_()
            return
        answer = route.fetch()  # Deni swaps the token...
        refreshes.append(("worker", answer.status))
        if len(refreshes) == 1:
            route.abort("connectionreset")  # ...and the worker never hears of it
        else:
            route.fulfill(response=answer)

    loan_id = queue_a_request_offline(wanjiku, lender, "350")
    wanjiku.context.route("**/api/v1/auth/refresh", lose_the_workers_first_answer)
    wanjiku.page.close()
    wanjiku.go_offline(False)
    pump = wanjiku.context.new_page()  # not the app: it lets Playwright run the route
    wait_for(pump, lambda: len(loans_of(deni, borrower)) == 1, "the worker's push")
    assert refreshes == [("worker", 200), ("worker", 200)]  # the spent token, swapped again
    assert [loan.id for loan in loans_of(deni, borrower)] == [loan_id]

    wanjiku.context.unroute("**/api/v1/auth/refresh")
    reopen_with_nothing_queued(wanjiku)  # with the token the worker kept: still signed in
    assert [loan.id for loan in loans_of(deni, borrower)] == [loan_id]


def test_the_worker_and_the_page_pushing_at_once_land_once(
    deni: Deni,
    lender: User,
    borrower: User,
    open_browser: Callable[[User], Person],
    web_server: Any,
) -> None:
    wanjiku = open_browser(borrower)
    sign_in(wanjiku)
    held: list[Route] = []
    loan_id = queue_a_request_offline(wanjiku, lender, "300")
    pushes = Pushes(wanjiku)
    # Both pushes are held at the router until both have left, then let go together.
    wanjiku.context.route("**/api/v1/sync/push", lambda route: held.append(route))
    wanjiku.go_offline(False)  # the page's online event and Chromium's sync event, both at once
    wait_for(wanjiku.page, lambda: len(held) == 2, "a push from the page and one from the worker")
    assert sorted(pushes.sent) == ["page", "worker"]
    bodies: list[Any] = [route.request.post_data_json for route in held]
    assert bodies[0] == bodies[1]  # the same client id, mutation ids and args
    assert [m["id"] for m in bodies[0]["mutations"]] == [1]
    for route in held:
        route.continue_()
    wait_for(wanjiku.page, lambda: len(pushes.answers) == 2, "both answers")

    results = [response.json()["results"] for _, response in pushes.answers]
    assert sorted(r[0]["replayed"] for r in results) == [False, True]  # one applied, one replayed
    assert {r[0]["status"] for r in results} == {"applied"}
    assert [loan.id for loan in loans_of(deni, borrower)] == [loan_id]  # once
    wanjiku.context.unroute("**/api/v1/sync/push")
    wanjiku.page.reload()
    synced(wanjiku)
    assert on_the_phone(wanjiku.page)["queue"] == []
    assert [loan.id for loan in loans_of(deni, borrower)] == [loan_id]


def test_the_worker_sends_nothing_that_needs_the_pin_nor_anything_after_it(
    deni: Deni,
    lender: User,
    borrower: User,
    open_browser: Callable[[User], Person],
    web_server: Any,
) -> None:
    wanjiku = open_browser(borrower)
    sign_in(wanjiku)
    worker = Worker(wanjiku, web_server.url)
    page = wanjiku.page
    journeys.wait_for_offline_shell(wanjiku)
    wanjiku.go_offline(True)
    page.get_by_role("link", name="Withdraw").click()
    page.get_by_label("Amount to send to M-PESA (KES)").fill("100")
    page.get_by_label("Your PIN").fill(journeys.PIN)
    page.get_by_role("button", name="Withdraw").click()
    ask_for_loan(wanjiku, lender, amount="150", fee="0", days="7")
    page.get_by_role("button", name="Send my request").click()
    expect(page.locator("#queue")).to_contain_text("Waiting to sync (2)")
    assert not shows_number(journeys.PIN, json.dumps(on_the_phone(page)))

    page.close()  # the PIN, only ever in the page's memory, goes with it
    pushes = Pushes(wanjiku)
    wanjiku.go_offline(False)
    worker.fire_sync()  # whether or not Chromium fired it too
    app = wanjiku.context.new_page()  # opened after the worker had its turn
    app.goto("/app/")
    app.wait_for_function("() => Number(document.getElementById('status').dataset.syncs) > 0")
    expect(app.locator("#status")).to_have_text("2 waiting to sync")
    assert pushes.sent == []  # not the withdrawal without its PIN, nor the request after it
    assert loans_of(deni, borrower) == []
    assert wallet_cents(deni, borrower) == 20_000


def test_an_installed_app_pushes_on_its_periodic_sync_too(
    deni: Deni,
    lender: User,
    borrower: User,
    chromium: Browser,
    open_browser: Callable[[User], Person],
    web_server: Any,
) -> None:
    wanjiku = open_browser(borrower)
    worker = Worker(wanjiku, web_server.url)
    sign_in(wanjiku)
    worker.grant_periodic_sync(chromium)
    journeys.wait_for_offline_shell(wanjiku)
    wanjiku.page.reload()  # each start, signed in, asks for the periodic sync
    synced(wanjiku)
    tags = "async () => (await navigator.serviceWorker.ready).periodicSync.getTags()"
    wait_for(wanjiku.page, lambda: wanjiku.page.evaluate(tags) != [], "the periodic sync asked")
    assert wanjiku.page.evaluate(tags) == [PERIODIC_TAG]

    # The server cannot be reached, though the browser believes it is online: the one-off sync
    # fires at once, fails, and is left for minutes later.
    workers_refreshes: list[str] = []

    def cut(route: Route) -> None:
        if route.request.service_worker is not None and route.request.url.endswith("/refresh"):
            workers_refreshes.append(route.request.url)
        route.abort("connectionrefused")

    wanjiku.context.route("**/api/**", cut)
    ask_for_loan(wanjiku, lender, amount="450", fee="0", days="7")
    wanjiku.page.get_by_role("button", name="Send my request").click()
    expect(wanjiku.page.locator("#queue")).to_contain_text("Waiting to sync (1)")
    [queued] = on_the_phone(wanjiku.page)["queue"]
    # The worker's one-off try: a refresh and its two quick retries, all cut.
    wait_for(wanjiku.page, lambda: len(workers_refreshes) == 3, "the one-off sync's try")
    wanjiku.page.close()
    wanjiku.context.unroute("**/api/**")
    assert loans_of(deni, borrower) == []

    worker.fire_periodic_sync()
    wait_for(worker.page, lambda: len(loans_of(deni, borrower)) == 1, "the periodic push")
    assert [loan.id for loan in loans_of(deni, borrower)] == [queued["args"]["loan_id"]]
