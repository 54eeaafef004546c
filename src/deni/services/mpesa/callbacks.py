"""Daraja's callbacks: stored first, answered fast, applied exactly once.

`store_callback` writes the raw body to the inbox in a short transaction of its own, keyed by
what identifies the event (CheckoutRequestID, OriginatorConversationID, TransID, ...), so a
repeated callback finds its key taken and does nothing. `apply_callback` then settles what the
body says; every step it takes is idempotent (receipt keys, hold states), so the inline apply
and the worker's retry of an unapplied row can never move money twice. A body that cannot be
read is kept as `malformed` for the operator and still answered 200 (Daraja would otherwise
retry or blacklist the URL).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from deni.domain.errors import InvalidPhoneNumber
from deni.domain.mpesa import (
    OPEN_STATES,
    SUCCESS,
    EventKind,
    MpesaRequest,
    RequestKind,
    RequestState,
)
from deni.domain.phone import normalise_msisdn
from deni.services.mpesa import balances, claims, paybills, payments, reversals
from deni.services.mpesa.journal import record_event
from deni.services.mpesa.ports import (
    B2CResultEvent,
    BalanceResultEvent,
    C2BEvent,
    CallbackEvent,
    CallbackKind,
    ClaimSource,
    ClaimState,
    ExpectedPaybill,
    InboxRow,
    InboxState,
    MalformedCallbackError,
    MpesaDeps,
    OtherResultEvent,
    PaybillCheck,
    PaymentClaim,
    PulledPayment,
    QueueTimeoutEvent,
    ReversalResultEvent,
    StatusResultEvent,
    StkResultEvent,
)
from deni.services.mpesa.requests import compact_reference, request_of_originator
from deni.services.mpesa.settle import (
    PushAnswer,
    StkPaid,
    claim_payout_failure,
    confirm_payout_failure,
    confirm_push_paid,
    credit_stk_payment,
    credit_stk_top_ups,
    fail_stk,
    payout_not_found,
    repay_from_wallet,
    settle_payout_success,
    to_suspense,
)
from deni.services.ports import UnitOfWork

log = structlog.get_logger(__name__)

# An STK callback may beat the worker's record of its CheckoutRequestID by a moment: such a
# callback waits this long in the inbox before its money is sent to suspense.
UNKNOWN_CHECKOUT_GRACE_S = 120.0
# A paid push whose CheckoutRequestID Deni never learnt is matched to an unanswered push to the
# same phone for the same amount made this long before its callback (a prompt lives a minute
# or two on the phone; the rest is slack for a slow callback).
UNANSWERED_PUSH_WINDOW_S = 15 * 60.0
COMPLETED = "completed"
C2B_ACCEPT = {"ResultCode": "0", "ResultDesc": "Accepted"}
C2B_REJECT = {"ResultCode": "C2B00012", "ResultDesc": "Rejected"}  # invalid account number


class NotYet(Exception):
    """The row cannot be applied yet; the worker tries again later."""


@dataclass(frozen=True, slots=True)
class Stored:
    inbox_id: int | None  # None: the dedupe key was taken (a repeat)
    state: InboxState


def dedupe_key(kind: str, event: CallbackEvent) -> str:
    """What makes a repeat a repeat. For the callbacks that move money it includes what the
    body says, not only its id: a forged body posted first under a real id must not make the
    genuine one look like a repeat and be dropped."""
    if isinstance(event, StkResultEvent):
        said = _said(event.result_code, event.receipt, event.amount_cents, event.phone)
        return f"stk:{event.checkout_request_id}:{said}"
    if isinstance(event, B2CResultEvent):
        said = _said(event.result_code, event.receipt, event.amount_cents)
        return f"b2c:{event.originator_conversation_id}:{said}"
    if isinstance(event, ReversalResultEvent):
        said = _said(event.result_code, event.receipt, event.amount_cents, event.original_receipt)
        return f"reversal:{event.originator_conversation_id or event.conversation_id}:{said}"
    if isinstance(event, QueueTimeoutEvent):
        prefix = "reversal_timeout" if kind == CallbackKind.REVERSAL_TIMEOUT else "b2c_timeout"
        return f"{prefix}:{event.originator_conversation_id or event.conversation_id}"
    if isinstance(event, C2BEvent):
        if kind == CallbackKind.C2B_CONFIRMATION:
            said = _said(event.amount_cents, event.account_reference, event.phone_raw)
            return f"{paybills.confirmation_key(event.trans_id)}:{said}"
        return f"c2b_validation:{event.trans_id}"
    if isinstance(event, StatusResultEvent | BalanceResultEvent):
        return f"{kind}:{event.conversation_id}"
    return f"{kind}:{event.conversation_id or _digest(event.result_desc.encode())}"


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _said(*fields: object) -> str:
    return _digest(repr(fields).encode())[:16]


@dataclass(frozen=True, slots=True)
class Received:
    """A callback as the hook received it."""

    kind: str
    body: bytes
    source_ip: str


STORED_PER_TRANSACTION_MAX = 500


def store_callback(deps: MpesaDeps, *, kind: str, body: bytes, source_ip: str) -> Stored:
    """The raw body first, in its own transaction. Never raises for a bad body."""
    return store_callbacks(deps, [Received(kind, body, source_ip)])[0]


def store_callbacks(deps: MpesaDeps, received: Sequence[Received]) -> list[Stored]:
    """Raw bodies first, several in one transaction: the hook commits the callbacks that
    arrived together at once (bootstrap/inbox_writer.py), and answers each only after
    that commit. Never raises for a bad body; a failed transaction stores none of them."""
    assert 1 <= len(received) <= STORED_PER_TRANSACTION_MAX
    now = deps.clock.now()
    rows = [_inbox_row(deps, callback) for callback in received]
    with deps.uow() as uow:
        stored = [
            Stored(
                uow.mpesa_inbox.add(
                    kind=callback.kind, dedupe_key=key, body=callback.body,
                    source_ip=callback.source_ip, state=state, error=error, now=now,
                ),
                state,
            )
            for callback, (key, state, error) in zip(received, rows, strict=True)
        ]  # fmt: skip
        uow.commit()
    for callback, row in zip(received, stored, strict=True):
        if row.inbox_id is None:
            log.info("mpesa.callback_repeated", kind=callback.kind)
    return stored


def _inbox_row(deps: MpesaDeps, callback: Received) -> tuple[str, InboxState, str]:
    """(dedupe key, state, error) of a received body; malformed ones are kept too."""
    try:
        event = deps.gateway.parse_callback(callback.kind, callback.body)
    except MalformedCallbackError as malformed:
        # Keyed by content, so the same garbage twice is stored once.
        log.warning("mpesa.callback_malformed", kind=callback.kind, reason=malformed.reason)
        key = f"bad:{callback.kind}:{_digest(callback.body)}"
        return key, InboxState.MALFORMED, malformed.reason
    return dedupe_key(callback.kind, event), InboxState.RECEIVED, ""


def apply_callback(deps: MpesaDeps, inbox_id: int) -> InboxState:
    """Settle what a stored callback says, once. Returns the row's state afterwards."""
    with deps.uow.read_only() as uow:
        row = uow.mpesa_inbox.get(inbox_id)
    assert row is not None, inbox_id
    if row.state is not InboxState.RECEIVED:
        return row.state
    try:
        event = deps.gateway.parse_callback(row.kind, row.body)
        state, note = _apply(deps, row.kind, event, received_at=row.received_at)
    except NotYet:
        # Waiting out a grace period is not a failed attempt: leave the row as it is, or a
        # few quick worker passes would mark it failed long before the grace is over.
        return InboxState.RECEIVED
    except MalformedCallbackError as malformed:
        state, note = InboxState.MALFORMED, malformed.reason
    except CannotConfirm as unconfirmed:
        log.warning("mpesa.callback_unconfirmed", kind=row.kind, inbox_id=inbox_id)
        state, note = InboxState.RECEIVED, str(unconfirmed)
    except Exception as error:
        log.exception("mpesa.callback_apply_failed", kind=row.kind, inbox_id=inbox_id)
        state, note = InboxState.RECEIVED, f"{type(error).__name__}: {error}"
    if state is InboxState.RECEIVED and row.attempts + 1 >= deps.policy.inbox_attempts_max:
        state = InboxState.FAILED  # left for the operator: `deni payments callbacks`
    with deps.uow() as uow:
        uow.mpesa_inbox.mark(inbox_id, state=state, error=note, now=deps.clock.now())
        uow.commit()
    return state


