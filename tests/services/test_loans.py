"""Loans through the services: funding, expiry, overdue, write-off, audit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from deni.adapters.security import PepperedArgon2PinHasher
from deni.domain.errors import (
    AccountLocked,
    Conflict,
    Forbidden,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidAmount,
    InvalidDueDate,
    InvalidTransition,
    NotFound,
    SelfLending,
    WrongPin,
)
from deni.domain.ledger import EntryCode, wallet_account_id
from deni.domain.loans import Loan, LoanState, Owed
from deni.domain.users import User, nairobi_today
from deni.services import audit, ledger, loans, queries
from deni.services.mpesa import payments
from deni.services.mpesa.ports import MpesaPreferences
from deni.services.ports import NotificationRecord
from tests.fakes import ManualClock
from tests.services.world import World
from tests.support.builders import fund, next_receipt, register

PIN = "3591"


# --- helpers -----------------------------------------------------------------------------------


def clock_of(world: World) -> ManualClock:
    assert isinstance(world.clock, ManualClock)
    return world.clock


def request(
    world: World,
    borrower: User,
    lender: User,
    *,
    principal: int = 10_000,
    fee: int = 500,
    penalty: int = 0,
    days: int = 7,
) -> Loan:
    return loans.request_loan(
        world,
        borrower_id=borrower.id,
        lender_phone=lender.phone,
        principal_cents=principal,
        fee_cents=fee,
        penalty_daily_cents=penalty,
        term_days=days,
    )


def approve(world: World, lender: User, loan: Loan, pin: str = PIN) -> Loan:
    return loans.approve_loan(
        world,
        lender_id=lender.id,
        loan_id=loan.id,
        pin=pin,
    )


def repay(
    world: World, borrower: User, loan: Loan, cents: int, key: str = "", pin: str = PIN
) -> loans.Repayment:
    return loans.repay_loan(
        world,
        borrower_id=borrower.id,
        loan_id=loan.id,
        amount_cents=cents,
        pin=pin,
        idempotency_key=key or str(uuid.uuid4()),
    )


def write_off(world: World, lender: User, loan: Loan, pin: str = PIN) -> Loan:
    return loans.write_off_loan(
        world,
        lender_id=lender.id,
        loan_id=loan.id,
        pin=pin,
    )


def active_loan(world: World, **terms: int) -> tuple[User, User, Loan]:
    lender, borrower = register(world, name="Wanjiku"), register(world, name="Otieno")
    fund(world, lender, terms.get("principal", 10_000))
    loan = approve(world, lender, request(world, borrower, lender, **terms))
    assert loan.state is LoanState.ACTIVE
    return lender, borrower, loan


def stored(world: World, loan: Loan) -> Loan:
    with world.uow.read_only() as uow:
        found = uow.loans.get(loan.id)
    assert found is not None
    return found


def wallet(world: World, user: User) -> int:
    with world.uow.read_only() as uow:
        return ledger.wallet_balance_cents(uow, user_id=user.id)


def notes(world: World, user: User) -> list[NotificationRecord]:
    """Oldest first."""
    found = queries.list_notifications(
        world, user_id=user.id, unread_only=False, limit=100, offset=0
    )
    return found[::-1]


def kinds(world: World, user: User) -> list[str]:
    """Every kind the user was told about, sorted (one command's notifications share a time)."""
    return sorted(n.kind for n in notes(world, user))


def kinds_now(world: World, user: User) -> list[str]:
    """What the user was told at this very instant: tick the clock before the command."""
    return sorted(n.kind for n in notes(world, user) if n.created_at == world.clock.now())


def tick(world: World) -> None:
    clock_of(world).advance(timedelta(seconds=1))


def audit_rows(world: World) -> list[tuple[int, str, str]]:
    return world.rows.audit_rows()


def count(world: World, table: str) -> int:
    return world.rows.count(table)


def assert_books_whole(world: World) -> None:
    with world.uow.read_only() as uow:
        totals = ledger.check(uow)
    assert totals.postings_sum_cents == 0
    assert totals.unbalanced_entry_ids == ()
    assert totals.mismatched_accounts == ()
    assert totals.negative_wallets == ()
    assert audit.verify_audit_log(
        world,
    ).ok


# --- request, quote, refusals ------------------------------------------------------------------


def test_quote_shows_the_cost_before_anything_is_written(world: World) -> None:
    offer = loans.quote_loan(
        clock=world.clock, principal_cents=100_000, fee_cents=5_000, term_days=14
    )
    assert offer.total_cents == 105_000
    assert offer.due_date == nairobi_today(world.clock.now()) + timedelta(days=14)
    assert count(world, "loans") == 0


def test_request_notifies_the_lender_and_moves_no_money(world: World) -> None:
    lender, borrower = register(world, name="Wanjiku"), register(world, name="Otieno")
    fund(world, lender, 50_000)
    loan = request(world, borrower, lender, principal=10_000, fee=500, days=30)
    assert loan.state is LoanState.REQUESTED
    assert loan.code.startswith("DN")
    assert loan.expires_at == world.clock.now() + timedelta(days=7)
    assert stored(world, loan).state is LoanState.REQUESTED
    assert wallet(world, lender) == 50_000
    assert wallet(world, borrower) == 0
    (note,) = [n for n in notes(world, lender) if n.kind == "loan_requested"]
    assert note.loan_id == loan.id
    assert "Otieno asks to borrow KES 100, to repay KES 105" in note.body
    assert loan.code in note.body


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"principal": 999}, InvalidAmount),
        ({"principal": 25_000_001}, InvalidAmount),
        ({"principal": 0}, InvalidAmount),
        ({"fee": -1}, InvalidAmount),
        ({"days": 0}, InvalidDueDate),
        ({"days": 366}, InvalidDueDate),
    ],
)
def test_bad_requests_write_nothing(
    world: World, changes: dict[str, int], error: type[Exception]
) -> None:
    lender, borrower = register(world), register(world)
    rows_before = count(world, "audit_log")
    with pytest.raises(error):
        request(world, borrower, lender, **changes)
    assert count(world, "loans") == 0
    assert count(world, "audit_log") == rows_before


