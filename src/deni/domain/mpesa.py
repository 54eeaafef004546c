"""M-PESA's rules as pure values: what a request is, the states it passes through, and the
amounts one M-PESA transaction may carry.

Money rule of this whole area: a request row is the truth. Daraja's synchronous "accepted"
means nothing yet; only a callback or a query answer settles a request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from deni.domain.errors import (
    InvalidAmount,
)
from deni.domain.money import CENTS_PER_SHILLING

# --- Requests (one row per STK push or B2C payout) ---------------------------------------------


class RequestKind(StrEnum):
    STK = "stk"
    B2C = "b2c"
    REVERSAL = "reversal"  # a payment received, sent back to its payer (Daraja's Reversal)


class Purpose(StrEnum):
    TOP_UP = "top_up"  # STK: money into the wallet
    REPAYMENT = "repayment"  # STK: into the wallet, then to the loan
    AUTO_REPAY = "auto_repay"  # STK on the due date for what the wallet could not cover
    WITHDRAWAL = "withdrawal"  # B2C: wallet out to M-PESA
    DISBURSEMENT = "disbursement"  # B2C: a new loan's principal out to the borrower's M-PESA
    AUTO_PAYOUT = "auto_payout"  # B2C: a lender's repayment straight out to M-PESA
    REVERSAL = "reversal"  # Reversal: a paybill or STK payment back to whoever paid it


STK_PURPOSES = frozenset({Purpose.TOP_UP, Purpose.REPAYMENT, Purpose.AUTO_REPAY})


class RequestState(StrEnum):
    QUEUED = "queued"  # an outbox row will send it
    SENDING = "sending"  # written just before the call: a crash here leaves "maybe sent"
    SENT = "sent"  # Daraja acknowledged; waiting for the callback
    UNKNOWN = "unknown"  # sent or maybe sent, outcome unknown: ask Daraja before anything else
    SUCCEEDED = "succeeded"
    FAILED = "failed"


OPEN_STATES = frozenset(
    {RequestState.QUEUED, RequestState.SENDING, RequestState.SENT, RequestState.UNKNOWN}
)
FINAL_STATES = frozenset({RequestState.SUCCEEDED, RequestState.FAILED})
# The result code of a push that Daraja never answered (no CheckoutRequestID): it may still
# have reached the phone, and its callback then names an id Deni never learnt.
UNANSWERED_PUSH_CODE = "unknown"


@dataclass(slots=True)
class MpesaRequest:
    id: str
    kind: RequestKind
    purpose: Purpose
    user_id: str | None  # None only for a reversal of money sitting in suspense
    loan_id: str | None
    phone: str  # 2547XXXXXXXX
    amount_cents: int
    idempotency_key: str
    state: RequestState
    created_at: datetime
    updated_at: datetime
    hold_id: str | None = None
    attempt: int = 0  # sends so far; the current attempt's OriginatorConversationID ends in it
    checkout_request_id: str | None = None
    originator_conversation_id: str | None = None
    conversation_id: str | None = None
    status_conversation_id: str | None = None  # the last Transaction Status query's ack
    acknowledged: bool = False  # Daraja answered "accepted" for the current attempt
    receipt: str | None = None
    result_code: str = ""
    result_desc: str = ""
    status_checks: int = 0
    next_check_at: datetime | None = None
    # "Not found" answers from Transaction Status about the current attempt. Never proof that
    # a payout did not happen: enough of them confirm a failure result, or hand the payout to
    # an operator, never a re-send.
    not_found_answers: int = 0
    # A payout whose outcome nobody can tell any more: an operator decides (`deni payments
    # decide`); no machine sends it again or gives the money back.
    awaiting_decision: bool = False
    # A failure result for the current attempt that Transaction Status has not confirmed yet:
    # the hold stays until it does (callbacks are not signed, and a forged one costs money).
    claimed_failure_code: str | None = None
    claimed_failure_desc: str = ""
    # STK Query, Deni's own question by the CheckoutRequestID, answered that this push was
    # paid: a success callback may credit it (the callback alone could be forged).
    paid_confirmed: bool = False
    # A reversal's original payment: the M-PESA receipt it sends back (`receipt` is then the
    # reversal's own receipt, once M-PESA made it).
    original_receipt: str | None = None

    def __post_init__(self) -> None:
        assert self.amount_cents > 0
        assert (self.kind is RequestKind.STK) == (self.purpose in STK_PURPOSES)
        assert (self.kind is RequestKind.REVERSAL) == (self.purpose is Purpose.REVERSAL)
        assert (self.kind is RequestKind.REVERSAL) == (self.original_receipt is not None)
        assert self.user_id is not None or self.kind is RequestKind.REVERSAL
        assert self.not_found_answers >= 0


class EventKind(StrEnum):
    """What happened to a request, in the order it happened: the evidence an operator reads."""

    QUEUED = "queued"
    SEND = "send"  # about to call Daraja with this attempt's OriginatorConversationID
    ACCEPTED = "accepted"  # Daraja's synchronous "accepted"
    SEND_ERROR = "send_error"  # Daraja's answer or the transport failure, with its outcome
    RESULT = "result"  # a result callback (success, failure or queue timeout)
    STATUS_ASKED = "status_asked"
    STATUS_ANSWER = "status_answer"
    WAITING = "waiting"  # handed to an operator, with the reason
    DECISION = "decision"  # an operator's decision, with who and why
    SETTLED = "settled"


@dataclass(frozen=True, slots=True)
class RequestEvent:
    request_id: str
    attempt: int
    kind: EventKind
    detail: str
    at: datetime
    actor: str = ""  # an operator's name for a decision; empty for the system


# Daraja's ResultCode (and ResponseCode) for success; every other code is a refusal or a fault.
SUCCESS = "0"

# What one M-PESA transaction may carry: Daraja refuses a push under KES 1 or a payout under
# KES 10, and no transaction above KES 250,000. Every channel checks against these.
STK_CENTS_MIN = 1 * CENTS_PER_SHILLING
B2C_CENTS_MIN = 10 * CENTS_PER_SHILLING
MPESA_CENTS_MAX = 250_000 * CENTS_PER_SHILLING


# --- Asking for money to move ---------------------------------------------------------------


def require_mpesa_amount(amount_cents: object, *, amount_cents_min: int) -> int:
    if isinstance(amount_cents, bool) or not isinstance(amount_cents, int):
        raise InvalidAmount("Amounts are whole numbers of cents.")
    if amount_cents % CENTS_PER_SHILLING != 0:
        raise InvalidAmount("M-PESA moves whole shillings: the amount must end in 00 cents.")
    if not amount_cents_min <= amount_cents <= MPESA_CENTS_MAX:
        raise InvalidAmount(
            f"M-PESA amounts are KES {amount_cents_min // CENTS_PER_SHILLING} "
            f"to KES {MPESA_CENTS_MAX // CENTS_PER_SHILLING:,}."
        )
    return amount_cents