@dataclass(frozen=True, slots=True)
class PendingReport:
    tried: int
    settled: int  # rows that left `received` (applied, ignored, malformed, failed)


def apply_pending(deps: MpesaDeps) -> PendingReport:
    """The worker's pass over stored callbacks: the hook only stores them, this applies them
    (and retries what a crash or a transient failure left). One bounded batch.

    The batch's paid top-ups (nearly all the traffic) are applied together in one transaction,
    `_apply_top_ups`; every other row, and every row of a batch whose transaction failed, goes
    through `apply_callback` on its own, so one bad row never holds up the others.
    """
    batch = _apply_top_ups(deps)
    settled = batch.settled + sum(
        apply_callback(deps, inbox_id) is not InboxState.RECEIVED for inbox_id in batch.rest
    )
    return PendingReport(batch.claimed, settled)


@dataclass(frozen=True, slots=True)
class _Batch:
    claimed: int
    settled: int
    rest: list[int]  # claimed rows the batch left for `apply_callback`, oldest first


Mark = tuple[int, InboxState, str]


def _apply_top_ups(deps: MpesaDeps) -> _Batch:
    """Claim a batch of received rows (SKIP LOCKED: each worker takes its own) and, in the
    same transaction, credit the paid top-ups among them and mark their rows. Exactly once as
    one at a time: the same ledger keys (`mpesa:<receipt>`), and the rows are marked in the
    transaction that moves the money, so a worker killed midway leaves them all received."""
    _confirm_paid_pushes(deps)
    now = deps.clock.now()
    claimed: list[int] = []
    try:
        with deps.uow() as uow:
            rows = uow.mpesa_inbox.claim(limit=deps.policy.batch_max)
            claimed = [row.id for row in rows]
            paid, marks = _paid_top_ups(deps, uow, rows)
            if paid:
                credit_stk_top_ups(uow, paid, now=now)
            uow.mpesa_inbox.mark_many(marks, now=now)
            uow.commit()
    except Exception:
        # Nothing of it happened; each row now gets its own transaction.
        log.exception("mpesa.callback_batch_failed", rows=len(claimed))
        return _Batch(len(claimed), 0, claimed)
    done = {inbox_id for inbox_id, _, _ in marks}
    return _Batch(len(claimed), len(done), [i for i in claimed if i not in done])


