"""Proving a phone number, written as the attacks it stops: registering someone else's number,
guessing its code, blocking its owner, lending or borrowing from an account nobody proved, and
squatting a number its owner later claims."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from tests.fakes import ManualClock
from tests.support.api import (
    approve,
    assert_error,
    assert_ledger_whole,
    assert_nothing_written,
    balance,
    db_state,
    get_loan,
    loan_body,
    log_in_again,
    request_loan,
)
from tests.support.builders import (
    ApiUser,
    api_user,
    fund,
    next_phone,
    sms_code,
    sms_texts,
    wallet_cents,
)

from deni.adapters.db import tables
from deni.bootstrap import Deni, database_engine
from deni.domain.phone import normalise_msisdn
from deni.domain.security import (
    RESET_ASKS_PER_SOURCE_MAX,
    RESET_CODE_ATTEMPTS_MAX,
    RESET_CODE_TTL,
    RESET_CODE_WINDOW,
    RESET_CODES_PER_WINDOW_MAX,
)
from deni.services import phone_proof, users, ussd
from deni.services.sms import send_pending_sms

ASK = "/api/v1/auth/register/code"
REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
OWN_CODE = "/api/v1/me/phone/code"
CONFIRM = "/api/v1/me/phone/confirm"


def _ask(client: TestClient, phone: str) -> dict[str, str]:
    response = client.post(ASK, json={"phone": phone})
    assert response.status_code == 202, response.text
    answer: dict[str, str] = response.json()
    return answer


def _code_by_http(client: TestClient, deni: Deni, phone: str) -> str:
    _ask(client, phone)
    return sms_code(deni, phone)


def _register(client: TestClient, phone: str, code: str | None, **extra: str) -> httpx.Response:
    body: dict[str, Any] = {"phone": phone, "name": "Mama Wanjiku", "pin": "2468", **extra}
    if code is not None:
        body["code"] = code
    return client.post(REGISTER, json=body)


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def _legacy(client: TestClient, deni: Deni, *, phone: str | None = None, name: str) -> ApiUser:
    """An account made online before numbers were proven (what migration 0014 leaves
    unproven), signed in."""
    number = phone or next_phone()
    user = users.register_user(
        deni,
        phone=number,
        name=name,
        pin="1357",
        phone_proven=False,
    )
    login = client.post(LOGIN, json={"phone": number, "pin": "1357"})
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    return ApiUser(user, "1357", headers)


def _set_proof(deni: Deni, who: ApiUser, *, proven: bool) -> None:
    """Unproven: as migration 0014 leaves an account an API registration made."""
    with database_engine(deni).begin() as connection:
        connection.execute(
            update(tables.users)
            .where(tables.users.c.id == who.user.id)
            .values(phone_proven_at=deni.clock.now() if proven else None)
        )


# --- registering a number needs its code --------------------------------------------------------


def test_registering_someone_elses_number_without_its_code_is_refused(
    client: TestClient, deni: Deni
) -> None:
    victim = "0722 555 001"
    before = db_state(deni)
    assert_error(_register(client, victim, None), 422, "phone_code_required")
    assert_error(_register(client, victim, "123456"), 401, "phone_code_invalid")
    assert_nothing_written(deni, before)

    _ask(client, victim)  # the code goes to the victim's phone, not the attacker's
    code = sms_code(deni, victim)
    assert_error(_register(client, victim, _wrong(code)), 401, "phone_code_invalid")
    with deni.uow.read_only() as uow:
        assert uow.users.get_by_phone(normalise_msisdn(victim)) is None


def test_a_code_is_void_after_three_wrong_guesses_and_after_ten_minutes(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    victim = next_phone()
    code = _code_by_http(client, deni, victim)
    for _ in range(RESET_CODE_ATTEMPTS_MAX):
        assert_error(_register(client, victim, _wrong(code)), 401, "phone_code_invalid")
    assert_error(_register(client, victim, code), 401, "phone_code_invalid")  # void now

    clock.advance(timedelta(seconds=1))
    late = _code_by_http(client, deni, victim)
    clock.advance(RESET_CODE_TTL + timedelta(seconds=1))
    assert_error(_register(client, victim, late), 401, "phone_code_invalid")


def test_a_malformed_name_or_pin_costs_no_try(client: TestClient, deni: Deni) -> None:
    phone = next_phone()
    code = _code_by_http(client, deni, phone)
    for _ in range(RESET_CODE_ATTEMPTS_MAX + 1):
        assert_error(_register(client, phone, code, pin="12a4"), 422, "invalid_pin")
        assert_error(_register(client, phone, code, name="x"), 422, "invalid_name")
    assert _register(client, phone, code).status_code == 201


@pytest.mark.usefixtures("real_limits")
def test_a_number_gets_a_few_codes_an_hour_and_a_source_a_few_asks(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    victim = next_phone()
    for _ in range(RESET_CODES_PER_WINDOW_MAX + 1):
        _ask(client, victim)
    assert len(sms_texts(deni, victim)) == RESET_CODES_PER_WINDOW_MAX

    others = [next_phone() for _ in range(RESET_ASKS_PER_SOURCE_MAX)]
    for phone in others[: RESET_ASKS_PER_SOURCE_MAX - RESET_CODES_PER_WINDOW_MAX - 1]:
        _ask(client, phone)
    refused = client.post(ASK, json={"phone": others[-1]})
    assert_error(refused, 429, "too_many_requests")
    assert sms_texts(deni, others[-1]) == []  # the refused ask sent nothing

    clock.advance(RESET_CODE_WINDOW)
    _ask(client, others[-1])
    _ask(client, victim)
    assert len(sms_texts(deni, others[-1])) == 1
    assert len(sms_texts(deni, victim)) == RESET_CODES_PER_WINDOW_MAX + 1


def test_asking_says_the_same_for_a_member_and_sends_them_nothing(
    client: TestClient, deni: Deni
) -> None:
    member = api_user(client, deni)
    before = db_state(deni)
    for_member = _ask(client, member.user.phone)
    assert_nothing_written(deni, before)  # no code, no SMS, no trace
    assert for_member == _ask(client, next_phone())


def test_the_owner_registers_after_an_attacker_asked_for_codes(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    owner = "0722 555 002"
    for _ in range(RESET_CODES_PER_WINDOW_MAX - 1):  # the attacker asks: nothing is reserved
        _ask(client, owner)
        assert_error(_register(client, owner, "000000"), 401, "phone_code_invalid")
        clock.advance(timedelta(seconds=1))  # so the owner's SMS is the newest
    answer = _register(client, owner, _code_by_http(client, deni, owner))
    assert answer.status_code == 201, answer.text
    assert answer.json()["phone_proven"] is True
    assert client.post(LOGIN, json={"phone": owner, "pin": "2468"}).status_code == 200


# --- an account nobody proved neither lends nor borrows -----------------------------------------


def test_an_unproven_account_cannot_borrow_lend_approve_or_be_asked(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    legacy = _legacy(client, deni, name="Legacy Lucy")
    proven = api_user(client, deni, name="Proven Peter")
    fund(deni, legacy.user, 200_000)
    fund(deni, proven.user, 200_000)
    before = db_state(deni)
    borrow = client.post("/api/v1/loans", json=loan_body(proven), headers=legacy.with_key())
    assert_error(borrow, 403, "phone_not_proven")
    asked = client.post("/api/v1/loans", json=loan_body(legacy), headers=proven.with_key())
    assert_error(asked, 403, "other_party_not_proven")
    assert_nothing_written(deni, before)

    # Requests made before the proofs (both ways) cannot be approved either.
    from_legacy_user = api_user(client, deni, name="Soon Legacy")
    from_legacy = request_loan(client, from_legacy_user, proven)
    lender_of_old = api_user(client, deni, name="Old Lender")
    fund(deni, lender_of_old.user, 200_000)
    old_request = request_loan(client, proven, lender_of_old)
    _set_proof(deni, from_legacy_user, proven=False)
    _set_proof(deni, lender_of_old, proven=False)
    refused = client.post(
        f"/api/v1/loans/{from_legacy['id']}/approve",
        json={"pin": "3591"},
        headers=proven.with_key(),
    )
    assert_error(refused, 403, "other_party_not_proven")
    refused = client.post(
        f"/api/v1/loans/{old_request['id']}/approve",
        json={"pin": "3591"},
        headers=lender_of_old.with_key(),
    )
    assert_error(refused, 403, "phone_not_proven")
    assert get_loan(client, proven, old_request["id"])["state"] == "requested"
    assert get_loan(client, proven, from_legacy["id"])["state"] == "requested"

    # The owner proves the number with a code by SMS, and may lend.
    clock.advance(timedelta(seconds=1))  # after the SMS that proved it at registration
    assert client.post(OWN_CODE, headers=lender_of_old.headers).status_code == 202
    confirmed = client.post(
        CONFIRM,
        json={"code": sms_code(deni, lender_of_old.user.phone)},
        headers=lender_of_old.headers,
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["phone_proven"] is True
    assert approve(client, lender_of_old, old_request["id"])["state"] == "active"


def test_proving_one_s_own_number_takes_its_code_and_counts_wrong_ones(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    legacy = _legacy(client, deni, name="Legacy Lucy")
    me = client.get("/api/v1/me", headers=legacy.headers).json()
    assert me["phone_proven"] is False
    assert client.post(OWN_CODE, headers=legacy.headers).status_code == 202
    code = sms_code(deni, legacy.user.phone)
    for _ in range(RESET_CODE_ATTEMPTS_MAX):
        wrong = client.post(CONFIRM, json={"code": _wrong(code)}, headers=legacy.headers)
        assert_error(wrong, 401, "phone_code_invalid")
    assert_error(
        client.post(CONFIRM, json={"code": code}, headers=legacy.headers), 401, "phone_code_invalid"
    )

    clock.advance(timedelta(seconds=1))
    assert client.post(OWN_CODE, headers=legacy.headers).status_code == 202
    fresh = sms_code(deni, legacy.user.phone)
    assert client.post(CONFIRM, json={"code": fresh}, headers=legacy.headers).status_code == 200
    assert client.post(CONFIRM, json={"code": fresh}, headers=legacy.headers).status_code == 200
    assert_error(client.post(OWN_CODE, headers=legacy.headers), 409, "phone_already_proven")
    assert client.get("/api/v1/me", headers=legacy.headers).json()["phone_proven"] is True
    assert_error(client.post(OWN_CODE), 401, "unauthorized")


def test_a_pin_reset_by_sms_code_proves_the_number(client: TestClient, deni: Deni) -> None:
    legacy = _legacy(client, deni, name="Legacy Lucy")
    client.post("/api/v1/auth/pin-reset", json={"phone": legacy.user.phone})
    code = sms_code(deni, legacy.user.phone)
    body = {"phone": legacy.user.phone, "code": code, "new_pin": "9753"}
    assert client.post("/api/v1/auth/pin-reset/confirm", json=body).status_code == 200
    with deni.uow.read_only() as uow:
        user = uow.users.get(legacy.user.id)
    assert user is not None
    assert user.phone_proven


# --- the owner takes the number from a squatter ------------------------------------------------


def test_the_owner_takes_the_number_from_an_unproven_squatter(
    client: TestClient, deni: Deni
) -> None:
    """A fake "Mama Wanjiku" registered the real one's number before proofs were asked, and
    borrowed with it. The real one registers with a code: the number is hers, fresh."""
    number = "0722 555 003"
    squatter = _legacy(client, deni, phone=number, name="Mama Wanjiku")
    refresh = client.post(LOGIN, json={"phone": number, "pin": "1357"}).json()["refresh_token"]
    lender = api_user(client, deni, name="Real Lender")
    fund(deni, lender.user, 200_000)
    fund(deni, squatter.user, 30_000)
    _set_proof(deni, squatter, proven=True)  # it borrowed before proofs were asked
    loan = request_loan(client, squatter, lender)
    approve(client, lender, loan["id"])
    _set_proof(deni, squatter, proven=False)

    _ask(client, number)
    sms = sms_texts(deni, number)[0]
    assert "never confirmed" in sms  # the SIM's holder learns the number has an account
    mine = _register(client, number, sms_code(deni, number), name="Wanjiku Real")
    assert mine.status_code == 201, mine.text
    owner = mine.json()
    assert owner["id"] != squatter.user.id
    assert owner["phone"] == normalise_msisdn(number)
    assert owner["phone_proven"] is True

    # The squatter's sessions are over, and the number signs the owner in.
    assert_error(
        client.post("/api/v1/auth/refresh", json={"refresh_token": refresh}),
        401,
        "invalid_refresh_token",
    )
    assert_error(client.get("/api/v1/me", headers=squatter.headers), 401, "session_ended")
    assert_error(
        client.post(LOGIN, json={"phone": number, "pin": "1357"}), 401, "wrong_credentials"
    )
    signed_in = client.post(LOGIN, json={"phone": number, "pin": "2468"}).json()
    assert signed_in["user_id"] == owner["id"]
    # Its records stay: the money, the loan it owes, the lender's view of it without a number.
    assert wallet_cents(deni, squatter.user) == 30_000 + 100_000
    kept = get_loan(client, lender, loan["id"])
    assert kept["state"] == "active"
    assert kept["borrower"] == {"name": "Mama Wanjiku", "phone": ""}
    owner_headers = {"Authorization": f"Bearer {signed_in['access_token']}"}
    assert client.get("/api/v1/wallet", headers=owner_headers).json()["balance_cents"] == 0
    assert_ledger_whole(deni)
    # The squatter's pending SMS never reach the owner's phone.
    texts_before = sms_texts(deni, number)
    send_pending_sms(queue=deni.sms_queue, sender=deni.sms, clock=deni.clock)
    assert sms_texts(deni, number) == texts_before
    with database_engine(deni).connect() as connection:
        audit = connection.execute(
            select(tables.audit_log.c.command).where(tables.audit_log.c.actor_id == owner["id"])
        ).scalars()
        assert "take_unproven_number" in list(audit)


def test_a_proven_account_keeps_its_number_even_against_a_code(
    client: TestClient, deni: Deni
) -> None:
    """The code was sent while the account was unproven; it proved itself (USSD and its PIN)
    before the code came back: the number stays with it."""
    number = next_phone()
    squatter = _legacy(client, deni, phone=number, name="First Comer")
    code = _code_by_http(client, deni, number)
    ussd.claim_number(
        deni,
        user_id=squatter.user.id,
        phone=squatter.user.phone,
        pin="1357",
        channel="ussd",
    )
    assert_error(_register(client, number, code), 409, "already_registered")
    assert client.post(LOGIN, json={"phone": number, "pin": "1357"}).status_code == 200
    log_in_again(deni, squatter)
    assert balance(client, squatter) == 0


def test_strangers_numbers_are_forgotten_once_their_codes_can_do_nothing(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    stranger, later = next_phone(), next_phone()
    _ask(client, stranger)

    def kept() -> set[str]:
        with database_engine(deni).connect() as connection:
            return set(connection.execute(select(tables.phone_codes.c.phone)).scalars())

    assert (
        phone_proof.prune_codes(
            deni,
        )
        == 0
    )  # its hour runs
    clock.advance(RESET_CODE_WINDOW - timedelta(minutes=5))
    _ask(client, later)
    clock.advance(timedelta(minutes=5))
    assert (
        phone_proof.prune_codes(
            deni,
        )
        == 1
    )
    assert kept() == {normalise_msisdn(later)}  # its code still works for a few minutes
