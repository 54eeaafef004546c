"""Tables of the offline sync protocol (docs/sync.md), on the shared metadata.

- sync_clients: one row per installed client, owned by the first user who used it.
- sync_mutations: the stored result of every processed (client_id, mutation_id).
- sync_changes: the change log pulls read, written in the same transaction as each change.
- sync_dead_letters, sync_conflicts: malformed mutations and manual conflicts.
- sync_profile_fields: per-field server versions of profile fields (last writer wins).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    text,
)

from deni.adapters.db.tables import ID, UtcDateTime, metadata

sync_clients = Table(
    "sync_clients",
    metadata,
    Column("client_id", ID, primary_key=True),
    Column("user_id", ID, ForeignKey("users.id"), nullable=False, index=True),
    Column("last_mutation_id", BigInteger, nullable=False, default=0),
    Column("schema_version", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

sync_mutations = Table(
    "sync_mutations",
    metadata,
    Column("client_id", ID, ForeignKey("sync_clients.client_id"), primary_key=True),
    Column("mutation_id", BigInteger, primary_key=True),
    Column("user_id", ID, nullable=False),
    Column("name", String(64), nullable=False),
    Column("args_hash", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("code", String(64), nullable=True),
    Column("message", Text, nullable=True),
    Column("resolution", String(32), nullable=True),
    Column("entity_id", String(64), nullable=True),
    Column("conflict_id", ID, nullable=True),
    Column("dead_letter_id", ID, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_sync_mutations_created_at", "created_at"),  # pruning walks the oldest
)

sync_changes = Table(
    "sync_changes",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("user_id", ID, nullable=False),
    Column("entity", String(16), nullable=False),
    Column("entity_id", String(64), nullable=False),
    Column("op", String(8), nullable=False),
    # PostgreSQL: the writing transaction's id (pg_current_xact_id); 0 on SQLite.
    Column("xid", BigInteger, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_sync_changes_user_xid_seq", "user_id", "xid", "seq"),
)

sync_dead_letters = Table(
    "sync_dead_letters",
    metadata,
    Column("id", ID, primary_key=True),
    Column("user_id", ID, nullable=False),
    Column("client_id", ID, nullable=False),
    Column("mutation_id", BigInteger, nullable=False),
    Column("name", String(64), nullable=False),
    Column("args", Text, nullable=False),
    Column("code", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("result", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("retried_at", UtcDateTime, nullable=True),
    Index("ix_sync_dead_letters_user_client_state", "user_id", "client_id", "state"),
)

sync_conflicts = Table(
    "sync_conflicts",
    metadata,
    Column("id", ID, primary_key=True),
    Column("user_id", ID, nullable=False, index=True),
    Column("client_id", ID, nullable=False),
    Column("mutation_id", BigInteger, nullable=False),
    Column("entity", String(16), nullable=False),
    Column("entity_id", String(64), nullable=False),
    Column("server_version", Text, nullable=False),
    Column("client_version", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("resolution", String(16), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("resolved_at", UtcDateTime, nullable=True),
)

sync_profile_fields = Table(
    "sync_profile_fields",
    metadata,
    Column("user_id", ID, primary_key=True),
    Column("field", String(16), primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)


# --- the change log writer, called by the repositories in the writing transaction ---------

Change = tuple[str, str, str, str]  # (user_id, entity, entity_id, op)

_PG_LOG_CHANGES = text(
    """
    INSERT INTO sync_changes (user_id, entity, entity_id, op, xid, created_at)
    SELECT c.user_id, c.entity, c.entity_id, c.op, pg_current_xact_id()::text::bigint,
           c.created_at
    FROM unnest(CAST(:users AS varchar[]), CAST(:entities AS varchar[]),
                CAST(:ids AS varchar[]), CAST(:ops AS varchar[]),
                CAST(:created AS timestamptz[]))
         WITH ORDINALITY AS c(user_id, entity, entity_id, op, created_at, n)
    ORDER BY c.n
    """
)
_SQLITE_LOG_CHANGES = sync_changes.insert()  # built once: values come with each call
CHANGES_PER_WRITE_MAX = 10_000
# Connections whose change log is collected until their transaction commits (see
# defer_changes), with what was logged so far.
_deferred: dict[Connection, list[tuple[Change, datetime]]] = {}


def log_changes(connection: Connection, changes: Sequence[Change], now: datetime) -> None:
    """Append to the change log in the caller's transaction (so it commits with the change).

    On PostgreSQL each row carries the writing transaction's id: a pull serves only rows below
    the lowest transaction of this database still running at its snapshot, so a change
    committed late is never skipped. SQLite serialises writers, so there the sequence is
    commit order.
    """
    assert len(changes) <= CHANGES_PER_WRITE_MAX
    assert now.tzinfo is not None, "store aware datetimes only"
    for user_id, entity, entity_id, op in changes:
        assert op in ("put", "delete"), op
        assert user_id
        assert entity
        assert entity_id
    collecting = _deferred.get(connection)
    if collecting is not None:
        collecting.extend((change, now) for change in changes)
        return
    _write(connection, [(change, now) for change in changes])


def defer_changes(connection: Connection) -> None:
    """From now on log_changes on `connection` collects; write_deferred_changes writes what
    was collected with one statement, in order, just before the transaction commits.

    Entries of a write that a savepoint undid are written all the same: a pull then sends
    that record's current state, or a delete for an id that does not exist, both harmless
    (docs/sync.md: puts are whole records, applying a change twice is fine).
    """
    assert connection not in _deferred, "one transaction at a time on a connection"
    _deferred[connection] = []


def write_deferred_changes(connection: Connection) -> None:
    collected = _deferred[connection]
    for start in range(0, len(collected), CHANGES_PER_WRITE_MAX):
        _write(connection, collected[start : start + CHANGES_PER_WRITE_MAX])
    collected.clear()


def drop_deferred_changes(connection: Connection) -> None:
    """The transaction was rolled back: what it logged never happened."""
    _deferred[connection].clear()


def stop_deferring(connection: Connection) -> None:
    """Forget what was collected (the transaction ended, committed or not)."""
    _deferred.pop(connection, None)


def _write(connection: Connection, changes: Sequence[tuple[Change, datetime]]) -> None:
    if not changes:
        return
    if connection.dialect.name == "postgresql":
        connection.execute(
            _PG_LOG_CHANGES,
            {
                "users": [c[0] for c, _ in changes],
                "entities": [c[1] for c, _ in changes],
                "ids": [c[2] for c, _ in changes],
                "ops": [c[3] for c, _ in changes],
                "created": [at.astimezone(UTC) for _, at in changes],
            },
        )
        return
    connection.execute(
        _SQLITE_LOG_CHANGES,
        [
            {"user_id": u, "entity": e, "entity_id": i, "op": o, "xid": 0, "created_at": at}
            for (u, e, i, o), at in changes
        ],
    )


def wallet_owner(account_id: str) -> str | None:
    """The user behind a wallet account id ("wallet:<user id>"), None for platform accounts."""
    prefix = "wallet:"
    return account_id[len(prefix) :] if account_id.startswith(prefix) else None