def test_no_lending_to_yourself_or_to_strangers(world: World) -> None:
    user = register(world)
    with pytest.raises(SelfLending):
        request(world, user, user)
    with pytest.raises(NotFound) as caught:
        loans.request_loan(
            world,
            borrower_id=user.id,
            lender_phone="0799999999",
            principal_cents=10_000,
            term_days=7,
        )
    assert caught.value.code == "user_not_found"
    assert count(world, "loans") == 0


def test_a_past_due_date_is_refused(world: World) -> None:
    lender, borrower = register(world), register(world)
    with pytest.raises(InvalidDueDate):
        loans.request_loan(
            world,
            borrower_id=borrower.id,
            lender_phone=lender.phone,
            principal_cents=10_000,
            due_date=nairobi_today(world.clock.now()),
        )
    assert count(world, "loans") == 0


def test_an_offline_loan_id_is_idempotent(world: World) -> None:
    lender, borrower, stranger = register(world), register(world), register(world)
    loan_id = str(uuid.uuid4())
    kwargs = {
        "lender_phone": lender.phone,
        "principal_cents": 10_000,
        "term_days": 7,
        "loan_id": loan_id,
    }
    first = loans.request_loan(world, borrower_id=borrower.id, **kwargs)  # type: ignore[arg-type]
    again = loans.request_loan(world, borrower_id=borrower.id, **kwargs)  # type: ignore[arg-type]
    assert (first.id, first.code) == (again.id, again.code) == (loan_id, first.code)
    assert count(world, "loans") == 1
    with pytest.raises(Conflict) as caught:
        loans.request_loan(world, borrower_id=stranger.id, **kwargs)  # type: ignore[arg-type]
    assert caught.value.code == "loan_id_taken"


# --- approval and funding ----------------------------------------------------------------------


def test_approval_moves_the_principal_in_one_entry(world: World) -> None:
    lender, borrower = register(world), register(world, name="Otieno")
    fund(world, lender, 30_000)
    loan = approve(world, lender, request(world, borrower, lender, principal=10_000, fee=500))
    assert loan.state is LoanState.ACTIVE
    assert loan.disbursed_at == world.clock.now()
    assert (wallet(world, lender), wallet(world, borrower)) == (20_000, 10_000)
    with world.uow.read_only() as uow:
        entry = uow.ledger.find_entry(f"disburse:{loan.id}")
    assert entry is not None
    assert entry.code is EntryCode.LOAN_DISBURSEMENT
    assert {(p.account_id, p.amount_cents) for p in entry.postings} == {
        (wallet_account_id(lender.id), 10_000),
        (wallet_account_id(borrower.id), -10_000),
    }
    assert "loan_disbursed_mpesa" in kinds(world, borrower)  # loans go on to M-PESA by default
    assert_books_whole(world)


def test_awaiting_funds_then_funded_when_money_arrives(world: World) -> None:
    lender, borrower = register(world, name="Wanjiku"), register(world)
    fund(world, lender, 4_000)
    loan = approve(world, lender, request(world, borrower, lender, principal=10_000, days=30))
    assert loan.state is LoanState.APPROVED
    assert loan.expires_at == world.clock.now() + timedelta(days=7)
    assert (wallet(world, lender), wallet(world, borrower)) == (4_000, 0)
    assert kinds(world, borrower) == ["loan_awaiting_funds"]
    assert "Wanjiku approved your loan of KES 100" in notes(world, borrower)[0].body

    fund(world, lender, 5_999)  # still one cent short
    assert stored(world, loan).state is LoanState.APPROVED
    assert wallet(world, lender) == 9_999

    tick(world)
    deposit = payments.record_mpesa_payment(
        world,
        user_id=lender.id,
        amount_cents=1,
        receipt=next_receipt(),
    )
    funded = stored(world, loan)
    assert funded.state is LoanState.ACTIVE
    assert funded.disbursed_at == world.clock.now()
    assert deposit.balance_cents == 0  # the balance reported is after the funding
    assert (wallet(world, lender), wallet(world, borrower)) == (0, 10_000)
    assert kinds_now(world, borrower) == ["loan_disbursed_mpesa"]
    assert kinds(world, borrower) == ["loan_awaiting_funds", "loan_disbursed_mpesa"]
    assert [c for _, c, _ in audit_rows(world)][-2:] == ["record_mpesa_payment", "fund_loan"]
    assert_books_whole(world)


