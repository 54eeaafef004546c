"""B2C payouts: results, float, credentials, duplicates and the timeouts that mean "unknown"."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.sandbox import PHONE, Daraja

B2C = "/mpesa/b2c/v3/paymentrequest"


def result(daraja: Daraja, path: str = "/hooks/b2c-result") -> dict[str, Any]:
    daraja.admin.flush()
    [body] = daraja.hooks.bodies(path)
    found: dict[str, Any] = body["Result"]
    return found


def parameters(found: dict[str, Any]) -> dict[str, Any]:
    return {p["Key"]: p.get("Value") for p in found["ResultParameters"]["ResultParameter"]}


def status_of(daraja: Daraja, **lookup: str) -> dict[str, Any]:
    body = daraja.initiator_body("TransactionStatusQuery", **lookup)
    assert daraja.post("/mpesa/transactionstatus/v1/query", body).status_code == 200
    return result(daraja, "/hooks/result")


def test_accepted_payout_answers_with_conversation_ids(daraja: Daraja) -> None:
    answer = daraja.b2c(originator_id="loan-7-attempt-1")

    assert answer["OriginatorConversationID"] == "loan-7-attempt-1"
    assert re.fullmatch(r"AG_\d{8}_[0-9a-f]{20}", answer["ConversationID"])
    assert answer["ResponseCode"] == "0"
    assert answer["ResponseDescription"] == "Accept the service request successfully."


def test_success_pays_the_customer_from_the_utility_account(daraja: Daraja) -> None:
    answer = daraja.b2c(amount=1_500)

    found = result(daraja)

    assert found["ResultCode"] == 0
    assert found["ResultType"] == 0
    assert found["OriginatorConversationID"] == "deni-1"
    assert found["ConversationID"] == answer["ConversationID"]
    values = parameters(found)
    assert values["TransactionAmount"] == 1_500
    assert values["TransactionReceipt"] == found["TransactionID"]
    assert values["ReceiverPartyPublicName"] == f"{PHONE} - JOHN DOE"
    assert re.fullmatch(r"\d\d\.\d\d\.\d{4} \d\d:\d\d:\d\d", values["TransactionCompletedDateTime"])
    assert values["B2CUtilityAccountAvailableFunds"] == 1_000_000 - 1_500
    assert values["B2CRecipientIsRegisteredCustomer"] == "Y"
    assert found["ReferenceData"]["ReferenceItem"]["Key"] == "QueueTimeoutURL"
    assert daraja.admin.customer(PHONE)["balance_cents"] == 100_000_00 + 1_500_00
    assert daraja.admin.organisation()["utility_account_cents"] == 1_000_000_00 - 1_500_00


@pytest.mark.parametrize(
    ("phone", "code"), [("254700002040", 2040), ("254700000001", 1), ("254700008006", 8006)]
)
def test_test_numbers_fail_with_real_codes(daraja: Daraja, phone: str, code: int) -> None:
    daraja.b2c(phone)

    found = result(daraja)

    assert found["ResultCode"] == code
    assert "ResultParameters" not in found
    assert re.fullmatch(r"[A-Z0-9]{3}0000000", found["TransactionID"])
    assert daraja.admin.organisation()["utility_account_cents"] == 1_000_000_00


def test_an_unregistered_customer_gets_2040(daraja: Daraja) -> None:
    daraja.admin.set_customer(PHONE, registered=False)
    daraja.b2c()

    assert result(daraja)["ResultCode"] == 2040


def test_float_too_low_is_1(daraja: Daraja) -> None:
    daraja.admin.set_organisation(utility_account_cents=100_00)
    daraja.b2c(amount=500)

    found = result(daraja)

    assert found["ResultCode"] == 1
    assert found["ResultDesc"] == "The balance is insufficient for the transaction."
    assert daraja.admin.customer(PHONE)["balance_cents"] == 100_000_00


def test_amount_limits(daraja: Daraja) -> None:
    daraja.b2c(amount=9, originator_id="small")
    daraja.admin.flush()
    [small] = daraja.hooks.bodies("/hooks/b2c-result")

    assert small["Result"]["ResultCode"] == 2


@pytest.mark.parametrize(
    "overrides",
    [{"SecurityCredential": "bm90IGVuY3J5cHRlZA=="}, {"InitiatorName": "someoneelse"}],
)
def test_bad_initiator_is_2001(daraja: Daraja, overrides: dict[str, str]) -> None:
    daraja.b2c(**overrides)

    found = result(daraja)

    assert found["ResultCode"] == 2001
    assert found["ResultDesc"] == "The initiator information is invalid."
    assert daraja.admin.customer(PHONE)["balance_cents"] == 100_000_00


def test_duplicate_originator_conversation_id_is_refused(daraja: Daraja) -> None:
    daraja.b2c(originator_id="same")

    again = daraja.post(B2C, daraja.b2c_body(originator_id="same"))

    assert again.status_code == 500
    assert again.json()["errorCode"] == "500.002.1001"
    assert again.json()["errorMessage"] == "Duplicate OriginatorConversationID."


def test_v1_works_without_originator_id_but_v3_needs_it(daraja: Daraja) -> None:
    body = daraja.b2c_body()
    del body["OriginatorConversationID"]

    v1 = daraja.post("/mpesa/b2c/v1/paymentrequest", body)
    v3 = daraja.post(B2C, body)

    assert v1.status_code == 200
    assert v1.json()["OriginatorConversationID"]
    assert v3.json()["errorMessage"] == "Bad Request - Invalid OriginatorConversationID"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("CommandID", "Payment"),
        ("Amount", "ten"),
        ("PartyA", "600001"),
        ("PartyB", "0712345678"),
        ("Remarks", "x"),
        ("ResultURL", "http://127.0.0.1/sql"),
        ("QueueTimeOutURL", ""),
    ],
)
def test_invalid_fields_are_named(daraja: Daraja, field: str, value: str) -> None:
    response = daraja.post(B2C, daraja.b2c_body(**{field: value}))

    assert response.status_code == 400
    assert response.json()["errorMessage"] == f"Bad Request - Invalid {field}"


def test_silent_timeout_pays_and_transaction_status_finds_it(daraja: Daraja) -> None:
    phone = "254700000408"
    daraja.b2c(phone, amount=700, originator_id="payout-408")
    daraja.admin.flush()

    assert daraja.hooks.bodies("/hooks/b2c-result") == []
    assert daraja.hooks.bodies("/hooks/b2c-timeout") == []
    assert daraja.admin.customer(phone)["balance_cents"] == 100_000_00 + 700_00
    found = status_of(daraja, OriginalConversationID="payout-408")
    values = parameters(found)
    assert found["ResultCode"] == 0
    assert values["TransactionStatus"] == "Completed"
    assert values["Amount"] == "700"
    assert values["OriginatorConversationID"] == "payout-408"
    assert values["ReceiptNo"] == found["TransactionID"]


def test_queue_timeout_number_notifies_the_timeout_url_while_paying(daraja: Daraja) -> None:
    phone = "254700000504"
    answer = daraja.b2c(phone, amount=700)

    found = result(daraja, "/hooks/b2c-timeout")

    assert found["ConversationID"] == answer["ConversationID"]
    assert found["OriginatorConversationID"] == "deni-1"
    assert found["ResultCode"] == 1
    assert daraja.hooks.bodies("/hooks/b2c-result") == []
    assert daraja.admin.customer(phone)["balance_cents"] == 100_000_00 + 700_00


def test_timeout_fault_with_queue_timeout(daraja: Daraja) -> None:
    daraja.admin.add_fault(kind="b2c", action="timeout", queue_timeout=True)
    daraja.b2c(amount=100)

    result(daraja, "/hooks/b2c-timeout")
    assert daraja.admin.customer(PHONE)["balance_cents"] == 100_000_00 + 100_00
