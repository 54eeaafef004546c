"""SQL repositories for users, the ledger and loans (SQLAlchemy Core, one connection each)."""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    Connection,
    Row,
    Select,
    and_,
    bindparam,
    func,
    literal,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from deni.adapters.db import tables as t
from deni.adapters.db.erasure import erase_person, release_phone
from deni.adapters.db.sync.tables import Change, log_changes, sync_profile_fields, wallet_owner
from deni.domain.errors import Conflict
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
from deni.domain.loans import REQUESTS_READ_MAX, Loan, LoanState, PastRequest, Terms
from deni.domain.security import REMOTE_WRONG_PINS_PER_DAY_MAX
from deni.domain.users import User, shown_contact
from deni.services.ports import LedgerTotals, NewEntry, RepaymentRecord, StatementLine

PROBLEMS_REPORTED_MAX = 100
ENTRIES_PER_WRITE_MAX = 1_000
PROFILE_FIELDS = ("name", "language")  # what a user's sync record shows and may edit

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


class ConcurrentUpdate(Conflict):
    code = "concurrent_update"


# Built once: a statement built per call costs SQLAlchemy more than the round trip it makes.
_USER_BY_ID = select(t.users).where(t.users.c.id == bindparam("id"))
_USER_BY_PHONE = select(t.users).where(t.users.c.phone == bindparam("phone"))
_USER_LOCK = _USER_BY_ID.with_for_update(key_share=True)
USERS_SHAPES_BUILT_MAX = 8  # up to this many ids and phones: a statement built once per shape
_USERS_BY_IDS_OR_PHONES_MANY = select(t.users).where(
    or_(
        t.users.c.id.in_(bindparam("ids", expanding=True)),
        t.users.c.phone.in_(bindparam("phones", expanding=True)),
    )
)


@functools.cache
def _users_by_ids_or_phones(ids: int, phones: int) -> Select[Any]:
    """Users with any of `ids` ids (:id0, ...) or `phones` phones (:phone0, ...). One statement
    per shape, built once: an expanding IN is rebuilt on every call."""
    assert 0 < ids + phones <= USERS_SHAPES_BUILT_MAX
    matches = [t.users.c.id == bindparam(f"id{i}") for i in range(ids)]
    matches += [t.users.c.phone == bindparam(f"phone{i}") for i in range(phones)]
    return select(t.users).where(or_(*matches))


# ON CONFLICT DO NOTHING with no target: a taken id or a taken code both insert nothing.
_LOAN_INSERT = {
    "postgresql": postgresql.insert(t.loans).on_conflict_do_nothing().returning(t.loans.c.id),
    "sqlite": sqlite.insert(t.loans).on_conflict_do_nothing().returning(t.loans.c.id),
}
_LOAN_FIXED_COLUMNS = ("id", "code", "borrower_id", "lender_id", "requested_at")
_LOAN_SAVE = (
    update(t.loans)
    .where(and_(t.loans.c.id == bindparam("loan_id"), t.loans.c.version == bindparam("seen")))
    .values({c.name: bindparam(c.name) for c in t.loans.c if c.name not in _LOAN_FIXED_COLUMNS})
)
_LOAN_BY_ID = select(t.loans).where(t.loans.c.id == bindparam("id"))
_LOAN_BY_CODE = select(t.loans).where(t.loans.c.code == bindparam("code"))
_LOAN_LOCK = _LOAN_BY_ID.with_for_update(key_share=True)
_LOAN_LOCK_OR_SKIP = _LOAN_BY_ID.with_for_update(key_share=True, skip_locked=True)


