"""Lenient parsers for the bodies Daraja POSTs to Deni's callback URLs.

Daraja is inconsistent: numbers arrive as strings and strings as numbers ("ResultCode": 0 in one
callback, "0" in the next), list-valued fields arrive as a single object, items come without a
Value, C2B phone numbers come masked ("2547 ***** 126") or hashed, and new fields appear without
notice. These parsers accept all of that and hand back small frozen dataclasses with normalised
fields: result codes as str, amounts as integer cents, times as aware datetimes, ids as str.

What they do not accept is a body that lacks what Deni needs to act on it (no CheckoutRequestID,
a success without a receipt, an amount with a fraction of a cent). That raises MalformedCallback,
the only exception these functions raise, with a reason; the caller has already stored the raw
body, so nothing is lost and the reconciler can ask Daraja directly.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from deni.adapters.daraja.credentials import NAIROBI
from deni.adapters.daraja.money import AmountError, shillings_to_cents

__all__ = [
    "AccountBalance",
    "AccountBalanceResult",
    "B2CResult",
    "C2BPayment",
    "MalformedCallback",
    "QueueTimeout",
    "ReversalResult",
    "StkCallback",
    "TransactionStatusResult",
    "parse_account_balance_result",
    "parse_account_balances",
    "parse_b2c_result",
    "parse_b2c_timeout",
    "parse_c2b_confirmation",
    "parse_c2b_validation",
    "parse_queue_timeout",
    "parse_reversal_result",
    "parse_stk_callback",
    "parse_transaction_status_result",
]

# Callback bodies are a few kilobytes; anything far larger is not from Daraja.
BODY_BYTES_MAX = 64 * 1024
# Daraja ids are at most ~40 characters; the bound keeps junk out of unique indexes.
ID_CHARS_MAX = 128
TEXT_CHARS_MAX = 1000
SUCCESS = "0"

_TIMESTAMP = re.compile(r"\d{14}")  # yyyyMMddHHmmss, Nairobi time
_DOTTED_TIME = re.compile(r"\d{2}\.\d{2}\.\d{4} \d{2}:\d{2}:\d{2}")  # 06.07.2024 22:48:52
_PLAIN_PHONE = re.compile(r"\+?\d{9,15}")
_KENYAN_MOBILE = re.compile(r"(?:254|0)?([17]\d{8})")
_HASHED = re.compile(r"[0-9a-fA-F]{32,128}")

MsisdnKind = Literal["plain", "masked", "hashed", "unknown", "absent"]


class MalformedCallback(Exception):
    """The body cannot be used. `reason` says why, for the operator (no personal data in it)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


# --- Results ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StkCallback:
    merchant_request_id: str
    checkout_request_id: str
    result_code: str  # "0" paid; "1032" cancelled, "1037" unreachable, ...
    result_desc: str
    amount_cents: int | None  # present when paid
    receipt_number: str | None  # MpesaReceiptNumber, present when paid
    transaction_at: datetime | None
    phone: str | None  # 2547XXXXXXXX when Daraja sent a plain number
    phone_raw: str | None

    @property
    def succeeded(self) -> bool:
        return self.result_code == SUCCESS


@dataclass(frozen=True, slots=True)
class B2CResult:
    result_type: str | None
    result_code: str
    result_desc: str
    originator_conversation_id: str  # ours, from the request
    conversation_id: str
    transaction_id: str | None  # a placeholder such as "SG722NMVXQ" on failure
    amount_cents: int | None
    receipt_number: str | None
    receiver_public_name: str | None  # "2547... - NAME": personal data
    completed_at: datetime | None
    recipient_is_registered: bool | None
    utility_account_available_cents: int | None
    working_account_available_cents: int | None
    charges_paid_account_available_cents: int | None
    reference_items: tuple[tuple[str, str | None], ...]

    @property
    def succeeded(self) -> bool:
        return self.result_code == SUCCESS


