"""Push: apply a client's queued mutations in order, exactly once (docs/sync.md section 2).

Atomicity (docs/adr/0005-offline-sync.md): mutations are applied in groups, one transaction
per group (see _Push). The group's one commit carries the mutations' effects, their stored
results and the client's last mutation id together. Services open `with uow:` and commit; here
they get a savepoint of the group's transaction (SyncUnitOfWork.savepoint), so their commit()
only keeps their writes for ours and a refused command's writes are undone. A crash at any
point leaves either all of a mutation (with its result and the last mutation id) or none of
it, and a re-push gets the stored results.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from deni.domain.errors import (
    Conflict,
    DomainError,
    NotFound,
    TooManyRequests,
    ValidationFailed,
)
from deni.domain.secrecy import masked, without_secrets
from deni.ids import new_id
from deni.services import limits
from deni.services.common import notify
from deni.services.ports import StorageBusy
from deni.services.sync.mutations import HANDLERS, MalformedMutation, Outcome, SyncContext, parse
from deni.services.sync.ports import (
    DeadLetter,
    MutationResult,
    StoredMutation,
    SyncDeps,
    SyncUnitOfWork,
)
from deni.services.sync.protocol import (
    MUTATION_RESULT_RETENTION,
    ensure_client,
    require_client_id,
    require_schema,
)

MUTATIONS_PER_PUSH_MAX = 500
ARGS_BYTES_MAX = 8192
NAME_CHARS_MAX = 64
DEAD_LETTERS_LISTED_MAX = 100
# A push is applied in groups, one transaction each (see _Push): one commit (a WAL flush on
# PostgreSQL) per group instead of per mutation. A group ends after this many mutations or
# once it has run this long, so the locks it holds (SQLite's write lock, rows it touched)
# keep other writers waiting no longer than about that. The count also keeps a group's
# savepoints (one or two per mutation) under the 64 subtransactions a PostgreSQL backend
# tracks in shared memory; past that every other session's snapshots get slower.
# 25: with one transaction per mutation the push of 1,000 cannot meet the 2 s floor for it here;
# each mutation still keeps its own savepoint (docs/adr/0005-offline-sync.md, "Decision").
GROUP_MUTATIONS_MAX = 25
GROUP_SECONDS_MAX = 0.05


@dataclass(frozen=True, slots=True)
class PushedMutation:
    id: int
    name: str
    args: object


@dataclass(frozen=True, slots=True)
class Stopped:
    code: str
    message: str
    mutation_id: int
    expected_mutation_id: int


@dataclass(frozen=True, slots=True)
class PushOutcome:
    client_id: str
    last_mutation_id: int
    results: list[MutationResult]
    stopped: Stopped | None


def args_hash(secret: bytes, name: str, args: object) -> str:
    """A mutation's fingerprint, keyed. Secret fields (a PIN, at any depth) are left out: a
    device that lost the answer and re-sends with the PIN typed again (maybe differently) is
    replaying the same intent, not reusing the id, and a stored fingerprint must say nothing
    about a PIN."""
    canonical = (
        name + "\n" + json.dumps(without_secrets(args), sort_keys=True, separators=(",", ":"))
    )
    return hmac.new(secret, canonical.encode(), hashlib.sha256).hexdigest()


def push(
    deps: SyncDeps,
    *,
    user_id: str,
    client_id: str,
    schema_version: int,
    mutations: Sequence[PushedMutation],
) -> PushOutcome:
    require_schema(schema_version)
    client_id = require_client_id(client_id)
    if not 1 <= len(mutations) <= MUTATIONS_PER_PUSH_MAX:
        raise ValidationFailed(f"Push 1 to {MUTATIONS_PER_PUSH_MAX} mutations at a time.")
    for mutation in mutations:
        if mutation.id < 1 or len(mutation.name) > NAME_CHARS_MAX:
            raise ValidationFailed("Mutation ids start at 1; names are at most 64 characters.")
    client = ensure_client(
        deps, user_id=user_id, client_id=client_id, schema_version=schema_version
    )
    ordered = sorted(mutations, key=lambda m: m.id)  # bounded: ≤ MUTATIONS_PER_PUSH_MAX
    fresh = [m for m in ordered if m.id > client.last_mutation_id]
    refusals = _count_lender_lookups(deps, user_id, [m.id for m in fresh if m.name == LOOKS_UP])
    run = _Push(deps, user_id, client_id, schema_version, client.last_mutation_id, refusals)
    while run.stopped is None and len(run.results) < len(ordered):
        run.group(ordered[len(run.results) :])
    return PushOutcome(client_id, run.last_mutation_id, run.results, run.stopped)


LOOKS_UP = "request_loan"  # the mutation that names a lender by number


def _count_lender_lookups(
    deps: SyncDeps, user_id: str, mutation_ids: Sequence[int]
) -> dict[int, DomainError]:
    """Each new mutation that names a lender counts as a lookup, as on the API and USSD, before
    any transaction opens; those past the member's limit are refused when applied."""
    refusals: dict[int, DomainError] = {}
    counters = deps.limit_counters
    if counters is None:  # tools that push on a member's behalf count nothing
        return refusals
    for mutation_id in mutation_ids:  # bounded: ≤ MUTATIONS_PER_PUSH_MAX
        try:
            limits.limit_lender_lookup(counters, member_id=user_id, now=deps.clock.now())
        except TooManyRequests as refused:
            refusals[mutation_id] = refused
    return refusals


