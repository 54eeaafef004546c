"""B2C payment requests: the organisation's Utility Account pays a customer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deni.sandbox import codes, formats, payloads, validation
from deni.sandbox.codes import Outcome, ResultCode
from deni.sandbox.core import Call, Sandbox
from deni.sandbox.faults import Action, DeliveryPolicy, Fault
from deni.sandbox.state import Kind, Transaction
from deni.sandbox.validation import DarajaError, invalid

COMMAND_IDS = frozenset({"BusinessPayment", "SalaryPayment", "PromotionPayment"})
AMOUNT_CENTS_MIN = 10_00
AMOUNT_CENTS_MAX = 250_000_00
_ORIGINATOR_ID_CHARS_MAX = 100


@dataclass(frozen=True)
class B2cPayment:
    originator_id: str
    conversation_id: str
    initiator: str
    security_credential: str
    amount_cents: int
    phone: str
    result_url: str
    queue_timeout_url: str


def parse(sandbox: Sandbox, body: dict[str, Any], *, version: int) -> B2cPayment:
    blocked = sandbox.config.reject_blocked_url_words
    originator_id = validation.text(
        body, "OriginatorConversationID", chars_max=_ORIGINATOR_ID_CHARS_MAX, required=version >= 3
    )
    payment = B2cPayment(
        originator_id=originator_id or sandbox.mint.request_id(),
        conversation_id=sandbox.mint.conversation_id(sandbox.now()),
        initiator=validation.text(body, "InitiatorName"),
        security_credential=validation.text(body, "SecurityCredential", chars_max=2_000),
        amount_cents=_checked_command_then_amount(body),
        phone=validation.msisdn(body, "PartyB"),
        result_url=validation.url(body, "ResultURL", reject_blocked_words=blocked),
        queue_timeout_url=validation.url(body, "QueueTimeOutURL", reject_blocked_words=blocked),
    )
    if validation.shortcode(body, "PartyA") != sandbox.config.shortcode:
        raise invalid("PartyA")
    validation.text(body, "Remarks", chars_min=2, chars_max=100)
    for spelling in ("Occassion", "Occasion"):  # Safaricom's spelling and the usual one
        validation.text(body, spelling, chars_max=100, required=False, chars_min=0)
    return payment


def _checked_command_then_amount(body: dict[str, Any]) -> int:
    validation.one_of(body, "CommandID", COMMAND_IDS)
    return validation.amount_cents(body)


async def payment_request(
    sandbox: Sandbox, body: dict[str, Any], call: Call, *, version: int
) -> dict[str, Any]:
    payment = parse(sandbox, body, version=version)
    if payment.originator_id in sandbox.world.b2c_originator_ids:
        raise DarajaError(500, "500.002.1001", "Duplicate OriginatorConversationID.")
    faults = call.begin("b2c", payment.phone)

    async def settle_later() -> None:
        settle(sandbox, payment, faults.outcome, faults.delivery)

    sandbox.schedule(settle_later)
    sandbox.world.b2c_originator_ids.add(payment.originator_id)
    return payloads.async_accepted(payment.originator_id, payment.conversation_id)


def settle(
    sandbox: Sandbox, payment: B2cPayment, fault: Fault | None, policy: DeliveryPolicy
) -> None:
    code, outcome = _decide(sandbox, payment, fault)
    transaction = None
    if code == 0:
        code = sandbox.world.pay_customer_from_utility(payment.phone, payment.amount_cents)
    if code == 0:
        transaction = _record(sandbox, payment)
    if outcome is Outcome.TIMEOUT_SILENT:
        return
    if outcome is Outcome.TIMEOUT_QUEUE:
        sandbox.dispatcher.send(
            "b2c_queue_timeout", payment.queue_timeout_url, _queue_timeout(sandbox, payment), policy
        )
        return
    sandbox.dispatcher.send(
        "b2c_result", payment.result_url, _result(sandbox, payment, code, transaction), policy
    )


def _decide(
    sandbox: Sandbox, payment: B2cPayment, fault: Fault | None
) -> tuple[ResultCode, Outcome]:
    """Queued fault first, then the initiator check, the test number, and M-PESA's rules."""
    if fault is not None and fault.action is Action.RESULT_CODE:
        return codes.normalise_code(fault.result_code), Outcome.RESULT
    if fault is not None and fault.action is Action.TIMEOUT:
        timeout = Outcome.TIMEOUT_QUEUE if fault.queue_timeout else Outcome.TIMEOUT_SILENT
        return 0, timeout
    if not sandbox.initiator_ok(payment.initiator, payment.security_credential):
        return codes.INITIATOR_INVALID[0], Outcome.RESULT
    magic = codes.magic_for(payment.phone)
    if magic.outcome is not Outcome.RESULT:
        return 0, magic.outcome
    if magic.b2c_code is not None:
        return magic.b2c_code, Outcome.RESULT
    if not sandbox.world.customer(payment.phone).registered:
        return 2040, Outcome.RESULT
    if payment.amount_cents < AMOUNT_CENTS_MIN:
        return 2, Outcome.RESULT
    if payment.amount_cents > AMOUNT_CENTS_MAX:
        return 3, Outcome.RESULT
    return 0, Outcome.RESULT


def _record(sandbox: Sandbox, payment: B2cPayment) -> Transaction:
    now = sandbox.now()
    transaction = Transaction(
        transaction_id=sandbox.mint.receipt(now),
        kind=Kind.B2C,
        amount_cents=payment.amount_cents,
        phone=payment.phone,
        debit_party=sandbox.world.organisation.public_name,
        credit_party=sandbox.world.customer(payment.phone).public_name,
        initiated_at=now,
        completed_at=now,
        conversation_id=payment.conversation_id,
        originator_conversation_id=payment.originator_id,
    )
    sandbox.world.record(transaction)
    return transaction


def _result(
    sandbox: Sandbox, payment: B2cPayment, code: ResultCode, transaction: Transaction | None
) -> dict[str, Any]:
    parameters = None
    if transaction is not None:
        payee = sandbox.world.customer(payment.phone)
        parameters = payloads.b2c_parameters(transaction, payee, sandbox.world.organisation)
    transaction_id = (
        transaction.transaction_id
        if transaction
        else formats.placeholder_transaction_id(sandbox.now())
    )
    return payloads.result(
        code=code,
        desc=codes.b2c_desc(code),
        originator_id=payment.originator_id,
        conversation_id=payment.conversation_id,
        transaction_id=transaction_id,
        parameters=parameters,
    )


def _queue_timeout(sandbox: Sandbox, payment: B2cPayment) -> dict[str, Any]:
    """No authoritative sample exists; integrators read these fields from it."""
    code, desc = codes.QUEUE_TIMEOUT
    return payloads.result(
        code=code,
        desc=desc,
        originator_id=payment.originator_id,
        conversation_id=payment.conversation_id,
        transaction_id=formats.placeholder_transaction_id(sandbox.now()),
    )
