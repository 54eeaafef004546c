"""STK push and query: callbacks over real HTTP, balances, result codes, validation."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from deni.sandbox.app import SandboxConfig
from tests.support.sandbox import PHONE, Daraja

PUSH = "/mpesa/stkpush/v1/processrequest"


def stk_callback(daraja: Daraja) -> dict[str, Any]:
    daraja.admin.flush()
    [body] = daraja.hooks.bodies("/hooks/stk")
    callback: dict[str, Any] = body["Body"]["stkCallback"]
    return callback


def items(callback: dict[str, Any]) -> dict[str, Any]:
    return {item["Name"]: item["Value"] for item in callback["CallbackMetadata"]["Item"]}


def test_accepted_push_answers_like_daraja(daraja: Daraja) -> None:
    answer = daraja.stk(amount=100)

    assert answer["ResponseCode"] == "0"
    assert answer["ResponseDescription"] == "Success. Request accepted for processing"
    assert answer["CustomerMessage"] == answer["ResponseDescription"]
    assert answer["CheckoutRequestID"].startswith("ws_CO_")
    assert answer["CheckoutRequestID"].endswith(PHONE[3:])
    assert re.fullmatch(r"[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-\w+", answer["MerchantRequestID"])


def test_success_moves_money_and_calls_back_with_metadata(daraja: Daraja) -> None:
    answer = daraja.stk(amount=250)

    callback = stk_callback(daraja)

    assert callback["ResultCode"] == 0
    assert callback["ResultDesc"] == "The service request is processed successfully."
    assert callback["CheckoutRequestID"] == answer["CheckoutRequestID"]
    assert callback["MerchantRequestID"] == answer["MerchantRequestID"]
    metadata = items(callback)
    assert metadata["Amount"] == 250.0
    assert re.fullmatch(r"[A-Z0-9]{10}", metadata["MpesaReceiptNumber"])
    assert isinstance(metadata["TransactionDate"], int)
    assert len(str(metadata["TransactionDate"])) == 14
    assert metadata["PhoneNumber"] == int(PHONE)
    assert daraja.admin.customer(PHONE)["balance_cents"] == 100_000_00 - 250_00
    assert daraja.admin.organisation()["working_account_cents"] == 250_00
    [transaction] = daraja.admin.transactions(PHONE)
    assert transaction["transaction_id"] == metadata["MpesaReceiptNumber"]
    assert transaction["kind"] == "stk"


def test_receipts_are_unique(daraja: Daraja) -> None:
    for _ in range(5):
        daraja.stk(amount=1)
    daraja.admin.flush()

    receipts = [items(b["Body"]["stkCallback"]) for b in daraja.hooks.bodies("/hooks/stk")]
    assert len({r["MpesaReceiptNumber"] for r in receipts}) == 5


def test_the_callback_records_what_the_client_answered(daraja: Daraja) -> None:
    daraja.hooks.reply("/hooks/stk", {"error": "down"}, status=503)
    daraja.stk()
    daraja.admin.flush()

    [record] = daraja.admin.callbacks("stk")
    assert record["response_status"] == 503
    assert record["state"] == "delivered"
    assert len(record["attempts"]) == 1  # Daraja never repeats a callback


@pytest.mark.parametrize(
    ("phone", "code", "desc"),
    [
        ("254700000001", 1, "The balance is insufficient for the transaction."),
        ("254700001001", 1001, "Unable to lock subscriber"),
        ("254700001019", 1019, "Transaction has expired."),
        ("254700001032", 1032, "Request cancelled by user"),
        ("254700001037", 1037, "DS timeout user cannot be reached"),
        ("254700002001", 2001, "The initiator information is invalid."),
    ],
)
def test_test_numbers_fail_with_real_codes(
    daraja: Daraja, phone: str, code: int, desc: str
) -> None:
    answer = daraja.stk(phone, amount=100)

    callback = stk_callback(daraja)

    assert callback["ResultCode"] == code
    assert callback["ResultDesc"].startswith(desc)
    assert "CallbackMetadata" not in callback
    assert daraja.admin.customer(phone)["balance_cents"] == 100_000_00
    assert daraja.admin.transactions() == []
    query = daraja.stk_query(answer["CheckoutRequestID"])
    assert query.status_code == 200
    assert query.json()["ResultCode"] == str(code)


def test_a_customer_who_is_short_genuinely_fails_with_1(daraja: Daraja) -> None:
    daraja.admin.set_customer(PHONE, balance_cents=50_00)
    daraja.stk(amount=100)

    assert stk_callback(daraja)["ResultCode"] == 1
    assert daraja.admin.customer(PHONE)["balance_cents"] == 50_00


def test_query_after_success_answers_with_string_codes(daraja: Daraja) -> None:
    answer = daraja.stk()
    daraja.admin.flush()

    query = daraja.stk_query(answer["CheckoutRequestID"]).json()

    assert query["ResponseCode"] == "0"
    assert query["ResultCode"] == "0"
    assert query["CheckoutRequestID"] == answer["CheckoutRequestID"]
    assert query["MerchantRequestID"] == answer["MerchantRequestID"]


def test_query_of_an_unknown_checkout_is_invalid(daraja: Daraja) -> None:
    response = daraja.stk_query("ws_CO_000")

    assert response.status_code == 400
    assert response.json()["errorMessage"] == "Bad Request - Invalid CheckoutRequestID"


def test_timeout_number_pays_but_never_calls_back(daraja: Daraja) -> None:
    answer = daraja.stk("254700000408", amount=100)
    daraja.admin.flush()

    assert daraja.hooks.bodies("/hooks/stk") == []
    assert daraja.admin.customer("254700000408")["balance_cents"] == 100_000_00 - 100_00
    assert daraja.stk_query(answer["CheckoutRequestID"]).json()["ResultCode"] == "0"


def test_query_while_the_customer_is_on_the_prompt_is_being_processed(
    start_sandbox: Any,
) -> None:
    slow: Daraja = start_sandbox(SandboxConfig(callback_delay_s=30))
    answer = slow.stk()

    pending = slow.stk_query(answer["CheckoutRequestID"])
    slow.admin.flush()
    done = slow.stk_query(answer["CheckoutRequestID"])

    assert pending.status_code == 500
    assert pending.json()["errorCode"] == "500.001.1001"
    assert pending.json()["errorMessage"] == "The transaction is being processed"
    assert done.json()["ResultCode"] == "0"
    assert len(slow.hooks.bodies("/hooks/stk")) == 1


def test_wrong_password_is_wrong_credentials(daraja: Daraja) -> None:
    response = daraja.post(PUSH, daraja.stk_body(Timestamp="20261126090001"))

    assert response.status_code == 500
    assert response.json()["errorCode"] == "500.001.1001"
    assert "Wrong credentials" in response.json()["errorMessage"]


def test_unknown_shortcode_is_merchant_does_not_exist(daraja: Daraja) -> None:
    response = daraja.post(PUSH, daraja.stk_body(BusinessShortCode="174380"))

    assert response.json()["errorMessage"] == "Merchant does not exist"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("Amount", "abc"),
        ("Amount", "0"),
        ("Amount", "1.5"),
        ("Amount", True),
        ("PhoneNumber", "0712345678"),
        ("PhoneNumber", "+254712345678"),
        ("PartyA", "25471234567"),
        ("CallBackURL", "not a url"),
        ("CallBackURL", " http://127.0.0.1/hooks/x"),
        ("CallBackURL", "http://127.0.0.1/mpesa/callback"),
        ("CallBackURL", "ftp://127.0.0.1/hooks"),
        ("AccountReference", "A-VERY-LONG-REFERENCE"),
        ("TransactionDesc", "fourteen chars"),
        ("TransactionType", "CustomerPayBill"),
        ("Timestamp", "2026-11-26"),
        ("BusinessShortCode", "17a379"),
    ],
)
def test_invalid_fields_are_named(daraja: Daraja, field: str, value: object) -> None:
    response = daraja.post(PUSH, daraja.stk_body(**{field: value}))

    assert response.status_code == 400
    assert response.json()["errorCode"] == "400.002.02"
    assert response.json()["errorMessage"] == f"Bad Request - Invalid {field}"


def test_missing_field_is_invalid(daraja: Daraja) -> None:
    body = daraja.stk_body()
    del body["CallBackURL"]

    response = daraja.post(PUSH, body)

    assert response.json()["errorMessage"] == "Bad Request - Invalid CallBackURL"


def test_numbers_are_accepted_where_daraja_accepts_them(daraja: Daraja) -> None:
    body = daraja.stk_body(BusinessShortCode=174379, Amount=5, PartyA=int(PHONE))

    assert daraja.post(PUSH, body).status_code == 200


def test_form_encoded_body_reads_as_a_bad_shortcode(daraja: Daraja) -> None:
    token = daraja.new_token()
    response = daraja.http.post(
        PUSH, data={"BusinessShortCode": "174379"}, headers={"Authorization": f"Bearer {token}"}
    )

    assert response.json()["errorMessage"] == "Bad Request - Invalid BusinessShortCode"


def test_unreadable_json_is_an_invalid_payload(daraja: Daraja) -> None:
    token = daraja.new_token()
    response = daraja.http.post(
        "/mpesa/b2c/v3/paymentrequest",
        content=b"{not json",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["errorCode"] == "400.002.05"


def test_over_the_transaction_limit_is_declined_by_rule(daraja: Daraja) -> None:
    daraja.admin.set_customer(PHONE, balance_cents=400_000_00)
    daraja.stk(amount=250_001)

    assert stk_callback(daraja)["ResultCode"] == 3


def test_times_come_from_the_injected_clock_in_nairobi_time(start_sandbox: Any) -> None:
    six_utc = datetime(2026, 11, 26, 6, 0, 0, tzinfo=UTC)
    daraja: Daraja = start_sandbox(SandboxConfig(callback_delay_s=0, clock=lambda: six_utc))
    daraja.stk()

    metadata = items(stk_callback(daraja))

    assert metadata["TransactionDate"] == 20261126090000
    assert metadata["MpesaReceiptNumber"].startswith("UKQ")  # 2026, November, the 26th
