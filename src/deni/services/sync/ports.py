"""What the sync use cases need from storage (docs/sync.md), as Protocols and values.

The SQL adapter is adapters/db/sync/repositories.py. A position in the change log is a pair
(xid, seq): on PostgreSQL `xid` is the writing transaction's id, on SQLite it is always 0.
"Served up to (x, s)" means every change with (xid, seq) <= (x, s) was handed out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from deni.domain.loans import Loan
from deni.services.ports import (
    Clock,
    NotificationRecord,
    PinHasher,
    RepaymentRecord,
    StatementLine,
    UnitOfWork,
)

Position = tuple[int, int]  # (xid, seq)
Change = tuple[str, str, str, str]  # (user_id, entity, entity_id, op)
SEQ_MAX = 2**62

if TYPE_CHECKING:
    from deni.services.limits import LimitCounters


@dataclass(frozen=True, slots=True)
class SyncClient:
    client_id: str
    user_id: str
    last_mutation_id: int
    schema_version: int


@dataclass(frozen=True, slots=True)
class MutationResult:
    mutation_id: int
    # applied | rejected | conflict | dead_letter; forgotten: processed long ago, result pruned
    status: str
    code: str | None = None
    message: str | None = None
    resolution: str | None = None
    entity_id: str | None = None
    conflict_id: str | None = None
    dead_letter_id: str | None = None
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class StoredMutation:
    client_id: str
    user_id: str
    name: str
    args_hash: str
    result: MutationResult
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: str
    user_id: str
    client_id: str
    mutation_id: int
    name: str
    args_json: str
    code: str
    message: str
    state: str  # open | retried | discarded
    result_json: str | None
    created_at: datetime
    retried_at: datetime | None


@dataclass(frozen=True, slots=True)
class ConflictRecord:
    id: str
    user_id: str
    client_id: str
    mutation_id: int
    entity: str
    entity_id: str
    server_version_json: str
    client_version_json: str
    state: str  # open | resolved
    resolution: str | None
    created_at: datetime
    resolved_at: datetime | None


@dataclass(frozen=True, slots=True)
class ChangeRow:
    xid: int
    seq: int
    entity: str
    entity_id: str
    op: str


class SyncRepository(Protocol):
    # clients and processed mutations
    def get_client(self, client_id: str) -> SyncClient | None: ...

    def lock_client(self, client_id: str) -> SyncClient | None: ...

    def add_client(self, client: SyncClient, now: datetime) -> None:
        """Does nothing if the id is taken (the caller reads the row again)."""
        ...

    def advance_client(
        self, client_id: str, *, last_mutation_id: int, schema_version: int, now: datetime
    ) -> None: ...

    def get_mutations(
        self, client_id: str, mutation_ids: Sequence[int]
    ) -> dict[int, StoredMutation]:
        """The stored results of these processed ids (at most 1,000), by id."""
        ...

    def add_mutations(self, stored: Sequence[StoredMutation]) -> None: ...

    # dead letters and conflicts
    def add_dead_letter(self, dead_letter: DeadLetter) -> None: ...

    def get_dead_letter(self, dead_letter_id: str) -> DeadLetter | None: ...

    def lock_dead_letter(self, dead_letter_id: str) -> DeadLetter | None: ...

    def update_dead_letter(
        self, dead_letter_id: str, *, state: str, result_json: str | None, now: datetime
    ) -> None: ...

    def list_dead_letters(
        self, *, user_id: str, client_id: str, open_only: bool, limit: int
    ) -> list[DeadLetter]: ...

    def count_open_dead_letters(self, *, user_id: str, client_id: str) -> int: ...

    def add_conflict(self, conflict: ConflictRecord) -> None: ...

    def lock_conflict(self, conflict_id: str) -> ConflictRecord | None: ...

    def resolve_conflict(self, conflict_id: str, *, resolution: str, now: datetime) -> None: ...

    def count_open_conflicts(self, user_id: str) -> int: ...

    # profile field versions (last writer wins per field)
    def profile_versions(self, user_id: str) -> dict[str, int]: ...

    # the change log
    def log_changes(self, changes: Sequence[Change], now: datetime) -> None:
        """Collected, and written with the rest of the transaction's change log at commit."""
        ...

    def finished_below(self) -> int | None:
        """PostgreSQL: the lowest transaction id that may still commit into this database's
        change log (below it, every transaction has ended or lives elsewhere). SQLite:
        None (writers are serialised; the snapshot sees a prefix of the log)."""
        ...

    def changes_after(
        self, *, user_id: str, after: Position, below_xid: int | None, limit: int
    ) -> list[ChangeRow]: ...

    def prune_changes(self, *, created_before: datetime, limit: int) -> int:
        """Delete the oldest change-log rows, up to `limit`, while they were created before
        `created_before`; returns how many went."""
        ...

    def prune_mutations(self, *, created_before: datetime, limit: int) -> int:
        """Delete stored mutation results created before `created_before`, the oldest first,
        up to `limit`; returns how many went."""
        ...

    def last_position(self, user_id: str) -> Position: ...

    # current state, for pulls (only rows the user may see)
    def snapshot_keys(
        self, *, user_id: str, entity: str, after_key: str, limit: int
    ) -> list[tuple[str, str]]:
        """(key, entity id) pairs of the user's current `entity` rows after `after_key`."""
        ...

    def loans(self, user_id: str, loan_ids: Sequence[str]) -> list[Loan]: ...

    def names(self, user_ids: Sequence[str]) -> dict[str, tuple[str, str]]: ...

    def repayments(self, user_id: str, repayment_ids: Sequence[str]) -> list[RepaymentRecord]: ...

    def transactions(self, user_id: str, entry_ids: Sequence[str]) -> list[StatementLine]: ...

    def notifications(
        self, user_id: str, notification_ids: Sequence[str]
    ) -> list[NotificationRecord]: ...

    def wallet(self, user_id: str) -> tuple[int, int] | None:
        """(balance_cents, held_cents) of the user's wallet."""
        ...

    def conflicts(self, user_id: str, conflict_ids: Sequence[str]) -> list[ConflictRecord]:
        """Open conflicts only."""
        ...