@dataclass(frozen=True, slots=True)
class QueueTimeout:
    """A QueueTimeOutURL notification: the outcome is UNKNOWN, not failed."""

    originator_conversation_id: str | None
    conversation_id: str | None
    result_code: str | None
    result_desc: str


@dataclass(frozen=True, slots=True)
class C2BPayment:
    transaction_type: str | None  # "Pay Bill" / "Buy Goods" (empty in old sandbox samples)
    trans_id: str  # the M-PESA receipt: idempotency key for confirmations
    trans_time: datetime | None
    amount_cents: int
    business_short_code: str | None
    bill_ref_number: str  # the account number the customer typed, as typed
    invoice_number: str | None
    org_account_balance_cents: int | None  # blank on validation
    third_party_trans_id: str | None
    msisdn: str | None  # 2547XXXXXXXX only when Daraja sent a plain number
    msisdn_raw: str | None  # masked ("2547 ***** 126") or hashed in C2B v2 / v1
    msisdn_kind: MsisdnKind
    first_name: str | None
    middle_name: str | None
    last_name: str | None

    @property
    def account_reference(self) -> str:
        """BillRefNumber as Deni matches it: no spaces, upper case ("ab 12c" -> "AB12C")."""
        return "".join(self.bill_ref_number.split()).upper()


@dataclass(frozen=True, slots=True)
class AccountBalance:
    """One account of "Working Account|KES|700000.00|700000.00|0.00|0.00".

    The reference names the amounts available|uncleared|reserved|...; Safaricom does not
    document them authoritatively, so all are kept in order and only the first is named.
    """

    name: str
    currency: str
    amounts_cents: tuple[int, ...]

    @property
    def available_cents(self) -> int:
        return self.amounts_cents[0]


@dataclass(frozen=True, slots=True)
class AccountBalanceResult:
    result_code: str
    result_desc: str
    originator_conversation_id: str
    conversation_id: str
    transaction_id: str | None
    accounts: tuple[AccountBalance, ...]
    completed_at: datetime | None

    @property
    def succeeded(self) -> bool:
        return self.result_code == SUCCESS

    def account(self, name: str) -> AccountBalance | None:
        wanted = name.casefold()
        return next((a for a in self.accounts if a.name.casefold() == wanted), None)


@dataclass(frozen=True, slots=True)
class TransactionStatusResult:
    result_code: str
    result_desc: str
    originator_conversation_id: str  # of the status query itself
    conversation_id: str
    transaction_id: str | None
    transaction_status: str | None  # "Completed", "Cancelled", "Declined", "Expired", "Pending"..
    receipt_number: str | None  # ReceiptNo of the queried transaction
    amount_cents: int | None
    # The queried transaction's own ids (for a B2C: the OriginatorConversationID we sent).
    original_originator_conversation_id: str | None
    original_conversation_id: str | None
    debit_party_names: tuple[str, ...]
    credit_party_names: tuple[str, ...]
    reason_type: str | None
    initiated_at: datetime | None
    finalised_at: datetime | None

    @property
    def succeeded(self) -> bool:
        return self.result_code == SUCCESS


@dataclass(frozen=True, slots=True)
class ReversalResult:
    result_code: str  # "0", or e.g. "R000002" (invalid OriginalTransactionID)
    result_desc: str
    originator_conversation_id: str
    conversation_id: str
    transaction_id: str | None
    original_transaction_id: str | None
    amount_cents: int | None
    charge_cents: int | None
    completed_at: datetime | None
    credit_party_public_name: str | None
    debit_party_public_name: str | None
    debit_account_balances: tuple[AccountBalance, ...]

    @property
    def succeeded(self) -> bool:
        return self.result_code == SUCCESS


# --- Decoding helpers -------------------------------------------------------------------------


