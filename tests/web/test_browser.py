"""The web app in a real Chromium against a real Deni server over loopback HTTP.

Two people, each in a browser context of their own, do what the app is for: ask for a loan,
approve it with the PIN, repay it; offline too, where "offline" is Chromium's own network switch
and the app must open from its service worker and keep what is done until the network is back.
Every journey is checked against the server's books, not only against the screen.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    Route,
    expect,
)
from playwright.sync_api import (
    Error as PlaywrightError,
)
from sqlalchemy import update

from deni.adapters.db.sync.tables import sync_clients
from deni.bootstrap import Deni, database_engine
from deni.domain.loans import Loan, LoanState
from deni.domain.phone import mask_msisdn
from deni.domain.users import User
from deni.sandbox.server import BackgroundServer
from deni.services import queries
from tests.fakes import ManualClock
from tests.support.api import assert_ledger_whole
from tests.support.book import PIN as BOOK_PIN
from tests.support.book import build_book
from tests.support.builders import (
    SMS_WAIT_S,
    fund,
    lend,
    register,
    shows_number,
    sms_code,
    sms_texts,
    wallet_cents,
)

PIN = "2468"
TIMEOUT_MS = 10_000


@dataclass
class Person:
    user: User
    context: BrowserContext
    page: Page
    problems: list[str] = field(default_factory=list)

    @property
    def local_phone(self) -> str:
        return "0" + self.user.phone.removeprefix("254")

    def go_offline(self, offline: bool) -> None:
        """The network goes, or comes back. Chromium's offline emulation alone now and then
        lets a page's request through, so the API is also cut off at Playwright's router.
        Coming back, the router's cut goes first: the page's `online` event (and the service
        worker's sync event) must not find it still there."""
        if offline:
            self.context.set_offline(True)
            self.context.route("**/api/**", lambda route: route.abort("internetdisconnected"))
        else:
            self.context.unroute("**/api/**")
            self.context.set_offline(False)


@pytest.fixture
def open_browser(
    chromium: Browser, web_server: BackgroundServer
) -> Iterator[Callable[[User], Person]]:
    people: list[Person] = []

    def open_for(user: User) -> Person:
        context = chromium.new_context(base_url=web_server.url)
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        person = Person(user, context, page)
        page.on("pageerror", lambda error: person.problems.append(f"page error: {error}"))
        page.on("console", lambda message: _keep_errors(person, message))
        people.append(person)
        return person

    yield open_for
    for person in people:
        person.context.close()
    problems = [problem for person in people for problem in person.problems]
    assert problems == [], problems  # a script error anywhere fails the journey


def _keep_errors(person: Person, message: ConsoleMessage) -> None:
    # A refused request (wrong PIN, going offline) logs a network line; the app's own errors
    # are what matter here.
    if message.type == "error" and "Failed to load resource" not in message.text:
        person.problems.append(f"console: {message.text}")


@pytest.fixture
def lender(deni: Deni) -> User:
    user = register(deni, name="Otieno Lender", pin=PIN)
    fund(deni, user, 500_000)
    return user


@pytest.fixture
def borrower(deni: Deni) -> User:
    user = register(deni, name="Wanjiku Borrower", pin=PIN)
    fund(deni, user, 20_000)
    return user


def sign_in(person: Person, *, pin: str = PIN) -> None:
    page = person.page
    page.goto("/app/")
    page.get_by_label("Phone number").fill(person.local_phone)
    page.get_by_label("PIN").fill(pin)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#balance")).not_to_have_text("—")
    synced(person)


def synced(person: Person, *, after: int = 0) -> None:
    """More than `after` syncs have completed since the page opened, nothing waits in the
    queue and no form is still at work: the server has everything this phone did."""
    person.page.wait_for_function(
        """(after) => {
            const status = document.getElementById("status");
            return Number(status.dataset.syncs) > after && status.dataset.state === "synced"
                && document.querySelector("form[data-busy]") === null;
        }""",
        arg=after,
    )
    expect(person.page.locator("#status")).to_contain_text("Up to date")


def submit(person: Person, control: Locator) -> None:
    """Click what sends something, then wait until a sync that started after it is done."""
    before = int(person.page.locator("#status").get_attribute("data-syncs") or 0)
    control.click()
    synced(person, after=before)


def ask_for_loan(person: Person, lender: User, *, amount: str, fee: str, days: str) -> None:
    page = person.page
    page.get_by_role("link", name="Ask for a loan").click()
    page.get_by_label("Lender's phone number").fill("0" + lender.phone.removeprefix("254"))
    page.get_by_label("Amount (KES)").fill(amount)
    page.get_by_label("Days until it is due").fill(days)
    page.get_by_label("Fee you offer (KES)").fill(fee)


def loans_of(deni: Deni, user: User) -> list[Loan]:
    views = queries.list_loans(deni, user_id=user.id, role="borrower")
    return [view.loan for view in views]


def on_the_phone(page: Page) -> dict[str, list[Any]]:
    """Everything the app keeps in IndexedDB, store by store (a PIN must never be in it)."""
    stores: dict[str, list[Any]] = page.evaluate(
        """() => new Promise((resolve, reject) => {
            const opening = indexedDB.open("deni");
            opening.onerror = () => reject(opening.error);
            opening.onsuccess = () => {
                const db = opening.result;
                const names = [...db.objectStoreNames];
                const reads = names.map((name) => new Promise((done) => {
                    const read = db.transaction(name).objectStore(name).getAll();
                    read.onsuccess = () => done([name, read.result]);
                }));
                Promise.all(reads).then((pairs) => resolve(Object.fromEntries(pairs)));
            };
        })"""
    )
    return stores


def wait_for_offline_shell(person: Person) -> None:
    """The service worker controls the page, so a reload works with no network."""
    # A function, not an expression: polling an expression evals it, which the CSP forbids.
    person.page.wait_for_function("() => navigator.serviceWorker.controller !== null")


# -- journeys ---------------------------------------------------------------------------------


def test_a_loan_from_request_to_repaid_in_two_browsers(
    deni: Deni, lender: User, borrower: User, open_browser: Callable[[User], Person]
) -> None:
    wanjiku, otieno = open_browser(borrower), open_browser(lender)
    sign_in(wanjiku)
    expect(wanjiku.page.locator("#balance")).to_have_text("KES 200")

    ask_for_loan(wanjiku, lender, amount="1,000", fee="50", days="14")
    expect(wanjiku.page.locator("#quote")).to_contain_text("You will repay KES 1,050 by")
    submit(wanjiku, wanjiku.page.get_by_role("button", name="Send my request"))
    expect(wanjiku.page.locator("#waiting-lender")).to_contain_text("Otieno Lender")
    expect(wanjiku.page.locator("#waiting-lender")).to_contain_text("Waiting for approval")
    [loan] = loans_of(deni, borrower)
    assert (loan.state, loan.terms.principal_cents, loan.terms.fee_cents) == (
        LoanState.REQUESTED,
        100_000,
        5_000,
    )

    sign_in(otieno)
    otieno.page.locator("#asks").get_by_text("Wanjiku Borrower").click()
    expect(otieno.page.get_by_text("asks you for KES 1,000, to repay KES 1,050")).to_be_visible()
    otieno.page.get_by_label("Your PIN").fill(PIN)
    submit(otieno, otieno.page.get_by_role("button", name="Approve and send KES 1,000"))
    expect(otieno.page.locator("#lent")).to_contain_text("Wanjiku Borrower")
    expect(otieno.page.locator("#balance")).to_have_text("KES 4,000")
    assert loans_of(deni, borrower)[0].state is LoanState.ACTIVE
    assert wallet_cents(deni, borrower) == 120_000

    wanjiku.page.reload()  # opening the app syncs
    synced(wanjiku)
    expect(wanjiku.page.locator("#balance")).to_have_text("KES 1,200")
    wanjiku.page.locator("#owe").get_by_text("Otieno Lender").click()
    expect(wanjiku.page.get_by_label("Amount to repay (KES)")).to_have_value("1050")
    wanjiku.page.get_by_label("Your PIN").fill(PIN)
    submit(wanjiku, wanjiku.page.get_by_role("button", name="Repay from my wallet"))
    expect(wanjiku.page.locator("#balance")).to_have_text("KES 150")
    expect(wanjiku.page.get_by_text("Past loans (1)")).to_be_visible()
    assert loans_of(deni, borrower)[0].state is LoanState.REPAID
    assert wallet_cents(deni, borrower) == 15_000
    assert wallet_cents(deni, lender) == 500_000 - 100_000 + 105_000
    assert_ledger_whole(deni)


def test_offline_the_app_opens_keeps_what_is_done_and_sends_it_once_online(
    deni: Deni, lender: User, borrower: User, open_browser: Callable[[User], Person]
) -> None:
    wanjiku = open_browser(borrower)
    sign_in(wanjiku)
    wait_for_offline_shell(wanjiku)

    wanjiku.go_offline(True)
    wanjiku.page.reload()  # from the service worker's cache, data from IndexedDB
    expect(wanjiku.page.locator("#balance")).to_have_text("KES 200")
    expect(wanjiku.page.locator("#status")).to_contain_text("Offline")

    ask_for_loan(wanjiku, lender, amount="500", fee="0", days="7")
    wanjiku.page.get_by_role("button", name="Send my request").click()
    expect(wanjiku.page.locator("#queue")).to_contain_text("Waiting to sync (1)")
    expect(wanjiku.page.locator("#queue")).to_contain_text("for a loan of KES 500")
    wanjiku.page.reload()  # closing the app offline loses nothing
    expect(wanjiku.page.locator("#queue")).to_contain_text("Waiting to sync (1)")
    assert loans_of(deni, borrower) == []

    [queued] = on_the_phone(wanjiku.page)["queue"]
    queued_loan_id = queued["args"]["loan_id"]
    wanjiku.go_offline(False)  # the browser's online event starts a sync
    synced(wanjiku)
    [loan] = loans_of(deni, borrower)
    assert loan.id == queued_loan_id  # the id made offline is the loan's id on the server
    assert loan.terms.principal_cents == 50_000
    expect(wanjiku.page.locator("#waiting-lender")).to_contain_text("Waiting for approval")

    wanjiku.page.reload()  # a second sync sends nothing again
    synced(wanjiku)
    assert len(loans_of(deni, borrower)) == 1


def test_an_approval_waits_for_the_pin_which_is_never_stored(
    deni: Deni, lender: User, borrower: User, open_browser: Callable[[User], Person]
) -> None:
    wanjiku, otieno = open_browser(borrower), open_browser(lender)
    sign_in(wanjiku)
    ask_for_loan(wanjiku, lender, amount="300", fee="30", days="10")
    submit(wanjiku, wanjiku.page.get_by_role("button", name="Send my request"))

    sign_in(otieno)
    wait_for_offline_shell(otieno)
    otieno.go_offline(True)
    otieno.page.locator("#asks").get_by_text("Wanjiku Borrower").click()
    otieno.page.get_by_label("Your PIN").fill(PIN)
    otieno.page.get_by_role("button", name="Approve and send KES 300").click()
    expect(otieno.page.locator("#queue")).to_contain_text("Approve a loan request")
    stored = json.dumps(on_the_phone(otieno.page))
    assert "approve_loan" in stored
    assert not shows_number(PIN, stored)  # the PIN stays in the page's memory only

    otieno.page.reload()  # the page's memory, and with it the PIN, is gone
    expect(otieno.page.locator("#queue")).to_contain_text("it needs your PIN to be sent")
    otieno.go_offline(False)  # the online event syncs; the approval stays behind
    otieno.page.wait_for_function(
        "() => Number(document.getElementById('status').dataset.syncs) > 0"
    )
    expect(otieno.page.locator("#status")).to_have_text("1 waiting to sync")
    assert loans_of(deni, borrower)[0].state is LoanState.REQUESTED  # nothing sent without it

    otieno.page.locator("#queue").get_by_label("PIN").fill("1357")
    otieno.page.get_by_role("button", name="Send approval").click()
    expect(otieno.page.locator("#queue")).to_contain_text("Not done")
    assert loans_of(deni, borrower)[0].state is LoanState.REQUESTED
    otieno.page.get_by_role("button", name="OK").click()
    expect(otieno.page.locator("#queue")).to_have_count(0)

    otieno.page.locator("#asks").get_by_text("Wanjiku Borrower").click()
    otieno.page.get_by_label("Your PIN").fill(PIN)
    submit(otieno, otieno.page.get_by_role("button", name="Approve and send KES 300"))
    assert loans_of(deni, borrower)[0].state is LoanState.ACTIVE
    assert wallet_cents(deni, borrower) == 20_000 + 30_000
    assert_ledger_whole(deni)


def test_money_out_of_the_wallet_waits_for_the_pin_which_is_never_stored(
    deni: Deni, lender: User, borrower: User, open_browser: Callable[[User], Person]
) -> None:
    loan = lend(deni, lender=lender, borrower=borrower, fee_cents=0, approve_with_pin=PIN)
    wanjiku = open_browser(borrower)
    sign_in(wanjiku)
    page = wanjiku.page
    wait_for_offline_shell(wanjiku)
    wanjiku.go_offline(True)
    page.locator("#owe").get_by_text("Otieno Lender").click()
    page.get_by_label("Amount to repay (KES)").fill("300")
    page.get_by_role("button", name="Repay from my wallet").click()
    expect(page.get_by_role("alert")).to_contain_text("A PIN is 4 digits")  # asked for first
    page.get_by_label("Your PIN").fill(PIN)
    page.get_by_role("button", name="Repay from my wallet").click()
    page.get_by_role("link", name="Withdraw").click()
    page.get_by_label("Amount to send to M-PESA (KES)").fill("100")
    page.get_by_label("Your PIN").fill(PIN)
    page.get_by_role("button", name="Withdraw").click()
    expect(page.locator("#queue")).to_contain_text("Waiting to sync (2)")
    stored = json.dumps(on_the_phone(page))
    assert "repay_loan" in stored
    assert '"withdraw"' in stored
    assert not shows_number(PIN, stored)  # the PINs stay in the page's memory only

    page.reload()  # the page's memory, and with it the PINs, is gone
    expect(page.locator("#queue")).to_contain_text("Repay KES 300: it needs your PIN")
    expect(page.locator("#queue")).to_contain_text("Withdraw KES 100 to M-PESA: it needs your PIN")
    wanjiku.go_offline(False)  # the online event syncs; both stay behind
    page.wait_for_function("() => Number(document.getElementById('status').dataset.syncs) > 0")
    expect(page.locator("#status")).to_have_text("2 waiting to sync")
    assert wallet_cents(deni, borrower) == 20_000 + 100_000  # nothing left without the PIN

    page.locator("#queue").get_by_label("PIN").first.fill("1357")
    page.locator("#queue").get_by_role("button", name="Send").first.click()
    expect(page.locator("#queue")).to_contain_text("Not done")
    assert wallet_cents(deni, borrower) == 20_000 + 100_000
    with deni.uow.read_only() as uow:
        refused = uow.users.get(borrower.id)
    assert refused is not None
    assert refused.session_failed_pin_attempts == 1  # counted as in any other session
    page.locator("#queue").get_by_label("PIN").fill(PIN)
    page.locator("#queue").get_by_role("button", name="Send").click()
    expect(page.locator("#queue")).to_contain_text("M-PESA is not switched on here")  # in tests
    for _ in range(2):
        page.get_by_role("button", name="OK").first.click()
    expect(page.locator("#queue")).to_have_count(0)

    page.locator("#owe").get_by_text("Otieno Lender").click()
    page.get_by_label("Amount to repay (KES)").fill("300")
    page.get_by_label("Your PIN").fill(PIN)
    submit(wanjiku, page.get_by_role("button", name="Repay from my wallet"))
    assert wallet_cents(deni, borrower) == 20_000 + 100_000 - 30_000
    with deni.uow.read_only() as uow:
        repaid = uow.loans.get(loan.id)
        forgiven = uow.users.get(borrower.id)
    assert repaid is not None
    assert repaid.owed().total_cents == 100_000 - 30_000
    assert forgiven is not None
    assert forgiven.session_failed_pin_attempts == 0  # the right PIN forgave the wrong one
    assert_ledger_whole(deni)


def test_register_and_bad_input_get_a_reason_and_change_nothing(
    deni: Deni, open_browser: Callable[[User], Person], lender: User
) -> None:
    person = open_browser(lender)
    page = person.page
    page.goto("/app/#/register")
    page.get_by_label("Phone number").fill("12345")
    page.get_by_role("button", name="Send me a code").click()
    expect(page.get_by_role("alert")).to_contain_text("Safaricom number")

    page.get_by_label("Phone number").fill("0799 000 111")
    page.get_by_role("button", name="Send me a code").click()
    expect(page.locator("#code-sent")).to_contain_text("a code is on its way by SMS")
    page.get_by_label("Code from the SMS").fill("000000")
    page.get_by_label("Your name").fill("Akinyi Atieno")
    page.get_by_label("Choose a PIN (4 digits)").fill("7141")
    page.get_by_label("The same PIN again").fill("2724")
    page.get_by_role("button", name="Open my account").click()
    expect(page.get_by_role("alert")).to_contain_text("The two PINs differ")
    page.get_by_label("The same PIN again").fill("7141")
    page.get_by_role("button", name="Open my account").click()
    expect(page.get_by_role("alert")).to_contain_text("The code is wrong")  # a guess
    with deni.uow.read_only() as uow:
        assert uow.users.get_by_phone("254799000111") is None

    page.get_by_label("Code from the SMS").fill(sms_code(deni, "0799000111"))
    page.get_by_role("button", name="Open my account").click()
    expect(page.locator("#balance")).to_have_text("KES 0")
    expect(page.get_by_text("Hello, Akinyi Atieno")).to_be_visible()

    page.get_by_role("link", name="Ask for a loan").click()
    page.get_by_label("Lender's phone number").fill("0" + lender.phone.removeprefix("254"))
    page.get_by_label("Amount (KES)").fill("ten")
    page.get_by_role("button", name="Send my request").click()
    expect(page.get_by_role("alert")).to_contain_text("Enter an amount")

    page.get_by_label("Amount (KES)").fill("5")  # under the KES 10 the server lends
    page.get_by_role("button", name="Send my request").click()
    expect(page.get_by_role("alert")).to_contain_text("The least you can ask for is KES 10")
    with deni.uow.read_only() as uow:
        akinyi = uow.users.get_by_phone("254799000111")
    assert akinyi is not None
    assert loans_of(deni, akinyi) == []


def test_signing_in_with_a_wrong_pin_says_so(
    open_browser: Callable[[User], Person], borrower: User
) -> None:
    person = open_browser(borrower)
    person.page.goto("/app/")
    person.page.get_by_label("Phone number").fill(person.local_phone)
    person.page.get_by_label("PIN").fill("0000")
    person.page.get_by_role("button", name="Sign in").click()
    expect(person.page.get_by_role("alert")).to_be_visible()
    expect(person.page.locator("#balance")).to_have_count(0)


def test_money_dates_and_numbers_read_as_people_write_them(page: Page) -> None:
    page.goto("/app/")
    results = page.evaluate(
        """async () => {
            const f = await import("/app/js/format.js");
            return {
                kes: [125000, 100, 5, -250050, 0].map(f.kes),
                parsed: [
                    "1,250", "1250.5", "KES 10", " 7 ", "0", "-5", "1e3", "12.345",
                    "250000", "250000.01", "", "٣",
                ].map((t) => f.parseKes(t)),
                whole: ["500", "500.00", "500.50"].map(
                    (t) => f.parseKes(t, {wholeShillings: true})
                ),
                phones: ["0712 345 678", "+254712345678", "254112345678", "0812345678",
                         "07123456789"].map(f.normalisePhone),
                today: f.nairobiToday(new Date("2026-11-26T21:30:00Z")),
                due: f.addDays("2026-12-20", 14),
                long: f.longDate("2027-01-03"),
            };
        }"""
    )
    assert results["kes"] == ["KES 1,250", "KES 1", "KES 0.05", "-KES 2,500.50", "KES 0"]
    assert results["parsed"] == [
        125_000,
        125_050,
        1_000,
        700,
        None,
        None,
        None,
        None,
        25_000_000,
        None,
        None,
        None,
    ]
    assert results["whole"] == [50_000, 50_000, None]
    assert results["phones"] == ["254712345678", "254712345678", "254112345678", None, None]
    assert results["today"] == "2026-11-27"  # 00:30 in Nairobi is already the next day
    assert results["due"] == "2027-01-03"
    assert results["long"] == "3 Jan 2027"


def test_a_refresh_answer_lost_on_the_way_does_not_sign_the_phone_out(
    deni: Deni, borrower: User, open_browser: Callable[[User], Person]
) -> None:
    wanjiku = open_browser(borrower)
    sign_in(wanjiku)
    swallowed: list[int] = []

    def lose_the_answer(route: Route) -> None:
        answer = route.fetch()  # Deni swaps the token...
        swallowed.append(answer.status)
        with contextlib.suppress(PlaywrightError):  # the page may have gone meanwhile
            route.abort("connectionreset")  # ...and the phone never hears of it

    wanjiku.page.route("**/api/v1/auth/refresh", lose_the_answer)
    wanjiku.page.reload()  # a new page holds no access token: it refreshes first
    expect(wanjiku.page.locator("#status")).to_contain_text("Offline")
    assert swallowed  # the app may ask more than once: every answer is lost
    assert set(swallowed) == {200}

    wanjiku.page.unroute("**/api/v1/auth/refresh")
    wanjiku.page.reload()  # the spent token again, within the grace: the unused one is swapped
    synced(wanjiku)
    expect(wanjiku.page.locator("#balance")).to_have_text("KES 200")


def test_kiswahili_from_registration_and_settings_that_reach_the_server(
    deni: Deni, open_browser: Callable[[User], Person], lender: User
) -> None:
    page = open_browser(lender).page
    page.goto("/app/")
    page.get_by_role("button", name="Kiswahili").click()
    expect(page.get_by_role("button", name="Ingia")).to_be_visible()
    page.get_by_role("link", name="Fungua akaunti").click()
    page.get_by_label("Namba ya simu").fill("0799 000 222")
    page.get_by_role("button", name="Nitumie namba ya siri").click()
    expect(page.locator("#code-sent")).to_contain_text("inakuja kwa SMS")
    texts = sms_texts(deni, "0799000222", wait_s=SMS_WAIT_S)
    assert "Deni:" in texts[0]  # in Kiswahili, as the page is
    assert "namba hii ni yako" in texts[0]
    page.get_by_label("Namba ya siri kutoka SMS").fill(sms_code(deni, "0799000222"))
    page.get_by_label("Jina lako kamili").fill("Baraka Mwangi")
    page.get_by_label("Chagua PIN (tarakimu 4)").fill("4381")
    page.get_by_label("Weka PIN hiyo tena").fill("4381")
    page.get_by_role("button", name="Fungua akaunti yangu").click()
    expect(page.get_by_text("Habari, Baraka Mwangi")).to_be_visible()
    expect(page.get_by_role("link", name="Omba mkopo")).to_be_visible()
    expect(page.locator("#status")).to_contain_text("Kila kitu kimefika")
    with deni.uow.read_only() as uow:
        baraka = uow.users.get_by_phone("254799000222")
    assert baraka is not None
    assert baraka.language == "sw"
    with deni.uow.read_only() as uow:
        before = uow.mpesa_preferences.get(baraka.id)
    assert before.auto_payout is False

    page.get_by_role("button", name="Mipangilio").click()
    page.get_by_label("Pesa zinazoingia akaunti yangu ziende M-PESA").check()
    page.get_by_label("PIN yako, kuhifadhi haya").fill("4381")  # it sends money to M-PESA
    page.get_by_role("button", name="Hifadhi").click()
    expect(page.locator("#saved")).to_contain_text("Imehifadhiwa")
    assert not shows_number("4381", json.dumps(on_the_phone(page)))
    page.get_by_role("button", name="English").click()
    expect(page.get_by_role("heading", name="Settings")).to_be_visible()
    page.get_by_role("link", name="Back").click()
    expect(page.locator("#status")).to_contain_text("Up to date")
    expect(page.get_by_text("Waiting to sync")).to_have_count(0)
    with deni.uow.read_only() as uow:
        baraka = uow.users.get_by_phone("254799000222")
        assert baraka is not None
        preferences = uow.mpesa_preferences.get(baraka.id)
    assert baraka.language == "en"
    assert preferences.auto_payout is True
    assert preferences.disburse_to_mpesa is before.disburse_to_mpesa  # only what was touched

    page.get_by_role("button", name="Settings").click()
    page.get_by_label("Your PIN now").fill("7141")
    page.get_by_label("Choose a PIN (4 digits)").fill("2538")
    page.get_by_label("The same PIN again").fill("2538")
    page.get_by_role("button", name="Change my PIN").click()
    expect(page.get_by_role("alert")).to_contain_text("Wrong PIN")
    page.get_by_label("Your PIN now").fill("4381")
    page.get_by_role("button", name="Change my PIN").click()
    expect(page.locator("#saved")).to_contain_text("Your PIN is changed")
    with deni.uow.read_only() as uow:
        baraka = uow.users.get_by_phone("254799000222")
    assert baraka is not None
    assert deni.hasher.verify("2538", baraka.pin_hash)


def test_an_account_opened_before_numbers_were_checked_confirms_its_number(
    deni: Deni, open_browser: Callable[[User], Person]
) -> None:
    legacy = register(deni, name="Legacy Lucy", pin=PIN, phone_proven=False)
    lucy = open_browser(legacy)
    sign_in(lucy)
    page = lucy.page
    page.get_by_role("button", name="Settings").click()
    card = page.locator("#prove-number")
    expect(card).to_contain_text("you cannot lend or borrow")
    card.get_by_role("button", name="Send me a code").click()
    card.get_by_label("Code from the SMS").fill("000000")
    card.get_by_role("button", name="Confirm my number").click()
    expect(card.get_by_role("alert")).to_contain_text("The code is wrong")
    card.get_by_label("Code from the SMS").fill(sms_code(deni, legacy.phone))
    card.get_by_role("button", name="Confirm my number").click()
    expect(card).to_contain_text("Your number is confirmed")
    with deni.uow.read_only() as uow:
        proven = uow.users.get(legacy.id)
    assert proven is not None
    assert proven.phone_proven
    page.get_by_role("link", name="Back").click()
    page.get_by_role("button", name="Settings").click()
    expect(page.locator("#prove-number")).to_have_count(0)  # the profile synced as proven


def test_the_lender_reminds_then_forgives_what_is_still_owed(
    deni: Deni, lender: User, borrower: User, open_browser: Callable[[User], Person]
) -> None:
    loan = lend(
        deni,
        lender=lender,
        borrower=borrower,
        principal_cents=80_000,
        fee_cents=0,
        approve_with_pin=PIN,
    )
    assert loan.state is LoanState.ACTIVE
    otieno = open_browser(lender)
    sign_in(otieno)
    page = otieno.page
    page.locator("#lent").get_by_text("Wanjiku Borrower").click()
    page.get_by_role("button", name="Send Wanjiku Borrower a reminder").click()
    expect(page.locator("#reminded")).to_contain_text("Wanjiku Borrower is reminded by SMS")
    sent = queries.list_notifications(
        deni, user_id=borrower.id, unread_only=False, limit=20, offset=0
    )
    assert [n.kind for n in sent].count("lender_reminder") == 1
    page.get_by_role("button", name="Send Wanjiku Borrower a reminder").click()
    expect(page.get_by_role("alert").first).to_contain_text("today already")

    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.get_by_label("Your PIN").fill(PIN)
    page.get_by_role("button", name="Forgive the KES 800 still owed").click()
    page.wait_for_function("() => document.querySelector('form[data-busy]') === null")
    assert asked == ["Forgive Wanjiku Borrower the KES 800 still owed? This cannot be undone."]
    assert loans_of(deni, borrower)[0].state is LoanState.ACTIVE  # said no: nothing sent
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_label("Your PIN").fill("0000")
    page.get_by_role("button", name="Forgive the KES 800 still owed").click()
    expect(page.get_by_role("alert").last).to_contain_text("Wrong PIN")
    assert loans_of(deni, borrower)[0].state is LoanState.ACTIVE
    page.get_by_label("Your PIN").fill(PIN)
    page.get_by_role("button", name="Forgive the KES 800 still owed").click()
    expect(page.get_by_text("Past loans (1)")).to_be_visible()
    assert loans_of(deni, borrower)[0].state is LoanState.WRITTEN_OFF
    assert wallet_cents(deni, borrower) == 20_000 + 80_000  # forgiving moves no money
    assert_ledger_whole(deni)


def test_download_my_data_then_close_the_account(
    deni: Deni, borrower: User, open_browser: Callable[[User], Person]
) -> None:
    wanjiku = open_browser(borrower)
    sign_in(wanjiku)
    page = wanjiku.page
    page.get_by_role("button", name="Settings").click()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download my data").click()
    saved = json.loads(Path(download.value.path()).read_text())
    assert saved["user"]["name"] == "Wanjiku Borrower"
    assert saved["wallet"]["balance_cents"] == 20_000
    assert "pin_hash" not in json.dumps(saved)
    assert download.value.suggested_filename.startswith("deni-data-")

    page.on("dialog", lambda dialog: dialog.accept())  # "Close your Deni account?"
    page.get_by_label("Your PIN", exact=True).fill(PIN)
    page.get_by_role("button", name="Close my account").click()
    expect(page.get_by_role("alert").last).to_contain_text("wallet")  # KES 200 is still in it
    with deni.uow.read_only() as uow:
        still = uow.users.get(borrower.id)
    assert still is not None
    assert still.closed_at is None

    akinyi = open_browser(register(deni, name="Akinyi Empty", pin=PIN))  # nothing in it
    sign_in(akinyi)
    akinyi.page.on("dialog", lambda dialog: dialog.accept())
    akinyi.page.get_by_role("button", name="Settings").click()
    akinyi.page.get_by_label("Your PIN", exact=True).fill(PIN)
    akinyi.page.get_by_role("button", name="Close my account").click()
    expect(akinyi.page.locator("#status")).to_contain_text("Your Deni account is closed")
    expect(akinyi.page.get_by_role("button", name="Sign in")).to_be_visible()
    with deni.uow.read_only() as uow:
        closed = uow.users.get(akinyi.user.id)
    assert closed is not None
    assert closed.closed_at is not None
    assert on_the_phone(akinyi.page) == {"meta": [], "queue": [], "records": []}


def test_a_server_that_lost_this_phones_mutations_gets_the_waiting_ones_afresh(
    deni: Deni, lender: User, borrower: User, open_browser: Callable[[User], Person]
) -> None:
    wanjiku = open_browser(borrower)
    sign_in(wanjiku)
    ask_for_loan(wanjiku, lender, amount="100", fee="0", days="7")
    submit(wanjiku, wanjiku.page.get_by_role("button", name="Send my request"))
    first_client = on_the_phone(wanjiku.page)["meta"]
    # Deni restored from a backup taken before that push: it expects mutation 1 again.
    with database_engine(deni).begin() as connection:
        connection.execute(update(sync_clients).values(last_mutation_id=0))

    ask_for_loan(wanjiku, lender, amount="200", fee="0", days="7")
    submit(wanjiku, wanjiku.page.get_by_role("button", name="Send my request"))
    amounts = sorted(loan.terms.principal_cents for loan in loans_of(deni, borrower))
    assert amounts == [10_000, 20_000]  # the first once, the waiting one too, nothing twice
    assert on_the_phone(wanjiku.page)["meta"] != first_client  # a new install id
    expect(wanjiku.page.locator("#waiting-lender").get_by_role("listitem")).to_have_count(2)


def test_terms_edited_on_two_phones_wait_for_the_borrowers_choice(
    deni: Deni,
    lender: User,
    borrower: User,
    open_browser: Callable[[User], Person],
    web_server: BackgroundServer,
) -> None:
    wanjiku = open_browser(borrower)
    sign_in(wanjiku)
    page = wanjiku.page
    ask_for_loan(wanjiku, lender, amount="100", fee="0", days="7")
    submit(wanjiku, page.get_by_role("button", name="Send my request"))
    [loan] = loans_of(deni, borrower)

    page.locator("#waiting-lender").get_by_text("Otieno Lender").click()
    page.get_by_label("Amount (KES)").fill("150")
    page.get_by_label("Fee you offer (KES)").fill("10")
    page.get_by_label("Due date").fill("2027-01-10")
    submit(wanjiku, page.get_by_role("button", name="Change the terms"))
    [loan] = loans_of(deni, borrower)
    assert (loan.terms.principal_cents, loan.terms.fee_cents) == (15_000, 1_000)
    assert loan.terms.due_date.isoformat() == "2027-01-10"

    wanjiku.go_offline(True)
    page.locator("#waiting-lender").get_by_text("Otieno Lender").click()
    page.get_by_label("Amount (KES)").fill("300")
    page.get_by_role("button", name="Change the terms").click()
    # Meanwhile her other phone changes the same request, and its edit arrives first.
    other_phone = _push_from_another_phone(
        web_server.url,
        borrower,
        {"loan_id": loan.id, "base_version": loan.version, "principal_cents": 25_000},
    )
    assert other_phone == "applied"
    wanjiku.go_offline(False)
    expect(page.locator("#choices")).to_contain_text(
        "Deni has KES 250, fee KES 10, due 10 Jan 2027; this phone asked for KES 300"
    )
    assert loans_of(deni, borrower)[0].terms.principal_cents == 25_000  # nothing chosen yet
    submit(wanjiku, page.get_by_role("button", name="Keep this phone's"))
    expect(page.locator("#choices")).to_have_count(0)
    assert loans_of(deni, borrower)[0].terms.principal_cents == 30_000


def _push_from_another_phone(url: str, user: User, edit: dict[str, Any]) -> str:
    with httpx.Client(base_url=url + "/api/v1") as api:
        login = api.post("/auth/login", json={"phone": user.phone, "pin": PIN}).json()
        pushed = api.post(
            "/sync/push",
            headers={"Authorization": f"Bearer {login['access_token']}"},
            json={
                "client_id": str(uuid.uuid4()),
                "schema_version": 1,
                "mutations": [{"id": 1, "name": "edit_loan_request", "args": edit}],
            },
        )
    assert pushed.status_code == 200, pushed.text
    return str(pushed.json()["results"][0]["status"])


# -- my book ----------------------------------------------------------------------------------


def test_my_book_as_lender_and_as_borrower_online_then_offline(
    deni: Deni, open_browser: Callable[[User], Person]
) -> None:
    """The scripted book of tests/support/book.py, read from the header's "My book"; offline,
    the copy fetched last is shown and says so."""
    assert isinstance(deni.clock, ManualClock)
    scripted = build_book(deni, deni.clock)
    wanjiku = open_browser(scripted.wanjiku)
    sign_in(wanjiku, pin=BOOK_PIN)
    wait_for_offline_shell(wanjiku)
    page = wanjiku.page
    page.get_by_role("link", name="My book").click()
    expect(page.locator("h1")).to_have_text("My book")
    expect(page.locator("#book-as-of")).to_contain_text("As of")

    def shows_wanjikus_book() -> None:
        expect(page.locator("#book-lent")).to_have_text("KES 350")
        expect(page.locator("#book-outstanding")).to_have_text("KES 205.50")
        expect(page.locator("#book-repaid")).to_have_text("KES 165")
        expect(page.locator("#book-fees-earned")).to_have_text("KES 15")
        expect(page.locator("#book-fees-due")).to_have_text("KES 5.50")
        expect(page.locator("#book-overdue")).to_have_text("KES 205.50 (2 loans)")
        rows = page.locator("#book-borrowers li")
        expect(rows).to_have_count(3)
        expect(rows.nth(0)).to_contain_text("Akinyi Atieno")
        expect(rows.nth(0)).to_contain_text(mask_msisdn(scripted.akinyi.phone))
        expect(rows.nth(0)).to_contain_text("owed KES 153, repaid KES 60, overdue KES 153")
        expect(rows.nth(2)).to_contain_text("Otieno Odhiambo")
        expect(page.locator("#history-loans li")).to_have_count(0)  # she never borrowed

    shows_wanjikus_book()
    assert scripted.akinyi.phone not in page.content()

    wanjiku.go_offline(True)
    page.reload()  # the shell from the service worker, the book from the phone's copy
    expect(page.locator("#book-as-of")).to_contain_text("Offline: this is the copy from")
    shows_wanjikus_book()


def test_a_borrowers_history_in_swahili(deni: Deni, open_browser: Callable[[User], Person]) -> None:
    assert isinstance(deni.clock, ManualClock)
    scripted = build_book(deni, deni.clock)
    njeri = open_browser(scripted.njeri)  # Njeri chose Kiswahili
    page = njeri.page
    page.goto("/app/")
    page.get_by_label("Phone number").fill(njeri.local_phone)
    page.get_by_label("PIN").fill(BOOK_PIN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#status")).to_have_attribute("data-state", "synced")
    expect(page.locator("#status")).to_contain_text("Kila kitu kimefika")  # her language
    page.get_by_role("link", name="Daftari langu").click()
    expect(page.locator("#history-borrowed")).to_have_text("KES 90")
    expect(page.locator("#history-repaid")).to_have_text("KES 10")
    expect(page.locator("#history-outstanding")).to_have_text("KES 52.50")
    loans = page.locator("#history-loans li")
    expect(loans).to_have_count(3)
    punctuality = [loans.nth(n).get_attribute("data-punctuality") for n in range(3)]
    assert punctuality == ["late", "not_lent", "late"]  # G written off, F declined, C overdue
    expect(loans.nth(2)).to_contain_text("kutoka kwa Wanjiku Kamau")
    expect(loans.nth(2)).to_contain_text("Kwa kuchelewa")
    expect(page.locator("#book-lent")).to_have_text("KES 0")  # she lent nothing


# What start() sets up once per page: a second start would open a second IndexedDB
# connection, a second sync timer and every listener twice (so every sync twice).
COUNT_STARTS = """
(() => {
  const counts = { dbOpens: 0, hashchange: 0, syncTimers: 0 };
  window.__deniCounts = counts;
  const open = IDBFactory.prototype.open;
  IDBFactory.prototype.open = function (name, ...rest) {
    if (name === "deni") counts.dbOpens += 1;
    return open.call(this, name, ...rest);
  };
  const listen = window.addEventListener;
  window.addEventListener = function (type, ...rest) {
    if (type === "hashchange") counts.hashchange += 1;
    return listen.call(this, type, ...rest);
  };
  const every = window.setInterval;
  window.setInterval = function (handler, ms, ...rest) {
    if (ms === 30000) counts.syncTimers += 1;
    return every.call(this, handler, ms, ...rest);
  };
})();
"""


def test_the_app_starts_once_per_page(
    open_browser: Callable[[User], Person], borrower: User
) -> None:
    person = open_browser(borrower)
    person.context.add_init_script(COUNT_STARTS)
    # Signing in and a whole sync come after start() has set up: a second start() running
    # beside the first would have opened its store and set its timer by then.
    sign_in(person)
    person.page.reload()
    synced(person)
    counts = person.page.evaluate("window.__deniCounts")
    assert counts == {"dbOpens": 1, "hashchange": 1, "syncTimers": 1}, counts
