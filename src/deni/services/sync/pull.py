"""Pull and status (docs/sync.md sections 3 and 5): what changed for a user since a cursor.

The change log (sync_changes) is written by the repositories in the same transaction as each
change; a pull reads it in one consistent snapshot and loads each changed record's current
state from that same snapshot. Positions are (xid, seq): on PostgreSQL a pull serves only
changes of transactions that have ended (xid below the lowest one of this database still
running at the snapshot), in (xid, seq) order, so a transaction that took its sequence number
early but committed late is served later, never skipped. On SQLite writers are serialised,
so seq order is commit order.

A cursor is opaque and signed (HMAC) with the user, the position and its issue time. A cursor
that does not verify, belongs to someone else, or is older than CURSOR_RETENTION gets a full
resync: a snapshot of the user's current records (reset: true).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from deni.domain.errors import Forbidden
from deni.domain.users import nairobi_today
from deni.services.ports import StatementLine
from deni.services.sync.ports import (
    SEQ_MAX,
    ChangeRow,
    Position,
    SyncDeps,
    SyncStoreDeps,
    SyncUnitOfWork,
    SyncUnitOfWorkFactory,
)
from deni.services.sync.protocol import (
    CLIENT_SCHEMA_VERSION_MIN,
    MUTATION_RESULT_RETENTION,
    SERVER_SCHEMA_VERSION,
    ensure_client,
    require_client_id,
    require_schema,
)

PULL_PAGE_MAX = 1000
PULL_PAGE_DEFAULT = 500
CURSOR_RETENTION = timedelta(days=30)
# The change log outlives every cursor that may still point into it, by a margin longer than
# any transaction runs (a late commit's rows carry the time they were written, not committed).
CHANGE_LOG_RETENTION = CURSOR_RETENTION + timedelta(days=1)
PRUNE_BATCH = 5_000
PRUNE_BATCHES_PER_RUN_MAX = 10
CURSOR_VERSION = 1
MAC_BYTES = 16
CURSOR_CHARS_MAX = 1024
PHASES = (
    "user",
    "preferences",
    "wallet",
    "loan",
    "repayment",
    "transaction",
    "notification",
    "conflict",
)

Data = dict[str, Any]


@dataclass(frozen=True, slots=True)
class PulledChange:
    entity: str
    id: str
    op: str  # put | delete
    data: Data | None


@dataclass(frozen=True, slots=True)
class PullPage:
    changes: list[PulledChange]
    cursor: str
    has_more: bool
    reset: bool
    last_mutation_id: int
    server_time: datetime


@dataclass(frozen=True, slots=True)
class SyncStatus:
    client_id: str
    registered: bool
    last_mutation_id: int
    pending_dead_letters: int
    open_conflicts: int
    head_cursor: str
    server_time: datetime
    server_schema_version: int = SERVER_SCHEMA_VERSION
    min_client_schema_version: int = CLIENT_SCHEMA_VERSION_MIN


# --- cursors ---------------------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_cursor(secret: bytes, state: Data) -> str:
    body = _b64(json.dumps(state, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(secret, b"cursor:" + body.encode(), hashlib.sha256).digest()[:MAC_BYTES]
    return body + "." + _b64(mac)


def decode_cursor(secret: bytes, cursor: str, *, user_id: str, now: datetime) -> Data | None:
    """The cursor's state, or None when it must not be trusted (then: full resync)."""
    if len(cursor) > CURSOR_CHARS_MAX or cursor.count(".") != 1:
        return None
    body, mac_text = cursor.split(".")
    expected = hmac.new(secret, b"cursor:" + body.encode(), hashlib.sha256).digest()[:MAC_BYTES]
    try:
        if not hmac.compare_digest(_unb64(mac_text), expected):
            return None
        state = json.loads(_unb64(body))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(state, dict) or state.get("v") != CURSOR_VERSION:
        return None
    if state.get("u") != user_id:
        return None  # another user's cursor: reveals nothing, starts this user afresh
    issued = datetime.fromtimestamp(int(state["t"]), UTC)
    if issued < now - CURSOR_RETENTION:
        return None
    return state