class _Push:
    """One push, applied in groups of mutations, one transaction per group
    (docs/adr/0005-offline-sync.md).

    A group's single commit carries its mutations' effects, their stored results and the
    client's last mutation id, so the database only ever holds whole mutations, each with its
    result. If mutation k of a group fails (a busy database, a bug), the group's transaction
    is rolled back whole, k included, and the mutations before k are done again in a new
    transaction: nothing of the first try survived, so this is their only committed run. The
    push then stops at k (busy) or the error goes on (a bug), as when each mutation had its own
    transaction. Mutations do nothing outside the database (M-PESA requests go through the
    outbox), so running one again after a rollback has no other effect.
    """

    def __init__(
        self,
        deps: SyncDeps,
        user_id: str,
        client_id: str,
        schema_version: int,
        last: int,
        lookup_refusals: Mapping[int, DomainError],
    ) -> None:
        self.deps = deps
        self.lookup_refusals = lookup_refusals
        self.user_id = user_id
        self.client_id = client_id
        self.schema_version = schema_version
        self.last_mutation_id = last  # committed
        self.results: list[MutationResult] = []  # committed or replayed, in id order
        self.stopped: Stopped | None = None
        self._applying: int | None = None  # index in the group of the mutation being applied

    def group(self, pending: Sequence[PushedMutation], size: int | None = None) -> None:
        """One transaction: mutations from the start of `pending`, until the group is full
        (or, with `size`, exactly that many unless the batch stops before)."""
        try:
            self._transaction(pending, size)
        except Exception as failure:
            failed_at = self._applying
            if failed_at is None:  # not inside a mutation: BEGIN, the client lock, COMMIT
                failed_at = 0
            elif failed_at > 0:
                self.group(pending, size=failed_at)  # those before it, on their own
            if self.stopped is None:
                if not isinstance(failure, StorageBusy):
                    raise
                failed = pending[failed_at].id
                message = "The database is busy; push again later."
                self.stopped = Stopped("busy", message, failed, self.last_mutation_id + 1)

    def _transaction(self, pending: Sequence[PushedMutation], size: int | None) -> None:
        self._applying = None
        with self.deps.uow() as uow:
            client = uow.sync.lock_client(self.client_id)  # orders pushes of one client
            assert client is not None
            assert client.user_id == self.user_id
            last = client.last_mutation_id
            seen = [m.id for m in pending if m.id <= last]
            group = _Group(last, uow.sync.get_mutations(self.client_id, seen) if seen else {})
            self._fill(uow, group, pending, size)
            if group.applied:
                uow.sync.add_mutations(group.applied)
                uow.sync.advance_client(
                    self.client_id,
                    last_mutation_id=group.last,
                    schema_version=self.schema_version,
                    now=group.applied[-1].created_at,
                )
                uow.commit()
        self.results.extend(group.results)
        self.last_mutation_id = group.last
        self.stopped = group.stopped

    def _fill(
        self,
        uow: SyncUnitOfWork,
        group: _Group,
        pending: Sequence[PushedMutation],
        size: int | None,
    ) -> None:
        """Replay or apply mutations in order until the batch stops or the group is full."""
        started = time.monotonic()
        for index, mutation in enumerate(pending[:size]):
            digest = args_hash(self.deps.secret, mutation.name, mutation.args)
            if mutation.id <= group.last:
                stored = group.known.get(mutation.id)
                if stored is None:  # pruned: processed so long ago its result is gone
                    group.results.append(_forgotten(mutation.id))
                    continue
                if stored.args_hash != digest:
                    group.stopped = _reused(mutation.id, group.last)
                    return
                group.results.append(replace(stored.result, replayed=True))
                continue
            if mutation.id > group.last + 1:
                group.stopped = _gap(mutation.id, group.last)
                return
            full = len(group.applied) >= GROUP_MUTATIONS_MAX
            if size is None and group.applied and (full or _since(started) >= GROUP_SECONDS_MAX):
                return  # the next group (transaction) goes on from here
            self._applying = index
            stored = self._apply(uow, mutation, digest)
            self._applying = None
            group.applied.append(stored)
            group.known[mutation.id] = stored  # the same id twice in one push: a replay
            group.results.append(stored.result)
            group.last = mutation.id

    def _apply(self, uow: SyncUnitOfWork, mutation: PushedMutation, digest: str) -> StoredMutation:
        now = self.deps.clock.now()
        ctx = SyncContext(
            user_id=self.user_id,
            client_id=self.client_id,
            mutation_id=mutation.id,
            key=f"sync:{self.client_id}:{mutation.id}",
            now=now,
            clock=self.deps.clock,
            hasher=self.deps.hasher,
            mpesa_on=self.deps.mpesa_on,
            lender_lookup_refusal=self.lookup_refusals.get(mutation.id),
        )
        result = apply_mutation(uow, ctx, mutation.name, mutation.args, dead_letters=True)
        return StoredMutation(self.client_id, self.user_id, mutation.name, digest, result, now)


