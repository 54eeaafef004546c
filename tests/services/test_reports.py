"""The money reports on the service tier: every figure checked against the ledger and the
loans after a scripted series of deposits, loans, repayments, pushes and payouts. The same
bodies run on the fakes and (DENI_TEST_SERVICES_SQLITE=1, DENI_TEST_POSTGRES_URL) on SQLite
and PostgreSQL through adapters/db/reports.py, which holds the fake to the SQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from fractions import Fraction

import pytest

from deni.domain.ledger import EntryCode, PlatformAccount
from deni.domain.loans import Loan, LoanState
from deni.domain.mpesa import RequestState
from deni.domain.users import User, nairobi_today
from deni.ids import new_id
from deni.services import loans, reports
from deni.services.mpesa import requests
from deni.services.mpesa.ports import BalanceReport, C2BEvent, CallbackKind, MpesaDeps
from deni.services.report_ports import WALLETS_GROUP, CountAndCents
from tests.fakes.gateway import FakeMpesaGateway
from tests.services.test_mpesa import POLICY, deliver, paid_push, payout_result, send
from tests.services.test_mpesa import status_answer as status_result
from tests.services.world import World
from tests.support.builders import fund, register, register_as_stored

PIN = "3591"


@pytest.fixture
def gateway() -> FakeMpesaGateway:
    return FakeMpesaGateway()


@pytest.fixture
def deps(world: World, gateway: FakeMpesaGateway) -> MpesaDeps:
    return MpesaDeps(uow=world.uow, clock=world.clock, gateway=gateway, policy=POLICY)


def lend(
    world: World, lender: User, borrower: User, *, principal: int, fee: int = 0,
    penalty: int = 0, days: int = 7, approve: bool = True,
) -> Loan:  # fmt: skip
    loan = loans.request_loan(
        world,
        borrower_id=borrower.id,
        lender_phone=lender.phone,
        principal_cents=principal,
        fee_cents=fee,
        penalty_daily_cents=penalty,
        term_days=days,
    )
    if not approve:
        return loan
    return loans.approve_loan(world, lender_id=lender.id, loan_id=loan.id, pin=PIN)


def repay(world: World, borrower: User, loan: Loan, cents: int) -> None:
    loans.repay_loan(
        world,
        borrower_id=borrower.id,
        loan_id=loan.id,
        amount_cents=cents,
        pin=PIN,
        idempotency_key=str(uuid.uuid4()),
    )


def stk_top_up(deps: MpesaDeps, user: User, cents: int, receipt: str) -> None:
    request = requests.request_stk(
        deps, user_id=user.id, amount_cents=cents, idempotency_key=f"top-up-{receipt}"
    )
    send(deps)
    with deps.uow.read_only() as uow:
        sent = uow.mpesa_requests.get(request.id)
    assert sent is not None
    deliver(deps, CallbackKind.STK, paid_push(sent, receipt))


def withdrawal(world: World, deps: MpesaDeps, user: User, cents: int, receipt: str) -> None:
    request = requests.withdraw(
        world,
        user_id=user.id,
        pin=PIN,
        amount_cents=cents,
        idempotency_key=receipt,
        channel="api",
    )
    send(deps)
    with deps.uow.read_only() as uow:
        sent = uow.mpesa_requests.get(request.id)
    assert sent is not None
    deliver(deps, CallbackKind.B2C_RESULT, payout_result(sent, "0", receipt))


def paybill_to_suspense(deps: MpesaDeps, cents: int, receipt: str) -> None:
    """A paybill payment for no account, confirmed by Transaction Status: into suspense."""
    deliver(deps, CallbackKind.C2B_CONFIRMATION, C2BEvent(receipt, cents, "NOBODY", None, "x"))
    from deni.services.mpesa import claims

    claims.check_due(deps)
    with deps.uow.read_only() as uow:
        claim = uow.claims.lock(receipt)
    assert claim is not None
    answer = status_result(claim.status_conversation_id, "0", "Completed", receipt, cents)
    deliver(deps, CallbackKind.STATUS_RESULT, answer)


@dataclass
class Book:
    lender: User
    borrower: User
    other: User
    repaid: Loan
    active: Loan
    written_off: Loan
    waiting: Loan


def scripted(world: World, deps: MpesaDeps) -> Book:
    """A morning's business: deposits, four loans in four states, repayments, M-PESA both ways."""
    lender = register(world, name="Wanjiku", pin=PIN)
    borrower = register(world, name="Otieno", pin=PIN)
    other = register_as_stored(world, name="=HYPERLINK(1)", pin=PIN)
    fund(world, lender, 5_000_00)
    repaid = lend(world, lender, borrower, principal=1_000_00, fee=50_00)
    repay(world, borrower, repaid, 1_050_00 - 1_000_00)  # the fee from the borrower's own
    fund(world, borrower, 600_00)
    repay(world, borrower, repaid, 1_000_00)
    active = lend(world, lender, borrower, principal=2_000_00, fee=100_00, penalty=10_00)
    repay(world, borrower, active, 300_00)
    written_off = lend(world, lender, other, principal=500_00, fee=20_00)
    loans.write_off_loan(world, lender_id=lender.id, loan_id=written_off.id, pin=PIN)
    waiting = lend(world, lender, other, principal=100_00, approve=False)
    stk_top_up(deps, other, 250_00, "TKSTK00001")
    withdrawal(world, deps, lender, 400_00, "TKB2C00001")
    paybill_to_suspense(deps, 70_00, "TKC2B00001")
    return Book(lender, borrower, other, repaid, active, written_off, waiting)