def _paid_successes(deps: MpesaDeps, rows: Sequence[InboxRow]) -> dict[int, StkResultEvent]:
    events: dict[int, StkResultEvent] = {}
    for row in rows:
        if row.kind != CallbackKind.STK:
            continue
        try:
            event = deps.gateway.parse_callback(row.kind, row.body)
        except MalformedCallbackError:
            continue
        if isinstance(event, StkResultEvent) and event.result_code == SUCCESS:
            events[row.id] = event
    return events


def _confirm_paid_pushes(deps: MpesaDeps) -> None:
    """Before the batch, and outside any transaction: ask STK Query about the open top-ups
    the waiting success callbacks name, so that the batch credits only confirmed ones."""
    with deps.uow.read_only() as uow:
        events = _paid_successes(deps, uow.mpesa_inbox.received(limit=deps.policy.batch_max))
        checkouts = [event.checkout_request_id for event in events.values()]
        found = {r.checkout_request_id: r for r in uow.mpesa_requests.find_by_checkouts(checkouts)}
    asked = set()
    for event in events.values():
        request = found.get(event.checkout_request_id)
        if (
            request is not None
            and request.id not in asked
            and request.state in OPEN_STATES
            and request.loan_id is None
            and request.amount_cents == event.amount_cents
            and not request.paid_confirmed
        ):
            asked.add(request.id)
            confirm_push_paid(deps, request.id)


def _paid_top_ups(
    deps: MpesaDeps, uow: UnitOfWork, rows: list[InboxRow]
) -> tuple[list[StkPaid], list[Mark]]:
    """The rows the batch settles: successful STK callbacks for open top-up requests of the
    amount asked (locked here), and repeats of ones already credited. Anything else (failures,
    unknown or settled requests, other amounts, loan repayments, other kinds) is left out."""
    events = _paid_successes(deps, rows)
    checkouts = [event.checkout_request_id for event in events.values()]
    requests = {r.checkout_request_id: r for r in uow.mpesa_requests.lock_by_checkout(checkouts)}
    paid: list[StkPaid] = []
    marks: list[Mark] = []
    for inbox_id, event in events.items():
        request = requests.get(event.checkout_request_id)
        if request is None or event.receipt is None or event.amount_cents is None:
            continue
        if any(item.request is request for item in paid):
            continue  # a second success for one push (one is forged): left to apply_callback
        if request.state is RequestState.SUCCEEDED and request.receipt == event.receipt:
            marks.append((inbox_id, InboxState.IGNORED, "already credited"))
        elif (
            request.kind is RequestKind.STK
            and request.state in OPEN_STATES
            and request.loan_id is None
            and request.amount_cents == event.amount_cents
            and request.paid_confirmed  # STK Query said so (_confirm_paid_pushes)
        ):
            paid.append(StkPaid(request, event.receipt, event.amount_cents, event.result_desc))
            marks.append((inbox_id, InboxState.APPLIED, f"credited {event.receipt}"))
    return paid, marks


Applied = tuple[InboxState, str]


def _apply(deps: MpesaDeps, kind: str, event: CallbackEvent, *, received_at: datetime) -> Applied:
    if isinstance(event, StkResultEvent):
        return _apply_stk(deps, event, received_at=received_at)
    if isinstance(event, B2CResultEvent):
        return _apply_b2c(deps, event)
    if isinstance(event, QueueTimeoutEvent):
        reversal = kind == CallbackKind.REVERSAL_TIMEOUT
        return _apply_timeout(deps, event, RequestKind.REVERSAL if reversal else RequestKind.B2C)
    if isinstance(event, ReversalResultEvent):
        return _apply_reversal(deps, event)
    if isinstance(event, C2BEvent):
        if kind != CallbackKind.C2B_CONFIRMATION:
            return InboxState.IGNORED, "validation answered at once"
        return _claim_c2b(deps, event, received_at=received_at)
    if isinstance(event, StatusResultEvent):
        return _apply_status(deps, event)
    if isinstance(event, BalanceResultEvent):
        return _apply_balance(deps, event)
    assert isinstance(event, OtherResultEvent)
    return InboxState.IGNORED, f"recorded: {event.result_code} {event.result_desc}"[:200]


# --- STK -----------------------------------------------------------------------------------------


