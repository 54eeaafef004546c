"""The staff console in a real Chromium against a real Deni over loopback HTTP: each role
signs in with a password and the code an authenticator app would show, does its work through
the pages, and a second operator in a browser of their own approves what moves money. Every
journey is checked against the books, not only the screen."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from playwright.sync_api import Browser, Page, expect

from deni.bootstrap import Deni
from deni.domain import totp
from deni.domain.loans import LoanState
from deni.domain.operators import Role
from deni.sandbox.server import BackgroundServer
from deni.services import users
from deni.services.ops import operators
from tests.fakes import ManualClock
from tests.support.builders import fund, lend, register, wallet_cents

PASSWORD = "correct horse battery"
TIMEOUT_MS = 10_000


@pytest.fixture
def browsers(chromium: Browser, web_server: BackgroundServer) -> Iterator[list[Page]]:
    """Two operators' browsers, no cookies shared."""
    contexts = [chromium.new_context(base_url=web_server.url) for _ in range(2)]
    pages = []
    for context in contexts:
        context.set_default_timeout(TIMEOUT_MS)
        pages.append(context.new_page())
    yield pages
    for context in contexts:
        context.close()


def sign_in(page: Page, deni: Deni, clock: ManualClock, username: str, role: Role) -> None:
    new = operators.add_operator(
        deni, username=username, name=username.title(), role=role, password=PASSWORD
    )
    clock.advance(timedelta(seconds=totp.STEP_S))
    page.goto("/ops/")  # no session: sent to the sign-in page
    expect(page).to_have_url(re.compile(r"/ops/login$"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Code from your authenticator app").fill(
        totp.code_at(new.totp_seed, clock.now())
    )
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.get_by_text(f"{username.title()} ({role.value})")).to_be_visible()


def test_support_locks_a_member_and_a_second_operator_approves_the_unlock(
    browsers: list[Page], deni: Deni, clock: ManualClock
) -> None:
    amina, baraka = browsers
    member = register(deni, name="Akinyi Otieno")
    sign_in(amina, deni, clock, "amina", Role.SUPPORT)
    amina.get_by_role("link", name="Search").click()
    amina.get_by_label("Search").fill("0" + member.phone[3:])
    amina.get_by_role("button", name="Search").click()
    amina.get_by_role("link", name="Akinyi Otieno").click()
    expect(amina.locator("#member-state")).to_have_text("active")

    amina.get_by_role("button", name="Lock account (SIM swap, lost phone)").click()
    expect(amina.locator("#member-state")).to_have_text("support_locked")
    assert users.get_user(deni, user_id=member.id).support_locked_at is not None
    expect(amina.locator("#member-audit")).to_contain_text("ops:amina")

    amina.get_by_label("Why").fill("ID seen at the agent, SIM replaced")
    amina.get_by_role("button", name="Propose: Unlock a member locked by support").click()
    expect(amina.get_by_role("heading", name="Waiting for a second operator")).to_be_visible()
    row = amina.locator("tbody tr", has_text="Unlock a member")
    expect(row).to_contain_text("amina")
    expect(row.get_by_role("button", name="Approve")).to_have_count(0)  # not for oneself

    sign_in(baraka, deni, clock, "baraka", Role.SUPPORT)
    baraka.get_by_role("link", name="Proposals").click()
    baraka.locator("tbody tr", has_text="Unlock a member").get_by_role(
        "button", name="Approve"
    ).click()
    expect(baraka.locator("td.state-done")).to_have_count(1)
    assert users.get_user(deni, user_id=member.id).support_locked_at is None


def test_finance_writes_a_loan_off_on_two_words_and_downloads_the_books(
    browsers: list[Page], deni: Deni, clock: ManualClock
) -> None:
    fatuma, juma = browsers
    lender, borrower = register(deni, name="Wanjiku"), register(deni, name="Otieno")
    fund(deni, lender, 150_000)
    loan = lend(deni, lender=lender, borrower=borrower, approve_with_pin="3591")
    sign_in(fatuma, deni, clock, "fatuma", Role.FINANCE)
    fatuma.get_by_role("link", name="Search").click()
    fatuma.get_by_label("Search").fill(loan.code)
    fatuma.get_by_role("button", name="Search").click()
    fatuma.get_by_role("link", name=loan.code).click()
    expect(fatuma.locator("#loan-state")).to_have_text("active")
    fatuma.get_by_label("Why").fill("the lender asked by phone, recorded call")
    fatuma.get_by_role("button", name="Propose: Write a loan off for its lender").click()

    sign_in(juma, deni, clock, "juma", Role.FINANCE)
    juma.goto(f"/ops/loans/{loan.id}")
    expect(juma.locator("#loan-state")).to_have_text("active")  # a proposal alone moves nothing
    juma.get_by_role("link", name="Proposals").click()
    juma.locator("tbody tr", has_text="Write a loan off").get_by_role(
        "button", name="Approve"
    ).click()
    expect(juma.locator("td.state-done")).to_have_count(1)
    juma.goto(f"/ops/loans/{loan.id}")
    expect(juma.locator("#loan-state")).to_have_text("written_off")
    with deni.uow.read_only() as uow:
        stored = uow.loans.get(loan.id)
    assert stored is not None
    assert stored.state is LoanState.WRITTEN_OFF

    juma.get_by_role("link", name="Reports").click()
    with juma.expect_download() as download:
        juma.get_by_role("button", name="Download trial-balance.csv").click()
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    wallets = next(r for r in rows if r["account_group"] == "wallets")
    assert int(wallets["balance_credit_cents"]) == wallet_cents(deni, lender) + wallet_cents(
        deni, borrower
    )


def test_admin_reads_the_audit_chain_and_a_wrong_code_is_refused(
    browsers: list[Page], deni: Deni, clock: ManualClock
) -> None:
    admin, stranger = browsers
    sign_in(admin, deni, clock, "root", Role.ADMIN)
    admin.get_by_role("link", name="Audit").click()
    expect(admin.locator("tbody")).to_contain_text("ops_sign_in")
    expect(admin.locator("tbody")).to_contain_text("ops:root")
    admin.get_by_role("button", name="Sign out").click()
    expect(admin.get_by_role("heading", name="Sign in")).to_be_visible()
    admin.goto("/ops/audit")
    expect(admin.get_by_role("heading", name="Sign in")).to_be_visible()

    operators.add_operator(deni, username="mallory", name="M", role=Role.ADMIN, password=PASSWORD)
    stranger.goto("/ops/login")
    stranger.get_by_label("Username").fill("mallory")
    stranger.get_by_label("Password").fill(PASSWORD)
    stranger.get_by_label("Code from your authenticator app").fill("000000")
    stranger.get_by_role("button", name="Sign in").click()
    expect(stranger.get_by_role("alert")).to_have_text("Wrong username, password or code.")
    stranger.goto("/ops/")
    expect(stranger.get_by_role("heading", name="Sign in")).to_be_visible()
