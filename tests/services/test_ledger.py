"""The ledger service: exactly-once entries, no overdraft, holds, reversals."""

from __future__ import annotations

from typing import Any

import pytest

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
from tests.services.world import World
from tests.support.api import assert_ledger_whole
from tests.support.builders import fund, next_receipt, register

IN_FLIGHT = PlatformAccount.PAYOUTS_IN_FLIGHT.value
B2C = PlatformAccount.MPESA_B2C_FLOAT.value
PAYBILL = PlatformAccount.MPESA_PAYBILL.value


def snapshot(world: World) -> dict[str, Any]:
    """Everything a failed command must leave untouched."""
    counts = {table: world.rows.count(table) for table in ("journal_entries", "postings", "holds")}
    return {"counts": counts, "balances": world.rows.balances()}


def balance(world: World, account_id: str) -> int:
    with world.uow.read_only() as uow:
        account = uow.ledger.get_account(account_id)
    assert account is not None
    return account.balance_cents


def post(world: World, draft: EntryDraft) -> PostResult:
    with world.uow() as uow:
        result = ledger.post_entry(uow, draft, now=world.clock.now())
        uow.commit()
    return result


def move(world: World, key: str, source: User, target: User, cents: int) -> PostResult:
    with world.uow() as uow:
        result = ledger.transfer(
            uow,
            source_account_id=wallet_account_id(source.id),
            target_account_id=wallet_account_id(target.id),
            amount_cents=cents,
            code=EntryCode.TRANSFER,
            idempotency_key=key,
            cause_type="test",
            cause_id=key,
            now=world.clock.now(),
        )
        uow.commit()
    return result


def deposit_draft(user: User, cents: int, *, key: str, memo: str = "") -> EntryDraft:
    postings = movement(
        debit_account_id=PAYBILL, credit_account_id=wallet_account_id(user.id), amount_cents=cents
    )
    return EntryDraft(key, EntryCode.DEPOSIT, postings, "mpesa_receipt", key, memo=memo)


# --- exactly once ------------------------------------------------------------------------------


def test_a_replay_returns_the_first_entry_and_writes_nothing(world: World) -> None:
    user = register(world)
    first = post(world, deposit_draft(user, 5_000, key="k-1", memo="first"))
    before = snapshot(world)
    again = post(world, deposit_draft(user, 5_000, key="k-1", memo="a different memo"))
    assert first.replayed is False
    assert again == PostResult(first.entry_id, replayed=True)
    assert snapshot(world) == before
    assert balance(world, wallet_account_id(user.id)) == 5_000


@pytest.mark.parametrize("change", ["amount", "account", "code"])
def test_the_same_key_for_other_content_is_a_conflict(world: World, change: str) -> None:
    user, other = register(world), register(world)
    post(world, deposit_draft(user, 5_000, key="k-1"))
    before = snapshot(world)
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
        post(world, draft)
    assert caught.value.code == "idempotency_conflict"
    assert snapshot(world) == before


def test_an_unknown_account_is_refused_and_nothing_is_written(world: World) -> None:
    user = register(world)
    before = snapshot(world)
    postings = movement(
        debit_account_id=PAYBILL, credit_account_id="wallet:nobody", amount_cents=100
    )
    with pytest.raises(NotFound) as caught:
        post(world, EntryDraft("k-x", EntryCode.DEPOSIT, postings, "test", "x"))
    assert caught.value.code == "account_not_found"
    assert snapshot(world) == before
    assert balance(world, wallet_account_id(user.id)) == 0


# --- money coming in ------------------------------------------------------------------------


def deposit(world: World, user_id: str, cents: object, receipt: str) -> payments.Deposit:
    return payments.record_mpesa_payment(
        world, user_id=user_id, amount_cents=cents, receipt=receipt
    )


