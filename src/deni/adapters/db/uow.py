"""The SQL unit of work: one connection, one transaction, all repositories on it."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy import Connection, Engine, RootTransaction
from sqlalchemy.exc import DBAPIError

from deni.adapters.db.engine import BEGIN_MODE_KEY, is_retryable
from deni.adapters.db.mpesa_repositories import SqlMpesaRepository, SqlOutboxRepository
from deni.adapters.db.records import (
    SqlAuditRepository,
    SqlIdempotencyRepository,
    SqlNotificationRepository,
    SqlRefreshTokenRepository,
)
from deni.adapters.db.repositories import SqlLedgerRepository, SqlLoanRepository, SqlUserRepository
from deni.services.ports import StorageBusy


class SqlUnitOfWork:
    def __init__(self, engine: Engine, *, read_only: bool = False) -> None:
        self._engine = engine
        self._read_only = read_only
        self._connection: Connection | None = None
        self._transaction: RootTransaction | None = None

    def __enter__(self) -> Self:
        assert self._connection is None, "a unit of work is entered once"
        connection = self._engine.connect()
        connection.info[BEGIN_MODE_KEY] = "BEGIN" if self._read_only else "BEGIN IMMEDIATE"
        try:
            self._transaction = connection.begin()
        except DBAPIError as error:
            connection.close()
            raise _translate(error) from error
        self._connection = connection
        self.users = SqlUserRepository(connection)
        self.ledger = SqlLedgerRepository(connection)
        self.loans = SqlLoanRepository(connection)
        self.notifications = SqlNotificationRepository(connection)
        self.audit = SqlAuditRepository(connection)
        self.idempotency = SqlIdempotencyRepository(connection)
        self.tokens = SqlRefreshTokenRepository(connection)
        self.mpesa = SqlMpesaRepository(connection)
        self.outbox = SqlOutboxRepository(connection)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._connection is not None
        try:
            if self._transaction is not None and self._transaction.is_active:
                self._transaction.rollback()
        finally:
            self._connection.close()
        if isinstance(exc, DBAPIError) and is_retryable(exc):
            raise StorageBusy("The database is busy; try again.") from exc

    def commit(self) -> None:
        assert self._transaction is not None
        assert not self._read_only, "a read-only unit of work has nothing to commit"
        try:
            self._transaction.commit()
        except DBAPIError as error:
            raise _translate(error) from error

    def rollback(self) -> None:
        assert self._transaction is not None
        self._transaction.rollback()


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