def _apply_stk(deps: MpesaDeps, event: StkResultEvent, *, received_at: datetime) -> Applied:
    with deps.uow.read_only() as uow:
        request = uow.mpesa_requests.find_by_checkout(event.checkout_request_id)
    if event.result_code != SUCCESS:
        if request is None:
            return InboxState.IGNORED, "failure for an unknown CheckoutRequestID"
        if fail_stk(deps, request.id, code=event.result_code, desc=event.result_desc):
            return InboxState.APPLIED, f"push failed: {event.result_code}"
        return InboxState.IGNORED, f"request already {request.state.value}: not downgraded"
    assert event.receipt is not None
    assert event.amount_cents is not None
    if request is not None:
        if request.state is RequestState.SUCCEEDED and request.receipt == event.receipt:
            return InboxState.IGNORED, "already credited"
        if request.state in OPEN_STATES and request.amount_cents == event.amount_cents:
            # Deni's own push, by the CheckoutRequestID Daraja gave Deni, for what Deni asked.
            return _own_push_paid(deps, request, event)
    elif deps.clock.now() - received_at < timedelta(seconds=UNKNOWN_CHECKOUT_GRACE_S):
        raise NotYet("unknown CheckoutRequestID: waiting for the worker's record")
    # Money that matches no open push of Deni's as it stands: M-PESA must confirm it first.
    return _claim_stk(deps, event, request, received_at=received_at)


class CannotConfirm(Exception):
    """M-PESA could not be asked whether a payment happened: the row is tried again later."""


def _own_push_paid(deps: MpesaDeps, request: MpesaRequest, event: StkResultEvent) -> Applied:
    """A success callback for an open push of Deni's: credited once STK Query agrees."""
    answer, said = confirm_push_paid(deps, request.id)
    if answer is PushAnswer.PENDING:
        raise NotYet("STK Query: the customer has not answered yet")
    if answer is PushAnswer.UNKNOWN:
        raise CannotConfirm(f"STK Query: {said}")
    if answer is PushAnswer.NOT_PAID:
        code = said.split(" ", 1)[0]
        fail_stk(deps, request.id, code=code, desc=f"STK Query: {said}")
        return InboxState.IGNORED, f"contradicted by STK Query: {said}"[:200]
    return _stk_paid(deps, request, event)


def _claim_stk(
    deps: MpesaDeps, event: StkResultEvent, request: MpesaRequest | None, *, received_at: datetime
) -> Applied:
    assert event.receipt is not None
    assert event.amount_cents is not None
    user_id = request.user_id if request is not None else None
    if user_id is None and event.phone is not None:
        with deps.uow.read_only() as uow:
            payer = uow.users.get_by_phone(event.phone)
        user_id = payer.id if payer is not None else None
    claim = claims.new_claim(
        receipt=event.receipt,
        source=ClaimSource.STK,
        amount_cents=event.amount_cents,
        account_reference="",
        phone_raw=event.phone or "",
        phone=event.phone,
        user_id=user_id,
        checkout_request_id=event.checkout_request_id,
        claimed_at=received_at,
        deps=deps,
    )
    return _claimed(deps, claim)


def _claimed(deps: MpesaDeps, claim: PaymentClaim) -> Applied:
    with deps.uow.read_only() as uow:
        applied = claim.receipt in uow.claims.receipts_seen([claim.receipt])
        claimed = uow.claims.for_receipts([claim.receipt])
    if applied and not claimed:
        return InboxState.IGNORED, "already applied (Transaction Status or the Pull API)"
    stored = claims.record(deps, claim)
    if stored is not claim:
        return InboxState.IGNORED, f"receipt already claimed: {stored.state.value}"
    return InboxState.APPLIED, f"claimed {claim.receipt}: waiting for M-PESA to confirm"


def _apply_confirmed_stk(deps: MpesaDeps, claim: PaymentClaim) -> str | None:
    """An STK payment M-PESA confirmed, applied as its callback said: to the push it names, or
    to the unanswered push it answers, or else to suspense. Returns why it was not applied:
    the push it names was already credited under another receipt (one of the two callbacks
    was forged, and STK Query cannot tell which receipt is real), for an operator."""
    event = StkResultEvent(
        claim.checkout_request_id or "",
        SUCCESS,
        "confirmed by M-PESA",
        claim.amount_cents,
        claim.receipt,
        claim.phone,
    )
    with deps.uow.read_only() as uow:
        request = uow.mpesa_requests.find_by_checkout(event.checkout_request_id)
    if request is None:
        request = _unanswered_push(deps, event, received_at=claim.claimed_at)
    if request is None:
        _suspense(deps, event, "STK payment for an unknown CheckoutRequestID")
        return None
    if request.state is RequestState.SUCCEEDED and request.receipt != claim.receipt:
        return f"its push was already credited under receipt {request.receipt}"
    _stk_paid(deps, request, event)
    return None


def _unanswered_push(
    deps: MpesaDeps, event: StkResultEvent, *, received_at: datetime
) -> MpesaRequest | None:
    """The push this payment answers, when Daraja never answered the push itself: the oldest
    unanswered push to the payer's phone for the paid amount. The money is the payer's either
    way; this puts it where they meant it (a loan, say) instead of in suspense."""
    if event.phone is None or event.amount_cents is None:
        return None
    with deps.uow.read_only() as uow:
        found = uow.mpesa_requests.unanswered_pushes(
            phone=event.phone,
            amount_cents=event.amount_cents,
            since=received_at - timedelta(seconds=UNANSWERED_PUSH_WINDOW_S),
            until=received_at,
            limit=1,
        )
    return found[0] if found else None