def test_an_mpesa_receipt_credits_a_wallet_once(world: World) -> None:
    user, other = register(world), register(world)
    first = deposit(world, user.id, 2_500, "QKX1234ABC")
    assert (first.replayed, first.balance_cents) == (False, 2_500)
    before = snapshot(world)
    again = deposit(world, user.id, 2_500, "QKX1234ABC")
    assert (again.entry_id, again.replayed, again.balance_cents) == (first.entry_id, True, 2_500)
    assert snapshot(world) == before
    with pytest.raises(IdempotencyConflict):  # the same receipt for someone else
        deposit(world, other.id, 2_500, "QKX1234ABC")
    with pytest.raises(IdempotencyConflict):  # ... or for another amount
        deposit(world, user.id, 2_501, "QKX1234ABC")
    assert snapshot(world) == before
    assert balance(world, PAYBILL) == 2_500


@pytest.mark.parametrize("receipt", ["", "QKX-1234", "QKX 1234", "Q" * 41, "QKX1234;--"])
def test_a_malformed_receipt_is_refused(world: World, receipt: str) -> None:
    user = register(world)
    before = snapshot(world)
    with pytest.raises(ValidationFailed) as caught:
        deposit(world, user.id, 100, receipt)
    assert caught.value.code == "invalid_receipt"
    assert snapshot(world) == before


@pytest.mark.parametrize("cents", [0, -100, 1.5, True, "100", 100_000_001])
def test_a_bad_amount_is_refused(world: World, cents: object) -> None:
    user = register(world)
    before = snapshot(world)
    with pytest.raises(InvalidAmount):
        deposit(world, user.id, cents, "QKX1234ABC")
    assert snapshot(world) == before


def test_money_for_an_unknown_user_is_refused(world: World) -> None:
    before = snapshot(world)
    with pytest.raises(NotFound) as caught:
        deposit(world, "00000000-0000-0000-0000-000000000000", 100, "QKX1234ABC")
    assert caught.value.code == "user_not_found"
    assert snapshot(world) == before
    with world.uow.read_only() as uow, pytest.raises(NotFound):
        ledger.wallet_balance_cents(uow, user_id="00000000-0000-0000-0000-000000000000")


# --- no overdraft ------------------------------------------------------------------------------


def test_a_wallet_can_be_emptied_exactly(world: World) -> None:
    alice, bob = register(world), register(world)
    fund(world, alice, 3_000)
    move(world, "t-1", alice, bob, 3_000)
    assert balance(world, wallet_account_id(alice.id)) == 0
    assert balance(world, wallet_account_id(bob.id)) == 3_000
    assert_ledger_whole(world)


@pytest.mark.parametrize("cents", [3_001, 10**9])
def test_a_wallet_never_goes_negative(world: World, cents: int) -> None:
    alice, bob = register(world), register(world)
    fund(world, alice, 3_000)
    before = snapshot(world)
    with pytest.raises(InsufficientFunds) as caught:
        move(world, "t-1", alice, bob, cents)
    assert caught.value.code == "insufficient_funds"
    assert snapshot(world) == before
    # The key was not burnt by the failure: it can carry a valid transfer afterwards.
    assert move(world, "t-1", alice, bob, 3_000).replayed is False


def test_an_empty_wallet_cannot_pay_anything(world: World) -> None:
    alice, bob = register(world), register(world)
    before = snapshot(world)
    with pytest.raises(InsufficientFunds):
        move(world, "t-1", alice, bob, 1)
    assert snapshot(world) == before


def test_platform_accounts_may_go_below_zero(world: World) -> None:
    # Deni's own accounts are not wallets: paying out by B2C makes the float go "negative".
    user = register(world)
    fund(world, user, 1_000)
    assert balance(world, PAYBILL) == 1_000
    with world.uow() as uow:
        hold = ledger.place_hold(
            uow,
            wallet_id=wallet_account_id(user.id),
            amount_cents=1_000,
            idempotency_key="h",
            now=world.clock.now(),
        )
        ledger.post_hold(uow, hold_id=hold.id, receipt="B2C1", now=world.clock.now())
        uow.commit()
    assert balance(world, B2C) == -1_000
    assert_ledger_whole(world)


# --- holds (two-phase payouts) -----------------------------------------------------------------


def place(world: World, user: User, cents: int, key: str) -> str:
    with world.uow() as uow:
        hold = ledger.place_hold(
            uow,
            wallet_id=wallet_account_id(user.id),
            amount_cents=cents,
            idempotency_key=key,
            now=world.clock.now(),
        )
        uow.commit()
    assert hold.state is HoldState.PENDING
    return hold.id


