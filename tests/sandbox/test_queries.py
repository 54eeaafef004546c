"""Account Balance, Transaction Status and Reversal."""

from __future__ import annotations

from typing import Any

from tests.support.sandbox import PHONE, Daraja


def result(daraja: Daraja) -> dict[str, Any]:
    daraja.admin.flush()
    bodies = daraja.hooks.bodies("/hooks/result")
    assert len(bodies) == 1
    found: dict[str, Any] = bodies[0]["Result"]
    daraja.hooks.reset()
    return found


def parameters(found: dict[str, Any]) -> dict[str, Any]:
    return {p["Key"]: p.get("Value") for p in found["ResultParameters"]["ResultParameter"]}


def paid_by_stk(daraja: Daraja, amount: int = 100) -> str:
    daraja.stk(amount=amount)
    daraja.admin.flush()
    [transaction] = daraja.admin.transactions(PHONE)
    receipt: str = transaction["transaction_id"]
    return receipt


def reverse(daraja: Daraja, receipt: str, amount: int) -> dict[str, Any]:
    body = daraja.initiator_body(
        "TransactionReversal",
        TransactionID=receipt,
        Amount=str(amount),
        ReceiverParty="600000",
        RecieverIdentifierType="11",
    )
    del body["PartyA"], body["IdentifierType"]
    response = daraja.post("/mpesa/reversal/v1/request", body)
    assert response.status_code == 200, response.text
    return result(daraja)


def test_account_balance_reports_both_accounts_in_daraja_format(daraja: Daraja) -> None:
    daraja.admin.set_organisation(
        working_account_cents=700_000_00, utility_account_cents=228_037_50
    )
    body = daraja.initiator_body("AccountBalance")

    answer = daraja.post("/mpesa/accountbalance/v1/query", body).json()
    found = result(daraja)

    assert answer["ResponseCode"] == "0"
    assert found["ResultCode"] == "0"
    assert found["ResultType"] == "0"
    balance = parameters(found)["AccountBalance"]
    assert balance.startswith("Working Account|KES|700000.00|700000.00|0.00|0.00&")
    assert "&Utility Account|KES|228037.50|228037.50|0.00|0.00&" in balance
    assert len(parameters(found)["BOCompletedTime"]) == 14


def test_account_balance_of_another_shortcode_is_invalid(daraja: Daraja) -> None:
    body = daraja.initiator_body("AccountBalance", PartyA="600001")

    response = daraja.post("/mpesa/accountbalance/v1/query", body)

    assert response.json()["errorMessage"] == "Bad Request - Invalid PartyA"


def test_transaction_status_by_receipt(daraja: Daraja) -> None:
    receipt = paid_by_stk(daraja, amount=300)
    body = daraja.initiator_body("TransactionStatusQuery", TransactionID=receipt, Occasion="x")

    daraja.post("/mpesa/transactionstatus/v1/query", body)
    found = result(daraja)

    values = parameters(found)
    assert found["ResultCode"] == 0
    assert values["ReceiptNo"] == receipt
    assert values["Amount"] == "300"
    assert values["DebitPartyName"] == f"{PHONE} - JOHN DOE"
    assert found["ReferenceData"]["ReferenceItem"] == {"Key": "Occasion", "Value": "x"}


def test_transaction_status_accepts_the_spaced_keys_of_safaricoms_sample(daraja: Daraja) -> None:
    receipt = paid_by_stk(daraja)
    body = daraja.initiator_body("TransactionStatusQuery")
    body["Command ID"] = body.pop("CommandID")
    body["Transaction ID"] = receipt

    daraja.post("/mpesa/transactionstatus/v1/query", body)

    assert result(daraja)["ResultCode"] == 0


def test_transaction_status_of_an_unknown_id(daraja: Daraja) -> None:
    body = daraja.initiator_body("TransactionStatusQuery", OriginalConversationID="never-sent")

    daraja.post("/mpesa/transactionstatus/v1/query", body)
    found = result(daraja)

    assert found["ResultCode"] == "R000002"
    assert "ResultParameters" not in found


def test_transaction_status_needs_an_id(daraja: Daraja) -> None:
    body = daraja.initiator_body("TransactionStatusQuery")

    response = daraja.post("/mpesa/transactionstatus/v1/query", body)

    assert response.json()["errorMessage"] == "Bad Request - Invalid TransactionID"


def test_status_with_a_bad_credential_is_2001(daraja: Daraja) -> None:
    body = daraja.initiator_body(
        "TransactionStatusQuery", TransactionID="X", SecurityCredential="garbage"
    )

    daraja.post("/mpesa/transactionstatus/v1/query", body)

    assert result(daraja)["ResultCode"] == 2001


def test_reversal_gives_an_stk_payment_back_once(daraja: Daraja) -> None:
    receipt = paid_by_stk(daraja, amount=200)

    first = reverse(daraja, receipt, 200)
    second = reverse(daraja, receipt, 200)

    assert first["ResultCode"] == 0
    values = parameters(first)
    assert values["OriginalTransactionID"] == receipt
    assert values["Amount"] == 200.0
    assert daraja.admin.customer(PHONE)["balance_cents"] == 100_000_00
    assert daraja.admin.organisation()["working_account_cents"] == 0
    assert second["ResultCode"] == "R000001"
    original = next(t for t in daraja.admin.transactions() if t["transaction_id"] == receipt)
    assert original["reversed_by"] == first["TransactionID"]


def test_reversal_of_a_c2b_payment(daraja: Daraja) -> None:
    paid = daraja.admin.pay_paybill(PHONE, 50, "LN0001")

    assert reverse(daraja, paid["TransID"], 50)["ResultCode"] == 0
    assert daraja.admin.customer(PHONE)["balance_cents"] == 100_000_00


def test_b2c_and_unknown_transactions_cannot_be_reversed(daraja: Daraja) -> None:
    daraja.b2c(amount=100)
    daraja.admin.flush()
    [payout] = daraja.admin.transactions()

    assert reverse(daraja, payout["transaction_id"], 100)["ResultCode"] == "R000002"
    assert reverse(daraja, "NOSUCHID00", 100)["ResultCode"] == "R000002"


def test_reversal_needs_safaricoms_spelling(daraja: Daraja) -> None:
    body = daraja.initiator_body(
        "TransactionReversal",
        TransactionID="X",
        Amount="1",
        ReceiverParty="600000",
        ReceiverIdentifierType="11",
    )

    response = daraja.post("/mpesa/reversal/v1/request", body)

    assert response.json()["errorMessage"] == "Bad Request - Invalid RecieverIdentifierType"
