"""M-PESA money seen from the web app while it travels: a card says what to do or what is under
way, the app asks Deni every few seconds, and it says the outcome in plain words.

Deni runs with M-PESA on, over a scripted Daraja (tests/fakes/gateway.py); the test plays the
worker's part by hand: the outbox pass that sends to Daraja, then Daraja's callback.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import expect

from deni.adapters.security import PepperedArgon2PinHasher
from deni.bootstrap import Deni, bootstrap
from deni.config import Settings
from deni.domain.mpesa import MpesaRequest, RequestState
from deni.domain.users import User
from deni.services import queries, users
from deni.services.mpesa import callbacks, requests
from deni.services.mpesa import preferences as mpesa_preferences
from deni.services.mpesa.ports import B2CResultEvent, CallbackKind, MpesaDeps, StkResultEvent
from deni.services.outbox import run_once
from tests.fakes import ManualClock
from tests.fakes.gateway import FakeMpesaGateway, body
from tests.support.accessibility import violations
from tests.support.builders import fund, lend, register, wallet_cents
from tests.support.mpesa import CALLBACK_TOKEN
from tests.support.waiting import wait_until
from tests.web import test_browser as journeys
from tests.web.test_browser import PIN, Person

open_browser = journeys.open_browser
PHONE = {"width": 360, "height": 740}


@pytest.fixture
def deni(settings: Settings, clock: ManualClock, hasher: PepperedArgon2PinHasher) -> Iterator[Deni]:
    """Deni with M-PESA on, over the scripted Daraja."""
    switched_on = settings.model_copy(update={"mpesa": True, "callback_token": CALLBACK_TOKEN})
    wired = bootstrap(switched_on, clock=clock, hasher=hasher, mpesa_gateway=FakeMpesaGateway())
    yield wired
    wired.close()


def mpesa(deni: Deni) -> MpesaDeps:
    assert deni.mpesa is not None
    return deni.mpesa


def the_request(deni: Deni, user: User) -> MpesaRequest:
    """The member's one M-PESA request, once the phone's push has made it; then sent."""

    def made() -> list[MpesaRequest]:
        with deni.uow.read_only() as uow:
            return uow.mpesa_requests.in_states(states=[], limit=5, user_id=user.id)

    wait_until(lambda: len(made()) == 1, what="the phone's M-PESA request")
    deps = mpesa(deni)
    # Sends it, unless the serving app's own worker claimed it first: then it is that
    # worker's send that is awaited.
    run_once(deps, handlers=requests.handlers(deps), policy=deps.policy, rng=random.Random(7))
    wait_until(lambda: made()[0].state is RequestState.SENT, what="the request sent to Daraja")
    [sent] = made()
    return sent


def deliver(deni: Deni, kind: CallbackKind, event: StkResultEvent | B2CResultEvent) -> None:
    deps = mpesa(deni)
    callbacks.store_callback(deps, kind=kind, body=body(event), source_ip="196.201.214.200")
    callbacks.apply_pending(deps)


def test_a_top_up_shows_what_to_do_then_that_the_money_is_in(
    deni: Deni, open_browser: Callable[[User], Person]
) -> None:
    member = register(deni, name="Akinyi Atieno", pin=PIN)
    person = open_browser(member)
    person.page.set_viewport_size(PHONE)
    journeys.sign_in(person)
    page = person.page
    page.get_by_role("link", name="Top up").click()
    page.get_by_label("Amount to add from M-PESA (KES)").fill("500")
    page.get_by_role("button", name="Top up").click()

    card = page.locator("#mpesa")
    expect(card).to_contain_text("Check your phone and enter your M-PESA PIN")
    expect(card).to_contain_text("KES 500")
    request = the_request(deni, member)
    assert request.checkout_request_id is not None
    paid = StkResultEvent(
        request.checkout_request_id, "0", "The service request is processed successfully.",
        request.amount_cents, "TKP1AB2CD3", request.phone,
    )  # fmt: skip
    deliver(deni, CallbackKind.STK, paid)
    assert wallet_cents(deni, member) == 500_00

    # No reload and no tap: the app asks Deni again within seconds, not at its 30 s sync.
    expect(card).to_contain_text("KES 500 from M-PESA is in your wallet")
    expect(card).to_contain_text("TKP1AB2CD3")
    expect(page.locator("#balance")).to_have_text("KES 500")
    card.get_by_role("button", name="OK").click()
    expect(card).to_have_count(0)


def test_a_withdrawal_shows_it_is_on_its_way_then_that_it_arrived_or_came_back(
    deni: Deni, open_browser: Callable[[User], Person]
) -> None:
    member = register(deni, name="Akinyi Atieno", pin=PIN)
    fund(deni, member, 1_000_00)
    person = open_browser(member)
    person.page.set_viewport_size(PHONE)
    journeys.sign_in(person)
    page = person.page
    page.get_by_role("link", name="Withdraw").click()
    page.get_by_label("Amount to send to M-PESA (KES)").fill("400")
    page.get_by_label("Your PIN").fill(PIN)
    page.get_by_role("button", name="Withdraw").click()

    card = page.locator("#mpesa")
    expect(card).to_contain_text("KES 400 is on its way to M-PESA")
    request = the_request(deni, member)
    assert request.originator_conversation_id is not None
    done = B2CResultEvent(
        request.originator_conversation_id, "AG_1", "0", "result", request.amount_cents,
        "TKB1AB2CD3",
    )  # fmt: skip
    deliver(deni, CallbackKind.B2C_RESULT, done)

    expect(card).to_contain_text("KES 400 reached your M-PESA")
    expect(page.locator("#balance")).to_have_text("KES 600")
    assert wallet_cents(deni, member) == 600_00


def test_a_loan_repaid_from_the_loan_screen_by_m_pesa_goes_down_once(
    deni: Deni, open_browser: Callable[[User], Person]
) -> None:
    """Pay with M-PESA on the loan screen: an STK push for that loan, the M-PESA card until it
    settles, then the loan owes less, once, even when M-PESA says it twice."""
    lender = register(deni, name="Otieno Lender", pin=PIN)
    fund(deni, lender, 5_000_00)
    member = register(deni, name="Akinyi Atieno", pin=PIN)
    # The loan stays in the wallet (no B2C to follow): only the repayment goes through M-PESA.
    mpesa_preferences.set_preferences(deni, user_id=member.id, pin=PIN, disburse_to_mpesa=False)
    loan = lend(deni, lender=lender, borrower=member, approve_with_pin=PIN)  # owes KES 1,050
    person = open_browser(member)
    person.page.set_viewport_size(PHONE)
    journeys.sign_in(person)
    page = person.page
    page.goto(f"/app/#/loan/{loan.id}")
    repay = page.locator("#repay-mpesa")
    amount = repay.get_by_label("Amount to pay from M-PESA (KES)")
    expect(amount).to_have_value("1050")
    # More than is owed is refused at the field, before anything is sent.
    amount.fill("2000")
    repay.get_by_role("button", name="Pay with M-PESA").click()
    expect(repay.locator(".field-problem")).to_contain_text("more than the KES 1,050 still owed")
    amount.fill("400")
    repay.get_by_role("button", name="Pay with M-PESA").click()

    card = page.locator("#mpesa")
    expect(card).to_contain_text("Check your phone and enter your M-PESA PIN to repay KES 400")
    assert violations(page) == []  # the card, as axe-core reads it
    request = the_request(deni, member)
    assert (request.purpose.value, request.loan_id, request.amount_cents) == (
        "repayment",
        loan.id,
        400_00,
    )
    assert request.checkout_request_id is not None
    paid = StkResultEvent(
        request.checkout_request_id, "0", "The service request is processed successfully.",
        request.amount_cents, "TKR1AB2CD3", request.phone,
    )  # fmt: skip
    deliver(deni, CallbackKind.STK, paid)
    deliver(deni, CallbackKind.STK, paid)  # M-PESA says it again: nothing moves twice

    expect(card).to_contain_text("KES 400 from M-PESA went to your loan")
    expect(card).to_contain_text("TKR1AB2CD3")
    detail = queries.loan_detail(deni, user_id=member.id, loan_id=loan.id)
    assert detail.view.owed.total_cents == 650_00
    assert [r.amount_cents for r in detail.repayments] == [400_00]
    assert wallet_cents(deni, member) == 1_000_00  # the loan's money; the KES 400 went on
    page.goto(f"/app/#/loan/{loan.id}")
    expect(page.locator("dl.details")).to_contain_text("KES 650")


def test_m_pesa_refuses_an_airtel_number_in_plain_words(
    deni: Deni, open_browser: Callable[[User], Person]
) -> None:
    airtel = users.register_user(
        deni, phone="0733 123 456", name="Baraka Airtel", pin=PIN, phone_proven=True
    )
    person = open_browser(airtel)
    journeys.sign_in(person)
    page = person.page
    page.get_by_role("link", name="Top up").click()
    page.get_by_label("Amount to add from M-PESA (KES)").fill("500")
    page.get_by_role("button", name="Top up").click()
    expect(page.locator("#field-amount-problem")).to_have_text(
        "M-PESA works only with Safaricom numbers, and 0733123456 is on Airtel. Pay into Deni "
        "from a Safaricom line, or open Deni with your Safaricom number."
    )