def test_a_repayment_reaching_the_lender_funds_the_lenders_waiting_approval(world: World) -> None:
    lender, borrower, first = active_loan(world, principal=10_000, fee=500)
    newcomer = register(world, name="Achieng")
    waiting = approve(world, lender, request(world, newcomer, lender, principal=8_000))
    assert waiting.state is LoanState.APPROVED
    fund(world, borrower, 500)  # the borrower has 10,000 + 500 to repay 10,500

    repay(world, borrower, first, 10_500)

    assert stored(world, waiting).state is LoanState.ACTIVE
    assert (wallet(world, lender), wallet(world, newcomer)) == (2_500, 8_000)
    assert entries_for(world, waiting, EntryCode.LOAN_DISBURSEMENT) == 1
    assert_books_whole(world)


def test_the_sweep_funds_approvals_whose_lender_has_the_money(world: World) -> None:
    lender, borrower = register(world), register(world)
    waiting = approve(world, lender, request(world, borrower, lender, principal=3_000))
    assert waiting.state is LoanState.APPROVED
    # Money that reached the wallet without funding anything at once (as when a voided payout
    # comes back): written straight to the ledger, so no credit hook ran.
    with world.uow() as uow:
        ledger.credit_from_mpesa(
            uow,
            wallet_id=wallet_account_id(lender.id),
            amount_cents=3_000,
            receipt="SWEEP00001",
            now=world.clock.now(),
        )
        uow.commit()
    assert stored(world, waiting).state is LoanState.APPROVED

    assert (
        loans.fund_approved_loans(
            world,
        )
        == 1
    )
    assert (
        loans.fund_approved_loans(
            world,
        )
        == 0
    )

    assert stored(world, waiting).state is LoanState.ACTIVE
    assert (wallet(world, lender), wallet(world, borrower)) == (0, 3_000)
    assert_books_whole(world)


def entries_for(world: World, loan: Loan, code: EntryCode) -> int:
    return world.rows.entries_for(loan.id, code.value)


def test_waiting_loans_are_funded_oldest_first(world: World) -> None:
    lender, first_borrower, second_borrower = register(world), register(world), register(world)
    first = approve(world, lender, request(world, first_borrower, lender, principal=6_000))
    clock_of(world).advance(timedelta(minutes=1))
    second = approve(world, lender, request(world, second_borrower, lender, principal=5_000))
    fund(world, lender, 10_000)  # enough for one of them only
    assert stored(world, first).state is LoanState.ACTIVE
    assert stored(world, second).state is LoanState.APPROVED
    fund(world, lender, 1_000)
    assert stored(world, second).state is LoanState.ACTIVE
    assert wallet(world, lender) == 0
    assert (wallet(world, first_borrower), wallet(world, second_borrower)) == (6_000, 5_000)


def test_wrong_pin_does_not_approve_and_three_lock(world: World) -> None:
    lender, borrower = register(world), register(world)
    fund(world, lender, 50_000)
    loan = request(world, borrower, lender)
    for _ in range(2):
        with pytest.raises(WrongPin):
            approve(world, lender, loan, pin="9999")
    with pytest.raises(AccountLocked):
        approve(world, lender, loan, pin="9999")
    with pytest.raises(AccountLocked):  # fail closed: even the right PIN is refused now
        approve(world, lender, loan)
    assert stored(world, loan).state is LoanState.REQUESTED
    assert wallet(world, lender) == 50_000
    # Approved through the API (the helper's channel): a remote lock, 15 minutes.
    assert "pin_locked_remote" in kinds(world, lender)
    clock_of(world).advance(timedelta(minutes=15))
    assert approve(world, lender, loan).state is LoanState.ACTIVE


def test_a_pin_hash_of_another_cost_is_remade_at_todays_on_the_next_right_pin(
    world: World,
) -> None:
    lender, borrower = register(world), register(world)
    fund(world, lender, 50_000)
    old = PepperedArgon2PinHasher(
        pepper="test-pepper-0123456789abcdef", memory_cost_kib=2048, time_cost=2
    )
    world.rows.set_pin_hash(lender.id, old.hash(PIN))
    assert world.hasher.needs_rehash(pin_hash_of(world, lender))
    loan = request(world, borrower, lender)
    with pytest.raises(WrongPin):  # a wrong PIN changes nothing about the hash
        approve(world, lender, loan, pin="9999")
    assert world.hasher.needs_rehash(pin_hash_of(world, lender))
    assert approve(world, lender, loan).state is LoanState.ACTIVE
    remade = pin_hash_of(world, lender)
    assert not world.hasher.needs_rehash(remade)
    assert world.hasher.verify(PIN, remade)


def pin_hash_of(world: World, user: User) -> str:
    return world.rows.pin_hash(user.id)


def credit_without_settling(world: World, user: User, cents: int) -> None:
    """Money reaches the wallet the way a deposit writes it, but nothing is settled yet."""
    receipt = next_receipt()
    with world.uow() as uow:
        ledger.credit_from_mpesa(
            uow,
            wallet_id=wallet_account_id(user.id),
            amount_cents=cents,
            receipt=receipt,
            now=world.clock.now(),
        )
        uow.commit()


def test_a_credit_funds_an_approval_that_committed_after_its_loans_were_listed(
    world: World,
) -> None:
    """The race a deposit can lose: an approval found the wallet short and committed after
    the deposit listed (and locked) the waiting loans. The deposit funds it all the same."""
    lender, borrower = register(world), register(world)
    loan = request(world, borrower, lender)
    with world.uow() as uow:  # the deposit lists the lender's waiting loans: none yet
        locks = loans.lock_loans_a_credit_may_settle(uow, user_id=lender.id, now=world.clock.now())
        uow.commit()
    assert locks.waiting_ids == ()
    assert approve(world, lender, loan).state is LoanState.APPROVED  # short: waits for funds
    credit_without_settling(world, lender, 10_000)
    with world.uow() as uow:
        loans.settle_after_credit(uow, locks, trigger="late", now=world.clock.now())
        uow.commit()
    assert stored(world, loan).state is LoanState.ACTIVE
    assert (wallet(world, lender), wallet(world, borrower)) == (0, 10_000)


