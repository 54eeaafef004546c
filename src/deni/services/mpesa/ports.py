"""What the M-PESA use cases need, as plain values and Protocols (no I/O here): the Daraja
gateway and the values it speaks, the repositories the unit of work hands out, the policy
knobs, and `MpesaDeps`, what the use cases run on. The request itself and its states are
domain rules (domain/mpesa.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from deni.domain.mpesa import MpesaRequest, Purpose, RequestEvent, RequestState
from deni.services.ports import Clock, UnitOfWorkFactory

# --- Inbox, outbox, suspense, preferences ------------------------------------------------------


class InboxState(StrEnum):
    RECEIVED = "received"  # stored, not applied yet (the worker retries)
    APPLIED = "applied"
    IGNORED = "ignored"  # nothing to do (a failure for a finished request, ...), with a reason
    MALFORMED = "malformed"  # cannot be read; kept for the operator
    FAILED = "failed"  # applying kept failing; kept for the operator


@dataclass(frozen=True, slots=True)
class InboxRow:
    id: int
    kind: str
    dedupe_key: str
    body: bytes
    state: InboxState
    attempts: int
    error: str
    received_at: datetime


class OutboxState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    DONE = "done"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    id: str
    topic: str
    payload: str  # JSON
    unique_key: str
    state: OutboxState
    attempts: int
    next_attempt_at: datetime
    last_error: str = ""
    created_at: datetime | None = None


class SuspenseState(StrEnum):
    UNASSIGNED = "unassigned"
    ASSIGNING = "assigning"  # chosen; the money moves are being made (idempotent, resumable)
    ASSIGNED = "assigned"
    REVERSING = "reversing"  # being sent back to its payer: it cannot be assigned meanwhile
    REVERSED = "reversed"  # M-PESA sent it back: it left the paybill


@dataclass(slots=True)
class SuspensePayment:
    receipt: str
    amount_cents: int
    source: str  # c2b | stk
    account_reference: str
    phone: str
    reason: str
    entry_id: str
    state: SuspenseState
    created_at: datetime
    user_id: str | None = None
    assigned_at: datetime | None = None


class PaybillCheck(StrEnum):
    """A paybill payment Deni accepted at validation, until its confirmation is seen."""

    WAITING = "waiting"  # no confirmation seen yet; the reconciler asks Transaction Status
    CONFIRMED = "confirmed"  # the confirmation came, or Transaction Status stood in for it
    NOT_PAID = "not_paid"  # M-PESA repeatedly knows no such payment: it never completed
    UNRESOLVED = "unresolved"  # checks ran out: an operator must look (`deni payments paybill`)


@dataclass(slots=True)
class ExpectedPaybill:
    """A paybill (C2B) payment seen at validation. M-PESA confirms it a moment later; when that
    confirmation is lost, Transaction Status by its receipt stands in for it (the validation
    body kept here says what it was for)."""

    trans_id: str  # the M-PESA receipt
    amount_cents: int
    account_reference: str
    phone_raw: str  # as Daraja sent it (may be masked or hashed)
    phone: str | None  # 2547XXXXXXXX when Daraja sent it plain
    state: PaybillCheck
    created_at: datetime
    updated_at: datetime
    next_check_at: datetime | None = None
    checks: int = 0
    status_conversation_id: str | None = None  # the last Transaction Status query's ack
    result_desc: str = ""

    def __post_init__(self) -> None:
        assert self.amount_cents > 0
        assert self.trans_id


class ClaimState(StrEnum):
    """A callback's word that money arrived, until M-PESA itself says so."""

    WAITING = "waiting"  # arriving: Transaction Status (or the Pull API) is being asked
    CONFIRMED = "confirmed"  # M-PESA confirmed it: applied as the callback said
    DISPUTED = "disputed"  # M-PESA contradicts it, or never confirmed it: an operator decides
    ACCEPTED = "accepted"  # an operator found it real and applied it
    REJECTED = "rejected"  # an operator found it false: nothing was credited


class ClaimSource(StrEnum):
    C2B = "c2b"  # a paybill confirmation
    STK = "stk"  # a paid STK callback for a CheckoutRequestID Deni never learnt


