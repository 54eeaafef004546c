"""Fifty real threads debit one wallet at once: nothing is overdrawn, nothing is lost.

Each thread runs its own unit of work on its own pooled connection; a Barrier releases them
together so they genuinely contend for the same rows. On PostgreSQL the ledger serialises them
with `SELECT ... FOR UPDATE` on the account rows (taken in id order, so transfers in both
directions cannot deadlock); on SQLite with `BEGIN IMMEDIATE`.

The PostgreSQL cases carry the `postgres` mark and skip without DENI_TEST_POSTGRES_URL; the
same scenarios run on the SQLite file database always (they are cheap there).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from sqlalchemy import func, select
from tests.support.builders import fund, register

from deni.adapters.db import tables as t
from deni.bootstrap import Deni, database_engine
from deni.config import Settings
from deni.domain.errors import InsufficientFunds
from deni.domain.ledger import (
    AccountKind,
    EntryCode,
    EntryDraft,
    PlatformAccount,
    wallet_account_id,
)
from deni.domain.loans import Loan, LoanState
from deni.domain.users import User
from deni.services import ledger, loans
from deni.services.ports import StorageBusy

pytestmark = pytest.mark.slow

THREADS = 50
POOL_SIZE = 30  # the engine allows pool_size + max_overflow = 60 connections: all 50 at once
BARRIER_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 120.0
BUSY_RETRIES_MAX = 5
PIN = "3591"

T = TypeVar("T")


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Overrides the conftest fixture: a pool big enough for every thread to hold a connection."""
    return Settings(
        environment="test",
        database_url=database_url,
        jwt_secret="test-secret-0123456789abcdef0123456789",
        pin_pepper="test-pepper-0123456789abcdef-0123456789",
        database_pool_size=POOL_SIZE,
    )


@dataclass
class Outcome:
    """What each thread got back, and how crowded it was while they ran."""

    results: list[Any] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    busy_retries: int = 0
    peak_in_flight: int = 0


def run_together(operations: list[Callable[[], T]]) -> Outcome:
    """Run every operation on its own thread, all released by one Barrier; bounded in time.

    A StorageBusy (lock timeout, deadlock victim) is retried a bounded number of times, as a
    client would; any other error is collected for the test to judge.
    """
    outcome = Outcome()
    barrier = threading.Barrier(len(operations), timeout=BARRIER_TIMEOUT_S)
    guard = threading.Lock()
    in_flight = 0

    def worker(operation: Callable[[], T]) -> None:
        nonlocal in_flight
        barrier.wait()
        with guard:
            in_flight += 1
            outcome.peak_in_flight = max(outcome.peak_in_flight, in_flight)
        try:
            for attempt in range(BUSY_RETRIES_MAX + 1):
                try:
                    result = operation()
                except StorageBusy as error:
                    with guard:
                        outcome.busy_retries += 1
                    if attempt == BUSY_RETRIES_MAX:
                        with guard:
                            outcome.errors.append(error)
                        return
                    time.sleep(0.01 * (attempt + 1))
                except Exception as error:  # collected and asserted on by the caller
                    with guard:
                        outcome.errors.append(error)
                    return
                else:
                    with guard:
                        outcome.results.append(result)
                    return
        finally:
            with guard:
                in_flight -= 1

    pool = ThreadPoolExecutor(max_workers=len(operations), thread_name_prefix="debit")
    futures = [pool.submit(worker, op) for op in operations]
    done, pending = wait(futures, timeout=RUN_TIMEOUT_S)
    # Stuck threads cannot be killed: do not wait for them, so a hang fails in bounded time.
    pool.shutdown(wait=not pending, cancel_futures=True)
    assert not pending, f"{len(pending)} threads still running after {RUN_TIMEOUT_S}s"
    for future in done:
        future.result()  # a broken barrier or a bug in the worker itself surfaces here
    assert len(outcome.results) + len(outcome.errors) == len(operations)
    return outcome


def assert_ledger_whole(deni: Deni, *, deposited_cents: int) -> None:
    """Σ postings = 0, caches equal postings, no negative wallet, and no money made or lost."""
    with deni.uow.read_only() as uow:
        totals = ledger.check(uow)
        paybill = uow.ledger.get_account(PlatformAccount.MPESA_PAYBILL.value)
    assert totals.postings_sum_cents == 0
    assert totals.unbalanced_entry_ids == ()
    assert totals.mismatched_accounts == ()
    assert totals.negative_wallets == ()
    assert paybill is not None
    assert paybill.balance_cents == deposited_cents
    with database_engine(deni).connect() as connection:
        wallets = select(func.coalesce(func.sum(t.accounts.c.balance_cents), 0)).where(
            t.accounts.c.kind == AccountKind.WALLET.value
        )
        negative = select(func.count()).where(t.accounts.c.balance_cents < 0)
        assert connection.execute(wallets).scalar_one() == deposited_cents
        assert connection.execute(negative.where(t.accounts.c.no_overdraft)).scalar_one() == 0


