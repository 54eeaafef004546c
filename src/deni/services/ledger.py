"""Ledger use cases: write balanced entries exactly once, holds for two-phase payouts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial

from deni.domain.errors import (
    Conflict,
    DomainError,
    IdempotencyConflict,
    InsufficientFunds,
    NotFound,
)
from deni.domain.ledger import (
    MPESA_RECEIPT_CAUSE,
    Account,
    AccountKind,
    EntryCode,
    EntryDraft,
    Hold,
    HoldState,
    NormalSide,
    PlatformAccount,
    Posting,
    StoredEntry,
    balance_delta,
    movement,
    require_non_negative,
    reversal_postings,
    wallet_account_id,
)
from deni.ids import new_id
from deni.services.group_commit import GroupCommitter
from deni.services.ports import (
    Clock,
    LedgerTotals,
    NewEntry,
    StorageBusy,
    UnitOfWork,
    UnitOfWorkFactory,
)

# Entries whose effect lives only in the ledger. The others belong to a record that would be left
# wrong by a bare reversal: a hold (voiding it afterwards would pay the wallet twice) or a loan
# (its paid parts and state would disagree with the money); those are corrected by their own
# commands.
REVERSIBLE_CODES = frozenset({EntryCode.DEPOSIT, EntryCode.TRANSFER})


@dataclass(frozen=True, slots=True)
class PostResult:
    entry_id: str
    replayed: bool  # True when the key had been used before with the same content
    # The entry's accounts' balances right after it, when this call wrote it (not on replays).
    balances_after: Mapping[str, int] | None = None


def open_wallet(uow: UnitOfWork, *, user_id: str, now: datetime) -> Account:
    account = Account(
        id=wallet_account_id(user_id),
        kind=AccountKind.WALLET,
        normal_side=NormalSide.CREDIT,
        owner_id=user_id,
        no_overdraft=True,
        balance_cents=0,
    )
    uow.ledger.add_account(account, now)
    return account


def post_entry(uow: UnitOfWork, draft: EntryDraft, *, now: datetime) -> PostResult:
    """Write `draft` once. A replay of the same key and content returns the first entry."""
    accounts = uow.ledger.lock_accounts([p.account_id for p in draft.postings])
    return _post_locked(uow, draft, accounts, now=now)


class KeysTaken(Conflict):
    """Some entries of a batch had been written before: post them one by one instead."""

    code = "entry_keys_taken"


def post_entries(
    uow: UnitOfWork, drafts: Sequence[EntryDraft], *, now: datetime
) -> list[PostResult]:
    """Write several new entries at once: their accounts locked together (in id order), each
    checked against the balances the ones before it left, all written in one statement.

    For batches of entries that are new (callbacks for requests still open, say). If any key
    was used before, KeysTaken is raised and the caller's transaction must be rolled back: a
    replay needs `post_entry`, one at a time. A balance that would go negative raises as in
    `post_entry`, and nothing is written.
    """
    staged = _stage(uow, drafts)
    for outcome in staged:
        if isinstance(outcome, DomainError):
            raise outcome
    posted = [r for r in _write_staged(uow, staged, now=now) if isinstance(r, PostResult)]
    assert len(posted) == len(drafts)
    return posted


def post_each(
    uow: UnitOfWork, drafts: Sequence[EntryDraft], *, now: datetime
) -> list[PostResult | DomainError]:
    """`post_entries` for entries that do not depend on each other (group commit): a draft
    that is refused (an unknown account, a balance that would go negative) gets its error
    and writes nothing, and the others are still written, in one statement. A refused draft
    whose key was used before with the same content is a replay, as in `post_entry`.

    A key twice in `drafts` is KeysTaken too: the second is a replay of the first only once
    the first is written, which needs `post_entry`, one at a time."""
    if len({d.idempotency_key for d in drafts}) < len(drafts):
        raise KeysTaken("A key is repeated in this group.")
    staged = _stage(uow, drafts)
    for i, outcome in enumerate(staged):
        if isinstance(outcome, DomainError):
            staged[i] = _replay_or(uow, drafts[i], outcome)
    return _write_staged(uow, staged, now=now)


def _replay_or(uow: UnitOfWork, draft: EntryDraft, refusal: DomainError) -> _Staged:
    try:
        return _replay(uow, draft) or refusal
    except IdempotencyConflict as conflict:  # that draft's answer, not the whole group's
        return conflict


_Staged = NewEntry | PostResult | DomainError


def _stage(uow: UnitOfWork, drafts: Sequence[EntryDraft]) -> list[_Staged]:
    """Lock every account of `drafts` (in id order) and work out each draft's balances after
    the ones before it, or why it is refused."""
    assert drafts
    accounts = uow.ledger.lock_accounts([p.account_id for d in drafts for p in d.postings])
    staged: list[_Staged] = []
    for draft in drafts:
        own = {
            p.account_id: accounts[p.account_id] for p in draft.postings if p.account_id in accounts
        }
        try:
            balances_after = _balances_after(draft, own)
        except (NotFound, InsufficientFunds) as refusal:
            staged.append(refusal)
            continue
        for account_id, balance_cents in balances_after.items():
            accounts[account_id] = replace(accounts[account_id], balance_cents=balance_cents)
        staged.append(NewEntry(new_id(), draft, balances_after))
    return staged


def _write_staged(
    uow: UnitOfWork, staged: list[_Staged], *, now: datetime
) -> list[PostResult | DomainError]:
    entries = [outcome for outcome in staged if isinstance(outcome, NewEntry)]
    if entries and not uow.ledger.insert_entries(entries, now=now):
        raise KeysTaken("Some of these entries were written before.")
    return [
        PostResult(o.entry_id, replayed=False, balances_after=o.balances_after)
        if isinstance(o, NewEntry)
        else o
        for o in staged
    ]


def _post_locked(
    uow: UnitOfWork, draft: EntryDraft, accounts: dict[str, Account], *, now: datetime
) -> PostResult:
    """Write `draft` while its accounts are locked (so a concurrent replay is already visible).

    The idempotency key is looked up only when something stands in the way: a replay must
    not be refused for the balance its own first run already spent.
    """
    try:
        balances_after = _balances_after(draft, accounts)
    except (NotFound, InsufficientFunds):
        replay = _replay(uow, draft)
        if replay is None:
            raise
        return replay
    entry_id = new_id()
    # The insert claims the key; when it is taken, nothing was written and the first entry wins.
    if uow.ledger.insert_entries([NewEntry(entry_id, draft, balances_after)], now=now):
        return PostResult(entry_id, replayed=False, balances_after=balances_after)
    replay = _replay(uow, draft)
    assert replay is not None, draft.idempotency_key
    return replay


def _balances_after(draft: EntryDraft, accounts: dict[str, Account]) -> dict[str, int]:
    missing = {p.account_id for p in draft.postings} - set(accounts)
    if missing:
        raise NotFound(f"No such account: {sorted(missing)[0]}.", code="account_not_found")
    balances_after = {account_id: account.balance_cents for account_id, account in accounts.items()}
    for posting in draft.postings:
        account = accounts[posting.account_id]
        delta_cents = balance_delta(account.normal_side, posting.amount_cents)
        before_cents = balances_after[account.id]
        if account.no_overdraft:
            balances_after[account.id] = require_non_negative(
                account_id=account.id, balance_cents=before_cents, delta_cents=delta_cents
            )
        else:
            balances_after[account.id] = before_cents + delta_cents
    return balances_after


def _replay(uow: UnitOfWork, draft: EntryDraft) -> PostResult | None:
    existing = uow.ledger.find_entry(draft.idempotency_key)
    if existing is None:
        return None
    return PostResult(_same_or_conflict(existing, draft), replayed=True)


def _same_or_conflict(existing: StoredEntry, draft: EntryDraft) -> str:
    if existing.content_hash != draft.content_hash():
        raise IdempotencyConflict(
            "This idempotency key was already used for a different movement of money."
        )
    return existing.id


def transfer(
    uow: UnitOfWork,
    *,
    source_account_id: str,
    target_account_id: str,
    amount_cents: int,
    code: EntryCode,
    idempotency_key: str,
    cause_type: str,
    cause_id: str,
    now: datetime,
    memo: str = "",
    locked: dict[str, Account] | None = None,
) -> PostResult:
    """Move money from one credit-normal account's balance to another's: wallet to wallet, or
    a wallet into a payout hold. Every caller moves what Deni owes someone, so a debit takes
    from the source and a credit adds to the target.

    `locked`: both accounts, if the caller has locked them already in this transaction.
    """
    if locked is None:
        accounts = uow.ledger.lock_accounts([source_account_id, target_account_id])
    else:
        assert {source_account_id, target_account_id} <= set(locked)
        accounts = locked
    source = accounts.get(source_account_id)
    if source is None:
        raise NotFound(f"No such account: {source_account_id}.", code="account_not_found")
    assert source.normal_side is NormalSide.CREDIT, source_account_id
    target = accounts.get(target_account_id)
    assert target is None or target.normal_side is NormalSide.CREDIT, target_account_id
    postings = _transfer_postings(source_account_id, target_account_id, amount_cents)
    draft = EntryDraft(idempotency_key, code, postings, cause_type, cause_id, memo=memo)
    return _post_locked(uow, draft, accounts, now=now)


def wallet_transfer(
    *,
    source_wallet_id: str,
    target_wallet_id: str,
    amount_cents: int,
    idempotency_key: str,
    cause_type: str,
    cause_id: str,
    memo: str = "",
) -> EntryDraft:
    """The entry of `transfer` between two wallets, for `post_each` or an entry committer."""
    postings = _transfer_postings(source_wallet_id, target_wallet_id, amount_cents)
    return EntryDraft(
        idempotency_key, EntryCode.TRANSFER, postings, cause_type, cause_id, memo=memo
    )


def _transfer_postings(
    source_account_id: str, target_account_id: str, amount_cents: int
) -> tuple[Posting, ...]:
    # Between credit-normal accounts a debit lowers the balance and a credit raises it.
    return movement(
        debit_account_id=source_account_id,
        credit_account_id=target_account_id,
        amount_cents=amount_cents,
    )


def mpesa_deposit(wallet_id: str, amount_cents: int, receipt: str) -> EntryDraft:
    """Money that reached Deni's paybill for a wallet: M-PESA cash up, the wallet up. Keyed
    by the M-PESA receipt, so each payment is credited once, whichever path reports it."""
    postings = movement(
        debit_account_id=PlatformAccount.MPESA_PAYBILL.value,
        credit_account_id=wallet_id,
        amount_cents=amount_cents,
    )
    return EntryDraft(
        f"mpesa:{receipt}", EntryCode.DEPOSIT, postings, MPESA_RECEIPT_CAUSE, receipt, memo=receipt
    )


def credit_from_mpesa(
    uow: UnitOfWork, *, wallet_id: str, amount_cents: int, receipt: str, now: datetime
) -> PostResult:
    """`mpesa_deposit`, written once (a second time: the first entry, as a replay)."""
    return post_entry(uow, mpesa_deposit(wallet_id, amount_cents, receipt), now=now)


def place_hold(
    uow: UnitOfWork,
    *,
    wallet_id: str,
    amount_cents: int,
    idempotency_key: str,
    now: datetime,
    loan: tuple[str, str] | None = None,
) -> Hold:
    """Reserve money for a payout: it leaves the wallet for the in-flight account. A loan's
    principal paid out to the borrower's M-PESA names the loan (its id and code) as the
    entry's cause, so a statement says "loan to M-PESA", not a withdrawal nobody asked for."""
    existing = uow.ledger.find_hold(idempotency_key)
    if existing is not None:
        if (existing.account_id, existing.amount_cents) != (wallet_id, amount_cents):
            raise IdempotencyConflict("This key already holds a different amount.")
        return existing
    hold_id = new_id()
    result = transfer(
        uow,
        source_account_id=wallet_id,
        target_account_id=PlatformAccount.PAYOUTS_IN_FLIGHT.value,
        amount_cents=amount_cents,
        code=EntryCode.PAYOUT_HOLD,
        idempotency_key=f"hold:{idempotency_key}",
        cause_type="hold" if loan is None else "loan",
        cause_id=hold_id if loan is None else loan[0],
        now=now,
        memo="" if loan is None else loan[1],
    )
    hold = Hold(
        hold_id, wallet_id, amount_cents, HoldState.PENDING, idempotency_key, result.entry_id, None
    )
    uow.ledger.add_hold(hold, now)
    return hold


