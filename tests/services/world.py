"""What a service test runs against: a unit of work factory, the clock, the PIN hasher, and a
back door to the stored rows for what no service shows (counting rows, tampering with them).

`fake` is the in-memory fake (tests/fakes); `sqlite` the SQL repositories on a migrated SQLite
file. Both answer the same back door, so one test body checks both, and the fake is held to
behave like the real thing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Protocol

from sqlalchemy import Engine, delete, event, func, select, update
from sqlalchemy.exc import IntegrityError

from deni.adapters.db import tables as t
from deni.adapters.db.uow import SqlUnitOfWorkFactory
from deni.adapters.security import PepperedArgon2PinHasher
from deni.adapters.sms import DatabaseSmsOutbox
from deni.services.ports import Clock, SmsSender, UnitOfWorkFactory
from tests.fakes import ConstraintViolated, FakeUnitOfWorkFactory, ManualClock
from tests.fakes.sms import FakeSmsOutbox

# The server secret the SQL gateway seals texts under (any long string does in a test).
SMS_SEAL_PEPPER = "test-pepper-0123456789abcdef-0123456789"

# The tables the back door counts, by their SQL names.
COUNTED = ("loans", "audit_log", "journal_entries", "postings", "holds", "notifications")


class Rows(Protocol):
    """Stored rows, read and written behind the services' backs."""

    # What the database itself refuses with (a unique key, a CHECK).
    refusal: tuple[type[Exception], ...]

    def count(self, table: str) -> int: ...

    def audit_rows(self) -> list[tuple[int, str, str]]:
        """(seq, command, actor id) of every audit row, in order."""
        ...

    def edit_audit_row(self, seq: int, **changes: Any) -> None: ...

    def delete_audit_row(self, seq: int) -> None: ...

    def pin_hash(self, user_id: str) -> str: ...

    def set_pin_hash(self, user_id: str, pin_hash: str) -> None: ...

    def entries_for(self, cause_id: str, code: str) -> int: ...

    def balances(self) -> dict[str, int]: ...

    @contextmanager
    def counting_commits(self) -> Iterator[Callable[[], int]]:
        """Yields a function saying how many transactions committed since entering."""
        ...

    def sms_gateway(self, clock: Clock) -> SmsSender:
        """The database-backed fake SMS gateway (`deni sms outbox`'s) on this backend."""
        ...


@dataclass
class World:
    uow: UnitOfWorkFactory
    clock: ManualClock
    hasher: PepperedArgon2PinHasher
    rows: Rows
    backend: str


class FakeRows:
    refusal = (ConstraintViolated,)

    def __init__(self, factory: FakeUnitOfWorkFactory) -> None:
        self._database = factory.database

    def count(self, table: str) -> int:
        assert table in COUNTED
        tables = self._database.tables
        return len(
            {
                "loans": tables.loans,
                "audit_log": tables.audit_log,
                "journal_entries": tables.entries,
                "postings": tables.postings,
                "holds": tables.holds,
                "notifications": tables.notifications,
            }[table]
        )

    def audit_rows(self) -> list[tuple[int, str, str]]:
        rows = sorted(self._database.tables.audit_log, key=lambda row: row.seq)
        return [(row.seq, row.command, row.actor_id) for row in rows]

    def edit_audit_row(self, seq: int, **changes: Any) -> None:
        tables = self._database.tables.copy()
        tables.audit_log = [
            replace(row, **changes) if row.seq == seq else row for row in tables.audit_log
        ]
        self._database.tables = tables

    def delete_audit_row(self, seq: int) -> None:
        tables = self._database.tables.copy()
        tables.audit_log = [row for row in tables.audit_log if row.seq != seq]
        self._database.tables = tables

    def pin_hash(self, user_id: str) -> str:
        return self._database.tables.users[user_id].pin_hash

    def set_pin_hash(self, user_id: str, pin_hash: str) -> None:
        tables = self._database.tables.copy()
        tables.users[user_id] = replace(tables.users[user_id], pin_hash=pin_hash)
        self._database.tables = tables

    def entries_for(self, cause_id: str, code: str) -> int:
        rows = self._database.tables.entries.values()
        return sum(1 for row in rows if row.cause_id == cause_id and row.entry.code.value == code)

    def balances(self) -> dict[str, int]:
        return {a.id: a.balance_cents for a in self._database.tables.accounts.values()}

    @contextmanager
    def counting_commits(self) -> Iterator[Callable[[], int]]:
        start = self._database.commits
        yield lambda: self._database.commits - start

    def sms_gateway(self, clock: Clock) -> SmsSender:
        return FakeSmsOutbox(self._database, clock)


class SqlRows:
    refusal = (IntegrityError,)

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def count(self, table: str) -> int:
        assert table in COUNTED
        query = select(func.count()).select_from(t.metadata.tables[table])
        with self._engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def audit_rows(self) -> list[tuple[int, str, str]]:
        a = t.audit_log.c
        with self._engine.connect() as connection:
            rows = connection.execute(select(a.seq, a.command, a.actor_id).order_by(a.seq))
            return [(row.seq, row.command, row.actor_id) for row in rows]

    def edit_audit_row(self, seq: int, **changes: Any) -> None:
        with self._engine.begin() as connection:
            connection.execute(update(t.audit_log).where(t.audit_log.c.seq == seq).values(changes))

    def delete_audit_row(self, seq: int) -> None:
        with self._engine.begin() as connection:
            connection.execute(delete(t.audit_log).where(t.audit_log.c.seq == seq))

    def pin_hash(self, user_id: str) -> str:
        query = select(t.users.c.pin_hash).where(t.users.c.id == user_id)
        with self._engine.connect() as connection:
            return str(connection.execute(query).scalar_one())

    def set_pin_hash(self, user_id: str, pin_hash: str) -> None:
        with self._engine.begin() as connection:
            connection.execute(
                update(t.users).where(t.users.c.id == user_id).values(pin_hash=pin_hash)
            )

    def entries_for(self, cause_id: str, code: str) -> int:
        e = t.journal_entries.c
        query = select(func.count()).where(e.cause_id == cause_id, e.code == code)
        with self._engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def balances(self) -> dict[str, int]:
        with self._engine.connect() as connection:
            rows = connection.execute(select(t.accounts.c.id, t.accounts.c.balance_cents))
            return {row.id: row.balance_cents for row in rows}

    @contextmanager
    def counting_commits(self) -> Iterator[Callable[[], int]]:
        commits: Counter[str] = Counter()

        def on_commit(connection: object) -> None:
            commits["n"] += 1

        event.listen(self._engine, "commit", on_commit)
        try:
            yield lambda: commits["n"]
        finally:
            event.remove(self._engine, "commit", on_commit)

    def sms_gateway(self, clock: Clock) -> SmsSender:
        return DatabaseSmsOutbox(self._engine, clock=clock, pepper=SMS_SEAL_PEPPER)


def fake_world(clock: ManualClock, hasher: PepperedArgon2PinHasher) -> World:
    factory = FakeUnitOfWorkFactory()
    return World(factory, clock, hasher, FakeRows(factory), "fake")


def sql_world(
    engine: Engine, clock: ManualClock, hasher: PepperedArgon2PinHasher, backend: str
) -> World:
    return World(SqlUnitOfWorkFactory(engine), clock, hasher, SqlRows(engine), backend)