# --- Trial balance ------------------------------------------------------------------------------


def test_the_trial_balance_balances_and_each_line_is_its_accounts_balance(
    world: World, deps: MpesaDeps
) -> None:
    scripted(world, deps)

    balance = reports.trial_balance(world)

    assert balance.balanced
    assert balance.debit_cents == balance.credit_cents > 0
    cached = world.rows.balances()
    by_group = {line.group: line for line in balance.lines}
    assert [line.group for line in balance.lines] == [
        *(p.value for p in PlatformAccount),
        WALLETS_GROUP,
    ]
    for platform in PlatformAccount:
        assert by_group[platform.value].balance_cents == cached[platform.value]
    wallets = sum(cents for account, cents in cached.items() if account.startswith("wallet:"))
    assert by_group[WALLETS_GROUP].balance_cents == wallets
    assert by_group[WALLETS_GROUP].accounts == 3
    assert by_group[PlatformAccount.MPESA_PAYBILL.value].balance_debit_cents == 5_920_00
    assert by_group[PlatformAccount.MPESA_B2C_FLOAT.value].balance_credit_cents == 400_00
    assert by_group[PlatformAccount.SUSPENSE.value].balance_credit_cents == 70_00
    assert by_group[PlatformAccount.FEES.value].postings == 0


def test_a_trial_balance_as_of_an_instant_leaves_out_later_postings(
    world: World, deps: MpesaDeps
) -> None:
    user = register(world, pin=PIN)
    fund(world, user, 100_00)
    cut = world.clock.now() + timedelta(seconds=1)
    world.clock.advance(timedelta(days=1))
    fund(world, user, 50_00)

    before = reports.trial_balance(world, as_of=cut)
    now = reports.trial_balance(world)

    assert before.debit_cents == 100_00
    assert now.debit_cents == 150_00
    assert before.balanced
    assert now.balanced


# --- Loan book ----------------------------------------------------------------------------------


