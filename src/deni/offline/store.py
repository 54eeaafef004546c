"""The offline client's own SQLite database: synced tables, sync metadata, the mutation queue.

One file per signed-in phone. WAL mode, so a reader (the CLI showing loans) never waits for a
sync writing a page. Every write happens inside `Store.write()`, an explicit `BEGIN IMMEDIATE`
transaction: the optimistic local change and its queue row commit together or not at all.

The schema is versioned (`sync_metadata.schema_version`); `MIGRATIONS` brings an older local
database forward step by step, never dropping what the user queued.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

# Bump when the local schema changes, and append a step to MIGRATIONS (never edit old ones).
SCHEMA_VERSION: Final = 3
BUSY_TIMEOUT_MS: Final = 5_000

# The tables that mirror server state. A full resync empties exactly these.
SYNCED_TABLES: Final = (
    "users",
    "loans",
    "transactions",
    "repayments",
    "notifications",
    "records",
)

_V1: Final = (
    """
    CREATE TABLE sync_metadata (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        phone TEXT NOT NULL,
        name TEXT NOT NULL,
        language TEXT NOT NULL DEFAULT 'en',
        balance_cents INTEGER,
        server_version INTEGER NOT NULL DEFAULT 0,
        data_json TEXT NOT NULL DEFAULT '{}'
    )
    """,
    "CREATE INDEX users_phone ON users (phone)",
    """
    CREATE TABLE loans (
        id TEXT PRIMARY KEY,
        code TEXT,
        borrower_id TEXT,
        lender_id TEXT,
        borrower_phone TEXT,
        lender_phone TEXT,
        state TEXT NOT NULL,
        principal_cents INTEGER NOT NULL,
        fee_cents INTEGER NOT NULL DEFAULT 0,
        owed_cents INTEGER NOT NULL DEFAULT 0,
        due_date TEXT,
        requested_at TEXT,
        server_version INTEGER NOT NULL DEFAULT 0,
        data_json TEXT NOT NULL DEFAULT '{}',
        -- the optimistic overlay: what pending mutations make of the server row
        local_state TEXT,
        local_owed_cents INTEGER,
        is_local INTEGER NOT NULL DEFAULT 0,
        pending_mutation_id INTEGER
    )
    """,
    "CREATE INDEX loans_borrower ON loans (borrower_id, state)",
    "CREATE INDEX loans_lender ON loans (lender_id, state)",
    "CREATE INDEX loans_requested ON loans (requested_at)",
    """
    CREATE TABLE transactions (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        amount_cents INTEGER NOT NULL,
        balance_after_cents INTEGER,
        loan_id TEXT,
        created_at TEXT,
        server_version INTEGER NOT NULL DEFAULT 0,
        data_json TEXT NOT NULL DEFAULT '{}',
        is_local INTEGER NOT NULL DEFAULT 0,
        pending_mutation_id INTEGER
    )
    """,
    "CREATE INDEX transactions_created ON transactions (created_at)",
    "CREATE INDEX transactions_loan ON transactions (loan_id)",
    """
    CREATE TABLE repayments (
        id TEXT PRIMARY KEY,
        loan_id TEXT NOT NULL,
        amount_cents INTEGER NOT NULL,
        created_at TEXT,
        server_version INTEGER NOT NULL DEFAULT 0,
        data_json TEXT NOT NULL DEFAULT '{}',
        is_local INTEGER NOT NULL DEFAULT 0,
        pending_mutation_id INTEGER
    )
    """,
    "CREATE INDEX repayments_loan ON repayments (loan_id)",
    """
    CREATE TABLE notifications (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        loan_id TEXT,
        created_at TEXT,
        read_at TEXT,
        server_version INTEGER NOT NULL DEFAULT 0,
        data_json TEXT NOT NULL DEFAULT '{}',
        local_read INTEGER NOT NULL DEFAULT 0
    )
    """,
    "CREATE INDEX notifications_created ON notifications (created_at)",
    """
    CREATE TABLE offline_queue (
        mutation_id INTEGER PRIMARY KEY,
        idempotency_key TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        args_json TEXT NOT NULL,
        aggregate_id TEXT,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        result_code TEXT,
        result_reason TEXT,
        result_json TEXT,
        created_at_device TEXT NOT NULL,
        done_at_device TEXT
    )
    """,
    "CREATE INDEX offline_queue_status ON offline_queue (status, mutation_id)",
    "CREATE INDEX offline_queue_aggregate ON offline_queue (aggregate_id)",
)

# v2: the schema version a mutation was written under (migrated forward before a push), the
# server's own dead-letter id for a mutation the server parked as malformed, and `records` for
# the other entities a pull sends (preferences, open conflicts, and any this client does not
# know yet: kept, not dropped).
_V2: Final = (
    "ALTER TABLE offline_queue ADD COLUMN schema_version INTEGER NOT NULL DEFAULT 1",
    "ALTER TABLE offline_queue ADD COLUMN dead_letter_id TEXT",
    """
    CREATE TABLE records (
        entity TEXT NOT NULL,
        id TEXT NOT NULL,
        data_json TEXT NOT NULL,
        PRIMARY KEY (entity, id)
    )
    """,
)

# v3: overlays for the intents added with the profile, conflict and edit commands. A local
# intent never edits a server column; rebase clears these and replays what is still pending.
# - users.local_name / local_language: a queued `update_profile`
# - loans.local_principal_cents / local_fee_cents / local_due_date: a queued `edit_loan_request`
#   (or `resolve_conflict` keeping this device's terms)
# - records.pending_mutation_id: a queued `resolve_conflict` (the conflict is resolved here)
_V3: Final = (
    "ALTER TABLE users ADD COLUMN local_name TEXT",
    "ALTER TABLE users ADD COLUMN local_language TEXT",
    "ALTER TABLE loans ADD COLUMN local_principal_cents INTEGER",
    "ALTER TABLE loans ADD COLUMN local_fee_cents INTEGER",
    "ALTER TABLE loans ADD COLUMN local_due_date TEXT",
    "ALTER TABLE records ADD COLUMN pending_mutation_id INTEGER",
)

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (_V1, _V2, _V3)
assert len(MIGRATIONS) == SCHEMA_VERSION


class LocalSchemaTooNew(Exception):
    """The database was written by a newer `deni offline`: refuse rather than guess."""


class Store:
    """A connection to one local database. Not shared across threads."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path) if str(path) != ":memory:" else Path(":memory:")
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is exactly
        # what `write()` says it is.
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._in_transaction = False
        self.migrate()

    def close(self) -> None:
        self._db.close()

    # -- transactions -------------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE): everything inside commits together."""
        assert not self._in_transaction, "write transactions do not nest"
        self._db.execute("BEGIN IMMEDIATE")
        self._in_transaction = True
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._in_transaction = False

    @property
    def db(self) -> sqlite3.Connection:
        """For reads (each statement sees a consistent WAL snapshot)."""
        return self._db

    # -- schema -------------------------------------------------------------------------------

    def schema_version(self) -> int:
        exists = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sync_metadata'"
        ).fetchone()
        if exists is None:
            return 0
        row = self._db.execute(
            "SELECT value FROM sync_metadata WHERE key = 'schema_version'"
        ).fetchone()
        return 0 if row is None else int(row[0])

    def migrate(self) -> int:
        """Bring the local schema to SCHEMA_VERSION; returns the version found before."""
        found = self.schema_version()
        if found > SCHEMA_VERSION:
            raise LocalSchemaTooNew(
                f"This database was written by a newer deni offline (schema {found}, "
                f"this one knows {SCHEMA_VERSION}). Upgrade Deni."
            )
        for version in range(found + 1, SCHEMA_VERSION + 1):
            with self.write() as db:
                for statement in MIGRATIONS[version - 1]:
                    db.execute(statement)
                _set(db, "schema_version", str(version))
        assert self.schema_version() == SCHEMA_VERSION
        return found

    # -- sync_metadata ------------------------------------------------------------------------

    def get(self, key: str, default: str | None = None) -> str | None:
        row = self._db.execute("SELECT value FROM sync_metadata WHERE key = ?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def get_int(self, key: str, default: int = 0) -> int:
        value = self.get(key)
        return default if value is None else int(value)

    def set(self, key: str, value: str | int | None) -> None:
        """Set one metadata key in its own transaction (or the current one)."""
        if self._in_transaction:
            _set(self._db, key, value)
            return
        with self.write() as db:
            _set(db, key, value)

    def client_id(self) -> str:
        """This device's sync client id, made on first use and kept."""
        client_id = self.get("client_id")
        if client_id is None:
            client_id = str(uuid.uuid4())
            self.set("client_id", client_id)
        return client_id

    def metadata(self) -> dict[str, str]:
        rows = self._db.execute("SELECT key, value FROM sync_metadata ORDER BY key")
        return {str(r[0]): str(r[1]) for r in rows}


def _set(db: sqlite3.Connection, key: str, value: str | int | None) -> None:
    if value is None:
        db.execute("DELETE FROM sync_metadata WHERE key = ?", (key,))
        return
    db.execute(
        "INSERT INTO sync_metadata (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, str(value)),
    )


def set_in(db: sqlite3.Connection, key: str, value: str | int | None) -> None:
    """Set a metadata key inside a transaction the caller holds."""
    _set(db, key, value)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