def _stk_paid(deps: MpesaDeps, request: MpesaRequest, event: StkResultEvent) -> Applied:
    assert event.receipt is not None
    assert event.amount_cents is not None
    if request.state is RequestState.SUCCEEDED:
        if request.receipt == event.receipt:
            return InboxState.IGNORED, "already credited"
        return _suspense(deps, event, "a second payment for a settled push")
    if event.amount_cents != request.amount_cents:
        fail_stk(deps, request.id, code="amount", desc="paid amount differs; sent to suspense")
        return _suspense(deps, event, f"amount differs from request {request.id}")
    credit_stk_payment(
        deps,
        request.id,
        receipt=event.receipt,
        amount_cents=event.amount_cents,
        desc=event.result_desc,
    )
    return InboxState.APPLIED, f"credited {event.receipt}"


def _suspense(deps: MpesaDeps, event: StkResultEvent, reason: str) -> Applied:
    assert event.receipt is not None
    assert event.amount_cents is not None
    to_suspense(
        deps,
        receipt=event.receipt,
        amount_cents=event.amount_cents,
        source="stk",
        account_reference="",
        phone=event.phone or "",
        reason=reason,
    )
    return InboxState.APPLIED, f"suspense: {reason}"


# --- B2C -----------------------------------------------------------------------------------------


def _payout_of(
    deps: MpesaDeps,
    originator_conversation_id: str | None,
    kinds: frozenset[RequestKind] = frozenset({RequestKind.B2C}),
) -> tuple[MpesaRequest, int] | None:
    """The payout (or reversal, if `kinds` says so) an OriginatorConversationID of Deni's names,
    and the attempt it names."""
    parsed = request_of_originator(originator_conversation_id or "")
    if parsed is None:
        return None
    request_id, attempt = parsed
    with deps.uow.read_only() as uow:
        request = uow.mpesa_requests.get(request_id)
    if request is None or request.kind not in kinds:
        return None
    return request, attempt


REVERSALS = frozenset({RequestKind.REVERSAL})
SENT_OUT = frozenset({RequestKind.B2C, RequestKind.REVERSAL})


def _apply_b2c(deps: MpesaDeps, event: B2CResultEvent) -> Applied:
    found = _payout_of(deps, event.originator_conversation_id)
    if found is None:
        return InboxState.IGNORED, "B2C result for an unknown OriginatorConversationID"
    request, attempt = found
    if event.result_code == SUCCESS:
        assert event.receipt is not None
        settle_payout_success(
            deps,
            request.id,
            receipt=event.receipt,
            amount_cents=event.amount_cents,
            desc=event.result_desc,
        )
        return InboxState.APPLIED, f"paid {event.receipt}"
    claimed = claim_payout_failure(
        deps, request.id, code=event.result_code, desc=event.result_desc, attempt=attempt
    )
    if claimed:
        return InboxState.APPLIED, f"failure {event.result_code}: held until M-PESA confirms"
    return InboxState.IGNORED, "failure for a settled request or an earlier attempt"


def _apply_timeout(deps: MpesaDeps, event: QueueTimeoutEvent, kind: RequestKind) -> Applied:
    """A queue timeout is "unknown", never "failed": ask Transaction Status soon."""
    found = _payout_of(deps, event.originator_conversation_id, frozenset({kind}))
    if found is None:
        return InboxState.IGNORED, "timeout for an unknown OriginatorConversationID"
    now = deps.clock.now()
    with deps.uow() as uow:
        request = uow.mpesa_requests.lock(found[0].id)
        assert request is not None
        if request.state not in OPEN_STATES or found[1] != request.attempt:
            return InboxState.IGNORED, "timeout for a settled request or an earlier attempt"
        request.state = RequestState.UNKNOWN
        request.acknowledged = True
        request.result_desc = f"queue timeout: {event.result_desc}"[:200]
        request.next_check_at = now + timedelta(seconds=deps.policy.status_after_s)
        uow.mpesa_requests.save(request, now)
        record_event(uow, request, EventKind.RESULT, request.result_desc, now=now)
        uow.commit()
    return InboxState.APPLIED, "queue timeout: Transaction Status next"


# --- Reversals ------------------------------------------------------------------------------------


