"""The fake unit of work: a snapshot of the fake database per transaction.

Entering takes a copy of the committed tables (copy-on-begin); commit() publishes the copy,
and leaving without commit() drops it, so uncommitted changes are never seen by anyone else.
Writers take the database's one writer lock for their whole transaction, as SQLite's
BEGIN IMMEDIATE does, so two writers never lose each other's updates; readers never wait.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from types import TracebackType
from typing import NoReturn, Self

from deni.domain.ledger import Account, AccountKind, PlatformAccount
from deni.services.ports import StorageBusy
from tests.fakes.ledger import FakeLedgerRepository
from tests.fakes.loans import FakeLoanRepository
from tests.fakes.lookup import FakeLookupQueries
from tests.fakes.mpesa import (
    FakeBalanceReportRepository,
    FakeCallbackInboxRepository,
    FakeExpectedPaybillRepository,
    FakeOutboxRepository,
    FakePaybillPullRepository,
    FakePaymentClaimRepository,
    FakePayoutCandidateRepository,
    FakePreferencesRepository,
    FakeSuspenseRepository,
)
from tests.fakes.mpesa_requests import FakeMpesaRequestRepository
from tests.fakes.ops import (
    FakeOperatorRepository,
    FakeOpsSessionRepository,
    FakeProposalRepository,
)
from tests.fakes.passkeys import FakePasskeyRepository
from tests.fakes.records import (
    FakeAuditRepository,
    FakeIdempotencyRepository,
    FakeNotificationRepository,
    FakePhoneCodeRepository,
    FakePinResetRepository,
    FakeRefreshTokenRepository,
)
from tests.fakes.reports import FakeReportQueries
from tests.fakes.tables import Tables
from tests.fakes.users import FakeUserRepository

# How long a writer waits for another to finish before giving up, like SQLite's busy timeout.
WRITER_WAIT_S = 10.0
SEEDED_AT = datetime(2026, 1, 1, tzinfo=UTC)


class FakeDatabase:
    """The committed state every unit of work starts from, seeded as `deni db upgrade` seeds
    a new database: the platform accounts and an empty audit chain."""

    def __init__(self) -> None:
        tables = Tables()
        ledger = FakeLedgerRepository(tables)
        for platform in PlatformAccount:
            account = Account(
                id=platform.value,
                kind=AccountKind.PLATFORM,
                normal_side=platform.normal_side,
                owner_id=None,
                no_overdraft=False,
                balance_cents=0,
            )
            ledger.add_account(account, SEEDED_AT)
        self.tables = tables  # never changed in place once published: commits replace it
        self.commits = 0
        self._writer = threading.Lock()

    def begin_writing(self) -> None:
        if not self._writer.acquire(timeout=WRITER_WAIT_S):
            raise StorageBusy("The database is busy; try again.")

    def end_writing(self) -> None:
        self._writer.release()

    def publish(self, tables: Tables) -> None:
        assert self._writer.locked(), "only the writer commits"
        self.tables = tables
        self.commits += 1


class FakeUnitOfWork:
    def __init__(self, database: FakeDatabase, *, read_only: bool = False) -> None:
        self._database = database
        self._read_only = read_only
        self._entered = False
        self._rolled_back = False
        self._tables = Tables()

    def __enter__(self) -> Self:
        assert not self._entered, "a unit of work is entered once"
        if not self._read_only:
            self._database.begin_writing()
        self._entered = True
        self._begin()
        return self

    def _begin(self) -> None:
        self._tables = self._database.tables.copy()
        self.users = FakeUserRepository(self._tables)
        self.ledger = FakeLedgerRepository(self._tables)
        self.loans = FakeLoanRepository(self._tables)
        self.notifications = FakeNotificationRepository(self._tables)
        self.audit = FakeAuditRepository(self._tables)
        self.idempotency = FakeIdempotencyRepository(self._tables)
        self.tokens = FakeRefreshTokenRepository(self._tables)
        self.pin_resets = FakePinResetRepository(self._tables)
        self.phone_codes = FakePhoneCodeRepository(self._tables)
        self.mpesa_requests = FakeMpesaRequestRepository(self._tables)
        self.mpesa_inbox = FakeCallbackInboxRepository(self._tables)
        self.suspense = FakeSuspenseRepository(self._tables)
        self.paybills = FakeExpectedPaybillRepository(self._tables)
        self.claims = FakePaymentClaimRepository(self._tables)
        self.pulls = FakePaybillPullRepository(self._tables)
        self.mpesa_preferences = FakePreferencesRepository(self._tables)
        self.payouts_due = FakePayoutCandidateRepository(self._tables)
        self.balance_reports = FakeBalanceReportRepository(self._tables)
        self.outbox = FakeOutboxRepository(self._tables)
        self.reports = FakeReportQueries(self._tables)
        self.operators = FakeOperatorRepository(self._tables)
        self.ops_sessions = FakeOpsSessionRepository(self._tables)
        self.proposals = FakeProposalRepository(self._tables)
        self.lookup = FakeLookupQueries(self._tables)
        self.passkeys = FakePasskeyRepository(self._tables)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._entered
        self._tables = Tables()  # what was not committed is gone
        if not self._read_only:
            self._database.end_writing()

    def commit(self) -> None:
        assert self._entered, "commit() inside the with block"
        assert not self._read_only, "a read-only unit of work has nothing to commit"
        assert not self._rolled_back, "a rolled-back transaction is over: nothing to commit"
        self.audit.flush()
        self._database.publish(self._tables.copy())

    def rollback(self) -> None:
        """Ends the transaction, as SQL's does: reads may go on, commit() may not."""
        assert self._entered, "rollback() inside the with block"
        self._rolled_back = True
        self._begin()

    def __getattr__(self, name: str) -> NoReturn:
        """Only for what the fake lacks: the sync repository and nested (savepoint) units of
        work have no fakes, and a service that needs one says so."""
        if name.startswith("__") or name in _FAKED:
            raise AttributeError(f"{name} (enter the unit of work first)")
        raise NotFaked(
            f"FakeUnitOfWork has no {name!r} yet: test this service on SQLite (tests/integration)"
        )


_FAKED = frozenset(
    {"users", "ledger", "loans", "notifications", "audit", "idempotency", "tokens"}
    | {"pin_resets", "phone_codes"}
    | {"mpesa_requests", "mpesa_inbox", "suspense", "paybills", "claims", "pulls"}
    | {"mpesa_preferences", "payouts_due", "balance_reports", "outbox", "lookup", "reports"}
    | {"passkeys"}
)


class NotFaked(AttributeError):
    """A repository of the real unit of work that the fake does not have."""


class FakeUnitOfWorkFactory:
    """The `UnitOfWorkFactory` port over one fake database."""

    def __init__(self, database: FakeDatabase | None = None) -> None:
        self.database = database if database is not None else FakeDatabase()

    def __call__(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self.database)

    def read_only(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self.database, read_only=True)