def _load(body: object) -> Mapping[str, object]:
    """bytes/str are raw JSON text; anything else is taken as already decoded."""
    decoded: object = body
    if isinstance(body, bytes | bytearray | str):
        if len(body) > BODY_BYTES_MAX:
            raise MalformedCallback(f"body longer than {BODY_BYTES_MAX} bytes")
        try:
            decoded = json.loads(body)
        except (ValueError, RecursionError) as error:
            raise MalformedCallback("body is not JSON") from error
    if not isinstance(decoded, Mapping):
        raise MalformedCallback("body is not a JSON object")
    return decoded


def _obj(container: Mapping[str, object], key: str) -> Mapping[str, object]:
    value = container.get(key)
    if not isinstance(value, Mapping):
        raise MalformedCallback(f"{key} is missing or not an object")
    return value


def _scalar_text(value: object, field: str) -> str | None:
    """Text for a JSON scalar: "ab" -> "ab", 254708374149 -> "254708374149", 0.0 -> "0".

    None for null. Booleans and containers are not text: MalformedCallback.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip()[:TEXT_CHARS_MAX]
    if isinstance(value, bool):
        raise MalformedCallback(f"{field} is a boolean")
    if isinstance(value, int):
        text = str(value) if abs(value) < 10**30 else ""
        if not text:
            raise MalformedCallback(f"{field} is an absurdly large number")
        return text
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) >= 1e30:
            raise MalformedCallback(f"{field} is not a usable number")
        return str(int(value)) if value.is_integer() else repr(value)
    raise MalformedCallback(f"{field} is not text or a number")


def _opt_text(value: object, field: str) -> str | None:
    """Optional text: missing, null and "" are all None."""
    text = _scalar_text(value, field)
    return text or None


def _id(value: object, field: str) -> str:
    text = _scalar_text(value, field)
    if not text:
        raise MalformedCallback(f"{field} is missing")
    if len(text) > ID_CHARS_MAX:
        raise MalformedCallback(f"{field} is longer than {ID_CHARS_MAX} characters")
    return text


def _opt_id(value: object, field: str) -> str | None:
    return None if _opt_text(value, field) is None else _id(value, field)


def _code(value: object, field: str) -> str:
    """Result codes: 0, "0", 0.0 -> "0"; "R000002", "C2B00011" stay as they are."""
    return _id(value, field)


def _cents(value: object, field: str, *, allow_negative: bool = False) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return shillings_to_cents(value, allow_negative=allow_negative)
    except AmountError as error:
        raise MalformedCallback(f"{field}: {error}") from error


def _timestamp(value: object) -> datetime | None:
    """yyyyMMddHHmmss (as text or a number) or dd.MM.yyyy HH:mm:ss, Nairobi time; None when
    absent or unreadable (times are informative, never what Deni acts on)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    if isinstance(value, int) and not 0 <= value < 10**14:
        return None
    text = str(value).strip()
    try:
        if _TIMESTAMP.fullmatch(text):
            return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=NAIROBI)
        if _DOTTED_TIME.fullmatch(text):
            return datetime.strptime(text, "%d.%m.%Y %H:%M:%S").replace(tzinfo=NAIROBI)
    except ValueError:
        return None
    return None


def _phone(value: object, field: str) -> tuple[str | None, str | None, MsisdnKind]:
    """(normalised 2547XXXXXXXX or None, the raw value as text, what kind of value it was)."""
    raw = _opt_text(value, field)
    if raw is None:
        return None, None, "absent"
    compact = "".join(raw.split())
    if _PLAIN_PHONE.fullmatch(compact):
        match = _KENYAN_MOBILE.fullmatch(compact.removeprefix("+"))
        if match is not None:
            return f"254{match.group(1)}", raw, "plain"
        return None, raw, "unknown"
    if "*" in compact:
        return None, raw, "masked"
    if _HASHED.fullmatch(compact):
        return None, raw, "hashed"
    return None, raw, "unknown"


