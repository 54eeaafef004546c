"""SQL for the ledger: accounts locked in id order, entries and postings written in one
statement, statements read back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    Select,
    and_,
    bindparam,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects import sqlite

from deni.adapters.db import tables as t
from deni.adapters.db.conflicts import ConcurrentUpdate
from deni.adapters.db.sync.tables import Change, log_changes, wallet_owner
from deni.domain.ledger import (
    MPESA_RECEIPT_CAUSE,
    Account,
    AccountKind,
    EntryCode,
    Hold,
    HoldState,
    NormalSide,
    Posting,
    StoredEntry,
    balance_delta,
)
from deni.services.ports import LedgerTotals, NewEntry, StatementLine

PROBLEMS_REPORTED_MAX = 100
ENTRIES_PER_WRITE_MAX = 1_000

# The ledger's hot statements, built once: building a statement costs more than sending it.
_LOCK_ACCOUNTS = (
    select(t.accounts)
    .where(t.accounts.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(t.accounts.c.id)
    .with_for_update(key_share=True)
)
_UPDATE_BALANCE = (
    update(t.accounts)
    .where(t.accounts.c.id == bindparam("account_id"))
    .values(
        balance_cents=bindparam("balance"),
        postings_count=t.accounts.c.postings_count + bindparam("added"),
    )
)


_SQLITE_INSERT_ENTRY = (
    sqlite.insert(t.journal_entries)
    .on_conflict_do_nothing(index_elements=["idempotency_key"])
    .returning(t.journal_entries.c.id)
)
# PostgreSQL writes entries in one statement: claim their keys, insert the postings, move the
# balances. Unless every key was free (`whole`), the postings and balances write nothing; for a
# single entry that means its key is taken and nothing at all was written.
_PG_WRITE_ENTRIES = text(
    """
    WITH entry AS (
        INSERT INTO journal_entries (id, idempotency_key, content_hash, code, cause_type,
                                     cause_id, reverses_entry_id, memo, created_at)
        SELECT e.id, e.idempotency_key, e.content_hash, e.code, e.cause_type, e.cause_id,
               e.reverses_entry_id, e.memo, :created_at
        FROM unnest(CAST(:ids AS varchar[]), CAST(:keys AS varchar[]), CAST(:hashes AS varchar[]),
                    CAST(:codes AS varchar[]), CAST(:cause_types AS varchar[]),
                    CAST(:cause_ids AS varchar[]), CAST(:reverses AS varchar[]),
                    CAST(:memos AS varchar[]))
             WITH ORDINALITY AS e(id, idempotency_key, content_hash, code, cause_type, cause_id,
                                  reverses_entry_id, memo, n)
        ORDER BY e.n
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING id
    ), whole AS (
        SELECT count(*) = :entries AS ok FROM entry
    ), posted AS (
        INSERT INTO postings (entry_id, account_id, amount_cents, balance_after_cents, created_at)
        SELECT p.entry_id, p.account_id, p.amount_cents, p.balance_after_cents, :created_at
        FROM whole,
             unnest(CAST(:posting_entries AS varchar[]), CAST(:posting_accounts AS varchar[]),
                    CAST(:posting_amounts AS bigint[]), CAST(:posting_balances AS bigint[]))
                 WITH ORDINALITY AS p(entry_id, account_id, amount_cents, balance_after_cents, n)
        WHERE whole.ok
        ORDER BY p.n
    ), moved AS (
        UPDATE accounts
        SET balance_cents = b.balance_cents, postings_count = accounts.postings_count + b.added
        FROM whole,
             unnest(CAST(:accounts AS varchar[]), CAST(:balances AS bigint[]),
                    CAST(:added AS bigint[])) AS b(id, balance_cents, added)
        WHERE whole.ok AND accounts.id = b.id
    )
    SELECT ok FROM whole
    """
).bindparams(bindparam("created_at", type_=t.UtcDateTime()))


def statement_query() -> Select[Any]:
    """Postings with their entry and, for a payout hold, the entry that settled it (whose memo
    is the B2C receipt). Callers add the filter and the order."""
    p, e, h = t.postings, t.journal_entries, t.holds
    settled = t.journal_entries.alias("settled")
    return (
        select(
            p,
            e.c.code,
            e.c.cause_type,
            e.c.cause_id,
            e.c.memo,
            h.c.state.label("hold_state"),
            settled.c.memo.label("settled_memo"),
        )
        .join(e, e.c.id == p.c.entry_id)
        .outerjoin(h, h.c.hold_entry_id == e.c.id)
        .outerjoin(settled, settled.c.id == h.c.resolve_entry_id)
    )


def statement_line(row: Row[Any], normal_side: NormalSide) -> StatementLine:
    return StatementLine(
        posting_id=row.id,
        entry_id=row.entry_id,
        code=row.code,
        cause_type=row.cause_type,
        cause_id=row.cause_id,
        amount_cents=balance_delta(normal_side, row.amount_cents),
        balance_after_cents=row.balance_after_cents,
        memo=row.memo,
        created_at=row.created_at,
        mpesa_receipt=_receipt_of(row),
    )


def _receipt_of(row: Row[Any]) -> str | None:
    if row.cause_type == MPESA_RECEIPT_CAUSE:
        return str(row.cause_id)
    if row.hold_state == HoldState.POSTED.value:
        return str(row.settled_memo) or None
    return None


@dataclass(frozen=True, slots=True)
class _EntriesWrite:
    """Entries to write at once, with what that does to each account they touch."""

    entries: Sequence[NewEntry]
    postings: list[tuple[NewEntry, Posting]]  # in order
    final: dict[str, int]  # each account's balance after the last of the entries
    added: Counter[str]  # postings per account

    @classmethod
    def of(cls, entries: Sequence[NewEntry]) -> _EntriesWrite:
        assert 1 <= len(entries) <= ENTRIES_PER_WRITE_MAX
        postings = [(e, p) for e in entries for p in e.draft.postings]
        final: dict[str, int] = {}
        added: Counter[str] = Counter()
        for entry, posting in postings:
            final[posting.account_id] = entry.balances_after[posting.account_id]
            added[posting.account_id] += 1
        return cls(entries, postings, final, added)


class SqlLedgerRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add_account(self, account: Account, now: datetime) -> None:
        self._connection.execute(
            t.accounts.insert().values(
                id=account.id,
                kind=account.kind.value,
                normal_side=account.normal_side.value,
                owner_id=account.owner_id,
                no_overdraft=account.no_overdraft,
                balance_cents=account.balance_cents,
                postings_count=0,
                created_at=now,
            )
        )

    def get_account(self, account_id: str) -> Account | None:
        query = select(t.accounts).where(t.accounts.c.id == account_id)
        row = self._connection.execute(query).first()
        return _account(row) if row else None

    def lock_accounts(self, account_ids: Sequence[str]) -> dict[str, Account]:
        # Always lock in id order: two transfers between the same wallets cannot deadlock.
        rows = self._connection.execute(_LOCK_ACCOUNTS, {"ids": sorted(set(account_ids))})
        return {row.id: _account(row) for row in rows}

    def find_entry(self, idempotency_key: str) -> StoredEntry | None:
        query = select(t.journal_entries).where(
            t.journal_entries.c.idempotency_key == idempotency_key
        )
        row = self._connection.execute(query).first()
        return self._stored_entry(row) if row else None

    def get_entry(self, entry_id: str) -> StoredEntry | None:
        query = select(t.journal_entries).where(t.journal_entries.c.id == entry_id)
        row = self._connection.execute(query).first()
        return self._stored_entry(row) if row else None

    def find_reversal(self, entry_id: str) -> StoredEntry | None:
        query = select(t.journal_entries).where(t.journal_entries.c.reverses_entry_id == entry_id)
        row = self._connection.execute(query).first()
        return self._stored_entry(row) if row else None

    def _stored_entry(self, row: Row[Any]) -> StoredEntry:
        query = (
            select(t.postings.c.account_id, t.postings.c.amount_cents)
            .where(t.postings.c.entry_id == row.id)
            .order_by(t.postings.c.id)
        )
        postings = tuple(
            Posting(p.account_id, p.amount_cents) for p in self._connection.execute(query)
        )
        return StoredEntry(
            id=row.id,
            idempotency_key=row.idempotency_key,
            content_hash=row.content_hash,
            code=EntryCode(row.code),
            postings=postings,
            reverses_entry_id=row.reverses_entry_id,
        )

    def insert_entries(self, entries: Sequence[NewEntry], *, now: datetime) -> bool:
        write = _EntriesWrite.of(entries)
        if self._connection.dialect.name == "postgresql":
            written = self._write_entries_pg(write, now)
        else:
            written = self._write_entries_portably(write, now)
        if written:
            changes = [c for e in entries for c in _wallet_changes(e.entry_id, e.balances_after)]
            log_changes(self._connection, changes, now)
        return written

    def _write_entries_pg(self, write: _EntriesWrite, now: datetime) -> bool:
        drafts = [e.draft for e in write.entries]
        params = {
            "created_at": now,
            "entries": len(write.entries),
            "ids": [e.entry_id for e in write.entries],
            "keys": [d.idempotency_key for d in drafts],
            "hashes": [d.content_hash() for d in drafts],
            "codes": [d.code.value for d in drafts],
            "cause_types": [d.cause_type for d in drafts],
            "cause_ids": [d.cause_id for d in drafts],
            "reverses": [d.reverses_entry_id for d in drafts],
            "memos": [d.memo for d in drafts],
            "posting_entries": [e.entry_id for e, _ in write.postings],
            "posting_accounts": [p.account_id for _, p in write.postings],
            "posting_amounts": [p.amount_cents for _, p in write.postings],
            "posting_balances": [e.balances_after[p.account_id] for e, p in write.postings],
            "accounts": list(write.final),
            "balances": list(write.final.values()),
            "added": [write.added[account_id] for account_id in write.final],
        }
        return bool(self._connection.execute(_PG_WRITE_ENTRIES, params).scalar_one())

    def _write_entries_portably(self, write: _EntriesWrite, now: datetime) -> bool:
        for entry in write.entries:
            draft = entry.draft
            values = {
                "id": entry.entry_id,
                "idempotency_key": draft.idempotency_key,
                "content_hash": draft.content_hash(),
                "code": draft.code.value,
                "cause_type": draft.cause_type,
                "cause_id": draft.cause_id,
                "reverses_entry_id": draft.reverses_entry_id,
                "memo": draft.memo,
                "created_at": now,
            }
            if self._connection.execute(_SQLITE_INSERT_ENTRY, values).first() is None:
                return False  # the key is taken: nothing written if it was the only entry
        self._connection.execute(
            t.postings.insert(),
            [
                {
                    "entry_id": entry.entry_id,
                    "account_id": posting.account_id,
                    "amount_cents": posting.amount_cents,
                    "balance_after_cents": entry.balances_after[posting.account_id],
                    "created_at": now,
                }
                for entry, posting in write.postings
            ],
        )
        self._connection.execute(
            _UPDATE_BALANCE,
            [
                {"account_id": account_id, "balance": balance, "added": write.added[account_id]}
                for account_id, balance in write.final.items()
            ],
        )
        return True

    def statement(
        self, account_id: str, *, before_posting_id: int | None, limit: int
    ) -> list[StatementLine]:
        account = self.get_account(account_id)
        assert account is not None
        p = t.postings
        query = statement_query().where(p.c.account_id == account_id)
        query = query.order_by(p.c.id.desc()).limit(limit)
        if before_posting_id is not None:
            query = query.where(p.c.id < before_posting_id)
        return [statement_line(row, account.normal_side) for row in self._connection.execute(query)]

    def add_hold(self, hold: Hold, now: datetime) -> None:
        self._connection.execute(
            t.holds.insert().values(
                id=hold.id,
                account_id=hold.account_id,
                amount_cents=hold.amount_cents,
                state=hold.state.value,
                idempotency_key=hold.idempotency_key,
                hold_entry_id=hold.hold_entry_id,
                resolve_entry_id=None,
                created_at=now,
            )
        )

    def find_hold(self, idempotency_key: str) -> Hold | None:
        query = select(t.holds).where(t.holds.c.idempotency_key == idempotency_key)
        row = self._connection.execute(query).first()
        return hold_from_row(row) if row else None

    def lock_hold(self, hold_id: str) -> Hold | None:
        query = select(t.holds).where(t.holds.c.id == hold_id).with_for_update(key_share=True)
        row = self._connection.execute(query).first()
        return hold_from_row(row) if row else None

    def resolve_hold(
        self, hold_id: str, *, state: HoldState, resolve_entry_id: str, now: datetime
    ) -> None:
        result = self._connection.execute(
            update(t.holds)
            .where(and_(t.holds.c.id == hold_id, t.holds.c.state == HoldState.PENDING.value))
            .values(state=state.value, resolve_entry_id=resolve_entry_id, resolved_at=now)
        )
        if result.rowcount != 1:
            raise ConcurrentUpdate("The hold was resolved by someone else.")
        query = select(t.holds.c.account_id, t.holds.c.hold_entry_id).where(t.holds.c.id == hold_id)
        row = self._connection.execute(query).one()
        # The wallet's held amount and the hold's statement line (its receipt) changed.
        log_changes(self._connection, _wallet_changes(row.hold_entry_id, [row.account_id]), now)

    def totals(self) -> LedgerTotals:
        c = self._connection
        postings_sum = c.execute(select(func.coalesce(func.sum(t.postings.c.amount_cents), 0)))
        unbalanced = c.execute(
            select(t.postings.c.entry_id)
            .group_by(t.postings.c.entry_id)
            .having((func.sum(t.postings.c.amount_cents) != 0) | (func.count() < 2))
            .limit(PROBLEMS_REPORTED_MAX)
        )
        unbalanced_ids = tuple(row.entry_id for row in unbalanced)
        mismatched, negative, accounts_checked = self._check_accounts()
        entries_checked = c.execute(
            select(func.count()).select_from(t.journal_entries)
        ).scalar_one()
        return LedgerTotals(
            postings_sum_cents=int(postings_sum.scalar_one()),
            unbalanced_entry_ids=unbalanced_ids,
            mismatched_accounts=tuple(mismatched),
            negative_wallets=tuple(negative),
            accounts_checked=accounts_checked,
            entries_checked=int(entries_checked),
        )

    def count_entries_by_code(self) -> dict[str, int]:
        e = t.journal_entries
        query = select(e.c.code, func.count()).group_by(e.c.code)
        return {row[0]: int(row[1]) for row in self._connection.execute(query)}

    def _check_accounts(self) -> tuple[list[tuple[str, int, int]], list[str], int]:
        sums = (
            select(
                t.postings.c.account_id,
                func.sum(t.postings.c.amount_cents).label("sum_cents"),
                func.count().label("count"),
            )
            .group_by(t.postings.c.account_id)
            .subquery()
        )
        query = select(
            t.accounts, func.coalesce(sums.c.sum_cents, 0), func.coalesce(sums.c.count, 0)
        ).outerjoin(sums, sums.c.account_id == t.accounts.c.id)
        mismatched: list[tuple[str, int, int]] = []
        negative: list[str] = []
        checked = 0
        for row in self._connection.execute(query):
            checked += 1
            recomputed = balance_delta(NormalSide(row.normal_side), int(row[-2]))
            if recomputed != row.balance_cents or int(row[-1]) != row.postings_count:
                mismatched.append((row.id, row.balance_cents, recomputed))
            if row.no_overdraft and recomputed < 0:
                negative.append(row.id)
        return mismatched[:PROBLEMS_REPORTED_MAX], negative[:PROBLEMS_REPORTED_MAX], checked


def _wallet_changes(entry_id: str, account_ids: Iterable[str]) -> list[Change]:
    changes: list[Change] = []
    for account_id in account_ids:
        owner = wallet_owner(account_id)
        if owner is not None:
            changes.append((owner, "wallet", owner, "put"))
            changes.append((owner, "transaction", entry_id, "put"))
    return changes


def _account(row: Row[Any]) -> Account:
    return Account(
        id=row.id,
        kind=AccountKind(row.kind),
        normal_side=NormalSide(row.normal_side),
        owner_id=row.owner_id,
        no_overdraft=bool(row.no_overdraft),
        balance_cents=row.balance_cents,
    )


def hold_from_row(row: Row[Any]) -> Hold:
    return Hold(
        id=row.id,
        account_id=row.account_id,
        amount_cents=row.amount_cents,
        state=HoldState(row.state),
        idempotency_key=row.idempotency_key,
        hold_entry_id=row.hold_entry_id,
        resolve_entry_id=row.resolve_entry_id,
    )
