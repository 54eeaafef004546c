"""The web app as a new member meets it on a small phone: what shows, where a refusal lands,
what the keyboard reaches, how big a target is, and how it reads.

Each test opens a 360x740 Chromium page, the size of an entry-level Android phone.
"""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, expect

from deni.bootstrap import Deni
from deni.domain.users import User
from tests.web import test_browser as journeys
from tests.web.test_browser import Person

# The journeys' fixtures, shared: two members with money, and a browser per person.
open_browser = journeys.open_browser
lender = journeys.lender
borrower = journeys.borrower

PHONE = {"width": 360, "height": 740}


def on_a_phone(person: Person) -> Page:
    person.page.set_viewport_size(PHONE)
    return person.page


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