def post_hold(
    uow: UnitOfWork,
    *,
    hold_id: str,
    receipt: str,
    now: datetime,
    via: PlatformAccount = PlatformAccount.MPESA_B2C_FLOAT,
    code: EntryCode = EntryCode.PAYOUT_POST,
) -> Hold:
    """The payout succeeded: the held money leaves Deni through the B2C float (or, for a
    reversal, through the paybill it came in by: `via`, with its own `code`)."""
    return _resolve_hold(
        uow, hold_id=hold_id, state=HoldState.POSTED, memo=receipt, now=now, via=via, code=code
    )


def void_hold(uow: UnitOfWork, *, hold_id: str, reason: str, now: datetime) -> Hold:
    """The payout failed: the held money goes back to the wallet."""
    return _resolve_hold(
        uow,
        hold_id=hold_id,
        state=HoldState.VOIDED,
        memo=reason,
        now=now,
        via=None,
        code=EntryCode.PAYOUT_VOID,
    )


def _resolve_hold(
    uow: UnitOfWork,
    *,
    hold_id: str,
    state: HoldState,
    memo: str,
    now: datetime,
    via: PlatformAccount | None,  # where posted money goes; None: voided, back to the wallet
    code: EntryCode,
) -> Hold:
    assert state in (HoldState.POSTED, HoldState.VOIDED)
    hold = uow.ledger.lock_hold(hold_id)
    if hold is None:
        raise NotFound("No such hold.", code="hold_not_found")
    if hold.state is state:
        return hold  # a repeated callback: already done, do nothing
    if hold.state is not HoldState.PENDING:
        raise Conflict(f"The hold is already {hold.state.value}.", code="hold_resolved")
    assert (via is None) == (state is HoldState.VOIDED)
    postings = movement(
        debit_account_id=PlatformAccount.PAYOUTS_IN_FLIGHT.value,
        credit_account_id=hold.account_id if via is None else via.value,
        amount_cents=hold.amount_cents,
    )
    draft = EntryDraft(f"{state.value}:{hold.id}", code, postings, "hold", hold.id, memo=memo[:200])
    result = post_entry(uow, draft, now=now)
    uow.ledger.resolve_hold(hold.id, state=state, resolve_entry_id=result.entry_id, now=now)
    resolved = uow.ledger.lock_hold(hold.id)
    assert resolved is not None
    assert resolved.state is state
    return resolved


