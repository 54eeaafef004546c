"""Loan rules: every (state, event) pair, terms, due dates, allocation, penalties, in duplum."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deni.domain.errors import InvalidAmount, InvalidDueDate, InvalidTransition
from deni.domain.loans import (
    FINAL_STATES,
    TERM_DAYS_MAX,
    TRANSITIONS,
    Allocation,
    Loan,
    LoanEvent,
    LoanState,
    Owed,
    Terms,
    allocate,
    lapse_at,
    make_terms,
    next_state,
    quote,
    require_repayment_amount,
    resolve_due_date,
)
from deni.domain.users import nairobi_today

TODAY = date(2026, 11, 26)
NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
S, E = LoanState, LoanEvent

# The table docs/design.md ("Loans") describes, written out independently of the code's table.
EXPECTED = {
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
ALL_PAIRS = list(itertools.product(LoanState, LoanEvent))


# --- the state machine -------------------------------------------------------------------------


def test_the_table_is_the_designed_one() -> None:
    assert TRANSITIONS == EXPECTED


@pytest.mark.parametrize(("state", "event"), ALL_PAIRS, ids=lambda v: v.value)
def test_every_state_event_pair(state: LoanState, event: LoanEvent) -> None:
    if (state, event) in EXPECTED:
        assert next_state(state, event) is EXPECTED[(state, event)]
    else:
        with pytest.raises(InvalidTransition) as caught:
            next_state(state, event)
        assert caught.value.code == "invalid_transition"
        assert state.value in caught.value.message
        assert event.value in caught.value.message


def test_the_walk_covers_every_pair() -> None:
    assert len(ALL_PAIRS) == len(LoanState) * len(LoanEvent) == 81


def test_final_states_have_no_way_out() -> None:
    assert {S.REPAID, S.DECLINED, S.CANCELLED, S.EXPIRED, S.WRITTEN_OFF} == FINAL_STATES
    for state in LoanState:
        assert state.is_final is (state in FINAL_STATES)
    for state, event in ALL_PAIRS:
        if state.is_final:
            assert (state, event) not in TRANSITIONS
            with pytest.raises(InvalidTransition):
                next_state(state, event)


def test_every_state_is_reachable_from_requested() -> None:
    reached, frontier = {S.REQUESTED}, [S.REQUESTED]
    while frontier:
        state = frontier.pop()
        for (source, _), target in TRANSITIONS.items():
            if source is state and target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(LoanState)


def test_every_non_final_state_can_reach_a_final_one() -> None:
    for state in LoanState:
        if state.is_final:
            continue
        seen, frontier = {state}, [state]
        while frontier:
            current = frontier.pop()
            for (source, _), target in TRANSITIONS.items():
                if source is current and target not in seen:
                    seen.add(target)
                    frontier.append(target)
        assert seen & FINAL_STATES, state


def test_loan_apply_records_events_and_refuses_bad_ones() -> None:
    loan = make_loan()
    for event in (E.APPROVE, E.FUND, E.SETTLE):
        loan.apply(event)
    assert loan.state is S.ACTIVE
    assert loan.events == [E.APPROVE, E.FUND, E.SETTLE]
    with pytest.raises(InvalidTransition):
        loan.apply(E.APPROVE)
    assert loan.state is S.ACTIVE
    assert loan.events == [E.APPROVE, E.FUND, E.SETTLE]


# --- terms and due dates -----------------------------------------------------------------------


def test_due_date_from_days() -> None:
    assert resolve_due_date(due_date=None, term_days=1, today=TODAY) == date(2026, 11, 27)
    last = resolve_due_date(due_date=None, term_days=TERM_DAYS_MAX, today=TODAY)
    assert last == TODAY + timedelta(days=TERM_DAYS_MAX)


def test_due_date_given() -> None:
    tomorrow = TODAY + timedelta(days=1)
    assert resolve_due_date(due_date=tomorrow, term_days=None, today=TODAY) == tomorrow
    limit = TODAY + timedelta(days=TERM_DAYS_MAX)
    assert resolve_due_date(due_date=limit, term_days=None, today=TODAY) == limit


@pytest.mark.parametrize(
    ("due_date", "term_days"),
    [
        (None, None),
        (TODAY + timedelta(days=3), 3),
        (TODAY, None),  # today is not in the future
        (TODAY - timedelta(days=1), None),
        (TODAY + timedelta(days=TERM_DAYS_MAX + 1), None),
        (None, 0),
        (None, -1),
        (None, TERM_DAYS_MAX + 1),
        (None, True),
        (None, 2.5),
        (None, "7"),
    ],
)
def test_bad_due_dates_are_refused(due_date: date | None, term_days: object) -> None:
    with pytest.raises(InvalidDueDate) as caught:
        resolve_due_date(due_date=due_date, term_days=term_days, today=TODAY)  # type: ignore[arg-type]
    assert caught.value.code == "invalid_due_date"


def test_make_terms_accepts_bounds() -> None:
    due = TODAY + timedelta(days=7)
    smallest = make_terms(principal_cents=1_000, fee_cents=0, penalty_daily_cents=0, due_date=due)
    assert smallest == Terms(1_000, 0, 0, due)
    largest = make_terms(
        principal_cents=25_000_000,
        fee_cents=25_000_000,
        penalty_daily_cents=25_000_000,
        due_date=due,
    )
    assert largest.total_cents == 50_000_000


@pytest.mark.parametrize(
    ("principal", "fee", "penalty"),
    [
        (999, 0, 0),
        (25_000_001, 0, 0),
        (0, 0, 0),
        (-1_000, 0, 0),
        (1_000.0, 0, 0),
        (True, 0, 0),
        (10_000, -1, 0),
        (10_000, 10_001, 0),  # a fee above the principal
        (10_000, 0, -1),
        (10_000, 0, 10_001),  # a daily penalty above the principal
        (10_000, 0.5, 0),
        (10_000, 0, "5"),
    ],
)
def test_make_terms_refuses_bad_amounts(principal: object, fee: object, penalty: object) -> None:
    with pytest.raises(InvalidAmount):
        make_terms(
            principal_cents=principal,
            fee_cents=fee,
            penalty_daily_cents=penalty,
            due_date=TODAY + timedelta(days=7),
        )


def test_quote_shows_the_total_cost_and_the_due_date() -> None:
    terms = make_terms(
        principal_cents=100_000,
        fee_cents=5_050,
        penalty_daily_cents=1_000,
        due_date=TODAY + timedelta(days=14),
    )
    offer = quote(terms, TODAY)
    assert offer.total_cents == 105_050
    assert offer.term_days == 14
    assert offer.penalty_max_cents == 100_000
    assert offer.summary() == "Borrow KES 1,000, repay KES 1,050.50 by 2026-12-10 (fee KES 50.50)."
    no_penalty = quote(
        make_terms(
            principal_cents=100_000,
            fee_cents=0,
            penalty_daily_cents=0,
            due_date=TODAY + timedelta(days=1),
        ),
        TODAY,
    )
    assert no_penalty.penalty_max_cents == 0
    assert no_penalty.term_days == 1


def test_repayment_amounts() -> None:
    assert require_repayment_amount(1) == 1
    assert require_repayment_amount(50_000_000) == 50_000_000
    for bad in (0, -1, 50_000_001, 1.0, True, "5"):
        with pytest.raises(InvalidAmount):
            require_repayment_amount(bad)


def test_a_request_lapses_after_its_ttl_when_the_due_date_is_far() -> None:
    due = TODAY + timedelta(days=30)
    assert lapse_at(now=NOW, ttl=timedelta(days=7), due_date=due) == NOW + timedelta(days=7)


def test_a_request_lapses_when_its_due_date_begins_in_nairobi() -> None:
    # 09:00 in Nairobi on 26 Nov; due 28 Nov; that day starts at 21:00 UTC on 27 Nov.
    lapse = lapse_at(now=NOW, ttl=timedelta(days=7), due_date=TODAY + timedelta(days=2))
    assert lapse == datetime(2026, 11, 27, 21, 0, tzinfo=UTC)


@given(
    minutes=st.integers(min_value=0, max_value=60 * 24 * 400),
    term_days=st.integers(min_value=1, max_value=TERM_DAYS_MAX),
    ttl_days=st.integers(min_value=1, max_value=30),
)
def test_lapse_is_never_later_than_the_ttl_nor_the_due_date(
    minutes: int, term_days: int, ttl_days: int
) -> None:
    now = NOW + timedelta(minutes=minutes)
    due = nairobi_today(now) + timedelta(days=term_days)
    lapse = lapse_at(now=now, ttl=timedelta(days=ttl_days), due_date=due)
    assert lapse <= now + timedelta(days=ttl_days)
    assert nairobi_today(lapse) <= due
    assert nairobi_today(lapse - timedelta(microseconds=1)) < due  # money moves before the day
    assert lapse > now  # a valid request always gets some time to be answered


# --- allocation: penalty, then fee, then principal ---------------------------------------------

owed_parts = st.builds(
    Owed,
    penalty_cents=st.integers(min_value=0, max_value=10**7),
    fee_cents=st.integers(min_value=0, max_value=10**7),
    principal_cents=st.integers(min_value=0, max_value=10**7),
)


def test_allocate_examples() -> None:
    owed = Owed(penalty_cents=300, fee_cents=500, principal_cents=10_000)
    assert allocate(owed, 200) == allocate_result(200, 0, 0, 0)
    assert allocate(owed, 600) == allocate_result(300, 300, 0, 0)
    assert allocate(owed, 1_000) == allocate_result(300, 500, 200, 0)
    assert allocate(owed, 10_800) == allocate_result(300, 500, 10_000, 0)
    assert allocate(owed, 11_000) == allocate_result(300, 500, 10_000, 200)


def allocate_result(penalty: int, fee: int, principal: int, excess: int) -> Allocation:
    return Allocation(penalty, fee, principal, excess)


def test_allocate_refuses_non_positive_amounts() -> None:
    for amount in (0, -1):
        with pytest.raises(AssertionError):
            allocate(Owed(0, 0, 100), amount)


def test_owed_parts_are_never_negative() -> None:
    with pytest.raises(AssertionError):
        Owed(penalty_cents=-1, fee_cents=0, principal_cents=0)


@given(owed_parts, st.integers(min_value=1, max_value=4 * 10**7))
def test_allocation_parts_sum_and_never_exceed_what_is_owed(owed: Owed, amount: int) -> None:
    result = allocate(owed, amount)
    assert result.penalty_cents + result.fee_cents + result.principal_cents == result.applied_cents
    assert result.applied_cents + result.excess_cents == amount
    assert 0 <= result.penalty_cents <= owed.penalty_cents
    assert 0 <= result.fee_cents <= owed.fee_cents
    assert 0 <= result.principal_cents <= owed.principal_cents
    assert result.applied_cents == min(amount, owed.total_cents)
    assert result.excess_cents == max(amount - owed.total_cents, 0)


@given(owed_parts, st.integers(min_value=1, max_value=4 * 10**7))
def test_allocation_order_is_penalty_then_fee_then_principal(owed: Owed, amount: int) -> None:
    result = allocate(owed, amount)
    # A later part only gets money once every earlier part is fully paid.
    if result.fee_cents > 0:
        assert result.penalty_cents == owed.penalty_cents
    if result.principal_cents > 0:
        assert result.penalty_cents == owed.penalty_cents
        assert result.fee_cents == owed.fee_cents
    if result.excess_cents > 0:
        assert result.applied_cents == owed.total_cents


# --- penalties and in duplum -------------------------------------------------------------------


def make_loan(
    *, principal: int = 10_000, fee: int = 500, daily: int = 100, term_days: int = 7
) -> Loan:
    return Loan(
        id="loan-1",
        code="DNABCDEF",
        borrower_id="borrower",
        lender_id="lender",
        terms=Terms(principal, fee, daily, TODAY + timedelta(days=term_days)),
        state=S.REQUESTED,
        requested_at=NOW,
        expires_at=NOW + timedelta(days=7),
    )


def active_loan(**kwargs: int) -> Loan:
    loan = make_loan(**kwargs)
    for event in (E.APPROVE, E.FUND, E.SETTLE):
        loan.apply(event)
    return loan


def test_no_penalty_before_or_on_the_due_date() -> None:
    loan = active_loan(term_days=7)
    due = loan.terms.due_date
    assert loan.accrue_penalty(TODAY) == 0
    assert loan.accrue_penalty(due) == 0
    assert not loan.is_overdue(due)
    assert loan.days_overdue(due) == 0
    assert loan.is_overdue(due + timedelta(days=1))
    assert loan.accrue_penalty(due + timedelta(days=1)) == 100
    assert loan.penalty_charged_cents == 100


def test_penalty_accrues_per_day_and_never_twice_for_the_same_day() -> None:
    loan = active_loan(daily=250)
    due = loan.terms.due_date
    assert loan.accrue_penalty(due + timedelta(days=3)) == 750
    assert loan.accrue_penalty(due + timedelta(days=3)) == 0
    assert loan.accrue_penalty(due + timedelta(days=4)) == 250
    assert loan.owed() == Owed(penalty_cents=1_000, fee_cents=500, principal_cents=10_000)


def test_in_duplum_caps_penalty_at_principal_owed() -> None:
    loan = active_loan(principal=10_000, daily=1_000)
    due = loan.terms.due_date
    assert loan.accrue_penalty(due + timedelta(days=9)) == 9_000
    assert loan.accrue_penalty(due + timedelta(days=10)) == 1_000
    assert loan.accrue_penalty(due + timedelta(days=11)) == 0
    assert loan.accrue_penalty(due + timedelta(days=400)) == 0
    assert loan.penalty_charged_cents == 10_000


def test_in_duplum_cap_follows_principal_paid_down() -> None:
    loan = active_loan(principal=10_000, fee=0, daily=1_000)
    due = loan.terms.due_date
    loan.accrue_penalty(due + timedelta(days=2))  # 2_000 penalty
    loan.record_repayment(allocate(loan.owed(), 8_000), NOW)  # 2_000 penalty + 6_000 principal
    assert loan.owed() == Owed(0, 0, 4_000)
    assert loan.accrue_penalty(due + timedelta(days=30)) == 2_000  # charged total = 4_000 owed
    assert loan.penalty_charged_cents == 4_000
    assert loan.accrue_penalty(due + timedelta(days=60)) == 0


def test_no_penalty_without_a_rate_or_outside_active() -> None:
    loan = active_loan(daily=0)
    assert loan.accrue_penalty(loan.terms.due_date + timedelta(days=30)) == 0
    waiting = make_loan()
    assert waiting.accrue_penalty(waiting.terms.due_date + timedelta(days=30)) == 0
    assert waiting.days_overdue(waiting.terms.due_date + timedelta(days=30)) == 0
    written_off = active_loan()
    written_off.apply(E.WRITE_OFF)
    assert written_off.accrue_penalty(written_off.terms.due_date + timedelta(days=30)) == 0


@given(
    principal=st.integers(min_value=1_000, max_value=10**6),
    fee_share=st.integers(min_value=0, max_value=100),
    daily_share=st.integers(min_value=1, max_value=100),
    steps=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=20), st.integers(min_value=0, max_value=10**6)
        ),
        max_size=25,
    ),
)
def test_penalty_is_monotonic_and_held_by_in_duplum(
    principal: int, fee_share: int, daily_share: int, steps: list[tuple[int, int]]
) -> None:
    daily = max(principal * daily_share // 100, 1)
    loan = active_loan(principal=principal, fee=principal * fee_share // 100, daily=daily)
    day = loan.terms.due_date
    for days, payment in steps:
        day += timedelta(days=days)
        charged_before = loan.penalty_charged_cents
        principal_owed = loan.owed().principal_cents
        added = loan.accrue_penalty(day)
        assert added >= 0
        assert loan.penalty_charged_cents == charged_before + added  # monotonic
        # In duplum: charges only ever grow up to the principal still owed, never past it.
        assert loan.penalty_charged_cents <= max(charged_before, principal_owed)
        assert added == 0 or loan.penalty_charged_cents <= principal_owed
        # ... and never more than the days late allow.
        if loan.state is S.ACTIVE:
            assert loan.penalty_charged_cents <= loan.days_overdue(day) * daily
        if payment and loan.state is S.ACTIVE:
            allocation = allocate(loan.owed(), payment)
            if allocation.applied_cents:
                loan.record_repayment(allocation, NOW)
        assert loan.penalty_paid_cents <= loan.penalty_charged_cents


@given(
    principal=st.integers(min_value=1_000, max_value=10**6),
    daily=st.integers(min_value=1, max_value=10**6),
    days=st.integers(min_value=0, max_value=2_000),
)
def test_without_repayments_penalty_is_days_times_rate_capped_at_principal(
    principal: int, daily: int, days: int
) -> None:
    loan = active_loan(principal=principal, daily=min(daily, principal))
    loan.accrue_penalty(loan.terms.due_date + timedelta(days=days))
    assert loan.penalty_charged_cents == min(days * min(daily, principal), principal)


# --- repayments --------------------------------------------------------------------------------


def test_partial_then_full_repayment() -> None:
    loan = active_loan(principal=10_000, fee=500, daily=0)
    loan.record_repayment(allocate(loan.owed(), 600), NOW)
    assert loan.state is S.ACTIVE
    assert (loan.fee_paid_cents, loan.principal_paid_cents) == (500, 100)
    assert loan.closed_at is None
    assert loan.events[-1] is E.REPAY
    later = NOW + timedelta(days=1)
    loan.record_repayment(allocate(loan.owed(), 50_000), later)
    assert loan.state.value == "repaid"
    assert loan.owed().total_cents == 0
    assert loan.closed_at == later
    assert loan.events[-2:] == [E.REPAY, E.PAY_OFF]


def test_a_repayment_above_what_is_owed_is_a_programmer_error() -> None:
    loan = active_loan(principal=10_000, fee=0, daily=0)
    with pytest.raises(AssertionError):
        loan.record_repayment(Allocation(0, 0, 10_001, 0), NOW)
    with pytest.raises(AssertionError):
        loan.record_repayment(Allocation(0, 0, 0, 5), NOW)


def test_a_fee_above_the_amount_lent_is_refused_as_a_fee_naming_its_own_limit() -> None:
    with pytest.raises(InvalidAmount) as refused:
        make_terms(
            principal_cents=1_500_00,
            fee_cents=5_000_00,
            penalty_daily_cents=0,
            due_date=TODAY + timedelta(days=7),
        )
    assert refused.value.message == "The fee must be at most KES 1,500, the amount lent."
    with pytest.raises(InvalidAmount) as penalty:
        make_terms(
            principal_cents=1_500_00,
            fee_cents=0,
            penalty_daily_cents=1_600_00,
            due_date=TODAY + timedelta(days=7),
        )
    assert penalty.value.message.startswith("The daily penalty must be at most KES 1,500")