def test_a_batch_of_credits_funds_the_approvals_waiting_for_each_wallet(world: World) -> None:
    lenders = [register(world), register(world)]
    borrower = register(world)
    waiting = [request(world, borrower, lender) for lender in lenders]
    for lender, loan in zip(lenders, waiting, strict=True):
        assert approve(world, lender, loan).state is LoanState.APPROVED  # short: waits
    credits = [payments.Credit(lender.id, 10_000, next_receipt()) for lender in lenders]
    with world.uow() as uow:
        locks = loans.lock_loans_credits_may_settle(
            uow, user_ids=[lenders[0].id], now=world.clock.now()
        )
        assert locks[lenders[0].id].waiting_ids == (waiting[0].id,)
        deposits = payments.credit_wallets(uow, credits, now=world.clock.now())
        uow.commit()
    assert [d.replayed for d in deposits] == [False, False]
    assert [stored(world, loan).state for loan in waiting] == [LoanState.ACTIVE] * 2
    assert [wallet(world, lender) for lender in lenders] == [0, 0]
    assert wallet(world, borrower) == 20_000


def test_late_approvals_of_several_wallets_are_funded_in_one_pass(world: World) -> None:
    """A batch of credits leaves late approvals (committed after its listing) to one pass at
    the end, for all its wallets (fund_late_approvals)."""
    lenders = [register(world), register(world)]
    borrower = register(world)
    with world.uow() as uow:  # the batch lists the lenders' waiting loans: none yet
        locks = loans.lock_loans_credits_may_settle(
            uow, user_ids=[lender.id for lender in lenders], now=world.clock.now()
        )
        uow.commit()
    late = [request(world, borrower, lender) for lender in lenders]
    for lender, loan in zip(lenders, late, strict=True):
        assert approve(world, lender, loan).state is LoanState.APPROVED
        credit_without_settling(world, lender, 10_000)
    with world.uow() as uow:
        funded = loans.fund_late_approvals(uow, list(locks.values()), now=world.clock.now())
        uow.commit()
    assert funded == 2
    assert [stored(world, loan).state for loan in late] == [LoanState.ACTIVE] * 2
    assert wallet(world, borrower) == 20_000


def test_only_the_lender_approves_and_strangers_see_nothing(world: World) -> None:
    lender, borrower, stranger = register(world), register(world), register(world)
    loan = request(world, borrower, lender)
    with pytest.raises(Forbidden) as forbidden:
        approve(world, borrower, loan)
    assert forbidden.value.code == "not_the_lender"
    with pytest.raises(NotFound) as missing:
        approve(world, stranger, loan)
    assert missing.value.code == "loan_not_found"
    with pytest.raises(NotFound):
        loans.decline_loan(world, lender_id=stranger.id, loan_id=loan.id)
    with pytest.raises(Forbidden):
        loans.cancel_loan(world, borrower_id=lender.id, loan_id=loan.id)
    assert stored(world, loan).state is LoanState.REQUESTED


def test_decline_and_cancel(world: World) -> None:
    lender, borrower = register(world, name="Wanjiku"), register(world, name="Otieno")
    declined = loans.decline_loan(
        world,
        lender_id=lender.id,
        loan_id=request(world, borrower, lender).id,
    )
    assert declined.state is LoanState.DECLINED
    assert declined.closed_at == world.clock.now()
    assert kinds(world, borrower) == ["loan_declined"]
    to_cancel = request(world, borrower, lender)
    tick(world)
    cancelled = loans.cancel_loan(world, borrower_id=borrower.id, loan_id=to_cancel.id)
    assert cancelled.state is LoanState.CANCELLED
    assert kinds_now(world, lender) == ["loan_cancelled"]
    with pytest.raises(InvalidTransition):
        approve(world, lender, declined)
    with pytest.raises(InvalidTransition):
        approve(world, lender, cancelled)


def test_a_borrower_may_cancel_while_awaiting_funds_and_no_money_moves(world: World) -> None:
    lender, borrower = register(world), register(world)
    loan = approve(world, lender, request(world, borrower, lender))
    assert loan.state is LoanState.APPROVED
    loans.cancel_loan(world, borrower_id=borrower.id, loan_id=loan.id)
    fund(world, lender, 50_000)
    assert stored(world, loan).state is LoanState.CANCELLED
    assert (wallet(world, lender), wallet(world, borrower)) == (50_000, 0)


def test_an_active_loan_cannot_be_cancelled_or_declined(world: World) -> None:
    lender, borrower, loan = active_loan(world)
    with pytest.raises(InvalidTransition):
        loans.cancel_loan(world, borrower_id=borrower.id, loan_id=loan.id)
    with pytest.raises(InvalidTransition):
        loans.decline_loan(world, lender_id=lender.id, loan_id=loan.id)
    assert stored(world, loan).state is LoanState.ACTIVE


# --- expiry ------------------------------------------------------------------------------------


