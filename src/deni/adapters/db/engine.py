"""Engines for SQLite (embedded default) and PostgreSQL (production), and error translation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import ConnectionPoolEntry

SQLITE_BUSY_TIMEOUT_MS = 30_000
IDLE_IN_TRANSACTION_MS = 60_000  # far above any transaction of ours between two statements
BEGIN_MODE_KEY = "deni_begin_mode"
# PostgreSQL codes that mean "try the whole transaction again": serialization, deadlock.
# Serialization failure, deadlock victim, lock_timeout: the transaction may simply be tried again.
POSTGRES_RETRYABLE = frozenset({"40001", "40P01", "55P03"})
# The backend ended under the transaction (an operator's pg_terminate_backend, a restart, a
# failover), or a connection failed (class 08): the server rolled it back, unless it was the
# COMMIT whose answer was lost. Either way trying again is safe, as every command carries a
# key that makes a second try a replay; so the caller hears "busy", not an error.
POSTGRES_CONNECTION_LOST = frozenset({"57P01", "57P02", "57P03"})
# No statement of ours waits longer for a row lock: the caller gets StorageBusy (the API a
# 503 with Retry-After) instead of a request hanging behind a stuck transaction.
LOCK_TIMEOUT_MS = 5_000


def make_engine(
    database_url: str, *, pool_size: int = 10, lock_timeout_ms: int = LOCK_TIMEOUT_MS
) -> Engine:
    assert lock_timeout_ms > 0
    if database_url.startswith("sqlite"):
        return _sqlite_engine(database_url)
    return create_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        # No pre-ping: it costs a round trip per checkout. A connection that died with a server
        # restart fails its first statement, SQLAlchemy drops the whole pool, and that one
        # request gets a retryable 503; recycling bounds how stale an idle connection gets.
        pool_pre_ping=False,
        pool_recycle=1800,
        pool_timeout=30,
        isolation_level="READ COMMITTED",
        # A session of ours left idle inside a transaction (a hung worker) would hold back
        # every user's sync pulls (they wait for this database's writers): PostgreSQL ends it.
        connect_args={
            "options": f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}"
            f" -c lock_timeout={lock_timeout_ms}"
        },
    )


def _sqlite_engine(database_url: str) -> Engine:
    path = database_url.split("///", 1)[1] if "///" in database_url else ""
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        database_url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
    # We issue BEGIN ourselves (below), so the driver must not open transactions on its own.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_on_begin(connection: Any) -> None:
    # BEGIN IMMEDIATE takes the write lock up front: two writers queue instead of both reading
    # a balance and then failing (or worse) when they try to upgrade their locks.
    mode = connection.info.get(BEGIN_MODE_KEY, "BEGIN IMMEDIATE")
    if mode:
        connection.exec_driver_sql(mode)


@contextmanager
def reading(engine: Engine, *, one_statement: bool = False) -> Iterator[Connection]:
    """A connection for a few reads, rolled back after: on SQLite a deferred BEGIN, so the read
    never waits for a writer. The mode is taken off again before the connection goes back to
    the pool, so its next writer begins IMMEDIATE as writers must.

    `one_statement`: the caller runs a single SELECT, which sees one snapshot on its own; no
    BEGIN and ROLLBACK around it (on a USSD hop they cost as much as the SELECT; on PostgreSQL
    they are two more round trips). PostgreSQL runs it in autocommit, which SQLAlchemy takes off
    again when the connection goes back to the pool."""
    with engine.connect() as connection:
        connection.info[BEGIN_MODE_KEY] = "" if one_statement else "BEGIN"
        if one_statement and engine.dialect.name == "postgresql":
            connection.execution_options(isolation_level="AUTOCOMMIT")
        try:
            yield connection
            connection.rollback()
        finally:
            connection.info.pop(BEGIN_MODE_KEY, None)


def is_retryable(error: DBAPIError) -> bool:
    code = getattr(error.orig, "sqlstate", None)
    if code in POSTGRES_RETRYABLE or code in POSTGRES_CONNECTION_LOST:
        return True
    if error.connection_invalidated or (isinstance(code, str) and code.startswith("08")):
        return True
    return "database is locked" in str(error.orig)
