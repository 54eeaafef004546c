"""The web app as a new member meets it on a small phone: what shows, where a refusal lands,
what the keyboard reaches, how big a target is, and how it reads.

Each test opens a 360x740 Chromium page, the size of an entry-level Android phone.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect

from deni.bootstrap import Deni
from deni.domain.loans import LoanState
from deni.domain.users import User
from deni.services import loans
from tests.support.builders import lend, register
from tests.web import test_browser as journeys
from tests.web.test_browser import PIN, Person, loans_of

# The journeys' fixtures, shared: two members with money, and a browser per person.
open_browser = journeys.open_browser
lender = journeys.lender
borrower = journeys.borrower

PHONE = {"width": 360, "height": 740}


def on_a_phone(person: Person) -> Page:
    person.page.set_viewport_size(PHONE)
    return person.page


def sign_in(person: Person) -> None:
    """journeys.sign_in, in whichever language the member's profile brings."""
    page = person.page
    page.goto("/app/")
    page.get_by_label("Phone number").fill(person.local_phone)
    page.get_by_label("PIN").fill(PIN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_function(
        """() => {
            const status = document.getElementById("status");
            return Number(status.dataset.syncs) > 0 && status.dataset.state === "synced";
        }"""
    )


def focus_reaches(page: Page, element_id: str, *, tabs: int = 15) -> bool:
    """Whether pressing Tab from the top of the page ever lands on `element_id`."""
    page.evaluate("document.activeElement && document.activeElement.blur()")
    for _ in range(tabs):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.id") == element_id:
            return True
    return False


def test_what_is_hidden_stays_hidden_and_out_of_the_keyboards_reach(
    deni: Deni, open_browser: Callable[[User], Person], borrower: User
) -> None:
    page = on_a_phone(open_browser(borrower))
    for screen in ("sign-in", "register", "forgot-pin"):
        page.goto(f"/app/#/{screen}")
        expect(page.locator("h1")).to_be_visible()
        for header in ("#settings", "#sign-out", "#book"):
            expect(page.locator(header)).to_be_hidden()
        assert not focus_reaches(page, "settings"), screen
        assert not focus_reaches(page, "sign-out"), screen

    page.goto("/app/#/forgot-pin")
    page.get_by_label("Phone number").fill("0" + borrower.phone.removeprefix("254"))
    page.get_by_role("button", name="Send me a code").click()
    expect(page.get_by_label("New PIN")).to_be_visible()
    expect(page.get_by_role("button", name="Send me a code")).to_be_hidden()
    expect(page.get_by_label("Phone number")).to_be_hidden()

    page.goto("/app/#/register")
    page.get_by_label("Phone number").fill("0799 000 222")
    page.get_by_role("button", name="Send me a code").click()
    expect(page.get_by_label("Your name")).to_be_visible()
    expect(page.get_by_role("button", name="Send me a code")).to_be_hidden()

    journeys.sign_in(Person(borrower, page.context, page))
    for header in ("#settings", "#sign-out", "#book"):
        expect(page.locator(header)).to_be_visible()


SLOW_3G = {
    "offline": False,
    "latency": 2_000,  # ms, each way a request waits
    "downloadThroughput": 50 * 1024,  # bytes a second
    "uploadThroughput": 50 * 1024,
}
# Not a speed test: one request over this network takes the emulated latency at least, so a
# first screen shown sooner than that came from the cache without waiting for the network.
# (Measured here: 150-270 ms; network-first, before the cache came first: 8,300 ms.)
NO_ROUND_TRIP_MS = SLOW_3G["latency"]
FULL_SPEED = {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}


@contextmanager
def slowed_down(page: Page) -> Iterator[None]:
    """Slow 3G for the page and for its service worker: each is its own DevTools target, and
    the worker's fetches are throttled only by emulation on the worker itself. Put back to
    full speed and detached after, so no later test inherits a slow network."""
    devtools = page.context.new_cdp_session(page)
    devtools.send("Network.enable")
    devtools.send("Network.emulateNetworkConditions", SLOW_3G)
    browser = page.context.browser
    assert browser is not None
    root = browser.new_browser_cdp_session()
    targets = root.send("Target.getTargets")["targetInfos"]
    [worker] = [
        target
        for target in targets
        if target["type"] == "service_worker" and target["url"].startswith(page.url.split("#")[0])
    ]
    session = root.send("Target.attachToTarget", {"targetId": worker["targetId"], "flatten": False})

    def to_worker(number: int, method: str, params: dict[str, object]) -> None:
        message = json.dumps({"id": number, "method": method, "params": params})
        root.send(
            "Target.sendMessageToTarget", {"sessionId": session["sessionId"], "message": message}
        )

    to_worker(1, "Network.enable", {})
    to_worker(2, "Network.emulateNetworkConditions", SLOW_3G)
    try:
        yield
    finally:
        with suppress(PlaywrightError):  # the worker may be gone already
            to_worker(3, "Network.emulateNetworkConditions", FULL_SPEED)
            root.send("Target.detachFromTarget", {"sessionId": session["sessionId"]})
        devtools.send("Network.emulateNetworkConditions", FULL_SPEED)
        devtools.detach()
        root.detach()


def test_the_installed_app_opens_from_its_cache_without_waiting_for_slow_3g(page: Page) -> None:
    page.set_viewport_size(PHONE)
    page.goto("/app/")
    page.wait_for_function("() => navigator.serviceWorker.controller !== null")
    expect(page.locator("#view h1")).to_be_visible()
    with slowed_down(page):
        page.reload(wait_until="commit")
        expect(page.locator("#view h1")).to_be_visible(timeout=30_000)
        shown_ms = page.evaluate(
            """() => {
                const [shown] = performance.getEntriesByName("deni-shown");
                return shown ? shown.startTime : null;
            }"""
        )
    assert shown_ms is not None
    print(f"the second open showed its first screen after {shown_ms:.0f} ms")
    assert shown_ms < NO_ROUND_TRIP_MS


def test_refusals_land_next_to_their_field_in_the_members_language_before_anything_waits(
    deni: Deni, open_browser: Callable[[User], Person]
) -> None:
    wanjiku = register(deni, name="Wanjiku Kamau", pin=PIN, language="sw")
    otieno = register(deni, name="Otieno Odhiambo", pin=PIN, language="sw")
    person = open_browser(wanjiku)
    page = on_a_phone(person)
    sign_in(person)
    expect(page.get_by_role("link", name="Omba mkopo")).to_be_visible()  # her language, synced

    def ask(lender_phone: str, amount: str, fee: str) -> None:
        page.goto("/app/#/request")
        page.get_by_label("Namba ya simu ya mkopeshaji").fill(lender_phone)
        page.get_by_label("Kiasi (KES)").fill(amount)
        page.get_by_label("Ada utakayolipa (KES)").fill(fee)
        page.get_by_role("button", name="Tuma ombi").click()

    def refused_at(label: str, words: str) -> None:
        said = page.locator(f"#{page.get_by_label(label).get_attribute('id')}-problem")
        expect(said).to_have_text(words)
        expect(page.get_by_label(label)).to_have_attribute("aria-invalid", "true")

    ask(person.local_phone, "1500", "0")
    refused_at("Namba ya simu ya mkopeshaji", "Huwezi kujikopesha mwenyewe.")
    ask("0" + otieno.phone.removeprefix("254"), "1500", "5000")
    refused_at("Ada utakayolipa (KES)", "Ada isizidi kiasi unachoomba, KES 1,500.")
    ask("0799 999 999", "1500", "0")  # nobody's number: only the server knows
    refused_at("Namba ya simu ya mkopeshaji", "Namba hiyo haijasajiliwa kwenye Deni.")
    assert "user_not_found" not in page.content()
    page.goto("/app/#/home")
    expect(page.locator("#balance")).to_be_visible()
    expect(page.locator("#queue")).to_have_count(0)  # nothing left to be refused later
    assert loans_of(deni, wanjiku) == []

    loan = loans.request_loan(
        deni,
        borrower_id=wanjiku.id,
        lender_phone=otieno.phone,
        principal_cents=1_000_00,
        term_days=30,
    )
    lender = open_browser(otieno)
    lending = on_a_phone(lender)
    sign_in(lender)
    lending.goto(f"/app/#/loan/{loan.id}")
    lending.get_by_label("PIN yako").fill("1357")
    lending.get_by_role("button", name="Kubali na utume KES 1,000").click()
    said = lending.locator("#field-pin-problem")
    expect(said).to_have_text("PIN si sahihi.")
    lending.get_by_label("PIN yako").fill(PIN)
    lending.get_by_role("button", name="Kubali na utume KES 1,000").click()
    expect(lending.locator("#balance")).to_be_visible()  # approved: Home, nothing refused
    expect(lending.locator("#queue")).to_have_count(0)
    with deni.uow.read_only() as uow:
        approved = uow.loans.get(loan.id)
    assert approved is not None
    assert approved.state is not LoanState.REQUESTED


SMALL_TARGETS = """() => [...document.querySelectorAll(
    "a[href], button, input:not([type=checkbox]), select, summary, label.toggle")]
    .filter((e) => e.offsetParent !== null)
    .map((e) => [e.textContent.trim() || e.name || e.id, e.getBoundingClientRect()])
    .filter(([, box]) => box.height < 48 || box.width < 48)
    .map(([what, box]) => `${what}: ${Math.round(box.width)}x${Math.round(box.height)}`)"""

BORDERS = """() => [...document.querySelectorAll("input:not([type=checkbox]), select")]
    .filter((e) => e.offsetParent !== null)
    .map((e) => getComputedStyle(e).borderTopColor)"""


def contrast(color: str, background: tuple[int, int, int]) -> float:
    """WCAG's contrast ratio of an rgb() color against `background`."""

    def luminance(rgb: tuple[int, ...]) -> float:
        linear = [c / 255 / 12.92 if c <= 10 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    rgb = tuple(int(part) for part in color.strip("rgba()").split(",")[:3])
    lighter, darker = sorted([luminance(rgb), luminance(background)], reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def test_home_keeps_unapproved_asks_apart_and_each_screen_is_easy_to_reach_and_read(
    deni: Deni, open_browser: Callable[[User], Person], lender: User, borrower: User
) -> None:
    lend(deni, lender=lender, borrower=borrower, fee_cents=0, approve_with_pin=PIN)
    asked = loans.request_loan(
        deni, borrower_id=borrower.id, lender_phone=lender.phone, principal_cents=300_00,
        term_days=10,
    )  # fmt: skip
    person = open_browser(borrower)
    page = on_a_phone(person)
    journeys.sign_in(person)
    expect(page.locator("#owe")).to_contain_text("KES 1,000")
    expect(page.locator("#owe")).not_to_contain_text("KES 300")
    expect(page.locator("#waiting-lender")).to_contain_text("Waiting for the lender")
    expect(page.locator("#waiting-lender")).to_contain_text("KES 300")

    problems: list[str] = []
    for screen in ("home", "request", "top-up", "withdraw", "statement", "settings"):
        page.goto(f"/app/#/{screen}")
        expect(page.locator("#view h1")).to_be_visible()
        problems += [f"{screen}: {small}" for small in page.evaluate(SMALL_TARGETS)]
        for color in page.evaluate(BORDERS):
            for background in ((255, 255, 255), (0xF6, 0xF7, 0xF5)):
                assert contrast(color, background) >= 3, (screen, color)
    assert problems == []

    # A new screen takes the focus to its heading.
    page.goto("/app/#/home")
    page.locator("#waiting-lender").get_by_role("link").click()
    expect(page.locator("#view h1")).to_be_focused()
    expect(page.locator("#view h1")).to_have_text("Loan")

    said: list[str] = []
    page.once("dialog", lambda dialog: (said.append(dialog.message), dialog.dismiss()))
    page.get_by_role("button", name="Cancel my request").click()
    expect(page.locator("#view h1")).to_have_text("Loan")  # said no: still here
    assert said == ["Cancel your request to Otieno Lender for KES 300?"]
    page.once("dialog", lambda dialog: dialog.accept())
    journeys.submit(person, page.get_by_role("button", name="Cancel my request"))
    with deni.uow.read_only() as uow:
        cancelled = uow.loans.get(asked.id)
    assert cancelled is not None
    assert cancelled.state is LoanState.CANCELLED

    # Up to date, and syncs that change nothing leave the status line's words alone.
    page.goto("/app/#/home")
    journeys.synced(person)
    page.evaluate(
        """() => {
            window.statusWrites = 0;
            new MutationObserver((changes) => { window.statusWrites += changes.length; })
                .observe(document.getElementById("status"),
                         { childList: true, characterData: true, subtree: true });
        }"""
    )
    before = int(page.locator("#status").get_attribute("data-syncs") or 0)
    for count in range(1, 4):
        page.evaluate("() => document.dispatchEvent(new Event('visibilitychange'))")
        journeys.synced(person, after=before + count - 1)
        page.wait_for_function(
            "(n) => Number(document.getElementById('status').dataset.syncs) >= n",
            arg=before + count,
        )
    assert page.evaluate("() => window.statusWrites") == 0
