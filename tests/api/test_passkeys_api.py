"""Passkeys through HTTP with the real WebAuthn library: a software authenticator makes real
ES256 keys and signatures, py_webauthn checks them. Adding one takes the PIN; a passkey signs
in with the PIN's tokens and approves money out bound to the action and amount; a stolen
session token alone moves nothing; replays, other origins and relying parties, other members'
keys, removed keys and sign counts that go back are refused; the PIN keeps working."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.support.api import assert_error, balance, get_loan, request_loan
from tests.support.authenticator import SoftAuthenticator
from tests.support.builders import ApiUser, api_user, fund

from deni.adapters.db.passkeys import passkeys as passkeys_table
from deni.bootstrap import Deni, database_engine

ADD_OPTIONS = "/api/v1/me/passkeys/options"
PASSKEYS = "/api/v1/me/passkeys"
APPROVAL = "/api/v1/me/passkeys/approval"
SIGN_IN_OPTIONS = "/api/v1/auth/passkey/options"
SIGN_IN = "/api/v1/auth/passkey"


def phone_of(deni: Deni, *, origin: str | None = None) -> SoftAuthenticator:
    return SoftAuthenticator(origin=origin or deni.relying_party.origin)


def add_passkey(
    client: TestClient, who: ApiUser, phone: SoftAuthenticator, *, name: str = "Tecno Spark"
) -> Any:
    options = client.post(ADD_OPTIONS, json={"pin": who.pin}, headers=who.headers)
    assert options.status_code == 200, options.text
    ceremony = options.json()
    credential = phone.create(ceremony["options"])
    body = {"challenge_id": ceremony["challenge_id"], "credential": credential, "name": name}
    return client.post(PASSKEYS, json=body, headers=who.headers)


def approval(
    client: TestClient, who: ApiUser, phone: SoftAuthenticator, **action: object
) -> dict[str, object]:
    """The `passkey` a money-out body carries: the phone's answer to a challenge for `action`."""
    response = client.post(APPROVAL, json=action, headers=who.headers)
    assert response.status_code == 200, response.text
    ceremony = response.json()
    return {"challenge_id": ceremony["challenge_id"], "credential": phone.get(ceremony["options"])}


def sign_in(client: TestClient, phone: SoftAuthenticator) -> Any:
    ceremony = client.post(SIGN_IN_OPTIONS).json()
    credential = phone.get(ceremony["options"])
    return client.post(
        SIGN_IN, json={"challenge_id": ceremony["challenge_id"], "credential": credential}
    )


def lender_with_loan(client: TestClient, deni: Deni) -> tuple[ApiUser, ApiUser, dict[str, Any]]:
    lender = api_user(client, deni, name="Wanjiku Kamau")
    borrower = api_user(client, deni, name="Otieno Ouma")
    fund(deni, lender.user, 100_000)
    loan = request_loan(client, borrower, lender, principal_cents=100_000)
    return lender, borrower, loan


