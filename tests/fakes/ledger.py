"""The ledger in memory: the SQL repository's writes, reads and database constraints.

Like the SQL one, this repository refuses nothing a service decides: replays, conflicting
replays and overdrafts are the ledger service's (services/ledger.py). What it does enforce is
what the schema enforces: a key is written once, an entry is reversed at most once, a
no-overdraft account never holds less than zero.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from deni.domain.errors import Conflict
from deni.domain.ledger import (
    MPESA_RECEIPT_CAUSE,
    Account,
    Hold,
    HoldState,
    NormalSide,
    StoredEntry,
    balance_delta,
)
from deni.services.ports import LedgerTotals, NewEntry, StatementLine
from tests.fakes.tables import ConstraintViolated, EntryRow, PostingRow, Tables

PROBLEMS_REPORTED_MAX = 100


class FakeLedgerRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def add_account(self, account: Account, now: datetime) -> None:
        if account.id in self._t.accounts:
            raise ConstraintViolated(f"accounts.id {account.id} is taken")
        owners = {a.owner_id for a in self._t.accounts.values() if a.owner_id is not None}
        if account.owner_id in owners:
            raise ConstraintViolated(f"accounts.owner_id {account.owner_id} is taken")
        self._check_balance(account)
        self._t.accounts[account.id] = account
        self._t.postings_count[account.id] = 0

    def get_account(self, account_id: str) -> Account | None:
        return self._t.accounts.get(account_id)

    def lock_accounts(self, account_ids: Sequence[str]) -> dict[str, Account]:
        found = (self._t.accounts.get(account_id) for account_id in sorted(set(account_ids)))
        return {account.id: account for account in found if account is not None}

    def find_entry(self, idempotency_key: str) -> StoredEntry | None:
        rows = self._t.entries.values()
        return next((r.entry for r in rows if r.entry.idempotency_key == idempotency_key), None)

    def get_entry(self, entry_id: str) -> StoredEntry | None:
        row = self._t.entries.get(entry_id)
        return row.entry if row is not None else None

    def find_reversal(self, entry_id: str) -> StoredEntry | None:
        rows = self._t.entries.values()
        return next((r.entry for r in rows if r.entry.reverses_entry_id == entry_id), None)

    def insert_entries(self, entries: Sequence[NewEntry], *, now: datetime) -> bool:
        assert entries
        assert isinstance(now, datetime), "created_at is NOT NULL in SQL"
        keys = [e.draft.idempotency_key for e in entries]
        if len(set(keys)) < len(keys) or any(self.find_entry(key) for key in keys):
            return False  # nothing written (the contract allows less: some, then roll back)
        for entry in entries:
            self._write(entry, now)
        return True

    def _write(self, entry: NewEntry, now: datetime) -> None:
        """Checks everything first, as a refused statement writes nothing."""
        draft = entry.draft
        if entry.entry_id in self._t.entries:
            raise ConstraintViolated(f"journal_entries.id {entry.entry_id} is taken")
        reverses = draft.reverses_entry_id
        if reverses is not None and (
            reverses not in self._t.entries or self.find_reversal(reverses) is not None
        ):
            raise ConstraintViolated(f"journal_entries.reverses_entry_id {reverses}")
        moved: dict[str, Account] = {}
        for posting in draft.postings:
            account = self._t.accounts.get(posting.account_id)
            if account is None:
                raise ConstraintViolated(f"postings.account_id {posting.account_id}")
            balance_cents = entry.balances_after[posting.account_id]
            moved[account.id] = replace(account, balance_cents=balance_cents)
            self._check_balance(moved[account.id])
        stored = StoredEntry(
            id=entry.entry_id,
            idempotency_key=draft.idempotency_key,
            content_hash=draft.content_hash(),
            code=draft.code,
            postings=draft.postings,
            reverses_entry_id=reverses,
        )
        self._t.entries[entry.entry_id] = EntryRow(
            stored, draft.cause_type, draft.cause_id, draft.memo, now
        )
        for posting in draft.postings:
            self._t.postings.append(
                PostingRow(
                    id=len(self._t.postings) + 1,
                    entry_id=entry.entry_id,
                    account_id=posting.account_id,
                    amount_cents=posting.amount_cents,
                    balance_after_cents=moved[posting.account_id].balance_cents,
                    created_at=now,
                )
            )
            self._t.postings_count[posting.account_id] += 1
        self._t.accounts.update(moved)

    @staticmethod
    def _check_balance(account: Account) -> None:
        if account.no_overdraft and account.balance_cents < 0:
            raise ConstraintViolated(f"CHECK no_overdraft on {account.id}")

    def statement(
        self, account_id: str, *, before_posting_id: int | None, limit: int
    ) -> list[StatementLine]:
        account = self.get_account(account_id)
        assert account is not None
        lines: list[StatementLine] = []
        for posting in reversed(self._t.postings):
            if len(lines) == limit:
                break
            if posting.account_id != account_id:
                continue
            if before_posting_id is not None and posting.id >= before_posting_id:
                continue
            lines.append(self._line(posting, account.normal_side))
        return lines

    def _line(self, posting: PostingRow, normal_side: NormalSide) -> StatementLine:
        row = self._t.entries[posting.entry_id]
        return StatementLine(
            posting_id=posting.id,
            entry_id=posting.entry_id,
            code=row.entry.code.value,
            cause_type=row.cause_type,
            cause_id=row.cause_id,
            amount_cents=balance_delta(normal_side, posting.amount_cents),
            balance_after_cents=posting.balance_after_cents,
            memo=row.memo,
            created_at=posting.created_at,
            mpesa_receipt=self._receipt_of(row),
        )

    def _receipt_of(self, row: EntryRow) -> str | None:
        if row.cause_type == MPESA_RECEIPT_CAUSE:
            return row.cause_id
        holds = self._t.holds.values()
        hold = next((h for h in holds if h.hold_entry_id == row.entry.id), None)
        if hold is None or hold.state is not HoldState.POSTED:
            return None
        assert hold.resolve_entry_id is not None
        return self._t.entries[hold.resolve_entry_id].memo or None

    def add_hold(self, hold: Hold, now: datetime) -> None:
        if hold.id in self._t.holds or self.find_hold(hold.idempotency_key) is not None:
            raise ConstraintViolated(f"holds: {hold.id} or {hold.idempotency_key} is taken")
        if hold.amount_cents <= 0:
            raise ConstraintViolated("CHECK positive on holds.amount_cents")
        self._t.holds[hold.id] = replace(hold, resolve_entry_id=None)

    def find_hold(self, idempotency_key: str) -> Hold | None:
        holds = self._t.holds.values()
        return next((h for h in holds if h.idempotency_key == idempotency_key), None)

    def lock_hold(self, hold_id: str) -> Hold | None:
        return self._t.holds.get(hold_id)

    def resolve_hold(
        self, hold_id: str, *, state: HoldState, resolve_entry_id: str, now: datetime
    ) -> None:
        if resolve_entry_id not in self._t.entries:
            raise ConstraintViolated(f"holds.resolve_entry_id {resolve_entry_id}")
        hold = self._t.holds.get(hold_id)
        if hold is None or hold.state is not HoldState.PENDING:
            # The SQL repository's ConcurrentUpdate (adapters are not the fakes' to import).
            raise Conflict("The hold was resolved by someone else.", code="concurrent_update")
        self._t.holds[hold_id] = replace(hold, state=state, resolve_entry_id=resolve_entry_id)

    def totals(self) -> LedgerTotals:
        sums: Counter[str] = Counter()
        postings_per_account: Counter[str] = Counter()
        by_entry: Counter[str] = Counter()
        postings_per_entry: Counter[str] = Counter()
        for posting in self._t.postings:
            sums[posting.account_id] += posting.amount_cents
            postings_per_account[posting.account_id] += 1
            by_entry[posting.entry_id] += posting.amount_cents
            postings_per_entry[posting.entry_id] += 1
        unbalanced = [
            entry_id
            for entry_id, count in postings_per_entry.items()
            if by_entry[entry_id] != 0 or count < 2
        ]
        mismatched: list[tuple[str, int, int]] = []
        negative: list[str] = []
        for account in self._t.accounts.values():
            recomputed = balance_delta(account.normal_side, sums[account.id])
            counted = postings_per_account[account.id]
            if recomputed != account.balance_cents or counted != self._t.postings_count[account.id]:
                mismatched.append((account.id, account.balance_cents, recomputed))
            if account.no_overdraft and recomputed < 0:
                negative.append(account.id)
        return LedgerTotals(
            postings_sum_cents=sum(p.amount_cents for p in self._t.postings),
            unbalanced_entry_ids=tuple(unbalanced[:PROBLEMS_REPORTED_MAX]),
            mismatched_accounts=tuple(mismatched[:PROBLEMS_REPORTED_MAX]),
            negative_wallets=tuple(negative[:PROBLEMS_REPORTED_MAX]),
            accounts_checked=len(self._t.accounts),
            entries_checked=len(self._t.entries),
        )

    def count_entries_by_code(self) -> dict[str, int]:
        return dict(Counter(row.entry.code.value for row in self._t.entries.values()))
