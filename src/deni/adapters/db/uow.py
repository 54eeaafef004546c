"""The SQL unit of work: one connection, one transaction, all repositories on it."""

from __future__ import annotations

import itertools
from types import TracebackType
from typing import Self

from sqlalchemy import Connection, Engine, RootTransaction
from sqlalchemy.exc import DBAPIError

from deni.adapters.db.audit import SqlAuditRepository
from deni.adapters.db.engine import BEGIN_MODE_KEY, is_retryable
from deni.adapters.db.idempotency import SqlIdempotencyRepository
from deni.adapters.db.ledger import SqlLedgerRepository
from deni.adapters.db.loans import SqlLoanRepository
from deni.adapters.db.lookup import SqlLookupQueries
from deni.adapters.db.mpesa.claims import SqlPaymentClaimRepository
from deni.adapters.db.mpesa.inbox import SqlCallbackInboxRepository
from deni.adapters.db.mpesa.outbox import SqlOutboxRepository
from deni.adapters.db.mpesa.paybills import SqlExpectedPaybillRepository
from deni.adapters.db.mpesa.payouts import SqlPayoutCandidateRepository
from deni.adapters.db.mpesa.preferences import SqlPreferencesRepository
from deni.adapters.db.mpesa.pulls import SqlPaybillPullRepository
from deni.adapters.db.mpesa.reports import SqlBalanceReportRepository
from deni.adapters.db.mpesa.requests import SqlMpesaRequestRepository
from deni.adapters.db.mpesa.suspense import SqlSuspenseRepository
from deni.adapters.db.notifications import NotificationsMark, SqlNotificationRepository
from deni.adapters.db.ops.repositories import (
    SqlOperatorRepository,
    SqlOpsSessionRepository,
    SqlProposalRepository,
)
from deni.adapters.db.passkeys import SqlPasskeyRepository
from deni.adapters.db.refresh_tokens import SqlRefreshTokenRepository
from deni.adapters.db.reports import SqlReportQueries
from deni.adapters.db.sms_codes import SqlPhoneCodeRepository, SqlPinResetRepository
from deni.adapters.db.sync.repositories import SqlSyncRepository
from deni.adapters.db.sync.tables import (
    defer_changes,
    drop_deferred_changes,
    stop_deferring,
    write_deferred_changes,
)
from deni.adapters.db.users import SqlUserRepository
from deni.services.ports import StorageBusy