def test_unanswered_and_unfunded_loans_expire_with_notice_to_both(world: World) -> None:
    lender, borrower = register(world, name="Wanjiku"), register(world, name="Otieno")
    unanswered = request(world, borrower, lender, days=30)
    unfunded = approve(world, lender, request(world, borrower, lender, days=30))
    assert unfunded.state is LoanState.APPROVED
    clock_of(world).advance(timedelta(days=7) - timedelta(seconds=1))
    assert (
        loans.expire_stale_loans(
            world,
        )
        == 0
    )
    clock_of(world).advance(timedelta(days=1))
    assert (
        loans.expire_stale_loans(
            world,
        )
        == 2
    )
    for loan in (unanswered, unfunded):
        expired = stored(world, loan)
        assert expired.state is LoanState.EXPIRED
        assert expired.closed_at == world.clock.now()
    for user, other in ((borrower, "Wanjiku"), (lender, "Otieno")):
        expired_notes = [n for n in notes(world, user) if n.kind == "loan_expired"]
        assert {n.loan_id for n in expired_notes} == {unanswered.id, unfunded.id}
        assert all(other in n.body for n in expired_notes)
    assert (
        loans.expire_stale_loans(
            world,
        )
        == 0
    )
    fund(world, lender, 50_000)  # an expired approval is never funded afterwards
    assert stored(world, unfunded).state is LoanState.EXPIRED
    assert wallet(world, borrower) == 0
    assert_books_whole(world)


def test_approval_restarts_the_clock_for_funding(world: World) -> None:
    lender, borrower = register(world), register(world)
    loan = request(world, borrower, lender, days=30)
    clock_of(world).advance(timedelta(days=5))
    approve(world, lender, loan)
    clock_of(world).advance(timedelta(days=3))  # 8 days after the request, 3 after approval
    assert (
        loans.expire_stale_loans(
            world,
        )
        == 0
    )
    assert stored(world, loan).state is LoanState.APPROVED
    clock_of(world).advance(timedelta(days=4))
    assert (
        loans.expire_stale_loans(
            world,
        )
        == 1
    )


def test_approving_after_expiry_is_refused_and_the_loan_expires(world: World) -> None:
    lender, borrower = register(world), register(world)
    fund(world, lender, 50_000)
    loan = request(world, borrower, lender, days=30)
    clock_of(world).advance(timedelta(days=8))
    with pytest.raises(Conflict) as caught:
        approve(world, lender, loan)
    assert caught.value.code == "loan_expired"
    assert stored(world, loan).state is LoanState.EXPIRED  # kept, though the command failed
    assert wallet(world, lender) == 50_000
    assert "loan_expired" in kinds(world, borrower)
    with pytest.raises(InvalidTransition):
        approve(world, lender, loan)


def test_money_arriving_after_the_due_date_does_not_start_a_late_loan(world: World) -> None:
    """Funding that comes after the agreed due date would make the borrower late on day one."""
    lender, borrower = register(world), register(world)
    loan = approve(world, lender, request(world, borrower, lender, days=3, penalty=100))
    assert loan.state is LoanState.APPROVED
    clock_of(world).advance(timedelta(days=5))
    fund(world, lender, 50_000)
    after = stored(world, loan)
    assert after.state is LoanState.EXPIRED
    assert (wallet(world, lender), wallet(world, borrower)) == (50_000, 0)


def test_a_short_loan_lapses_when_its_due_date_begins(world: World) -> None:
    lender, borrower = register(world), register(world)
    loan = request(world, borrower, lender, days=2)
    # Requested 09:00 on 26 Nov in Nairobi, due 28 Nov: lapses at 00:00 on 28 Nov, Nairobi time.
    assert loan.expires_at == datetime(2026, 11, 27, 21, 0, tzinfo=UTC)
    clock_of(world).advance(timedelta(hours=12))
    approved = approve(world, lender, loan)
    assert approved.state is LoanState.APPROVED
    assert approved.expires_at == datetime(2026, 11, 27, 21, 0, tzinfo=UTC)


def test_a_request_cannot_be_approved_once_its_due_date_has_come(world: World) -> None:
    lender, borrower = register(world), register(world)
    fund(world, lender, 50_000)
    loan = request(world, borrower, lender, days=2)
    clock_of(world).advance(timedelta(days=2))
    with pytest.raises(Conflict) as caught:
        approve(world, lender, loan)
    assert caught.value.code == "loan_expired"
    assert wallet(world, lender) == 50_000
    assert (
        loans.expire_stale_loans(
            world,
        )
        == 0
    )


def test_the_sweep_expires_requests_whose_due_date_came_first(world: World) -> None:
    lender, borrower = register(world), register(world)
    loan = request(world, borrower, lender, days=2)
    clock_of(world).advance(timedelta(days=1))
    assert (
        loans.expire_stale_loans(
            world,
        )
        == 0
    )
    clock_of(world).advance(timedelta(days=1))
    assert (
        loans.expire_stale_loans(
            world,
        )
        == 1
    )
    assert stored(world, loan).state is LoanState.EXPIRED


# --- repayment ---------------------------------------------------------------------------------