def assert_truly_concurrent(deni: Deni, outcome: Outcome) -> None:
    # SQLite admits one writer at a time anyway; PostgreSQL must really have had many at once.
    floor = 2 if deni.settings.is_sqlite else 10
    assert outcome.peak_in_flight >= floor, outcome.peak_in_flight


def balance(deni: Deni, user: User) -> int:
    with deni.uow.read_only() as uow:
        return ledger.wallet_balance_cents(uow, user_id=user.id)


def entries_with_code(deni: Deni, code: EntryCode) -> list[str]:
    with database_engine(deni).connect() as connection:
        query = select(t.journal_entries.c.cause_id).where(t.journal_entries.c.code == code.value)
        return list(connection.execute(query).scalars())


def request(deni: Deni, *, borrower: User, lender: User, principal_cents: int) -> Loan:
    return loans.request_loan(
        deni,
        borrower_id=borrower.id,
        lender_phone=lender.phone,
        principal_cents=principal_cents,
        fee_cents=principal_cents // 20,
        term_days=30,
    )


def approve(deni: Deni, *, lender: User, loan: Loan) -> Loan:
    return loans.approve_loan(
        deni,
        lender_id=lender.id,
        loan_id=loan.id,
        pin=PIN,
    )


def test_fifty_approvals_by_one_short_lender_fund_exactly_what_the_wallet_holds(
    deni: Deni,
) -> None:
    principal_cents = 100_000
    lender_cents = 2_350_000  # enough for 23 loans, with KES 500 left over
    lender = register(deni, name="Wanjiku", pin=PIN)
    borrowers = [register(deni, name=f"Borrower {i}", pin=PIN) for i in range(THREADS)]
    fund(deni, lender, lender_cents)
    requested = [
        request(deni, borrower=b, lender=lender, principal_cents=principal_cents) for b in borrowers
    ]

    def approval(loan: Loan) -> Callable[[], Loan]:
        return lambda: approve(deni, lender=lender, loan=loan)

    outcome = run_together([approval(loan) for loan in requested])

    assert outcome.errors == []
    assert_truly_concurrent(deni, outcome)
    fundable = lender_cents // principal_cents
    states = Counter(loan.state for loan in outcome.results)
    assert states == {LoanState.ACTIVE: fundable, LoanState.APPROVED: THREADS - fundable}
    with deni.uow.read_only() as uow:
        stored = [uow.loans.get(loan.id) for loan in requested]
    assert Counter(loan.state for loan in stored if loan) == states
    active_ids = {loan.id for loan in outcome.results if loan.state is LoanState.ACTIVE}
    disbursed = entries_with_code(deni, EntryCode.LOAN_DISBURSEMENT)
    assert sorted(disbursed) == sorted(active_ids)  # one entry per funded loan, none twice
    assert balance(deni, lender) == lender_cents - fundable * principal_cents
    funded_borrowers = {loan.borrower_id for loan in outcome.results if loan.id in active_ids}
    for borrower in borrowers:
        expected = principal_cents if borrower.id in funded_borrowers else 0
        assert balance(deni, borrower) == expected
    assert_ledger_whole(deni, deposited_cents=lender_cents)