@dataclass(slots=True)
class PaymentClaim:
    """Money a callback says arrived, held back until M-PESA confirms it. Callbacks are not
    signed, so whoever knows the callback URL could claim any payment; until Transaction
    Status by the receipt (or the Pull API's listing) agrees, nothing is credited."""

    receipt: str
    source: ClaimSource
    amount_cents: int
    account_reference: str
    phone_raw: str  # as the callback sent it (may be masked or hashed)
    phone: str | None  # 2547XXXXXXXX when sent plain
    state: ClaimState
    claimed_at: datetime
    updated_at: datetime
    user_id: str | None = None  # whose money it would be, to show it as arriving
    checkout_request_id: str | None = None  # an STK claim's CheckoutRequestID
    inbox_id: int | None = None
    next_check_at: datetime | None = None
    checks: int = 0
    not_found_answers: int = 0
    status_conversation_id: str | None = None
    result_desc: str = ""
    settled_at: datetime | None = None
    confirm_wait_ms: int | None = None  # callback to M-PESA's confirmation, once confirmed
    decided_by: str = ""

    def __post_init__(self) -> None:
        assert self.amount_cents > 0
        assert self.receipt
        assert self.checks >= 0
        assert self.not_found_answers >= 0


@dataclass(frozen=True, slots=True)
class MpesaPreferences:
    user_id: str
    disburse_to_mpesa: bool = True
    auto_payout: bool = False