def resolve(world: World, hold_id: str, how: str) -> Any:
    with world.uow() as uow:
        if how == "post":
            hold = ledger.post_hold(uow, hold_id=hold_id, receipt="RCPT1", now=world.clock.now())
        else:
            hold = ledger.void_hold(uow, hold_id=hold_id, reason="failed", now=world.clock.now())
        uow.commit()
    return hold


def test_place_then_post_sends_the_money_out_through_the_b2c_float(world: World) -> None:
    user = register(world)
    wallet = wallet_account_id(user.id)
    fund(world, user, 10_000)
    hold_id = place(world, user, 4_000, "payout-1")
    assert balance(world, wallet) == 6_000
    assert balance(world, IN_FLIGHT) == 4_000
    posted = resolve(world, hold_id, "post")
    assert posted.state is HoldState.POSTED
    assert posted.resolve_entry_id is not None
    assert balance(world, wallet) == 6_000
    assert balance(world, IN_FLIGHT) == 0
    assert balance(world, B2C) == -4_000
    with world.uow.read_only() as uow:
        entry = uow.ledger.get_entry(posted.resolve_entry_id)
    assert entry is not None
    assert entry.code is EntryCode.PAYOUT_POST
    assert {(p.account_id, p.amount_cents) for p in entry.postings} == {
        (IN_FLIGHT, 4_000),
        (B2C, -4_000),
    }
    assert_ledger_whole(world)


def test_place_then_void_returns_the_money(world: World) -> None:
    user = register(world)
    wallet = wallet_account_id(user.id)
    fund(world, user, 10_000)
    hold_id = place(world, user, 4_000, "payout-1")
    voided = resolve(world, hold_id, "void")
    assert voided.state is HoldState.VOIDED
    assert balance(world, wallet) == 10_000
    assert balance(world, IN_FLIGHT) == 0
    assert balance(world, B2C) == 0
    assert_ledger_whole(world)


@pytest.mark.parametrize("how", ["post", "void"])
def test_a_repeated_callback_is_a_no_op(world: World, how: str) -> None:
    user = register(world)
    fund(world, user, 10_000)
    hold_id = place(world, user, 4_000, "payout-1")
    first = resolve(world, hold_id, how)
    before = snapshot(world)
    again = resolve(world, hold_id, how)
    assert again == first
    assert snapshot(world) == before


@pytest.mark.parametrize(("first", "then"), [("void", "post"), ("post", "void")])
def test_a_resolved_hold_cannot_be_resolved_the_other_way(
    world: World, first: str, then: str
) -> None:
    user = register(world)
    fund(world, user, 10_000)
    hold_id = place(world, user, 4_000, "payout-1")
    resolve(world, hold_id, first)
    before = snapshot(world)
    with pytest.raises(Conflict) as caught:
        resolve(world, hold_id, then)
    assert caught.value.code == "hold_resolved"
    assert snapshot(world) == before


def test_placing_a_hold_is_idempotent(world: World) -> None:
    user = register(world)
    fund(world, user, 10_000)
    first = place(world, user, 4_000, "payout-1")
    before = snapshot(world)
    assert place(world, user, 4_000, "payout-1") == first
    assert snapshot(world) == before
    assert balance(world, wallet_account_id(user.id)) == 6_000
    with pytest.raises(IdempotencyConflict):
        place(world, user, 4_001, "payout-1")
    assert snapshot(world) == before


def test_a_hold_cannot_reserve_more_than_the_wallet_holds(world: World) -> None:
    user = register(world)
    fund(world, user, 1_000)
    place(world, user, 600, "payout-1")
    before = snapshot(world)
    with pytest.raises(InsufficientFunds):
        place(world, user, 401, "payout-2")
    assert snapshot(world) == before  # no hold row, no entry


def test_resolving_an_unknown_hold(world: World) -> None:
    with pytest.raises(NotFound) as caught:
        resolve(world, "00000000-0000-0000-0000-000000000000", "post")
    assert caught.value.code == "hold_not_found"


