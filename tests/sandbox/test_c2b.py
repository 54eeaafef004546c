"""C2B: URL registration, a customer paying the paybill, validation and confirmation."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from deni.sandbox.app import SandboxConfig
from tests.support.sandbox import PHONE, Daraja


def test_register_answers_with_safaricoms_spelling(daraja: Daraja) -> None:
    body = {
        "ShortCode": "600000",
        "ResponseType": "Completed",
        "ConfirmationURL": daraja.hooks.at("/hooks/confirm"),
        "ValidationURL": daraja.hooks.at("/hooks/validate"),
    }

    answer = daraja.post("/mpesa/c2b/v1/registerurl", body).json()

    assert answer["ResponseCode"] == "0"
    assert answer["ResponseDescription"] == "Success"
    assert "OriginatorCoversationID" in answer


def test_register_refuses_other_shortcodes_and_response_types(daraja: Daraja) -> None:
    body = {"ShortCode": "174379", "ResponseType": "Completed", "ConfirmationURL": "http://a/b"}
    other = daraja.post("/mpesa/c2b/v2/registerurl", body)
    lower = daraja.post(
        "/mpesa/c2b/v2/registerurl", {**body, "ShortCode": "600000", "ResponseType": "completed"}
    )

    assert other.json()["errorMessage"] == "Bad Request - Invalid ShortCode"
    assert lower.json()["errorMessage"] == "Bad Request - Invalid ResponseType"


def test_pay_validates_then_confirms_with_the_real_payload(daraja: Daraja) -> None:
    daraja.register_c2b()
    daraja.hooks.reply(
        "/hooks/validate",
        {"ResultCode": "0", "ResultDesc": "Accepted", "ThirdPartyTransID": "deni-42"},
    )

    paid = daraja.admin.pay_paybill(PHONE, 100, "LN0001")
    daraja.admin.flush()

    assert paid["status"] == "completed"
    [validation] = daraja.hooks.bodies("/hooks/validate")
    [confirmation] = daraja.hooks.bodies("/hooks/confirm")
    assert validation["OrgAccountBalance"] == ""
    assert confirmation["TransID"] == paid["TransID"] == validation["TransID"]
    assert re.fullmatch(r"[A-Z0-9]{10}", confirmation["TransID"])
    assert re.fullmatch(r"\d{14}", confirmation["TransTime"])
    assert confirmation["TransAmount"] == "100.00"
    assert confirmation["BusinessShortCode"] == "600000"
    assert confirmation["BillRefNumber"] == "LN0001"
    assert confirmation["MSISDN"] == "2547 ***** 678"
    assert confirmation["FirstName"] == "JOHN"
    assert confirmation["TransactionType"] == "Pay Bill"
    assert confirmation["OrgAccountBalance"] == "100.00"
    assert confirmation["ThirdPartyTransID"] == "deni-42"
    assert daraja.admin.customer(PHONE)["balance_cents"] == 100_000_00 - 100_00


def test_a_rejecting_validation_moves_no_money(daraja: Daraja) -> None:
    daraja.register_c2b()
    daraja.hooks.reply("/hooks/validate", {"ResultCode": "C2B00012", "ResultDesc": "Rejected"})

    paid = daraja.admin.pay_paybill(PHONE, 100, "NOSUCHLOAN")
    daraja.admin.flush()

    assert paid == {"status": "rejected", "TransID": None, "ResultCode": "C2B00012"}
    assert daraja.hooks.bodies("/hooks/confirm") == []
    assert daraja.admin.customer(PHONE)["balance_cents"] == 100_000_00
    assert daraja.admin.transactions() == []


def unreachable_registration(daraja: Daraja, response_type: str) -> None:
    body = {
        "ShortCode": "600000",
        "ResponseType": response_type,
        "ConfirmationURL": daraja.hooks.at("/hooks/confirm"),
        "ValidationURL": "http://127.0.0.1:9/hooks/validate",  # nothing listens on port 9
    }
    assert daraja.post("/mpesa/c2b/v2/registerurl", body).status_code == 200


def test_unreachable_validation_falls_back_to_response_type(daraja: Daraja) -> None:
    unreachable_registration(daraja, "Completed")
    completed = daraja.admin.pay_paybill(PHONE, 10, "LN1")
    unreachable_registration(daraja, "Cancelled")
    cancelled = daraja.admin.pay_paybill(PHONE, 10, "LN1")
    daraja.admin.flush()

    assert completed["status"] == "completed"
    assert cancelled["status"] == "rejected"
    assert len(daraja.hooks.bodies("/hooks/confirm")) == 1


def test_without_validation_url_only_the_confirmation_comes(daraja: Daraja) -> None:
    daraja.register_c2b(validation=False)

    daraja.admin.pay_paybill(PHONE, 10, "LN1")
    daraja.admin.flush()

    assert len(daraja.hooks.bodies("/hooks/confirm")) == 1
    assert daraja.hooks.bodies("/hooks/validate") == []


def test_a_customer_without_the_money_cannot_pay(daraja: Daraja) -> None:
    daraja.register_c2b()
    daraja.admin.set_customer(PHONE, balance_cents=5_00)

    paid = daraja.admin.pay_paybill(PHONE, 10, "LN1")

    assert paid["status"] == "failed"
    assert daraja.hooks.bodies("/hooks/validate") == []


def test_simulate_acknowledges_then_pays_in_the_background(daraja: Daraja) -> None:
    daraja.register_c2b(validation=False)
    body = {
        "ShortCode": 600000,
        "CommandID": "CustomerPayBillOnline",
        "Amount": 25,
        "Msisdn": int(PHONE),
        "BillRefNumber": "LN0009",
    }

    answer = daraja.post("/mpesa/c2b/v2/simulate", body).json()
    daraja.admin.flush()

    assert answer["ResponseCode"] == "0"
    assert answer["ResponseDescription"] == "Accept the service request successfully."
    [confirmation] = daraja.hooks.bodies("/hooks/confirm")
    assert confirmation["TransAmount"] == "25.00"
    assert confirmation["BillRefNumber"] == "LN0009"


def test_msisdn_can_be_hashed_like_c2b_v1(start_sandbox: Any) -> None:
    hashed: Daraja = start_sandbox(SandboxConfig(callback_delay_s=0, c2b_msisdn_style="hashed"))
    hashed.register_c2b(validation=False)

    hashed.admin.pay_paybill(PHONE, 10, "LN1")
    hashed.admin.flush()

    [confirmation] = hashed.hooks.bodies("/hooks/confirm")
    assert confirmation["MSISDN"] == hashlib.sha256(PHONE.encode()).hexdigest()
