"""Naming a lender by number tells a member whether the number is on Deni (and on USSD, whose
name it is). A member may look up 30 numbers a day, found or not, on the API, USSD and sync
together; past that every number gets the same refusal, so a list of numbers cannot be tried
against Deni."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient
from tests.support.api import assert_error, loan_body
from tests.support.builders import api_user, next_phone
from tests.support.sync import Device
from tests.support.ussd import Phone, register

from deni.bootstrap import Deni
from deni.services.limits import LENDER_LOOKUPS_PER_MEMBER_DAILY

LOANS = "/api/v1/loans"
PIN = "3591"


def test_a_member_looks_up_only_so_many_numbers_a_day(
    client: TestClient, deni: Deni, real_limits: None
) -> None:
    prober = api_user(client, deni, name="Prober Member")
    known = api_user(client, deni, name="Known Member")
    body = loan_body(known)
    for _ in range(LENDER_LOOKUPS_PER_MEMBER_DAILY.hits_max):
        asked = {**body, "lender_phone": next_phone()}
        missing = client.post(LOANS, json=asked, headers=prober.with_key())
        assert_error(missing, 404, "user_not_found")
    # Now a member's number and a stranger's get the same answer.
    for phone in (known.user.phone, next_phone()):
        refused = client.post(
            LOANS, json={**body, "lender_phone": phone}, headers=prober.with_key()
        )
        assert_error(refused, 429, "too_many_requests")
        assert refused.headers["Retry-After"]
    # Another member is not held back by it.
    other = api_user(client, deni, name="Other Member")
    assert client.post(LOANS, json=body, headers=other.with_key()).status_code == 201


def test_ussd_shows_no_more_names_past_the_days_lookups(
    client: TestClient, deni: Deni, real_limits: None
) -> None:
    prober = Phone(client, next_phone())
    register(prober, name="Prober Member", pin=PIN)
    known = Phone(client, next_phone())
    register(known, name="Known Member", pin=PIN)
    prober.dial()
    prober.send("1")
    for _ in range(LENDER_LOOKUPS_PER_MEMBER_DAILY.hits_max):
        assert "not on Deni" in prober.send(next_phone())
    refused = prober.send(known.number)
    assert "asked too often today" in refused
    assert "Known Member" not in refused
    assert "lender" in refused.lower()  # still on the lender's number screen


def test_a_sync_push_counts_its_loan_requests_as_lookups(
    client: TestClient, deni: Deni, real_limits: None
) -> None:
    prober = api_user(client, deni, name="Prober Member")
    known = api_user(client, deni, name="Known Member")
    device = Device(client, prober)
    numbers = [next_phone() for _ in range(LENDER_LOOKUPS_PER_MEMBER_DAILY.hits_max)]
    for phone in [*numbers, known.user.phone, next_phone()]:
        device.queue_mutation(
            "request_loan",
            loan_id=str(uuid.uuid4()),
            lender_phone=phone,
            principal_cents=100_000,
            term_days=7,
        )
    device.push()
    codes = [device.results[m]["code"] for m in sorted(device.results)]
    assert codes[: len(numbers)] == ["user_not_found"] * len(numbers)
    # A member's number and a stranger's: the same refusal.
    assert codes[len(numbers) :] == ["too_many_requests", "too_many_requests"]