# --- reversals ---------------------------------------------------------------------------------


def reverse(world: World, entry_id: str, key: str) -> PostResult:
    with world.uow() as uow:
        result = ledger.reverse_entry(
            uow, entry_id=entry_id, idempotency_key=key, reason="typo", now=world.clock.now()
        )
        uow.commit()
    return result


def test_a_reversal_negates_every_posting(world: World) -> None:
    alice, bob = register(world), register(world)
    fund(world, alice, 5_000)
    original = move(world, "t-1", alice, bob, 2_000)
    reversal = reverse(world, original.entry_id, "rev-1")
    assert balance(world, wallet_account_id(alice.id)) == 5_000
    assert balance(world, wallet_account_id(bob.id)) == 0
    with world.uow.read_only() as uow:
        first = uow.ledger.get_entry(original.entry_id)
        second = uow.ledger.get_entry(reversal.entry_id)
    assert first is not None
    assert second is not None
    assert second.code is EntryCode.REVERSAL
    assert second.reverses_entry_id == first.id
    assert sorted((p.account_id, -p.amount_cents) for p in first.postings) == sorted(
        (p.account_id, p.amount_cents) for p in second.postings
    )
    assert reverse(world, original.entry_id, "rev-1") == PostResult(reversal.entry_id, True)
    assert_ledger_whole(world)


def test_a_mistaken_deposit_can_be_reversed_and_its_receipt_stays_used(world: World) -> None:
    user = register(world)
    credited = deposit(world, user.id, 2_500, "QKX1234ABC")
    reverse(world, credited.entry_id, "rev-1")
    assert balance(world, wallet_account_id(user.id)) == 0
    assert balance(world, PAYBILL) == 0
    assert deposit(world, user.id, 2_500, "QKX1234ABC").replayed is True  # no second credit
    assert balance(world, wallet_account_id(user.id)) == 0
    assert_ledger_whole(world)


def test_the_database_itself_refuses_a_second_reversal(world: World) -> None:
    alice, bob = register(world), register(world)
    fund(world, alice, 5_000)
    original = move(world, "t-1", alice, bob, 2_000)
    reverse(world, original.entry_id, "rev-1")
    fund(world, bob, 10_000)  # so that only the uniqueness of the reversal can stop a second one
    before = snapshot(world)
    # Below the service's own check, reverses_entry_id is unique: a bug that skipped the check
    # could still not write a second reversal.
    with world.uow() as uow:
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
        with pytest.raises(world.rows.refusal):
            uow.ledger.insert_entries([NewEntry(new_id(), draft, balances)], now=world.clock.now())
    assert snapshot(world) == before


def test_a_second_reversal_is_a_clean_conflict(world: World) -> None:
    alice, bob = register(world), register(world)
    fund(world, alice, 5_000)
    original = move(world, "t-1", alice, bob, 2_000)
    first = reverse(world, original.entry_id, "rev-1")
    fund(world, bob, 10_000)
    before = snapshot(world)
    with pytest.raises(Conflict) as caught:
        reverse(world, original.entry_id, "rev-2")
    assert caught.value.code == "already_reversed"
    assert snapshot(world) == before
    assert reverse(world, original.entry_id, "rev-1").entry_id == first.entry_id  # a replay


def test_a_reversal_cannot_be_reversed(world: World) -> None:
    alice, bob = register(world), register(world)
    fund(world, alice, 5_000)
    original = move(world, "t-1", alice, bob, 2_000)
    reversal = reverse(world, original.entry_id, "rev-1")
    before = snapshot(world)
    with pytest.raises(Conflict) as caught:
        reverse(world, reversal.entry_id, "rev-of-rev")
    assert caught.value.code == "reversal_of_reversal"
    assert snapshot(world) == before


def test_a_reversal_cannot_overdraw_a_wallet_that_spent_the_money(world: World) -> None:
    alice, bob, carol = register(world), register(world), register(world)
    fund(world, alice, 5_000)
    original = move(world, "t-1", alice, bob, 2_000)
    move(world, "t-2", bob, carol, 1_500)
    before = snapshot(world)
    with pytest.raises(InsufficientFunds):
        reverse(world, original.entry_id, "rev-1")
    assert snapshot(world) == before


