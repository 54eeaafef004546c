"""`MpesaGateway` over Deni's Daraja client: the use cases' port, in Daraja's terms.

It does two translations and nothing else: Daraja's typed errors become one `GatewayError` whose
`outcome` says whether the request may have been acted on, and callback bodies become the
service layer's events (cents, Deni's names). No retries here: the worker owns those.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

import structlog

from deni.adapters.daraja import errors as e
from deni.adapters.daraja.callbacks import (
    MalformedCallback,
    parse_account_balance_result,
    parse_b2c_result,
    parse_c2b_confirmation,
    parse_c2b_validation,
    parse_pulled_row,
    parse_queue_timeout,
    parse_reversal_result,
    parse_stk_callback,
    parse_transaction_status_result,
)
from deni.adapters.daraja.client import DarajaClient
from deni.adapters.daraja.money import AmountError
from deni.services.mpesa.ports import (
    B2CResultEvent,
    BalanceResultEvent,
    C2BEvent,
    CallbackEvent,
    CallbackKind,
    ConversationAck,
    GatewayError,
    GatewayOutcome,
    MalformedCallbackError,
    OtherResultEvent,
    PulledPayment,
    PullPage,
    QueueTimeoutEvent,
    ReversalResultEvent,
    StatusResultEvent,
    StkAck,
    StkQueryAnswer,
    StkResultEvent,
)

log = structlog.get_logger(__name__)

DESCRIPTION_CHARS_MAX = 13
REFERENCE_CHARS_MAX = 12

# Errors after which the request certainly did not move money and cannot, if sent again as is.
_REFUSED: tuple[type[e.DarajaError], ...] = (
    e.BadRequest,
    e.NotAccepted,
    e.MerchantRejected,
    e.ApiProductNotEnabled,
    e.OAuthFailed,
    e.UrlsAlreadyRegistered,
)
_BUSY: tuple[type[e.DarajaError], ...] = (
    e.RateLimited,
    e.SubscriberBusy,
    e.TransactionInProgress,
)


def classify(error: e.DarajaError) -> GatewayOutcome:
    """What a Daraja error means for money: the one place this is decided."""
    if isinstance(error, e.DuplicateOriginatorConversationId):
        return GatewayOutcome.UNKNOWN  # Daraja has a request with this id: ask about it
    if isinstance(error, e.DarajaUnavailable):
        return GatewayOutcome.UNKNOWN if error.maybe_sent else GatewayOutcome.NOT_SENT
    if isinstance(error, e.InvalidAccessToken):
        return GatewayOutcome.NOT_SENT  # refused at the gateway, before any processing
    if isinstance(error, _BUSY):
        return GatewayOutcome.BUSY
    if isinstance(error, _REFUSED):
        return GatewayOutcome.REFUSED
    return GatewayOutcome.UNKNOWN if error.outcome_unknown else GatewayOutcome.REFUSED


T = TypeVar("T")


def _translated(call: Callable[[], T]) -> T:
    try:
        return call()
    except e.DarajaError as error:
        raise GatewayError(
            f"{type(error).__name__}: {error}", outcome=classify(error), code=error.error_code or ""
        ) from error
    except (AmountError, ValueError) as error:
        # Deni built a request Daraja would refuse (an amount out of bounds): never sent.
        raise GatewayError(str(error), outcome=GatewayOutcome.REFUSED, code="invalid") from error


class DarajaGateway:
    def __init__(self, client: DarajaClient) -> None:
        self._client = client

    def close(self) -> None:
        self._client.close()

    def stk_push(
        self, *, phone: str, amount_cents: int, account_reference: str, description: str
    ) -> StkAck:
        answer = _translated(
            lambda: self._client.stk_push(
                phone=phone,
                amount_cents=amount_cents,
                account_reference=account_reference[:REFERENCE_CHARS_MAX],
                description=description[:DESCRIPTION_CHARS_MAX],
            )
        )
        return StkAck(answer.checkout_request_id, answer.merchant_request_id)

    def stk_query(self, *, checkout_request_id: str) -> StkQueryAnswer:
        answer = _translated(
            lambda: self._client.stk_query(checkout_request_id=checkout_request_id)
        )
        return StkQueryAnswer(answer.result_code.strip(), answer.result_desc)

    def b2c_payment(
        self, *, phone: str, amount_cents: int, originator_conversation_id: str, remarks: str
    ) -> ConversationAck:
        answer = _translated(
            lambda: self._client.b2c_payment(
                phone=phone,
                amount_cents=amount_cents,
                originator_conversation_id=originator_conversation_id,
                remarks=remarks,
            )
        )
        return ConversationAck(answer.originator_conversation_id, answer.conversation_id)

    def transaction_status(
        self, *, originator_conversation_id: str | None = None, transaction_id: str | None = None
    ) -> ConversationAck:
        # A receipt Deni asks about is a payment into its paybill: the paybill asks.
        paybill = self._client.config.paybill if transaction_id is not None else None
        answer = _translated(
            lambda: self._client.transaction_status(
                originator_conversation_id=originator_conversation_id,
                transaction_id=transaction_id,
                shortcode=paybill,
            )
        )
        return ConversationAck(answer.originator_conversation_id, answer.conversation_id)

    def account_balance(self) -> ConversationAck:
        answer = _translated(lambda: self._client.account_balance())
        return ConversationAck(answer.originator_conversation_id, answer.conversation_id)

    def reversal(
        self,
        *,
        original_receipt: str,
        amount_cents: int,
        originator_conversation_id: str,
        remarks: str,
    ) -> ConversationAck:
        answer = _translated(
            lambda: self._client.reversal(
                transaction_id=original_receipt,
                amount_cents=amount_cents,
                remarks=remarks,
                originator_conversation_id=originator_conversation_id,
            )
        )
        return ConversationAck(answer.originator_conversation_id, answer.conversation_id)

    def register_c2b_urls(self) -> None:
        _translated(lambda: self._client.register_c2b_urls())

    def register_pull(self) -> None:
        number = self._client.config.pull_nominated_number
        if number is None:
            log.info("daraja.pull_not_configured")
            return
        _translated(lambda: self._client.register_pull(nominated_number=number))

    def pull_payments(self, *, start: datetime, end: datetime, offset: int) -> PullPage:
        answer = _translated(
            lambda: self._client.pull_transactions(start=start, end=end, offset=offset)
        )
        rows = answer.rows
        payments: list[PulledPayment] = []
        for row in rows:
            try:
                pulled = parse_pulled_row(row)
            except MalformedCallback as error:
                # Counted in `rows` all the same, so the next page starts after it.
                log.warning("daraja.pulled_row_unreadable", reason=error.reason)
                continue
            payments.append(
                PulledPayment(
                    trans_id=pulled.transaction_id,
                    paid_at=pulled.completed_at,
                    amount_cents=pulled.amount_cents,
                    account_reference=pulled.bill_reference,
                    phone=pulled.msisdn,
                    phone_raw=pulled.msisdn_raw,
                )
            )
        return PullPage(tuple(payments), rows=len(rows))

    def parse_callback(self, kind: str, body: bytes) -> CallbackEvent:
        try:
            return _parse(CallbackKind(kind), body)
        except MalformedCallback as error:
            raise MalformedCallbackError(error.reason) from error
        except ValueError as error:  # an unknown kind
            raise MalformedCallbackError(f"unknown callback kind {kind[:40]!r}") from error


def _parse(kind: CallbackKind, body: bytes) -> CallbackEvent:
    if kind is CallbackKind.STK:
        stk = parse_stk_callback(body)
        return StkResultEvent(
            stk.checkout_request_id,
            stk.result_code,
            stk.result_desc,
            stk.amount_cents,
            stk.receipt_number,
            stk.phone,
        )
    if kind is CallbackKind.B2C_RESULT:
        b2c = parse_b2c_result(body)
        return B2CResultEvent(
            b2c.originator_conversation_id,
            b2c.conversation_id,
            b2c.result_code,
            b2c.result_desc,
            b2c.amount_cents,
            b2c.receipt_number,
        )
    if kind in (CallbackKind.C2B_CONFIRMATION, CallbackKind.C2B_VALIDATION):
        parse = parse_c2b_confirmation if kind is CallbackKind.C2B_CONFIRMATION else None
        c2b = (parse or parse_c2b_validation)(body)
        return C2BEvent(
            c2b.trans_id, c2b.amount_cents, c2b.bill_ref_number, c2b.msisdn, c2b.msisdn_raw or ""
        )
    if kind is CallbackKind.STATUS_RESULT:
        status = parse_transaction_status_result(body)
        return StatusResultEvent(
            status.conversation_id,
            status.result_code,
            status.result_desc,
            status.transaction_status,
            status.receipt_number,
            status.amount_cents,
            status.original_originator_conversation_id,
            debit_parties=status.debit_party_names,
            credit_parties=status.credit_party_names,
        )
    if kind is CallbackKind.BALANCE_RESULT:
        balance = parse_account_balance_result(body)
        available = {
            a.name.lower(): a.amounts_cents[0] for a in balance.accounts if a.amounts_cents
        }
        return BalanceResultEvent(
            balance.conversation_id,
            balance.result_code,
            balance.result_desc,
            available.get("working account"),
            available.get("utility account"),
            balance.completed_at,
        )
    if kind is CallbackKind.REVERSAL_RESULT:
        reversal = parse_reversal_result(body)
        return ReversalResultEvent(
            reversal.originator_conversation_id,
            reversal.conversation_id,
            reversal.result_code,
            reversal.result_desc,
            reversal.transaction_id if reversal.succeeded else None,
            reversal.amount_cents,
            reversal.original_transaction_id,
        )
    timeout = parse_queue_timeout(body)
    if kind in (CallbackKind.B2C_TIMEOUT, CallbackKind.REVERSAL_TIMEOUT):
        return QueueTimeoutEvent(
            timeout.originator_conversation_id, timeout.conversation_id, timeout.result_desc
        )
    return OtherResultEvent(
        timeout.conversation_id, timeout.result_code or "timeout", timeout.result_desc
    )
