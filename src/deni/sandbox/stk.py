"""M-PESA Express (STK push) and its query."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from deni.sandbox import codes, payloads, validation
from deni.sandbox.codes import Outcome
from deni.sandbox.core import Call, Sandbox
from deni.sandbox.faults import Action, DeliveryPolicy, Fault
from deni.sandbox.security import stk_password
from deni.sandbox.state import Kind, StkAttempt, Transaction
from deni.sandbox.validation import DarajaError, invalid

TRANSACTION_TYPES = frozenset({"CustomerPayBillOnline", "CustomerBuyGoodsOnline"})
AMOUNT_CENTS_MAX = 250_000_00
_ACCOUNT_REFERENCE_CHARS_MAX = 12
_TRANSACTION_DESC_CHARS_MAX = 13


@dataclass(frozen=True)
class StkPush:
    transaction_type: str
    amount_cents: int
    party_a: str
    party_b: str
    phone: str
    callback_url: str
    account_reference: str


def check_password(sandbox: Sandbox, body: dict[str, Any]) -> None:
    """Password = base64(BusinessShortCode + Passkey + Timestamp); anything else is refused."""
    code = validation.shortcode(body, "BusinessShortCode")
    password = validation.text(body, "Password", chars_max=500)
    stamp = validation.timestamp(body)
    if code != sandbox.config.stk_shortcode:
        raise DarajaError(500, "500.001.1001", "Merchant does not exist")
    expected = stk_password(code, sandbox.config.stk_passkey, stamp)
    if not hmac.compare_digest(password.encode(), expected.encode()):
        raise DarajaError(500, "500.001.1001", "[MerchantValidate] - Wrong credentials")


def parse_push(sandbox: Sandbox, body: dict[str, Any]) -> StkPush:
    check_password(sandbox, body)
    push = StkPush(
        transaction_type=validation.one_of(body, "TransactionType", TRANSACTION_TYPES),
        amount_cents=validation.amount_cents(body),
        party_a=validation.msisdn(body, "PartyA"),
        party_b=validation.shortcode(body, "PartyB"),
        phone=validation.msisdn(body, "PhoneNumber"),
        callback_url=validation.url(
            body, "CallBackURL", reject_blocked_words=sandbox.config.reject_blocked_url_words
        ),
        account_reference=validation.text(
            body, "AccountReference", chars_max=_ACCOUNT_REFERENCE_CHARS_MAX
        ),
    )
    validation.text(body, "TransactionDesc", chars_max=_TRANSACTION_DESC_CHARS_MAX, required=False)
    return push


async def push(sandbox: Sandbox, body: dict[str, Any], call: Call) -> dict[str, Any]:
    request = parse_push(sandbox, body)
    faults = call.begin("stk", request.phone)
    attempt = StkAttempt(
        merchant_request_id=sandbox.mint.request_id(),
        checkout_request_id=sandbox.mint.checkout_request_id(sandbox.now(), request.phone),
        phone=request.phone,
        amount_cents=request.amount_cents,
        account_reference=request.account_reference,
    )

    async def settle_later() -> None:
        settle(sandbox, request, attempt, faults.outcome, faults.delivery)

    sandbox.schedule(settle_later)
    sandbox.world.stk_attempts[attempt.checkout_request_id] = attempt
    return payloads.stk_accepted(attempt)


def settle(
    sandbox: Sandbox,
    request: StkPush,
    attempt: StkAttempt,
    fault: Fault | None,
    policy: DeliveryPolicy,
) -> None:
    """The customer answered the prompt (or did not): move the money, then call back."""
    code, outcome = _decide(sandbox, request, fault)
    transaction = None
    if code == 0 and not sandbox.world.pay_organisation(request.phone, request.amount_cents):
        code = 1
    if code == 0:
        transaction = _record(sandbox, request, attempt)
    attempt.result_code = code
    attempt.result_desc = codes.stk_desc(code)
    if outcome is Outcome.RESULT:
        body = payloads.stk_callback(attempt, transaction)
        sandbox.dispatcher.send("stk", request.callback_url, body, policy)


def _decide(
    sandbox: Sandbox, request: StkPush, fault: Fault | None
) -> tuple[codes.ResultCode, Outcome]:
    """Queued fault first, then the test number, then M-PESA's own rules."""
    if fault is not None and fault.action is Action.RESULT_CODE:
        return codes.normalise_code(fault.result_code), Outcome.RESULT
    if fault is not None and fault.action is Action.TIMEOUT:
        return 0, Outcome.TIMEOUT_SILENT
    magic = codes.magic_for(request.phone)
    if magic.outcome is not Outcome.RESULT:
        return 0, Outcome.TIMEOUT_SILENT
    if magic.stk_code is not None:
        return magic.stk_code, Outcome.RESULT
    if request.amount_cents > AMOUNT_CENTS_MAX:
        return 3, Outcome.RESULT
    wrong_product = request.transaction_type != "CustomerPayBillOnline"
    if wrong_product or request.party_b != sandbox.config.stk_shortcode:
        return 2028, Outcome.RESULT
    return 0, Outcome.RESULT


def _record(sandbox: Sandbox, request: StkPush, attempt: StkAttempt) -> Transaction:
    now = sandbox.now()
    receipt = sandbox.mint.receipt(now)
    attempt.receipt = receipt
    transaction = Transaction(
        transaction_id=receipt,
        kind=Kind.STK,
        amount_cents=request.amount_cents,
        phone=request.phone,
        debit_party=sandbox.world.customer(request.phone).public_name,
        credit_party=sandbox.world.organisation.public_name,
        initiated_at=now,
        completed_at=now,
        conversation_id=sandbox.mint.conversation_id(now),
        originator_conversation_id=attempt.checkout_request_id,
        reference=request.account_reference,
    )
    sandbox.world.record(transaction)
    return transaction


async def query(sandbox: Sandbox, body: dict[str, Any], call: Call) -> dict[str, Any]:
    check_password(sandbox, body)
    checkout_id = validation.text(body, "CheckoutRequestID", chars_max=100)
    attempt = sandbox.world.stk_attempts.get(checkout_id)
    if attempt is None:
        raise invalid("CheckoutRequestID")
    call.begin("stk_query", attempt.phone)
    if attempt.result_code is None:
        raise DarajaError(500, "500.001.1001", "The transaction is being processed")
    return payloads.stk_query_answer(attempt)