def test_reversing_a_payout_hold_cannot_create_money(world: World) -> None:
    """A hold's entry belongs to the hold: reversing it and then voiding the hold would give the
    wallet the money back twice."""
    user = register(world)
    fund(world, user, 5_000)
    hold_id = place(world, user, 5_000, "payout-1")
    with world.uow.read_only() as uow:
        hold = uow.ledger.lock_hold(hold_id)
    assert hold is not None
    before = snapshot(world)
    with pytest.raises(Conflict) as caught:
        reverse(world, hold.hold_entry_id, "rev-1")
    assert caught.value.code == "not_reversible"
    assert snapshot(world) == before
    resolve(world, hold_id, "void")
    assert balance(world, wallet_account_id(user.id)) == 5_000
    assert balance(world, IN_FLIGHT) == 0


def test_a_loan_repayment_is_not_reversed_behind_the_loans_back(world: World) -> None:
    lender, borrower = register(world), register(world)
    fund(world, lender, 10_000)
    loan = loans.request_loan(
        world,
        borrower_id=borrower.id,
        lender_phone=lender.phone,
        principal_cents=10_000,
        term_days=7,
    )
    loans.approve_loan(
        world,
        lender_id=lender.id,
        loan_id=loan.id,
        pin="3591",
    )
    paid = loans.repay_loan(
        world,
        borrower_id=borrower.id,
        loan_id=loan.id,
        amount_cents=10_000,
        pin="3591",
        idempotency_key="pay-1",
    )
    before = snapshot(world)
    for entry_id in (paid.entry_id, f"disburse:{loan.id}"):
        with world.uow.read_only() as uow:
            entry = uow.ledger.get_entry(entry_id) or uow.ledger.find_entry(entry_id)
        assert entry is not None
        with pytest.raises(Conflict) as caught:
            reverse(world, entry.id, f"rev-{entry.id}")
        assert caught.value.code == "not_reversible"
    assert snapshot(world) == before


def test_reversing_an_unknown_entry(world: World) -> None:
    with pytest.raises(NotFound) as caught:
        reverse(world, "00000000-0000-0000-0000-000000000000", "rev-1")
    assert caught.value.code == "entry_not_found"


# --- statements --------------------------------------------------------------------------------


def test_statement_lines_carry_the_balance_after_and_the_receipt(world: World) -> None:
    alice, bob = register(world), register(world)
    receipts = [next_receipt() for _ in range(3)]
    for receipt, cents in zip(receipts, (1_000, 2_500, 400), strict=True):
        payments.record_mpesa_payment(
            world,
            user_id=alice.id,
            amount_cents=cents,
            receipt=receipt,
        )
    move(world, "t-1", alice, bob, 900)
    statement = queries.wallet_statement(world, user_id=alice.id, limit=10)
    assert statement.balance_cents == 3_000
    assert [line.amount_cents for line in statement.lines] == [-900, 400, 2_500, 1_000]
    assert [line.balance_after_cents for line in statement.lines] == [3_000, 3_900, 3_500, 1_000]
    deposits = statement.lines[1:]
    assert [line.memo for line in deposits] == receipts[::-1]
    assert [line.cause_id for line in deposits] == receipts[::-1]
    assert {line.code for line in deposits} == {"deposit"}
    assert statement.lines[0].code == "transfer"
    assert statement.next_cursor is None


def test_statement_pages_newest_first(world: World) -> None:
    user = register(world)
    for cents in range(100, 600, 100):
        fund(world, user, cents)
    page = queries.wallet_statement(world, user_id=user.id, limit=2)
    assert [line.amount_cents for line in page.lines] == [500, 400]
    assert page.next_cursor is not None
    page2 = queries.wallet_statement(world, user_id=user.id, limit=2, before=page.next_cursor)
    assert [line.amount_cents for line in page2.lines] == [300, 200]
    page3 = queries.wallet_statement(world, user_id=user.id, limit=2, before=page2.next_cursor)
    assert [line.amount_cents for line in page3.lines] == [100]
    assert page3.next_cursor is None
    assert page.balance_cents == 1_500