def test_fifty_repayments_from_one_short_wallet_never_overdraw_it(deni: Deni) -> None:
    loans_count = 5
    principal_cents = 1_000_000
    repayment_cents = 100_000  # 10 per loan: never more than a loan owes (1,050,000)
    wallet_cents = 1_230_000  # covers 12 of the 50
    borrower = register(deni, name="Otieno", pin=PIN)
    friend = register(deni, name="Akinyi", pin=PIN)
    lenders = [register(deni, name=f"Lender {i}", pin=PIN) for i in range(loans_count)]
    for lender in lenders:
        fund(deni, lender, principal_cents)
    active = []
    for lender in lenders:
        loan = request(deni, borrower=borrower, lender=lender, principal_cents=principal_cents)
        active.append(approve(deni, lender=lender, loan=loan))
    assert {loan.state for loan in active} == {LoanState.ACTIVE}
    # The borrower sends most of the money on, so the wallet cannot cover every repayment.
    with deni.uow() as uow:
        ledger.transfer(
            uow,
            source_account_id=wallet_account_id(borrower.id),
            target_account_id=wallet_account_id(friend.id),
            amount_cents=loans_count * principal_cents - wallet_cents,
            code=EntryCode.TRANSFER,
            idempotency_key="setup:drain",
            cause_type="test",
            cause_id="drain",
            now=deni.clock.now(),
        )
        uow.commit()
    assert balance(deni, borrower) == wallet_cents

    def repayment(i: int) -> Callable[[], loans.Repayment]:
        return lambda: loans.repay_loan(
            deni,
            borrower_id=borrower.id,
            loan_id=active[i % loans_count].id,
            amount_cents=repayment_cents,
            pin=PIN,
            idempotency_key=f"repay-{i}",
        )

    outcome = run_together([repayment(i) for i in range(THREADS)])

    assert_truly_concurrent(deni, outcome)
    succeeded = wallet_cents // repayment_cents
    assert len(outcome.results) == succeeded
    assert all(isinstance(e, InsufficientFunds) for e in outcome.errors), outcome.errors
    assert len(outcome.errors) == THREADS - succeeded
    assert balance(deni, borrower) == wallet_cents - succeeded * repayment_cents
    # Every successful repayment is recorded exactly once: one entry, one repayment row.
    entry_ids = {r.entry_id for r in outcome.results}
    assert len(entry_ids) == succeeded
    with deni.uow.read_only() as uow:
        rows = [r for loan in active for r in uow.loans.repayments(loan.id)]
        stored = [uow.loans.get(loan.id) for loan in active]
    assert sorted(r.entry_id for r in rows) == sorted(entry_ids)
    assert sum(r.amount_cents for r in rows) == succeeded * repayment_cents
    assert len(entries_with_code(deni, EntryCode.LOAN_REPAYMENT)) == succeeded
    paid = sum(
        loan.principal_paid_cents + loan.fee_paid_cents + loan.penalty_paid_cents
        for loan in stored
        if loan
    )
    assert paid == succeeded * repayment_cents
    repaid_to_lenders = sum(balance(deni, lender) for lender in lenders)
    assert repaid_to_lenders == succeeded * repayment_cents
    assert_ledger_whole(deni, deposited_cents=loans_count * principal_cents)


def test_fifty_transfers_both_ways_between_two_wallets_do_not_deadlock(deni: Deni) -> None:
    start_cents = 1_000_000
    a_to_b_cents, b_to_a_cents = 30_000, 20_000
    alice = register(deni, name="Alice", pin=PIN)
    bob = register(deni, name="Bob", pin=PIN)
    fund(deni, alice, start_cents)
    fund(deni, bob, start_cents)
    wallets = {alice.id: wallet_account_id(alice.id), bob.id: wallet_account_id(bob.id)}

    def transfer(i: int) -> Callable[[], ledger.PostResult]:
        forward = i % 2 == 0
        source, target = (alice, bob) if forward else (bob, alice)

        def move() -> ledger.PostResult:
            with deni.uow() as uow:
                result = ledger.transfer(
                    uow,
                    source_account_id=wallets[source.id],
                    target_account_id=wallets[target.id],
                    amount_cents=a_to_b_cents if forward else b_to_a_cents,
                    code=EntryCode.TRANSFER,
                    idempotency_key=f"transfer-{i}",
                    cause_type="test",
                    cause_id=str(i),
                    now=deni.clock.now(),
                )
                uow.commit()
            return result

        return move

    outcome = run_together([transfer(i) for i in range(THREADS)])

    assert outcome.errors == []
    assert outcome.busy_retries == 0  # ordered locks: not even one deadlock victim
    assert_truly_concurrent(deni, outcome)
    assert len({r.entry_id for r in outcome.results}) == THREADS
    assert not any(r.replayed for r in outcome.results)
    each_way = THREADS // 2
    assert balance(deni, alice) == start_cents - each_way * a_to_b_cents + each_way * b_to_a_cents
    assert balance(deni, bob) == start_cents + each_way * a_to_b_cents - each_way * b_to_a_cents
    assert len(entries_with_code(deni, EntryCode.TRANSFER)) == THREADS
    assert_ledger_whole(deni, deposited_cents=2 * start_cents)


def test_deposits_racing_approvals_of_the_same_lender_never_deadlock(deni: Deni) -> None:
    """A deposit funds the lender's waiting loans; an approval locks its loan, then wallets.

    Both take loan locks before wallet locks, in id order, so PostgreSQL never has to pick a
    deadlock victim: no thread needs a retry, and every cent deposited is accounted for.
    """
    principal_cents = 100_000
    half = THREADS // 2
    lender = register(deni, name="Akinyi", pin=PIN)
    borrowers = [register(deni, name=f"Borrower {i}", pin=PIN) for i in range(half)]
    requested = [
        request(deni, borrower=b, lender=lender, principal_cents=principal_cents) for b in borrowers
    ]
    approvals = [lambda loan=loan: approve(deni, lender=lender, loan=loan) for loan in requested]
    deposits = [lambda: fund(deni, lender, principal_cents) for _ in range(half)]

    outcome = run_together([*approvals, *deposits])

    assert outcome.errors == []
    assert outcome.busy_retries == 0  # a deadlock victim would have surfaced as StorageBusy
    assert_truly_concurrent(deni, outcome)
    with deni.uow.read_only() as uow:
        stored = [uow.loans.get(loan.id) for loan in requested]
    # Every approval met the money sooner or later: all half of the loans are funded.
    assert Counter(loan.state for loan in stored if loan) == {LoanState.ACTIVE: half}
    assert sorted(entries_with_code(deni, EntryCode.LOAN_DISBURSEMENT)) == sorted(
        loan.id for loan in requested
    )
    assert balance(deni, lender) == 0
    assert_ledger_whole(deni, deposited_cents=half * principal_cents)


