"""Account Balance, Transaction Status and Reversal: initiator APIs answering on ResultURL."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deni.sandbox import codes, formats, payloads, validation
from deni.sandbox.core import Call, Sandbox
from deni.sandbox.faults import Action, Fault
from deni.sandbox.state import Kind, Transaction
from deni.sandbox.validation import invalid

REVERSIBLE = (Kind.STK, Kind.C2B)


@dataclass(frozen=True)
class InitiatorRequest:
    """The fields every initiator API shares."""

    originator_id: str
    conversation_id: str
    initiator: str
    security_credential: str
    result_url: str
    timeout_url: str


def _parse_common(
    sandbox: Sandbox, body: dict[str, Any], command_keys: tuple[str, ...], command: str
) -> InitiatorRequest:
    blocked = sandbox.config.reject_blocked_url_words
    key = next((k for k in command_keys if k in body), command_keys[0])
    if validation.text(body, key) != command:
        raise invalid("CommandID")
    request = InitiatorRequest(
        originator_id=validation.text(body, "OriginatorConversationID", required=False)
        or sandbox.mint.request_id(),
        conversation_id=sandbox.mint.conversation_id(sandbox.now()),
        initiator=validation.text(body, "Initiator"),
        security_credential=validation.text(body, "SecurityCredential", chars_max=2_000),
        result_url=validation.url(body, "ResultURL", reject_blocked_words=blocked),
        timeout_url=validation.url(body, "QueueTimeOutURL", reject_blocked_words=blocked),
    )
    validation.text(body, "Remarks", chars_max=100)
    return request


def _own_party(sandbox: Sandbox, body: dict[str, Any], field: str) -> None:
    """Only your own shortcode can be asked about."""
    if validation.shortcode(body, field) != sandbox.config.shortcode:
        raise invalid(field)


def _failure(
    sandbox: Sandbox, request: InitiatorRequest, code: codes.ResultCode, desc: str
) -> dict[str, Any]:
    return payloads.result(
        code=code,
        desc=desc,
        originator_id=request.originator_id,
        conversation_id=request.conversation_id,
        transaction_id=formats.placeholder_transaction_id(sandbox.now()),
    )


def _forced_failure(
    sandbox: Sandbox, kind: str, request: InitiatorRequest, fault: Fault | None
) -> dict[str, Any] | None:
    """A queued result code, or a bad initiator: the result callback reports it."""
    if fault is not None and fault.action is Action.RESULT_CODE:
        code = codes.normalise_code(fault.result_code)
        desc = codes.reversal_desc(code) if kind == "reversal" else codes.b2c_desc(code)
        return _failure(sandbox, request, code, desc)
    if not sandbox.initiator_ok(request.initiator, request.security_credential):
        return _failure(sandbox, request, *codes.INITIATOR_INVALID)
    return None


def _accept(
    sandbox: Sandbox,
    call: Call,
    kind: str,
    request: InitiatorRequest,
    answer: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """Take faults, schedule the answer, acknowledge. `answer()` builds the Result body."""
    faults = call.begin(kind)

    async def answer_later() -> None:
        outcome = faults.outcome
        if outcome is not None and outcome.action is Action.TIMEOUT:
            # M-PESA did the work (a reversal moves the money) but no result comes; with
            # queue_timeout, QueueTimeOutURL hears that the request timed out.
            answer()
            if outcome.queue_timeout:
                sandbox.dispatcher.send(
                    f"{kind}_queue_timeout",
                    request.timeout_url,
                    _failure(sandbox, request, *codes.QUEUE_TIMEOUT),
                    faults.delivery,
                )
            return
        body = _forced_failure(sandbox, kind, request, outcome) or answer()
        sandbox.dispatcher.send(f"{kind}_result", request.result_url, body, faults.delivery)

    sandbox.schedule(answer_later)
    return payloads.async_accepted(request.originator_id, request.conversation_id)


# Account Balance ---------------------------------------------------------------------------


async def account_balance(sandbox: Sandbox, body: dict[str, Any], call: Call) -> dict[str, Any]:
    request = _parse_common(sandbox, body, ("CommandID",), "AccountBalance")
    _own_party(sandbox, body, "PartyA")
    if validation.text(body, "IdentifierType") != "4":
        raise invalid("IdentifierType")

    def answer() -> dict[str, Any]:
        now = sandbox.now()
        return payloads.result(
            code=0,
            desc="The service request is processed successfully",
            originator_id=request.originator_id,
            conversation_id=request.conversation_id,
            transaction_id=formats.placeholder_transaction_id(now),
            parameters=[
                {
                    "Key": "AccountBalance",
                    "Value": payloads.account_balance_string(sandbox.world.organisation),
                },
                {"Key": "BOCompletedTime", "Value": formats.compact_time(now)},
            ],
            string_types=True,  # Safaricom's balance sample sends "0", not 0
        )

    return _accept(sandbox, call, "balance", request, answer)


# Transaction Status ------------------------------------------------------------------------


async def transaction_status(sandbox: Sandbox, body: dict[str, Any], call: Call) -> dict[str, Any]:
    # Safaricom's own sample spells "Command ID" and "Transaction ID" with spaces; take both.
    request = _parse_common(sandbox, body, ("CommandID", "Command ID"), "TransactionStatusQuery")
    _own_party(sandbox, body, "PartyA")
    transaction_id = _first_text(body, ("TransactionID", "Transaction ID"))
    original_id = _first_text(body, ("OriginalConversationID", "OriginatorConversationID"))
    if not transaction_id and not original_id:
        raise invalid("TransactionID")
    occasion = validation.text(body, "Occasion", required=False, chars_min=0)

    def answer() -> dict[str, Any]:
        reference = {"Key": "Occasion", "Value": occasion} if occasion else {"Key": "Occasion"}
        found = sandbox.world.find(transaction_id, original_id)
        if found is None:
            code, desc = codes.STATUS_NOT_FOUND
            return _failure(sandbox, request, code, desc)
        return payloads.result(
            code=0,
            desc=codes.SUCCESS_DESC,
            originator_id=request.originator_id,
            conversation_id=request.conversation_id,
            transaction_id=found.transaction_id,
            parameters=payloads.status_parameters(found),
            reference_item=reference,
        )

    return _accept(sandbox, call, "status", request, answer)


def _first_text(body: dict[str, Any], keys: tuple[str, ...]) -> str:
    for key in keys:
        if body.get(key):
            return validation.text(body, key, chars_max=100)
    return ""


# Reversal ----------------------------------------------------------------------------------


async def reversal(sandbox: Sandbox, body: dict[str, Any], call: Call) -> dict[str, Any]:
    request = _parse_common(sandbox, body, ("CommandID",), "TransactionReversal")
    transaction_id = validation.text(body, "TransactionID", chars_max=100)
    amount_cents = validation.amount_cents(body)
    _own_party(sandbox, body, "ReceiverParty")
    # Safaricom's misspelling is the field's real name.
    if validation.text(body, "RecieverIdentifierType") != "11":
        raise invalid("RecieverIdentifierType")

    def answer() -> dict[str, Any]:
        return _reverse(sandbox, request, transaction_id, amount_cents)

    return _accept(sandbox, call, "reversal", request, answer)


def _reverse(
    sandbox: Sandbox, request: InitiatorRequest, transaction_id: str, amount_cents: int
) -> dict[str, Any]:
    """Only a whole STK or C2B payment can go back; B2C reversals happen by hand at Safaricom."""
    original = sandbox.world.transactions.get(transaction_id)
    if original is None or original.kind not in REVERSIBLE:
        return _failure(sandbox, request, *codes.REVERSAL_INVALID_ID)
    if original.reversed_by is not None:
        return _failure(sandbox, request, *codes.REVERSAL_ALREADY_REVERSED)
    if amount_cents != original.amount_cents:
        return _failure(sandbox, request, *codes.REVERSAL_INVALID_ID)
    if not sandbox.world.refund_customer_from_working(original.phone, amount_cents):
        return _failure(sandbox, request, 1, codes.B2C_RESULTS[1])
    reversal_tx = _record_reversal(sandbox, request, original)
    return payloads.result(
        code=0,
        desc=codes.SUCCESS_DESC,
        originator_id=request.originator_id,
        conversation_id=request.conversation_id,
        transaction_id=reversal_tx.transaction_id,
        parameters=payloads.reversal_parameters(reversal_tx, original, sandbox.world.organisation),
    )


def _record_reversal(
    sandbox: Sandbox, request: InitiatorRequest, original: Transaction
) -> Transaction:
    now = sandbox.now()
    reversal_tx = Transaction(
        transaction_id=sandbox.mint.receipt(now),
        kind=Kind.REVERSAL,
        amount_cents=original.amount_cents,
        phone=original.phone,
        debit_party=sandbox.world.organisation.public_name,
        credit_party=sandbox.world.customer(original.phone).public_name,
        initiated_at=now,
        completed_at=now,
        conversation_id=request.conversation_id,
        originator_conversation_id=request.originator_id,
        original_transaction_id=original.transaction_id,
    )
    sandbox.world.record(reversal_tx)
    original.reversed_by = reversal_tx.transaction_id
    return reversal_tx