def _bool_flag(value: object) -> bool | None:
    if isinstance(value, str):
        flag = value.strip().upper()
        if flag in ("Y", "YES", "TRUE"):
            return True
        if flag in ("N", "NO", "FALSE"):
            return False
    return None


class _Params:
    """A multimap of {Key|Name, Value} items: keys repeat (DebitPartyName twice) and some come
    with spaces ("Conversation ID"), so keys are compared without spaces."""

    def __init__(self, pairs: tuple[tuple[str, object], ...]) -> None:
        self.pairs = pairs

    def all(self, key: str) -> list[object]:
        return [value for name, value in self.pairs if name == key]

    def first(self, key: str) -> object:
        return next((value for name, value in self.pairs if name == key), None)

    def texts(self, key: str) -> tuple[tuple[str, str | None], ...]:
        return tuple((name, _opt_text(value, name)) for name, value in self.pairs if name == key)


def _items(container: object, list_key: str, name_key: str, where: str) -> _Params:
    """Items under container[list_key]: a list of objects, or a single object. Missing: none."""
    if container is None or container == "":
        return _Params(())
    if not isinstance(container, Mapping):
        raise MalformedCallback(f"{where} is not an object")
    raw = container.get(list_key)
    if raw is None:
        return _Params(())
    items = [raw] if isinstance(raw, Mapping) else raw
    if not isinstance(items, list):
        raise MalformedCallback(f"{where}.{list_key} is not a list or an object")
    pairs: list[tuple[str, object]] = []
    for item in items:
        if not isinstance(item, Mapping):
            raise MalformedCallback(f"an item of {where}.{list_key} is not an object")
        name = item.get(name_key)
        if not isinstance(name, str) or not name.strip():
            raise MalformedCallback(f"an item of {where}.{list_key} has no {name_key}")
        pairs.append(("".join(name.split()), item.get("Value")))
    return _Params(tuple(pairs))


@dataclass(frozen=True, slots=True)
class _Envelope:
    result_type: str | None
    result_code: str
    result_desc: str
    originator_conversation_id: str
    conversation_id: str
    transaction_id: str | None
    params: _Params
    reference: _Params


def _envelope(body: object) -> _Envelope:
    result = _obj(_load(body), "Result")
    return _Envelope(
        result_type=_opt_text(result.get("ResultType"), "ResultType"),
        result_code=_code(result.get("ResultCode"), "ResultCode"),
        result_desc=_opt_text(result.get("ResultDesc"), "ResultDesc") or "",
        originator_conversation_id=_id(
            result.get("OriginatorConversationID"), "OriginatorConversationID"
        ),
        conversation_id=_id(result.get("ConversationID"), "ConversationID"),
        transaction_id=_opt_id(result.get("TransactionID"), "TransactionID"),
        params=_items(result.get("ResultParameters"), "ResultParameter", "Key", "ResultParameters"),
        reference=_items(result.get("ReferenceData"), "ReferenceItem", "Key", "ReferenceData"),
    )


# --- Parsers ----------------------------------------------------------------------------------


def parse_stk_callback(body: object) -> StkCallback:
    """The STK push callback: {"Body": {"stkCallback": {...}}}."""
    callback = _obj(_obj(_load(body), "Body"), "stkCallback")
    result_code = _code(callback.get("ResultCode"), "ResultCode")
    # Look items up by Name, never by position; Balance may lack a Value or be a blob of text.
    items = _items(callback.get("CallbackMetadata"), "Item", "Name", "CallbackMetadata")
    amount_cents = _cents(items.first("Amount"), "Amount")
    receipt_number = _opt_id(items.first("MpesaReceiptNumber"), "MpesaReceiptNumber")
    phone, phone_raw, _kind = _phone(items.first("PhoneNumber"), "PhoneNumber")
    if result_code == SUCCESS:
        # A payment Deni cannot identify or size is not one it can credit.
        if receipt_number is None:
            raise MalformedCallback("successful STK callback without MpesaReceiptNumber")
        if amount_cents is None or amount_cents <= 0:
            raise MalformedCallback("successful STK callback without a positive Amount")
    return StkCallback(
        merchant_request_id=_id(callback.get("MerchantRequestID"), "MerchantRequestID"),
        checkout_request_id=_id(callback.get("CheckoutRequestID"), "CheckoutRequestID"),
        result_code=result_code,
        result_desc=_opt_text(callback.get("ResultDesc"), "ResultDesc") or "",
        amount_cents=amount_cents,
        receipt_number=receipt_number,
        transaction_at=_timestamp(items.first("TransactionDate")),
        phone=phone,
        phone_raw=phone_raw,
    )


