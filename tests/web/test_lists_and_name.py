"""Long lists a page at a time, online and offline, and a change of name, in a real Chromium.

Messages: every notification the phone keeps, 20 a page, marked read one by one or all at once
on the server (the sync mutation mark_notification_read, queued when offline), and the unread
count on Home. The statement: every line of the wallet, 50 a page. The name: Settings, checked
at the field in the member's language, then saved on the server.
"""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Locator, expect

from deni.bootstrap import Deni
from deni.domain.users import User
from deni.services import queries, users
from tests.support.builders import fund, register
from tests.support.waiting import wait_until
from tests.web import test_browser as journeys
from tests.web.test_browser import PIN, Person, submit, synced, wait_for_offline_shell

open_browser = journeys.open_browser
PHONE = {"width": 360, "height": 740}
CREDITS = 55  # 55 notifications (3 pages of 20) and 55 statement lines (2 pages of 50)

NAME_RULE_SW = (
    "Jina lina herufi 2 hadi 60 na linaanza na herufi; nafasi, ' . - na hadi tarakimu 4 "
    "zinakubalika."
)


def sent(person: Person, control: Locator) -> None:
    """`submit` of test_browser.py in any language: click, then wait for a sync after it."""
    before = int(person.page.locator("#status").get_attribute("data-syncs") or 0)
    control.click()
    person.page.wait_for_function(
        """(after) => {
            const status = document.getElementById("status");
            return Number(status.dataset.syncs) > after && status.dataset.state === "synced"
                && document.querySelector("form[data-busy]") === null;
        }""",
        arg=before,
    )


def unread_on_server(deni: Deni, user: User) -> int:
    page = queries.notification_page(deni, user_id=user.id, unread_only=True, limit=1, offset=0)
    return page.unread_count


def test_messages_page_through_all_and_are_marked_read_on_the_server_offline_too(
    deni: Deni, open_browser: Callable[[User], Person]
) -> None:
    member = register(deni, name="Akinyi Atieno", pin=PIN)
    for shillings in range(1, CREDITS + 1):
        fund(deni, member, shillings * 100)
    person = open_browser(member)
    person.page.set_viewport_size(PHONE)
    journeys.sign_in(person)
    page = person.page
    assert unread_on_server(deni, member) == CREDITS

    home_link = page.locator("#all-messages")
    expect(home_link).to_have_text(f"All messages ({CREDITS} unread)")
    home_link.click()
    expect(page.locator("h1")).to_have_text("Messages")
    items = page.locator("#message-list > li")
    expect(items).to_have_count(20)
    expect(page.locator("#unread-count")).to_have_text(f"{CREDITS} unread")
    # Newest first: the last credit (KES 55) opens the first page.
    expect(items.first).to_contain_text("KES 55 ")
    expect(page.locator(".pager")).to_contain_text("Page 1 of 3")
    page.get_by_role("link", name="Older").click()
    expect(page.locator(".pager")).to_contain_text("Page 2 of 3")
    page.get_by_role("link", name="Older").click()
    expect(items).to_have_count(CREDITS - 40)
    expect(items.last).to_contain_text("KES 1 ")
    expect(page.get_by_role("link", name="Older")).to_have_count(0)

    # One marked read: on the server at once.
    oldest = items.last
    submit(person, oldest.get_by_role("button", name="Mark read"))
    assert unread_on_server(deni, member) == CREDITS - 1
    expect(page.locator("#unread-count")).to_have_text(f"{CREDITS - 1} unread")
    expect(oldest.get_by_role("button", name="Mark read")).to_have_count(0)

    # Offline, from the kept copy after a reload: marked here, sent when the network is back.
    wait_for_offline_shell(person)
    person.go_offline(True)
    page.reload()
    expect(items).to_have_count(CREDITS - 40)
    items.first.get_by_role("button", name="Mark read").click()
    expect(page.locator("#unread-count")).to_have_text(f"{CREDITS - 2} unread")
    assert unread_on_server(deni, member) == CREDITS - 1  # not yet: it waits to sync
    person.go_offline(False)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    wait_until(lambda: unread_on_server(deni, member) == CREDITS - 2, what="the mark sent")

    # All at once, then Home says none is unread.
    page.get_by_role("link", name="Newer").click()
    page.get_by_role("link", name="Newer").click()
    before = int(page.locator("#status").get_attribute("data-syncs") or 0)
    page.get_by_role("button", name="Mark all read").click()
    synced(person, after=before)
    assert unread_on_server(deni, member) == 0
    expect(page.locator("#unread-count")).to_have_text("0 unread")
    expect(page.get_by_role("button", name="Mark read")).to_have_count(0)
    page.get_by_role("link", name="Back").click()
    expect(page.locator("#all-messages")).to_have_text("All messages (0 unread)")


