"""The ledger service on a real database: exactly-once entries, no overdraft, holds, reversals."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError
from tests.support.api import assert_ledger_whole
from tests.support.builders import fund, next_receipt, register

from deni.adapters.db import tables as t
from deni.bootstrap import Deni, database_engine
from deni.domain.errors import (
    Conflict,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidAmount,
    NotFound,
    ValidationFailed,
)
from deni.domain.ledger import (
    EntryCode,
    EntryDraft,
    HoldState,
    PlatformAccount,
    movement,
    reversal_postings,
    wallet_account_id,
)
from deni.domain.users import User
from deni.ids import new_id
from deni.services import ledger, loans, queries
from deni.services.ledger import PostResult
from deni.services.mpesa import payments
from deni.services.ports import NewEntry

IN_FLIGHT = PlatformAccount.PAYOUTS_IN_FLIGHT.value
B2C = PlatformAccount.MPESA_B2C_FLOAT.value
PAYBILL = PlatformAccount.MPESA_PAYBILL.value


def snapshot(deni: Deni) -> dict[str, Any]:
    """Everything a failed command must leave untouched."""
    with database_engine(deni).connect() as connection:
        counts = {
            table.name: connection.execute(select(func.count()).select_from(table)).scalar_one()
            for table in (t.journal_entries, t.postings, t.holds)
        }
        rows = connection.execute(select(t.accounts.c.id, t.accounts.c.balance_cents))
        balances = {row.id: row.balance_cents for row in rows}
    return {"counts": counts, "balances": balances}


def balance(deni: Deni, account_id: str) -> int:
    with deni.uow.read_only() as uow:
        account = uow.ledger.get_account(account_id)
    assert account is not None
    return account.balance_cents


def post(deni: Deni, draft: EntryDraft) -> PostResult:
    with deni.uow() as uow:
        result = ledger.post_entry(uow, draft, now=deni.clock.now())
        uow.commit()
    return result


def move(deni: Deni, key: str, source: User, target: User, cents: int) -> PostResult:
    with deni.uow() as uow:
        result = ledger.transfer(
            uow,
            source_account_id=wallet_account_id(source.id),
            target_account_id=wallet_account_id(target.id),
            amount_cents=cents,
            code=EntryCode.TRANSFER,
            idempotency_key=key,
            cause_type="test",
            cause_id=key,
            now=deni.clock.now(),
        )
        uow.commit()
    return result


def deposit_draft(user: User, cents: int, *, key: str, memo: str = "") -> EntryDraft:
    postings = movement(
        debit_account_id=PAYBILL, credit_account_id=wallet_account_id(user.id), amount_cents=cents
    )
    return EntryDraft(key, EntryCode.DEPOSIT, postings, "mpesa_receipt", key, memo=memo)


# --- exactly once ------------------------------------------------------------------------------


def test_a_replay_returns_the_first_entry_and_writes_nothing(deni: Deni) -> None:
    user = register(deni)
    first = post(deni, deposit_draft(user, 5_000, key="k-1", memo="first"))
    before = snapshot(deni)
    again = post(deni, deposit_draft(user, 5_000, key="k-1", memo="a different memo"))
    assert first.replayed is False
    assert again == PostResult(first.entry_id, replayed=True)
    assert snapshot(deni) == before
    assert balance(deni, wallet_account_id(user.id)) == 5_000


@pytest.mark.parametrize("change", ["amount", "account", "code"])
def test_the_same_key_for_other_content_is_a_conflict(deni: Deni, change: str) -> None:
    user, other = register(deni), register(deni)
    post(deni, deposit_draft(user, 5_000, key="k-1"))
    before = snapshot(deni)
    draft = {
        "amount": deposit_draft(user, 5_001, key="k-1"),
        "account": deposit_draft(other, 5_000, key="k-1"),
        "code": EntryDraft(
            "k-1",
            EntryCode.TRANSFER,
            deposit_draft(user, 5_000, key="k-1").postings,
            "mpesa_receipt",
            "k-1",
        ),
    }[change]
    with pytest.raises(IdempotencyConflict) as caught:
        post(deni, draft)
    assert caught.value.code == "idempotency_conflict"
    assert snapshot(deni) == before


def test_an_unknown_account_is_refused_and_nothing_is_written(deni: Deni) -> None:
    user = register(deni)
    before = snapshot(deni)
    postings = movement(
        debit_account_id=PAYBILL, credit_account_id="wallet:nobody", amount_cents=100
    )
    with pytest.raises(NotFound) as caught:
        post(deni, EntryDraft("k-x", EntryCode.DEPOSIT, postings, "test", "x"))
    assert caught.value.code == "account_not_found"
    assert snapshot(deni) == before
    assert balance(deni, wallet_account_id(user.id)) == 0


# --- money coming in ------------------------------------------------------------------------


def deposit(deni: Deni, user_id: str, cents: object, receipt: str) -> payments.Deposit:
    return payments.record_mpesa_payment(deni, user_id=user_id, amount_cents=cents, receipt=receipt)


def test_an_mpesa_receipt_credits_a_wallet_once(deni: Deni) -> None:
    user, other = register(deni), register(deni)
    first = deposit(deni, user.id, 2_500, "QKX1234ABC")
    assert (first.replayed, first.balance_cents) == (False, 2_500)
    before = snapshot(deni)
    again = deposit(deni, user.id, 2_500, "QKX1234ABC")
    assert (again.entry_id, again.replayed, again.balance_cents) == (first.entry_id, True, 2_500)
    assert snapshot(deni) == before
    with pytest.raises(IdempotencyConflict):  # the same receipt for someone else
        deposit(deni, other.id, 2_500, "QKX1234ABC")
    with pytest.raises(IdempotencyConflict):  # ... or for another amount
        deposit(deni, user.id, 2_501, "QKX1234ABC")
    assert snapshot(deni) == before
    assert balance(deni, PAYBILL) == 2_500


@pytest.mark.parametrize("receipt", ["", "QKX-1234", "QKX 1234", "Q" * 41, "QKX1234;--"])
def test_a_malformed_receipt_is_refused(deni: Deni, receipt: str) -> None:
    user = register(deni)
    before = snapshot(deni)
    with pytest.raises(ValidationFailed) as caught:
        deposit(deni, user.id, 100, receipt)
    assert caught.value.code == "invalid_receipt"
    assert snapshot(deni) == before


@pytest.mark.parametrize("cents", [0, -100, 1.5, True, "100", 100_000_001])
def test_a_bad_amount_is_refused(deni: Deni, cents: object) -> None:
    user = register(deni)
    before = snapshot(deni)
    with pytest.raises(InvalidAmount):
        deposit(deni, user.id, cents, "QKX1234ABC")
    assert snapshot(deni) == before


def test_money_for_an_unknown_user_is_refused(deni: Deni) -> None:
    before = snapshot(deni)
    with pytest.raises(NotFound) as caught:
        deposit(deni, "00000000-0000-0000-0000-000000000000", 100, "QKX1234ABC")
    assert caught.value.code == "user_not_found"
    assert snapshot(deni) == before
    with deni.uow.read_only() as uow, pytest.raises(NotFound):
        ledger.wallet_balance_cents(uow, user_id="00000000-0000-0000-0000-000000000000")


# --- no overdraft ------------------------------------------------------------------------------


def test_a_wallet_can_be_emptied_exactly(deni: Deni) -> None:
    alice, bob = register(deni), register(deni)
    fund(deni, alice, 3_000)
    move(deni, "t-1", alice, bob, 3_000)
    assert balance(deni, wallet_account_id(alice.id)) == 0
    assert balance(deni, wallet_account_id(bob.id)) == 3_000
    assert_ledger_whole(deni)


@pytest.mark.parametrize("cents", [3_001, 10**9])
def test_a_wallet_never_goes_negative(deni: Deni, cents: int) -> None:
    alice, bob = register(deni), register(deni)
    fund(deni, alice, 3_000)
    before = snapshot(deni)
    with pytest.raises(InsufficientFunds) as caught:
        move(deni, "t-1", alice, bob, cents)
    assert caught.value.code == "insufficient_funds"
    assert snapshot(deni) == before
    # The key was not burnt by the failure: it can carry a valid transfer afterwards.
    assert move(deni, "t-1", alice, bob, 3_000).replayed is False


def test_an_empty_wallet_cannot_pay_anything(deni: Deni) -> None:
    alice, bob = register(deni), register(deni)
    before = snapshot(deni)
    with pytest.raises(InsufficientFunds):
        move(deni, "t-1", alice, bob, 1)
    assert snapshot(deni) == before


def test_platform_accounts_may_go_below_zero(deni: Deni) -> None:
    # Deni's own accounts are not wallets: paying out by B2C makes the float go "negative".
    user = register(deni)
    fund(deni, user, 1_000)
    assert balance(deni, PAYBILL) == 1_000
    with deni.uow() as uow:
        hold = ledger.place_hold(
            uow,
            wallet_id=wallet_account_id(user.id),
            amount_cents=1_000,
            idempotency_key="h",
            now=deni.clock.now(),
        )
        ledger.post_hold(uow, hold_id=hold.id, receipt="B2C1", now=deni.clock.now())
        uow.commit()
    assert balance(deni, B2C) == -1_000
    assert_ledger_whole(deni)


# --- holds (two-phase payouts) -----------------------------------------------------------------


def place(deni: Deni, user: User, cents: int, key: str) -> str:
    with deni.uow() as uow:
        hold = ledger.place_hold(
            uow,
            wallet_id=wallet_account_id(user.id),
            amount_cents=cents,
            idempotency_key=key,
            now=deni.clock.now(),
        )
        uow.commit()
    assert hold.state is HoldState.PENDING
    return hold.id


def resolve(deni: Deni, hold_id: str, how: str) -> Any:
    with deni.uow() as uow:
        if how == "post":
            hold = ledger.post_hold(uow, hold_id=hold_id, receipt="RCPT1", now=deni.clock.now())
        else:
            hold = ledger.void_hold(uow, hold_id=hold_id, reason="failed", now=deni.clock.now())
        uow.commit()
    return hold


def test_place_then_post_sends_the_money_out_through_the_b2c_float(deni: Deni) -> None:
    user = register(deni)
    wallet = wallet_account_id(user.id)
    fund(deni, user, 10_000)
    hold_id = place(deni, user, 4_000, "payout-1")
    assert balance(deni, wallet) == 6_000
    assert balance(deni, IN_FLIGHT) == 4_000
    posted = resolve(deni, hold_id, "post")
    assert posted.state is HoldState.POSTED
    assert posted.resolve_entry_id is not None
    assert balance(deni, wallet) == 6_000
    assert balance(deni, IN_FLIGHT) == 0
    assert balance(deni, B2C) == -4_000
    with deni.uow.read_only() as uow:
        entry = uow.ledger.get_entry(posted.resolve_entry_id)
    assert entry is not None
    assert entry.code is EntryCode.PAYOUT_POST
    assert {(p.account_id, p.amount_cents) for p in entry.postings} == {
        (IN_FLIGHT, 4_000),
        (B2C, -4_000),
    }
    assert_ledger_whole(deni)


def test_place_then_void_returns_the_money(deni: Deni) -> None:
    user = register(deni)
    wallet = wallet_account_id(user.id)
    fund(deni, user, 10_000)
    hold_id = place(deni, user, 4_000, "payout-1")
    voided = resolve(deni, hold_id, "void")
    assert voided.state is HoldState.VOIDED
    assert balance(deni, wallet) == 10_000
    assert balance(deni, IN_FLIGHT) == 0
    assert balance(deni, B2C) == 0
    assert_ledger_whole(deni)


@pytest.mark.parametrize("how", ["post", "void"])
def test_a_repeated_callback_is_a_no_op(deni: Deni, how: str) -> None:
    user = register(deni)
    fund(deni, user, 10_000)
    hold_id = place(deni, user, 4_000, "payout-1")
    first = resolve(deni, hold_id, how)
    before = snapshot(deni)
    again = resolve(deni, hold_id, how)
    assert again == first
    assert snapshot(deni) == before


@pytest.mark.parametrize(("first", "then"), [("void", "post"), ("post", "void")])
def test_a_resolved_hold_cannot_be_resolved_the_other_way(
    deni: Deni, first: str, then: str
) -> None:
    user = register(deni)
    fund(deni, user, 10_000)
    hold_id = place(deni, user, 4_000, "payout-1")
    resolve(deni, hold_id, first)
    before = snapshot(deni)
    with pytest.raises(Conflict) as caught:
        resolve(deni, hold_id, then)
    assert caught.value.code == "hold_resolved"
    assert snapshot(deni) == before


def test_placing_a_hold_is_idempotent(deni: Deni) -> None:
    user = register(deni)
    fund(deni, user, 10_000)
    first = place(deni, user, 4_000, "payout-1")
    before = snapshot(deni)
    assert place(deni, user, 4_000, "payout-1") == first
    assert snapshot(deni) == before
    assert balance(deni, wallet_account_id(user.id)) == 6_000
    with pytest.raises(IdempotencyConflict):
        place(deni, user, 4_001, "payout-1")
    assert snapshot(deni) == before


def test_a_hold_cannot_reserve_more_than_the_wallet_holds(deni: Deni) -> None:
    user = register(deni)
    fund(deni, user, 1_000)
    place(deni, user, 600, "payout-1")
    before = snapshot(deni)
    with pytest.raises(InsufficientFunds):
        place(deni, user, 401, "payout-2")
    assert snapshot(deni) == before  # no hold row, no entry


def test_resolving_an_unknown_hold(deni: Deni) -> None:
    with pytest.raises(NotFound) as caught:
        resolve(deni, "00000000-0000-0000-0000-000000000000", "post")
    assert caught.value.code == "hold_not_found"


# --- reversals ---------------------------------------------------------------------------------


def reverse(deni: Deni, entry_id: str, key: str) -> PostResult:
    with deni.uow() as uow:
        result = ledger.reverse_entry(
            uow, entry_id=entry_id, idempotency_key=key, reason="typo", now=deni.clock.now()
        )
        uow.commit()
    return result


def test_a_reversal_negates_every_posting(deni: Deni) -> None:
    alice, bob = register(deni), register(deni)
    fund(deni, alice, 5_000)
    original = move(deni, "t-1", alice, bob, 2_000)
    reversal = reverse(deni, original.entry_id, "rev-1")
    assert balance(deni, wallet_account_id(alice.id)) == 5_000
    assert balance(deni, wallet_account_id(bob.id)) == 0
    with deni.uow.read_only() as uow:
        first = uow.ledger.get_entry(original.entry_id)
        second = uow.ledger.get_entry(reversal.entry_id)
    assert first is not None
    assert second is not None
    assert second.code is EntryCode.REVERSAL
    assert second.reverses_entry_id == first.id
    assert sorted((p.account_id, -p.amount_cents) for p in first.postings) == sorted(
        (p.account_id, p.amount_cents) for p in second.postings
    )
    assert reverse(deni, original.entry_id, "rev-1") == PostResult(reversal.entry_id, True)
    assert_ledger_whole(deni)


def test_a_mistaken_deposit_can_be_reversed_and_its_receipt_stays_used(deni: Deni) -> None:
    user = register(deni)
    credited = deposit(deni, user.id, 2_500, "QKX1234ABC")
    reverse(deni, credited.entry_id, "rev-1")
    assert balance(deni, wallet_account_id(user.id)) == 0
    assert balance(deni, PAYBILL) == 0
    assert deposit(deni, user.id, 2_500, "QKX1234ABC").replayed is True  # no second credit
    assert balance(deni, wallet_account_id(user.id)) == 0
    assert_ledger_whole(deni)


def test_the_database_itself_refuses_a_second_reversal(deni: Deni) -> None:
    alice, bob = register(deni), register(deni)
    fund(deni, alice, 5_000)
    original = move(deni, "t-1", alice, bob, 2_000)
    reverse(deni, original.entry_id, "rev-1")
    fund(deni, bob, 10_000)  # so that only the uniqueness of the reversal can stop a second one
    before = snapshot(deni)
    # Below the service's own check, reverses_entry_id is unique: a bug that skipped the check
    # could still not write a second reversal.
    with deni.uow() as uow:
        stored = uow.ledger.get_entry(original.entry_id)
        assert stored is not None
        draft = EntryDraft(
            "rev-2",
            EntryCode.REVERSAL,
            reversal_postings(stored.postings),
            "entry",
            stored.id,
            reverses_entry_id=stored.id,
        )
        balances = {
            wallet_account_id(alice.id): 5_000,
            wallet_account_id(bob.id): 10_000,
        }
        with pytest.raises(IntegrityError):
            uow.ledger.insert_entries([NewEntry(new_id(), draft, balances)], now=deni.clock.now())
    assert snapshot(deni) == before


def test_a_second_reversal_is_a_clean_conflict(deni: Deni) -> None:
    alice, bob = register(deni), register(deni)
    fund(deni, alice, 5_000)
    original = move(deni, "t-1", alice, bob, 2_000)
    first = reverse(deni, original.entry_id, "rev-1")
    fund(deni, bob, 10_000)
    before = snapshot(deni)
    with pytest.raises(Conflict) as caught:
        reverse(deni, original.entry_id, "rev-2")
    assert caught.value.code == "already_reversed"
    assert snapshot(deni) == before
    assert reverse(deni, original.entry_id, "rev-1").entry_id == first.entry_id  # a replay


def test_a_reversal_cannot_be_reversed(deni: Deni) -> None:
    alice, bob = register(deni), register(deni)
    fund(deni, alice, 5_000)
    original = move(deni, "t-1", alice, bob, 2_000)
    reversal = reverse(deni, original.entry_id, "rev-1")
    before = snapshot(deni)
    with pytest.raises(Conflict) as caught:
        reverse(deni, reversal.entry_id, "rev-of-rev")
    assert caught.value.code == "reversal_of_reversal"
    assert snapshot(deni) == before


def test_a_reversal_cannot_overdraw_a_wallet_that_spent_the_money(deni: Deni) -> None:
    alice, bob, carol = register(deni), register(deni), register(deni)
    fund(deni, alice, 5_000)
    original = move(deni, "t-1", alice, bob, 2_000)
    move(deni, "t-2", bob, carol, 1_500)
    before = snapshot(deni)
    with pytest.raises(InsufficientFunds):
        reverse(deni, original.entry_id, "rev-1")
    assert snapshot(deni) == before


def test_reversing_a_payout_hold_cannot_create_money(deni: Deni) -> None:
    """A hold's entry belongs to the hold: reversing it and then voiding the hold would give the
    wallet the money back twice."""
    user = register(deni)
    fund(deni, user, 5_000)
    hold_id = place(deni, user, 5_000, "payout-1")
    with deni.uow.read_only() as uow:
        hold = uow.ledger.lock_hold(hold_id)
    assert hold is not None
    before = snapshot(deni)
    with pytest.raises(Conflict) as caught:
        reverse(deni, hold.hold_entry_id, "rev-1")
    assert caught.value.code == "not_reversible"
    assert snapshot(deni) == before
    resolve(deni, hold_id, "void")
    assert balance(deni, wallet_account_id(user.id)) == 5_000
    assert balance(deni, IN_FLIGHT) == 0


def test_a_loan_repayment_is_not_reversed_behind_the_loans_back(deni: Deni) -> None:
    lender, borrower = register(deni), register(deni)
    fund(deni, lender, 10_000)
    loan = loans.request_loan(
        deni,
        borrower_id=borrower.id,
        lender_phone=lender.phone,
        principal_cents=10_000,
        term_days=7,
    )
    loans.approve_loan(
        deni,
        lender_id=lender.id,
        loan_id=loan.id,
        pin="1234",
    )
    paid = loans.repay_loan(
        deni,
        borrower_id=borrower.id,
        loan_id=loan.id,
        amount_cents=10_000,
        pin="1234",
        idempotency_key="pay-1",
    )
    before = snapshot(deni)
    for entry_id in (paid.entry_id, f"disburse:{loan.id}"):
        with deni.uow.read_only() as uow:
            entry = uow.ledger.get_entry(entry_id) or uow.ledger.find_entry(entry_id)
        assert entry is not None
        with pytest.raises(Conflict) as caught:
            reverse(deni, entry.id, f"rev-{entry.id}")
        assert caught.value.code == "not_reversible"
    assert snapshot(deni) == before


def test_reversing_an_unknown_entry(deni: Deni) -> None:
    with pytest.raises(NotFound) as caught:
        reverse(deni, "00000000-0000-0000-0000-000000000000", "rev-1")
    assert caught.value.code == "entry_not_found"


# --- statements --------------------------------------------------------------------------------


def test_statement_lines_carry_the_balance_after_and_the_receipt(deni: Deni) -> None:
    alice, bob = register(deni), register(deni)
    receipts = [next_receipt() for _ in range(3)]
    for receipt, cents in zip(receipts, (1_000, 2_500, 400), strict=True):
        payments.record_mpesa_payment(
            deni,
            user_id=alice.id,
            amount_cents=cents,
            receipt=receipt,
        )
    move(deni, "t-1", alice, bob, 900)
    statement = queries.wallet_statement(deni, user_id=alice.id, limit=10)
    assert statement.balance_cents == 3_000
    assert [line.amount_cents for line in statement.lines] == [-900, 400, 2_500, 1_000]
    assert [line.balance_after_cents for line in statement.lines] == [3_000, 3_900, 3_500, 1_000]
    deposits = statement.lines[1:]
    assert [line.memo for line in deposits] == receipts[::-1]
    assert [line.cause_id for line in deposits] == receipts[::-1]
    assert {line.code for line in deposits} == {"deposit"}
    assert statement.lines[0].code == "transfer"
    assert statement.next_cursor is None


def test_statement_pages_newest_first(deni: Deni) -> None:
    user = register(deni)
    for cents in range(100, 600, 100):
        fund(deni, user, cents)
    page = queries.wallet_statement(deni, user_id=user.id, limit=2)
    assert [line.amount_cents for line in page.lines] == [500, 400]
    assert page.next_cursor is not None
    page2 = queries.wallet_statement(deni, user_id=user.id, limit=2, before=page.next_cursor)
    assert [line.amount_cents for line in page2.lines] == [300, 200]
    page3 = queries.wallet_statement(deni, user_id=user.id, limit=2, before=page2.next_cursor)
    assert [line.amount_cents for line in page3.lines] == [100]
    assert page3.next_cursor is None
    assert page.balance_cents == 1_500


def test_a_statement_for_an_unknown_user(deni: Deni) -> None:
    with pytest.raises(NotFound):
        queries.wallet_statement(deni, user_id="nobody")


# --- several entries in one write ---------------------------------------------------------------


def _transfer_drafts(
    source: str, target: str, cents: int, *, count: int, key: str
) -> list[EntryDraft]:
    postings = movement(debit_account_id=source, credit_account_id=target, amount_cents=cents)
    return [
        EntryDraft(f"{key}-{n}", EntryCode.TRANSFER, postings, "test", f"{key}-{n}")
        for n in range(count)
    ]


def test_entries_posted_together_see_each_others_balances_and_are_written_in_order(
    deni: Deni,
) -> None:
    alice, bob = register(deni), register(deni)
    fund(deni, alice, 5_000)
    a, b = wallet_account_id(alice.id), wallet_account_id(bob.id)
    drafts = _transfer_drafts(a, b, 2_000, count=2, key="batch")
    with deni.uow() as uow:
        results = ledger.post_entries(uow, drafts, now=deni.clock.now())
        uow.commit()
    assert [r.balances_after for r in results] == [{a: 3_000, b: 2_000}, {a: 1_000, b: 4_000}]
    assert (balance(deni, a), balance(deni, b)) == (1_000, 4_000)
    with deni.uow.read_only() as uow:
        lines = uow.ledger.statement(a, before_posting_id=None, limit=2)
    assert [line.balance_after_cents for line in lines] == [1_000, 3_000]  # newest first
    assert_ledger_whole(deni)


def test_a_batch_that_would_overdraw_writes_none_of_its_entries(deni: Deni) -> None:
    alice, bob = register(deni), register(deni)
    fund(deni, alice, 5_000)
    a, b = wallet_account_id(alice.id), wallet_account_id(bob.id)
    before = snapshot(deni)
    drafts = _transfer_drafts(a, b, 3_000, count=2, key="over")
    with deni.uow() as uow, pytest.raises(InsufficientFunds):
        ledger.post_entries(uow, drafts, now=deni.clock.now())
    assert snapshot(deni) == before


def test_a_batch_with_a_key_used_before_raises_and_the_caller_rolls_it_back(deni: Deni) -> None:
    alice = register(deni)
    post(deni, deposit_draft(alice, 1_000, key="seen"))
    before = snapshot(deni)
    drafts = [deposit_draft(alice, 500, key="fresh"), deposit_draft(alice, 1_000, key="seen")]
    with deni.uow() as uow, pytest.raises(ledger.KeysTaken):
        ledger.post_entries(uow, drafts, now=deni.clock.now())  # left without commit
    assert snapshot(deni) == before


# --- group commit: independent entries written together -----------------------------------------


def _wallet_move(source: User, target: User, cents: int, *, key: str) -> EntryDraft:
    return ledger.wallet_transfer(
        source_wallet_id=wallet_account_id(source.id),
        target_wallet_id=wallet_account_id(target.id),
        amount_cents=cents,
        idempotency_key=key,
        cause_type="test",
        cause_id=key,
    )


def test_a_group_refuses_only_the_transfer_that_would_overdraw(deni: Deni) -> None:
    alice, bob, carol = register(deni), register(deni), register(deni)
    fund(deni, alice, 5_000)
    drafts = [
        _wallet_move(alice, bob, 3_000, key="g-1"),
        _wallet_move(alice, carol, 3_000, key="g-2"),  # 2,000 left: refused alone
        _wallet_move(bob, carol, 1_000, key="g-3"),  # spends what g-1 brought
        _wallet_move(alice, carol, 2_000, key="g-4"),  # exactly what is left
    ]
    results = ledger.post_group(deni.uow, deni.clock, drafts)
    assert isinstance(results[1], InsufficientFunds)
    written = [r for r in results if isinstance(r, PostResult)]
    assert [r.replayed for r in written] == [False, False, False]
    a, b, c = (wallet_account_id(u.id) for u in (alice, bob, carol))
    assert [r.balances_after for r in written] == [
        {a: 2_000, b: 3_000},
        {b: 2_000, c: 1_000},
        {a: 0, c: 3_000},
    ]
    assert (balance(deni, a), balance(deni, b), balance(deni, c)) == (0, 2_000, 3_000)
    assert_ledger_whole(deni)


def test_a_group_is_one_transaction(deni: Deni) -> None:
    alice, bob = register(deni), register(deni)
    fund(deni, alice, 5_000)
    commits: list[object] = []

    def on_commit(connection: object) -> None:
        commits.append(connection)

    event.listen(database_engine(deni), "commit", on_commit)
    try:
        results = ledger.post_group(
            deni.uow, deni.clock, [_wallet_move(alice, bob, 100, key=f"one-{i}") for i in range(20)]
        )
    finally:
        event.remove(database_engine(deni), "commit", on_commit)
    assert all(isinstance(r, PostResult) for r in results)
    assert len(commits) == 1
    assert balance(deni, wallet_account_id(bob.id)) == 2_000


def test_a_group_with_a_key_used_before_is_posted_one_by_one(deni: Deni) -> None:
    alice, bob = register(deni), register(deni)
    fund(deni, alice, 5_000)
    first = ledger.post_group(deni.uow, deni.clock, [_wallet_move(alice, bob, 1_000, key="seen")])
    drafts = [
        _wallet_move(alice, bob, 1_000, key="fresh"),
        _wallet_move(alice, bob, 1_000, key="seen"),  # the same again: a replay
        _wallet_move(alice, bob, 999, key="seen"),  # the same key, other content
        _wallet_move(alice, bob, 500, key="fresh"),  # repeated in the group, other content
    ]
    results = ledger.post_group(deni.uow, deni.clock, drafts)
    assert isinstance(results[0], PostResult)
    assert not results[0].replayed
    assert isinstance(results[1], PostResult)
    assert results[1].replayed
    assert isinstance(first[0], PostResult)
    assert results[1].entry_id == first[0].entry_id
    assert isinstance(results[2], IdempotencyConflict)
    assert isinstance(results[3], IdempotencyConflict)
    assert balance(deni, wallet_account_id(bob.id)) == 2_000
    assert_ledger_whole(deni)


def test_a_refused_replay_in_a_group_is_still_a_replay(deni: Deni) -> None:
    """The first run spent the balance; its replay must not be refused for that."""
    alice, bob = register(deni), register(deni)
    fund(deni, alice, 1_000)
    first = ledger.post_group(deni.uow, deni.clock, [_wallet_move(alice, bob, 1_000, key="all")])
    again = ledger.post_group(
        deni.uow,
        deni.clock,
        [_wallet_move(alice, bob, 1_000, key="all"), _wallet_move(bob, alice, 10, key="back")],
    )
    assert isinstance(first[0], PostResult)
    assert isinstance(again[0], PostResult)
    assert again[0].replayed
    assert again[0].entry_id == first[0].entry_id
    assert isinstance(again[1], PostResult)
    assert not again[1].replayed
    assert balance(deni, wallet_account_id(alice.id)) == 10


def test_an_unknown_account_in_a_group_is_refused_alone(deni: Deni) -> None:
    alice, bob = register(deni), register(deni)
    fund(deni, alice, 1_000)
    ghost = User(new_id(), "254700000001", "Ghost", "en", "x", deni.clock.now())
    results = ledger.post_group(
        deni.uow,
        deni.clock,
        [_wallet_move(alice, ghost, 100, key="lost"), _wallet_move(alice, bob, 100, key="ok")],
    )
    assert isinstance(results[0], NotFound)
    assert isinstance(results[1], PostResult)
    assert balance(deni, wallet_account_id(alice.id)) == 900


def test_the_entry_committer_answers_each_caller_once_its_transfer_is_committed(
    deni: Deni,
) -> None:
    alice, bob = register(deni), register(deni)
    fund(deni, alice, 10_000)
    committer = ledger.entry_committer(deni.uow, deni.clock)
    committer.start()
    try:
        futures = [
            committer.submit(_wallet_move(alice, bob, 3_000, key=f"c-{i}")) for i in range(4)
        ]
        outcomes = [f.exception(timeout=30) or f.result() for f in futures]
    finally:
        committer.stop()
    assert sum(isinstance(o, PostResult) for o in outcomes) == 3
    assert sum(isinstance(o, InsufficientFunds) for o in outcomes) == 1
    assert balance(deni, wallet_account_id(bob.id)) == 9_000
    assert_ledger_whole(deni)