def parse_b2c_result(body: object) -> B2CResult:
    """The B2C result posted to ResultURL: {"Result": {...}}."""
    envelope = _envelope(body)
    params = envelope.params
    amount_cents = _cents(params.first("TransactionAmount"), "TransactionAmount")
    receipt_number = _opt_id(params.first("TransactionReceipt"), "TransactionReceipt")
    if envelope.result_code == SUCCESS:
        receipt_number = receipt_number or envelope.transaction_id
        if receipt_number is None:
            raise MalformedCallback("successful B2C result without a receipt")
        if amount_cents is None or amount_cents <= 0:
            raise MalformedCallback("successful B2C result without a positive TransactionAmount")
    return B2CResult(
        result_type=envelope.result_type,
        result_code=envelope.result_code,
        result_desc=envelope.result_desc,
        originator_conversation_id=envelope.originator_conversation_id,
        conversation_id=envelope.conversation_id,
        transaction_id=envelope.transaction_id,
        amount_cents=amount_cents,
        receipt_number=receipt_number,
        receiver_public_name=_opt_text(
            params.first("ReceiverPartyPublicName"), "ReceiverPartyPublicName"
        ),
        completed_at=_timestamp(params.first("TransactionCompletedDateTime")),
        recipient_is_registered=_bool_flag(params.first("B2CRecipientIsRegisteredCustomer")),
        utility_account_available_cents=_cents(
            params.first("B2CUtilityAccountAvailableFunds"),
            "B2CUtilityAccountAvailableFunds",
            allow_negative=True,
        ),
        working_account_available_cents=_cents(
            params.first("B2CWorkingAccountAvailableFunds"),
            "B2CWorkingAccountAvailableFunds",
            allow_negative=True,
        ),
        charges_paid_account_available_cents=_cents(
            params.first("B2CChargesPaidAccountAvailableFunds"),
            "B2CChargesPaidAccountAvailableFunds",
            allow_negative=True,
        ),
        reference_items=tuple(
            (name, _loose_text(value)) for name, value in envelope.reference.pairs
        ),
    )


def _loose_text(value: object) -> str | None:
    """Reference items are informational: keep what reads as text, drop the rest."""
    try:
        return _opt_text(value, "ReferenceItem")
    except MalformedCallback:
        return None


def parse_queue_timeout(body: object) -> QueueTimeout:
    """A QueueTimeOutURL notification (B2C, balance, status, reversal). No authoritative sample
    exists, so only an id is required; the fields are read from "Result" or the top level."""
    root = _load(body)
    result = root.get("Result", root)
    if not isinstance(result, Mapping):
        raise MalformedCallback("Result is not an object")
    originator_conversation_id = _opt_id(
        result.get("OriginatorConversationID"), "OriginatorConversationID"
    )
    conversation_id = _opt_id(result.get("ConversationID"), "ConversationID")
    if originator_conversation_id is None and conversation_id is None:
        raise MalformedCallback("queue timeout without OriginatorConversationID or ConversationID")
    return QueueTimeout(
        originator_conversation_id=originator_conversation_id,
        conversation_id=conversation_id,
        result_code=_opt_id(result.get("ResultCode"), "ResultCode"),
        result_desc=_opt_text(result.get("ResultDesc"), "ResultDesc") or "",
    )