def _apply_reversal(deps: MpesaDeps, event: ReversalResultEvent) -> Applied:
    """A reversal's result. Success: the money left the paybill, the ledger follows at once (a
    forged success can only keep held money from its member, never pay anyone twice). Failure:
    a claim, confirmed by Transaction Status before the hold is voided, as for payouts.
    "Already reversed": the money went back some other way; an operator decides."""
    found = _payout_of(deps, event.originator_conversation_id, REVERSALS)
    if found is None and event.conversation_id:
        with deps.uow.read_only() as uow:
            by_conversation = uow.mpesa_requests.find_by_conversation(event.conversation_id)
        found = (by_conversation, by_conversation.attempt) if by_conversation else None
    if found is None:
        return InboxState.IGNORED, "reversal result for no reversal of ours"
    request, attempt = found
    if event.result_code == SUCCESS:
        if not event.receipt or event.receipt == request.original_receipt:
            return InboxState.IGNORED, "reversal success without a receipt of its own"
        settle_payout_success(
            deps,
            request.id,
            receipt=event.receipt,
            amount_cents=event.amount_cents,
            desc=event.result_desc,
        )
        return InboxState.APPLIED, f"reversed {event.receipt}"
    if event.result_code == reversals.ALREADY_REVERSED:
        waiting = reversals.already_reversed(
            deps, request.id, desc=event.result_desc, attempt=attempt
        )
        if waiting:
            return InboxState.APPLIED, "already reversed: an operator decides"
        return InboxState.IGNORED, "result for a settled reversal or an earlier attempt"
    claimed = claim_payout_failure(
        deps, request.id, code=event.result_code, desc=event.result_desc, attempt=attempt
    )
    if claimed:
        return InboxState.APPLIED, f"failure {event.result_code}: held until M-PESA confirms"
    return InboxState.IGNORED, "failure for a settled reversal or an earlier attempt"


# --- Transaction Status and balances -------------------------------------------------------------


def _apply_status(deps: MpesaDeps, event: StatusResultEvent) -> Applied:
    with deps.uow.read_only() as uow:
        claim = uow.claims.by_status_conversation(event.conversation_id)
        request = uow.mpesa_requests.find_by_status_conversation(event.conversation_id)
        by_conversation = uow.paybills.by_status_conversation
        paybill = None if request else by_conversation(event.conversation_id)
    if claim is not None:
        return _claim_status(deps, claim, event)
    if paybill is not None:
        return _paybill_status(deps, paybill, event)
    ours = request is not None  # the answer to the query Deni last made about it
    if request is None and event.original_originator_conversation_id:
        found = _payout_of(deps, event.original_originator_conversation_id, SENT_OUT)
        request = found[0] if found else None
    if request is None:
        return InboxState.IGNORED, "status result for no request of ours (an older query?)"
    completed = (event.transaction_status or COMPLETED).lower() == COMPLETED
    if event.result_code == SUCCESS and completed and event.receipt:
        # Believed whatever query it answers: for a payout, money that left is the safe
        # direction to believe; a push's answer is always matched by its own query above.
        return _status_found(deps, request, event)
    if not ours or event.conversation_id != request.status_conversation_id:
        return InboxState.IGNORED, "answer to an older query"
    if request.kind in SENT_OUT:
        return _payout_status(deps, request, event)
    if event.result_code == SUCCESS:
        return InboxState.IGNORED, f"status {event.transaction_status}: checked again later"
    return InboxState.IGNORED, "STK payment not found yet: checked again later"


# Result codes with which M-PESA says it could not answer the query at all (the initiator, its
# credential, its own failure): they say nothing about the payment asked about.
STATUS_UNANSWERED_CODES = frozenset({"17", "2001", "8006"})
# Transaction Status's words for a transaction that did not complete.
FAILED_STATUSES = frozenset({"failed", "declined", "cancelled", "expired"})


def _claim_status(deps: MpesaDeps, claim: PaymentClaim, event: StatusResultEvent) -> Applied:
    """M-PESA's answer about a payment a callback claimed (claims.py). Only a waiting claim is
    settled by it: a disputed one (two callbacks disagreed, or M-PESA did) is an operator's."""
    if claim.state is not ClaimState.WAITING:
        return InboxState.IGNORED, f"claim already {claim.state.value}"
    if claims.completed(event):
        with deps.uow.read_only() as uow:
            validated = uow.paybills.get(claim.receipt)
        wrong = claims.contradiction(claim, event) or claims.unlike_validation(claim, validated)
        if wrong is not None:
            claims.settle(deps, claim.receipt, ClaimState.DISPUTED, f"contradicted: {wrong}")
            return InboxState.APPLIED, f"claim {claim.receipt} contradicted: an operator decides"
        confirm_claim(deps, claim, "confirmed by Transaction Status")
        return InboxState.APPLIED, f"claim {claim.receipt} confirmed by Transaction Status"
    said = f"{event.result_code} {event.transaction_status or ''} {event.result_desc}"
    if event.result_code == SUCCESS:
        if (event.transaction_status or "").lower() in FAILED_STATUSES:
            desc = f"contradicted: M-PESA says {said}"
            claims.settle(deps, claim.receipt, ClaimState.DISPUTED, desc)
            return InboxState.APPLIED, f"claim {claim.receipt} contradicted: an operator decides"
        return InboxState.IGNORED, f"status {event.transaction_status}: asked again later"
    if event.result_code in STATUS_UNANSWERED_CODES:
        return InboxState.IGNORED, "M-PESA could not answer the query: asked again later"
    if claims.count_not_found(deps, claim.receipt, said.strip()):
        return InboxState.APPLIED, f"claim {claim.receipt}: M-PESA knows no such payment"
    return InboxState.IGNORED, "claimed payment not found yet: asked again later"


def confirm_claim(deps: MpesaDeps, claim: PaymentClaim, how: str) -> None:
    """M-PESA agrees with the claim: apply it exactly as its callback said (every step keyed by
    the receipt, so a crash midway is finished by the next confirmation), then end the wait."""
    held = apply_claim(deps, claim)
    if held is not None:
        claims.settle(deps, claim.receipt, ClaimState.DISPUTED, f"{how}, but {held}")
        return
    claims.settle(deps, claim.receipt, ClaimState.CONFIRMED, how)