def test_partial_then_full_repayment_with_excess_kept(world: World) -> None:
    lender, borrower, loan = active_loan(world, principal=10_000, fee=500)
    fund(world, borrower, 5_000)  # 15_000 in the wallet
    first = repay(world, borrower, loan, 2_000)
    assert (first.allocation.fee_cents, first.allocation.principal_cents) == (500, 1_500)
    assert first.loan.state is LoanState.ACTIVE
    assert wallet(world, borrower) == 13_000
    tick(world)
    second = repay(world, borrower, loan, 12_000)
    assert second.allocation.principal_cents == 8_500
    assert second.allocation.excess_cents == 3_500
    assert second.loan.state is LoanState.REPAID
    assert wallet(world, borrower) == 13_000 - 8_500
    assert wallet(world, lender) == 10_500
    assert kinds_now(world, borrower) == kinds_now(world, lender) == ["loan_repaid"]
    detail = queries.loan_detail(world, user_id=borrower.id, loan_id=loan.id)
    assert sorted(r.amount_cents for r in detail.repayments) == [2_000, 8_500]
    with pytest.raises(Conflict) as caught:
        repay(world, borrower, loan, 1)
    assert caught.value.code == "loan_not_active"
    assert_books_whole(world)


def test_repaying_more_than_the_wallet_holds_is_refused(world: World) -> None:
    _, borrower, loan = active_loan(world, principal=10_000, fee=500)
    with pytest.raises(InsufficientFunds):
        repay(world, borrower, loan, 10_001)  # owes 10_500, holds 10_000
    assert wallet(world, borrower) == 10_000
    assert stored(world, loan).principal_paid_cents == 0
    fund(world, borrower, 500)
    assert repay(world, borrower, loan, 10**6).loan.state is LoanState.REPAID
    assert wallet(world, borrower) == 0


def test_only_the_borrower_repays_and_the_refusal_says_so(world: World) -> None:
    lender, _, loan = active_loan(world, principal=10_000, fee=0)
    with pytest.raises(Forbidden) as refused:
        repay(world, lender, loan, 1_000)
    assert refused.value.code == "not_the_borrower"
    assert str(refused.value) == "Only the borrower can do this."
    assert stored(world, loan).principal_paid_cents == 0


def test_a_repayment_key_is_used_once(world: World) -> None:
    lender, borrower, loan = active_loan(world, principal=10_000, fee=0)
    first = repay(world, borrower, loan, 3_000, key="pay-1")
    again = repay(world, borrower, loan, 3_000, key="pay-1")
    assert again.entry_id == first.entry_id
    assert wallet(world, borrower) == 7_000
    assert stored(world, loan).principal_paid_cents == 3_000
    fund(world, lender, 10_000)
    other = approve(world, lender, request(world, borrower, lender, principal=10_000))
    with pytest.raises(IdempotencyConflict):
        repay(world, borrower, other, 3_000, key="pay-1")


def test_only_the_borrower_repays(world: World) -> None:
    lender, _, loan = active_loan(world)
    with pytest.raises(Forbidden):
        repay(world, lender, loan, 100)


# --- overdue, penalties, in duplum -------------------------------------------------------------


def test_penalties_accrue_daily_and_stop_at_the_principal_owed(world: World) -> None:
    lender, borrower, loan = active_loan(world, principal=10_000, fee=500, penalty=1_000, days=7)
    clock = clock_of(world)

    def owed() -> Owed:
        detail = queries.loan_detail(world, user_id=borrower.id, loan_id=loan.id)
        return detail.view.owed

    clock.advance(timedelta(days=7))  # the due date: not late yet
    assert owed() == Owed(0, 500, 10_000)
    clock.advance(timedelta(days=1))
    assert owed() == Owed(1_000, 500, 10_000)
    clock.advance(timedelta(days=2))
    assert owed() == Owed(3_000, 500, 10_000)
    # Pay 6_000: penalty 3_000, fee 500, principal 2_500. Principal owed is now 7_500.
    paid = repay(world, borrower, loan, 6_000)
    assert (paid.allocation.penalty_cents, paid.allocation.fee_cents) == (3_000, 500)
    assert paid.allocation.principal_cents == 2_500
    for _ in range(30):
        clock.advance(timedelta(days=1))
    # In duplum: the penalty charged stops at the principal still owed (7_500).
    assert owed() == Owed(7_500 - 3_000, 0, 7_500)
    assert stored(world, loan).penalty_charged_cents == 3_000  # reads never save
    assert wallet(world, borrower) == 4_000
    # Arriving money sweeps the wallet into the overdue loan (penalty first) and saves the accrual.
    fund(world, borrower, 1)
    after = stored(world, loan)
    assert (after.penalty_charged_cents, after.penalty_paid_cents) == (7_500, 3_000 + 4_001)
    assert wallet(world, borrower) == 0
    assert wallet(world, lender) == 6_000 + 4_001
    assert_books_whole(world)