@dataclass(frozen=True, slots=True)
class MpesaPosition:
    """The ledger's M-PESA accounts at one moment, and the money in flight beside them."""

    at: datetime
    ledger_paybill_cents: int
    ledger_float_cents: int
    # Collections M-PESA has that the ledger does not yet.
    callbacks_unapplied_cents: int  # paid STK / paybill confirmations stored, not applied
    claims_waiting_cents: int  # callbacks' payments awaiting M-PESA's confirmation
    # Collections that may or may not have landed.
    pushes_open_cents: int  # STK pushes sent, no answer applied
    paybills_validated_cents: int  # validated paybill payments, no confirmation seen
    # Money that may have left the Working Account back to a payer.
    reversals_open_cents: int
    # Payouts: gone for certain (success result not applied), or perhaps (sent, unsettled).
    payouts_unapplied_cents: int
    payouts_open_cents: int

    def working_range(self) -> tuple[int, int]:
        """Where the Working Account may stand, in the ledger's terms (before any opening)."""
        certain = self.ledger_paybill_cents + self.callbacks_unapplied_cents
        certain += self.claims_waiting_cents
        low = certain - self.reversals_open_cents
        high = certain + self.pushes_open_cents + self.paybills_validated_cents
        return low, high

    def utility_range(self) -> tuple[int, int]:
        """Where the Utility Account may stand, in the ledger's terms."""
        certain = self.ledger_float_cents - self.payouts_unapplied_cents
        return certain - self.payouts_open_cents, certain

    def to_json(self) -> str:
        values = asdict(self)
        values["at"] = self.at.isoformat()
        return json.dumps(values, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MpesaPosition:
        values: dict[str, Any] = json.loads(text)
        values["at"] = datetime.fromisoformat(values["at"])
        return cls(**values)


@dataclass(slots=True)
class BalanceReport:
    """Daraja's balances beside the ledger (services/mpesa/balances.py compares them)."""

    id: str
    state: str  # requested, received, failed
    ledger_paybill_cents: int  # when asked (also in `before`)
    ledger_float_cents: int
    requested_at: datetime
    conversation_id: str | None = None
    working_cents: int | None = None
    utility_cents: int | None = None
    result_desc: str = ""
    received_at: datetime | None = None
    # M-PESA's own time for the figures (BOCompletedTime), when it sent one.
    struck_at: datetime | None = None
    # The ledger and the money in flight when asked and when the answer was applied: the
    # balance was struck in between. None on reports from before positions were kept.
    before: MpesaPosition | None = None
    after: MpesaPosition | None = None
    # Money at M-PESA outside the ledger (an opening balance, transfers), as narrowed by the
    # reports so far, and how far this report found it moved without explanation (0: not at
    # all; None: the first report, or not received). balances.py.
    working_outside: tuple[int, int] | None = None
    utility_outside: tuple[int, int] | None = None
    working_difference_cents: int | None = None
    utility_difference_cents: int | None = None


@dataclass(frozen=True, slots=True)
class PayoutCandidate:
    """Something that should go out by B2C: a loan's principal, a lender's repayment."""

    source_id: str  # loan id or repayment id
    user_id: str
    loan_id: str
    amount_cents: int


class MpesaRequestRepository(Protocol):
    """STK pushes and B2C payouts, one row each, with a payout's evidence."""

    def add(self, request: MpesaRequest) -> None: ...

    def get(self, request_id: str) -> MpesaRequest | None: ...

    def lock(self, request_id: str) -> MpesaRequest | None: ...

    def find_by_key(self, idempotency_key: str) -> MpesaRequest | None: ...

    def find_by_checkout(self, checkout_request_id: str) -> MpesaRequest | None: ...

    def find_by_originator(self, originator_conversation_id: str) -> MpesaRequest | None: ...

    def find_by_status_conversation(self, conversation_id: str) -> MpesaRequest | None: ...

    def awaiting_decision(self, *, limit: int) -> list[MpesaRequest]:
        """Payouts waiting for an operator's decision, oldest first."""
        ...

    def add_events(self, events: Sequence[RequestEvent]) -> None: ...

    def events_for(self, request_id: str, *, limit: int) -> list[RequestEvent]:
        """A request's evidence, oldest first."""
        ...

    def unanswered_pushes(
        self, *, phone: str, amount_cents: int, since: datetime, until: datetime, limit: int
    ) -> list[MpesaRequest]:
        """Pushes to this phone for this amount, made in [since, until], that Daraja never
        answered (no CheckoutRequestID) and that nothing has paid: oldest first."""
        ...

    def save(self, request: MpesaRequest, now: datetime) -> None: ...

    def find_by_checkouts(self, checkout_request_ids: Sequence[str]) -> list[MpesaRequest]:
        """The requests with these CheckoutRequestIDs, not locked."""
        ...

    def lock_by_checkout(self, checkout_request_ids: Sequence[str]) -> list[MpesaRequest]:
        """The requests with these CheckoutRequestIDs, locked in id order."""
        ...

    def save_many(self, requests: Sequence[MpesaRequest], now: datetime) -> None:
        """`save_request` for several, in one statement."""
        ...

    def due_checks(self, *, now: datetime, limit: int) -> list[str]: ...

    def in_states(
        self, *, states: Sequence[RequestState], limit: int, user_id: str | None = None
    ) -> list[MpesaRequest]: ...

    def count(self, *, loan_id: str, purpose: Purpose) -> int: ...

    def stk_pushes_like(
        self,
        *,
        amount_cents: int,
        phone: str | None,
        created_from: datetime,
        created_to: datetime,
        limit: int,
    ) -> list[MpesaRequest]:
        """STK pushes of this amount (to this phone, if given) created in the window and not
        settled with a receipt; at most `limit`."""
        ...

    def reversals(self, *, limit: int) -> list[MpesaRequest]:
        """Reversals, newest first."""
        ...

    def reversals_of(self, original_receipt: str) -> list[MpesaRequest]:
        """The reversals of one payment (by its receipt), oldest first."""
        ...

    def find_by_conversation(self, conversation_id: str) -> MpesaRequest | None:
        """The reversal Daraja acknowledged with this ConversationID."""
        ...


class CallbackInboxRepository(Protocol):
    """Daraja's callbacks as they arrived, each stored once and applied by the worker."""

    # callbacks
    def add(
        self,
        *,
        kind: str,
        dedupe_key: str,
        body: bytes,
        source_ip: str,
        state: InboxState,
        error: str,
        now: datetime,
    ) -> int | None:
        """The new row's id; None when the dedupe key is already stored."""
        ...

    def get(self, inbox_id: int) -> InboxRow | None: ...

    def lock(self, inbox_id: int) -> InboxRow | None: ...

    def mark(self, inbox_id: int, *, state: InboxState, error: str, now: datetime) -> None:
        """Record an attempt's outcome (attempts + 1)."""
        ...

    def mark_many(self, marks: Sequence[tuple[int, InboxState, str]], *, now: datetime) -> None:
        """`inbox_mark` for several (id, state, error), in one statement."""
        ...

    def claim(self, *, limit: int) -> list[InboxRow]:
        """Received rows, oldest first, locked for this transaction; rows another worker has
        locked are skipped (PostgreSQL; on SQLite the writer lock already serialises)."""
        ...

    def received(self, *, limit: int) -> list[InboxRow]:
        """Received rows, oldest first, without locking them (a look ahead)."""
        ...

    def ids(self, *, states: Sequence[InboxState], limit: int) -> list[int]: ...

    def rows(self, *, states: Sequence[InboxState], limit: int) -> list[InboxRow]: ...

    def keys_stored(self, dedupe_keys: Sequence[str]) -> set[str]:
        """Those of these dedupe keys the inbox holds."""
        ...


class SuspenseRepository(Protocol):
    """Paybill payments no member could be matched to, until an operator assigns them."""

    # suspense
    def add(self, payment: SuspensePayment) -> bool: ...

    def lock(self, receipt: str) -> SuspensePayment | None: ...

    def save(self, payment: SuspensePayment) -> None: ...

    def in_states(
        self, *, states: Sequence[SuspenseState], limit: int
    ) -> list[SuspensePayment]: ...


class ExpectedPaybillRepository(Protocol):
    """Paybill payments Deni validated and expects Daraja to confirm."""

    # paybill payments seen at validation
    def expect(self, expected: ExpectedPaybill) -> bool:
        """False (nothing written) when this receipt is already expected."""
        ...

    def due(self, *, now: datetime, limit: int) -> list[ExpectedPaybill]:
        """Waiting ones whose check is due, oldest first."""
        ...

    def lock(self, trans_id: str) -> ExpectedPaybill | None: ...

    def get(self, trans_id: str) -> ExpectedPaybill | None: ...

    def by_status_conversation(self, conversation_id: str) -> ExpectedPaybill | None: ...

    def save(self, expected: ExpectedPaybill) -> None: ...

    def in_states(self, *, states: Sequence[PaybillCheck], limit: int) -> list[ExpectedPaybill]: ...


class PaymentClaimRepository(Protocol):
    """Payments a callback claims, waiting for Daraja to confirm them before any money moves."""

    # payments claimed by a callback, until M-PESA confirms them
    def add(self, claim: PaymentClaim) -> bool:
        """False (nothing written) when this receipt is already claimed."""
        ...

    def lock(self, receipt: str) -> PaymentClaim | None: ...

    def save(self, claim: PaymentClaim) -> None: ...

    def by_status_conversation(self, conversation_id: str) -> PaymentClaim | None: ...

    def due(self, *, now: datetime, limit: int) -> list[PaymentClaim]:
        """Waiting claims whose check is due, oldest first."""
        ...

    def in_states(self, *, states: Sequence[ClaimState], limit: int) -> list[PaymentClaim]: ...

    def for_receipts(self, receipts: Sequence[str]) -> dict[str, PaymentClaim]: ...

    def arriving(self, user_id: str, *, limit: int) -> list[PaymentClaim]:
        """A user's waiting claims, newest first."""
        ...

    def confirmation_waits(self, bounds_ms: Sequence[int]) -> tuple[list[int], int, int]:
        """Confirmed claims: how many waited at most each bound, how many in all, and the
        total wait in milliseconds (a histogram read from the database)."""
        ...

    # the Pull API
    def receipts_seen(self, receipts: Sequence[str]) -> set[str]:
        """Those of these M-PESA receipts Deni already knows: a confirmation stored, a push
        settled with it, money in suspense under it, or a wallet credited with it."""
        ...


class PaybillPullRepository(Protocol):
    """Passes of the Pull API over the paybill's recent payments."""

    def add(self, pull: PaybillPull) -> None: ...

    def save(self, pull: PaybillPull) -> None: ...

    def last(self, *, finished_only: bool) -> PaybillPull | None:
        """The newest pass (by start), or the newest that finished (by window end)."""
        ...


class PreferencesRepository(Protocol):
    """A member's M-PESA preferences."""

    # preferences
    def get(self, user_id: str) -> MpesaPreferences: ...

    def set(self, preferences: MpesaPreferences, now: datetime) -> None: ...


class PayoutCandidateRepository(Protocol):
    """Loans and repayments whose money should go out to M-PESA and has not yet."""

    # sweeps
    def loans_to_disburse(self, *, since: datetime, limit: int) -> list[PayoutCandidate]:
        """Active loans disbursed since `since` to a borrower who wants M-PESA, with no
        disbursement request yet."""
        ...

    def repayments_to_pay_out(self, *, since: datetime, limit: int) -> list[PayoutCandidate]:
        """Repayments since `since` to lenders with auto-payout on, with no payout yet."""
        ...


class BalanceReportRepository(Protocol):
    """Daraja's answers about the paybill and B2C balances, beside the ledger's."""

    # balance reports
    def add(self, report: BalanceReport) -> None: ...

    def by_conversation(self, conversation_id: str) -> BalanceReport | None: ...

    def save(self, report: BalanceReport) -> None: ...

    def latest(self, *, limit: int) -> list[BalanceReport]: ...


class OutboxRepository(Protocol):
    def add(self, message: OutboxMessage, now: datetime) -> bool:
        """False (nothing written) when the unique key is already taken."""
        ...

    def claim_due(self, *, now: datetime, limit: int, lease_s: float) -> list[OutboxMessage]:
        """Due messages, leased to the caller; a crashed claimer's lease lapses."""
        ...

    def get(self, message_id: str) -> OutboxMessage | None: ...

    def mark_done(self, message_id: str, *, now: datetime) -> None: ...

    def mark_retry(
        self, message_id: str, *, now: datetime, next_attempt_at: datetime, error: str
    ) -> None: ...

    def mark_dead(self, message_id: str, *, now: datetime, error: str) -> None: ...

    def rearm(self, message_id: str, *, now: datetime) -> bool:
        """A dead message goes back to pending with fresh attempts; False if not dead."""
        ...

    def list(self, *, states: Sequence[OutboxState], limit: int) -> list[OutboxMessage]: ...


# --- What Daraja answers (the gateway's values) -----------------------------------------------


class GatewayOutcome(StrEnum):
    NOT_SENT = "not_sent"  # certainly never reached Daraja: sending again is safe
    REFUSED = "refused"  # Daraja refused it outright; sending it again will not help
    BUSY = "busy"  # refused for now (rate limit, subscriber busy, query pending)
    UNKNOWN = "unknown"  # Daraja may have acted on it: ask before doing anything else


class GatewayError(Exception):
    def __init__(self, message: str, *, outcome: GatewayOutcome, code: str = "") -> None:
        super().__init__(message)
        self.message = message[:300]
        self.outcome = outcome
        self.code = code


class MalformedCallbackError(Exception):
    """A callback body that cannot be used; `reason` has no personal data."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason[:300]


@dataclass(frozen=True, slots=True)
class StkAck:
    checkout_request_id: str
    merchant_request_id: str


@dataclass(frozen=True, slots=True)
class ConversationAck:
    originator_conversation_id: str
    conversation_id: str


@dataclass(frozen=True, slots=True)
class StkQueryAnswer:
    result_code: str  # "0" paid, "1032" cancelled, ...
    result_desc: str


# Callback events: what a stored body says, in Deni's terms.


@dataclass(frozen=True, slots=True)
class StkResultEvent:
    checkout_request_id: str
    result_code: str
    result_desc: str
    amount_cents: int | None
    receipt: str | None
    phone: str | None


@dataclass(frozen=True, slots=True)
class B2CResultEvent:
    originator_conversation_id: str
    conversation_id: str
    result_code: str
    result_desc: str
    amount_cents: int | None
    receipt: str | None


@dataclass(frozen=True, slots=True)
class ReversalResultEvent:
    originator_conversation_id: str | None
    conversation_id: str | None
    result_code: str
    result_desc: str
    receipt: str | None  # the reversal's own receipt (Daraja's TransactionID) on success
    amount_cents: int | None
    original_receipt: str | None  # OriginalTransactionID: the payment sent back


@dataclass(frozen=True, slots=True)
class QueueTimeoutEvent:
    originator_conversation_id: str | None
    conversation_id: str | None
    result_desc: str


@dataclass(frozen=True, slots=True)
class C2BEvent:
    trans_id: str
    amount_cents: int
    account_reference: str
    phone: str | None  # 2547XXXXXXXX only when Daraja sent it plain
    phone_raw: str


@dataclass(frozen=True, slots=True)
class PulledPayment:
    """One payment into the paybill as the Pull API lists it."""

    trans_id: str
    paid_at: datetime
    amount_cents: int
    account_reference: str
    phone: str | None  # 2547XXXXXXXX only when Daraja listed it plain
    phone_raw: str


@dataclass(frozen=True, slots=True)
class PullPage:
    payments: tuple[PulledPayment, ...]
    rows: int  # rows on the page, unreadable ones included: the next page starts after them


@dataclass(slots=True)
class PaybillPull:
    """One pass of the Pull API over a window of time (the next pass starts where it ended)."""

    id: str
    window_start: datetime
    window_end: datetime
    started_at: datetime
    state: str = "running"  # running, done, failed
    rows: int = 0
    recovered: int = 0  # payments credited because their confirmation never came
    left_to_stk: int = 0  # looked like an STK push of Deni's: its own checks settle it
    finished_at: datetime | None = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class StatusResultEvent:
    conversation_id: str  # of the status query itself
    result_code: str
    result_desc: str
    transaction_status: str | None
    receipt: str | None
    amount_cents: int | None
    original_originator_conversation_id: str | None
    # "254708374149 - JOHN DOE" (or masked); who paid and who was paid.
    debit_parties: tuple[str, ...] = ()
    credit_parties: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BalanceResultEvent:
    conversation_id: str
    result_code: str
    result_desc: str
    working_cents: int | None
    utility_cents: int | None
    completed_at: datetime | None = None  # BOCompletedTime: when M-PESA struck the balance


@dataclass(frozen=True, slots=True)
class OtherResultEvent:
    """The queries' own timeouts: stored and shown, nothing moves."""

    conversation_id: str | None
    result_code: str
    result_desc: str


CallbackEvent = (
    StkResultEvent
    | B2CResultEvent
    | QueueTimeoutEvent
    | C2BEvent
    | StatusResultEvent
    | BalanceResultEvent
    | ReversalResultEvent
    | OtherResultEvent
)


class CallbackKind(StrEnum):
    """Path suffixes under /hooks/{token}/ (they match the Daraja client's `Callback`)."""

    STK = "stk"
    B2C_RESULT = "b2c/result"
    B2C_TIMEOUT = "b2c/timeout"
    C2B_VALIDATION = "c2b/validation"
    C2B_CONFIRMATION = "c2b/confirmation"
    BALANCE_RESULT = "balance/result"
    BALANCE_TIMEOUT = "balance/timeout"
    STATUS_RESULT = "status/result"
    STATUS_TIMEOUT = "status/timeout"
    REVERSAL_RESULT = "reversal/result"
    REVERSAL_TIMEOUT = "reversal/timeout"


# --- Policy --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MpesaPolicy:
    """Every bound and delay of the M-PESA work, in one place (bootstrap fills it from
    settings; tests shorten it)."""

    stk_query_after_s: float = 180.0  # a push with no callback after this: ask STK Query
    status_after_s: float = 120.0  # a payout with no result after this: Transaction Status
    check_backoff_s: float = 300.0  # between two checks of the same request
    checks_max: int = 12  # then it waits for an operator (`deni payments open`)
    # A paybill payment accepted at validation with no confirmation after this: ask about it.
    paybill_confirm_after_s: float = 300.0
    # "Not found" answers from Transaction Status before they count: one answer may come
    # before M-PESA has finished. Enough of them confirm a payout's failure result (or end a
    # claim's wait); they never make a payout be sent again.
    not_found_answers_min: int = 3
    outbox_attempts_max: int = 8
    backoff_base_s: float = 2.0
    backoff_s_max: float = 600.0
    lease_s: float = 60.0  # a claimed outbox row is someone else's after this
    batch_max: int = 50
    inbox_attempts_max: int = 5
    sweep_window_s: float = 2 * 24 * 3600.0  # how far back sweeps look
    auto_repay_stk_max: int = 3  # due-date STK pushes per loan, at most one a day
    stk_account_reference: str = "Deni"
    # The Pull API (paybill payments of the last 48 hours): how often to ask, 0 for never;
    # how old a payment must be before a missing confirmation counts as lost; and how far the
    # next window reaches back over the last one (M-PESA may list a payment late).
    pull_interval_s: float = 900.0
    pull_settle_s: float = 600.0
    pull_overlap_s: float = 600.0
    # A payment claimed by a callback is asked about this long after it arrived (M-PESA sends
    # the callback once the payment is complete, so Transaction Status knows it at once).
    claim_check_after_s: float = 0.0

    def __post_init__(self) -> None:
        assert self.stk_query_after_s >= 0
        assert self.status_after_s >= 0
        assert self.check_backoff_s >= 0
        assert self.paybill_confirm_after_s >= 0
        assert 1 <= self.checks_max <= 1000
        assert 1 <= self.not_found_answers_min <= self.checks_max
        assert 1 <= self.outbox_attempts_max <= 100
        assert 0 <= self.backoff_base_s <= self.backoff_s_max
        assert self.lease_s > 0
        assert 1 <= self.batch_max <= 1000
        assert 1 <= self.inbox_attempts_max <= 100
        assert 0 <= self.auto_repay_stk_max <= 30
        assert self.pull_interval_s >= 0
        assert 0 <= self.pull_settle_s <= 24 * 3600
        assert 0 <= self.pull_overlap_s <= 24 * 3600
        assert 0 <= self.claim_check_after_s <= 24 * 3600


# --- Daraja, as the use cases see it ---


class MpesaGateway(Protocol):
    """Daraja, as the M-PESA use cases see it. Failures raise GatewayError whose
    `outcome` says whether the request may have been acted on."""

    def stk_push(
        self, *, phone: str, amount_cents: int, account_reference: str, description: str
    ) -> StkAck: ...

    def stk_query(self, *, checkout_request_id: str) -> StkQueryAnswer: ...

    def b2c_payment(
        self, *, phone: str, amount_cents: int, originator_conversation_id: str, remarks: str
    ) -> ConversationAck: ...

    def transaction_status(
        self, *, originator_conversation_id: str | None = None, transaction_id: str | None = None
    ) -> ConversationAck:
        """Ask what became of a B2C payout or STK push (by OriginatorConversationID or
        CheckoutRequestID) or of a payment into the paybill (by its receipt, `transaction_id`).
        The answer comes later, as a status callback."""
        ...

    def account_balance(self) -> ConversationAck: ...

    def reversal(
        self,
        *,
        original_receipt: str,
        amount_cents: int,
        originator_conversation_id: str,
        remarks: str,
    ) -> ConversationAck:
        """Ask M-PESA to send a payment received on the paybill (STK or C2B) back to its
        payer. Money moves: the same unknown-outcome rules as a B2C payout apply."""
        ...

    def register_c2b_urls(self) -> None: ...

    def register_pull(self) -> None:
        """Ask for the Pull API for the paybill ("already registered" is not an error)."""
        ...

    def pull_payments(self, *, start: datetime, end: datetime, offset: int) -> PullPage:
        """Payments into the paybill completed in [start, end] (at most 48 hours back), from the
        `offset`-th on, one page; a page with no rows means the listing is over."""
        ...

    def parse_callback(self, kind: str, body: bytes) -> CallbackEvent:
        """Raises MalformedCallbackError for a body Deni cannot act on."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class MpesaDeps:
    """What the M-PESA use cases run on (bootstrap builds it)."""

    uow: UnitOfWorkFactory
    clock: Clock
    gateway: MpesaGateway
    policy: MpesaPolicy