def apply_claim(deps: MpesaDeps, claim: PaymentClaim) -> str | None:
    """Move the claimed money; a reason instead when it must wait for an operator."""
    if claim.source is ClaimSource.STK:
        return _apply_confirmed_stk(deps, claim)
    event = C2BEvent(
        claim.receipt, claim.amount_cents, claim.account_reference, claim.phone, claim.phone_raw
    )
    _apply_c2b(deps, event)
    return None


def _payout_status(deps: MpesaDeps, request: MpesaRequest, event: StatusResultEvent) -> Applied:
    """Transaction Status's answer about a payout, other than "Completed"."""
    said = f"{event.result_code} {event.transaction_status or ''} {event.result_desc}"
    if event.result_code == SUCCESS:
        status = (event.transaction_status or "").lower()
        if status in FAILED_STATUSES:
            confirm_payout_failure(deps, request.id, desc=f"M-PESA says: {said}")
            return InboxState.APPLIED, f"payout failed, says M-PESA: {status}"
        _evidence(deps, request.id, f"status answer: {said}")
        return InboxState.IGNORED, f"status {event.transaction_status}: checked again later"
    if event.result_code in STATUS_UNANSWERED_CODES:
        _evidence(deps, request.id, f"M-PESA could not answer: {said}")
        return InboxState.IGNORED, "M-PESA could not answer the query: asked again later"
    payout_not_found(deps, request.id, desc=f"{event.result_code} {event.result_desc}")
    return InboxState.APPLIED, f"not found at M-PESA: {event.result_code}"


def _evidence(deps: MpesaDeps, request_id: str, detail: str) -> None:
    now = deps.clock.now()
    with deps.uow() as uow:
        request = uow.mpesa_requests.get(request_id)
        assert request is not None
        record_event(uow, request, EventKind.STATUS_ANSWER, detail, now=now)
        uow.commit()


def _status_found(deps: MpesaDeps, request: MpesaRequest, event: StatusResultEvent) -> Applied:
    assert event.receipt is not None
    if request.kind is RequestKind.REVERSAL and event.receipt == request.original_receipt:
        # The payment itself, not its reversal: says nothing about whether it went back.
        return InboxState.IGNORED, "status names the original payment, not a reversal"
    if request.kind in SENT_OUT:
        settle_payout_success(
            deps,
            request.id,
            receipt=event.receipt,
            amount_cents=event.amount_cents,
            desc="confirmed by Transaction Status",
        )
        return InboxState.APPLIED, f"payout confirmed {event.receipt}"
    stk = StkResultEvent(
        request.checkout_request_id or "",
        SUCCESS,
        "confirmed by Transaction Status",
        event.amount_cents or 0,
        event.receipt,
        None,
    )
    if not stk.amount_cents:
        return InboxState.IGNORED, "status without an amount"
    return _stk_paid(deps, request, stk)


def _paybill_status(
    deps: MpesaDeps, expected: ExpectedPaybill, event: StatusResultEvent
) -> Applied:
    """Transaction Status about a paybill payment whose confirmation never came: "Completed"
    stands in for the confirmation; "not found", asked often enough, means it never happened."""
    if expected.state is not PaybillCheck.WAITING:
        return InboxState.IGNORED, f"paybill payment already {expected.state.value}"
    with deps.uow.read_only() as uow:
        claimed = expected.trans_id in uow.claims.for_receipts([expected.trans_id])
    if claimed:  # its confirmation came meanwhile: the claim's own checks settle it
        paybills.settle(deps, expected.trans_id, PaybillCheck.CONFIRMED, "confirmation received")
        return InboxState.IGNORED, "paybill payment claimed by its confirmation"
    completed = (event.transaction_status or COMPLETED).lower() == COMPLETED
    if event.result_code == SUCCESS and completed and event.receipt == expected.trans_id:
        as_claimed = claims.new_claim(
            receipt=expected.trans_id,
            source=ClaimSource.C2B,
            amount_cents=expected.amount_cents,
            account_reference=expected.account_reference,
            phone_raw=expected.phone_raw,
            phone=expected.phone,
            user_id=None,
            checkout_request_id=None,
            claimed_at=expected.created_at,
            deps=deps,
        )
        wrong = claims.contradiction(as_claimed, event)
        if wrong is not None:
            desc = f"M-PESA differs from the validation: {wrong}"
            paybills.settle(deps, expected.trans_id, PaybillCheck.UNRESOLVED, desc)
            return InboxState.APPLIED, "paybill payment differs: an operator must look"
        _apply_c2b(deps, paybills.as_confirmation(expected))
        paybills.settle(deps, expected.trans_id, PaybillCheck.CONFIRMED, "by Transaction Status")
        return InboxState.APPLIED, f"paybill payment confirmed by status {expected.trans_id}"
    if event.result_code == SUCCESS:
        return InboxState.IGNORED, f"paybill status {event.transaction_status}: asked again later"
    if event.conversation_id != expected.status_conversation_id:
        return InboxState.IGNORED, "not-found answer to an older query"
    if expected.checks < deps.policy.not_found_answers_min:
        return InboxState.IGNORED, "paybill payment not found yet: asked again later"
    paybills.settle(deps, expected.trans_id, PaybillCheck.NOT_PAID, event.result_desc[:200])
    return InboxState.APPLIED, "paybill payment never completed"