def test_the_loan_book_shows_every_loan_on_the_book_and_matches_the_ledger(
    world: World, deps: MpesaDeps
) -> None:
    book = scripted(world, deps)
    declined = lend(world, book.lender, book.borrower, principal=100_00, approve=False)
    loans.decline_loan(world, lender_id=book.lender.id, loan_id=declined.id)
    today = nairobi_today(world.clock.now())

    page = reports.loan_book(world, as_of_day=today)

    assert page.next_after_id is None
    rows = {row.code: row for row in page.rows}
    assert declined.code not in rows  # never on the book
    assert [row.code for row in page.rows] == [
        loan.code for loan in (book.repaid, book.active, book.written_off, book.waiting)
    ]
    active = rows[book.active.code]
    assert (active.state, active.lender_name, active.borrower_name) == (
        "active",
        "Wanjiku",
        "Otieno",
    )
    assert (active.principal_cents, active.fee_cents, active.repaid_cents) == (
        2_000_00,
        100_00,
        300_00,
    )
    assert active.outstanding_cents == 1_800_00
    assert rows[book.repaid.code].outstanding_cents == 0
    assert rows[book.repaid.code].repaid_cents == 1_050_00
    assert rows[book.written_off.code].written_off_cents == 520_00
    assert rows[book.written_off.code].outstanding_cents == 0
    assert rows[book.waiting.code].state == "requested"

    # Against the ledger: what the book says was lent and repaid is what the entries moved.
    since, before = world.clock.now() - timedelta(days=1), world.clock.now() + timedelta(days=1)
    with world.uow.read_only() as uow:
        volumes = {v.code: v for v in uow.reports.entry_volumes(since=since, before=before)}
    disbursed = [r for r in page.rows if r.disbursed_at is not None]
    lent = volumes[EntryCode.LOAN_DISBURSEMENT.value]
    assert (lent.entries, lent.amount_cents) == (3, sum(r.principal_cents for r in disbursed))
    repaid = volumes[EntryCode.LOAN_REPAYMENT.value]
    assert repaid.amount_cents == sum(r.repaid_cents for r in page.rows)
    # Outstanding is what was lent and charged less what came back.
    active_rows = [r for r in page.rows if r.state == "active"]
    assert sum(r.outstanding_cents for r in active_rows) == sum(
        r.principal_cents + r.fee_cents + r.penalty_cents - r.repaid_cents for r in active_rows
    )


def test_the_loan_book_pages_and_streams_the_same_rows(world: World, deps: MpesaDeps) -> None:
    scripted(world, deps)
    today = nairobi_today(world.clock.now())
    whole = reports.loan_book(world, as_of_day=today).rows

    paged: list[reports.LoanBookRow] = []
    after: str | None = None
    while True:
        page = reports.loan_book(world, as_of_day=today, after_id=after, limit=1)
        assert len(page.rows) <= 1
        paged += page.rows
        if page.next_after_id is None:
            break
        after = page.next_after_id

    assert tuple(paged) == whole
    assert tuple(reports.iter_loan_book(world, as_of_day=today, page_size=3)) == whole
    assert len(whole) == 4


# --- Arrears ageing -----------------------------------------------------------------------------


def test_arrears_buckets_sum_to_what_active_loans_owe_and_par_is_exact(world: World) -> None:
    lender = register(world, name="Lender", pin=PIN)
    fund(world, lender, 100_000_00)
    borrowers = [register(world, pin=PIN) for _ in range(6)]
    # Due in 1, 2, 9, 40, 70, 100 days; the clock then moves 101 days: overdue by 100, 99, 92,
    # 61, 31 and 1 day(s).
    terms = [(1, 1_000_00), (2, 2_000_00), (9, 3_000_00), (40, 4_000_00), (70, 5_000_00)]
    terms.append((100, 6_000_00))
    made = [
        lend(world, lender, b, principal=p, fee=100_00, penalty=1_00, days=d)
        for b, (d, p) in zip(borrowers, terms, strict=True)
    ]
    lend(world, lender, borrowers[0], principal=7_000_00, days=200)
    repay(world, borrowers[5], made[5], 100_00)  # the fee paid: principal all owed still
    world.clock.advance(timedelta(days=101))
    today = nairobi_today(world.clock.now())

    ageing = reports.arrears_ageing(world, as_of_day=today)

    buckets = {b.name: b for b in ageing.buckets}
    assert [b.name for b in ageing.buckets] == ["current", "1-7", "8-30", "31-60", "61-90", "90+"]
    assert (buckets["current"].loans, buckets["current"].principal_cents) == (1, 7_000_00)
    assert (buckets["1-7"].loans, buckets["8-30"].loans) == (1, 0)
    assert (buckets["31-60"].loans, buckets["61-90"].loans, buckets["90+"].loans) == (1, 1, 3)
    assert buckets["1-7"].outstanding_cents == 6_000_00 + 1_00  # one day's penalty, fee paid
    assert ageing.loans == 7
    assert sum(b.outstanding_cents for b in ageing.buckets) == ageing.outstanding_cents
    assert (
        ageing.overdue_outstanding_cents
        == ageing.outstanding_cents - buckets["current"].outstanding_cents
    )
    book = reports.loan_book(world, as_of_day=today).rows
    assert ageing.outstanding_cents == sum(r.outstanding_cents for r in book)
    assert ageing.overdue_outstanding_cents == sum(
        r.outstanding_cents for r in book if r.days_overdue > 0
    )
    total = 28_000_00
    assert ageing.outstanding_principal_cents == total
    # PAR N: principal of loans more than N days overdue.
    par1, par7, par30 = (ageing.par_for(d) for d in (1, 7, 30))
    assert par1.at_risk_principal_cents == total - 7_000_00 - 6_000_00  # 1 day is not > 1
    assert par7.at_risk_principal_cents == par1.at_risk_principal_cents
    assert par30.at_risk_principal_cents == total - 7_000_00 - 6_000_00
    assert par1.ratio == Fraction(15_000_00, total)
    assert par1.basis_points == 5357  # 0.535714... rounded half up
    assert isinstance(par1.basis_points, int)