def _log_cursor(secret: bytes, user_id: str, position: Position, now: datetime) -> str:
    state = {"v": CURSOR_VERSION, "u": user_id, "m": "log", "x": position[0], "s": position[1]}
    return encode_cursor(secret, {**state, "t": int(now.timestamp())})


def _snapshot_cursor(
    secret: bytes, user_id: str, resume: Position, phase: int, key: str, now: datetime
) -> str:
    state = {
        "v": CURSOR_VERSION,
        "u": user_id,
        "m": "snap",
        "x": resume[0],
        "s": resume[1],
        "p": phase,
        "k": key,
        "t": int(now.timestamp()),
    }
    return encode_cursor(secret, state)


# --- pull ------------------------------------------------------------------------------------


def pull(
    deps: SyncDeps,
    *,
    user_id: str,
    client_id: str,
    schema_version: int,
    cursor: str | None,
    limit: int = PULL_PAGE_DEFAULT,
) -> PullPage:
    require_schema(schema_version)
    client_id = require_client_id(client_id)
    assert 1 <= limit <= PULL_PAGE_MAX
    ensure_client(deps, user_id=user_id, client_id=client_id, schema_version=schema_version)
    now = deps.clock.now()
    state = decode_cursor(deps.secret, cursor, user_id=user_id, now=now) if cursor else None
    reset = bool(cursor) and state is None
    with deps.uow.snapshot() as uow:
        # First statement: on PostgreSQL it fixes the snapshot this whole page is read from.
        below = uow.sync.finished_below()
        if state is None or state["m"] == "snap":
            if state is None:
                resume, phase, key = _head(uow, user_id, below), 0, ""
            else:
                resume, phase, key = (int(state["x"]), int(state["s"])), int(state["p"]), state["k"]
            changes, phase, key = _snapshot_page(uow, user_id, phase, str(key), limit, now)
            if phase >= len(PHASES):
                next_cursor = _log_cursor(deps.secret, user_id, resume, now)
            else:
                next_cursor = _snapshot_cursor(deps.secret, user_id, resume, phase, key, now)
            has_more = True  # after a snapshot, the log tail since it began
        else:
            after = (int(state["x"]), int(state["s"]))
            rows = uow.sync.changes_after(
                user_id=user_id, after=after, below_xid=below, limit=limit + 1
            )
            has_more = len(rows) > limit
            rows = rows[:limit]
            position = (rows[-1].xid, rows[-1].seq) if rows else after
            if not has_more and below is not None:
                position = max(position, (below - 1, SEQ_MAX))
            changes = _log_page(uow, user_id, rows, now)
            next_cursor = _log_cursor(deps.secret, user_id, position, now)
        client = uow.sync.get_client(client_id)
    assert client is not None
    return PullPage(changes, next_cursor, has_more, reset, client.last_mutation_id, now)


def _head(uow: SyncUnitOfWork, user_id: str, below: int | None) -> Position:
    """Everything before this position is already in the snapshot being read."""
    if below is not None:
        return (below - 1, SEQ_MAX)
    return uow.sync.last_position(user_id)


def _snapshot_page(
    uow: SyncUnitOfWork, user_id: str, phase: int, key: str, limit: int, now: datetime
) -> tuple[list[PulledChange], int, str]:
    wanted: list[tuple[str, str]] = []
    for _ in range(len(PHASES) + 1):  # bounded: one pass over the phases at most
        if phase >= len(PHASES) or len(wanted) >= limit:
            break
        entity, remaining = PHASES[phase], limit - len(wanted)
        keys = uow.sync.snapshot_keys(
            user_id=user_id, entity=entity, after_key=key, limit=remaining
        )
        wanted.extend((entity, entity_id) for _, entity_id in keys)
        if len(keys) < remaining:
            phase, key = phase + 1, ""
        else:
            key = keys[-1][0]
    return _materialise(uow, user_id, wanted, now), phase, key


def _log_page(
    uow: SyncUnitOfWork, user_id: str, rows: Sequence[ChangeRow], now: datetime
) -> list[PulledChange]:
    last: dict[tuple[str, str], ChangeRow] = {}
    for row in rows:  # the last change of each record wins; order by that last change
        last.pop((row.entity, row.entity_id), None)
        last[(row.entity, row.entity_id)] = row
    deleted = {k for k, row in last.items() if row.op == "delete"}
    puts = [k for k in last if k not in deleted]
    loaded = {(c.entity, c.id): c for c in _materialise(uow, user_id, puts, now)}
    return [PulledChange(k[0], k[1], "delete", None) if k in deleted else loaded[k] for k in last]


