"""What the web app says about PINs and numbers, in a real Chromium against a real Deni:

- before a lock, the member is told "1 try left";
- at sign-in, a wrong PIN for a member and any PIN for a number not on Deni get the same words;
- a PIN that is not 4 digits is refused at the form and never sent, so never counted;
- M-PESA needs a Safaricom number: an Airtel member's top-up is refused in plain words.
"""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, Request, expect

from deni.bootstrap import Deni
from deni.domain.users import User
from deni.services import users
from tests.support.builders import fund, lend, register
from tests.web import test_browser as journeys
from tests.web.test_browser import PIN, Person

open_browser = journeys.open_browser
STRANGER_PHONE = "0799 123 456"  # Safaricom's range, and nobody's on Deni


def sign_in_refusal(page: Page, phone: str, pin: str) -> str:
    page.locator("#field-phone").fill(phone)
    page.locator("#field-pin").fill(pin)
    page.get_by_role("button", name="Sign in").click()
    problem = page.locator("#view form .problem:not([hidden])").first
    expect(problem).to_be_visible()
    text = problem.text_content() or ""
    page.locator("#field-pin").fill("")
    return text


def member_of(deni: Deni, user: User) -> User:
    return users.get_user(deni, user_id=user.id)


def test_sign_in_says_one_try_left_the_same_for_a_member_and_a_stranger(
    deni: Deni, open_browser: Callable[[User], Person]
) -> None:
    member = register(deni, name="Akinyi Atieno", pin=PIN)
    person = open_browser(member)
    page = person.page
    page.goto("/app/")
    to_member = [sign_in_refusal(page, person.local_phone, pin) for pin in ("9999", "9998")]
    to_stranger = [sign_in_refusal(page, STRANGER_PHONE, pin) for pin in ("9999", "9998")]
    assert to_member == to_stranger
    assert to_member[0] == "Wrong phone number or PIN."
    assert "1 try left" in to_member[1]
    # The third: locked, in the same words for both.
    assert sign_in_refusal(page, person.local_phone, "9997") == sign_in_refusal(
        page, STRANGER_PHONE, "9997"
    )
    assert member_of(deni, member).remote_failed_pin_attempts == 0  # the lock took them


def test_a_pin_that_is_not_4_digits_is_refused_at_the_form_and_never_sent(
    deni: Deni, open_browser: Callable[[User], Person]
) -> None:
    member = register(deni, name="Akinyi Atieno", pin=PIN)
    fund(deni, member, 1_000_00)
    person = open_browser(member)
    page = person.page
    sent: list[str] = []

    def keep(request: Request) -> None:
        if "/api/" in request.url and request.method == "POST":
            sent.append(request.url)

    page.on("request", keep)
    page.goto("/app/")
    for pin in ("123", "12a4", "    "):
        refusal = sign_in_refusal(page, person.local_phone, pin)
        assert refusal == "A PIN is 4 digits."
    page.locator("#field-pin").fill("12345")  # a fifth digit does not go in
    expect(page.locator("#field-pin")).to_have_value("1234")
    assert sent == []
    assert member_of(deni, member).remote_failed_pin_attempts == 0

    journeys.sign_in(person)
    page.get_by_role("link", name="Withdraw").click()
    page.get_by_label("Amount to send to M-PESA (KES)").fill("100")
    sent.clear()
    for pin in ("123", "1 3 "):
        page.get_by_label("Your PIN").fill(pin)
        page.get_by_role("button", name="Withdraw").click()
        expect(page.locator("#field-pin-problem")).to_have_text("A PIN is 4 digits.")
    assert [url for url in sent if "/sync/push" in url] == []
    assert member_of(deni, member).session_failed_pin_attempts == 0


def test_a_wrong_pin_in_the_app_says_one_try_left_before_the_lock(
    deni: Deni, open_browser: Callable[[User], Person]
) -> None:
    """In a session, in Kiswahili: the second wrong PIN says one try is left, at the field."""
    lender = register(deni, name="Otieno Lender", pin=PIN)
    fund(deni, lender, 5_000_00)
    member = register(deni, name="Akinyi Atieno", pin=PIN)
    loan = lend(deni, lender=lender, borrower=member, approve_with_pin=PIN)
    person = open_browser(member)
    journeys.sign_in(person)
    page = person.page
    users.update_profile(deni, user_id=member.id, language="sw")
    page.reload()
    expect(page.locator("#status")).to_contain_text("Kila kitu kimefika")
    page.goto(f"/app/#/loan/{loan.id}")
    pin = page.locator("#field-pin")
    said = page.locator("#field-pin-problem")
    repay = page.locator("#field-amount").locator("xpath=ancestor::form")
    pin.fill("9999")
    repay.locator("button[type=submit]").click()
    expect(said).to_have_text("PIN si sahihi.")
    pin.fill("9998")
    repay.locator("button[type=submit]").click()
    expect(said).to_contain_text("Umebakiza jaribio 1")
    assert member_of(deni, member).session_failed_pin_attempts == 2