def test_arrears_with_no_active_loans_are_zero_not_a_division_by_zero(world: World) -> None:
    ageing = reports.arrears_ageing(world, as_of_day=nairobi_today(world.clock.now()))
    assert ageing.outstanding_cents == 0
    assert all(p.ratio == 0 and p.basis_points == 0 for p in ageing.par)


def test_basis_points_round_half_up() -> None:
    assert reports.PortfolioAtRisk(1, 1, 20_000).basis_points == 1  # 0.5 bp
    assert reports.PortfolioAtRisk(1, 1, 20_001).basis_points == 0
    assert reports.PortfolioAtRisk(1, 3, 3).basis_points == 10_000
    assert reports.PortfolioAtRisk(1, 1, 3).basis_points == 3333


# --- The day's M-PESA reconciliation ------------------------------------------------------------


def test_the_mpesa_day_agrees_with_the_ledger_when_every_payment_went_through_mpesa(
    world: World, deps: MpesaDeps
) -> None:
    user = register(world, pin=PIN)
    stk_top_up(deps, user, 900_00, "TKSTK00010")
    withdrawal(world, deps, user, 300_00, "TKB2C00010")
    paybill_to_suspense(deps, 70_00, "TKC2B00010")
    requests.request_stk(deps, user_id=user.id, amount_cents=5_00, idempotency_key="pending")
    with world.uow() as uow:
        uow.balance_reports.add(
            BalanceReport(
                id=new_id(),
                state="received",
                ledger_paybill_cents=970_00,
                ledger_float_cents=-300_00,
                requested_at=world.clock.now(),
                working_cents=600_00,
                utility_cents=70_00,
                received_at=world.clock.now(),
            )
        )
        uow.commit()

    day = reports.mpesa_reconciliation(deps, day=nairobi_today(world.clock.now()))

    assert {(f.kind, f.source): (f.count, f.amount_cents) for f in day.money_in} == {
        ("stk", "requests"): (1, 900_00),
        ("c2b", "claims"): (1, 70_00),
    }
    assert [(f.kind, f.count, f.amount_cents) for f in day.money_out] == [("b2c", 1, 300_00)]
    assert (day.ledger_in_cents, day.ledger_out_cents) == (970_00, 300_00)
    assert day.agrees
    assert day.suspense_received == CountAndCents(1, 70_00)
    assert day.suspense_unassigned == CountAndCents(1, 70_00)
    assert [(p.kind, p.state, p.amount_cents) for p in day.pending] == [
        ("stk", RequestState.QUEUED.value, 5_00)
    ]
    assert day.balance_report is not None
    assert day.balance_report.working_cents == 600_00


