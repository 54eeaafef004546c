"""The weak-PIN rule on the API: refused with `weak_pin` wherever a PIN is set (registration,
change, reset), never where one is checked."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from tests.support.api import approve, assert_error, assert_nothing_written, db_state, request_loan
from tests.support.builders import (
    api_user,
    fund,
    next_phone,
    registration_code,
    sms_texts,
    with_pin_chosen_before_the_weak_pin_rule,
)

from deni.bootstrap import Deni

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
CHANGE_PIN = "/api/v1/me/pin"


def test_registering_with_a_weak_pin_is_refused_and_the_code_still_works(
    client: TestClient, deni: Deni
) -> None:
    phone = next_phone()
    code = registration_code(deni, phone)
    body = {"phone": phone, "name": "Amina Weak", "code": code, "language": "en"}
    before = db_state(deni)
    for weak in ("1234", "0000", "1990"):
        refused = client.post(REGISTER, json={**body, "pin": weak})
        assert "Choose another" in assert_error(refused, 422, "weak_pin")["message"]
    assert_nothing_written(deni, before)
    # The code is not spent by a refused PIN: the person chooses again.
    assert client.post(REGISTER, json={**body, "pin": "7391"}).status_code == 201


def test_changing_or_resetting_to_a_weak_pin_is_refused(client: TestClient, deni: Deni) -> None:
    member = api_user(client, deni, pin="3591")
    changed = client.post(
        CHANGE_PIN, json={"old_pin": "3591", "new_pin": "1212"}, headers=member.with_key()
    )
    assert_error(changed, 422, "weak_pin")
    client.post("/api/v1/auth/pin-reset", json={"phone": member.user.phone})
    [code] = re.findall(r"\b\d{6}\b", sms_texts(deni, member.user.phone)[0])
    reset = client.post(
        "/api/v1/auth/pin-reset/confirm",
        json={"phone": member.user.phone, "code": code, "new_pin": "9876"},
    )
    assert_error(reset, 422, "weak_pin")
    assert client.post(LOGIN, json={"phone": member.user.phone, "pin": "3591"}).status_code == 200


def test_a_member_who_chose_a_weak_pin_before_the_rule_signs_in_and_lends_with_it(
    client: TestClient, deni: Deni
) -> None:
    lender, borrower = api_user(client, deni), api_user(client, deni)
    fund(deni, lender.user, 100_000)
    with_pin_chosen_before_the_weak_pin_rule(deni, lender.user, "1111")
    lender.pin = "1111"
    signed_in = client.post(LOGIN, json={"phone": lender.user.phone, "pin": "1111"})
    assert signed_in.status_code == 200
    loan = request_loan(client, borrower, lender)
    assert approve(client, lender, loan["id"])["state"] == "active"