@dataclass(slots=True)
class _Group:
    """What one group (transaction) of a push did so far."""

    last: int  # the client's last mutation id, counting this group's applied mutations
    known: dict[int, StoredMutation]  # stored results of ids up to `last`, as far as needed
    applied: list[StoredMutation] = field(default_factory=list)
    results: list[MutationResult] = field(default_factory=list)  # applied or replayed
    stopped: Stopped | None = None


def _since(started: float) -> float:
    return time.monotonic() - started


def _forgotten(mutation_id: int) -> MutationResult:
    days = MUTATION_RESULT_RETENTION.days
    message = (
        f"Mutation {mutation_id} was processed more than {days} days ago; its outcome is no "
        "longer kept. Pull to see where things stand."
    )
    return MutationResult(
        mutation_id, "forgotten", code="result_forgotten", message=message, replayed=True
    )


def _reused(mutation_id: int, last: int) -> Stopped:
    message = f"Mutation {mutation_id} was already processed with other content."
    return Stopped("mutation_id_reused", message, mutation_id, last + 1)


def _gap(mutation_id: int, last: int) -> Stopped:
    message = f"Mutation ids must go up by one: expected {last + 1}, got {mutation_id}."
    return Stopped("mutation_gap", message, mutation_id, last + 1)


def apply_mutation(
    uow: SyncUnitOfWork, ctx: SyncContext, name: str, args: object, *, dead_letters: bool
) -> MutationResult:
    """Run one mutation inside `uow` (not committed here). Malformed: a dead letter (stored
    only when `dead_letters`); refused by the domain: rejected, and the user is told."""
    try:
        encoded = json.dumps(args)
        if len(encoded) > ARGS_BYTES_MAX:
            raise MalformedMutation("args_too_large", f"args are over {ARGS_BYTES_MAX} bytes.")
        parsed = parse(name, args)
    except MalformedMutation as malformed:
        dead_letter_id = new_id() if dead_letters else None
        if dead_letter_id is not None:
            uow.sync.add_dead_letter(
                DeadLetter(
                    id=dead_letter_id,
                    user_id=ctx.user_id,
                    client_id=ctx.client_id,
                    mutation_id=ctx.mutation_id,
                    name=name,
                    args_json=redacted_json(args),
                    code=malformed.code,
                    message=malformed.message,
                    state="open",
                    result_json=None,
                    created_at=ctx.now,
                    retried_at=None,
                )
            )
        return MutationResult(
            ctx.mutation_id,
            "dead_letter",
            code=malformed.code,
            message=malformed.message,
            dead_letter_id=dead_letter_id,
        )
    try:
        # Handlers give services a savepoint of `uow`: a refused command's writes are undone,
        # what the service committed before refusing (a wrong PIN counted) stays. Handlers
        # that write to `uow` themselves check everything before their first write.
        outcome: Outcome = HANDLERS[name](uow, ctx, parsed)
    except DomainError as error:
        _tell_rejected(uow, ctx, name, error)
        entity = parsed.get("loan_id")
        return MutationResult(
            ctx.mutation_id,
            "rejected",
            code=error.code,
            message=error.message,
            resolution="server_wins",
            entity_id=entity if isinstance(entity, str) else None,
        )
    return MutationResult(
        ctx.mutation_id,
        outcome.status,
        resolution=outcome.resolution,
        entity_id=outcome.entity_id,
        conflict_id=outcome.conflict_id,
    )


def _tell_rejected(uow: SyncUnitOfWork, ctx: SyncContext, name: str, error: DomainError) -> None:
    user = uow.users.get(ctx.user_id)
    assert user is not None
    notify(
        uow,
        user=user,
        kind="sync_rejected",
        params={"action": name.replace("_", " "), "reason_code": error.code},
        now=ctx.now,
    )