class SqlUnitOfWork:
    def __init__(
        self, engine: Engine, *, read_only: bool = False, isolation_level: str | None = None
    ) -> None:
        self._engine = engine
        self._read_only = read_only
        self._isolation_level = isolation_level
        self._connection: Connection | None = None
        self._transaction: RootTransaction | None = None

    def __enter__(self) -> Self:
        assert self._connection is None, "a unit of work is entered once"
        connection = self._engine.connect()
        if self._isolation_level is not None and connection.dialect.name == "postgresql":
            connection = connection.execution_options(isolation_level=self._isolation_level)
        connection.info[BEGIN_MODE_KEY] = "BEGIN" if self._read_only else "BEGIN IMMEDIATE"
        try:
            self._transaction = connection.begin()
        except DBAPIError as error:
            connection.close()
            raise _translate(error) from error
        self._connection = connection
        if not self._read_only:
            defer_changes(connection)  # the change log is written once, at commit
        self.users = SqlUserRepository(connection)
        self.ledger = SqlLedgerRepository(connection)
        self.loans = SqlLoanRepository(connection)
        self.notifications = SqlNotificationRepository(connection)
        self.audit = SqlAuditRepository(connection)
        self.idempotency = SqlIdempotencyRepository(connection)
        self.tokens = SqlRefreshTokenRepository(connection)
        self.mpesa_requests = SqlMpesaRequestRepository(connection)
        self.mpesa_inbox = SqlCallbackInboxRepository(connection)
        self.suspense = SqlSuspenseRepository(connection)
        self.paybills = SqlExpectedPaybillRepository(connection)
        self.claims = SqlPaymentClaimRepository(connection)
        self.pulls = SqlPaybillPullRepository(connection)
        self.mpesa_preferences = SqlPreferencesRepository(connection)
        self.payouts_due = SqlPayoutCandidateRepository(connection)
        self.balance_reports = SqlBalanceReportRepository(connection)
        self.outbox = SqlOutboxRepository(connection)
        self.reports = SqlReportQueries(connection)
        self.sync = SqlSyncRepository(connection)
        self.pin_resets = SqlPinResetRepository(connection)
        self.phone_codes = SqlPhoneCodeRepository(connection)
        self.operators = SqlOperatorRepository(connection)
        self.ops_sessions = SqlOpsSessionRepository(connection)
        self.proposals = SqlProposalRepository(connection)
        self.lookup = SqlLookupQueries(connection)
        self.passkeys = SqlPasskeyRepository(connection)
        return self

    def savepoint(self) -> SavepointUnitOfWork:
        """A unit of work nested in this transaction (sync applies a mutation in one)."""
        assert self._connection is not None, "enter the unit of work first"
        assert not self._read_only
        return SavepointUnitOfWork(self, self._connection)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._connection is not None
        lost: DBAPIError | None = None
        try:
            if self._transaction is not None and self._transaction.is_active:
                self._transaction.rollback()
        except DBAPIError as error:
            if not is_retryable(error):
                raise
            lost = error  # the connection ended, and the server rolled back with it
        finally:
            stop_deferring(self._connection)
            self._connection.close()
        if isinstance(exc, DBAPIError) and is_retryable(exc):
            raise StorageBusy("The database is busy; try again.") from exc
        if exc is None and lost is not None:
            raise StorageBusy("The database is busy; try again.") from lost

    def commit(self) -> None:
        assert self._transaction is not None
        assert self._connection is not None
        assert not self._read_only, "a read-only unit of work has nothing to commit"
        try:
            self.notifications.flush()
            write_deferred_changes(self._connection)
            self.audit.flush()  # takes the audit chain's head only now, just before the commit
            self._transaction.commit()
        except DBAPIError as error:
            raise _translate(error) from error

    def rollback(self) -> None:
        assert self._transaction is not None
        self._transaction.rollback()
        if self._connection is not None and not self._read_only:
            drop_deferred_changes(self._connection)
        self.notifications.forget_since((0, 0))
        self.audit.forget_since(0)
        self.users.forget()

    def in_transaction(self) -> bool:
        return self._transaction is not None and self._transaction.is_active


class _OuterRepositories:
    """The repositories of an outer unit of work, on its connection and transaction."""

    users: SqlUserRepository
    ledger: SqlLedgerRepository
    loans: SqlLoanRepository
    notifications: SqlNotificationRepository
    audit: SqlAuditRepository
    idempotency: SqlIdempotencyRepository
    tokens: SqlRefreshTokenRepository
    mpesa_requests: SqlMpesaRequestRepository
    mpesa_inbox: SqlCallbackInboxRepository
    suspense: SqlSuspenseRepository
    paybills: SqlExpectedPaybillRepository
    claims: SqlPaymentClaimRepository
    pulls: SqlPaybillPullRepository
    mpesa_preferences: SqlPreferencesRepository
    payouts_due: SqlPayoutCandidateRepository
    balance_reports: SqlBalanceReportRepository
    outbox: SqlOutboxRepository
    reports: SqlReportQueries
    sync: SqlSyncRepository
    pin_resets: SqlPinResetRepository
    phone_codes: SqlPhoneCodeRepository
    operators: SqlOperatorRepository
    ops_sessions: SqlOpsSessionRepository
    proposals: SqlProposalRepository
    lookup: SqlLookupQueries
    passkeys: SqlPasskeyRepository

    def __init__(self, outer: SqlUnitOfWork) -> None:
        self.users = outer.users
        self.ledger = outer.ledger
        self.loans = outer.loans
        self.notifications = outer.notifications
        self.audit = outer.audit
        self.idempotency = outer.idempotency
        self.tokens = outer.tokens
        self.mpesa_requests = outer.mpesa_requests
        self.mpesa_inbox = outer.mpesa_inbox
        self.suspense = outer.suspense
        self.paybills = outer.paybills
        self.claims = outer.claims
        self.pulls = outer.pulls
        self.mpesa_preferences = outer.mpesa_preferences
        self.payouts_due = outer.payouts_due
        self.balance_reports = outer.balance_reports
        self.outbox = outer.outbox
        self.reports = outer.reports
        self.sync = outer.sync
        self.pin_resets = outer.pin_resets
        self.phone_codes = outer.phone_codes
        self.operators = outer.operators
        self.ops_sessions = outer.ops_sessions
        self.proposals = outer.proposals
        self.lookup = outer.lookup
        self.passkeys = outer.passkeys


