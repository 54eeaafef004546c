"""A forgotten PIN: a code by SMS, then a new PIN; codes that are wrong, late, used up or
too many; and the day money waits after a reset."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
from fastapi.testclient import TestClient
from tests.fakes import ManualClock
from tests.support.api import approve, assert_error, log_in_again, request_loan
from tests.support.builders import ApiUser, api_user, fund

from deni.adapters.sms import DatabaseSmsOutbox
from deni.bootstrap import Deni
from deni.domain.security import (
    MONEY_HOLD_AFTER_RESET,
    RESET_ASKS_PER_SOURCE_MAX,
    RESET_CODE_ATTEMPTS_MAX,
    RESET_CODE_TTL,
    RESET_CODE_WINDOW,
    RESET_CODES_PER_WINDOW_MAX,
)
from deni.services import users

ASK = "/api/v1/auth/pin-reset"
CONFIRM = "/api/v1/auth/pin-reset/confirm"
LOGIN = "/api/v1/auth/login"


def _texts(deni: Deni, phone: str) -> list[str]:
    """The reset codes sent to this number (not the code that proved it at registration)."""
    assert isinstance(deni.sms, DatabaseSmsOutbox)
    return [m.body for m in deni.sms.messages(phone=phone) if "PIN reset code" in m.body]


def _ask(client: TestClient, phone: str) -> dict[str, str]:
    response = client.post(ASK, json={"phone": phone})
    assert response.status_code == 202, response.text
    answer: dict[str, str] = response.json()
    return answer


def _code(client: TestClient, deni: Deni, who: ApiUser) -> str:
    _ask(client, who.user.phone)
    codes = re.findall(r"\b\d{6}\b", _texts(deni, who.user.phone)[0])
    assert len(codes) == 1
    return str(codes[0])


def _confirm(client: TestClient, who: ApiUser, code: str, new_pin: str = "9847") -> httpx.Response:
    body = {"phone": who.user.phone, "code": code, "new_pin": new_pin}
    return client.post(CONFIRM, json=body)


def _login(client: TestClient, who: ApiUser, pin: str) -> httpx.Response:
    return client.post(LOGIN, json={"phone": who.user.phone, "pin": pin})


def test_a_forgotten_pin_is_replaced_with_the_code_from_the_sms(
    client: TestClient, deni: Deni
) -> None:
    member = api_user(client, deni, pin="3591")
    refresh = client.post(LOGIN, json={"phone": member.user.phone, "pin": "3591"})
    refresh_token = refresh.json()["refresh_token"]
    for _ in range(3):  # forgotten: three wrong tries lock the account
        _login(client, member, "0000")

    code = _code(client, deni, member)
    answer = _confirm(client, member, code, new_pin="9847")

    assert answer.status_code == 200, answer.text
    assert _login(client, member, "9847").status_code == 200
    assert_error(_login(client, member, "3591"), 401, "wrong_credentials")
    # Every earlier session ended: refresh tokens and access tokens alike, at once.
    stale = client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})
    assert stale.status_code == 401
    old_access = client.get("/api/v1/notifications", headers=member.headers)
    assert_error(old_access, 401, "session_ended")
    log_in_again(deni, member)
    notices = client.get("/api/v1/notifications", headers=member.headers).json()
    assert "pin_reset" in [n["kind"] for n in notices["notifications"]]
    # The code is a secret: it is in the SMS, and nowhere Deni keeps its notifications.
    assert all(code not in n["body"] for n in notices["notifications"])
    assert_error(_confirm(client, member, code, new_pin="5315"), 401, "invalid_code")  # once


def test_asking_for_an_unknown_number_looks_the_same_and_sends_nothing(
    client: TestClient, deni: Deni
) -> None:
    member = api_user(client, deni)
    known = _ask(client, member.user.phone)
    unknown = _ask(client, "0799000111")
    assert known == unknown
    assert _texts(deni, "254799000111") == []
    assert_error(_confirm(client, member, "123456"), 401, "invalid_code")
    assert_error(client.post(ASK, json={"phone": "not a phone"}), 422, "invalid_phone_number")


def test_wrong_codes_void_the_code_and_leave_the_pin_alone(client: TestClient, deni: Deni) -> None:
    member = api_user(client, deni, pin="3591")
    code = _code(client, deni, member)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(RESET_CODE_ATTEMPTS_MAX):
        assert_error(_confirm(client, member, wrong), 401, "invalid_code")

    assert_error(_confirm(client, member, code), 401, "invalid_code")
    assert _login(client, member, "3591").status_code == 200


def test_a_malformed_new_pin_costs_no_try(client: TestClient, deni: Deni) -> None:
    member = api_user(client, deni)
    code = _code(client, deni, member)
    for _ in range(RESET_CODE_ATTEMPTS_MAX + 1):
        assert_error(_confirm(client, member, code, new_pin="12a4"), 422, "invalid_pin")
    assert _confirm(client, member, code).status_code == 200


def test_a_code_expires(client: TestClient, deni: Deni, clock: ManualClock) -> None:
    member = api_user(client, deni)
    code = _code(client, deni, member)
    clock.advance(RESET_CODE_TTL + timedelta(seconds=1))
    assert_error(_confirm(client, member, code), 401, "invalid_code")


def test_at_most_a_few_codes_an_hour(client: TestClient, deni: Deni, clock: ManualClock) -> None:
    member = api_user(client, deni)
    for _ in range(RESET_CODES_PER_WINDOW_MAX + 2):
        _ask(client, member.user.phone)
    assert len(_texts(deni, member.user.phone)) == RESET_CODES_PER_WINDOW_MAX

    clock.advance(timedelta(hours=1))
    _ask(client, member.user.phone)
    assert len(_texts(deni, member.user.phone)) == RESET_CODES_PER_WINDOW_MAX + 1


def test_the_newest_code_replaces_the_one_before(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    member = api_user(client, deni)
    first = _code(client, deni, member)
    clock.advance(timedelta(seconds=30))
    _ask(client, member.user.phone)
    [newest, _] = [re.findall(r"\b\d{6}\b", t)[0] for t in _texts(deni, member.user.phone)]
    if newest != first:  # one in a million they are equal
        assert_error(_confirm(client, member, first), 401, "invalid_code")
    assert _confirm(client, member, newest).status_code == 200


def test_no_money_leaves_for_a_day_after_a_reset(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    borrower, lender = api_user(client, deni), api_user(client, deni)
    fund(deni, lender.user, 200_000)
    loan = request_loan(client, borrower, lender)
    assert _confirm(client, lender, _code(client, deni, lender), new_pin="9847").status_code == 200
    lender.pin = "9847"
    log_in_again(deni, lender)

    held = client.post(
        f"/api/v1/loans/{loan['id']}/approve", json={"pin": "9847"}, headers=lender.with_key()
    )
    refusal = assert_error(held, 423, "money_on_hold")
    assert "Nairobi time" in refusal["message"]

    clock.advance(MONEY_HOLD_AFTER_RESET)
    log_in_again(deni, lender, borrower)
    assert approve(client, lender, loan["id"])["state"] == "active"


def test_one_source_may_ask_only_so_often(
    client: TestClient, deni: Deni, clock: ManualClock, real_limits: None
) -> None:
    members = [api_user(client, deni) for _ in range(3)]
    for n in range(RESET_ASKS_PER_SOURCE_MAX):
        _ask(client, members[n % 3].user.phone if n < 3 else f"07990{n:05d}")

    refused = client.post(ASK, json={"phone": members[0].user.phone})
    assert_error(refused, 429, "too_many_requests")
    sent = sum(len(_texts(deni, m.user.phone)) for m in members)
    assert sent == 3  # the refused ask sent nothing

    clock.advance(RESET_CODE_WINDOW)
    _ask(client, members[0].user.phone)


def _support_lock(deni: Deni, who: ApiUser, *, locked: bool) -> None:
    users.set_support_lock(deni, phone=who.user.phone, locked=locked)


def test_a_lock_by_customer_care_stops_everything_even_a_reset(
    client: TestClient, deni: Deni
) -> None:
    """A member reports a SIM swap: the thief holding the SIM cannot reset the PIN back open."""
    borrower, lender = api_user(client, deni), api_user(client, deni, pin="3591")
    fund(deni, lender.user, 200_000)
    loan = request_loan(client, borrower, lender)
    code = _code(client, deni, lender)  # asked before the lock: void after it

    _support_lock(deni, lender, locked=True)

    assert_error(_login(client, lender, "3591"), 423, "locked_by_support")
    approving = client.post(
        f"/api/v1/loans/{loan['id']}/approve", json={"pin": "3591"}, headers=lender.with_key()
    )
    assert_error(approving, 401, "session_ended")  # the thief's session ended with the lock
    _ask(client, lender.user.phone)
    assert len(_texts(deni, lender.user.phone)) == 1  # no new code went out
    assert_error(_confirm(client, lender, code), 401, "invalid_code")

    _support_lock(deni, lender, locked=False)
    assert _login(client, lender, "3591").status_code == 200
    log_in_again(deni, lender)
    assert approve(client, lender, loan["id"])["state"] == "active"