parse_b2c_timeout = parse_queue_timeout


def _c2b(body: object) -> C2BPayment:
    root = _load(body)
    amount_cents = _cents(root.get("TransAmount"), "TransAmount")
    if amount_cents is None or amount_cents <= 0:
        raise MalformedCallback("C2B notification without a positive TransAmount")
    msisdn, msisdn_raw, msisdn_kind = _phone(root.get("MSISDN"), "MSISDN")
    return C2BPayment(
        transaction_type=_opt_text(root.get("TransactionType"), "TransactionType"),
        trans_id=_id(root.get("TransID"), "TransID"),
        trans_time=_timestamp(root.get("TransTime")),
        amount_cents=amount_cents,
        business_short_code=_opt_text(root.get("BusinessShortCode"), "BusinessShortCode"),
        bill_ref_number=_scalar_text(root.get("BillRefNumber"), "BillRefNumber") or "",
        invoice_number=_opt_text(root.get("InvoiceNumber"), "InvoiceNumber"),
        org_account_balance_cents=_cents(
            root.get("OrgAccountBalance"), "OrgAccountBalance", allow_negative=True
        ),
        third_party_trans_id=_opt_text(root.get("ThirdPartyTransID"), "ThirdPartyTransID"),
        msisdn=msisdn,
        msisdn_raw=msisdn_raw,
        msisdn_kind=msisdn_kind,
        first_name=_opt_text(root.get("FirstName"), "FirstName"),
        middle_name=_opt_text(root.get("MiddleName"), "MiddleName"),
        last_name=_opt_text(root.get("LastName"), "LastName"),
    )


def parse_c2b_validation(body: object) -> C2BPayment:
    """A C2B validation request (only sent when Safaricom has enabled validation)."""
    return _c2b(body)


def parse_c2b_confirmation(body: object) -> C2BPayment:
    """A C2B confirmation: the money has moved; TransID is the idempotency key."""
    return _c2b(body)


@dataclass(frozen=True, slots=True)
class PulledRow:
    transaction_id: str
    completed_at: datetime
    amount_cents: int
    bill_reference: str
    msisdn: str | None  # 2547XXXXXXXX when listed plainly
    msisdn_raw: str


def parse_pulled_row(row: object) -> PulledRow:
    """One row of a Pull API answer: {"transactionId", "trxDate": "2020-08-05T10:13:00Z",
    "msisdn", "amount": "168.00", "billreference", ...}."""
    if not isinstance(row, dict):
        raise MalformedCallback("a pulled row is not an object")
    amount_cents = _cents(row.get("amount"), "amount")
    if amount_cents is None or amount_cents <= 0:
        raise MalformedCallback("amount: missing or not positive")
    completed_at = _iso_time(row.get("trxDate"))
    if completed_at is None:
        raise MalformedCallback("trxDate: missing or unreadable")
    msisdn, raw, _ = _phone(row.get("msisdn"), "msisdn")
    return PulledRow(
        transaction_id=_id(row.get("transactionId"), "transactionId"),
        completed_at=completed_at,
        amount_cents=amount_cents,
        bill_reference=_opt_text(row.get("billreference"), "billreference") or "",
        msisdn=msisdn,
        msisdn_raw=raw or "",
    )