class SqlUserRepository:
    """Users, remembered for the rest of the transaction once read.

    A sync push group or a callback batch reads the same few people again and again. A
    remembered user may be older than a concurrent commit; what a command relies on being
    current (the PIN, its attempts, the lock) is read with lock(), which always goes to the
    database. Nothing else about a user is money: a name in a notification may be a moment
    old. Callers get copies (services change users in place before saving them), and a
    rolled-back savepoint makes the repository forget everything (forget()).
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._known: dict[str, User] = {}  # by id
        self._ids_by_phone: dict[str, str] = {}

    def _remember(self, user: User) -> User:
        self._known[user.id] = user
        self._ids_by_phone[user.phone] = user.id
        return replace(user)

    def _known_copy(self, user_id: str) -> User | None:
        user = self._known.get(user_id)
        return replace(user) if user is not None else None

    def forget(self) -> None:
        """Writes to users were rolled back: what was remembered may be wrong now."""
        self._known.clear()
        self._ids_by_phone.clear()

    def close(self, user_id: str, *, now: datetime) -> None:
        erase_person(self._connection, user_id, now=now)
        self.forget()

    def release_phone(self, user_id: str, *, now: datetime) -> None:
        release_phone(self._connection, user_id, now=now)
        self.forget()

    def add(self, user: User) -> None:
        self._connection.execute(
            t.users.insert().values(**_user_values(user), updated_at=user.created_at)
        )
        self._remember(user)
        # Profile edits log their own change (services/sync_profile); PIN attempts are private.
        log_changes(self._connection, [(user.id, "user", user.id, "put")], user.created_at)

    def get(self, user_id: str) -> User | None:
        if (known := self._known_copy(user_id)) is not None:
            return known
        row = self._connection.execute(_USER_BY_ID, {"id": user_id}).first()
        return self._remember(_user(row)) if row else None

    def get_by_phone(self, phone: str) -> User | None:
        if (user_id := self._ids_by_phone.get(phone)) is not None:
            return self._known_copy(user_id)
        row = self._connection.execute(_USER_BY_PHONE, {"phone": phone}).first()
        return self._remember(_user(row)) if row else None

    def find(self, *, ids: Collection[str] = (), phones: Collection[str] = ()) -> list[User]:
        if (known := self._all_known(ids, phones)) is not None:
            return known
        if len(ids) + len(phones) > USERS_SHAPES_BUILT_MAX:  # a batch: rebuilding is amortised
            params: dict[str, Any] = {"ids": list(ids), "phones": list(phones)}
            rows = self._connection.execute(_USERS_BY_IDS_OR_PHONES_MANY, params)
            return [self._remember(_user(row)) for row in rows]
        query = _users_by_ids_or_phones(len(ids), len(phones))
        params = {f"id{i}": user_id for i, user_id in enumerate(ids)}
        params.update({f"phone{i}": phone for i, phone in enumerate(phones)})
        return [self._remember(_user(row)) for row in self._connection.execute(query, params)]

    def _all_known(self, ids: Collection[str], phones: Collection[str]) -> list[User] | None:
        """Copies of the users asked for if every one of them is remembered, else None."""
        wanted = set(ids)
        for phone in phones:
            if (user_id := self._ids_by_phone.get(phone)) is None:
                return None
            wanted.add(user_id)
        if not wanted <= self._known.keys():
            return None
        return [replace(self._known[user_id]) for user_id in wanted]

    def contacts(self, user_ids: Collection[str]) -> dict[str, tuple[str, str]]:
        found = self.find(ids=list(user_ids))
        return {u.id: shown_contact(u.name, u.phone, closed=u.is_closed) for u in found}

    def lock(self, user_id: str) -> User | None:
        # FOR NO KEY UPDATE: rows that merely point at this user (a notification, a posting)
        # can still be written by others meanwhile; FOR UPDATE would make those inserts wait
        # and could close a deadlock cycle with a deposit.
        row = self._connection.execute(_USER_LOCK, {"id": user_id}).first()
        return self._remember(_user(row)) if row else None

    def save(self, user: User, now: datetime) -> None:
        values = _user_values(user)
        del values["id"], values["created_at"]
        u = t.users.c
        before = self._connection.execute(
            select(u.name, u.language, u.phone_proven_at).where(u.id == user.id)
        ).one()
        self._connection.execute(
            update(t.users).where(t.users.c.id == user.id).values(**values, updated_at=now)
        )
        self._remember(replace(user))
        changed = [f for f in PROFILE_FIELDS if getattr(before, f) != getattr(user, f)]
        if changed:
            self._bump_profile_versions(user.id, changed, now)
        if changed or (before.phone_proven_at is None) != (user.phone_proven_at is None):
            # The user's sync record shows whether the number is proven, but nobody edits it.
            log_changes(self._connection, [(user.id, "user", user.id, "put")], now)

    def _bump_profile_versions(self, user_id: str, fields: Sequence[str], now: datetime) -> None:
        """Per-field server versions for last-writer-wins (sync); the caller locked the user."""
        p = sync_profile_fields
        current = self._connection.execute(
            select(func.coalesce(func.max(p.c.version), 0)).where(p.c.user_id == user_id)
        ).scalar_one()
        version = int(current) + 1
        for field in fields:
            where = and_(p.c.user_id == user_id, p.c.field == field)
            result = self._connection.execute(
                update(p).where(where).values(version=version, updated_at=now)
            )
            if result.rowcount == 0:
                self._connection.execute(
                    p.insert().values(user_id=user_id, field=field, version=version, updated_at=now)
                )


def _user_values(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "phone": user.phone,
        "name": user.name,
        "language": user.language,
        "pin_hash": user.pin_hash,
        "failed_pin_attempts": user.failed_pin_attempts,
        "lock_count": user.lock_count,
        "locked_until": user.locked_until,
        "pin_reset_at": user.pin_reset_at,
        "closed_at": user.closed_at,
        "support_locked_at": user.support_locked_at,
        "session_epoch": user.session_epoch,
        "remote_failed_pin_attempts": user.remote_failed_pin_attempts,
        "remote_lock_count": user.remote_lock_count,
        "remote_locked_until": user.remote_locked_until,
        "remote_wrong_pins_at": _unix_seconds_csv(user.remote_wrong_pins_at),
        "session_failed_pin_attempts": user.session_failed_pin_attempts,
        "session_lock_count": user.session_lock_count,
        "session_locked_until": user.session_locked_until,
        "session_wrong_pins_at": _unix_seconds_csv(user.session_wrong_pins_at),
        "phone_proven_at": user.phone_proven_at,
        "created_at": user.created_at,
    }


def _unix_seconds_csv(times: Sequence[datetime]) -> str:
    assert len(times) <= REMOTE_WRONG_PINS_PER_DAY_MAX
    # Rounded up: a guess then stays in the window a fraction longer, never shorter.
    return ",".join(str(math.ceil(at.timestamp())) for at in times)


def _times_of_csv(text: str) -> tuple[datetime, ...]:
    parts = [part for part in text.split(",") if part.isdigit()][-REMOTE_WRONG_PINS_PER_DAY_MAX:]
    return tuple(datetime.fromtimestamp(int(part), UTC) for part in parts)


def _user(row: Row[Any]) -> User:
    return User(
        id=row.id,
        phone=row.phone,
        name=row.name,
        language=row.language,
        pin_hash=row.pin_hash,
        created_at=row.created_at,
        failed_pin_attempts=row.failed_pin_attempts,
        lock_count=row.lock_count,
        locked_until=row.locked_until,
        pin_reset_at=row.pin_reset_at,
        closed_at=row.closed_at,
        support_locked_at=row.support_locked_at,
        session_epoch=row.session_epoch,
        remote_failed_pin_attempts=row.remote_failed_pin_attempts,
        remote_lock_count=row.remote_lock_count,
        remote_locked_until=row.remote_locked_until,
        remote_wrong_pins_at=_times_of_csv(row.remote_wrong_pins_at),
        session_failed_pin_attempts=row.session_failed_pin_attempts,
        session_lock_count=row.session_lock_count,
        session_locked_until=row.session_locked_until,
        session_wrong_pins_at=_times_of_csv(row.session_wrong_pins_at),
        phone_proven_at=row.phone_proven_at,
    )


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
        return _hold(row) if row else None

    def lock_hold(self, hold_id: str) -> Hold | None:
        query = select(t.holds).where(t.holds.c.id == hold_id).with_for_update(key_share=True)
        row = self._connection.execute(query).first()
        return _hold(row) if row else None

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


def _loan_changes(loan: Loan) -> list[Change]:
    return [(user_id, "loan", loan.id, "put") for user_id in (loan.borrower_id, loan.lender_id)]


def _account(row: Row[Any]) -> Account:
    return Account(
        id=row.id,
        kind=AccountKind(row.kind),
        normal_side=NormalSide(row.normal_side),
        owner_id=row.owner_id,
        no_overdraft=bool(row.no_overdraft),
        balance_cents=row.balance_cents,
    )


def _hold(row: Row[Any]) -> Hold:
    return Hold(
        id=row.id,
        account_id=row.account_id,
        amount_cents=row.amount_cents,
        state=HoldState(row.state),
        idempotency_key=row.idempotency_key,
        hold_entry_id=row.hold_entry_id,
        resolve_entry_id=row.resolve_entry_id,
    )


def _settleable_by_credits() -> Select[Any]:
    """Per user of :ids, the loans money reaching their wallet may settle, at most :per_user
    of each kind, oldest request first: overdue ones they borrowed, approved ones they lent."""
    loans_ = t.loans
    ids: BindParameter[Any] = bindparam("ids", expanding=True)
    overdue = select(
        loans_.c.id, loans_.c.borrower_id.label("user_id"), literal("overdue").label("role"),
        loans_.c.requested_at,
    ).where(
        loans_.c.state == LoanState.ACTIVE.value,
        loans_.c.borrower_id.in_(ids),
        loans_.c.due_date < bindparam("due_before"),
    )  # fmt: skip
    waiting = select(
        loans_.c.id, loans_.c.lender_id.label("user_id"), literal("waiting").label("role"),
        loans_.c.requested_at,
    ).where(loans_.c.state == LoanState.APPROVED.value, loans_.c.lender_id.in_(ids))  # fmt: skip
    both = union_all(overdue, waiting).subquery()
    order = (both.c.requested_at, both.c.id)
    rank = func.row_number().over(partition_by=(both.c.user_id, both.c.role), order_by=order)
    ranked = select(both, rank.label("n")).subquery()
    return (
        select(ranked.c.id, ranked.c.user_id, ranked.c.role)
        .where(ranked.c.n <= bindparam("per_user"))
        .order_by(ranked.c.requested_at, ranked.c.id)
    )


_SETTLEABLE_BY_CREDITS = _settleable_by_credits()


class SqlLoanRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, loan: Loan) -> bool:
        values = {**_loan_values(loan), "updated_at": loan.requested_at}
        insert = _LOAN_INSERT[self._connection.dialect.name]
        if self._connection.execute(insert, values).first() is None:
            return False
        log_changes(self._connection, _loan_changes(loan), loan.requested_at)
        return True

    def get(self, loan_id: str) -> Loan | None:
        row = self._connection.execute(_LOAN_BY_ID, {"id": loan_id}).first()
        return loan_from_row(row) if row else None

    def get_by_code(self, code: str) -> Loan | None:
        row = self._connection.execute(_LOAN_BY_CODE, {"code": code}).first()
        return loan_from_row(row) if row else None

    def lock(self, loan_id: str, *, skip_locked: bool = False) -> Loan | None:
        query = _LOAN_LOCK_OR_SKIP if skip_locked else _LOAN_LOCK
        row = self._connection.execute(query, {"id": loan_id}).first()
        return loan_from_row(row) if row else None

    def save(self, loan: Loan, now: datetime) -> None:
        values = _loan_values(loan)
        for fixed in _LOAN_FIXED_COLUMNS:
            del values[fixed]
        values.update(loan_id=loan.id, seen=loan.version, version=loan.version + 1, updated_at=now)
        result = self._connection.execute(_LOAN_SAVE, values)
        if result.rowcount != 1:
            raise ConcurrentUpdate("The loan changed while you were acting on it; try again.")
        loan.version += 1
        log_changes(self._connection, _loan_changes(loan), now)

    def requests_since(self, borrower_id: str, *, since: datetime, limit: int) -> list[PastRequest]:
        assert 0 < limit <= REQUESTS_READ_MAX
        c = t.loans.c
        waiting = c.state == LoanState.REQUESTED.value
        query = (
            select(c.lender_id, c.state, c.requested_at)
            .where(c.borrower_id == borrower_id, or_(c.requested_at >= since, waiting))
            .order_by(c.requested_at.desc())
            .limit(limit)
        )
        rows = self._connection.execute(query)
        return [PastRequest(row.lender_id, LoanState(row.state), row.requested_at) for row in rows]

    def list_for(
        self,
        *,
        user_id: str,
        role: str,
        states: Sequence[LoanState],
        limit: int,
        offset: int,
        overdue_on: date | None = None,
        overdue: bool = True,
    ) -> list[Loan]:
        assert role in ("borrower", "lender", "any")
        owner = {
            "borrower": t.loans.c.borrower_id == user_id,
            "lender": t.loans.c.lender_id == user_id,
            "any": (t.loans.c.borrower_id == user_id) | (t.loans.c.lender_id == user_id),
        }[role]
        query = select(t.loans).where(owner)
        if states:
            query = query.where(t.loans.c.state.in_([s.value for s in states]))
        if overdue_on is not None:
            is_overdue = and_(
                t.loans.c.state == LoanState.ACTIVE.value, t.loans.c.due_date < overdue_on
            )
            query = query.where(is_overdue if overdue else ~is_overdue)
        query = query.order_by(t.loans.c.requested_at.desc(), t.loans.c.id).limit(limit)
        return [loan_from_row(row) for row in self._connection.execute(query.offset(offset))]

    def ids_in_state(
        self,
        *,
        states: Sequence[LoanState],
        lender_id: str | None = None,
        borrower_id: str | None = None,
        expires_before: datetime | None = None,
        due_before: date | None = None,
        limit: int,
    ) -> list[str]:
        query = select(t.loans.c.id).where(t.loans.c.state.in_([s.value for s in states]))
        if lender_id is not None:
            query = query.where(t.loans.c.lender_id == lender_id)
        if borrower_id is not None:
            query = query.where(t.loans.c.borrower_id == borrower_id)
        if expires_before is not None:
            query = query.where(t.loans.c.expires_at <= expires_before)
        if due_before is not None:
            query = query.where(t.loans.c.due_date < due_before)
        query = query.order_by(t.loans.c.requested_at, t.loans.c.id).limit(limit)
        return [row.id for row in self._connection.execute(query)]

    def settleable_by_credits(
        self, user_ids: Collection[str], *, due_before: date, per_user: int
    ) -> list[tuple[str, str, str]]:
        params = {"ids": list(user_ids), "due_before": due_before, "per_user": per_user}
        rows = self._connection.execute(_SETTLEABLE_BY_CREDITS, params)
        return [(row.id, row.user_id, row.role) for row in rows]

    def active_due_before(self, due_before: date, *, after_id: str, limit: int) -> list[str]:
        query = (
            select(t.loans.c.id)
            .where(t.loans.c.state == LoanState.ACTIVE.value)
            .where(t.loans.c.due_date < due_before)
            .where(t.loans.c.id > after_id)
            .order_by(t.loans.c.id)
            .limit(limit)
        )
        return [row.id for row in self._connection.execute(query)]

    def count_by_state(self) -> dict[str, int]:
        query = select(t.loans.c.state, func.count()).group_by(t.loans.c.state)
        return {row[0]: int(row[1]) for row in self._connection.execute(query)}

    def add_repayment(self, repayment: RepaymentRecord) -> None:
        self._connection.execute(
            t.repayments.insert().values(
                id=repayment.id,
                loan_id=repayment.loan_id,
                entry_id=repayment.entry_id,
                amount_cents=repayment.amount_cents,
                penalty_cents=repayment.penalty_cents,
                fee_cents=repayment.fee_cents,
                principal_cents=repayment.principal_cents,
                channel=repayment.channel,
                created_at=repayment.created_at,
            )
        )
        parties = self._connection.execute(
            select(t.loans.c.borrower_id, t.loans.c.lender_id).where(
                t.loans.c.id == repayment.loan_id
            )
        ).one()
        log_changes(
            self._connection,
            [(user_id, "repayment", repayment.id, "put") for user_id in parties],
            repayment.created_at,
        )

    def repayments(self, loan_id: str) -> list[RepaymentRecord]:
        query = (
            select(t.repayments)
            .where(t.repayments.c.loan_id == loan_id)
            .order_by(t.repayments.c.created_at.desc(), t.repayments.c.id)
        )
        return [
            RepaymentRecord(
                id=row.id,
                loan_id=row.loan_id,
                entry_id=row.entry_id,
                amount_cents=row.amount_cents,
                penalty_cents=row.penalty_cents,
                fee_cents=row.fee_cents,
                principal_cents=row.principal_cents,
                channel=row.channel,
                created_at=row.created_at,
            )
            for row in self._connection.execute(query)
        ]


def _loan_values(loan: Loan) -> dict[str, Any]:
    return {
        "id": loan.id,
        "code": loan.code,
        "borrower_id": loan.borrower_id,
        "lender_id": loan.lender_id,
        "principal_cents": loan.terms.principal_cents,
        "fee_cents": loan.terms.fee_cents,
        "penalty_daily_cents": loan.terms.penalty_daily_cents,
        "due_date": loan.terms.due_date,
        "state": loan.state.value,
        "requested_at": loan.requested_at,
        "expires_at": loan.expires_at,
        "disbursed_at": loan.disbursed_at,
        "closed_at": loan.closed_at,
        "principal_paid_cents": loan.principal_paid_cents,
        "fee_paid_cents": loan.fee_paid_cents,
        "penalty_charged_cents": loan.penalty_charged_cents,
        "penalty_paid_cents": loan.penalty_paid_cents,
    }


def loan_from_row(row: Row[Any]) -> Loan:
    return Loan(
        id=row.id,
        code=row.code,
        borrower_id=row.borrower_id,
        lender_id=row.lender_id,
        terms=Terms(row.principal_cents, row.fee_cents, row.penalty_daily_cents, row.due_date),
        state=LoanState(row.state),
        requested_at=row.requested_at,
        expires_at=row.expires_at,
        principal_paid_cents=row.principal_paid_cents,
        fee_paid_cents=row.fee_paid_cents,
        penalty_charged_cents=row.penalty_charged_cents,
        penalty_paid_cents=row.penalty_paid_cents,
        disbursed_at=row.disbursed_at,
        closed_at=row.closed_at,
        version=row.version,
    )
