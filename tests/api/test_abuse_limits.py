"""Abuse limits with their real figures, each test the attack it stops: a flood of loan
requests at one number, a stranger guessing a member's PIN from the API, and a caller who
varies X-Forwarded-For to look like many."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from tests.fakes import ManualClock
from tests.support.api import assert_error, loan_body
from tests.support.builders import ApiUser, api_user, fund, key, next_phone, registration_code
from tests.support.ussd import Phone, mpesa

from deni.adapters.security import PepperedArgon2PinHasher
from deni.adapters.sms import DatabaseSmsOutbox
from deni.bootstrap import Deni, bootstrap
from deni.config import Settings
from deni.domain.loans import (
    OPEN_REQUESTS_TO_ONE_LENDER_MAX,
    REQUESTS_PER_DAY_MAX,
    REQUESTS_TO_ONE_LENDER_PER_DAY_MAX,
)
from deni.domain.security import REMOTE_WRONG_PINS_PER_DAY_MAX, RESET_ASKS_PER_SOURCE_MAX
from deni.entrypoints.api.app import create_app
from deni.services import limits
from deni.services.sms import send_pending_sms

pytestmark = pytest.mark.usefixtures("real_limits")
LOGIN = "/api/v1/auth/login"
ASK = "/api/v1/auth/pin-reset"
CONFIRM = "/api/v1/auth/pin-reset/confirm"
PROXY = ("10.0.0.5", 4711)  # the operator's reverse proxy, as the app sees it
ATTACK_STEPS_MAX = 200


def _ask_loan(client: TestClient, borrower: ApiUser, lender: ApiUser) -> httpx.Response:
    return client.post("/api/v1/loans", json=loan_body(lender), headers=borrower.with_key())


def _texts_to(deni: Deni, phone: str) -> int:
    """The SMS that went to this number, once everything queued was sent."""
    send_pending_sms(queue=deni.sms_queue, sender=deni.sms, clock=deni.clock)
    assert isinstance(deni.sms, DatabaseSmsOutbox)
    return len(deni.sms.messages(phone=phone))


# --- loan requests -----------------------------------------------------------------------------


def test_25_loan_requests_at_one_number_send_only_a_few_sms(client: TestClient, deni: Deni) -> None:
    borrower, lender = api_user(client, deni), api_user(client, deni)
    texts_before = _texts_to(deni, lender.user.phone)  # the code that proved the number
    answers = [_ask_loan(client, borrower, lender) for _ in range(25)]

    assert [a.status_code for a in answers[:OPEN_REQUESTS_TO_ONE_LENDER_MAX]] == [201] * 3
    for refused in answers[OPEN_REQUESTS_TO_ONE_LENDER_MAX:]:
        assert_error(refused, 409, "too_many_open_requests")
    texts = _texts_to(deni, lender.user.phone) - texts_before
    assert texts == OPEN_REQUESTS_TO_ONE_LENDER_MAX

    # Cancelling to ask again does not get round it: a few a day to one lender, then 429.
    made = [a.json()["id"] for a in answers[:3]]
    for _ in range(25):
        cancel = client.post(
            f"/api/v1/loans/{made.pop()}/cancel", json={}, headers=borrower.with_key()
        )
        assert cancel.status_code == 200, cancel.text
        again = _ask_loan(client, borrower, lender)
        if again.status_code != 201:
            break
        made.append(again.json()["id"])
    assert_error(again, 429, "too_many_requests")
    assert int(again.headers["Retry-After"]) == 24 * 3600  # all asked this (frozen) instant
    requested = [n for n in _notifications_of(deni, lender) if n == "loan_requested"]
    assert len(requested) == REQUESTS_TO_ONE_LENDER_PER_DAY_MAX


def _notifications_of(deni: Deni, who: ApiUser) -> list[str]:
    with deni.uow.read_only() as uow:
        rows = uow.notifications.list_for(who.user.id, unread_only=False, limit=100, offset=0)
    return [row.kind for row in rows]


def test_a_borrower_asks_only_so_often_a_day_in_all(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    borrower = api_user(client, deni)
    lenders = [api_user(client, deni) for _ in range(REQUESTS_PER_DAY_MAX + 1)]
    for lender in lenders[:REQUESTS_PER_DAY_MAX]:
        assert _ask_loan(client, borrower, lender).status_code == 201
    clock.advance(timedelta(hours=5))
    borrower.headers.update(_fresh_token(client, borrower))
    refused = _ask_loan(client, borrower, lenders[-1])
    assert_error(refused, 429, "too_many_requests")
    assert int(refused.headers["Retry-After"]) == 19 * 3600  # when the first ages out
    clock.advance(timedelta(hours=19))
    borrower.headers.update(_fresh_token(client, borrower))
    assert _ask_loan(client, borrower, lenders[-1]).status_code == 201


def _fresh_token(client: TestClient, who: ApiUser) -> dict[str, str]:
    session = client.post(LOGIN, json={"phone": who.user.phone, "pin": who.pin}).json()
    return {"Authorization": f"Bearer {session['access_token']}"}


# --- PIN guesses from the API ------------------------------------------------------------------


def test_wrong_pins_at_api_sign_in_never_lock_the_sim_owner_out_of_ussd(
    client: TestClient, deni: Deni
) -> None:
    member = api_user(client, deni, pin="7141")
    fund(deni, member.user, 100_000)
    for pin, code in (("0000", "wrong_credentials"), ("0001", "wrong_credentials_last_try")):
        assert_error(
            client.post(LOGIN, json={"phone": member.user.phone, "pin": pin}),
            401,
            code,
        )
    locked = client.post(LOGIN, json={"phone": member.user.phone, "pin": "0002"})
    assert_error(locked, 423, "account_locked")

    # The owner, on their own SIM: the right PIN works at once.
    phone = Phone(client, "0" + member.user.phone[3:])
    before = len(mpesa(deni).requests)
    phone.dial()
    phone.send("5", "2", "500", "7141")
    assert phone.ended
    assert len(mpesa(deni).requests) == before + 1
    assert mpesa(deni).requests[-1].kind == "withdrawal"


def test_a_stranger_gets_at_most_six_pin_guesses_a_day(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    """Guessing as fast as Deni allows, from the API, for two days."""
    member = api_user(client, deni, pin="7141")
    start = clock.now()
    guesses: list[timedelta] = []
    for step in range(ATTACK_STEPS_MAX):
        if clock.now() - start >= timedelta(days=2):
            break
        guess = f"{2000 + step:04d}"
        answer = client.post(LOGIN, json={"phone": member.user.phone, "pin": guess})
        if answer.status_code == 429:  # the number's sign-ins this hour: wait for the next
            clock.advance(timedelta(seconds=int(answer.headers["Retry-After"])))
            continue
        with deni.uow.read_only() as uow:
            user = uow.users.get(member.user.id)
        assert user is not None
        if user.remote_wrong_pins_at and user.remote_wrong_pins_at[-1] == clock.now():
            guesses.append(clock.now() - start)
        until = user.locked_until_for("api", clock.now())
        if until is not None:
            clock.advance(until - clock.now())
    first_day = [g for g in guesses if g < timedelta(days=1)]
    assert len(first_day) == REMOTE_WRONG_PINS_PER_DAY_MAX
    assert len(guesses) == 2 * REMOTE_WRONG_PINS_PER_DAY_MAX
    # And the owner's SIM was never locked out.
    assert user.locked_until is None


# --- forwarded addresses ------------------------------------------------------------------------


@pytest.fixture
def behind_proxy(
    settings: Settings, clock: ManualClock, hasher: PepperedArgon2PinHasher
) -> Iterator[TestClient]:
    """The app as a reverse proxy at 10.0.0.5 reaches it, with the proxy configured."""
    deni = bootstrap(
        settings.model_copy(update={"trusted_proxies": "10.0.0.0/8"}), clock=clock, hasher=hasher
    )
    try:
        with TestClient(create_app(deni), client=PROXY) as client:
            yield client
    finally:
        deni.close()


def _forwarded(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


def test_a_forged_forwarded_for_does_not_reset_the_pin_reset_limit(client: TestClient) -> None:
    for n in range(RESET_ASKS_PER_SOURCE_MAX):
        asked = client.post(ASK, json={"phone": next_phone()}, headers=_forwarded(f"6.6.6.{n}"))
        assert asked.status_code == 202
    refused = client.post(ASK, json={"phone": next_phone()}, headers=_forwarded("6.6.7.1"))
    assert_error(refused, 429, "too_many_requests")
    assert int(refused.headers["Retry-After"]) > 0


def test_a_forged_forwarded_for_does_not_reset_the_login_limit(client: TestClient) -> None:
    for n in range(limits.LOGIN_PER_SOURCE_HOURLY.hits_max):
        tried = client.post(
            LOGIN, json={"phone": next_phone(), "pin": "3591"}, headers=_forwarded(f"6.6.{n}.1")
        )
        assert_error(tried, 401, "wrong_credentials")
    refused = client.post(
        LOGIN, json={"phone": next_phone(), "pin": "3591"}, headers=_forwarded("6.7.0.1")
    )
    assert_error(refused, 429, "too_many_requests")


def test_behind_a_configured_proxy_each_client_has_its_own_count(
    behind_proxy: TestClient,
) -> None:
    for _ in range(RESET_ASKS_PER_SOURCE_MAX):
        asked = behind_proxy.post(
            ASK, json={"phone": next_phone()}, headers=_forwarded("198.51.100.7")
        )
        assert asked.status_code == 202
    # That client is done for the hour; another behind the same proxy is not.
    again = behind_proxy.post(ASK, json={"phone": next_phone()}, headers=_forwarded("198.51.100.7"))
    assert_error(again, 429, "too_many_requests")
    other = behind_proxy.post(ASK, json={"phone": next_phone()}, headers=_forwarded("198.51.100.8"))
    assert other.status_code == 202
    # What the client wrote before the proxy's own entry is not believed either.
    forged = behind_proxy.post(
        ASK, json={"phone": next_phone()}, headers=_forwarded("1.2.3.4, 198.51.100.7")
    )
    assert_error(forged, 429, "too_many_requests")


def test_behind_a_configured_proxy_sign_ins_count_per_client(behind_proxy: TestClient) -> None:
    for _ in range(limits.LOGIN_PER_SOURCE_HOURLY.hits_max):
        tried = behind_proxy.post(
            LOGIN, json={"phone": next_phone(), "pin": "3591"}, headers=_forwarded("198.51.100.9")
        )
        assert_error(tried, 401, "wrong_credentials")
    refused = behind_proxy.post(
        LOGIN, json={"phone": next_phone(), "pin": "3591"}, headers=_forwarded("198.51.100.9")
    )
    assert_error(refused, 429, "too_many_requests")
    elsewhere = behind_proxy.post(
        LOGIN, json={"phone": next_phone(), "pin": "3591"}, headers=_forwarded("198.51.100.10")
    )
    assert_error(elsewhere, 401, "wrong_credentials")


# --- codes and sign-ups --------------------------------------------------------------------------


def test_codes_for_one_number_are_tried_only_so_often(client: TestClient, deni: Deni) -> None:
    member = api_user(client, deni)
    body = {"phone": member.user.phone, "code": "000000", "new_pin": "9847"}
    for _ in range(limits.CODE_CHECKS_PER_PHONE_HOURLY.hits_max):
        assert_error(client.post(CONFIRM, json=body), 401, "invalid_code")
    assert_error(client.post(CONFIRM, json=body), 429, "too_many_requests")


def test_one_address_signs_up_only_so_many_accounts_an_hour(client: TestClient, deni: Deni) -> None:
    # Each puppet's code reaches a number the attacker holds; the sign-ups all come from here.
    for _ in range(limits.REGISTER_PER_SOURCE_HOURLY.hits_max):
        phone = next_phone()
        body = {"phone": phone, "name": "Sock Puppet", "pin": "3591"}
        body["code"] = registration_code(deni, phone)
        assert client.post("/api/v1/auth/register", json=body).status_code == 201
    phone = next_phone()
    body = {"phone": phone, "name": "Sock Puppet", "pin": "3591"}
    body["code"] = registration_code(deni, phone)
    refused = client.post("/api/v1/auth/register", json=body, headers=key())
    assert_error(refused, 429, "too_many_requests")
    assert int(refused.headers["Retry-After"]) == 3600


def test_on_ussd_a_fourth_waiting_request_gets_a_reason_not_an_sms(
    client: TestClient, deni: Deni
) -> None:
    borrower, lender = api_user(client, deni), api_user(client, deni)
    texts_before = _texts_to(deni, lender.user.phone)  # the code that proved the number
    for _ in range(OPEN_REQUESTS_TO_ONE_LENDER_MAX):
        assert _ask_loan(client, borrower, lender).status_code == 201
    phone = Phone(client, "0" + borrower.user.phone[3:])
    phone.dial()
    phone.send("1", "0" + lender.user.phone[3:], "1000", "30", "50", borrower.pin)
    assert "wait for an answer" in phone.last, phone.last
    texts = _texts_to(deni, lender.user.phone) - texts_before
    assert texts == OPEN_REQUESTS_TO_ONE_LENDER_MAX
