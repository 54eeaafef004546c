"""Passkeys in a real Chromium with its virtual authenticator (DevTools' WebAuthn domain: a
platform authenticator, CTAP2, internal transport, resident keys, user verification that
passes), against Deni served on http://localhost, the relying party its settings name.

One journey: sign in with the PIN, add the passkey on Settings, sign out, sign in with the
passkey, approve a loan and withdraw to M-PESA with it, remove it with one tap, find it
refused, and sign in with the PIN as ever. Every step is checked against the server's rows.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import Browser, CDPSession, Page, expect

from deni.adapters.security import PepperedArgon2PinHasher
from deni.bootstrap import Deni, bootstrap
from deni.config import Settings
from deni.domain.loans import LoanState
from deni.domain.mpesa import Purpose
from deni.domain.users import User
from deni.entrypoints.api.app import create_app
from deni.sandbox.server import BackgroundServer
from deni.services import loans, passkeys
from deni.services.mpesa import preferences
from tests.fakes import ManualClock
from tests.fakes.gateway import FakeMpesaGateway
from tests.support.api import assert_ledger_whole
from tests.support.builders import fund, register, wallet_cents
from tests.support.mpesa import CALLBACK_TOKEN
from tests.web.test_browser import PIN, TIMEOUT_MS, Person, synced

PHONE = {"width": 360, "height": 740}


@pytest.fixture
def port() -> int:
    """A free loopback port, known before Deni starts: its origin is in the settings."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def origin(port: int) -> str:
    # WebAuthn takes a domain as relying party, never an IP address; http://localhost is a
    # secure context, as https:// is.
    return f"http://localhost:{port}"


@pytest.fixture
def deni(
    settings: Settings, clock: ManualClock, hasher: PepperedArgon2PinHasher, origin: str
) -> Iterator[Deni]:
    """Deni with M-PESA on over the scripted Daraja, and passkeys for localhost."""
    changed = settings.model_copy(
        update={
            "mpesa": True,
            "callback_token": CALLBACK_TOKEN,
            "webauthn_rp_id": "localhost",
            "webauthn_origin": origin,
        }
    )
    wired = bootstrap(
        Settings.model_validate(changed.model_dump()),
        clock=clock,
        hasher=hasher,
        mpesa_gateway=FakeMpesaGateway(),
    )
    assert (wired.relying_party.id, wired.relying_party.origin) == ("localhost", origin)
    yield wired
    wired.close()


@pytest.fixture
def server(deni: Deni, port: int) -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app(deni), port=port) as running:
        yield running


