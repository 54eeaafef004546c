"""Notifications: stored for the person, in their language; listed newest first; marked read."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from tests.fakes import ManualClock
from tests.support.api import (
    approve,
    assert_error,
    assert_nothing_written,
    db_state,
    notifications,
    request_loan,
)
from tests.support.builders import ApiUser, api_user, fund

from deni.bootstrap import Deni

NOTIFICATIONS = "/api/v1/notifications"
MARK_READ = "/api/v1/notifications/read"


def _of_kind(client: TestClient, who: ApiUser, kind: str) -> list[dict[str, Any]]:
    return [n for n in notifications(client, who) if n["kind"] == kind]


def _mark(client: TestClient, who: ApiUser, ids: list[str]) -> int:
    response = client.post(MARK_READ, json={"ids": ids}, headers=who.with_key())
    assert response.status_code == 200, response.text
    marked = response.json()["marked"]
    assert isinstance(marked, int)
    return marked


def test_each_person_hears_in_their_own_language(client: TestClient, deni: Deni) -> None:
    lender = api_user(client, deni, name="Mama Wanjiku", language="sw")
    borrower = api_user(client, deni, name="Otieno", language="en")
    fund(deni, lender.user, 500_000)
    loan = request_loan(client, borrower, lender)

    [asked] = _of_kind(client, lender, "loan_requested")
    assert asked["language"] == "sw"
    assert asked["loan_id"] == loan["id"]
    assert asked["read_at"] is None
    assert asked["body"].startswith("Otieno anaomba mkopo wa KES 1,000, atalipa KES 1,050 kufikia")
    assert f"Mkopo {loan['code']}." in asked["body"]

    approve(client, lender, loan["id"])
    [disbursed] = _of_kind(client, borrower, "loan_disbursed_mpesa")  # loans go to M-PESA
    assert disbursed["language"] == "en"
    assert disbursed["body"].startswith(
        f"Confirmed. KES 1,000 from loan {loan['code']} is on its way to your M-PESA."
    )
    assert loan["code"] in disbursed["body"]

    [credited] = _of_kind(client, lender, "wallet_credited")
    assert "Imethibitishwa. KES 5,000 zimeingia kwenye akaunti yako ya Deni." in credited["body"]


def test_a_swahili_borrower_hears_in_swahili(client: TestClient, deni: Deni) -> None:
    lender = api_user(client, deni, name="Wanjiku", language="en")
    borrower = api_user(client, deni, name="Baraka", language="sw")
    loan = request_loan(client, borrower, lender)
    approve(client, lender, loan["id"])  # the lender is short: awaiting funds
    [waiting] = _of_kind(client, borrower, "loan_awaiting_funds")
    assert waiting["language"] == "sw"
    assert waiting["body"].startswith("Wanjiku amekubali mkopo wako wa KES 1,000.")
    [asked] = _of_kind(client, lender, "loan_requested")
    assert asked["language"] == "en"
    assert asked["body"].startswith("Baraka asks to borrow KES 1,000")


def test_list_is_newest_first_pages_and_filters_unread(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    owner = api_user(client, deni)
    for amount in (10_000, 20_000, 40_000):
        fund(deni, owner.user, amount)
        clock.advance(timedelta(seconds=1))
    listed = notifications(client, owner)
    assert [n["kind"] for n in listed] == ["wallet_credited"] * 3
    assert ["KES 400" in n["body"] for n in listed] == [True, False, False]
    assert ["KES 200" in n["body"] for n in listed] == [False, True, False]
    assert ["KES 100" in n["body"] for n in listed] == [False, False, True]
    created = [n["created_at"] for n in listed]
    assert created == sorted(created, reverse=True)

    page = client.get(NOTIFICATIONS, params={"limit": 1, "offset": 1}, headers=owner.headers)
    assert [n["id"] for n in page.json()["notifications"]] == [listed[1]["id"]]

    assert _mark(client, owner, [listed[0]["id"]]) == 1
    unread = client.get(NOTIFICATIONS, params={"unread_only": "true"}, headers=owner.headers)
    assert [n["id"] for n in unread.json()["notifications"]] == [listed[1]["id"], listed[2]["id"]]


def test_notifications_written_in_one_instant_list_newest_first(
    client: TestClient, deni: Deni
) -> None:
    owner = api_user(client, deni)
    for amount in (10_000, 20_000, 40_000, 80_000, 160_000):
        fund(deni, owner.user, amount)  # the test clock stands still: one created_at for all
    listed = notifications(client, owner)
    assert len({n["created_at"] for n in listed}) == 1
    amounts = ["KES 1,600", "KES 800", "KES 400", "KES 200", "KES 100"]
    assert [a in n["body"] for a, n in zip(amounts, listed, strict=True)] == [True] * 5


def test_mark_read_marks_only_your_own(client: TestClient, deni: Deni, clock: ManualClock) -> None:
    mine = api_user(client, deni, name="Mine")
    theirs = api_user(client, deni, name="Theirs")
    fund(deni, mine.user, 1_000)
    fund(deni, mine.user, 2_000)
    fund(deni, theirs.user, 3_000)
    my_ids = [n["id"] for n in notifications(client, mine)]
    [their_id] = [n["id"] for n in notifications(client, theirs)]

    before = db_state(deni, ignore=("idempotency_keys",))
    assert _mark(client, mine, [their_id]) == 0  # someone else's id: ignored
    assert _mark(client, mine, ["00000000-0000-0000-0000-000000000000"]) == 0  # unknown: ignored
    assert_nothing_written(deni, before, ignore=("idempotency_keys",))
    assert notifications(client, theirs)[0]["read_at"] is None

    clock.advance(timedelta(minutes=3))
    assert _mark(client, mine, [my_ids[0], their_id, my_ids[0]]) == 1
    assert _mark(client, mine, [my_ids[0]]) == 0  # already read
    assert _mark(client, mine, my_ids) == 1
    read = notifications(client, mine)
    assert all(n["read_at"] is not None for n in read)
    assert read[0]["read_at"].startswith("2026-11-26T06:03:00")
    assert notifications(client, theirs)[0]["read_at"] is None


def test_mark_read_refuses_bad_bodies(client: TestClient, deni: Deni) -> None:
    owner = api_user(client, deni)
    fund(deni, owner.user, 1_000)
    before = db_state(deni)
    for body in (
        {"ids": []},
        {"ids": ["x"] * 101},
        {"ids": "abc"},
        {"ids": [1]},
        {},
        {"ids": None},
    ):
        response = client.post(MARK_READ, json=body, headers=owner.with_key())
        assert_error(response, 422, "validation_failed")
    assert_error(client.post(MARK_READ, json={"ids": ["a"]}), 401, "unauthorized")
    assert_nothing_written(deni, before)
    assert notifications(client, owner)[0]["read_at"] is None


def test_each_user_sees_only_their_own_notifications(client: TestClient, deni: Deni) -> None:
    loud = api_user(client, deni, name="Loud")
    quiet = api_user(client, deni, name="Quiet")
    fund(deni, loud.user, 1_000)
    assert len(notifications(client, loud)) == 1
    assert notifications(client, quiet) == []
    assert_error(client.get(NOTIFICATIONS), 401, "unauthorized")


def test_list_refuses_bad_paging(client: TestClient, deni: Deni) -> None:
    owner = api_user(client, deni)
    for params in ({"limit": 0}, {"limit": 101}, {"offset": -1}, {"unread_only": "perhaps"}):
        response = client.get(NOTIFICATIONS, params=params, headers=owner.headers)
        assert_error(response, 422, "validation_failed")


MARK_ALL_READ = "/api/v1/notifications/read-all"


def test_pages_say_where_the_next_begins_and_how_many_are_unread(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    owner = api_user(client, deni)
    for amount in range(1_000, 8_000, 1_000):  # seven notifications
        fund(deni, owner.user, amount)
        clock.advance(timedelta(seconds=1))
    seen: list[str] = []
    offset: int | None = 0
    pages = 0
    while offset is not None:
        page = client.get(
            NOTIFICATIONS, params={"limit": 3, "offset": offset}, headers=owner.headers
        )
        assert page.status_code == 200, page.text
        answer = page.json()
        assert answer["unread_count"] == 7
        seen += [n["id"] for n in answer["notifications"]]
        offset = answer["next_offset"]
        pages += 1
        assert pages <= 3
    assert pages == 3  # 3 + 3 + 1: the last page says so, with no empty page after it
    assert seen == [n["id"] for n in notifications(client, owner)]
    assert len(set(seen)) == 7


def test_mark_all_read_marks_only_your_own_and_counts_what_is_left(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    mine = api_user(client, deni, name="Mine")
    theirs = api_user(client, deni, name="Theirs")
    for amount in (1_000, 2_000, 3_000):
        fund(deni, mine.user, amount)
    fund(deni, theirs.user, 4_000)
    assert_error(client.post(MARK_ALL_READ), 401, "unauthorized")
    for body in ({"ids": []}, {"all": True}, [1]):
        response = client.post(MARK_ALL_READ, json=body, headers=mine.with_key())
        assert_error(response, 422, "validation_failed")
    assert all(n["read_at"] is None for n in notifications(client, mine))

    headers = mine.with_key()
    done = client.post(MARK_ALL_READ, headers=headers)
    assert done.status_code == 200, done.text
    assert done.json() == {"marked": 3, "unread_count": 0}
    replay = client.post(MARK_ALL_READ, headers=headers)  # the same key: the same answer
    assert replay.json() == {"marked": 3, "unread_count": 0}
    assert all(n["read_at"] is not None for n in notifications(client, mine))
    page = client.get(NOTIFICATIONS, headers=mine.headers).json()
    assert page["unread_count"] == 0
    # Someone else's stay unread.
    assert notifications(client, theirs)[0]["read_at"] is None
    assert client.get(NOTIFICATIONS, headers=theirs.headers).json()["unread_count"] == 1
    again = client.post(MARK_ALL_READ, json={}, headers=mine.with_key())
    assert again.json() == {"marked": 0, "unread_count": 0}


def test_mark_all_read_reaches_past_one_page_of_ids(client: TestClient, deni: Deni) -> None:
    owner = api_user(client, deni)
    for amount in range(1, 106):  # more than one mark's worth of ids (100)
        fund(deni, owner.user, amount * 100)
    before = client.get(NOTIFICATIONS, params={"limit": 1}, headers=owner.headers).json()
    assert before["unread_count"] == 105
    done = client.post(MARK_ALL_READ, headers=owner.with_key())
    assert done.json() == {"marked": 105, "unread_count": 0}