def redacted_json(args: object) -> str:
    """A dead letter's args as kept: every secret field masked, at any depth."""
    return json.dumps(masked(args))


# --- dead letters and conflicts, from the API -----------------------------------------------


def list_dead_letters(
    deps: SyncDeps, *, user_id: str, client_id: str, open_only: bool
) -> list[DeadLetter]:
    client_id = require_client_id(client_id)
    with deps.uow.read_only() as uow:
        return uow.sync.list_dead_letters(
            user_id=user_id, client_id=client_id, open_only=open_only, limit=DEAD_LETTERS_LISTED_MAX
        )


def _open_dead_letter(uow: SyncUnitOfWork, user_id: str, dead_letter_id: str) -> DeadLetter:
    found = uow.sync.lock_dead_letter(dead_letter_id)
    if found is None or found.user_id != user_id:
        raise NotFound("No such dead letter.", code="dead_letter_not_found")
    if found.state != "open":
        raise Conflict(f"This dead letter is {found.state}.", code="dead_letter_closed")
    return found


def retry_dead_letter(
    deps: SyncDeps,
    *,
    user_id: str,
    dead_letter_id: str,
    name: str | None = None,
    args: object = None,
    args_given: bool = False,
) -> tuple[DeadLetter, MutationResult]:
    """Run a dead letter again now (as stored, or corrected). Not in the client's id order."""
    now = deps.clock.now()
    with deps.uow.read_only() as uow:
        seen = uow.sync.get_dead_letter(dead_letter_id)
    looks_up = seen is not None and seen.user_id == user_id and (name or seen.name) == LOOKS_UP
    refusal = _count_lender_lookups(deps, user_id, [0] if looks_up else []).get(0)
    with deps.uow() as uow:
        found = _open_dead_letter(uow, user_id, dead_letter_id)
        ctx = SyncContext(
            user_id=user_id,
            client_id=found.client_id,
            mutation_id=found.mutation_id,
            key=f"dl:{found.id}",
            now=now,
            clock=deps.clock,
            hasher=deps.hasher,
            mpesa_on=deps.mpesa_on,
            lender_lookup_refusal=refusal,
        )
        run_args = args if args_given else json.loads(found.args_json)
        result = apply_mutation(uow, ctx, name or found.name, run_args, dead_letters=False)
        if result.status != "dead_letter":
            uow.sync.update_dead_letter(
                found.id, state="retried", result_json=result_json(result), now=now
            )
        uow.commit()
    with deps.uow.read_only() as uow:
        after = _find_dead_letter(uow, user_id, found.id)
    return after, result


def discard_dead_letter(deps: SyncDeps, *, user_id: str, dead_letter_id: str) -> DeadLetter:
    now = deps.clock.now()
    with deps.uow() as uow:
        found = _open_dead_letter(uow, user_id, dead_letter_id)
        uow.sync.update_dead_letter(found.id, state="discarded", result_json=None, now=now)
        uow.commit()
    with deps.uow.read_only() as uow:
        return _find_dead_letter(uow, user_id, found.id)


def _find_dead_letter(uow: SyncUnitOfWork, user_id: str, dead_letter_id: str) -> DeadLetter:
    found = uow.sync.get_dead_letter(dead_letter_id)
    assert found is not None
    assert found.user_id == user_id
    return found


def result_json(result: MutationResult) -> str:
    return json.dumps(
        {
            "mutation_id": result.mutation_id,
            "status": result.status,
            "code": result.code,
            "message": result.message,
            "resolution": result.resolution,
            "entity_id": result.entity_id,
            "conflict_id": result.conflict_id,
            "dead_letter_id": result.dead_letter_id,
            "replayed": result.replayed,
        }
    )


def resolve_conflict(
    deps: SyncDeps, *, user_id: str, conflict_id: str, choice: str
) -> MutationResult:
    """The API's way to resolve a manual conflict (the offline way is the mutation)."""
    now = deps.clock.now()
    with deps.uow() as uow:
        ctx = SyncContext(
            user_id=user_id,
            client_id="",
            mutation_id=0,
            key=f"resolve:{conflict_id}",
            now=now,
            clock=deps.clock,
            hasher=deps.hasher,
            mpesa_on=deps.mpesa_on,
        )
        conflict = uow.sync.lock_conflict(conflict_id)
        if conflict is None or conflict.user_id != user_id:
            raise NotFound("No such conflict.", code="conflict_not_found")
        args = {"conflict_id": conflict_id, "choice": choice}
        result = apply_mutation(uow, ctx, "resolve_conflict", args, dead_letters=False)
        uow.commit()
    return result