def test_a_statement_for_an_unknown_user(world: World) -> None:
    with pytest.raises(NotFound):
        queries.wallet_statement(world, user_id="nobody")


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
    world: World,
) -> None:
    alice, bob = register(world), register(world)
    fund(world, alice, 5_000)
    a, b = wallet_account_id(alice.id), wallet_account_id(bob.id)
    drafts = _transfer_drafts(a, b, 2_000, count=2, key="batch")
    with world.uow() as uow:
        results = ledger.post_entries(uow, drafts, now=world.clock.now())
        uow.commit()
    assert [r.balances_after for r in results] == [{a: 3_000, b: 2_000}, {a: 1_000, b: 4_000}]
    assert (balance(world, a), balance(world, b)) == (1_000, 4_000)
    with world.uow.read_only() as uow:
        lines = uow.ledger.statement(a, before_posting_id=None, limit=2)
    assert [line.balance_after_cents for line in lines] == [1_000, 3_000]  # newest first
    assert_ledger_whole(world)


def test_a_batch_that_would_overdraw_writes_none_of_its_entries(world: World) -> None:
    alice, bob = register(world), register(world)
    fund(world, alice, 5_000)
    a, b = wallet_account_id(alice.id), wallet_account_id(bob.id)
    before = snapshot(world)
    drafts = _transfer_drafts(a, b, 3_000, count=2, key="over")
    with world.uow() as uow, pytest.raises(InsufficientFunds):
        ledger.post_entries(uow, drafts, now=world.clock.now())
    assert snapshot(world) == before


def test_a_batch_with_a_key_used_before_raises_and_the_caller_rolls_it_back(world: World) -> None:
    alice = register(world)
    post(world, deposit_draft(alice, 1_000, key="seen"))
    before = snapshot(world)
    drafts = [deposit_draft(alice, 500, key="fresh"), deposit_draft(alice, 1_000, key="seen")]
    with world.uow() as uow, pytest.raises(ledger.KeysTaken):
        ledger.post_entries(uow, drafts, now=world.clock.now())  # left without commit
    assert snapshot(world) == before


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


def test_a_group_refuses_only_the_transfer_that_would_overdraw(world: World) -> None:
    alice, bob, carol = register(world), register(world), register(world)
    fund(world, alice, 5_000)
    drafts = [
        _wallet_move(alice, bob, 3_000, key="g-1"),
        _wallet_move(alice, carol, 3_000, key="g-2"),  # 2,000 left: refused alone
        _wallet_move(bob, carol, 1_000, key="g-3"),  # spends what g-1 brought
        _wallet_move(alice, carol, 2_000, key="g-4"),  # exactly what is left
    ]
    results = ledger.post_group(world.uow, world.clock, drafts)
    assert isinstance(results[1], InsufficientFunds)
    written = [r for r in results if isinstance(r, PostResult)]
    assert [r.replayed for r in written] == [False, False, False]
    a, b, c = (wallet_account_id(u.id) for u in (alice, bob, carol))
    assert [r.balances_after for r in written] == [
        {a: 2_000, b: 3_000},
        {b: 2_000, c: 1_000},
        {a: 0, c: 3_000},
    ]
    assert (balance(world, a), balance(world, b), balance(world, c)) == (0, 2_000, 3_000)
    assert_ledger_whole(world)


def test_a_group_is_one_transaction(world: World) -> None:
    alice, bob = register(world), register(world)
    fund(world, alice, 5_000)
    drafts = [_wallet_move(alice, bob, 100, key=f"one-{i}") for i in range(20)]
    with world.rows.counting_commits() as commits:
        results = ledger.post_group(world.uow, world.clock, drafts)
    assert all(isinstance(r, PostResult) for r in results)
    assert commits() == 1
    assert balance(world, wallet_account_id(bob.id)) == 2_000


