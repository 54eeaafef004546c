"""Register, log in, refresh, /me and change PIN through the HTTP API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient
from tests.fakes import ManualClock
from tests.support.api import assert_error, assert_nothing_written, db_state, notifications
from tests.support.builders import api_user, key, registration_code, sms_texts

from deni.bootstrap import Deni
from deni.services.users import REFRESH_ANSWER_LOST_GRACE

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
ME = "/api/v1/me"
CHANGE_PIN = "/api/v1/me/pin"
# A wrong PIN is meant to write: the attempt counter, the audit row, maybe a lock notification.
# sync_changes: the change log records the pin_locked notification (offline sync).
PIN_BOOKKEEPING = ("users", "audit_log", "audit_head", "notifications", "sync_changes")


def _register(
    client: TestClient,
    deni: Deni,
    phone: str,
    *,
    pin: str = "3591",
    name: str = "Amina Njeri",
    **extra: str,
) -> dict[str, object]:
    code = registration_code(deni, phone)
    body = {"phone": phone, "code": code, "name": name, "pin": pin, **extra}
    response = client.post(REGISTER, json=body)
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def _login(client: TestClient, phone: str, pin: str) -> httpx.Response:
    return client.post(LOGIN, json={"phone": phone, "pin": pin})


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- register ---------------------------------------------------------------------------------


def test_register_normalises_every_common_phone_format(
    client: TestClient, deni: Deni, subtests: pytest.Subtests
) -> None:
    cases = [
        ("0712345670", "254712345670"),
        ("+254712345671", "254712345671"),
        ("254712345672", "254712345672"),
        ("0712 345 673", "254712345673"),
        ("+254 712 345 674", "254712345674"),
        (" 0712-345-675 ", "254712345675"),
        ("0112345678", "254112345678"),
        ("+254 112 345 679", "254112345679"),
        ("0101234567", "254101234567"),
    ]
    for raw, normalised in cases:
        with subtests.test(phone=raw):
            user = _register(client, deni, raw, language="sw")
            assert user["phone"] == normalised
            assert user["name"] == "Amina Njeri"
            assert user["language"] == "sw"
            assert set(user) == {"id", "phone", "name", "language", "created_at", "phone_proven"}
            assert user["phone_proven"] is True  # no PIN above, and the code proved the number
            # The same person logs in with the number written any other way.
            for other in ("0" + normalised[3:], "+" + normalised, normalised):
                response = _login(client, other, "3591")
                assert response.status_code == 200, response.text
                assert response.json()["user_id"] == user["id"]


def test_register_defaults_to_english_and_collapses_spaces_in_the_name(
    client: TestClient, deni: Deni
) -> None:
    user = _register(client, deni, "0722000111", name="  Juma   Hamisi ")
    assert user["language"] == "en"
    assert user["name"] == "Juma Hamisi"


def _refused(
    client: TestClient,
    deni: Deni,
    subtests: pytest.Subtests,
    bodies: list[dict[str, object]],
    code: str,
) -> None:
    before = db_state(deni)
    for body in bodies:
        with subtests.test(body=repr(body)[:80]):
            assert_error(client.post(REGISTER, json=body), 422, code)
            assert_nothing_written(deni, before)


def test_register_refuses_malformed_and_foreign_numbers(
    client: TestClient, deni: Deni, subtests: pytest.Subtests
) -> None:
    phones = [
        "+255712345678",  # Tanzania
        "+14155552671",  # USA
        "256712345678",  # Uganda, without the plus
        "0202345678",  # a Nairobi landline, not a mobile
        "07123",  # too short
        "071234567890",  # too long
        "+2547123456789",
        "hello",
        "",
        "   ",
        "0712345678" * 5,  # far too long
        "07\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18",  # full-width digits
        "0712345678\u0000",
    ]
    bodies: list[dict[str, object]] = [
        {"phone": phone, "name": "Amina", "pin": "3591"} for phone in phones
    ]
    _refused(client, deni, subtests, bodies, "invalid_phone_number")


def test_register_refuses_a_pin_that_is_not_four_digits(
    client: TestClient, deni: Deni, subtests: pytest.Subtests
) -> None:
    pins = ["123", "12345", "abcd", "12 4", "", "\u0661\u0662\u0663\u0664", "12.3", "-123"]
    bodies: list[dict[str, object]] = [
        {"phone": "0722000111", "name": "Amina", "pin": pin} for pin in pins
    ]
    _refused(client, deni, subtests, bodies, "invalid_pin")


def test_register_refuses_a_bad_name(
    client: TestClient, deni: Deni, subtests: pytest.Subtests
) -> None:
    names = ["", " ", "A", "x" * 61, "ab\u0007", "\u0000\u0000"]
    bodies: list[dict[str, object]] = [
        {"phone": "0722000111", "name": name, "pin": "3591"} for name in names
    ]
    _refused(client, deni, subtests, bodies, "invalid_name")


def test_register_refuses_wrong_shapes(
    client: TestClient, deni: Deni, subtests: pytest.Subtests
) -> None:
    bodies: list[dict[str, object]] = [
        {"phone": "0722000111", "name": "Amina", "pin": "3591", "language": "fr"},
        {"phone": "0722000111", "name": "Amina", "pin": 1234},
        {"phone": 722000111, "name": "Amina", "pin": "3591"},
        {"phone": "0722000111", "pin": "3591"},
        {"phone": "0722000111", "name": "Amina", "pin": "3591", "is_admin": True},
    ]
    _refused(client, deni, subtests, bodies, "validation_failed")


def test_a_registered_number_gets_no_code_and_cannot_be_registered_again(
    client: TestClient, deni: Deni
) -> None:
    _register(client, deni, "0722000111")
    before = db_state(deni)
    asked = client.post("/api/v1/auth/register/code", json={"phone": "+254 722 000 111"})
    assert asked.status_code == 202  # the same answer as for a free number...
    assert len(sms_texts(deni, "254722000111")) == 1  # ...but no SMS: only the first code's
    response = client.post(
        REGISTER,
        json={"phone": "+254 722 000 111", "code": "000000", "name": "Someone", "pin": "9497"},
    )
    assert_error(response, 401, "phone_code_invalid")
    assert_nothing_written(deni, before)
    # The first PIN still works, the intruder's does not.
    assert _login(client, "0722000111", "3591").status_code == 200


def test_register_opens_an_empty_wallet(client: TestClient, deni: Deni) -> None:
    _register(client, deni, "0722000111")
    session = _login(client, "0722000111", "3591").json()
    me = client.get(ME, headers=_bearer(session["access_token"]))
    assert me.status_code == 200
    assert me.json()["balance_cents"] == 0
    assert me.json()["balance"] == "KES 0"


# --- login and lockout ------------------------------------------------------------------------


def test_login_returns_a_short_lived_bearer_token_and_a_refresh_token(
    client: TestClient, deni: Deni
) -> None:
    user = _register(client, deni, "0722000111")
    response = _login(client, "0722000111", "3591")
    assert response.status_code == 200
    session = response.json()
    assert session["user_id"] == user["id"]
    assert session["token_type"] == "bearer"
    assert session["expires_in"] == 15 * 60
    assert session["refresh_token"]
    assert session["refresh_token"] != session["access_token"]
    me = client.get(ME, headers=_bearer(session["access_token"]))
    assert me.json()["id"] == user["id"]
    assert me.json()["phone"] == "254722000111"


def test_login_with_an_unknown_number_is_refused_without_writing(
    client: TestClient, deni: Deni
) -> None:
    before = db_state(deni)
    assert_error(_login(client, "0799999999", "3591"), 401, "wrong_credentials")
    assert_nothing_written(deni, before)


def test_sign_in_does_not_tell_a_member_from_a_stranger(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    """An attacker trying numbers at sign-in with a guessed PIN learns nothing about who is on
    Deni: every wrong PIN at a member's number, "1 try left" and the lock with its minutes
    included, is answered exactly as the same guess at a number nobody uses."""
    _register(client, deni, "0722000111")
    # Within a day (the longest the store keeps a stranger's record; a member's lock history
    # is kept for good, so a second lock a day later is longer only for a member): a lock,
    # then after it the day's cap of six wrong PINs, the same for both.
    for round_number in range(2):
        member, stranger = [
            [_login(client, number, pin) for pin in ("9999", "9998", "9997", "3591")]
            for number in ("0722000111", "0799999999")
        ]
        for theirs, nobodys in zip(member[:3], stranger[:3], strict=True):
            assert theirs.status_code == nobodys.status_code
            assert theirs.json() == nobodys.json()
            assert theirs.headers.get("www-authenticate") == nobodys.headers.get("www-authenticate")
        codes = [answer.json()["error"]["code"] for answer in stranger]
        assert codes == [
            "wrong_credentials",
            "wrong_credentials_last_try",
            "account_locked",
            "account_locked",
        ]
        # The right PIN during the lock is refused as a stranger's guess would be.
        assert member[3].json() == stranger[3].json()
        locked = stranger[2].json()["error"]["message"]
        assert ("in 15 minutes", "in 1425 minutes")[round_number] in locked
        clock.advance(timedelta(minutes=15))


def test_login_with_a_malformed_number_is_refused(client: TestClient, deni: Deni) -> None:
    before = db_state(deni)
    assert_error(_login(client, "+44 20 7946 0958", "3591"), 422, "invalid_phone_number")
    assert_nothing_written(deni, before)


def test_a_wrong_pin_is_refused_and_counted_but_nothing_else_is_written(
    client: TestClient, deni: Deni
) -> None:
    _register(client, deni, "0722000111")
    before = db_state(deni, ignore=PIN_BOOKKEEPING)
    assert_error(_login(client, "0722000111", "9999"), 401, "wrong_credentials")
    assert_nothing_written(deni, before, ignore=PIN_BOOKKEEPING)
    with deni.uow.read_only() as uow:
        user = uow.users.get_by_phone("254722000111")
    assert user is not None
    # Counted against sign-in from the app and the API only: USSD's own count is untouched.
    assert (user.remote_failed_pin_attempts, user.failed_pin_attempts) == (1, 0)


def test_three_wrong_pins_lock_the_account_even_for_the_right_pin_until_the_period_ends(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    _register(client, deni, "0722000111")
    assert_error(_login(client, "0722000111", "0000"), 401, "wrong_credentials")
    last = assert_error(_login(client, "0722000111", "0001"), 401, "wrong_credentials_last_try")
    assert "1 try left" in last["message"]  # told before the lock, not after
    locked = assert_error(_login(client, "0722000111", "0002"), 423, "account_locked")
    assert "15 minutes" in locked["message"]
    # Fail closed: the right PIN does not open a locked account, and guessing writes nothing.
    before = db_state(deni)
    assert_error(_login(client, "0722000111", "3591"), 423, "account_locked")
    assert_error(_login(client, "0722000111", "0003"), 423, "account_locked")
    assert_nothing_written(deni, before)
    clock.advance(timedelta(minutes=15) - timedelta(seconds=1))
    assert_error(_login(client, "0722000111", "3591"), 423, "account_locked")
    clock.advance(timedelta(seconds=1))
    assert _login(client, "0722000111", "3591").status_code == 200


def test_the_lock_period_grows_on_the_second_lock(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    _register(client, deni, "0722000111")
    for pin, code in (("0000", "wrong_credentials"), ("0001", "wrong_credentials_last_try")):
        assert_error(_login(client, "0722000111", pin), 401, code)
    assert_error(_login(client, "0722000111", "0002"), 423, "account_locked")
    # A day later (so the day's cap of wrong PINs plays no part), locked again: for 30
    # minutes, not 15.
    clock.advance(timedelta(days=1))
    for pin, code in (("0000", "wrong_credentials"), ("0001", "wrong_credentials_last_try")):
        assert_error(_login(client, "0722000111", pin), 401, code)
    second = assert_error(_login(client, "0722000111", "0002"), 423, "account_locked")
    assert "30 minutes" in second["message"]
    clock.advance(timedelta(minutes=15))
    assert_error(_login(client, "0722000111", "3591"), 423, "account_locked")
    clock.advance(timedelta(minutes=15) - timedelta(seconds=1))
    assert_error(_login(client, "0722000111", "3591"), 423, "account_locked")
    clock.advance(timedelta(seconds=1))
    assert _login(client, "0722000111", "3591").status_code == 200


def test_a_right_pin_resets_the_wrong_pin_count(client: TestClient, deni: Deni) -> None:
    _register(client, deni, "0722000111")
    for code in ("wrong_credentials", "wrong_credentials_last_try"):
        assert_error(_login(client, "0722000111", "0000"), 401, code)
    assert _login(client, "0722000111", "3591").status_code == 200
    for code in ("wrong_credentials", "wrong_credentials_last_try"):
        assert_error(_login(client, "0722000111", "0000"), 401, code)
    assert _login(client, "0722000111", "3591").status_code == 200


def test_a_lock_is_announced_to_the_owner(client: TestClient, deni: Deni) -> None:
    owner = api_user(client, deni, name="Owner")
    for _ in range(3):
        _login(client, owner.user.phone, "0000")
    kinds = [n["kind"] for n in notifications(client, owner)]
    # The remote lock's own message: it says USSD still works.
    assert (kinds.count("pin_locked_remote"), kinds.count("pin_locked")) == (1, 0)


def test_a_sign_in_lock_refuses_sign_in_but_not_pin_actions_in_the_owners_session(
    client: TestClient, deni: Deni
) -> None:
    """Three wrong PINs at sign-in (anyone who knows the number) lock sign-in only."""
    owner = api_user(client, deni)
    for _ in range(3):
        _login(client, owner.user.phone, "0000")
    assert_error(_login(client, owner.user.phone, "3591"), 423, "account_locked")
    assert client.get(ME, headers=owner.headers).status_code == 200
    response = client.post(
        CHANGE_PIN, json={"old_pin": "3591", "new_pin": "5683"}, headers=owner.with_key()
    )
    assert response.status_code < 300, response.text


def test_wrong_pins_in_a_session_lock_it_and_end_it(client: TestClient, deni: Deni) -> None:
    owner = api_user(client, deni)
    answers = [
        client.post(CHANGE_PIN, json={"old_pin": pin, "new_pin": "5683"}, headers=owner.with_key())
        for pin in ("0000", "0001", "0002")
    ]
    assert [a.status_code for a in answers] == [401, 401, 423]
    assert_error(client.get(ME, headers=owner.headers), 401, "session_ended")
    assert_error(_login(client, owner.user.phone, "3591"), 423, "account_locked")


# --- tokens -----------------------------------------------------------------------------------


def test_me_needs_a_valid_bearer_token(client: TestClient, deni: Deni) -> None:
    owner = api_user(client, deni)
    assert_error(client.get(ME), 401, "unauthorized")
    assert_error(
        client.get(ME, headers={"Authorization": "Basic dXNlcjpwYXNz"}), 401, "unauthorized"
    )
    assert_error(client.get(ME, headers=_bearer("not-a-jwt")), 401, "invalid_token")
    good = owner.headers["Authorization"].removeprefix("Bearer ")
    tampered = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    assert_error(client.get(ME, headers=_bearer(tampered)), 401, "invalid_token")
    forged = jwt.encode(
        {
            "sub": owner.user.id,
            "iss": "deni",
            "iat": int(datetime(2026, 11, 26, tzinfo=UTC).timestamp()),
            "exp": int(datetime(2027, 1, 1, tzinfo=UTC).timestamp()),
        },
        "another-secret-0123456789abcdef0123456789",
        algorithm="HS256",
    )
    assert_error(client.get(ME, headers=_bearer(forged)), 401, "invalid_token")
    unsigned = jwt.encode({"sub": owner.user.id, "iss": "deni"}, key=None, algorithm="none")
    assert_error(client.get(ME, headers=_bearer(unsigned)), 401, "invalid_token")


def test_an_access_token_expires_after_15_minutes(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    owner = api_user(client, deni)
    clock.advance(timedelta(minutes=15) - timedelta(seconds=1))
    assert client.get(ME, headers=owner.headers).status_code == 200
    clock.advance(timedelta(seconds=1))
    assert_error(client.get(ME, headers=owner.headers), 401, "token_expired")
    assert_error(client.get("/api/v1/wallet", headers=owner.headers), 401, "token_expired")
    response = client.post(
        "/api/v1/loans/quote",
        json={"principal_cents": 100_000, "term_days": 7},
        headers=owner.headers,
    )
    assert_error(response, 401, "token_expired")


def test_refresh_rotates_the_pair_and_a_spent_token_revokes_the_family(
    client: TestClient, deni: Deni
) -> None:
    _register(client, deni, "0722000111")
    first = _login(client, "0722000111", "3591").json()
    other_device = _login(client, "0722000111", "3591").json()
    second = client.post(REFRESH, json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200, second.text
    rotated = second.json()
    assert rotated["user_id"] == first["user_id"]
    assert rotated["expires_in"] == 15 * 60
    assert rotated["refresh_token"] != first["refresh_token"]
    assert client.get(ME, headers=_bearer(rotated["access_token"])).status_code == 200

    # The spent token comes back after the grace for a lost answer (a thief, or a replay):
    # refused, and its family is revoked.
    assert isinstance(deni.clock, ManualClock)
    deni.clock.advance(REFRESH_ANSWER_LOST_GRACE + timedelta(seconds=1))
    replay = client.post(REFRESH, json={"refresh_token": first["refresh_token"]})
    assert_error(replay, 401, "invalid_refresh_token")
    after_theft = client.post(REFRESH, json={"refresh_token": rotated["refresh_token"]})
    assert_error(after_theft, 401, "invalid_refresh_token")
    # Another login is another family: untouched.
    elsewhere = client.post(REFRESH, json={"refresh_token": other_device["refresh_token"]})
    assert elsewhere.status_code == 200, elsewhere.text


def test_a_refresh_whose_answer_was_lost_can_be_asked_again_once(
    client: TestClient, deni: Deni
) -> None:
    """A phone on a bad network sends its refresh, Deni swaps the token, the answer never
    arrives: the phone still holds only the spent token, and must not be signed out for it."""
    _register(client, deni, "0722000222")
    first = _login(client, "0722000222", "3591").json()
    lost = client.post(REFRESH, json={"refresh_token": first["refresh_token"]})
    assert lost.status_code == 200, lost.text  # this answer never reaches the phone

    assert isinstance(deni.clock, ManualClock)
    deni.clock.advance(REFRESH_ANSWER_LOST_GRACE / 2)
    lost_again = client.post(REFRESH, json={"refresh_token": first["refresh_token"]})
    assert lost_again.status_code == 200, lost_again.text  # the network loses this one too
    deni.clock.advance(REFRESH_ANSWER_LOST_GRACE / 2 - timedelta(seconds=1))
    again = client.post(REFRESH, json={"refresh_token": first["refresh_token"]})
    assert again.status_code == 200, again.text
    kept = again.json()
    swapped = {lost.json()["refresh_token"], lost_again.json()["refresh_token"]}
    assert kept["refresh_token"] not in swapped | {first["refresh_token"]}
    assert client.get(ME, headers=_bearer(kept["access_token"])).status_code == 200
    # The token in the lost answer was swapped in its place: it no longer works alone...
    next_pair = client.post(REFRESH, json={"refresh_token": kept["refresh_token"]})
    assert next_pair.status_code == 200, next_pair.text
    # ...and once the phone has used its new token, the spent one is theft, grace or not.
    replay = client.post(REFRESH, json={"refresh_token": first["refresh_token"]})
    assert_error(replay, 401, "invalid_refresh_token")
    family_gone = client.post(REFRESH, json={"refresh_token": next_pair.json()["refresh_token"]})
    assert_error(family_gone, 401, "invalid_refresh_token")


def test_no_grace_for_a_spent_token_after_sign_out_everywhere(
    client: TestClient, deni: Deni
) -> None:
    _register(client, deni, "0722000333")
    first = _login(client, "0722000333", "3591").json()
    assert client.post(REFRESH, json={"refresh_token": first["refresh_token"]}).status_code == 200
    with deni.uow() as uow:
        user = uow.users.get_by_phone("254722000333")
        assert user is not None
        uow.tokens.revoke_all(user.id, deni.clock.now())  # as a PIN reset or support lock does
        uow.commit()
    replay = client.post(REFRESH, json={"refresh_token": first["refresh_token"]})
    assert_error(replay, 401, "invalid_refresh_token")


def test_refresh_gives_a_new_access_token_after_the_old_one_expired(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    _register(client, deni, "0722000111")
    session = _login(client, "0722000111", "3591").json()
    clock.advance(timedelta(minutes=20))
    assert_error(client.get(ME, headers=_bearer(session["access_token"])), 401, "token_expired")
    renewed = client.post(REFRESH, json={"refresh_token": session["refresh_token"]})
    assert renewed.status_code == 200, renewed.text
    claims = jwt.decode(renewed.json()["access_token"], options={"verify_signature": False})
    assert claims["sub"] == session["user_id"]
    assert claims["exp"] == int((clock.now() + timedelta(minutes=15)).timestamp())


def test_a_token_issued_by_a_clock_ahead_of_the_wall_clock_is_accepted(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    _register(client, deni, "0722000111")
    # The service's clock runs an hour ahead of this machine's (as another server's might).
    ahead = datetime.now(UTC) + timedelta(hours=1) - clock.now()
    clock.advance(max(ahead, timedelta(0)))
    session = _login(client, "0722000111", "3591").json()
    assert client.get(ME, headers=_bearer(session["access_token"])).status_code == 200


def test_refresh_refuses_unknown_malformed_and_expired_tokens(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    _register(client, deni, "0722000111")
    session = _login(client, "0722000111", "3591").json()
    before = db_state(deni)
    assert_error(client.post(REFRESH, json={"refresh_token": "nope"}), 401, "invalid_refresh_token")
    assert_error(client.post(REFRESH, json={"refresh_token": ""}), 401, "invalid_refresh_token")
    too_long = client.post(REFRESH, json={"refresh_token": "x" * 201})
    assert_error(too_long, 422, "validation_failed")
    assert_error(client.post(REFRESH, json={"refresh_token": 42}), 422, "validation_failed")
    assert_error(client.post(REFRESH, json={}), 422, "validation_failed")
    # An access token is not a refresh token.
    wrong_kind = client.post(REFRESH, json={"refresh_token": session["access_token"][:200]})
    assert_error(wrong_kind, 401, "invalid_refresh_token")
    assert_nothing_written(deni, before)
    clock.advance(timedelta(days=30))
    expired = client.post(REFRESH, json={"refresh_token": session["refresh_token"]})
    assert_error(expired, 401, "invalid_refresh_token")


# --- change PIN -------------------------------------------------------------------------------


def test_change_pin_then_only_the_new_pin_works(client: TestClient, deni: Deni) -> None:
    owner = api_user(client, deni)
    response = client.post(
        CHANGE_PIN, json={"old_pin": "3591", "new_pin": "5683"}, headers=owner.with_key()
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"ok": True}
    assert_error(_login(client, owner.user.phone, "3591"), 401, "wrong_credentials")
    assert _login(client, owner.user.phone, "5683").status_code == 200


def test_change_pin_with_a_wrong_old_pin_is_refused_and_counts_towards_the_lock(
    client: TestClient, deni: Deni
) -> None:
    owner = api_user(client, deni)
    # A lock earned inside a session ends every session (its refresh tokens are revoked).
    before = db_state(deni, ignore=(*PIN_BOOKKEEPING, "refresh_tokens"))
    for attempt in range(3):
        response = client.post(
            CHANGE_PIN, json={"old_pin": "0000", "new_pin": "5683"}, headers=owner.with_key()
        )
        if attempt < 2:
            assert_error(response, 401, ("wrong_pin", "wrong_pin_last_try")[attempt])
    assert_error(response, 423, "account_locked")
    assert_nothing_written(deni, before, ignore=(*PIN_BOOKKEEPING, "refresh_tokens"))
    with deni.uow.read_only() as uow:
        user = uow.users.get(owner.user.id)
    assert user is not None
    assert user.pin_hash == owner.user.pin_hash  # the PIN did not change
    # Whoever held this session could not prove the PIN: the session is over.
    assert_error(client.get(ME, headers=owner.headers), 401, "session_ended")


def test_change_pin_refuses_a_malformed_new_pin(
    client: TestClient, deni: Deni, subtests: pytest.Subtests
) -> None:
    owner = api_user(client, deni)
    before = db_state(deni)
    for new_pin in ("123", "abcd", "12345", "", "12\u00b34"):
        with subtests.test(new_pin=new_pin):
            response = client.post(
                CHANGE_PIN, json={"old_pin": "3591", "new_pin": new_pin}, headers=owner.with_key()
            )
            assert_error(response, 422, "invalid_pin")
            assert_nothing_written(deni, before)


def test_change_pin_needs_a_login_and_an_idempotency_key(client: TestClient, deni: Deni) -> None:
    owner = api_user(client, deni)
    before = db_state(deni)
    body = {"old_pin": "3591", "new_pin": "5683"}
    assert_error(client.post(CHANGE_PIN, json=body, headers=key()), 401, "unauthorized")
    missing = client.post(CHANGE_PIN, json=body, headers=owner.headers)
    assert_error(missing, 422, "idempotency_key_missing")
    assert_nothing_written(deni, before)