def _materialise(
    uow: SyncUnitOfWork, user_id: str, wanted: Sequence[tuple[str, str]], now: datetime
) -> list[PulledChange]:
    """The current state of each wanted record; a record the user can no longer see is a
    tombstone."""
    by_entity: dict[str, list[str]] = {}
    for entity, entity_id in wanted:
        by_entity.setdefault(entity, []).append(entity_id)
    data: dict[tuple[str, str], Data] = {}
    for entity, ids in by_entity.items():
        for entity_id, record in _load(uow, user_id, entity, ids, now).items():
            data[(entity, entity_id)] = record
    return [
        PulledChange(e, i, "put", data[(e, i)])
        if (e, i) in data
        else PulledChange(e, i, "delete", None)
        for e, i in wanted
    ]


def _ts(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def _day(value: date) -> str:
    return value.isoformat()


def _load(
    uow: SyncUnitOfWork, user_id: str, entity: str, ids: list[str], now: datetime
) -> dict[str, Data]:
    if entity in ("user", "preferences", "wallet"):
        if user_id not in ids:
            return {}
        own = _own(uow, user_id, entity)
        return {user_id: own} if own is not None else {}
    if entity == "loan":
        return _loans(uow, user_id, ids, now)
    if entity == "repayment":
        return {
            r.id: {
                "id": r.id,
                "loan_id": r.loan_id,
                "amount_cents": r.amount_cents,
                "penalty_cents": r.penalty_cents,
                "fee_cents": r.fee_cents,
                "principal_cents": r.principal_cents,
                "channel": r.channel,
                "created_at": _ts(r.created_at),
            }
            for r in uow.sync.repayments(user_id, ids)
        }
    if entity == "transaction":
        return {line.entry_id: _line(line) for line in uow.sync.transactions(user_id, ids)}
    if entity == "notification":
        return {
            n.id: {
                "id": n.id,
                "kind": n.kind,
                "language": n.language,
                "body": n.body,
                "loan_id": n.loan_id,
                "created_at": _ts(n.created_at),
                "read_at": _ts(n.read_at),
            }
            for n in uow.sync.notifications(user_id, ids)
        }
    if entity == "conflict":
        return {
            c.id: {
                "id": c.id,
                "entity": c.entity,
                "entity_id": c.entity_id,
                "client_id": c.client_id,
                "mutation_id": c.mutation_id,
                "server_version": json.loads(c.server_version_json),
                "client_version": json.loads(c.client_version_json),
                "created_at": _ts(c.created_at),
            }
            for c in uow.sync.conflicts(user_id, ids)
        }
    return {}  # an entity this server version no longer serves: nothing to show


def _own(uow: SyncUnitOfWork, user_id: str, entity: str) -> Data | None:
    if entity == "user":
        user = uow.users.get(user_id)
        if user is None:
            return None
        versions = uow.sync.profile_versions(user_id)
        field_versions = {f: versions.get(f, 0) for f in ("name", "language")}
        return {
            "id": user.id,
            "phone": user.phone,
            "name": user.name,
            "language": user.language,
            "phone_proven": user.phone_proven,
            "version": max(field_versions.values()),
            "field_versions": field_versions,
        }
    if entity == "preferences":
        prefs = uow.mpesa_preferences.get(user_id)
        return {"disburse_to_mpesa": prefs.disburse_to_mpesa, "auto_payout": prefs.auto_payout}
    wallet = uow.sync.wallet(user_id)
    if wallet is None:
        return None
    return {"user_id": user_id, "balance_cents": wallet[0], "held_cents": wallet[1]}


def _line(line: StatementLine) -> Data:
    return {
        "id": line.entry_id,
        "kind": line.code,
        "amount_cents": line.amount_cents,
        "balance_after_cents": line.balance_after_cents,
        "reference": line.memo,
        "loan_id": line.cause_id if line.cause_type == "loan" else None,
        "mpesa_receipt": line.mpesa_receipt,
        "created_at": _ts(line.created_at),
    }


def _loans(uow: SyncUnitOfWork, user_id: str, ids: list[str], now: datetime) -> dict[str, Data]:
    found = uow.sync.loans(user_id, ids)
    names = uow.sync.names([u for loan in found for u in (loan.borrower_id, loan.lender_id)])
    today = nairobi_today(now)
    out: dict[str, Data] = {}
    for loan in found:
        loan.accrue_penalty(today)  # on the copy read for display; nothing is saved
        owed = loan.owed()
        borrower, lender = names[loan.borrower_id], names[loan.lender_id]
        out[loan.id] = {
            "id": loan.id,
            "code": loan.code,
            "state": loan.state.value,
            "role": "borrower" if loan.borrower_id == user_id else "lender",
            "borrower_id": loan.borrower_id,
            "borrower_name": borrower[0],
            "borrower_phone": borrower[1],
            "lender_id": loan.lender_id,
            "lender_name": lender[0],
            "lender_phone": lender[1],
            "principal_cents": loan.terms.principal_cents,
            "fee_cents": loan.terms.fee_cents,
            "penalty_daily_cents": loan.terms.penalty_daily_cents,
            "total_cents": loan.terms.total_cents,
            "due_date": _day(loan.terms.due_date),
            "owed_cents": owed.total_cents,
            "owed_penalty_cents": owed.penalty_cents,
            "owed_fee_cents": owed.fee_cents,
            "owed_principal_cents": owed.principal_cents,
            "penalty_charged_cents": loan.penalty_charged_cents,
            "overdue": loan.is_overdue(today),
            "days_overdue": loan.days_overdue(today),
            "requested_at": _ts(loan.requested_at),
            "expires_at": _ts(loan.expires_at),
            "disbursed_at": _ts(loan.disbursed_at),
            "closed_at": _ts(loan.closed_at),
            "version": loan.version,
        }
    return out


# --- status ----------------------------------------------------------------------------------


def prune_change_log(deps: SyncStoreDeps) -> int:
    """Drop change-log rows that no cursor still accepted can need (a cursor older than
    CURSOR_RETENTION gets a full resync instead). Short transactions, a bounded number."""
    created_before = deps.clock.now() - CHANGE_LOG_RETENTION
    return _prune(deps.uow, lambda uow: uow.sync.prune_changes(
        created_before=created_before, limit=PRUNE_BATCH
    ))  # fmt: skip


def prune_mutation_results(deps: SyncStoreDeps) -> int:
    """Drop stored push results older than MUTATION_RESULT_RETENTION (a device pushing one of
    those ids again is told `forgotten`)."""
    created_before = deps.clock.now() - MUTATION_RESULT_RETENTION
    return _prune(deps.uow, lambda uow: uow.sync.prune_mutations(
        created_before=created_before, limit=PRUNE_BATCH
    ))  # fmt: skip


def _prune(uow_factory: SyncUnitOfWorkFactory, batch: Callable[[SyncUnitOfWork], int]) -> int:
    pruned = 0
    for _ in range(PRUNE_BATCHES_PER_RUN_MAX):
        with uow_factory() as uow:
            count = batch(uow)
            uow.commit()
        pruned += count
        if count < PRUNE_BATCH:
            break
    return pruned


def status(deps: SyncDeps, *, user_id: str, client_id: str) -> SyncStatus:
    client_id = require_client_id(client_id)
    now = deps.clock.now()
    with deps.uow.snapshot() as uow:
        below = uow.sync.finished_below()
        client = uow.sync.get_client(client_id)
        if client is not None and client.user_id != user_id:
            raise Forbidden("This client id belongs to someone else.", code="client_not_yours")
        head = _head(uow, user_id, below)
        dead = uow.sync.count_open_dead_letters(user_id=user_id, client_id=client_id)
        conflicts = uow.sync.count_open_conflicts(user_id)
    return SyncStatus(
        client_id=client_id,
        registered=client is not None,
        last_mutation_id=client.last_mutation_id if client else 0,
        pending_dead_letters=dead,
        open_conflicts=conflicts,
        head_cursor=_log_cursor(deps.secret, user_id, head, now),
        server_time=now,
    )
