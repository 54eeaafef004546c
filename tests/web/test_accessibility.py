"""axe-core (the engine behind Lighthouse's accessibility audit, bundled by axe-playwright-python)
finds nothing wrong on any screen of the web app, signed out and signed in, in English and in
Kiswahili, with forms showing their refusals too.

Every screen in the router (js/app.js) is visited: a screen added there without a visit here
fails `test_every_screen_of_the_router_is_checked`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from deni.bootstrap import Deni
from deni.domain.loans import Loan
from deni.domain.users import User
from deni.services import loans, users
from tests.support.accessibility import violations
from tests.support.builders import fund, lend, register
from tests.web import test_browser as journeys
from tests.web.test_browser import PIN, Person

open_browser = journeys.open_browser
PHONE = {"width": 360, "height": 740}
APP_JS = Path(__file__).parents[2] / "src/deni/entrypoints/web/static/js/app.js"

SIGNED_OUT = ["sign-in", "register", "forgot-pin"]
SIGNED_IN = [
    "home",
    "request",
    "top-up",
    "withdraw",
    "statement",
    "settings",
    "book",
    "messages",
]


def check(page: Page, where: str) -> None:
    page.wait_for_function(
        "() => document.querySelector('#view h1') && !document.querySelector('form[data-busy]')"
    )
    found = violations(page)
    assert found == [], f"{where}: {found}"


def show(page: Page, screen: str) -> None:
    page.goto(f"/app/#/{screen}")
    page.wait_for_function(
        "(screen) => location.hash === '#/' + screen && document.querySelector('#view h1')",
        arg=screen,
    )


@pytest.fixture
def people(deni: Deni) -> tuple[User, User, dict[str, Loan]]:
    """A borrower and a lender with a loan in every state that has a screen of its own."""
    lender = register(deni, name="Otieno Lender", pin=PIN)
    borrower = register(deni, name="Wanjiku Borrower", pin=PIN)
    fund(deni, lender, 50_000_00)
    fund(deni, borrower, 300_00)
    active = lend(deni, lender=lender, borrower=borrower, approve_with_pin=PIN)
    asked = lend(deni, lender=lender, borrower=borrower, approve_with_pin=None)
    done = lend(deni, lender=lender, borrower=borrower, approve_with_pin=PIN)
    loans.repay_loan(
        deni,
        borrower_id=borrower.id,
        loan_id=done.id,
        amount_cents=done.terms.principal_cents + done.terms.fee_cents,
        pin=PIN,
        idempotency_key="repaid-in-full",
    )
    return lender, borrower, {"active": active, "requested": asked, "repaid": done}


def test_every_screen_of_the_router_is_checked() -> None:
    routes = set(re.findall(r'^  "?([a-z-]+)"?: \{ render', APP_JS.read_text(), re.MULTILINE))
    assert routes == {*SIGNED_OUT, *SIGNED_IN, "loan"}, routes


def test_signed_out_screens_in_both_languages(
    deni: Deni, open_browser: Callable[[User], Person]
) -> None:
    stranger = register(deni, name="Nobody Here", pin=PIN)
    person = open_browser(stranger)
    page = person.page
    page.set_viewport_size(PHONE)
    for language in ("en", "sw"):
        page.goto("/app/")
        page.evaluate("(code) => localStorage.setItem('deni.language', code)", language)
        for screen in SIGNED_OUT:
            show(page, screen)
            page.reload()
            expect(page.locator("html")).to_have_attribute("lang", language)
            check(page, f"{screen} ({language})")
            # The same screen refusing what was typed: the refusals are read out too.
            page.locator("#view form button[type=submit]").first.click()
            expect(page.locator("#view .problem:not([hidden])").first).to_be_visible()
            check(page, f"{screen}, refusing ({language})")
        # Opening an account, second step: the code, a name, the PIN twice, a language.
        show(page, "register")
        page.locator("#field-phone").fill("0799 000 111")
        page.locator("#view form button[type=submit]").first.click()
        expect(page.locator("#code-sent")).to_be_visible()
        check(page, f"register, second step ({language})")


def test_signed_in_screens_in_both_languages(
    deni: Deni,
    people: tuple[User, User, dict[str, Loan]],
    open_browser: Callable[[User], Person],
) -> None:
    lender, borrower, loans_by_state = people
    for who, language in ((borrower, "en"), (lender, "en"), (borrower, "sw")):
        users.update_profile(deni, user_id=who.id, language="en")
        person = open_browser(who)
        page = person.page
        page.set_viewport_size(PHONE)
        journeys.sign_in(person)
        if language == "sw":
            users.update_profile(deni, user_id=who.id, language=language)
            page.reload()
            expect(page.locator("#status")).to_contain_text("Kila kitu kimefika")
        for screen in SIGNED_IN:
            show(page, screen)
            check(page, f"{screen} as {who.name} ({language})")
        for state, loan in loans_by_state.items():
            show(page, f"loan/{loan.id}")
            check(page, f"a loan {state} as {who.name} ({language})")
        # A refusal next to its field.
        show(page, "top-up")
        page.locator("#view form button[type=submit]").click()
        expect(page.locator("#view .field-problem")).to_be_visible()
        check(page, f"top-up, refusing ({language})")


def test_the_check_finds_what_is_wrong(deni: Deni, open_browser: Callable[[User], Person]) -> None:
    """The check is not blind: an input stripped of its label, and grey on grey, are found."""
    person = open_browser(register(deni, name="Nobody Here", pin=PIN))
    page = person.page
    show(page, "sign-in")
    page.evaluate(
        """() => {
            document.querySelector("label[for=field-phone]").remove();
            document.querySelector("#view h1").style.color = "#eeeeee";
        }"""
    )
    found = violations(page)
    assert any(line.startswith("label: ") and "#field-phone" in line for line in found), found
    assert any(line.startswith("color-contrast: ") for line in found), found
