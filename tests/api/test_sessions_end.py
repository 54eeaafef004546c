"""Sessions end with the account, at once: an access token taken before a close, a support
lock, a PIN change or reset, a lock earned in a session, or sign-out-everywhere is refused on
its very next request (`401 session_ended`), not when its 15 minutes run out. Each test is the
attack: someone keeps a copy of the token and tries it after the owner acted."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from fastapi.testclient import TestClient
from tests.support.api import assert_error, loan_body, request_loan
from tests.support.builders import ApiUser, api_user, fund, key, sms_code
from tests.support.ussd import Phone

from deni.bootstrap import Deni
from deni.services import users

LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
ME = "/api/v1/me"


def _sign_in(client: TestClient, who: ApiUser, pin: str | None = None) -> dict[str, Any]:
    """A second device of the same member: its own access and refresh token."""
    response = client.post(LOGIN, json={"phone": who.user.phone, "pin": pin or who.pin})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _bearer(session: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['access_token']}"}


def _refresh(client: TestClient, session: dict[str, Any]) -> httpx.Response:
    return client.post(REFRESH, json={"refresh_token": session["refresh_token"]})


def _ended(client: TestClient, *sessions: dict[str, Any]) -> None:
    """Every one of these sessions is over: its access token and its refresh token."""
    for session in sessions:
        assert_error(client.get(ME, headers=_bearer(session)), 401, "session_ended")
        assert_error(_refresh(client, session), 401, "invalid_refresh_token")


def test_a_closed_account_cannot_ask_for_a_loan_with_a_token_it_held(
    client: TestClient, deni: Deni
) -> None:
    member, lender = api_user(client, deni), api_user(client, deni)
    stolen = _sign_in(client, member)
    closed = client.post("/api/v1/me/close", json={"pin": member.pin}, headers=member.headers)
    assert closed.status_code == 200, closed.text

    asking = client.post("/api/v1/loans", json=loan_body(lender), headers=_bearer(stolen) | key())
    assert_error(asking, 401, "session_ended")
    assert_error(client.get(ME, headers=member.headers), 401, "session_ended")
    with deni.uow.read_only() as uow:
        assert (
            uow.loans.list_for(user_id=lender.user.id, role="lender", states=[], limit=5, offset=0)
            == []
        )


def test_a_support_lock_ends_every_session_at_once(client: TestClient, deni: Deni) -> None:
    member = api_user(client, deni)
    phone = _sign_in(client, member)
    users.set_support_lock(deni, phone=member.user.phone, locked=True)
    _ended(client, phone)
    assert_error(client.get(ME, headers=member.headers), 401, "session_ended")

    users.set_support_lock(deni, phone=member.user.phone, locked=False)
    # Unlocking does not bring the old sessions back: the member signs in again.
    assert_error(client.get(ME, headers=_bearer(phone)), 401, "session_ended")
    assert client.get(ME, headers=_bearer(_sign_in(client, member))).status_code == 200


def test_a_pin_change_ends_every_session_this_one_too(client: TestClient, deni: Deni) -> None:
    member = api_user(client, deni, pin="3591")
    other_device = _sign_in(client, member)
    changed = client.post(
        "/api/v1/me/pin", json={"old_pin": "3591", "new_pin": "5683"}, headers=member.with_key()
    )
    assert changed.status_code == 200, changed.text
    _ended(client, other_device)
    assert_error(client.get(ME, headers=member.headers), 401, "session_ended")
    assert client.get(ME, headers=_bearer(_sign_in(client, member, "5683"))).status_code == 200


def test_a_pin_reset_by_sms_code_ends_every_session(client: TestClient, deni: Deni) -> None:
    member = api_user(client, deni, pin="3591")
    thief = _sign_in(client, member)
    deni.clock.advance(timedelta(seconds=1))  # after the sign-up code, in the outbox's order
    assert client.post("/api/v1/auth/pin-reset", json={"phone": member.user.phone}).is_success
    code = sms_code(deni, member.user.phone)
    body = {"phone": member.user.phone, "code": code, "new_pin": "9847"}
    assert client.post("/api/v1/auth/pin-reset/confirm", json=body).status_code == 200
    _ended(client, thief)


def test_sign_out_everywhere_ends_every_device(client: TestClient, deni: Deni) -> None:
    member = api_user(client, deni)
    devices = [_sign_in(client, member) for _ in range(3)]
    answer = client.post("/api/v1/me/sign-out-everywhere", headers=member.headers)
    assert answer.status_code == 200, answer.text
    _ended(client, *devices)
    assert_error(client.get(ME, headers=member.headers), 401, "session_ended")
    assert client.get(ME, headers=_bearer(_sign_in(client, member))).status_code == 200


def test_logout_ends_that_sign_in_only(client: TestClient, deni: Deni) -> None:
    member = api_user(client, deni)
    leaving, staying = _sign_in(client, member), _sign_in(client, member)
    out = client.post("/api/v1/auth/logout", json={"refresh_token": leaving["refresh_token"]})
    assert out.status_code == 200, out.text
    assert_error(_refresh(client, leaving), 401, "invalid_refresh_token")
    assert _refresh(client, staying).status_code == 200
    # A token that never was answers the same: logout is no oracle for tokens.
    unknown = client.post("/api/v1/auth/logout", json={"refresh_token": "x" * 43})
    assert unknown.status_code == 200


def test_a_lock_earned_by_a_session_ends_every_session(client: TestClient, deni: Deni) -> None:
    """Someone holding an unlocked phone guesses the approval PIN: the session ends too."""
    lender, borrower = api_user(client, deni), api_user(client, deni)
    fund(deni, lender.user, 200_000)
    other_device = _sign_in(client, lender)
    loan = request_loan(client, borrower, lender)
    for _ in range(3):
        client.post(
            f"/api/v1/loans/{loan['id']}/approve", json={"pin": "0000"}, headers=lender.with_key()
        )
    _ended(client, other_device)
    assert_error(client.get(ME, headers=lender.headers), 401, "session_ended")


def test_a_stranger_locking_sign_in_does_not_sign_the_owner_out(
    client: TestClient, deni: Deni
) -> None:
    """Wrong sign-ins from someone who knows only the number lock remote sign-in, but the
    owner's open sessions stay: the stranger has no session to end, and ending the owner's
    would hand them a way to sign anyone out."""
    member = api_user(client, deni)
    for _ in range(3):
        client.post(LOGIN, json={"phone": member.user.phone, "pin": "0000"})
    assert_error(
        client.post(LOGIN, json={"phone": member.user.phone, "pin": member.pin}),
        423,
        "account_locked",
    )
    assert client.get(ME, headers=member.headers).status_code == 200


def test_a_ussd_lock_ends_the_apps_sessions(client: TestClient, deni: Deni) -> None:
    """Three wrong PINs on the SIM's own channel: whoever holds the phone is guessing."""
    member = api_user(client, deni, pin="7141")
    fund(deni, member.user, 100_000)
    phone = Phone(client, "0" + member.user.phone[3:])
    phone.dial()
    phone.send("5", "2", "500", "9999", "9998", "9997")
    assert phone.ended
    assert_error(client.get(ME, headers=member.headers), 401, "session_ended")


def test_a_token_claiming_another_epoch_is_refused(client: TestClient, deni: Deni) -> None:
    """The epoch is in the signed token: it cannot be raised to match, only forged (refused)."""
    member = api_user(client, deni)
    ahead, _ = deni.tokens.issue(user_id=member.user.id, now=deni.clock.now(), session_epoch=7)
    assert_error(client.get(ME, headers={"Authorization": f"Bearer {ahead}"}), 401, "session_ended")