def test_money_booked_with_no_mpesa_record_shows_as_a_difference_and_other_days_are_apart(
    world: World, deps: MpesaDeps
) -> None:
    user = register(world, pin=PIN)
    stk_top_up(deps, user, 900_00, "TKSTK00020")
    first_day = nairobi_today(world.clock.now())
    world.clock.advance(timedelta(days=1))
    fund(world, user, 123_00)  # a deposit recorded by hand: no request, no claim

    first = reports.mpesa_reconciliation(deps, day=first_day)
    second = reports.mpesa_reconciliation(deps, day=nairobi_today(world.clock.now()))

    assert first.agrees
    assert first.mpesa_in_cents == 900_00
    assert (second.mpesa_in_cents, second.ledger_in_cents) == (0, 123_00)
    assert second.in_difference_cents == -123_00
    assert not second.agrees
    assert second.balance_report is None


# --- Dashboard ----------------------------------------------------------------------------------


def test_the_dashboard_figures(world: World, deps: MpesaDeps) -> None:
    book = scripted(world, deps)
    requests.request_stk(deps, user_id=book.other.id, amount_cents=5_00, idempotency_key="q")
    with world.uow() as uow:
        uow.balance_reports.add(
            BalanceReport(
                id=new_id(),
                state="received",
                ledger_paybill_cents=0,
                ledger_float_cents=0,
                requested_at=world.clock.now(),
                working_cents=5_000_00,
                utility_cents=20_00,
                received_at=world.clock.now(),
            )
        )
        uow.commit()
    world.clock.advance(timedelta(days=2))

    board = reports.dashboard(world, now=world.clock.now())

    cached = world.rows.balances()
    wallets = sum(cents for account, cents in cached.items() if account.startswith("wallet:"))
    assert board.mpesa_float.wallet_liabilities_cents == wallets
    assert board.mpesa_float.mpesa_cents == 5_020_00
    assert board.mpesa_float.suspense_cents == 70_00
    assert board.mpesa_float.ledger_mpesa_cents == 5_920_00 - 400_00
    assert board.mpesa_float.cover_cents == 5_020_00 - wallets - 70_00
    assert board.reconciliation.last_received is not None
    assert board.outbox.pending == 1  # the push just asked for
    assert board.outbox.dead == 0
    assert [(s.name, s.count, s.amount_cents) for s in board.suspense] == [
        ("under 1 day", 0, 0), ("1-7 days", 1, 70_00), ("7-30 days", 0, 0),
        ("over 30 days", 0, 0),
    ]  # fmt: skip
    states = {s.state: (s.count, s.principal_cents) for s in board.loans}
    assert states == {
        "requested": (1, 100_00), "active": (1, 2_000_00), "repaid": (1, 1_000_00),
        "written_off": (1, 500_00),
    }  # fmt: skip
    assert [p.days for p in board.par] == [1, 7, 30]
    assert all(p.at_risk_principal_cents == 0 for p in board.par)  # due in 7 days
    assert {v.name: (v.count, v.amount_cents) for v in board.today_volumes} == {
        "top_ups": (0, 0), "repayments": (0, 0),
        "paid_out_to_mpesa": (0, 0), "disbursements": (0, 0),
    }  # fmt: skip


def test_the_dashboard_counts_todays_money(world: World, deps: MpesaDeps) -> None:
    scripted(world, deps)

    board = reports.dashboard(world, now=world.clock.now())

    volumes = {v.name: (v.count, v.amount_cents) for v in board.today_volumes}
    # Deposits: two by hand, the STK top-up, the paybill payment held in suspense.
    assert volumes["top_ups"] == (4, 5_000_00 + 600_00 + 250_00 + 70_00)
    assert volumes["repayments"] == (3, 50_00 + 1_000_00 + 300_00)
    assert volumes["paid_out_to_mpesa"] == (1, 400_00)
    assert volumes["disbursements"] == (3, 1_000_00 + 2_000_00 + 500_00)
    assert board.mpesa_float.mpesa_cents is None
    assert board.mpesa_float.cover_cents is None
    assert board.loans[0].state == LoanState.REQUESTED.value