def _iso_time(value: object) -> datetime | None:
    """ISO 8601; without an offset, Nairobi time (how M-PESA stamps everything else)."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=NAIROBI)


def parse_account_balances(text: str) -> tuple[AccountBalance, ...]:
    """ "Working Account|KES|700000.00|700000.00|0.00|0.00&Utility Account|KES|..." -> accounts.

    Balances may be negative ("Charges Paid Account|KES|-1540.00|...").
    """
    accounts: list[AccountBalance] = []
    for segment in text.split("&"):
        if not segment.strip():
            continue
        fields = [field.strip() for field in segment.split("|")]
        if len(fields) < 3 or not fields[0] or not fields[1]:
            raise MalformedCallback("an account balance is not name|currency|amount|...")
        amounts: list[int] = []
        for field in fields[2:]:
            cents = _cents(field, "AccountBalance", allow_negative=True)
            if cents is None:
                raise MalformedCallback("an account balance has an empty amount")
            amounts.append(cents)
        accounts.append(AccountBalance(fields[0], fields[1], tuple(amounts)))
    return tuple(accounts)


def _balances(value: object, field: str) -> tuple[AccountBalance, ...]:
    text = _opt_text(value, field)
    return () if text is None else parse_account_balances(text)


def parse_account_balance_result(body: object) -> AccountBalanceResult:
    envelope = _envelope(body)
    accounts = _balances(envelope.params.first("AccountBalance"), "AccountBalance")
    if envelope.result_code == SUCCESS and not accounts:
        raise MalformedCallback("successful account balance result without AccountBalance")
    return AccountBalanceResult(
        result_code=envelope.result_code,
        result_desc=envelope.result_desc,
        originator_conversation_id=envelope.originator_conversation_id,
        conversation_id=envelope.conversation_id,
        transaction_id=envelope.transaction_id,
        accounts=accounts,
        completed_at=_timestamp(envelope.params.first("BOCompletedTime")),
    )


def parse_transaction_status_result(body: object) -> TransactionStatusResult:
    envelope = _envelope(body)
    params = envelope.params
    return TransactionStatusResult(
        result_code=envelope.result_code,
        result_desc=envelope.result_desc,
        originator_conversation_id=envelope.originator_conversation_id,
        conversation_id=envelope.conversation_id,
        transaction_id=envelope.transaction_id,
        transaction_status=_opt_text(params.first("TransactionStatus"), "TransactionStatus"),
        receipt_number=_opt_id(params.first("ReceiptNo"), "ReceiptNo"),
        amount_cents=_cents(params.first("Amount"), "Amount"),
        original_originator_conversation_id=_opt_id(
            params.first("OriginatorConversationID"), "OriginatorConversationID"
        ),
        original_conversation_id=_opt_id(params.first("ConversationID"), "ConversationID"),
        debit_party_names=_names(params, "DebitPartyName"),
        credit_party_names=_names(params, "CreditPartyName"),
        reason_type=_opt_text(params.first("ReasonType"), "ReasonType"),
        initiated_at=_timestamp(params.first("InitiatedTime")),
        finalised_at=_timestamp(params.first("FinalisedTime")),
    )


def _names(params: _Params, key: str) -> tuple[str, ...]:
    return tuple(text for _name, text in params.texts(key) if text)


def parse_reversal_result(body: object) -> ReversalResult:
    envelope = _envelope(body)
    params = envelope.params
    return ReversalResult(
        result_code=envelope.result_code,
        result_desc=envelope.result_desc,
        originator_conversation_id=envelope.originator_conversation_id,
        conversation_id=envelope.conversation_id,
        transaction_id=envelope.transaction_id,
        original_transaction_id=_opt_id(
            params.first("OriginalTransactionID"), "OriginalTransactionID"
        ),
        amount_cents=_cents(params.first("Amount"), "Amount"),
        charge_cents=_cents(params.first("Charge"), "Charge"),
        completed_at=_timestamp(params.first("TransCompletedTime")),
        credit_party_public_name=_opt_text(
            params.first("CreditPartyPublicName"), "CreditPartyPublicName"
        ),
        debit_party_public_name=_opt_text(
            params.first("DebitPartyPublicName"), "DebitPartyPublicName"
        ),
        debit_account_balances=_balances(
            params.first("DebitAccountBalance"), "DebitAccountBalance"
        ),
    )
