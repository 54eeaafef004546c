"""What the ledger writes besides the amounts, read back from the database: each entry's cause
and memo, a wallet's owner, and the code and message of every refusal."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from sqlalchemy import select
from tests.support.builders import fund, register

from deni.adapters.db import tables as t
from deni.bootstrap import Deni, database_engine
from deni.domain.errors import Conflict, DomainError, IdempotencyConflict, NotFound
from deni.domain.ledger import (
    AccountKind,
    EntryCode,
    EntryDraft,
    Hold,
    NormalSide,
    PlatformAccount,
    movement,
    wallet_account_id,
)
from deni.domain.users import User
from deni.services import ledger
from deni.services.ports import UnitOfWork

PAYBILL = PlatformAccount.MPESA_PAYBILL.value
T = TypeVar("T")
LONG_TEXT = "".join(f"{i % 10}" for i in range(250))  # longer than the 200 a memo keeps


def entry_row(deni: Deni, entry_id: str) -> Any:
    with database_engine(deni).connect() as connection:
        row = connection.execute(
            select(t.journal_entries).where(t.journal_entries.c.id == entry_id)
        ).one()
    return row


def in_uow(deni: Deni, command: Callable[[UnitOfWork], T]) -> T:
    with deni.uow() as uow:
        result = command(uow)
        uow.commit()
    return result


def hold_for(deni: Deni, user: User, cents: int, key: str = "h-1") -> Hold:
    return in_uow(
        deni,
        lambda uow: ledger.place_hold(
            uow,
            wallet_id=wallet_account_id(user.id),
            amount_cents=cents,
            idempotency_key=key,
            now=deni.clock.now(),
        ),
    )


def transfer(deni: Deni, source: str, target: str, **extra: str) -> ledger.PostResult:
    return in_uow(
        deni,
        lambda uow: ledger.transfer(
            uow,
            source_account_id=source,
            target_account_id=target,
            amount_cents=100,
            code=EntryCode.TRANSFER,
            idempotency_key=f"t:{source}:{target}:{sorted(extra.items())}",
            cause_type="test",
            cause_id="t-1",
            now=deni.clock.now(),
            **extra,
        ),
    )


# --- causes and memos --------------------------------------------------------------------------


def test_a_wallet_belongs_to_its_user_and_may_not_go_below_zero(deni: Deni) -> None:
    user = register(deni)
    with deni.uow.read_only() as uow:
        account = uow.ledger.get_account(wallet_account_id(user.id))
    assert account is not None
    assert account.owner_id == user.id
    assert account.kind is AccountKind.WALLET
    assert account.normal_side is NormalSide.CREDIT
    assert account.no_overdraft is True
    assert account.balance_cents == 0


def test_a_hold_entry_names_the_hold_and_has_no_memo(deni: Deni) -> None:
    user = register(deni)
    fund(deni, user, 1_000)
    hold = hold_for(deni, user, 400)
    row = entry_row(deni, hold.hold_entry_id)
    assert (row.code, row.cause_type, row.cause_id, row.memo) == (
        EntryCode.PAYOUT_HOLD.value,
        "hold",
        hold.id,
        "",
    )
    assert row.idempotency_key == "hold:h-1"


def test_a_posted_hold_keeps_the_receipt_as_its_memo(deni: Deni) -> None:
    user = register(deni)
    fund(deni, user, 1_000)
    hold = hold_for(deni, user, 400)
    posted = in_uow(
        deni,
        lambda uow: ledger.post_hold(uow, hold_id=hold.id, receipt="B2C77", now=deni.clock.now()),
    )
    assert posted.resolve_entry_id is not None
    row = entry_row(deni, posted.resolve_entry_id)
    assert (row.code, row.cause_type, row.cause_id, row.memo) == (
        EntryCode.PAYOUT_POST.value,
        "hold",
        hold.id,
        "B2C77",
    )


def test_a_voided_hold_keeps_the_first_200_characters_of_the_reason(deni: Deni) -> None:
    user = register(deni)
    fund(deni, user, 1_000)
    hold = hold_for(deni, user, 400)
    voided = in_uow(
        deni,
        lambda uow: ledger.void_hold(uow, hold_id=hold.id, reason=LONG_TEXT, now=deni.clock.now()),
    )
    assert voided.resolve_entry_id is not None
    row = entry_row(deni, voided.resolve_entry_id)
    assert (row.code, row.cause_type, row.cause_id) == (
        EntryCode.PAYOUT_VOID.value,
        "hold",
        hold.id,
    )
    assert row.memo == LONG_TEXT[:200]
    assert len(row.memo) == 200


def test_a_reversal_names_the_entry_it_reverses_and_keeps_200_characters_of_why(
    deni: Deni,
) -> None:
    user, other = register(deni), register(deni)
    fund(deni, user, 1_000)
    original = transfer(deni, wallet_account_id(user.id), wallet_account_id(other.id))
    reversal = in_uow(
        deni,
        lambda uow: ledger.reverse_entry(
            uow,
            entry_id=original.entry_id,
            idempotency_key="rev-1",
            reason=LONG_TEXT,
            now=deni.clock.now(),
        ),
    )
    row = entry_row(deni, reversal.entry_id)
    assert (row.code, row.cause_type, row.cause_id, row.reverses_entry_id) == (
        EntryCode.REVERSAL.value,
        "entry",
        original.entry_id,
        original.entry_id,
    )
    assert row.memo == LONG_TEXT[:200]


def test_a_transfer_keeps_its_memo_and_has_none_unless_given(deni: Deni) -> None:
    user, other = register(deni), register(deni)
    fund(deni, user, 1_000)
    source, target = wallet_account_id(user.id), wallet_account_id(other.id)
    plain = transfer(deni, source, target)
    with_memo = transfer(deni, source, target, memo="rent")
    assert entry_row(deni, plain.entry_id).memo == ""
    assert entry_row(deni, with_memo.entry_id).memo == "rent"
    assert entry_row(deni, with_memo.entry_id).cause_type == "test"


def test_a_wallet_transfer_draft_moves_money_out_of_the_source_with_its_memo() -> None:
    plain = ledger.wallet_transfer(
        source_wallet_id="wallet:a",
        target_wallet_id="wallet:b",
        amount_cents=250,
        idempotency_key="w-1",
        cause_type="test",
        cause_id="c-1",
    )
    with_memo = ledger.wallet_transfer(
        source_wallet_id="wallet:a",
        target_wallet_id="wallet:b",
        amount_cents=250,
        idempotency_key="w-2",
        cause_type="test",
        cause_id="c-2",
        memo="school fees",
    )
    assert plain.memo == ""
    assert with_memo.memo == "school fees"
    assert plain.code is EntryCode.TRANSFER
    assert plain.postings == movement(
        debit_account_id="wallet:a", credit_account_id="wallet:b", amount_cents=250
    )


def test_the_entry_committer_thread_is_named_for_it(deni: Deni) -> None:
    committer = ledger.entry_committer(deni.uow, deni.clock)
    committer.start()
    try:
        draft = ledger.mpesa_deposit(wallet_account_id(register(deni).id), 100, "NAMED1")
        assert committer.submit(draft).result(timeout=10).replayed is False
        assert "entry-committer" in {thread.name for thread in threading.enumerate()}
    finally:
        committer.stop()


# --- refusals: the code clients read and the message people read -------------------------------


def unknown_source(deni: Deni) -> None:
    transfer(deni, "wallet:nobody", wallet_account_id(register(deni).id))


def unknown_target(deni: Deni) -> None:
    user = register(deni)
    fund(deni, user, 1_000)
    transfer(deni, wallet_account_id(user.id), "wallet:nobody")


def no_wallet(deni: Deni) -> None:
    with deni.uow.read_only() as uow:
        ledger.wallet_balance_cents(uow, user_id="nobody")


def unknown_hold(deni: Deni) -> None:
    in_uow(
        deni, lambda uow: ledger.post_hold(uow, hold_id="nohold", receipt="R", now=deni.clock.now())
    )


def hold_resolved(deni: Deni) -> None:
    user = register(deni)
    fund(deni, user, 1_000)
    hold = hold_for(deni, user, 400)
    in_uow(
        deni, lambda uow: ledger.void_hold(uow, hold_id=hold.id, reason="x", now=deni.clock.now())
    )
    in_uow(
        deni, lambda uow: ledger.post_hold(uow, hold_id=hold.id, receipt="R", now=deni.clock.now())
    )


def hold_key_reused(deni: Deni) -> None:
    user = register(deni)
    fund(deni, user, 1_000)
    hold_for(deni, user, 400)
    hold_for(deni, user, 401)


def reverse(deni: Deni, entry_id: str, key: str) -> None:
    in_uow(
        deni,
        lambda uow: ledger.reverse_entry(
            uow, entry_id=entry_id, idempotency_key=key, reason="why", now=deni.clock.now()
        ),
    )


def unknown_entry(deni: Deni) -> None:
    reverse(deni, "noentry", "rev-1")


def moved(deni: Deni) -> str:
    user, other = register(deni), register(deni)
    fund(deni, user, 1_000)
    return transfer(deni, wallet_account_id(user.id), wallet_account_id(other.id)).entry_id


def reversal_of_reversal(deni: Deni) -> None:
    reverse(deni, moved(deni), "rev-1")
    with deni.uow.read_only() as uow:
        reversal = uow.ledger.find_entry("rev-1")
    assert reversal is not None
    reverse(deni, reversal.id, "rev-2")


def twice_reversed(deni: Deni) -> None:
    entry_id = moved(deni)
    reverse(deni, entry_id, "rev-1")
    reverse(deni, entry_id, "rev-2")


def hold_reversed(deni: Deni) -> None:
    user = register(deni)
    fund(deni, user, 1_000)
    reverse(deni, hold_for(deni, user, 400).hold_entry_id, "rev-1")


def key_reused(deni: Deni) -> None:
    user = register(deni)
    for cents in (100, 200):
        postings = movement(
            debit_account_id=PAYBILL,
            credit_account_id=wallet_account_id(user.id),
            amount_cents=cents,
        )
        draft = EntryDraft("k-1", EntryCode.DEPOSIT, postings, "test", "k-1")
        in_uow(deni, lambda uow, draft=draft: ledger.post_entry(uow, draft, now=deni.clock.now()))


def deposit(user: User, key: str) -> EntryDraft:
    return ledger.mpesa_deposit(wallet_account_id(user.id), 100, key)


def key_twice_in_group(deni: Deni) -> None:
    user = register(deni)
    drafts = [deposit(user, "R1"), deposit(user, "R1")]
    in_uow(deni, lambda uow: ledger.post_each(uow, drafts, now=deni.clock.now()))


def key_used_before_in_batch(deni: Deni) -> None:
    user = register(deni)
    in_uow(deni, lambda uow: ledger.post_entry(uow, deposit(user, "R1"), now=deni.clock.now()))
    drafts = [deposit(user, "R2"), deposit(user, "R1")]
    in_uow(deni, lambda uow: ledger.post_entries(uow, drafts, now=deni.clock.now()))


@pytest.mark.parametrize(
    ("cause", "error", "code", "message"),
    [
        (unknown_source, NotFound, "account_not_found", "No such account: wallet:nobody."),
        (unknown_target, NotFound, "account_not_found", "No such account: wallet:nobody."),
        (no_wallet, NotFound, "wallet_not_found", "No wallet for this user."),
        (unknown_hold, NotFound, "hold_not_found", "No such hold."),
        (hold_resolved, Conflict, "hold_resolved", "The hold is already voided."),
        (
            hold_key_reused,
            IdempotencyConflict,
            "idempotency_conflict",
            "This key already holds a different amount.",
        ),
        (unknown_entry, NotFound, "entry_not_found", "No such entry."),
        (
            reversal_of_reversal,
            Conflict,
            "reversal_of_reversal",
            "A reversal cannot itself be reversed.",
        ),
        (twice_reversed, Conflict, "already_reversed", "This entry has already been reversed."),
        (
            hold_reversed,
            Conflict,
            "not_reversible",
            "A payout_hold entry is corrected through its own command.",
        ),
        (
            key_reused,
            IdempotencyConflict,
            "idempotency_conflict",
            "This idempotency key was already used for a different movement of money.",
        ),
        (
            key_twice_in_group,
            ledger.KeysTaken,
            "entry_keys_taken",
            "A key is repeated in this group.",
        ),
        (
            key_used_before_in_batch,
            ledger.KeysTaken,
            "entry_keys_taken",
            "Some of these entries were written before.",
        ),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_every_refusal_has_its_code_and_message(
    deni: Deni,
    cause: Callable[[Deni], None],
    error: type[DomainError],
    code: str,
    message: str,
) -> None:
    with pytest.raises(error) as caught:
        cause(deni)
    assert caught.value.code == code
    assert caught.value.message == message
    assert str(caught.value) == message


@pytest.mark.parametrize("debit_normal_end", ["source", "target"])
def test_a_transfer_never_touches_a_debit_normal_account(deni: Deni, debit_normal_end: str) -> None:
    # A debit lowers a wallet but raises M-PESA cash: a transfer's postings are right only
    # between credit-normal accounts, so it refuses any other.
    user = register(deni)
    fund(deni, user, 1_000)
    wallet = wallet_account_id(user.id)
    ends = (PAYBILL, wallet) if debit_normal_end == "source" else (wallet, PAYBILL)
    with pytest.raises(AssertionError, match=PAYBILL):
        transfer(deni, *ends)