@dataclass
class Phone:
    """A member's browser, and the virtual authenticator that is its fingerprint reader."""

    person: Person
    cdp: CDPSession
    authenticator_id: str

    def credentials(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.cdp.send(
            "WebAuthn.getCredentials", {"authenticatorId": self.authenticator_id}
        )["credentials"]
        return found


@pytest.fixture
def open_phone(
    chromium: Browser, server: BackgroundServer, origin: str
) -> Iterator[Callable[[User], Phone]]:
    people: list[Person] = []

    def open_for(user: User) -> Phone:
        context = chromium.new_context(base_url=origin, viewport=PHONE)
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        person = Person(user, context, page)
        page.on("pageerror", lambda error: person.problems.append(f"page error: {error}"))
        page.on(
            "console",
            lambda message: (
                person.problems.append(f"console: {message.text}")
                if message.type == "error" and "Failed to load resource" not in message.text
                else None
            ),
        )
        people.append(person)
        cdp = context.new_cdp_session(page)
        cdp.send("WebAuthn.enable", {"enableUI": False})
        added = cdp.send(
            "WebAuthn.addVirtualAuthenticator",
            {
                "options": {
                    "protocol": "ctap2",
                    "transport": "internal",
                    "hasResidentKey": True,
                    "hasUserVerification": True,
                    "isUserVerified": True,
                    "automaticPresenceSimulation": True,
                }
            },
        )
        return Phone(person, cdp, added["authenticatorId"])

    yield open_for
    for person in people:
        person.context.close()
    problems = [problem for person in people for problem in person.problems]
    assert problems == [], problems


def sign_in_with_pin(person: Person) -> None:
    page = person.page
    page.goto("/app/")
    page.get_by_label("Phone number").fill(person.local_phone)
    page.get_by_label("PIN", exact=True).fill(PIN)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#balance")).not_to_have_text("—")
    synced(person)


def sign_out(page: Page) -> None:
    page.locator("#sign-out").click()
    expect(page.get_by_role("button", name="Sign in", exact=True)).to_be_visible()


def loan_state(deni: Deni, loan_id: str) -> LoanState:
    with deni.uow.read_only() as uow:
        found = uow.loans.get(loan_id)
    assert found is not None
    return found.state


def test_a_member_signs_in_and_moves_money_with_the_phones_passkey_then_removes_it(
    deni: Deni, open_phone: Callable[[User], Phone]
) -> None:
    lender = register(deni, name="Otieno Lender", pin=PIN)
    borrower = register(deni, name="Wanjiku Borrower", pin=PIN)
    fund(deni, lender, 500_000)
    # The principal stays in the borrower's wallet, where this test reads it (M-PESA is on).
    preferences.set_preferences(deni, user_id=borrower.id, pin=PIN, disburse_to_mpesa=False)
    loan = loans.request_loan(
        deni,
        borrower_id=borrower.id,
        lender_phone=lender.phone,
        principal_cents=100_000,
        fee_cents=5_000,
        term_days=14,
    )
    phone = open_phone(lender)
    person, page = phone.person, phone.person.page

    # Signed in with the PIN, the member adds this phone's passkey on Settings.
    sign_in_with_pin(person)
    page.locator("#settings").click()
    card = page.locator("#passkeys-card")
    expect(card.locator("#passkeys")).to_contain_text("No fingerprint or face added yet.")
    card.get_by_label("Your PIN, to add it").fill("0000")
    card.get_by_role("button", name="Add this phone's fingerprint or face").click()
    expect(card.get_by_role("alert").first).to_contain_text("Wrong PIN")
    card.get_by_label("Your PIN, to add it").fill(PIN)
    card.get_by_role("button", name="Add this phone's fingerprint or face").click()
    expect(card.locator("#passkeys-said")).to_contain_text("Added.")
    expect(card.locator("#passkeys li")).to_have_count(1)
    expect(card.locator("#passkeys li")).to_contain_text("This phone")
    # The same phone is not added twice: Deni's options exclude the passkeys it has.
    card.get_by_label("Your PIN, to add it").fill(PIN)
    card.get_by_role("button", name="Add this phone's fingerprint or face").click()
    expect(card.get_by_role("alert").first).to_contain_text("already added")
    expect(card.locator("#passkeys li")).to_have_count(1)
    [stored] = passkeys.list_passkeys(deni, user_id=lender.id)
    [on_phone] = phone.credentials()  # the private key stays on the phone; Deni has the public
    assert on_phone["isResidentCredential"] is True
    assert stored.sign_count == on_phone["signCount"]

    # Signed out, the passkey signs in: no number, no PIN typed.
    sign_out(page)
    page.get_by_role("button", name="Use fingerprint or face instead").click()
    expect(page.locator("#balance")).to_have_text("KES 5,000")
    synced(person)

    # It approves the loan for its principal: the money moves as with the PIN.
    page.goto(f"/app/#/loan/{loan.id}")
    page.get_by_role("button", name="Use fingerprint or face to send KES 1,000").click()
    expect(page.locator("#lent")).to_contain_text("Wanjiku Borrower")
    assert loan_state(deni, loan.id) is LoanState.ACTIVE
    assert wallet_cents(deni, lender) == 400_000
    assert wallet_cents(deni, borrower) == 100_000

    # ...and sends money to M-PESA for the amount typed.
    page.goto("/app/#/withdraw")
    page.get_by_label("Amount to send to M-PESA (KES)").fill("1,500")
    page.get_by_role("button", name="Use fingerprint or face to send it").click()
    expect(page.locator("#mpesa")).to_contain_text("KES 1,500 is on its way to M-PESA.")
    assert wallet_cents(deni, lender) == 250_000
    with deni.uow.read_only() as uow:
        [payout] = uow.mpesa_requests.in_states(states=[], limit=5, user_id=lender.id)
    assert (payout.purpose, payout.amount_cents) == (Purpose.WITHDRAWAL, 150_000)
    [used] = passkeys.list_passkeys(deni, user_id=lender.id)
    assert used.sign_count > stored.sign_count
    assert used.last_used_at is not None

    # One tap on Settings removes it; it no longer signs in.
    page.locator("#settings").click()
    card = page.locator("#passkeys-card")
    expect(card.locator("#passkeys li")).to_contain_text("last used")
    card.locator("#passkeys").get_by_role("button", name="Remove").click()
    expect(card.locator("#passkeys")).to_contain_text("No fingerprint or face added yet.")
    assert passkeys.list_passkeys(deni, user_id=lender.id) == []
    sign_out(page)
    page.get_by_role("button", name="Use fingerprint or face instead").click()
    expect(page.locator(".passkey-sign-in .problem")).to_contain_text(
        "The passkey could not be verified."
    )
    # The PIN signs in as it always did, and approves as it always did.
    sign_in_with_pin(person)
    expect(page.locator("#balance")).to_have_text("KES 2,500")
    assert_ledger_whole(deni)