def test_the_whole_statement_pages_50_lines_at_a_time(
    deni: Deni, open_browser: Callable[[User], Person]
) -> None:
    member = register(deni, name="Akinyi Atieno", pin=PIN)
    for shillings in range(1, CREDITS + 1):
        fund(deni, member, shillings * 100)
    person = open_browser(member)
    journeys.sign_in(person)
    page = person.page
    page.get_by_role("link", name="Statement").click()
    rows = page.locator("table.statement tbody tr")
    expect(rows).to_have_count(50)
    expect(page.locator("table.statement caption")).to_have_text(f"Lines 1 to 50 of {CREDITS}")
    expect(rows.first).to_contain_text("KES 1,540")  # the newest line: the balance after all
    page.get_by_role("link", name="Older lines").click()
    expect(rows).to_have_count(CREDITS - 50)
    expect(page.locator("table.statement caption")).to_have_text(
        f"Lines 51 to {CREDITS} of {CREDITS}"
    )
    expect(rows.last).to_contain_text("KES 1")
    # Every line the server has, once.
    on_server = queries.wallet_statement(deni, user_id=member.id, before=None, limit=100)
    assert len(on_server.lines) == CREDITS
    page.get_by_role("link", name="Newer lines").click()
    expect(rows).to_have_count(50)


def test_a_change_of_name_is_checked_at_the_field_in_swahili_then_saved(
    deni: Deni, open_browser: Callable[[User], Person]
) -> None:
    member = register(deni, name="Akinyi Atieno", pin=PIN, language="sw")
    person = open_browser(member)
    person.page.set_viewport_size(PHONE)
    page = person.page
    page.goto("/app/")
    page.locator("#field-phone").fill(person.local_phone)
    page.locator("#field-pin").fill(PIN)
    page.locator("form button[type=submit]").click()
    expect(page.locator("#status")).to_contain_text("Kila kitu kimefika")  # her language
    page.goto("/app/#/settings")
    section = page.locator("#change-name")
    name = section.get_by_label("Jina lako")
    expect(name).to_have_value("Akinyi Atieno")
    save = section.get_by_role("button", name="Badilisha jina langu")

    name.fill("A")  # too short: refused at the form, nothing queued
    save.click()
    expect(section.locator(".field-problem")).to_have_text(NAME_RULE_SW)
    expect(name).to_have_attribute("aria-invalid", "true")
    # A character the server will not print: its refusal, at the field, in Kiswahili.
    name.fill("Akinyi\u200bWanjiru")
    sent(person, save)
    expect(section.locator(".field-problem")).to_have_text(NAME_RULE_SW)
    assert users.get_user(deni, user_id=member.id).name == "Akinyi Atieno"

    name.fill("  Akinyi   Wanjiru  ")
    sent(person, save)
    expect(page.locator("#saved")).to_have_text("Jina lako limehifadhiwa.")
    assert users.get_user(deni, user_id=member.id).name == "Akinyi Wanjiru"
    page.goto("/app/#/home")
    expect(page.locator(".greeting")).to_contain_text("Akinyi Wanjiru")