class SavepointUnitOfWork(_OuterRepositories):
    """A service's `with uow: ... uow.commit()` inside an outer transaction, as a SAVEPOINT.

    commit() keeps the writes, for the outer transaction to commit (a wrong PIN counted before
    the error, say). Leaving without commit() rolls back to the savepoint: the outer
    transaction carries on as if the service never ran. So the sync push commits a mutation's
    effects together with the client's last mutation id, atomically.

    commit() sends nothing: the savepoint is not released, it simply ends with the outer
    transaction (RELEASE would be a round trip per command that changes nothing we rely on).
    Nor does it open a successor, so a write after it belongs to the outer transaction.
    Services commit last, or just before raising a refusal whose record must stay.

    The savepoints are plain SQL, not SQLAlchemy's nested transactions: those would have to
    be released one by one, in order, before the outer commit.
    """

    def __init__(self, outer: SqlUnitOfWork, connection: Connection) -> None:
        super().__init__(outer)
        self._outer = outer
        self._connection = connection
        self._name: str | None = None  # the open savepoint's name, while one is open
        # Where the audit and notification queues stood when the savepoint began.
        self._marks: tuple[int, NotificationsMark] = (0, (0, 0))

    def __enter__(self) -> Self:
        assert self._name is None, "a savepoint unit of work is entered once at a time"
        name = f"uow_{next(_savepoint_numbers)}"
        self._connection.exec_driver_sql(f"SAVEPOINT {name}")
        self._name = name
        self._marks = (self.audit.mark(), self.notifications.mark())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        name, self._name = self._name, None
        if name is not None and self._outer.in_transaction():
            self._roll_back_to(name)

    def savepoint(self) -> SavepointUnitOfWork:
        return SavepointUnitOfWork(self._outer, self._connection)

    def commit(self) -> None:
        assert self._name is not None, "commit() once, inside the with block"
        self._name = None

    def rollback(self) -> None:
        """Undo the writes so far and carry on inside the same (still open) savepoint."""
        assert self._name is not None, "rollback() before commit(), inside the with block"
        self._roll_back_to(self._name)

    def _roll_back_to(self, name: str) -> None:
        try:
            self._connection.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {name}")
        except DBAPIError as error:
            raise _translate(error) from error
        audit_mark, notifications_mark = self._marks  # rows queued for the commit go too
        self.audit.forget_since(audit_mark)
        self.notifications.forget_since(notifications_mark)
        self.users.forget()


# Savepoint names only need to differ within one transaction; a process-wide count does that.
_savepoint_numbers = itertools.count(1)


class SharedReadUnitOfWork(_OuterRepositories):
    """Reads inside an open transaction, seeing its writes; there is nothing to commit."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def commit(self) -> None:
        raise AssertionError("a read inside another transaction has nothing to commit")

    def rollback(self) -> None:
        raise AssertionError("a read inside another transaction cannot roll it back")


class NestedUnitOfWorkFactory:
    """Units of work inside one open transaction, for a caller that commits them all at once.

    A service's unit of work is a savepoint (see SavepointUnitOfWork); a read shares the
    transaction. The API runs a command, its Idempotency-Key and the answer's view this way.
    """

    def __init__(self, outer: SqlUnitOfWork) -> None:
        self._outer = outer

    def __call__(self) -> SavepointUnitOfWork:
        return self._outer.savepoint()

    def read_only(self) -> SharedReadUnitOfWork:
        return SharedReadUnitOfWork(self._outer)


def _translate(error: DBAPIError) -> Exception:
    if is_retryable(error):
        return StorageBusy("The database is busy; try again.")
    return error


class SqlUnitOfWorkFactory:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __call__(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine)

    def read_only(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, read_only=True)

    def snapshot(self) -> SqlUnitOfWork:
        """Read-only, on one consistent snapshot: REPEATABLE READ on PostgreSQL (a SQLite
        read transaction already sees one snapshot)."""
        return SqlUnitOfWork(self.engine, read_only=True, isolation_level="REPEATABLE READ")