def test_a_group_with_a_key_used_before_is_posted_one_by_one(world: World) -> None:
    alice, bob = register(world), register(world)
    fund(world, alice, 5_000)
    first = ledger.post_group(world.uow, world.clock, [_wallet_move(alice, bob, 1_000, key="seen")])
    drafts = [
        _wallet_move(alice, bob, 1_000, key="fresh"),
        _wallet_move(alice, bob, 1_000, key="seen"),  # the same again: a replay
        _wallet_move(alice, bob, 999, key="seen"),  # the same key, other content
        _wallet_move(alice, bob, 500, key="fresh"),  # repeated in the group, other content
    ]
    results = ledger.post_group(world.uow, world.clock, drafts)
    assert isinstance(results[0], PostResult)
    assert not results[0].replayed
    assert isinstance(results[1], PostResult)
    assert results[1].replayed
    assert isinstance(first[0], PostResult)
    assert results[1].entry_id == first[0].entry_id
    assert isinstance(results[2], IdempotencyConflict)
    assert isinstance(results[3], IdempotencyConflict)
    assert balance(world, wallet_account_id(bob.id)) == 2_000
    assert_ledger_whole(world)


def test_a_refused_replay_in_a_group_is_still_a_replay(world: World) -> None:
    """The first run spent the balance; its replay must not be refused for that."""
    alice, bob = register(world), register(world)
    fund(world, alice, 1_000)
    first = ledger.post_group(world.uow, world.clock, [_wallet_move(alice, bob, 1_000, key="all")])
    again = ledger.post_group(
        world.uow,
        world.clock,
        [_wallet_move(alice, bob, 1_000, key="all"), _wallet_move(bob, alice, 10, key="back")],
    )
    assert isinstance(first[0], PostResult)
    assert isinstance(again[0], PostResult)
    assert again[0].replayed
    assert again[0].entry_id == first[0].entry_id
    assert isinstance(again[1], PostResult)
    assert not again[1].replayed
    assert balance(world, wallet_account_id(alice.id)) == 10


def test_an_unknown_account_in_a_group_is_refused_alone(world: World) -> None:
    alice, bob = register(world), register(world)
    fund(world, alice, 1_000)
    ghost = User(new_id(), "254700000001", "Ghost", "en", "x", world.clock.now())
    results = ledger.post_group(
        world.uow,
        world.clock,
        [_wallet_move(alice, ghost, 100, key="lost"), _wallet_move(alice, bob, 100, key="ok")],
    )
    assert isinstance(results[0], NotFound)
    assert isinstance(results[1], PostResult)
    assert balance(world, wallet_account_id(alice.id)) == 900


def test_the_entry_committer_answers_each_caller_once_its_transfer_is_committed(
    world: World,
) -> None:
    alice, bob = register(world), register(world)
    fund(world, alice, 10_000)
    committer = ledger.entry_committer(world.uow, world.clock)
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
    assert balance(world, wallet_account_id(bob.id)) == 9_000
    assert_ledger_whole(world)


def test_a_hold_names_the_loan_it_pays_out_and_only_then(world: World) -> None:
    """A loan's principal paid out to M-PESA: its hold's entry names the loan (id, code), so
    the statement reads it as the loan going on to M-PESA; any other hold names itself."""
    user = register(world)
    fund(world, user, 2_000)
    with world.uow() as uow:
        plain = ledger.place_hold(
            uow,
            wallet_id=wallet_account_id(user.id),
            amount_cents=500,
            idempotency_key="withdrawal",
            now=world.clock.now(),
        )
        loan = ledger.place_hold(
            uow,
            wallet_id=wallet_account_id(user.id),
            amount_cents=1_000,
            idempotency_key="disbursement",
            now=world.clock.now(),
            loan=("loan-1", "DN4K7Q"),
        )
        uow.commit()
    with world.uow.read_only() as uow:
        lines = uow.ledger.statement(wallet_account_id(user.id), before_posting_id=None, limit=2)
    by_amount = {line.amount_cents: line for line in lines}
    assert (by_amount[-500].cause_type, by_amount[-500].cause_id) == ("hold", plain.id)
    assert by_amount[-500].memo == ""
    assert (by_amount[-1_000].cause_type, by_amount[-1_000].cause_id) == ("loan", "loan-1")
    assert by_amount[-1_000].memo == "DN4K7Q"
    assert {line.code for line in lines} == {EntryCode.PAYOUT_HOLD.value}
    assert loan.amount_cents == 1_000