def test_money_arriving_for_an_overdue_borrower_pays_the_loan_first(world: World) -> None:
    lender, borrower, loan = active_loan(world, principal=10_000, fee=500, penalty=100, days=3)
    spender = register(world)
    with world.uow() as uow:  # the borrower spends the loan elsewhere
        ledger.transfer(
            uow,
            source_account_id=wallet_account_id(borrower.id),
            target_account_id=wallet_account_id(spender.id),
            amount_cents=10_000,
            code=EntryCode.TRANSFER,
            idempotency_key="spend",
            cause_type="test",
            cause_id="spend",
            now=world.clock.now(),
        )
        uow.commit()
    clock_of(world).advance(timedelta(days=3))
    fund(world, borrower, 700)  # on the due date: not overdue, the money stays
    assert wallet(world, borrower) == 700
    clock_of(world).advance(timedelta(days=2))  # two days late: 200 penalty
    tick(world)
    fund(world, borrower, 1_000)
    assert wallet(world, borrower) == 0  # all 1_700 went to the loan
    after = stored(world, loan)
    assert (after.penalty_paid_cents, after.fee_paid_cents, after.principal_paid_cents) == (
        200,
        500,
        1_000,
    )
    assert wallet(world, lender) == 1_700
    with world.uow.read_only() as uow:
        (record,) = uow.loans.repayments(loan.id)
    assert record.channel == "system"
    assert kinds_now(world, borrower) == ["repayment_made", "wallet_credited"]
    assert kinds_now(world, lender) == ["repayment_received"]
    fund(world, borrower, 20_000)  # pays the rest; the excess stays in the wallet
    assert stored(world, loan).state is LoanState.REPAID
    assert wallet(world, borrower) == 20_000 - (10_000 - 1_000)
    assert wallet(world, lender) == 10_700
    assert_books_whole(world)


def test_arriving_money_pays_the_oldest_overdue_loan_first(world: World) -> None:
    lender, borrower = register(world), register(world)
    spender = register(world)
    fund(world, lender, 30_000)
    older = approve(
        world, lender, request(world, borrower, lender, principal=10_000, fee=0, days=1)
    )
    tick(world)
    newer = approve(
        world, lender, request(world, borrower, lender, principal=10_000, fee=0, days=1)
    )
    with world.uow() as uow:  # the borrower spends both loans
        ledger.transfer(
            uow,
            source_account_id=wallet_account_id(borrower.id),
            target_account_id=wallet_account_id(spender.id),
            amount_cents=20_000,
            code=EntryCode.TRANSFER,
            idempotency_key="spend",
            cause_type="test",
            cause_id="spend",
            now=world.clock.now(),
        )
        uow.commit()
    clock_of(world).advance(timedelta(days=2))
    fund(world, borrower, 4_000)  # not enough for the first: the second gets nothing
    assert stored(world, older).principal_paid_cents == 4_000
    assert stored(world, newer).principal_paid_cents == 0
    fund(world, borrower, 7_000)  # 6_000 finishes the first, 1_000 goes to the second
    assert stored(world, older).state is LoanState.REPAID
    assert stored(world, newer).principal_paid_cents == 1_000
    assert wallet(world, borrower) == 0
    assert wallet(world, lender) == 10_000 + 11_000


def test_a_replayed_deposit_pays_nothing_twice(world: World) -> None:
    _, borrower, loan = active_loan(world, principal=10_000, fee=0, days=1)
    clock_of(world).advance(timedelta(days=2))
    receipt = next_receipt()
    for _ in range(2):
        payments.record_mpesa_payment(
            world,
            user_id=borrower.id,
            amount_cents=100,
            receipt=receipt,
        )
    with world.uow.read_only() as uow:
        assert len(uow.loans.repayments(loan.id)) == 1
    assert stored(world, loan).state is LoanState.REPAID  # 10_000 + 100 was enough
    assert wallet(world, borrower) == 100


# --- write-off ---------------------------------------------------------------------------------


def test_write_off_ends_the_debt(world: World) -> None:
    lender, borrower, loan = active_loan(world, principal=10_000, fee=500, penalty=100, days=3)
    clock_of(world).advance(timedelta(days=5))
    with pytest.raises(WrongPin):
        write_off(world, lender, loan, pin="0000")
    assert stored(world, loan).state is LoanState.ACTIVE
    with pytest.raises(Forbidden):
        write_off(world, borrower, loan)
    forgiven = write_off(world, lender, loan)
    assert forgiven.state is LoanState.WRITTEN_OFF
    assert forgiven.closed_at == world.clock.now()
    (note,) = [n for n in notes(world, borrower) if n.kind == "loan_written_off"]
    assert "the remaining KES 107 on loan" in note.body  # 10_000 + 500 + 2 days x 100
    with pytest.raises(Conflict) as caught:
        repay(world, borrower, loan, 100)
    assert caught.value.code == "loan_not_active"
    clock_of(world).advance(timedelta(days=10))
    fund(world, borrower, 5_000)  # no longer overdue: nothing is taken
    assert wallet(world, borrower) == 15_000
    assert stored(world, loan).penalty_charged_cents == 200
    with pytest.raises(InvalidTransition):
        write_off(world, lender, loan)


def test_only_an_active_loan_can_be_written_off(world: World) -> None:
    lender, borrower = register(world), register(world)
    loan = request(world, borrower, lender)
    with pytest.raises(InvalidTransition):
        write_off(world, lender, loan)
    assert stored(world, loan).state is LoanState.REQUESTED


# --- notifications in the person's language ----------------------------------------------------