def reverse_entry(
    uow: UnitOfWork, *, entry_id: str, idempotency_key: str, reason: str, now: datetime
) -> PostResult:
    """Correct a mistake the only way a ledger may: a new entry with every posting negated."""
    original = uow.ledger.get_entry(entry_id)
    if original is None:
        raise NotFound("No such entry.", code="entry_not_found")
    if original.code is EntryCode.REVERSAL:
        raise Conflict("A reversal cannot itself be reversed.", code="reversal_of_reversal")
    if original.code not in REVERSIBLE_CODES:
        raise Conflict(
            f"A {original.code.value} entry is corrected through its own command.",
            code="not_reversible",
        )
    earlier = uow.ledger.find_reversal(original.id)
    if earlier is not None and earlier.idempotency_key != idempotency_key:
        raise Conflict("This entry has already been reversed.", code="already_reversed")
    draft = EntryDraft(
        idempotency_key,
        EntryCode.REVERSAL,
        reversal_postings(original.postings),
        "entry",
        original.id,
        reverses_entry_id=original.id,
        memo=reason[:200],
    )
    return post_entry(uow, draft, now=now)


def wallet_balance_cents(uow: UnitOfWork, *, user_id: str) -> int:
    account = uow.ledger.get_account(wallet_account_id(user_id))
    if account is None:
        raise NotFound("No wallet for this user.", code="wallet_not_found")
    assert account.balance_cents >= 0
    return account.balance_cents


