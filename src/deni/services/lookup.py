"""An operator looks people and loans up: read-only use cases for the operations console.

Each runs in one read-only transaction and answers frozen dataclasses, every list bounded by a
stated limit (`Listed.limit`, and `Listed.more` when there was more to show). Nothing here
checks who asks: the console's own login and roles decide who may call these.

What a page never shows: a PIN or its hash, a code sent by SMS (the gateway's kept text has it
masked; its sealed copy is never read), or a secret-named field of a callback body (masked).
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Generic, TypeVar

from deni.domain.audit import ChainRow
from deni.domain.errors import InvalidPhoneNumber, NotFound, ValidationFailed
from deni.domain.ledger import MPESA_RECEIPT_CAUSE, Hold, wallet_account_id
from deni.domain.loans import Loan
from deni.domain.mpesa import MpesaRequest, RequestKind
from deni.domain.phone import normalise_msisdn
from deni.domain.secrecy import MASK, NESTING_MAX, is_secret_field
from deni.domain.users import User, nairobi_today
from deni.services.lookup_ports import EntryLine, NotificationLine, SmsLine
from deni.services.mpesa.ports import InboxRow
from deni.services.ports import Deps, RepaymentRecord, UnitOfWork

T = TypeVar("T")

QUERY_CHARS_MAX = 64
NAME_HITS_MAX = 20
RECEIPT_HITS_MAX = 20  # per place a receipt is kept
LOANS_MAX = 20  # per role
HOLDS_MAX = 20
REQUESTS_MAX = 20
EVENTS_MAX = 30  # per request
CALLBACKS_MAX = 10  # per request
CLAIMS_MAX = 20
SMS_MAX = 30
NOTIFICATIONS_MAX = 30
AUDIT_MAX = 50
ENTRIES_MAX = 100
REPAYMENTS_MAX = 100
CALLBACK_BODY_CHARS_MAX = 4_000

_LOAN_CODE = re.compile(r"^DN[A-Z0-9]{4,10}$")
_RECEIPT = re.compile(r"^(?=.*[A-Z])(?=.*[0-9])[A-Z0-9]{6,40}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# Fields of Daraja's bodies (and the test gateway's) whose names hold "code" but no secret.
_PLAIN_FIELDS = frozenset(
    {"ResultCode", "ResponseCode", "errorCode", "BusinessShortCode", "ShortCode", "result_code"}
)


@dataclass(frozen=True, slots=True)
class Listed(Generic[T]):
    """At most `limit` rows, newest first unless said otherwise; `more`: some were left out."""

    items: tuple[T, ...]
    limit: int
    more: bool


def _listed(rows: Sequence[T], limit: int) -> Listed[T]:
    """`rows` read with a limit of `limit + 1`, so one more than shown says there were more."""
    return Listed(tuple(rows[:limit]), limit, len(rows) > limit)


class MemberState(StrEnum):
    ACTIVE = "active"
    LOCKED = "locked"  # too many wrong PINs: a lock is in force on some channel
    SUPPORT_LOCKED = "support_locked"  # customer care locked it (a SIM swap reported, say)
    CLOSED = "closed"  # closed by its owner: personal data erased


class Matched(StrEnum):
    PHONE = "phone"
    NAME = "name"
    ID = "id"
    LOAN_CODE = "loan_code"
    RECEIPT = "receipt"


# --- search ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberHit:
    user_id: str
    name: str
    phone: str
    state: MemberState
    phone_proven: bool
    created_at: datetime
    matched: Matched


@dataclass(frozen=True, slots=True)
class LoanHit:
    loan_id: str
    code: str
    state: str
    principal_cents: int
    due_date: date
    borrower_id: str
    borrower_name: str
    lender_id: str
    lender_name: str
    requested_at: datetime
    matched: Matched


class PaymentSource(StrEnum):
    """Where a receipt was found."""

    MPESA_REQUEST = "mpesa_request"  # a push or payout M-PESA settled with it
    PAYMENT_CLAIM = "payment_claim"  # money a callback said arrived
    SUSPENSE = "suspense"  # money that matched nobody
    EXPECTED_PAYBILL = "expected_paybill"  # a paybill payment seen at validation
    CALLBACK = "callback"  # a paybill callback stored under it
    LEDGER_ENTRY = "ledger_entry"  # an entry the receipt caused


@dataclass(frozen=True, slots=True)
class PaymentHit:
    source: PaymentSource
    receipt: str
    amount_cents: int | None  # None for a stored callback (its body says)
    state: str
    at: datetime
    user_id: str | None = None
    loan_id: str | None = None
    request_id: str | None = None
    entry_id: str | None = None
    inbox_id: int | None = None
    matched: Matched = Matched.RECEIPT


@dataclass(frozen=True, slots=True)
class SearchResult:
    query: str  # as searched: spaces collapsed
    members: tuple[MemberHit, ...]
    loans: tuple[LoanHit, ...]
    payments: tuple[PaymentHit, ...]
    more_names: bool  # more names matched than NAME_HITS_MAX
    phone: str | None  # the query read as a phone number (2547...), when it is one


def search(deps: Deps, *, query: str) -> SearchResult:
    """Members by phone (any Kenyan spelling), by name (a case-insensitive part of it, at most
    NAME_HITS_MAX) or by id; loans by code or id; payments by M-PESA receipt, wherever one is
    kept. Each hit says what matched. An empty or overlong query is refused
    (`lookup_query_empty`, `lookup_query_too_long`)."""
    text = _query_text(query)
    phone = _phone(text)
    compact = "".join(text.split()).upper()
    members: dict[str, MemberHit] = {}
    loans: dict[str, LoanHit] = {}
    now = deps.clock.now()
    with deps.uow.read_only() as uow:
        found_loans: list[tuple[Loan, Matched]] = []
        if phone is not None and (user := uow.users.get_by_phone(phone)) is not None:
            members[user.id] = _member_hit(user, Matched.PHONE, now)
        if _UUID.match(text.lower()):
            if (user := uow.users.get(text.lower())) is not None:
                members.setdefault(user.id, _member_hit(user, Matched.ID, now))
            if (loan := uow.loans.get(text.lower())) is not None:
                found_loans.append((loan, Matched.ID))
        if _LOAN_CODE.match(compact) and (loan := uow.loans.get_by_code(compact)) is not None:
            found_loans.append((loan, Matched.LOAN_CODE))
        payments: list[PaymentHit] = []
        if _RECEIPT.match(compact):
            payments = _payments_by_receipt(uow, compact)
            loan_ids = sorted({p.loan_id for p in payments if p.loan_id is not None})
            for loan_id in loan_ids:
                if (loan := uow.loans.get(loan_id)) is not None:
                    found_loans.append((loan, Matched.RECEIPT))
        more_names = False
        if phone is None:  # a number is never part of a name: no need to look there
            named = uow.lookup.users_named(text, limit=NAME_HITS_MAX + 1)
            more_names = len(named) > NAME_HITS_MAX
            for user in named[:NAME_HITS_MAX]:
                members.setdefault(user.id, _member_hit(user, Matched.NAME, now))
        names = uow.users.contacts(
            {u for loan, _ in found_loans for u in (loan.borrower_id, loan.lender_id)}
        )
    for loan, matched in found_loans:
        loans.setdefault(loan.id, _loan_hit(loan, matched, names))
    return SearchResult(
        text, tuple(members.values()), tuple(loans.values()), tuple(payments), more_names, phone
    )


def _query_text(query: object) -> str:
    if not isinstance(query, str) or not query.strip():
        raise ValidationFailed(
            "Type a phone number, a name, a loan code or an M-PESA receipt.",
            code="lookup_query_empty",
        )
    if len(query) > QUERY_CHARS_MAX:
        raise ValidationFailed(
            f"A search is at most {QUERY_CHARS_MAX} characters.", code="lookup_query_too_long"
        )
    return " ".join(query.split())


def _phone(text: str) -> str | None:
    try:
        return normalise_msisdn(text)
    except InvalidPhoneNumber:
        return None


def _member_state(user: User, now: datetime) -> MemberState:
    if user.is_closed:
        return MemberState.CLOSED
    if user.support_locked_at is not None:
        return MemberState.SUPPORT_LOCKED
    if _pin_locked_until(user, now) is not None:
        return MemberState.LOCKED
    return MemberState.ACTIVE


def _pin_locked_until(user: User, now: datetime) -> datetime | None:
    """The latest PIN lock in force on any channel (USSD, sign-in, in a session), if any."""
    locks = (user.locked_until, user.remote_locked_until, user.session_locked_until)
    in_force = [until for until in locks if until is not None and until > now]
    return max(in_force, default=None)


def _member_hit(user: User, matched: Matched, now: datetime) -> MemberHit:
    return MemberHit(
        user.id,
        user.name,
        user.phone,
        _member_state(user, now),
        user.phone_proven,
        user.created_at,
        matched,
    )


def _loan_hit(loan: Loan, matched: Matched, names: Mapping[str, tuple[str, str]]) -> LoanHit:
    return LoanHit(
        loan_id=loan.id,
        code=loan.code,
        state=loan.state.value,
        principal_cents=loan.terms.principal_cents,
        due_date=loan.terms.due_date,
        borrower_id=loan.borrower_id,
        borrower_name=names.get(loan.borrower_id, ("", ""))[0],
        lender_id=loan.lender_id,
        lender_name=names.get(loan.lender_id, ("", ""))[0],
        requested_at=loan.requested_at,
        matched=matched,
    )


def _payments_by_receipt(uow: UnitOfWork, receipt: str) -> list[PaymentHit]:
    hits = [
        PaymentHit(
            PaymentSource.MPESA_REQUEST,
            receipt,
            r.amount_cents,
            r.state.value,
            r.updated_at,
            user_id=r.user_id,
            loan_id=r.loan_id,
            request_id=r.id,
        )
        for r in uow.lookup.requests_with_receipt(receipt, limit=RECEIPT_HITS_MAX)
    ]
    if (claim := uow.claims.for_receipts([receipt]).get(receipt)) is not None:
        hits.append(
            PaymentHit(
                PaymentSource.PAYMENT_CLAIM,
                receipt,
                claim.amount_cents,
                claim.state.value,
                claim.claimed_at,
                user_id=claim.user_id,
            )
        )
    if (held := uow.lookup.suspense_payment(receipt)) is not None:
        hits.append(
            PaymentHit(
                PaymentSource.SUSPENSE,
                receipt,
                held.amount_cents,
                held.state.value,
                held.created_at,
                user_id=held.user_id,
                entry_id=held.entry_id,
            )
        )
    if (expected := uow.paybills.get(receipt)) is not None:
        hits.append(
            PaymentHit(
                PaymentSource.EXPECTED_PAYBILL,
                receipt,
                expected.amount_cents,
                expected.state.value,
                expected.created_at,
            )
        )
    hits.extend(
        PaymentHit(
            PaymentSource.CALLBACK,
            receipt,
            None,
            row.state.value,
            row.received_at,
            inbox_id=row.id,
        )
        for row in uow.lookup.callbacks(
            key_prefixes=[f"c2b:{receipt}:", f"c2b_validation:{receipt}"],
            limit=RECEIPT_HITS_MAX,
        )
    )
    hits.extend(
        PaymentHit(
            PaymentSource.LEDGER_ENTRY,
            receipt,
            _moved_cents(entry),
            entry.code,
            entry.created_at,
            entry_id=entry.entry_id,
        )
        for entry in uow.lookup.entries(
            causes=[(MPESA_RECEIPT_CAUSE, receipt)], limit=RECEIPT_HITS_MAX
        )
    )
    return hits


def _moved_cents(entry: EntryLine) -> int:
    return sum(p.amount_cents for p in entry.postings if p.amount_cents > 0)


# --- M-PESA requests, shared by both pages --------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestEventLine:
    attempt: int
    kind: str
    detail: str
    actor: str
    at: datetime


@dataclass(frozen=True, slots=True)
class CallbackLine:
    """A callback Daraja posted about the request, as stored (secret-named fields masked)."""

    inbox_id: int
    kind: str
    state: str
    error: str
    received_at: datetime
    body: str  # JSON re-indented, at most CALLBACK_BODY_CHARS_MAX characters
    body_truncated: bool


@dataclass(frozen=True, slots=True)
class RequestLine:
    id: str
    kind: str  # stk | b2c
    purpose: str
    state: str
    amount_cents: int
    phone: str
    loan_id: str | None
    receipt: str | None
    result_code: str
    result_desc: str
    attempt: int
    checkout_request_id: str | None
    originator_conversation_id: str | None
    awaiting_decision: bool
    created_at: datetime
    updated_at: datetime
    events: Listed[RequestEventLine]  # oldest first (payouts only keep evidence)
    callbacks: Listed[CallbackLine]  # oldest first


def _request_lines(uow: UnitOfWork, requests: Sequence[MpesaRequest]) -> list[RequestLine]:
    return [
        RequestLine(
            id=r.id,
            kind=r.kind.value,
            purpose=r.purpose.value,
            state=r.state.value,
            amount_cents=r.amount_cents,
            phone=r.phone,
            loan_id=r.loan_id,
            receipt=r.receipt,
            result_code=r.result_code,
            result_desc=r.result_desc,
            attempt=r.attempt,
            checkout_request_id=r.checkout_request_id,
            originator_conversation_id=r.originator_conversation_id,
            awaiting_decision=r.awaiting_decision,
            created_at=r.created_at,
            updated_at=r.updated_at,
            events=_listed(
                [
                    RequestEventLine(e.attempt, e.kind.value, e.detail, e.actor, e.at)
                    for e in uow.mpesa_requests.events_for(r.id, limit=EVENTS_MAX + 1)
                ],
                EVENTS_MAX,
            ),
            callbacks=_listed(
                [
                    _callback_line(row)
                    for row in uow.lookup.callbacks(
                        key_prefixes=callback_keys(r), limit=CALLBACKS_MAX + 1
                    )
                ],
                CALLBACKS_MAX,
            ),
        )
        for r in requests
    ]


def callback_keys(request: MpesaRequest) -> list[str]:
    """How the inbox dedupe keys of this request's callbacks begin (services/mpesa/callbacks.py
    `dedupe_key`): its push's result; its payout's results and queue timeouts of every
    attempt (each attempt's OriginatorConversationID is `<request id>-<attempt>`); the answers
    to its latest Transaction Status query (earlier queries' ids are not kept on the row)."""
    keys = []
    if request.checkout_request_id is not None:
        keys.append(f"stk:{request.checkout_request_id}:")
    if request.kind is RequestKind.B2C:
        keys += [f"b2c:{request.id}-", f"b2c_timeout:{request.id}-"]
    if request.status_conversation_id is not None:
        sid = request.status_conversation_id
        keys += [f"status/result:{sid}", f"status/timeout:{sid}"]
    return keys


def _callback_line(row: InboxRow) -> CallbackLine:
    body, truncated = shown_body(row.body)
    return CallbackLine(
        row.id, row.kind, row.state.value, row.error, row.received_at, body, truncated
    )


def shown_body(body: bytes) -> tuple[str, bool]:
    """A stored callback body as an operator may read it: JSON re-indented with every
    secret-named field's value masked (Daraja's ResultCode and the like are not secrets), or
    the text itself when it is not JSON; cut at CALLBACK_BODY_CHARS_MAX."""
    text = body.decode("utf-8", errors="replace")
    with contextlib.suppress(ValueError):  # not JSON: the text itself
        text = json.dumps(_masked(json.loads(text)), indent=1, ensure_ascii=False)
    if len(text) > CALLBACK_BODY_CHARS_MAX:
        return text[:CALLBACK_BODY_CHARS_MAX], True
    return text, False


def _secret(name: object) -> bool:
    return isinstance(name, str) and name not in _PLAIN_FIELDS and is_secret_field(name)


def _masked(value: object, depth: int = 0) -> object:
    if depth > NESTING_MAX:
        return MASK
    if isinstance(value, Mapping):
        # Daraja's name-value lists ({"Name": "...", "Value": ...}) name their secrets too.
        named_secret = _secret(value.get("Name")) or _secret(value.get("Key"))
        return {
            k: MASK if _secret(k) or (named_secret and k == "Value") else _masked(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_masked(v, depth + 1) for v in value]
    return value


# --- a member's page -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberSummary:
    id: str
    name: str
    phone: str  # a closed account shows its stand-in, which is not a number
    language: str
    state: MemberState
    phone_proven: bool
    phone_proven_at: datetime | None
    created_at: datetime
    closed_at: datetime | None
    support_locked_at: datetime | None
    pin_locked_until: datetime | None  # the latest PIN lock in force, on any channel
    pin_reset_at: datetime | None  # a forgotten PIN's reset: money waits a day after it


@dataclass(frozen=True, slots=True)
class HoldLine:
    hold_id: str
    amount_cents: int
    state: str  # pending, posted, voided
    hold_entry_id: str
    resolve_entry_id: str | None


@dataclass(frozen=True, slots=True)
class LoanLine:
    loan_id: str
    code: str
    state: str
    principal_cents: int
    fee_cents: int
    owed_cents: int  # with penalties accrued to today
    due_date: date
    overdue: bool
    days_overdue: int
    other_party_id: str  # the borrower on a lender's line, the lender on a borrower's
    other_party_name: str
    requested_at: datetime


@dataclass(frozen=True, slots=True)
class ClaimLine:
    receipt: str
    source: str
    amount_cents: int
    state: str
    claimed_at: datetime
    settled_at: datetime | None
    result_desc: str


@dataclass(frozen=True, slots=True)
class AuditLine:
    seq: int
    at: datetime
    actor_id: str
    channel: str
    command: str
    details: str  # JSON, as chained
    by_member: bool  # the member's own command; else a command about them


@dataclass(frozen=True, slots=True)
class MemberPage:
    member: MemberSummary
    wallet_balance_cents: int | None  # None: no wallet (never made, or a platform id)
    holds: Listed[HoldLine]
    loans_as_lender: Listed[LoanLine]
    loans_as_borrower: Listed[LoanLine]
    mpesa_requests: Listed[RequestLine]
    payment_claims: Listed[ClaimLine]
    sms: Listed[SmsLine]  # as the database-backed gateway kept them: codes masked
    notifications: Listed[NotificationLine]
    audit: Listed[AuditLine]


def member_page(deps: Deps, *, user_id: str) -> MemberPage:
    """Everything Deni keeps about one member that an operator needs, each list bounded."""
    now = deps.clock.now()
    today = nairobi_today(now)
    wallet = wallet_account_id(user_id)
    with deps.uow.read_only() as uow:
        user = uow.users.get(user_id)
        if user is None:
            raise NotFound("No such member.", code="member_not_found")
        account = uow.ledger.get_account(wallet)
        holds = uow.lookup.holds(account_id=wallet, limit=HOLDS_MAX + 1)
        lent, borrowed = (
            uow.loans.list_for(user_id=user_id, role=role, states=(), limit=LOANS_MAX + 1, offset=0)
            for role in ("lender", "borrower")
        )
        names = uow.users.contacts({u for loan in (*lent, *borrowed) for u in _parties(loan)})
        requests = uow.lookup.requests_of(user_id=user_id, limit=REQUESTS_MAX + 1)
        request_lines = _request_lines(uow, requests[:REQUESTS_MAX])
        claims = uow.lookup.claims_of(user_id, limit=CLAIMS_MAX + 1)
        sms = uow.lookup.sms_to(user.phone, limit=SMS_MAX + 1) if user.phone.isdigit() else []
        notifications = uow.lookup.notifications_of(user_id, limit=NOTIFICATIONS_MAX + 1)
        audit = uow.lookup.audit_rows(actor_id=user_id, mentioning=user_id, limit=AUDIT_MAX + 1)
    return MemberPage(
        member=_summary(user, now),
        wallet_balance_cents=account.balance_cents if account is not None else None,
        holds=_listed([_hold_line(h) for h in holds], HOLDS_MAX),
        loans_as_lender=_listed(_loan_lines(lent, today, names, mine="lender"), LOANS_MAX),
        loans_as_borrower=_listed(_loan_lines(borrowed, today, names, mine="borrower"), LOANS_MAX),
        mpesa_requests=Listed(tuple(request_lines), REQUESTS_MAX, len(requests) > REQUESTS_MAX),
        payment_claims=_listed(
            [
                ClaimLine(
                    c.receipt,
                    c.source.value,
                    c.amount_cents,
                    c.state.value,
                    c.claimed_at,
                    c.settled_at,
                    c.result_desc,
                )
                for c in claims
            ],
            CLAIMS_MAX,
        ),
        sms=_listed(sms, SMS_MAX),
        notifications=_listed(notifications, NOTIFICATIONS_MAX),
        audit=_listed(_audit_lines(audit, member_id=user_id), AUDIT_MAX),
    )


def _summary(user: User, now: datetime) -> MemberSummary:
    return MemberSummary(
        id=user.id,
        name=user.name,
        phone=user.phone,
        language=user.language,
        state=_member_state(user, now),
        phone_proven=user.phone_proven,
        phone_proven_at=user.phone_proven_at,
        created_at=user.created_at,
        closed_at=user.closed_at,
        support_locked_at=user.support_locked_at,
        pin_locked_until=_pin_locked_until(user, now),
        pin_reset_at=user.pin_reset_at,
    )


def _parties(loan: Loan) -> tuple[str, str]:
    return loan.borrower_id, loan.lender_id


def _hold_line(hold: Hold) -> HoldLine:
    return HoldLine(
        hold.id, hold.amount_cents, hold.state.value, hold.hold_entry_id, hold.resolve_entry_id
    )


def _loan_lines(
    loans: Iterable[Loan], today: date, names: Mapping[str, tuple[str, str]], *, mine: str
) -> list[LoanLine]:
    lines = []
    for stored in loans:
        loan = copy.copy(stored)
        loan.accrue_penalty(today)  # on a copy, for display; nothing is saved
        other = loan.borrower_id if mine == "lender" else loan.lender_id
        lines.append(
            LoanLine(
                loan_id=loan.id,
                code=loan.code,
                state=loan.state.value,
                principal_cents=loan.terms.principal_cents,
                fee_cents=loan.terms.fee_cents,
                owed_cents=loan.owed().total_cents,
                due_date=loan.terms.due_date,
                overdue=loan.is_overdue(today),
                days_overdue=loan.days_overdue(today),
                other_party_id=other,
                other_party_name=names.get(other, ("", ""))[0],
                requested_at=loan.requested_at,
            )
        )
    return lines


def _audit_lines(rows: Iterable[ChainRow], *, member_id: str) -> list[AuditLine]:
    return [
        AuditLine(
            r.seq,
            r.at,
            r.actor_id,
            r.channel,
            r.command,
            r.details,
            by_member=r.actor_id == member_id,
        )
        for r in rows
    ]


# --- a loan's page -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Party:
    user_id: str
    name: str
    phone: str


@dataclass(frozen=True, slots=True)
class LoanTerms:
    loan_id: str
    code: str
    state: str
    borrower: Party
    lender: Party
    principal_cents: int
    fee_cents: int
    # The penalty rule: this much a day once overdue (a Nairobi date past the due date),
    # never more in all than the principal still owed (in duplum).
    penalty_daily_cents: int
    penalty_cap_cents: int  # the principal still owed: what penalties may reach today
    due_date: date
    requested_at: datetime
    expires_at: datetime  # an unanswered request lapses then
    disbursed_at: datetime | None
    closed_at: datetime | None
    principal_paid_cents: int
    fee_paid_cents: int
    penalty_charged_cents: int  # as stored (accrued up to the last write)
    penalty_paid_cents: int
    owed_today_cents: int  # with penalties accrued to today
    penalty_owed_today_cents: int
    overdue: bool
    days_overdue: int
    version: int


class HistorySource(StrEnum):
    AUDIT = "audit"  # a command's row in the audit log, with the state it left the loan in
    LOAN_ROW = "loan_row"  # a timestamp the loan row keeps (no audit row names the loan)


@dataclass(frozen=True, slots=True)
class StateChange:
    at: datetime
    state: str  # the loan's state after it
    command: str  # the command (audit), or the timestamp's name (loan_row)
    actor_id: str
    channel: str
    amount_cents: int | None  # a repayment's or write-off's amount
    source: HistorySource


@dataclass(frozen=True, slots=True)
class LoanPage:
    terms: LoanTerms
    entries: Listed[EntryLine]  # oldest first, every posting of each
    repayments: Listed[RepaymentRecord]  # newest first
    mpesa_requests: Listed[RequestLine]  # newest first
    history: tuple[StateChange, ...]  # oldest first
    audit: Listed[AuditLine]  # every row naming the loan, newest first


def loan_page(deps: Deps, *, loan_code_or_id: str) -> LoanPage:
    """One loan in full: its terms and parties, every ledger entry touching it with all their
    postings, its repayments, the M-PESA requests made for it, and its state history."""
    text = _query_text(loan_code_or_id).lower()
    now = deps.clock.now()
    today = nairobi_today(now)
    with deps.uow.read_only() as uow:
        loan = uow.loans.get(text) if _UUID.match(text) else uow.loans.get_by_code(text.upper())
        if loan is None:
            raise NotFound("No such loan.", code="loan_not_found")
        parties = {u.id: u for u in uow.users.find(ids=list(_parties(loan)))}
        requests = uow.lookup.requests_of(loan_id=loan.id, limit=REQUESTS_MAX + 1)
        request_lines = _request_lines(uow, requests[:REQUESTS_MAX])
        # What touches the loan: its own entries (disbursement, repayments), the M-PESA
        # money behind its requests (a deposit by receipt), and their payout holds.
        holds = uow.lookup.holds(
            hold_ids=[r.hold_id for r in requests if r.hold_id is not None], limit=REQUESTS_MAX
        )
        causes = [("loan", loan.id)] + [
            (MPESA_RECEIPT_CAUSE, r.receipt) for r in requests if r.receipt is not None
        ]
        held_entries = [e for h in holds for e in (h.hold_entry_id, h.resolve_entry_id) if e]
        entries = uow.lookup.entries(causes=causes, entry_ids=held_entries, limit=ENTRIES_MAX + 1)
        repayments = uow.loans.repayments(loan.id)
        audit = uow.lookup.audit_rows(mentioning=loan.id, limit=AUDIT_MAX + 1)
    audit_lines = _audit_lines(audit, member_id=loan.borrower_id)
    return LoanPage(
        terms=_terms(loan, parties, today),
        entries=_listed(entries, ENTRIES_MAX),
        repayments=_listed(repayments[: REPAYMENTS_MAX + 1], REPAYMENTS_MAX),
        mpesa_requests=Listed(tuple(request_lines), REQUESTS_MAX, len(requests) > REQUESTS_MAX),
        history=_history(loan, audit),
        audit=_listed(audit_lines, AUDIT_MAX),
    )


def _party(user: User | None, user_id: str) -> Party:
    return Party(user_id, user.name, user.phone) if user is not None else Party(user_id, "", "")


def _terms(stored: Loan, parties: Mapping[str, User], today: date) -> LoanTerms:
    loan = copy.copy(stored)
    loan.accrue_penalty(today)  # on a copy, for display; nothing is saved
    owed = loan.owed()
    return LoanTerms(
        loan_id=loan.id,
        code=loan.code,
        state=loan.state.value,
        borrower=_party(parties.get(loan.borrower_id), loan.borrower_id),
        lender=_party(parties.get(loan.lender_id), loan.lender_id),
        principal_cents=loan.terms.principal_cents,
        fee_cents=loan.terms.fee_cents,
        penalty_daily_cents=loan.terms.penalty_daily_cents,
        penalty_cap_cents=owed.principal_cents,
        due_date=loan.terms.due_date,
        requested_at=loan.requested_at,
        expires_at=loan.expires_at,
        disbursed_at=loan.disbursed_at,
        closed_at=loan.closed_at,
        principal_paid_cents=stored.principal_paid_cents,
        fee_paid_cents=stored.fee_paid_cents,
        penalty_charged_cents=stored.penalty_charged_cents,
        penalty_paid_cents=stored.penalty_paid_cents,
        owed_today_cents=owed.total_cents,
        penalty_owed_today_cents=owed.penalty_cents,
        overdue=loan.is_overdue(today),
        days_overdue=loan.days_overdue(today),
        version=stored.version,
    )


def _history(loan: Loan, audit: Sequence[ChainRow]) -> tuple[StateChange, ...]:
    """The loan's states in order, from the audit rows of the commands that changed it (each
    names the loan and the state it left it in). Should none be found (a loan older than its
    audit rows), what the loan row's own timestamps say instead."""
    changes = []
    for row in sorted(audit, key=lambda r: r.seq):
        try:
            details = json.loads(row.details)
        except ValueError:
            continue
        if not isinstance(details, dict) or details.get("loan_id") != loan.id:
            continue
        state = details.get("state")
        if not isinstance(state, str):
            continue
        amount = details.get("amount_cents")
        changes.append(
            StateChange(
                row.at,
                state,
                row.command,
                row.actor_id,
                row.channel,
                amount if isinstance(amount, int) else None,
                HistorySource.AUDIT,
            )
        )
    if changes:
        return tuple(changes)
    derived = [
        StateChange(
            loan.requested_at,
            "requested",
            "requested_at",
            loan.borrower_id,
            "",
            None,
            HistorySource.LOAN_ROW,
        )
    ]
    if loan.disbursed_at is not None:
        derived.append(
            StateChange(
                loan.disbursed_at, "active", "disbursed_at", "", "", None, HistorySource.LOAN_ROW
            )
        )
    if loan.closed_at is not None:
        derived.append(
            StateChange(
                loan.closed_at, loan.state.value, "closed_at", "", "", None, HistorySource.LOAN_ROW
            )
        )
    return tuple(derived)