def test_notifications_speak_swahili_to_a_swahili_speaker(world: World) -> None:
    lender = register(world, name="Wanjiku", language="en")
    borrower = register(world, name="Otieno", language="sw")
    loan = approve(world, lender, request(world, borrower, lender, principal=10_000, fee=500))
    fund(world, lender, 10_000)
    fund(world, borrower, 500)
    repay(world, borrower, loan, 3_000)
    by_kind = {n.kind: n for n in notes(world, borrower)}
    assert set(by_kind) >= {
        "loan_awaiting_funds",
        "loan_disbursed_mpesa",
        "wallet_credited",
        "repayment_made",
    }
    assert all(n.language == "sw" for n in by_kind.values())
    assert "amekubali mkopo wako wa KES 100" in by_kind["loan_awaiting_funds"].body
    assert by_kind["loan_disbursed_mpesa"].body.startswith("Imethibitishwa. KES 100 za mkopo")
    assert "zinatumwa kwa M-PESA yako" in by_kind["loan_disbursed_mpesa"].body
    assert "Umelipa KES 30" in by_kind["repayment_made"].body
    assert "Deni lako lililobaki ni KES 75." in by_kind["repayment_made"].body
    lender_notes = notes(world, lender)
    assert all(n.language == "en" for n in lender_notes)
    received = next(n for n in lender_notes if n.kind == "repayment_received")
    assert received.body.startswith("Confirmed. You have received KES 30 from Otieno")
    assert received.body.endswith("Balance still owed is KES 75.")


# --- audit -------------------------------------------------------------------------------------


def test_every_command_appends_one_audit_row(world: World) -> None:
    def appended(action: object) -> list[tuple[str, str]]:
        before = len(audit_rows(world))
        action()  # type: ignore[operator]
        return [(command, actor) for _, command, actor in audit_rows(world)[before:]]

    lender = register(world)
    borrower = register(world)
    assert [c for _, c, _ in audit_rows(world)] == ["register_user", "register_user"]
    assert appended(lambda: fund(world, lender, 30_000)) == [("record_mpesa_payment", "system")]
    box: dict[str, Loan] = {}

    def do_request() -> None:
        box["loan"] = request(world, borrower, lender)

    assert appended(do_request) == [("request_loan", borrower.id)]
    assert appended(lambda: approve(world, lender, box["loan"])) == [("approve_loan", lender.id)]
    assert appended(lambda: repay(world, borrower, box["loan"], 500)) == [
        ("repay_loan", borrower.id)
    ]
    assert appended(lambda: write_off(world, lender, box["loan"])) == [
        ("write_off_loan", lender.id)
    ]
    do_request()
    assert appended(
        lambda: loans.decline_loan(world, lender_id=lender.id, loan_id=box["loan"].id)
    ) == [("decline_loan", lender.id)]
    do_request()
    assert appended(
        lambda: loans.cancel_loan(world, borrower_id=borrower.id, loan_id=box["loan"].id)
    ) == [("cancel_loan", borrower.id)]
    do_request()
    clock_of(world).advance(timedelta(days=8))
    assert appended(
        lambda: loans.expire_stale_loans(
            world,
        )
    ) == [("expire_loan", "system")]

    def wrong_pin() -> None:
        with pytest.raises(WrongPin):
            approve(world, lender, box["loan"], pin="0000")

    assert appended(wrong_pin) == [("wrong_pin", lender.id)]

    def refused() -> None:
        with pytest.raises(Conflict):  # the loan expired: a refused command writes nothing
            repay(world, borrower, box["loan"], 100)

    assert appended(refused) == []
    report = audit.verify_audit_log(
        world,
    )
    assert report.ok
    assert report.rows_checked == len(audit_rows(world))


def test_tampering_with_an_audit_row_is_reported(world: World) -> None:
    _, borrower, loan = active_loan(world)
    repay(world, borrower, loan, 1_000)
    rows = audit_rows(world)
    assert audit.verify_audit_log(
        world,
    ).ok
    target = next(seq for seq, command, _ in rows if command == "repay_loan")
    world.rows.edit_audit_row(target, details='{"amount_cents":1,"loan_id":"x","state":"active"}')
    report = audit.verify_audit_log(
        world,
    )
    assert not report.ok
    assert [(p.seq, p.problem) for p in report.problems] == [
        (target, "content was changed after it was written")
    ]


def test_tampering_with_the_actor_or_time_is_reported(world: World) -> None:
    register(world)
    register(world)
    world.rows.edit_audit_row(1, actor_id="someone-else")
    world.rows.edit_audit_row(2, at=world.clock.now() + timedelta(hours=1))
    report = audit.verify_audit_log(
        world,
    )
    assert [p.seq for p in report.problems] == [1, 2]


def test_deleting_the_last_audit_row_is_reported(world: World) -> None:
    lender, borrower = register(world), register(world)
    request(world, borrower, lender)
    last = audit_rows(world)[-1][0]
    world.rows.delete_audit_row(last)
    report = audit.verify_audit_log(
        world,
    )
    assert not report.ok
    assert [p.seq for p in report.problems] == [last - 1]
    assert f"the head says row {last}" in report.problems[0].problem


def test_deleting_a_middle_audit_row_is_reported(world: World) -> None:
    for _ in range(4):
        register(world)
    world.rows.delete_audit_row(2)
    report = audit.verify_audit_log(
        world,
    )
    assert {p.seq for p in report.problems} == {2, 3}
    assert report.rows_checked == 3


def test_a_borrower_who_keeps_loans_in_the_wallet_is_told_it_is_there(world: World) -> None:
    lender, borrower = register(world, name="Wanjiku"), register(world, name="Otieno")
    with world.uow() as uow:
        uow.mpesa_preferences.set(MpesaPreferences(borrower.id, False), world.clock.now())
        uow.commit()
    fund(world, lender, 10_000)
    approve(world, lender, request(world, borrower, lender, principal=10_000))
    [disbursed] = [n for n in notes(world, borrower) if n.kind.startswith("loan_disbursed")]
    assert disbursed.kind == "loan_disbursed"
    assert "is now in your Deni wallet" in disbursed.body