def check(uow: UnitOfWork) -> LedgerTotals:
    return uow.ledger.totals()


# Group commit of independent entries (services/group_commit.py): what is waiting is written
# together, up to ENTRIES_PER_GROUP, and at most ENTRIES_QUEUED_MAX wait.
# One writer: with two, each transaction was smaller and the rate lower (measured, 32 callers).
ENTRIES_PER_GROUP = 200
ENTRIES_QUEUED_MAX = 5_000


def entry_committer(
    uow_factory: UnitOfWorkFactory, clock: Clock
) -> GroupCommitter[EntryDraft, PostResult]:
    """Entries from many callers (threads) written in shared transactions: `submit(draft)`
    gives a future with the entry's PostResult, or the error refusing just that draft.
    Start it before use and stop it after."""
    return GroupCommitter(
        partial(post_group, uow_factory, clock),
        name="entry-committer",
        queued_max=ENTRIES_QUEUED_MAX,
        batch_max=ENTRIES_PER_GROUP,
    )


def post_group(
    uow_factory: UnitOfWorkFactory, clock: Clock, drafts: Sequence[EntryDraft]
) -> list[PostResult | Exception]:
    """`post_each` in one transaction. If a key in it was used before, or the database was
    busy, each draft is tried again in a transaction of its own, so one replay or one lock
    wait does not fail the others. Any other failure reaches every caller of the group, even
    one whose draft was written alone before it: its key makes a retry a replay."""
    try:
        with uow_factory() as uow:
            results: list[PostResult | Exception] = [*post_each(uow, drafts, now=clock.now())]
            uow.commit()
        return results
    except (KeysTaken, StorageBusy):
        return [_post_alone(uow_factory, clock, draft) for draft in drafts]


def _post_alone(
    uow_factory: UnitOfWorkFactory, clock: Clock, draft: EntryDraft
) -> PostResult | Exception:
    try:
        with uow_factory() as uow:
            result = post_entry(uow, draft, now=clock.now())
            uow.commit()
        return result
    except (DomainError, StorageBusy) as refusal:
        return refusal