def _apply_balance(deps: MpesaDeps, event: BalanceResultEvent) -> Applied:
    now = deps.clock.now()
    with deps.uow() as uow:
        report = uow.balance_reports.by_conversation(event.conversation_id)
        if report is None:
            return InboxState.IGNORED, "balance for no report of ours"
        report.state = "received" if event.result_code == SUCCESS else "failed"
        report.working_cents, report.utility_cents = event.working_cents, event.utility_cents
        report.result_desc, report.received_at = event.result_desc[:200], now
        report.struck_at = event.completed_at
        report.after = balances.position(deps, uow, at=now)
        if report.state == "received":
            balances.record(uow, report)
        uow.balance_reports.save(report)
        uow.commit()
    return InboxState.APPLIED, "balance recorded"


# --- C2B -----------------------------------------------------------------------------------------


def match_account(uow: UnitOfWork, reference: str) -> tuple[str, str | None] | None:
    """(user id, loan id) for an account number: a loan code, or a user's own phone number."""
    compact = compact_reference(reference)
    if not compact or len(compact) > 20:
        return None
    loan = uow.loans.get_by_code(compact)
    if loan is not None:
        return loan.borrower_id, loan.id
    try:
        phone = normalise_msisdn(compact)
    except InvalidPhoneNumber:
        return None
    user = uow.users.get_by_phone(phone)
    return (user.id, None) if user is not None else None


def validate_c2b(deps: MpesaDeps, *, body: bytes, source_ip: str, enabled: bool) -> dict[str, str]:
    """The synchronous answer to a C2B validation: unknown account numbers are refused."""
    stored = store_callback(deps, kind=CallbackKind.C2B_VALIDATION, body=body, source_ip=source_ip)
    try:
        event = deps.gateway.parse_callback(CallbackKind.C2B_VALIDATION, body)
    except MalformedCallbackError:
        return C2B_REJECT if enabled else C2B_ACCEPT
    assert isinstance(event, C2BEvent)
    accepted = True
    if enabled:
        with deps.uow.read_only() as uow:
            accepted = match_account(uow, event.account_reference) is not None
    now = deps.clock.now()
    with deps.uow() as uow:
        if stored.inbox_id is not None:
            note = "accepted" if accepted else "rejected: unknown account number"
            uow.mpesa_inbox.mark(stored.inbox_id, state=InboxState.APPLIED, error=note, now=now)
        if accepted:  # its confirmation is now awaited (paybills.py)
            uow.paybills.expect(paybills.expected_from(event, now=now, policy=deps.policy))
        uow.commit()
    return C2B_ACCEPT if accepted else C2B_REJECT


def apply_pulled_payment(deps: MpesaDeps, payment: PulledPayment) -> None:
    """A paybill payment the Pull API listed and Deni never heard of (paybill_pull.py): applied
    as its confirmation would have been, keyed by the same receipt."""
    event = C2BEvent(
        payment.trans_id,
        payment.amount_cents,
        payment.account_reference,
        payment.phone,
        payment.phone_raw,
    )
    _apply_c2b(deps, event)


def _claim_c2b(deps: MpesaDeps, event: C2BEvent, *, received_at: datetime) -> Applied:
    """A paybill confirmation: money M-PESA is said to hold for an account number. Nothing is
    credited until M-PESA confirms it (claims.py); meanwhile its owner sees it arriving."""
    with deps.uow.read_only() as uow:
        matched = match_account(uow, event.account_reference)
    claim = claims.new_claim(
        receipt=event.trans_id,
        source=ClaimSource.C2B,
        amount_cents=event.amount_cents,
        account_reference=event.account_reference,
        phone_raw=event.phone_raw,
        phone=event.phone,
        user_id=matched[0] if matched else None,
        checkout_request_id=None,
        claimed_at=received_at,
        deps=deps,
    )
    return _claimed(deps, claim)


def _apply_c2b(deps: MpesaDeps, event: C2BEvent) -> Applied:
    with deps.uow.read_only() as uow:
        matched = match_account(uow, event.account_reference)
    if matched is None:
        to_suspense(
            deps,
            receipt=event.trans_id,
            amount_cents=event.amount_cents,
            source="c2b",
            account_reference=event.account_reference,
            phone=event.phone_raw,
            reason="account number matches no loan and no phone",
        )
        return InboxState.APPLIED, "suspense: unknown account number"
    user_id, loan_id = matched
    payments.record_mpesa_payment(
        deps,
        user_id=user_id,
        amount_cents=event.amount_cents,
        receipt=event.trans_id,
    )
    if loan_id is not None:
        repay_from_wallet(deps, user_id, loan_id, event.amount_cents, f"c2b:{event.trans_id}")
    return InboxState.APPLIED, f"credited {event.trans_id}"