def test_a_passkey_is_added_with_the_pin_signs_in_and_approves_a_loan(
    client: TestClient, deni: Deni
) -> None:
    lender, borrower, loan = lender_with_loan(client, deni)
    phone = phone_of(deni)
    wrong = client.post(ADD_OPTIONS, json={"pin": "0000"}, headers=lender.headers)
    assert_error(wrong, 401, "wrong_pin")
    added = add_passkey(client, lender, phone)
    assert added.status_code == 201, added.text
    assert added.json()["name"] == "Tecno Spark"
    listed = client.get(PASSKEYS, headers=lender.headers).json()["passkeys"]
    assert [p["id"] for p in listed] == [added.json()["id"]]
    assert listed[0]["last_used_at"] is None

    # Signing in with it gives what the PIN gives: tokens that work and refresh.
    session = sign_in(client, phone)
    assert session.status_code == 200, session.text
    tokens = session.json()
    assert tokens["user_id"] == lender.user.id
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200
    assert me.json()["id"] == lender.user.id
    swapped = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert swapped.status_code == 200

    # Approving with it moves the money, as the PIN would.
    passkey = approval(
        client, lender, phone, action="approve_loan", loan_id=loan["id"], amount_cents=100_000
    )
    approved = client.post(
        f"/api/v1/loans/{loan['id']}/approve",
        json={"passkey": passkey, "base_version": loan["version"]},
        headers=lender.with_key(),
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["state"] == "active"
    assert balance(client, lender) == 0
    assert balance(client, borrower) == 100_000
    used = client.get(PASSKEYS, headers=lender.headers).json()["passkeys"][0]
    assert used["last_used_at"] is not None


def test_an_approval_works_once_for_its_own_action_and_amount(
    client: TestClient, deni: Deni
) -> None:
    lender, borrower, loan = lender_with_loan(client, deni)
    phone = phone_of(deni)
    assert add_passkey(client, lender, phone).status_code == 201
    url = f"/api/v1/loans/{loan['id']}/approve"
    # Signed for another amount than the loan's: refused, nothing moves.
    other_amount = approval(
        client, lender, phone, action="approve_loan", loan_id=loan["id"], amount_cents=1_000
    )
    refused = client.post(url, json={"passkey": other_amount}, headers=lender.with_key())
    assert_error(refused, 401, "passkey_challenge_invalid")
    # Signed for a withdrawal of the same amount: not an approval.
    withdrawal = approval(client, lender, phone, action="withdraw", amount_cents=100_000)
    refused = client.post(url, json={"passkey": withdrawal}, headers=lender.with_key())
    assert_error(refused, 401, "passkey_challenge_invalid")
    assert get_loan(client, lender, loan["id"])["state"] == "requested"

    passkey = approval(
        client, lender, phone, action="approve_loan", loan_id=loan["id"], amount_cents=100_000
    )
    headers = lender.with_key()
    assert client.post(url, json={"passkey": passkey}, headers=headers).status_code == 200
    # The same request again under its key is the same answer, replayed; under a new key, the
    # answer's challenge is spent.
    again = client.post(url, json={"passkey": passkey}, headers=headers)
    assert again.status_code == 200
    assert again.headers.get("Idempotent-Replayed") == "true"
    replay = client.post(url, json={"passkey": passkey}, headers=lender.with_key())
    assert_error(replay, 401, "passkey_challenge_invalid")
    assert balance(client, borrower) == 100_000


def test_a_stolen_session_token_alone_moves_no_money(client: TestClient, deni: Deni) -> None:
    """The thief holds the lender's access token and a passkey of an account of their own."""
    lender, borrower, loan = lender_with_loan(client, deni)
    assert add_passkey(client, lender, phone_of(deni)).status_code == 201
    thief = api_user(client, deni, name="Thief")
    thief_phone = phone_of(deni)
    assert add_passkey(client, thief, thief_phone).status_code == 201
    url = f"/api/v1/loans/{loan['id']}/approve"
    nothing = client.post(url, json={}, headers=lender.with_key())
    assert_error(nothing, 422, "validation_failed")
    both = client.post(
        url,
        json={"pin": "1111", "passkey": {"challenge_id": "x", "credential": {}}},
        headers=lender.with_key(),
    )
    assert_error(both, 422, "validation_failed")
    # A challenge the thief asked for with the stolen token, signed by the thief's passkey.
    forged = approval(
        client, lender, thief_phone, action="approve_loan", loan_id=loan["id"], amount_cents=100_000
    )
    refused = client.post(url, json={"passkey": forged}, headers=lender.with_key())
    assert_error(refused, 401, "passkey_refused")
    # Adding the thief's own passkey to the lender's account needs the lender's PIN. The
    # refused signature above counted as a wrong try: this second one says one is left.
    assert_error(
        client.post(ADD_OPTIONS, json={"pin": "1111"}, headers=lender.headers),
        401,
        "wrong_pin_last_try",
    )
    # A sign-in challenge is no approval either.
    ceremony = client.post(SIGN_IN_OPTIONS).json()
    passkey = {
        "challenge_id": ceremony["challenge_id"],
        "credential": thief_phone.get(ceremony["options"]),
    }
    refused = client.post(url, json={"passkey": passkey}, headers=lender.with_key())
    assert_error(refused, 401, "passkey_challenge_invalid")
    assert get_loan(client, lender, loan["id"])["state"] == "requested"
    assert balance(client, borrower) == 0
    # The lender's PIN still approves.
    approved = client.post(url, json={"pin": lender.pin}, headers=lender.with_key())
    assert approved.status_code == 200, approved.text


def test_answers_from_another_origin_or_relying_party_or_unverified_are_refused(
    client: TestClient, deni: Deni
) -> None:
    member = api_user(client, deni)
    phished = add_passkey(client, member, phone_of(deni, origin="https://deni-login.example"))
    assert_error(phished, 401, "passkey_refused")
    unverified = SoftAuthenticator(origin=deni.relying_party.origin, verifies_user=False)
    assert_error(add_passkey(client, member, unverified), 401, "passkey_refused")
    # Options for another relying party (a look-alike site relaying Deni's challenge).
    options = client.post(ADD_OPTIONS, json={"pin": member.pin}, headers=member.headers).json()
    options["options"]["rp"]["id"] = "deni-login.example"
    credential = phone_of(deni).create(options["options"])
    body = {"challenge_id": options["challenge_id"], "credential": credential}
    assert_error(client.post(PASSKEYS, json=body, headers=member.headers), 401, "passkey_refused")
    assert client.get(PASSKEYS, headers=member.headers).json()["passkeys"] == []

    phone = phone_of(deni)
    assert add_passkey(client, member, phone).status_code == 201
    phone.origin = "https://deni-login.example"
    assert_error(sign_in(client, phone), 401, "passkey_refused")
    phone.origin = deni.relying_party.origin
    assert sign_in(client, phone).status_code == 200


def test_a_removed_passkey_or_one_whose_count_went_back_is_refused(
    client: TestClient, deni: Deni
) -> None:
    member = api_user(client, deni)
    other = api_user(client, deni, name="Otieno Ouma")
    phone = phone_of(deni)
    passkey_id = add_passkey(client, member, phone).json()["id"]
    assert sign_in(client, phone).status_code == 200
    phone.keys[0].sign_count = 0  # a copy of the key, taken before that sign-in
    assert_error(sign_in(client, phone), 401, "passkey_refused")
    phone.keys[0].sign_count = 10
    assert sign_in(client, phone).status_code == 200

    assert_error(
        client.delete(f"{PASSKEYS}/{passkey_id}", headers=other.headers), 404, "passkey_not_found"
    )
    assert client.delete(f"{PASSKEYS}/{passkey_id}", headers=member.headers).status_code == 200
    assert client.get(PASSKEYS, headers=member.headers).json()["passkeys"] == []
    assert_error(
        client.delete(f"{PASSKEYS}/{passkey_id}", headers=member.headers), 404, "passkey_not_found"
    )
    assert_error(sign_in(client, phone), 401, "passkey_refused")
    no_passkey = client.post(
        APPROVAL, json={"action": "withdraw", "amount_cents": 1_000}, headers=member.headers
    )
    assert_error(no_passkey, 409, "no_passkey")
    # The PIN signs in as before.
    login = client.post("/api/v1/auth/login", json={"phone": member.user.phone, "pin": member.pin})
    assert login.status_code == 200


def test_a_passkey_repays_and_writes_off_bound_to_each(client: TestClient, deni: Deni) -> None:
    lender, borrower, loan = lender_with_loan(client, deni)
    approved = client.post(
        f"/api/v1/loans/{loan['id']}/approve", json={"pin": lender.pin}, headers=lender.with_key()
    )
    assert approved.status_code == 200, approved.text
    borrower_phone, lender_phone = phone_of(deni), phone_of(deni)
    assert add_passkey(client, borrower, borrower_phone).status_code == 201
    assert add_passkey(client, lender, lender_phone).status_code == 201
    passkey = approval(
        client,
        borrower,
        borrower_phone,
        action="repay_loan",
        loan_id=loan["id"],
        amount_cents=30_000,
    )
    repaid = client.post(
        f"/api/v1/loans/{loan['id']}/repay",
        json={"amount_cents": 30_000, "passkey": passkey},
        headers=borrower.with_key(),
    )
    assert repaid.status_code == 200, repaid.text
    assert repaid.json()["applied_cents"] == 30_000
    passkey = approval(client, lender, lender_phone, action="write_off_loan", loan_id=loan["id"])
    written_off = client.post(
        f"/api/v1/loans/{loan['id']}/write-off",
        json={"passkey": passkey},
        headers=lender.with_key(),
    )
    assert written_off.status_code == 200, written_off.text
    assert written_off.json()["state"] == "written_off"


def test_malformed_answers_are_refused_with_a_code_never_a_500(
    client: TestClient, deni: Deni
) -> None:
    member = api_user(client, deni)
    phone = phone_of(deni)
    assert add_passkey(client, member, phone).status_code == 201
    for credential in (
        {},
        {"id": "!!", "rawId": "!!", "type": "public-key", "response": {}},
        {"id": 5},
    ):
        ceremony = client.post(SIGN_IN_OPTIONS).json()
        body = {"challenge_id": ceremony["challenge_id"], "credential": credential}
        assert_error(client.post(SIGN_IN, json=body), 401, "passkey_refused")
    assert_error(
        client.post(SIGN_IN, json={"challenge_id": "nope", "credential": {}}),
        401,
        "passkey_challenge_invalid",
    )
    bad_action = client.post(APPROVAL, json={"action": "withdraw"}, headers=member.headers)
    assert_error(bad_action, 422, "invalid_action")
    unknown = client.post(APPROVAL, json={"action": "steal"}, headers=member.headers)
    assert_error(unknown, 422, "validation_failed")
    assert client.post(SIGN_IN_OPTIONS).status_code == 200
    assert client.get(PASSKEYS).status_code == 401  # signed in only


def test_the_export_lists_passkeys_and_closing_the_account_erases_them(
    client: TestClient, deni: Deni
) -> None:
    member = api_user(client, deni)
    phone = phone_of(deni)
    added = add_passkey(client, member, phone).json()
    exported = client.get("/api/v1/me/export", headers=member.headers).json()["passkeys"]
    assert [(p["id"], p["name"]) for p in exported] == [(added["id"], "Tecno Spark")]
    closed = client.post("/api/v1/me/close", json={"pin": member.pin}, headers=member.headers)
    assert closed.status_code == 200, closed.text
    with database_engine(deni).connect() as connection:
        rows = connection.execute(
            select(passkeys_table).where(passkeys_table.c.user_id == member.user.id)
        )
        assert rows.all() == []
    assert_error(sign_in(client, phone), 401, "passkey_refused")
