"""A lender's PIN approves the terms the lender was shown, never terms the borrower changed
while the lender was typing it: on USSD (the session remembers the version shown) and over
REST (`base_version`)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from tests.support.api import assert_error, get_loan, request_loan
from tests.support.builders import ApiUser, api_user, fund, wallet_cents
from tests.support.sync import Device
from tests.support.ussd import Phone

from deni.bootstrap import Deni

SHOWN_CENTS = 10_000  # KES 100
RAISED_CENTS = 1_000_000  # KES 10,000


def _borrower_raises_the_principal(client: TestClient, borrower: ApiUser, loan_id: str) -> None:
    seen = get_loan(client, borrower, loan_id)["version"]
    device = Device(client, borrower)
    device.queue_mutation(
        "edit_loan_request", loan_id=loan_id, base_version=seen, principal_cents=RAISED_CENTS
    )
    [result] = device.push()["results"]
    assert result["status"] == "applied", result
    assert get_loan(client, borrower, loan_id)["principal_cents"] == RAISED_CENTS


def _pair(client: TestClient, deni: Deni, *, language: str = "en") -> tuple[ApiUser, ApiUser]:
    lender = api_user(client, deni, name="Lender", language=language)
    borrower = api_user(client, deni, name="Bob")
    fund(deni, lender.user, 2 * RAISED_CENTS)
    return lender, borrower


def test_a_ussd_pin_typed_for_kes_100_does_not_approve_kes_10000(
    client: TestClient, deni: Deni
) -> None:
    lender, borrower = _pair(client, deni)
    loan_id = str(request_loan(client, borrower, lender, principal_cents=SHOWN_CENTS)["id"])
    lender_phone = Phone(client, lender.user.phone)
    lender_phone.dial()
    # 4 Requests for me → the request → 1 Approve: the PIN screen names the amount.
    assert "Lend KES 100 to Bob" in lender_phone.send("4", "1", "1")

    _borrower_raises_the_principal(client, borrower, loan_id)
    lender_phone.send(lender.pin)

    assert lender_phone.ended
    assert "changed the request to KES 10,000" in lender_phone.last
    assert "Nothing was approved" in lender_phone.last
    assert get_loan(client, lender, loan_id)["state"] == "requested"
    assert wallet_cents(deni, lender.user) == 2 * RAISED_CENTS
    assert wallet_cents(deni, borrower.user) == 0

    # Dialling again shows the new terms, and a PIN typed for them approves them.
    lender_phone.dial()
    assert "Lend KES 10,000 to Bob" in lender_phone.send("4", "1", "1")
    lender_phone.send(lender.pin)
    assert "Approved" in lender_phone.last
    assert wallet_cents(deni, borrower.user) == RAISED_CENTS


def test_the_lender_is_told_in_kiswahili_too(client: TestClient, deni: Deni) -> None:
    lender, borrower = _pair(client, deni, language="sw")
    loan_id = str(request_loan(client, borrower, lender, principal_cents=SHOWN_CENTS)["id"])
    lender_phone = Phone(client, lender.user.phone)
    lender_phone.dial()
    lender_phone.send("4", "1", "1")
    _borrower_raises_the_principal(client, borrower, loan_id)
    lender_phone.send(lender.pin)
    assert lender_phone.ended
    assert "Hakuna kilichokubaliwa" in lender_phone.last
    assert get_loan(client, lender, loan_id)["state"] == "requested"


def _approve(client: TestClient, lender: ApiUser, loan_id: str, **body: object) -> object:
    return client.post(
        f"/api/v1/loans/{loan_id}/approve",
        json={"pin": lender.pin, **body},
        headers=lender.with_key(),
    )


def test_a_rest_approval_of_a_stale_version_moves_nothing(client: TestClient, deni: Deni) -> None:
    lender, borrower = _pair(client, deni)
    loan = request_loan(client, borrower, lender, principal_cents=SHOWN_CENTS)
    loan_id, shown = str(loan["id"]), loan["version"]
    assert isinstance(shown, int)

    _borrower_raises_the_principal(client, borrower, loan_id)
    stale = _approve(client, lender, loan_id, base_version=shown)

    assert_error(stale, 409, "loan_changed")
    assert get_loan(client, lender, loan_id)["state"] == "requested"
    assert wallet_cents(deni, lender.user) == 2 * RAISED_CENTS

    current = get_loan(client, lender, loan_id)["version"]
    approved = _approve(client, lender, loan_id, base_version=current)
    assert approved.status_code == 200, approved.text  # type: ignore[attr-defined]
    assert approved.json()["principal_cents"] == RAISED_CENTS  # type: ignore[attr-defined]
    assert wallet_cents(deni, borrower.user) == RAISED_CENTS


def test_a_negative_base_version_is_invalid_input(client: TestClient, deni: Deni) -> None:
    lender, borrower = _pair(client, deni)
    loan_id = str(request_loan(client, borrower, lender)["id"])
    assert_error(_approve(client, lender, loan_id, base_version=-1), 422, "validation_failed")