class SyncUnitOfWork(UnitOfWork, Protocol):
    @property
    def sync(self) -> SyncRepository: ...

    def savepoint(self) -> SyncUnitOfWork:
        """A unit of work nested in this one (a SAVEPOINT): its commit() keeps its writes for
        the outer transaction to commit; leaving it without commit() undoes them only."""
        ...


class SyncUnitOfWorkFactory(Protocol):
    def __call__(self) -> SyncUnitOfWork: ...

    def read_only(self) -> SyncUnitOfWork: ...

    def snapshot(self) -> SyncUnitOfWork:
        """A read-only transaction on one consistent snapshot (REPEATABLE READ)."""
        ...


@dataclass(frozen=True, slots=True)
class SyncDeps:
    uow: SyncUnitOfWorkFactory
    clock: Clock
    hasher: PinHasher
    secret: bytes  # keys the args hashes and signs cursors
    mpesa_on: bool
    # The abuse limits' counters (services/limits.py): a pushed loan request names a lender
    # by number, and counts as a lookup as on the API and USSD. None: not counted (tools).
    limit_counters: LimitCounters | None = None


class SyncStoreDeps(Protocol):
    """What sync's housekeeping runs on: units of work that reach the sync tables, the clock."""

    @property
    def uow(self) -> SyncUnitOfWorkFactory: ...

    @property
    def clock(self) -> Clock: ...


@dataclass(frozen=True, slots=True)
class SavepointsOf:
    """The unit-of-work factory of a use case run inside an open unit of work (a sync push
    group): each unit of work it opens is a savepoint of that one."""

    outer: SyncUnitOfWork

    def __call__(self) -> SyncUnitOfWork:
        return self.outer.savepoint()

    def read_only(self) -> SyncUnitOfWork:
        return self.outer.savepoint()
