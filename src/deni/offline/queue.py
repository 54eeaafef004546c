"""The offline queue: named intents, numbered strictly +1 per client, written with their effect.

A mutation is an intent (`repay_loan{loan_id, amount_cents}`), never a balance. `enqueue` runs
the optimistic local change and inserts the queue row in ONE local transaction, so a crash can
leave neither or both, never one without the other.

States:
    pending   written locally, not yet acknowledged by the server
    sent      pushed at least once, no answer heard yet (a retry sends it again, same id)
    applied   the server applied it
    rejected  the server refused it (code and reason kept); done, never blocks the queue
    conflict  the server kept both versions for the user to resolve; done
    dead      the server (or this client) found it malformed: parked as a dead letter,
              can be inspected and retried (`retry_dead`)
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from deni.offline.store import SCHEMA_VERSION, Store, dumps, set_in

# Bounds (TigerBeetle style: every queue is bounded, every loop has a limit).
QUEUE_OPEN_MAX: Final = 1_000  # mutations not yet answered by the server
QUEUE_DONE_KEPT_MAX: Final = 5_000  # answered mutations kept for `deni offline queue`
MUTATION_NAMES: Final = frozenset(
    {
        "request_loan",
        "approve_loan",
        "decline_loan",
        "cancel_loan",
        "repay_loan",
        "top_up",
        "withdraw",
        "mark_notification_read",
        "update_profile",
        "edit_loan_request",
        "resolve_conflict",
        "set_preferences",
    }
)
# What moves money out of the wallet (or decides where it goes) needs the PIN at the server.
# These are queued without it; the PIN is added in memory when they are pushed, never stored.
NEEDS_PIN: Final = frozenset({"approve_loan", "repay_loan", "withdraw", "set_preferences"})
assert NEEDS_PIN <= MUTATION_NAMES
OPEN_STATES: Final = ("pending", "sent")
DONE_STATES: Final = ("applied", "rejected", "conflict", "dead")
ALL_STATES: Final = OPEN_STATES + DONE_STATES

LocalEffect = Callable[[sqlite3.Connection, int], None]


class QueueFull(Exception):
    """Too many mutations wait for the server: sync before queueing more."""


@dataclass(frozen=True, slots=True)
class Mutation:
    mutation_id: int
    idempotency_key: str
    name: str
    args: dict[str, Any]
    aggregate_id: str | None
    status: str
    attempts: int
    last_error: str | None
    result_code: str | None
    result_reason: str | None
    result: dict[str, Any] | None
    created_at_device: str
    schema_version: int
    dead_letter_id: str | None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def next_mutation_id(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT value FROM sync_metadata WHERE key = 'next_mutation_id'").fetchone()
    return 1 if row is None else int(row[0])


@dataclass(frozen=True, slots=True)
class Intent:
    """One mutation to queue: its name, args, and the optimistic local change it makes."""

    name: str
    args: dict[str, Any]
    aggregate_id: str | None
    effect: LocalEffect | None = None


def enqueue(
    store: Store,
    *,
    name: str,
    args: dict[str, Any],
    aggregate_id: str | None,
    effect: LocalEffect | None = None,
) -> Mutation:
    """Apply `effect` (the optimistic local change) and queue the mutation, atomically."""
    [found] = enqueue_all(store, [Intent(name, args, aggregate_id, effect)])
    return found


def enqueue_all(store: Store, intents: list[Intent]) -> list[Mutation]:
    """Queue several mutations (ids +1 each) with their effects in ONE local transaction: all
    of them or none (one user command that needs more than one mutation, e.g. marking more
    notifications read than one mutation may carry)."""
    assert intents, "at least one intent"
    ids: list[int] = []
    with store.write() as db:
        open_count = db.execute(
            "SELECT count(*) FROM offline_queue WHERE status IN ('pending', 'sent')"
        ).fetchone()[0]
        if open_count + len(intents) > QUEUE_OPEN_MAX:
            raise QueueFull(
                f"{open_count} changes are waiting for the server: run `deni offline sync` first."
            )
        for intent in intents:
            assert intent.name in MUTATION_NAMES, intent.name
            ids.append(_insert(db, intent))
        _prune_done(db)
    found = [get(store.db, mutation_id) for mutation_id in ids]
    assert all(m is not None for m in found)
    return [m for m in found if m is not None]


def _insert(db: sqlite3.Connection, intent: Intent) -> int:
    mutation_id = next_mutation_id(db)
    last_row = db.execute("SELECT max(mutation_id) FROM offline_queue").fetchone()[0]
    assert last_row is None or mutation_id == int(last_row) + 1, "mutation ids are +1"
    if intent.effect is not None:
        intent.effect(db, mutation_id)
    db.execute(
        "INSERT INTO offline_queue (mutation_id, idempotency_key, name, args_json, "
        "aggregate_id, status, created_at_device, schema_version) "
        "VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)",
        (
            mutation_id,
            str(uuid.uuid4()),
            intent.name,
            dumps(intent.args),
            intent.aggregate_id,
            _now(),
            SCHEMA_VERSION,
        ),
    )
    set_in(db, "next_mutation_id", mutation_id + 1)
    return mutation_id


def _prune_done(db: sqlite3.Connection) -> None:
    """Keep the newest QUEUE_DONE_KEPT_MAX answered mutations (open ones are never pruned)."""
    db.execute(
        "DELETE FROM offline_queue WHERE status IN ('applied', 'rejected', 'conflict') "
        "AND mutation_id NOT IN (SELECT mutation_id FROM offline_queue "
        "WHERE status IN ('applied', 'rejected', 'conflict') "
        "ORDER BY mutation_id DESC LIMIT ?)",
        (QUEUE_DONE_KEPT_MAX,),
    )


def _row(row: sqlite3.Row) -> Mutation:
    result = row["result_json"]
    return Mutation(
        mutation_id=int(row["mutation_id"]),
        idempotency_key=str(row["idempotency_key"]),
        name=str(row["name"]),
        args=_loads(row["args_json"]),
        aggregate_id=row["aggregate_id"],
        status=str(row["status"]),
        attempts=int(row["attempts"]),
        last_error=row["last_error"],
        result_code=row["result_code"],
        result_reason=row["result_reason"],
        result=None if result is None else _loads(result),
        created_at_device=str(row["created_at_device"]),
        schema_version=int(row["schema_version"]),
        dead_letter_id=row["dead_letter_id"],
    )


def _loads(text: str) -> dict[str, Any]:
    import json

    value = json.loads(text)
    assert isinstance(value, dict)
    return value


def get(db: sqlite3.Connection, mutation_id: int) -> Mutation | None:
    row = db.execute("SELECT * FROM offline_queue WHERE mutation_id = ?", (mutation_id,)).fetchone()
    return None if row is None else _row(row)


def open_mutations(db: sqlite3.Connection, *, limit: int = QUEUE_OPEN_MAX) -> list[Mutation]:
    """Mutations the server has not answered yet, oldest first."""
    assert 1 <= limit <= QUEUE_OPEN_MAX
    rows = db.execute(
        "SELECT * FROM offline_queue WHERE status IN ('pending', 'sent') "
        "ORDER BY mutation_id LIMIT ?",
        (limit,),
    )
    return [_row(r) for r in rows]


def unconfirmed(db: sqlite3.Connection, *, confirmed_mutation_id: int) -> list[Mutation]:
    """Mutations whose effect the last pulled server state does not show yet (for rebase and
    the provisional balance): open ones, and applied ones the server acknowledged after the
    snapshot we hold was taken."""
    rows = db.execute(
        "SELECT * FROM offline_queue WHERE mutation_id > ? "
        "AND status IN ('pending', 'sent', 'applied') ORDER BY mutation_id LIMIT ?",
        (confirmed_mutation_id, QUEUE_OPEN_MAX + QUEUE_DONE_KEPT_MAX),
    )
    return [_row(r) for r in rows]


def listing(db: sqlite3.Connection, *, statuses: tuple[str, ...], limit: int) -> list[Mutation]:
    assert statuses
    assert set(statuses) <= set(ALL_STATES)
    assert 1 <= limit <= QUEUE_OPEN_MAX + QUEUE_DONE_KEPT_MAX
    marks = ", ".join("?" for _ in statuses)
    rows = db.execute(
        f"SELECT * FROM offline_queue WHERE status IN ({marks}) "  # noqa: S608 (placeholders)
        "ORDER BY mutation_id DESC LIMIT ?",
        (*statuses, limit),
    )
    return [_row(r) for r in rows]


def mark_sent(db: sqlite3.Connection, mutation_ids: list[int]) -> None:
    for mutation_id in mutation_ids:
        db.execute(
            "UPDATE offline_queue SET status = 'sent', attempts = attempts + 1 "
            "WHERE mutation_id = ? AND status IN ('pending', 'sent')",
            (mutation_id,),
        )


def mark_error(db: sqlite3.Connection, mutation_ids: list[int], error: str) -> None:
    for mutation_id in mutation_ids:
        db.execute(
            "UPDATE offline_queue SET last_error = ? WHERE mutation_id = ?",
            (error[:500], mutation_id),
        )


def mark_done(
    db: sqlite3.Connection,
    mutation_id: int,
    *,
    status: str,
    code: str | None = None,
    reason: str | None = None,
    result: dict[str, Any] | None = None,
    dead_letter_id: str | None = None,
) -> None:
    """Record the server's answer. A done mutation never blocks those after it."""
    assert status in DONE_STATES, status
    db.execute(
        "UPDATE offline_queue SET status = ?, result_code = ?, result_reason = ?, "
        "result_json = ?, dead_letter_id = ?, done_at_device = ?, last_error = NULL "
        "WHERE mutation_id = ?",
        (
            status,
            code,
            reason,
            None if result is None else dumps(result),
            dead_letter_id,
            _now(),
            mutation_id,
        ),
    )


def counts(db: sqlite3.Connection) -> dict[str, int]:
    rows = db.execute("SELECT status, count(*) FROM offline_queue GROUP BY status")
    found = {str(r[0]): int(r[1]) for r in rows}
    return {state: found.get(state, 0) for state in ALL_STATES}
