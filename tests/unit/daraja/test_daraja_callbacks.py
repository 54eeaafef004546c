"""Lenient callback parsing, on Daraja's recorded bodies and on anything at all."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit.daraja.support import fixture_json, fixture_text

from deni.adapters.daraja.callbacks import (
    MalformedCallback,
    parse_account_balance_result,
    parse_account_balances,
    parse_b2c_result,
    parse_b2c_timeout,
    parse_c2b_confirmation,
    parse_c2b_validation,
    parse_queue_timeout,
    parse_reversal_result,
    parse_stk_callback,
    parse_transaction_status_result,
)

NAIROBI = ZoneInfo("Africa/Nairobi")


def stk_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    items = body["Body"]["stkCallback"]["CallbackMetadata"]["Item"]
    assert isinstance(items, list)
    return items


def set_stk_item(body: dict[str, Any], name: str, value: object) -> dict[str, Any]:
    body = copy.deepcopy(body)
    for item in stk_items(body):
        if item["Name"] == name:
            item["Value"] = value
    return body


def result_params(body: dict[str, Any]) -> list[dict[str, Any]]:
    params = body["Result"]["ResultParameters"]["ResultParameter"]
    assert isinstance(params, list)
    return params


# --- STK --------------------------------------------------------------------------------------


class TestStkCallback:
    def test_official_success(self) -> None:
        parsed = parse_stk_callback(fixture_text("stk_callback_success.json").encode())
        assert parsed.succeeded
        assert parsed.result_code == "0"
        assert parsed.merchant_request_id == "29115-34620561-1"
        assert parsed.checkout_request_id == "ws_CO_191220191020363925"
        assert parsed.amount_cents == 100
        assert parsed.receipt_number == "NLJ7RT61SV"
        assert parsed.transaction_at == datetime(2019, 12, 19, 10, 21, 15, tzinfo=NAIROBI)
        assert parsed.phone == "254708374149"
        assert parsed.phone_raw == "254708374149"

    def test_accepts_str_bytes_and_decoded(self) -> None:
        text = fixture_text("stk_callback_success.json")
        assert (
            parse_stk_callback(text)
            == parse_stk_callback(text.encode())
            == parse_stk_callback(json.loads(text))
        )

    def test_balance_item_without_value(self) -> None:
        parsed = parse_stk_callback(fixture_json("stk_callback_balance_without_value.json"))
        assert parsed.succeeded
        assert parsed.amount_cents == 100
        assert parsed.receipt_number == "NCB9FJNAIT"
        assert parsed.phone == "254719748260"
        assert parsed.checkout_request_id == "ws_CO_DMZ_264695293_11032019122104433"

    def test_balance_item_as_a_blob_of_text(self) -> None:
        body = set_stk_item(
            fixture_json("stk_callback_balance_without_value.json"),
            "Balance",
            "{Amount={BasicAmount=123.45, MinLimit=0.00, MaxLimit=0.00}}",
        )
        assert parse_stk_callback(body).amount_cents == 100

    @pytest.mark.parametrize(
        ("name", "code", "desc"),
        [
            ("stk_callback_cancelled.json", "1032", "Request cancelled by user"),
            (
                "stk_callback_cancelled_prefixed.json",
                "1032",
                "[STK_CB - ]Request cancelled by user",
            ),
            (
                "stk_callback_wrong_pin.json",
                "2001",
                "[MpesaCB - ]The initiator information is invalid.",
            ),
            ("stk_callback_smsc_timeout.json", "1036", "[STK_CB - ]SMSC ACK timeout."),
        ],
    )
    def test_failures_have_no_metadata(self, name: str, code: str, desc: str) -> None:
        parsed = parse_stk_callback(fixture_json(name))
        assert not parsed.succeeded
        assert parsed.result_code == code
        assert parsed.result_desc == desc
        assert parsed.amount_cents is None
        assert parsed.receipt_number is None
        assert parsed.phone is None

    @pytest.mark.parametrize("amount", [1.00, 1, "1.00", "1", " 1 "])
    def test_amount_as_number_or_string(self, amount: object) -> None:
        body = set_stk_item(fixture_json("stk_callback_success.json"), "Amount", amount)
        assert parse_stk_callback(body).amount_cents == 100

    @pytest.mark.parametrize("date", [20191219102115, "20191219102115"])
    def test_transaction_date_as_number_or_string(self, date: object) -> None:
        body = set_stk_item(fixture_json("stk_callback_success.json"), "TransactionDate", date)
        expected = datetime(2019, 12, 19, 10, 21, 15, tzinfo=NAIROBI)
        assert parse_stk_callback(body).transaction_at == expected

    @pytest.mark.parametrize("date", ["yesterday", 20191399102115, None, [1], "20191219"])
    def test_unreadable_transaction_date_is_none(self, date: object) -> None:
        body = set_stk_item(fixture_json("stk_callback_success.json"), "TransactionDate", date)
        assert parse_stk_callback(body).transaction_at is None

    @pytest.mark.parametrize("phone", [254708374149, "254708374149", 254708374149.0, "0708374149"])
    def test_phone_as_number_or_string(self, phone: object) -> None:
        body = set_stk_item(fixture_json("stk_callback_success.json"), "PhoneNumber", phone)
        assert parse_stk_callback(body).phone == "254708374149"

    def test_result_code_as_string(self) -> None:
        body = fixture_json("stk_callback_cancelled.json")
        body["Body"]["stkCallback"]["ResultCode"] = "1032"
        assert parse_stk_callback(body).result_code == "1032"
        body["Body"]["stkCallback"]["ResultCode"] = 0.0
        with pytest.raises(MalformedCallback, match="MpesaReceiptNumber"):
            parse_stk_callback(body)  # "0" now, and a success needs a receipt

    def test_single_item_object_instead_of_a_list(self) -> None:
        body = fixture_json("stk_callback_cancelled.json")
        body["Body"]["stkCallback"]["CallbackMetadata"] = {"Item": {"Name": "Balance"}}
        assert parse_stk_callback(body).result_code == "1032"

    def test_items_looked_up_by_name_not_position(self) -> None:
        body = fixture_json("stk_callback_success.json")
        stk_items(body).reverse()
        assert parse_stk_callback(body).receipt_number == "NLJ7RT61SV"

    def test_unknown_fields_are_ignored(self) -> None:
        body = fixture_json("stk_callback_success.json")
        body["Extra"] = {"anything": [1, 2]}
        body["Body"]["stkCallback"]["NewField"] = "x"
        stk_items(body).append({"Name": "Shiny", "Value": {"nested": True}})
        assert parse_stk_callback(body).amount_cents == 100

    @pytest.mark.parametrize(
        ("mutate", "reason"),
        [
            (lambda b: b.pop("Body"), "Body"),
            (lambda b: b["Body"].pop("stkCallback"), "stkCallback"),
            (lambda b: b["Body"]["stkCallback"].pop("CheckoutRequestID"), "CheckoutRequestID"),
            (lambda b: b["Body"]["stkCallback"].update(MerchantRequestID=""), "MerchantRequestID"),
            (lambda b: b["Body"]["stkCallback"].pop("ResultCode"), "ResultCode"),
            (lambda b: b["Body"]["stkCallback"].update(ResultCode=True), "ResultCode"),
            (lambda b: b["Body"]["stkCallback"].pop("CallbackMetadata"), "MpesaReceiptNumber"),
            (lambda b: b["Body"]["stkCallback"].update(CallbackMetadata=[]), "CallbackMetadata"),
            (lambda b: stk_items(b).pop(0), "Amount"),
            (lambda b: stk_items(b)[0].update(Value="1.005"), "fraction of a cent"),
            (lambda b: stk_items(b)[0].update(Value=-1), "negative"),
            (lambda b: stk_items(b)[0].update(Value=0), "positive Amount"),
            (lambda b: stk_items(b)[0].update(Value="one"), "Amount"),
            (
                lambda b: b["Body"]["stkCallback"]["CallbackMetadata"]["Item"].append(7),
                "not an object",
            ),
            (lambda b: stk_items(b).append({"Value": 1}), "has no Name"),
            (
                lambda b: b["Body"]["stkCallback"].update(CheckoutRequestID="x" * 200),
                "longer than",
            ),
        ],
    )
    def test_malformed(self, mutate: Callable[[dict[str, Any]], object], reason: str) -> None:
        body = fixture_json("stk_callback_success.json")
        mutate(body)
        with pytest.raises(MalformedCallback, match=reason) as raised:
            parse_stk_callback(body)
        assert reason in raised.value.reason

    @pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b"null", "\ud800", b"\xff\xfe", 42])
    def test_not_an_object(self, raw: object) -> None:
        with pytest.raises(MalformedCallback):
            parse_stk_callback(raw)

    def test_huge_bodies_are_refused(self) -> None:
        with pytest.raises(MalformedCallback, match="longer than"):
            parse_stk_callback(b"{" + b" " * 70_000 + b"}")


# --- B2C --------------------------------------------------------------------------------------


class TestB2CResult:
    def test_official_success(self) -> None:
        parsed = parse_b2c_result(fixture_json("b2c_result_success.json"))
        assert parsed.succeeded
        assert parsed.result_type == "0"
        assert parsed.result_code == "0"
        assert parsed.originator_conversation_id == "53e3-4aa8-9fe0-8fb5e4092cdd3533373"
        assert parsed.conversation_id == "AG_20240706_2010364430d9bbdaf872"
        assert parsed.transaction_id == "SG632NMUAB"
        assert parsed.receipt_number == "SG632NMUAB"
        assert parsed.amount_cents == 1_000
        assert parsed.receiver_public_name == "254705912645 - NICHOLAS JOHN SONGOK"
        assert parsed.completed_at == datetime(2024, 7, 6, 22, 48, 52, tzinfo=NAIROBI)
        assert parsed.recipient_is_registered is True
        assert parsed.utility_account_available_cents == 895_926_960
        assert parsed.working_account_available_cents == 119_937_100
        assert parsed.charges_paid_account_available_cents == -198_000
        assert parsed.reference_items == (
            (
                "QueueTimeoutURL",
                "https://internalsandbox.safaricom.co.ke/mpesa/b2cresults/v1/submit",
            ),
        )

    def test_official_failure(self) -> None:
        parsed = parse_b2c_result(fixture_json("b2c_result_failure.json"))
        assert not parsed.succeeded
        assert parsed.result_code == "2001"
        assert parsed.result_desc == "The initiator information is invalid."
        assert parsed.transaction_id == "SG722NMVXQ"  # a placeholder, not a payment
        assert parsed.receipt_number is None
        assert parsed.amount_cents is None

    def test_codes_as_strings(self) -> None:
        body = fixture_json("b2c_result_success.json")
        body["Result"]["ResultCode"] = "0"
        body["Result"]["ResultType"] = "0"
        assert parse_b2c_result(body).succeeded

    def test_single_result_parameter_object(self) -> None:
        body = fixture_json("b2c_result_success.json")
        body["Result"]["ResultParameters"]["ResultParameter"] = {
            "Key": "TransactionAmount",
            "Value": "10.00",
        }
        parsed = parse_b2c_result(body)
        assert parsed.amount_cents == 1_000
        assert parsed.receipt_number == "SG632NMUAB"  # from TransactionID

    def test_reference_items_as_a_list_and_without_value(self) -> None:
        body = fixture_json("b2c_result_success.json")
        body["Result"]["ReferenceData"]["ReferenceItem"] = [
            {"Key": "QueueTimeoutURL", "Value": "https://x.example"},
            {"Key": "Occasion"},
            {"Key": "Odd", "Value": {"nested": 1}},
        ]
        parsed = parse_b2c_result(body)
        assert parsed.reference_items == (
            ("QueueTimeoutURL", "https://x.example"),
            ("Occasion", None),
            ("Odd", None),
        )

    def test_parameters_without_value(self) -> None:
        body = fixture_json("b2c_result_success.json")
        result_params(body).append({"Key": "TransactionReason"})
        for param in result_params(body):
            if param["Key"] == "B2CRecipientIsRegisteredCustomer":
                del param["Value"]
        parsed = parse_b2c_result(body)
        assert parsed.recipient_is_registered is None
        assert parsed.amount_cents == 1_000

    def test_success_without_amount_is_malformed(self) -> None:
        body = fixture_json("b2c_result_success.json")
        del body["Result"]["ResultParameters"]
        with pytest.raises(MalformedCallback, match="TransactionAmount"):
            parse_b2c_result(body)

    @pytest.mark.parametrize(
        ("key", "reason"),
        [("OriginatorConversationID", "OriginatorConversationID"), ("Result", "Result")],
    )
    def test_missing_ids(self, key: str, reason: str) -> None:
        body = fixture_json("b2c_result_failure.json")
        if key == "Result":
            body = {"Other": body["Result"]}
        else:
            del body["Result"][key]
        with pytest.raises(MalformedCallback, match=reason):
            parse_b2c_result(body)

    def test_fraction_of_a_cent_is_malformed(self) -> None:
        body = fixture_json("b2c_result_success.json")
        result_params(body)[0]["Value"] = 10.001
        with pytest.raises(MalformedCallback, match="fraction of a cent"):
            parse_b2c_result(body)


class TestQueueTimeout:
    def test_result_shaped(self) -> None:
        body = {
            "Result": {
                "ResultType": 0,
                "ResultCode": 1,
                "ResultDesc": "The service request timed out.",
                "OriginatorConversationID": "600997_Test_32et3241ed8yu",
                "ConversationID": "AG_20240706_20106e9209f64bebd05b",
            }
        }
        parsed = parse_b2c_timeout(body)
        assert parsed.originator_conversation_id == "600997_Test_32et3241ed8yu"
        assert parsed.conversation_id == "AG_20240706_20106e9209f64bebd05b"
        assert parsed.result_code == "1"

    def test_flat_and_partial(self) -> None:
        parsed = parse_queue_timeout({"OriginatorConversationID": "abc"})
        assert parsed.originator_conversation_id == "abc"
        assert parsed.conversation_id is None
        assert parsed.result_code is None

    def test_needs_an_id(self) -> None:
        with pytest.raises(MalformedCallback, match="OriginatorConversationID"):
            parse_queue_timeout({"Result": {"ResultCode": 1}})


# --- C2B --------------------------------------------------------------------------------------


class TestC2B:
    def test_v2_masked(self) -> None:
        parsed = parse_c2b_confirmation(fixture_json("c2b_v2_masked.json"))
        assert parsed.trans_id == "RKL51ZDR4F"
        assert parsed.amount_cents == 500
        assert parsed.trans_time == datetime(2023, 11, 21, 12, 13, 25, tzinfo=NAIROBI)
        assert parsed.transaction_type == "Pay Bill"
        assert parsed.business_short_code == "600966"
        assert parsed.bill_ref_number == "Sample Transaction"
        assert parsed.account_reference == "SAMPLETRANSACTION"
        assert parsed.invoice_number is None
        assert parsed.org_account_balance_cents == 2_500
        assert parsed.third_party_trans_id is None
        assert parsed.msisdn is None
        assert parsed.msisdn_raw == "2547 ***** 126"
        assert parsed.msisdn_kind == "masked"
        assert parsed.first_name == "NICHOLAS"
        assert parsed.middle_name is None

    def test_v1_hashed(self) -> None:
        parsed = parse_c2b_confirmation(fixture_json("c2b_v1_hashed.json"))
        assert parsed.msisdn is None
        assert parsed.msisdn_kind == "hashed"
        assert parsed.msisdn_raw is not None
        assert parsed.msisdn_raw.startswith("94c2c311")

    def test_unmasked_validation(self) -> None:
        parsed = parse_c2b_validation(fixture_json("c2b_validation_unmasked.json"))
        assert parsed.msisdn == "254708374149"
        assert parsed.msisdn_kind == "plain"
        assert parsed.amount_cents == 1_000
        assert parsed.transaction_type is None  # "" in old sandbox samples
        assert parsed.org_account_balance_cents is None  # blank on validation
        assert parsed.last_name is None

    def test_unmasked_confirmation(self) -> None:
        parsed = parse_c2b_confirmation(fixture_json("c2b_confirmation_unmasked.json"))
        assert parsed.org_account_balance_cents == 4_919_700
        assert parsed.third_party_trans_id == "1234567890"
        assert parsed.account_reference == "XYZ"

    @pytest.mark.parametrize(
        ("msisdn", "phone", "kind"),
        [
            (254708374149, "254708374149", "plain"),
            ("+254 708 374 149", "254708374149", "plain"),
            ("0110374149", "254110374149", "plain"),
            ("2547 ***** 126", None, "masked"),
            ("254708***149", None, "masked"),
            ("a" * 64, None, "hashed"),
            ("44 20 7946 0958", None, "unknown"),
            ("John", None, "unknown"),
            ("", None, "absent"),
            (None, None, "absent"),
        ],
    )
    def test_msisdn_kinds(self, msisdn: object, phone: str | None, kind: str) -> None:
        body = fixture_json("c2b_v2_masked.json") | {"MSISDN": msisdn}
        parsed = parse_c2b_confirmation(body)
        assert parsed.msisdn == phone
        assert parsed.msisdn_kind == kind

    @pytest.mark.parametrize("amount", ["100.00", "100", 100, 100.0])
    def test_amount_as_string_or_number(self, amount: object) -> None:
        body = fixture_json("c2b_v2_masked.json") | {"TransAmount": amount}
        assert parse_c2b_confirmation(body).amount_cents == 10_000

    def test_numeric_bill_ref_and_extra_fields(self) -> None:
        body = fixture_json("c2b_v2_masked.json") | {"BillRefNumber": 12345, "New": [1]}
        assert parse_c2b_confirmation(body).bill_ref_number == "12345"

    @pytest.mark.parametrize(
        ("change", "reason"),
        [
            ({"TransAmount": "5.001"}, "fraction of a cent"),
            ({"TransAmount": "-5.00"}, "negative"),
            ({"TransAmount": ""}, "TransAmount"),
            ({"TransAmount": "0.00"}, "TransAmount"),
            ({"TransID": ""}, "TransID"),
            ({"TransID": None}, "TransID"),
            ({"MSISDN": {"masked": True}}, "MSISDN"),
            ({"FirstName": ["x"]}, "FirstName"),
        ],
    )
    def test_malformed(self, change: dict[str, object], reason: str) -> None:
        with pytest.raises(MalformedCallback, match=reason):
            parse_c2b_confirmation(fixture_json("c2b_v2_masked.json") | change)


# --- Account balance, transaction status, reversal ---------------------------------------------


class TestAccountBalance:
    def test_official_result(self) -> None:
        parsed = parse_account_balance_result(fixture_json("account_balance_result.json"))
        assert parsed.succeeded
        assert parsed.result_code == "0"
        assert parsed.originator_conversation_id == "16917-22577599-3"
        assert parsed.conversation_id == "AG_20200206_00005e091a8ec6b9eac5"
        assert parsed.completed_at == datetime(2020, 1, 9, 12, 57, 10, tzinfo=NAIROBI)
        names = [account.name for account in parsed.accounts]
        assert names == [
            "Working Account",
            "Float Account",
            "Utility Account",
            "Charges Paid Account",
            "Organization Settlement Account",
        ]
        working = parsed.account("working account")
        assert working is not None
        assert working.currency == "KES"
        assert working.available_cents == 70_000_000
        assert working.amounts_cents == (70_000_000, 70_000_000, 0, 0)
        utility = parsed.account("Utility Account")
        assert utility is not None
        assert utility.available_cents == 22_803_700
        charges = parsed.account("Charges Paid Account")
        assert charges is not None
        assert charges.available_cents == -154_000
        assert parsed.account("Nope") is None

    def test_balance_string(self) -> None:
        accounts = parse_account_balances("Utility Account|KES|7722179.62|7722179.62|0.00|0.00&")
        assert len(accounts) == 1
        assert accounts[0].available_cents == 772_217_962

    @pytest.mark.parametrize(
        "text", ["Working Account", "Working Account|KES", "|KES|1.00", "A|KES|1.005", "A|KES|x"]
    )
    def test_bad_balance_strings(self, text: str) -> None:
        with pytest.raises(MalformedCallback):
            parse_account_balances(text)

    def test_failure_has_no_accounts(self) -> None:
        body = fixture_json("account_balance_result.json")
        body["Result"]["ResultCode"] = 2001
        del body["Result"]["ResultParameters"]
        parsed = parse_account_balance_result(body)
        assert parsed.result_code == "2001"
        assert parsed.accounts == ()

    def test_success_needs_balances(self) -> None:
        body = fixture_json("account_balance_result.json")
        result_params(body).pop(0)
        with pytest.raises(MalformedCallback, match="AccountBalance"):
            parse_account_balance_result(body)


class TestTransactionStatus:
    def test_official_result(self) -> None:
        parsed = parse_transaction_status_result(fixture_json("transaction_status_result.json"))
        assert parsed.succeeded
        assert parsed.originator_conversation_id == "3213-416199-2"
        assert parsed.conversation_id == "AG_20180223_0000493344ae97d86f75"
        assert parsed.transaction_id == "MBN0000000"
        assert parsed.transaction_status == "Completed"
        assert parsed.receipt_number == "MBN31H462N"
        assert parsed.amount_cents == 30_000
        assert parsed.original_originator_conversation_id == "3211-416020-3"
        assert parsed.original_conversation_id == "AG_20180223_000041b09c22e613d6c9"
        # Duplicate keys are all kept.
        assert parsed.debit_party_names == ("600310 - Safaricom333", "254708374149 - John Doe")
        assert parsed.credit_party_names == ()
        assert parsed.reason_type == "Business Payment to Customer via API"
        assert parsed.initiated_at == datetime(2018, 2, 23, 5, 41, 12, tzinfo=NAIROBI)
        assert parsed.finalised_at == datetime(2018, 2, 23, 5, 41, 12, tzinfo=NAIROBI)

    def test_keys_with_spaces(self) -> None:
        body = fixture_json("transaction_status_result.json")
        for param in result_params(body):
            if param["Key"] == "OriginatorConversationID":
                param["Key"] = "Originator Conversation ID"
            if param["Key"] == "ConversationID":
                param["Key"] = "Conversation ID"
        parsed = parse_transaction_status_result(body)
        assert parsed.original_originator_conversation_id == "3211-416020-3"
        assert parsed.original_conversation_id == "AG_20180223_000041b09c22e613d6c9"

    def test_operator_does_not_exist(self) -> None:
        body = fixture_json("transaction_status_result.json")
        body["Result"]["ResultCode"] = "SFC_IC0003"
        del body["Result"]["ResultParameters"]
        parsed = parse_transaction_status_result(body)
        assert parsed.result_code == "SFC_IC0003"
        assert parsed.transaction_status is None
        assert parsed.amount_cents is None


class TestReversal:
    def test_official_success(self) -> None:
        parsed = parse_reversal_result(fixture_json("reversal_result_success.json"))
        assert parsed.succeeded
        assert parsed.transaction_id == "SKE52PAWR9"
        assert parsed.original_transaction_id == "SKC82PACB8"
        assert parsed.amount_cents == 100
        assert parsed.charge_cents == 0
        assert parsed.completed_at == datetime(2021, 11, 14, 13, 27, 11, tzinfo=NAIROBI)
        assert parsed.credit_party_public_name == "254705912645 - NICHOLAS JOHN SONGOK"
        assert parsed.debit_party_public_name == "600992 - Safaricom Daraja 992"
        assert len(parsed.debit_account_balances) == 1
        assert parsed.debit_account_balances[0].available_cents == 772_217_962

    def test_failure_with_a_string_code(self) -> None:
        parsed = parse_reversal_result(fixture_json("reversal_result_failure.json"))
        assert not parsed.succeeded
        assert parsed.result_code == "R000002"
        assert parsed.result_desc == "The OriginalTransactionID is invalid."
        assert parsed.debit_account_balances == ()

    def test_code_21_with_success_prose_is_not_success(self) -> None:
        body = fixture_json("reversal_result_success.json")
        body["Result"]["ResultCode"] = "21"
        assert not parse_reversal_result(body).succeeded


# --- Robustness -------------------------------------------------------------------------------

PARSERS = [
    parse_stk_callback,
    parse_b2c_result,
    parse_queue_timeout,
    parse_c2b_validation,
    parse_c2b_confirmation,
    parse_account_balance_result,
    parse_transaction_status_result,
    parse_reversal_result,
]
# Keys Daraja uses, so random bodies reach deep into the parsers instead of failing at the top.
KEYS = st.sampled_from(
    [
        "Body",
        "stkCallback",
        "CallbackMetadata",
        "Item",
        "Name",
        "Value",
        "Key",
        "Amount",
        "MpesaReceiptNumber",
        "PhoneNumber",
        "TransactionDate",
        "MerchantRequestID",
        "CheckoutRequestID",
        "ResultCode",
        "ResultDesc",
        "ResultType",
        "Result",
        "ResultParameters",
        "ResultParameter",
        "ReferenceData",
        "ReferenceItem",
        "OriginatorConversationID",
        "ConversationID",
        "TransactionID",
        "TransactionAmount",
        "TransactionReceipt",
        "AccountBalance",
        "TransAmount",
        "TransID",
        "TransTime",
        "MSISDN",
        "BillRefNumber",
        "OrgAccountBalance",
        "DebitAccountBalance",
        "Charge",
    ]
) | st.text(max_size=8)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["0", "1.00", "-1", "1.005", "20191219102115", "A|KES|1.00&B|X|y", "a|b"])
)
JSON_LIKE = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(KEYS, children, max_size=6),
    max_leaves=40,
)


def reason_if_malformed(parser: Callable[[object], object], body: object) -> str | None:
    """None when the body parses; the reason when MalformedCallback; anything else escapes."""
    try:
        parser(body)
    except MalformedCallback as error:
        return error.reason
    return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=JSON_LIKE, parser_index=st.integers(min_value=0, max_value=len(PARSERS) - 1))
def test_parsers_only_raise_malformed_callback(body: object, parser_index: int) -> None:
    parser = PARSERS[parser_index]
    assert reason_if_malformed(parser, body) != ""
    # The same, as the raw bytes Daraja would send.
    assert reason_if_malformed(parser, json.dumps(body).encode()) != ""


FIXTURE_PARSERS = [
    ("stk_callback_success.json", parse_stk_callback),
    ("stk_callback_balance_without_value.json", parse_stk_callback),
    ("b2c_result_success.json", parse_b2c_result),
    ("c2b_v2_masked.json", parse_c2b_confirmation),
    ("account_balance_result.json", parse_account_balance_result),
    ("transaction_status_result.json", parse_transaction_status_result),
    ("reversal_result_success.json", parse_reversal_result),
]


def _replace_somewhere(tree: object, choices: list[int], value: object) -> object:
    """Replace one node of `tree` (picked by `choices`) with `value`."""
    if not choices or not isinstance(tree, dict | list) or not tree:
        return value
    keys = list(tree.keys()) if isinstance(tree, dict) else list(range(len(tree)))
    key = keys[choices[0] % len(keys)]
    copied: Any = copy.copy(tree)
    copied[key] = _replace_somewhere(copied[key], choices[1:], value)
    return copied


@settings(max_examples=400, deadline=None)
@given(
    fixture=st.sampled_from(FIXTURE_PARSERS),
    choices=st.lists(st.integers(min_value=0, max_value=50), max_size=6),
    value=JSON_LIKE,
)
def test_mutated_recorded_bodies_only_raise_malformed_callback(
    fixture: tuple[str, Callable[[object], object]], choices: list[int], value: object
) -> None:
    name, parser = fixture
    body = _replace_somewhere(fixture_json(name), choices, value)
    assert reason_if_malformed(parser, body) != ""


@given(st.binary(max_size=200) | st.text(max_size=200))
def test_raw_bytes_only_raise_malformed_callback(raw: bytes | str) -> None:
    for parser in PARSERS:
        assert reason_if_malformed(parser, raw) != ""
