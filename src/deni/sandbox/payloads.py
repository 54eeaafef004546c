"""Bodies Daraja sends: synchronous acknowledgements, errors and callbacks, field for field.

Shapes follow docs/reference-daraja.md (errors to Pull Transactions), including Safaricom's
spellings ("OriginatorCoversationID" in C2B answers) and types (ResultCode an int in callbacks,
a string in synchronous answers and queries).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from deni.sandbox import formats
from deni.sandbox.state import Customer, Organisation, StkAttempt, Transaction

_QUEUE_TIMEOUT_REFERENCE = "https://internalsandbox.safaricom.co.ke/mpesa/b2cresults/v1/submit"
ACCEPTED = "Accept the service request successfully."


def error(request_id: str, code: str, message: str) -> dict[str, Any]:
    return {"requestId": request_id, "errorCode": code, "errorMessage": message}


def stk_accepted(attempt: StkAttempt) -> dict[str, Any]:
    message = "Success. Request accepted for processing"
    return {
        "MerchantRequestID": attempt.merchant_request_id,
        "CheckoutRequestID": attempt.checkout_request_id,
        "ResponseCode": "0",
        "ResponseDescription": message,
        "CustomerMessage": message,
    }


def stk_callback(attempt: StkAttempt, transaction: Transaction | None) -> dict[str, Any]:
    assert attempt.result_code is not None
    callback: dict[str, Any] = {
        "MerchantRequestID": attempt.merchant_request_id,
        "CheckoutRequestID": attempt.checkout_request_id,
        "ResultCode": attempt.result_code,
        "ResultDesc": attempt.result_desc,
    }
    if transaction is not None:
        callback["CallbackMetadata"] = {
            "Item": [
                {"Name": "Amount", "Value": formats.float_shillings(transaction.amount_cents)},
                {"Name": "MpesaReceiptNumber", "Value": transaction.transaction_id},
                {
                    "Name": "TransactionDate",
                    "Value": int(formats.compact_time(transaction.completed_at)),
                },
                {"Name": "PhoneNumber", "Value": int(transaction.phone)},
            ]
        }
    return {"Body": {"stkCallback": callback}}


def stk_query_answer(attempt: StkAttempt) -> dict[str, Any]:
    return {
        "ResponseCode": "0",
        "ResponseDescription": "The service request has been accepted successfully",
        "MerchantRequestID": attempt.merchant_request_id,
        "CheckoutRequestID": attempt.checkout_request_id,
        "ResultCode": str(attempt.result_code),
        "ResultDesc": attempt.result_desc,
    }


def async_accepted(originator_id: str, conversation_id: str) -> dict[str, Any]:
    """B2C, Account Balance, Transaction Status and Reversal all acknowledge like this."""
    return {
        "ConversationID": conversation_id,
        "OriginatorConversationID": originator_id,
        "ResponseCode": "0",
        "ResponseDescription": ACCEPTED,
    }


def c2b_accepted(conversation_id: str, description: str) -> dict[str, Any]:
    return {
        "OriginatorCoversationID": conversation_id,
        "ResponseCode": "0",
        "ResponseDescription": description,
    }


def result(
    *,
    code: int | str,
    desc: str,
    originator_id: str,
    conversation_id: str,
    transaction_id: str,
    parameters: list[dict[str, Any]] | None = None,
    reference_item: dict[str, Any] | None = None,
    string_types: bool = False,
) -> dict[str, Any]:
    """The {"Result": {...}} body of every ResultURL callback."""
    body: dict[str, Any] = {
        "ResultType": "0" if string_types else 0,
        "ResultCode": str(code) if string_types else code,
        "ResultDesc": desc,
        "OriginatorConversationID": originator_id,
        "ConversationID": conversation_id,
        "TransactionID": transaction_id,
    }
    if parameters is not None:
        body["ResultParameters"] = {"ResultParameter": parameters}
    body["ReferenceData"] = {
        "ReferenceItem": reference_item
        or {"Key": "QueueTimeoutURL", "Value": _QUEUE_TIMEOUT_REFERENCE}
    }
    return {"Result": body}


def b2c_parameters(
    transaction: Transaction, payee: Customer, organisation: Organisation
) -> list[dict[str, Any]]:
    return [
        {"Key": "TransactionAmount", "Value": formats.shillings(transaction.amount_cents)},
        {"Key": "TransactionReceipt", "Value": transaction.transaction_id},
        {"Key": "ReceiverPartyPublicName", "Value": payee.public_name},
        {
            "Key": "TransactionCompletedDateTime",
            "Value": formats.dotted_time(transaction.completed_at),
        },
        {
            "Key": "B2CUtilityAccountAvailableFunds",
            "Value": formats.float_shillings(organisation.utility_cents),
        },
        {
            "Key": "B2CWorkingAccountAvailableFunds",
            "Value": formats.float_shillings(organisation.working_cents),
        },
        {"Key": "B2CRecipientIsRegisteredCustomer", "Value": "Y" if payee.registered else "N"},
        {"Key": "B2CChargesPaidAccountAvailableFunds", "Value": 0.00},
    ]


def account_balance_string(organisation: Organisation) -> str:
    """ "Working Account|KES|700000.00|700000.00|0.00|0.00&...": name|currency|available|..."""
    accounts = [
        ("Working Account", organisation.working_cents),
        ("Float Account", 0),
        ("Utility Account", organisation.utility_cents),
        ("Charges Paid Account", 0),
        ("Organization Settlement Account", 0),
    ]
    return "&".join(
        f"{name}|KES|{formats.decimal_shillings(c)}|{formats.decimal_shillings(c)}|0.00|0.00"
        for name, c in accounts
    )


def status_parameters(transaction: Transaction) -> list[dict[str, Any]]:
    """Transaction Status keys as Safaricom sends them; values are strings there."""
    reason = {
        "b2c": "Business Payment to Customer via API",
        "stk": "Pay Bill Online",
        "c2b": "Pay Bill",
        "reversal": "Reversal",
    }[transaction.kind.value]
    return [
        {"Key": "DebitPartyName", "Value": transaction.debit_party},
        {"Key": "CreditPartyName", "Value": transaction.credit_party},
        {"Key": "OriginatorConversationID", "Value": transaction.originator_conversation_id},
        {"Key": "InitiatedTime", "Value": formats.compact_time(transaction.initiated_at)},
        {"Key": "DebitAccountType", "Value": _debit_account_type(transaction)},
        {"Key": "DebitPartyCharges", "Value": ""},
        {"Key": "TransactionReason"},
        {"Key": "ReasonType", "Value": reason},
        {"Key": "TransactionStatus", "Value": "Completed"},
        {"Key": "FinalisedTime", "Value": formats.compact_time(transaction.completed_at)},
        {"Key": "Amount", "Value": str(formats.shillings(transaction.amount_cents))},
        {"Key": "ConversationID", "Value": transaction.conversation_id},
        {"Key": "ReceiptNo", "Value": transaction.transaction_id},
    ]


def _debit_account_type(transaction: Transaction) -> str:
    if transaction.kind.value == "b2c":
        return "Utility Account"
    if transaction.kind.value == "reversal":
        return "Working Account"
    return "MMF Account For Customer"


def reversal_parameters(
    reversal: Transaction, original: Transaction, organisation: Organisation
) -> list[dict[str, Any]]:
    working = formats.decimal_shillings(organisation.working_cents)
    return [
        {
            "Key": "DebitAccountBalance",
            "Value": f"Working Account|KES|{working}|{working}|0.00|0.00",
        },
        {"Key": "Amount", "Value": formats.float_shillings(reversal.amount_cents)},
        {"Key": "TransCompletedTime", "Value": int(formats.compact_time(reversal.completed_at))},
        {"Key": "OriginalTransactionID", "Value": original.transaction_id},
        {"Key": "Charge", "Value": 0.00},
        {"Key": "CreditPartyPublicName", "Value": reversal.credit_party},
        {"Key": "DebitPartyPublicName", "Value": reversal.debit_party},
    ]


def c2b_notice(
    *,
    transaction_id: str,
    trans_time: str,
    amount_cents: int,
    shortcode: str,
    bill_ref: str,
    msisdn: str,
    payer: Customer,
    org_balance: str,
    third_party_id: str,
) -> dict[str, Any]:
    """Validation and confirmation requests share one shape (OrgAccountBalance blank first)."""
    return {
        "TransactionType": "Pay Bill",
        "TransID": transaction_id,
        "TransTime": trans_time,
        "TransAmount": formats.decimal_shillings(amount_cents),
        "BusinessShortCode": shortcode,
        "BillRefNumber": bill_ref,
        "InvoiceNumber": "",
        "OrgAccountBalance": org_balance,
        "ThirdPartyTransID": third_party_id,
        "MSISDN": msisdn,
        "FirstName": payer.first_name,
        "MiddleName": payer.middle_name,
        "LastName": payer.last_name,
    }


def pull_registered(reference_id: str, shortcode: str, *, already: bool) -> dict[str, Any]:
    """Pull registration: ResponseStatus 1000 the first time, 1001 ever after."""
    if already:
        status, description = "1001", "Shortcode already Registered"
    else:
        status, description = "1000", "Shortcode Registered Successfully"
    return {
        "ResponseRefID": reference_id,
        "ResponseStatus": status,
        "ShortCode": shortcode,
        "ResponseDescription": description,
    }


def pull_row(
    transaction: Transaction, *, msisdn: str, payer: Customer, organisation_name: str
) -> dict[str, Any]:
    """One received payment as Pull Transactions lists it (lower-case keys, as Safaricom spells)."""
    return {
        "transactionId": transaction.transaction_id,
        "trxDate": _utc_iso(transaction.completed_at),
        "msisdn": msisdn,
        "sender": payer.full_name,
        # STK payments land in the same Working Account and M-PESA lists them the same way.
        "transactiontype": "c2b-pay-bill-debit",
        "billreference": transaction.reference,
        "amount": formats.decimal_shillings(transaction.amount_cents),
        "organizationname": organisation_name,
    }


def pull_page(reference_id: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The rows sit in a list inside a list, as in Safaricom's sample; none left is 1001."""
    if not rows:
        code, message = "1001", "No records found"
    else:
        code, message = "1000", "Success"
    return {
        "ResponseRefID": reference_id,
        "ResponseCode": code,
        "ResponseMessage": message,
        "Response": [rows],
    }


def _utc_iso(moment: datetime) -> str:
    """ "2020-08-05T10:13:00Z": Pull Transactions' trxDate, in UTC to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
