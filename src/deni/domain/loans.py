"""Loan rules: terms, the state machine (as a table), penalties and repayment allocation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import Enum

from deni.domain.errors import Conflict, InvalidDueDate, InvalidTransition, TooManyRequests
from deni.domain.money import LOAN_CENTS_MAX, LOAN_CENTS_MIN, format_kes, require_cents
from deni.domain.users import NAIROBI

TERM_DAYS_MAX = 365
# A request the lender never answers, or an approval the lender never funds, lapses.
REQUEST_TTL = timedelta(days=7)
FUNDING_TTL = timedelta(days=7)


class LoanState(Enum):
    REQUESTED = "requested"
    APPROVED = "approved"  # approved, waiting for the lender's wallet to hold the principal
    DISBURSING = "disbursing"
    ACTIVE = "active"
    REPAID = "repaid"
    DECLINED = "declined"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    WRITTEN_OFF = "written_off"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset(
    {
        LoanState.REPAID,
        LoanState.DECLINED,
        LoanState.CANCELLED,
        LoanState.EXPIRED,
        LoanState.WRITTEN_OFF,
    }
)


# What a member asks for by name on every channel (USSD's "my requests" and "past loans", the
# API's `state=pending` and `state=past`): a request still waiting for the lender, a loan over.
STATE_GROUPS: dict[str, frozenset[LoanState]] = {
    "pending": frozenset({LoanState.REQUESTED}),
    "past": FINAL_STATES,
}


class LoanEvent(Enum):
    APPROVE = "approve"
    FUND = "fund"  # the principal moved from the lender's wallet to the borrower's
    SETTLE = "settle"  # disbursement finished; repayments may start
    DECLINE = "decline"
    CANCEL = "cancel"
    EXPIRE = "expire"
    REPAY = "repay"  # a partial repayment
    PAY_OFF = "pay_off"  # the repayment that clears what is owed
    WRITE_OFF = "write_off"


S, E = LoanState, LoanEvent
# Every pair not in this table is refused. Tests walk all |S| x |E| pairs against it.
TRANSITIONS: dict[tuple[LoanState, LoanEvent], LoanState] = {
    (S.REQUESTED, E.APPROVE): S.APPROVED,
    (S.REQUESTED, E.DECLINE): S.DECLINED,
    (S.REQUESTED, E.CANCEL): S.CANCELLED,
    (S.REQUESTED, E.EXPIRE): S.EXPIRED,
    (S.APPROVED, E.FUND): S.DISBURSING,
    (S.APPROVED, E.CANCEL): S.CANCELLED,
    (S.APPROVED, E.EXPIRE): S.EXPIRED,
    (S.DISBURSING, E.SETTLE): S.ACTIVE,
    (S.ACTIVE, E.REPAY): S.ACTIVE,
    (S.ACTIVE, E.PAY_OFF): S.REPAID,
    (S.ACTIVE, E.WRITE_OFF): S.WRITTEN_OFF,
}
del S, E


def next_state(state: LoanState, event: LoanEvent) -> LoanState:
    target = TRANSITIONS.get((state, event))
    if target is None:
        raise InvalidTransition(f"A loan that is {state.value} cannot {event.value}.")
    assert not state.is_final, "final states have no way out"
    return target


def lapse_at(*, now: datetime, ttl: timedelta, due_date: date) -> datetime:
    """When a request nobody answered, or an approval nobody funded, lapses.

    After `ttl`, or as the due date begins in Nairobi if that comes first: money that moved on
    or after the due date would make the borrower late on the day it reached them.
    """
    assert now.tzinfo is not None
    assert ttl > timedelta(0)
    due_starts = datetime.combine(due_date, time.min, tzinfo=NAIROBI)
    return min(now + ttl, due_starts)


@dataclass(frozen=True, slots=True)
class Terms:
    principal_cents: int
    fee_cents: int
    penalty_daily_cents: int
    due_date: date

    @property
    def total_cents(self) -> int:
        return self.principal_cents + self.fee_cents


def resolve_due_date(*, due_date: date | None, term_days: int | None, today: date) -> date:
    """Take a due date or a number of days from today, never both."""
    if (due_date is None) == (term_days is None):
        raise InvalidDueDate("Give either a due date or a number of days, not both.")
    if term_days is not None:
        if isinstance(term_days, bool) or not isinstance(term_days, int):
            raise InvalidDueDate("Days must be a whole number.")
        if not 1 <= term_days <= TERM_DAYS_MAX:
            raise InvalidDueDate(f"A loan runs from 1 to {TERM_DAYS_MAX} days.")
        return today + timedelta(days=term_days)
    assert due_date is not None
    if due_date <= today:
        raise InvalidDueDate("The due date must be in the future.")
    if due_date > today + timedelta(days=TERM_DAYS_MAX):
        raise InvalidDueDate(f"The due date must be within {TERM_DAYS_MAX} days.")
    return due_date


def make_terms(
    *, principal_cents: object, fee_cents: object, penalty_daily_cents: object, due_date: date
) -> Terms:
    principal = require_cents(
        principal_cents, amount_cents_min=LOAN_CENTS_MIN, amount_cents_max=LOAN_CENTS_MAX
    )
    # A fee above the principal would be predatory; the same bound holds for the daily penalty.
    fee = require_cents(
        fee_cents,
        amount_cents_min=0,
        amount_cents_max=principal,
        what="The fee",
        limit="the amount lent",
    )
    penalty = require_cents(
        penalty_daily_cents,
        amount_cents_min=0,
        amount_cents_max=principal,
        what="The daily penalty",
        limit="the amount lent",
    )
    return Terms(principal, fee, penalty, due_date)


@dataclass(frozen=True, slots=True)
class Owed:
    penalty_cents: int
    fee_cents: int
    principal_cents: int

    def __post_init__(self) -> None:
        assert min(self.penalty_cents, self.fee_cents, self.principal_cents) >= 0

    @property
    def total_cents(self) -> int:
        return self.penalty_cents + self.fee_cents + self.principal_cents


@dataclass(frozen=True, slots=True)
class Allocation:
    penalty_cents: int
    fee_cents: int
    principal_cents: int
    excess_cents: int

    @property
    def applied_cents(self) -> int:
        return self.penalty_cents + self.fee_cents + self.principal_cents


def allocate(owed: Owed, amount_cents: int) -> Allocation:
    """Apply a payment to penalty, then fee, then principal; what is left is excess."""
    assert amount_cents > 0
    remaining_cents = amount_cents
    parts: list[int] = []
    for due_cents in (owed.penalty_cents, owed.fee_cents, owed.principal_cents):
        part_cents = min(due_cents, remaining_cents)
        parts.append(part_cents)
        remaining_cents -= part_cents
    allocation = Allocation(parts[0], parts[1], parts[2], remaining_cents)
    assert allocation.applied_cents + allocation.excess_cents == amount_cents
    assert allocation.applied_cents <= owed.total_cents
    return allocation


@dataclass(slots=True)
class Loan:
    id: str
    code: str
    borrower_id: str
    lender_id: str
    terms: Terms
    state: LoanState
    requested_at: datetime
    expires_at: datetime
    principal_paid_cents: int = 0
    fee_paid_cents: int = 0
    penalty_charged_cents: int = 0
    penalty_paid_cents: int = 0
    disbursed_at: datetime | None = None
    closed_at: datetime | None = None
    version: int = 0
    events: list[LoanEvent] = field(default_factory=list)

    def apply(self, event: LoanEvent) -> None:
        self.state = next_state(self.state, event)
        self.events.append(event)

    def owed(self) -> Owed:
        return Owed(
            penalty_cents=self.penalty_charged_cents - self.penalty_paid_cents,
            fee_cents=self.terms.fee_cents - self.fee_paid_cents,
            principal_cents=self.terms.principal_cents - self.principal_paid_cents,
        )

    def days_overdue(self, today: date) -> int:
        if self.state is not LoanState.ACTIVE:
            return 0
        return max((today - self.terms.due_date).days, 0)

    def is_overdue(self, today: date) -> bool:
        return self.days_overdue(today) > 0

    def accrue_penalty(self, today: date) -> int:
        """Charge the late penalty up to `today`; returns the cents newly charged.

        In duplum: penalties stop growing once they equal the principal still owed.
        """
        daily_cents = self.terms.penalty_daily_cents
        if daily_cents == 0 or not self.is_overdue(today):
            return 0
        principal_owed_cents = self.owed().principal_cents
        target_cents = min(self.days_overdue(today) * daily_cents, principal_owed_cents)
        added_cents = max(target_cents - self.penalty_charged_cents, 0)
        self.penalty_charged_cents += added_cents
        assert self.penalty_charged_cents >= self.penalty_paid_cents
        return added_cents

    def record_repayment(self, allocation: Allocation, now: datetime) -> None:
        assert allocation.applied_cents > 0
        owed_before = self.owed()
        assert allocation.applied_cents <= owed_before.total_cents
        self.penalty_paid_cents += allocation.penalty_cents
        self.fee_paid_cents += allocation.fee_cents
        self.principal_paid_cents += allocation.principal_cents
        if self.owed().total_cents == 0:
            self.apply(LoanEvent.PAY_OFF)
            self.closed_at = now
        else:
            self.apply(LoanEvent.REPAY)


@dataclass(frozen=True, slots=True)
class Quote:
    """What a borrower sees before submitting: the total cost of credit and the due date."""

    principal_cents: int
    fee_cents: int
    total_cents: int
    due_date: date
    term_days: int
    penalty_daily_cents: int
    penalty_max_cents: int

    def summary(self) -> str:
        return (
            f"Borrow {format_kes(self.principal_cents)}, repay {format_kes(self.total_cents)} "
            f"by {self.due_date.isoformat()} (fee {format_kes(self.fee_cents)})."
        )


def quote(terms: Terms, today: date) -> Quote:
    term_days = (terms.due_date - today).days
    assert term_days >= 1
    return Quote(
        principal_cents=terms.principal_cents,
        fee_cents=terms.fee_cents,
        total_cents=terms.total_cents,
        due_date=terms.due_date,
        term_days=term_days,
        penalty_daily_cents=terms.penalty_daily_cents,
        penalty_max_cents=terms.principal_cents if terms.penalty_daily_cents else 0,
    )


def require_repayment_amount(amount_cents: object) -> int:
    return require_cents(amount_cents, amount_cents_min=1, amount_cents_max=2 * LOAN_CENTS_MAX)


# --- How often a borrower may ask ---------------------------------------------------------------
# Each request sends the lender an SMS, so asking is bounded: a few open requests to any one
# lender, and a few a day to any one lender and in all.
OPEN_REQUESTS_TO_ONE_LENDER_MAX = 3
REQUESTS_TO_ONE_LENDER_PER_DAY_MAX = 5
REQUESTS_PER_DAY_MAX = 10
REQUEST_COUNT_WINDOW = timedelta(hours=24)
# How many of a borrower's recent requests a check reads: enough to decide every rule above.
REQUESTS_READ_MAX = 64


@dataclass(frozen=True, slots=True)
class PastRequest:
    lender_id: str
    state: LoanState
    requested_at: datetime


def require_may_request(past: list[PastRequest], *, lender_id: str, now: datetime) -> None:
    """Refuse a new request that would pass a bound; `past` are the borrower's requests made
    within REQUEST_COUNT_WINDOW, and any still waiting for an answer, newest first."""
    assert len(past) <= REQUESTS_READ_MAX
    open_to_lender = [
        p for p in past if p.lender_id == lender_id and p.state is LoanState.REQUESTED
    ]
    if len(open_to_lender) >= OPEN_REQUESTS_TO_ONE_LENDER_MAX:
        raise Conflict(
            f"You have {len(open_to_lender)} requests waiting for this lender: wait for an "
            "answer, or cancel one.",
            code="too_many_open_requests",
        )
    today = [p for p in past if now - p.requested_at < REQUEST_COUNT_WINDOW]
    to_lender = [p for p in today if p.lender_id == lender_id]
    for counted, most in (
        (to_lender, REQUESTS_TO_ONE_LENDER_PER_DAY_MAX),
        (today, REQUESTS_PER_DAY_MAX),
    ):
        if len(counted) >= most:
            oldest = min(p.requested_at for p in counted)
            wait_s = (oldest + REQUEST_COUNT_WINDOW - now).total_seconds()
            raise TooManyRequests(
                f"You asked {len(counted)} times in 24 hours, the most allowed. Try again later.",
                retry_after_s=max(1, math.ceil(wait_s)),
            )