def test_a_credit_skips_a_late_approval_another_transaction_holds_instead_of_waiting(
    deni: Deni,
) -> None:
    """Holding the wallet, a deposit never waits for a loan lock (that could deadlock with the
    sweep, which locks the loan and then the wallet); the loan's holder funds it instead."""
    if database_engine(deni).dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: there, holding a loan holds everything")
    principal_cents = 10_000
    lender = register(deni, name="Akinyi", pin=PIN)
    borrower = register(deni, name="Baraka", pin=PIN)
    loan = request(deni, borrower=borrower, lender=lender, principal_cents=principal_cents)
    with deni.uow() as uow:  # listed before the approval: the approval is "late"
        locks = loans.lock_loans_a_credit_may_settle(uow, user_id=lender.id, now=deni.clock.now())
        uow.commit()
    assert approve(deni, lender=lender, loan=loan).state is LoanState.APPROVED
    with deni.uow() as holder:  # e.g. the sweep, about to fund it
        assert holder.loans.lock(loan.id) is not None
        fund_without_waiting = threading.Thread(
            target=_credit_and_settle, args=(deni, lender, principal_cents, locks)
        )
        fund_without_waiting.start()
        fund_without_waiting.join(timeout=BARRIER_TIMEOUT_S)
        # Had it waited, it would wait still: the holder lets go only after this.
        assert not fund_without_waiting.is_alive(), "the deposit waited for the held loan"
    with deni.uow.read_only() as uow:
        still = uow.loans.get(loan.id)
    assert still is not None
    assert still.state is LoanState.APPROVED  # skipped; the holder would fund it
    assert balance(deni, lender) == principal_cents


def _credit_and_settle(deni: Deni, user: User, cents: int, locks: loans.CreditLocks) -> None:
    with deni.uow() as uow:
        ledger.credit_from_mpesa(
            uow,
            wallet_id=wallet_account_id(user.id),
            amount_cents=cents,
            receipt="LATE0001",
            now=deni.clock.now(),
        )
        loans.settle_after_credit(uow, locks, trigger="late", now=deni.clock.now())
        uow.commit()


def test_group_committed_transfers_racing_direct_ones_never_overdraw_a_wallet(deni: Deni) -> None:
    """Half the threads hand their transfer to the entry committer (group commit), half run
    their own transaction: both lock accounts in id order, so they queue, and exactly what
    the wallet holds is spent."""
    start_cents, each_cents = 10_000, 700  # 14 transfers fit, 36 are refused
    payer = register(deni, name="Payer", pin=PIN)
    payees = [register(deni, name=f"Payee {i}", pin=PIN) for i in range(5)]
    fund(deni, payer, start_cents)
    committer = ledger.entry_committer(deni.uow, deni.clock)

    def draft(i: int) -> EntryDraft:
        return ledger.wallet_transfer(
            source_wallet_id=wallet_account_id(payer.id),
            target_wallet_id=wallet_account_id(payees[i % len(payees)].id),
            amount_cents=each_cents,
            idempotency_key=f"race-{i}",
            cause_type="test",
            cause_id=str(i),
        )

    def pay(i: int) -> Callable[[], ledger.PostResult]:
        def through_committer() -> ledger.PostResult:
            return committer.submit(draft(i)).result(timeout=RUN_TIMEOUT_S)

        def alone() -> ledger.PostResult:
            with deni.uow() as uow:
                result = ledger.post_entry(uow, draft(i), now=deni.clock.now())
                uow.commit()
            return result

        return through_committer if i % 2 else alone

    committer.start()
    try:
        outcome = run_together([pay(i) for i in range(THREADS)])
    finally:
        committer.stop()

    fits = start_cents // each_cents
    assert len(outcome.results) == fits
    assert [type(e) for e in outcome.errors] == [InsufficientFunds] * (THREADS - fits)
    assert balance(deni, payer) == start_cents - fits * each_cents
    assert sum(balance(deni, p) for p in payees) == fits * each_cents
    assert len(entries_with_code(deni, EntryCode.TRANSFER)) == fits
    assert_ledger_whole(deni, deposited_cents=start_cents)
