"""One sync cycle: push the queue, pull until done, rebase what is still pending (docs/sync.md).

- Push: open mutations oldest first, at most PUSH_BATCH_MAX per request. Each result marks its
  mutation done (applied, rejected with its reason, conflict, dead letter): a refused intent
  never blocks the ones after it. Network errors, 5xx, 429 and 503 are retried with exponential
  backoff and full jitter, a bounded number of times; then the sync stops and nothing is lost
  (the mutations stay queued, marked `sent`; the next push gets the server's stored results).
- A gap (`mutation_gap`) re-sends from the id the server expects, if this device still has it.
- Pull: pages until `has_more` is false, each page's changes and its cursor applied in ONE local
  transaction. `reset: true` wipes the server-derived tables in the same transaction as the
  first page of the fresh snapshot.
- Rebase: the optimistic view is rebuilt as server state + the mutations it does not show yet.

Mutation ids on the wire are `local id - mutation_id_offset`: when the server says the client
id is not ours (403 `client_not_yours`), the device takes a new client id and its open
mutations are renumbered from 1 by moving the offset (local ids stay contiguous, so +1 holds).
"""

from __future__ import annotations

import functools
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from deni.offline import local, queue
from deni.offline.api import Api, ApiError, OfflineError
from deni.offline.retry import Backoff
from deni.offline.store import SYNCED_TABLES, Store, dumps, set_in

# The sync protocol version this client speaks (docs/sync.md, "schema_version").
WIRE_SCHEMA_VERSION: Final = 1
PUSH_BATCH_MAX: Final = 500
PUSH_ROUNDS_MAX: Final = 50  # batches (and gap re-sends) in one sync
PULL_PAGE_LIMIT: Final = 500
PULL_PAGES_MAX: Final = 2_000
CLIENT_RESETS_MAX: Final = 1
RESULT_STATUS: Final = {
    "applied": "applied",
    "rejected": "rejected",
    "conflict": "conflict",
    "dead_letter": "dead",
    # Processed so long ago that the server no longer keeps the outcome: done here too; the
    # pull that follows shows what it did.
    "forgotten": "applied",
}
ENTITY_TABLES: Final = {
    "user": "users",
    "loan": "loans",
    "repayment": "repayments",
    "transaction": "transactions",
    "notification": "notifications",
}

Progress = Callable[[str, int, int | None], None]


class SyncFailed(OfflineError):
    """The sync could not finish; everything queued is still queued."""


class UpgradeRequired(OfflineError):
    """The server no longer speaks this client's sync schema."""


class NotLoggedIn(OfflineError):
    pass


@dataclass
class SyncReport:
    pushed: int = 0
    applied: int = 0
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # (id, code, message)
    conflicts: int = 0
    dead: int = 0
    replayed: int = 0
    pages: int = 0
    changes: int = 0
    reset: bool = False
    waiting_for_pin: int = 0
    stale: list[int] = field(default_factory=list)  # queued intents the new state contradicts
    notes: list[str] = field(default_factory=list)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Syncer:
    """Runs sync cycles for one device database against one server."""

    def __init__(
        self,
        store: Store,
        api: Api,
        *,
        backoff: Backoff | None = None,
        on_progress: Progress | None = None,
        pin: str | None = None,
        pull_limit: int = PULL_PAGE_LIMIT,
    ) -> None:
        assert 1 <= pull_limit <= 1000
        self.store = store
        self.api = api
        self.backoff = backoff or Backoff()
        self.on_progress = on_progress or (lambda phase, done, total: None)
        self.pin = pin  # held in memory for this sync only, never written
        self.pull_limit = pull_limit
        self.report = SyncReport()
        self._client_resets = 0
        self._resent_after_gap = False
        self._busy_rounds = 0
        token = store.get("access_token")
        if token is not None and api.access_token is None:
            api.access_token = token

    # -- the cycle ----------------------------------------------------------------------------

    def sync(self) -> SyncReport:
        self.report = SyncReport()
        self.store.set("last_sync_started_at", _now())
        self.push()
        self.pull()
        self.rebase()
        self.store.set("last_sync_finished_at", _now())
        return self.report

    @property
    def client_id(self) -> str:
        return self.store.client_id()

    @property
    def offset(self) -> int:
        return self.store.get_int("mutation_id_offset", 0)

    # -- push ---------------------------------------------------------------------------------

    def push(self) -> None:
        open_total = queue.counts(self.store.db)
        total = open_total["pending"] + open_total["sent"]
        done = 0
        self.on_progress("push", 0, total)
        for _ in range(PUSH_ROUNDS_MAX):
            batch = self._next_batch()
            if not batch:
                return
            progressed = self._push_batch(batch)
            done += progressed
            self.on_progress("push", min(done, total), total)
            if progressed == 0 and not self._resent_after_gap:
                return
        raise SyncFailed(f"The queue did not drain in {PUSH_ROUNDS_MAX} pushes; sync again.")

    def _next_batch(self) -> list[queue.Mutation]:
        """Open mutations, oldest first, up to (not including) the first that needs the PIN
        when this sync holds none."""
        batch: list[queue.Mutation] = []
        for mutation in queue.open_mutations(self.store.db, limit=PUSH_BATCH_MAX):
            if mutation.name in queue.NEEDS_PIN and self.pin is None:
                waiting = [
                    m
                    for m in queue.open_mutations(self.store.db)
                    if m.name in queue.NEEDS_PIN and m.mutation_id >= mutation.mutation_id
                ]
                self.report.waiting_for_pin = len(waiting)
                break
            batch.append(mutation)
        return batch

    def _wire(self, mutation: queue.Mutation) -> dict[str, Any]:
        args = dict(mutation.args)
        if mutation.name in queue.NEEDS_PIN:
            assert self.pin is not None
            args["pin"] = self.pin
        wire_id = mutation.mutation_id - self.offset
        assert wire_id >= 1, "wire mutation ids start at 1"
        return {"id": wire_id, "name": mutation.name, "args": args}

    def _push_batch(self, batch: list[queue.Mutation]) -> int:
        """Push one batch; returns how many mutations got an answer."""
        self._resent_after_gap = False
        ids = [m.mutation_id for m in batch]
        assert ids == list(range(ids[0], ids[0] + len(ids))), "a batch is contiguous"
        with self.store.write() as db:
            queue.mark_sent(db, ids)
        body = {
            "client_id": self.client_id,
            "schema_version": WIRE_SCHEMA_VERSION,
            "mutations": [self._wire(m) for m in batch],
        }
        try:
            answer = self._call(lambda: self.api.push(body))
        except ApiError as error:
            if error.code == "client_not_yours" and self._new_client_id(batch[0].mutation_id):
                self._resent_after_gap = True
                return 0
            with self.store.write() as db:
                queue.mark_error(db, ids, f"{error.code}: {error.message}")
            raise
        assert answer.get("client_id") == self.client_id, "the answer is for this client"
        answered = self._record_results(answer, batch)
        stopped = answer.get("stopped")
        if stopped:
            self._handle_stop(stopped, batch)
        return answered

    def _record_results(self, answer: dict[str, Any], batch: list[queue.Mutation]) -> int:
        by_id = {m.mutation_id: m for m in batch}
        offset = self.offset
        answered = 0
        with self.store.write() as db:
            for result in answer.get("results", [])[: len(batch)]:
                local_id = int(result["mutation_id"]) + offset
                if local_id not in by_id:
                    continue  # a replay of something this batch did not send
                status = RESULT_STATUS.get(str(result.get("status")))
                if status is None:
                    continue
                code = result.get("code")
                message = result.get("message")
                queue.mark_done(
                    db,
                    local_id,
                    status=status,
                    code=None if code is None else str(code),
                    reason=None if message is None else str(message),
                    result=result,
                    dead_letter_id=result.get("dead_letter_id"),
                )
                answered += 1
                self._count(status, local_id, result)
        return answered

    def _count(self, status: str, local_id: int, result: dict[str, Any]) -> None:
        self.report.pushed += 1
        if result.get("replayed"):
            self.report.replayed += 1
        if status == "applied":
            self.report.applied += 1
        elif status == "rejected":
            code, message = str(result.get("code")), str(result.get("message"))
            self.report.rejected.append((local_id, code, message))
        elif status == "conflict":
            self.report.conflicts += 1
        else:
            self.report.dead += 1

    def _handle_stop(self, stopped: dict[str, Any], batch: list[queue.Mutation]) -> None:
        code = str(stopped.get("code"))
        message = str(stopped.get("message", ""))
        offset = self.offset
        if code == "busy":
            # The unanswered ones stay `sent`; wait (backoff + jitter) and send them again.
            if self._busy_rounds + 1 >= self.backoff.attempts_max:
                raise SyncFailed(f"The server stayed busy: {message} Your changes are kept.")
            self.backoff.sleep(self.backoff.delay_s(self._busy_rounds))
            self._busy_rounds += 1
            self._resent_after_gap = True
            return
        if code == "mutation_gap":
            expected_local = int(stopped["expected_mutation_id"]) + offset
            first_sent = batch[0].mutation_id
            assert expected_local < first_sent, "a gap means the server is behind this batch"
            have = [queue.get(self.store.db, i) for i in range(expected_local, first_sent)]
            if all(m is not None for m in have) and expected_local > offset:
                # The server lost or never got these: send them again, from the expected id.
                with self.store.write() as db:
                    db.execute(
                        "UPDATE offline_queue SET status = 'pending' "
                        "WHERE mutation_id >= ? AND mutation_id < ?",
                        (expected_local, first_sent),
                    )
                self.report.notes.append(
                    f"The server expected mutation {expected_local - offset}: re-sent from there."
                )
                self._resent_after_gap = True
                return
            if self._new_client_id(first_sent):
                self._resent_after_gap = True
                return
            raise SyncFailed(
                f"The server is missing mutations this device no longer has: {message}"
            )
        if code == "mutation_id_reused":
            local_id = int(stopped["mutation_id"]) + offset
            with self.store.write() as db:
                queue.mark_done(
                    db,
                    local_id,
                    status="dead",
                    code=code,
                    reason=message or "The server processed another mutation under this id.",
                )
            self.report.dead += 1
            self._resent_after_gap = True
            return
        raise SyncFailed(f"The server stopped the push: {code}: {message}")

    def _new_client_id(self, first_open_local_id: int) -> bool:
        """Take a fresh client id; open mutations are renumbered from 1 (via the offset)."""
        if self._client_resets >= CLIENT_RESETS_MAX:
            return False
        self._client_resets += 1
        with self.store.write() as db:
            set_in(db, "client_id", str(uuid.uuid4()))
            set_in(db, "mutation_id_offset", first_open_local_id - 1)
            set_in(db, "confirmed_mutation_id", first_open_local_id - 1)
            db.execute("UPDATE offline_queue SET status = 'pending' WHERE status = 'sent'")
        self.report.notes.append(
            "The server said this device's client id is not yours: a new one was made."
        )
        return True

    # -- pull ---------------------------------------------------------------------------------

    def pull(self) -> None:
        for page in range(PULL_PAGES_MAX):
            params: dict[str, Any] = {
                "client_id": self.client_id,
                "schema_version": WIRE_SCHEMA_VERSION,
                "limit": self.pull_limit,
            }
            cursor = self.store.get("cursor")
            if cursor:
                params["cursor"] = cursor
            try:
                answer = self._call(functools.partial(self.api.pull, params))
            except ApiError as error:
                if error.code == "client_not_yours" and self._new_client_id(self._first_open()):
                    continue
                raise
            self._apply_page(answer, first_page=page == 0)
            self.report.pages += 1
            self.on_progress("pull", self.report.changes, None)
            if not answer.get("has_more"):
                return
        raise SyncFailed(f"More than {PULL_PAGES_MAX} pages to pull; sync again to continue.")

    def _first_open(self) -> int:
        found = queue.open_mutations(self.store.db, limit=1)
        return found[0].mutation_id if found else queue.next_mutation_id(self.store.db)

    def _apply_page(self, answer: dict[str, Any], *, first_page: bool) -> None:
        changes = answer.get("changes", [])
        assert isinstance(changes, list)
        cursor = answer.get("cursor")
        assert isinstance(cursor, str), "every page carries a cursor"
        with self.store.write() as db:
            if answer.get("reset"):
                # A fresh snapshot starts here: the old server-derived rows go, the queue stays.
                for table in SYNCED_TABLES:
                    db.execute(f"DELETE FROM {table}")  # noqa: S608 (a fixed table name)
                self.report.reset = True
            for change in changes:
                _apply_change(db, change)
            set_in(db, "cursor", cursor)
            confirmed = int(answer.get("last_mutation_id", 0)) + self.offset
            set_in(db, "confirmed_mutation_id", max(confirmed, self.offset))
            set_in(db, "last_pull_at", str(answer.get("server_time") or _now()))
        self.report.changes += len(changes)

    # -- rebase -------------------------------------------------------------------------------

    def rebase(self) -> None:
        me = self.store.get("user_id")
        if me is None:
            raise NotLoggedIn("Not logged in on this device: run `deni offline login`.")
        with self.store.write() as db:
            confirmed = int(_meta(db, "confirmed_mutation_id") or 0)
            pending = queue.unconfirmed(db, confirmed_mutation_id=confirmed)
            self.report.stale = local.rebase(db, me, pending)

    # -- status and dead letters --------------------------------------------------------------

    def remote_dead_letters(self, *, include_closed: bool = False) -> list[dict[str, Any]]:
        params = {"client_id": self.client_id, "state": "all" if include_closed else "open"}
        answer = self._call(lambda: self.api.dead_letters(params))
        letters = answer.get("dead_letters", [])
        assert isinstance(letters, list)
        return letters

    def retry_dead(self, local_id: int) -> queue.Mutation:
        """Retry a dead mutation. Parked on the server: ask the server to run it again (its own
        idempotency key is the dead letter's id). Dead only here: queue it again, new id."""
        mutation = queue.get(self.store.db, local_id)
        if mutation is None or mutation.status != "dead":
            raise OfflineError(f"Mutation {local_id} is not a dead letter on this device.")
        if mutation.dead_letter_id is None:
            return queue.enqueue(
                self.store,
                name=mutation.name,
                args=mutation.args,
                aggregate_id=mutation.aggregate_id,
            )
        body: dict[str, Any] = {}
        if mutation.name in queue.NEEDS_PIN:
            if self.pin is None:
                raise OfflineError(f"Retrying {mutation.name} needs your PIN.")
            body = {"name": mutation.name, "args": {**mutation.args, "pin": self.pin}}
        path = f"/sync/dead-letters/{mutation.dead_letter_id}/retry"
        answer = self._call(lambda: self.api.call("POST", path, json=body))
        result = answer.get("result") or {}
        status = RESULT_STATUS.get(str(result.get("status")), "dead")
        with self.store.write() as db:
            queue.mark_done(
                db,
                local_id,
                status=status,
                code=result.get("code"),
                reason=result.get("message"),
                result=result,
                dead_letter_id=None if status != "dead" else mutation.dead_letter_id,
            )
        found = queue.get(self.store.db, local_id)
        assert found is not None
        return found

    # -- proving the number (accounts made before numbers were proven) ------------------------

    def ask_phone_code(self) -> None:
        self._call(self.api.ask_phone_code)

    def confirm_phone(self, code: str) -> None:
        """The code from the SMS; the next pull brings the proven profile."""
        self._call(lambda: self.api.confirm_phone(code=code))

    # -- auth and retries ---------------------------------------------------------------------

    def _call(self, action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Retry transient failures with backoff; refresh the access token once on a 401."""
        try:
            return self.backoff.run(action)
        except ApiError as error:
            if error.code == "client_upgrade_required":
                raise UpgradeRequired(
                    "This deni offline is too old for the server (it speaks sync schema "
                    f"{WIRE_SCHEMA_VERSION}; the server needs at least "
                    f"{_error_field(error, 'min_client_schema_version')}). Upgrade Deni; your "
                    "queued changes are kept."
                ) from error
            if error.status != 401:
                raise
        self._refresh()
        return self.backoff.run(action)

    def _refresh(self) -> None:
        refresh_token = self.store.get("refresh_token")
        if refresh_token is None:
            raise NotLoggedIn("Your session ended: run `deni offline login` while online.")
        try:
            session = self.backoff.run(lambda: self.api.refresh(refresh_token=refresh_token))
        except ApiError as error:
            raise NotLoggedIn(
                f"Your session ended ({error.code}): run `deni offline login` while online."
            ) from error
        with self.store.write() as db:
            set_in(db, "access_token", session.access_token)
            set_in(db, "refresh_token", session.refresh_token)
        self.api.access_token = session.access_token


def _error_field(error: ApiError, name: str) -> str:
    inner = error.body.get("error")
    if isinstance(inner, dict) and name in inner:
        return str(inner[name])
    return "a newer one"


def _meta(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM sync_metadata WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


# -- applying pulled changes --------------------------------------------------------------------


def _apply_change(db: sqlite3.Connection, change: dict[str, Any]) -> None:
    entity = str(change["entity"])
    entity_id = str(change["id"])
    op = change["op"]
    table = ENTITY_TABLES.get(entity)
    if op == "delete":
        if table is not None:
            db.execute(f"DELETE FROM {table} WHERE id = ?", (entity_id,))  # noqa: S608
        elif entity == "wallet":
            db.execute("UPDATE users SET balance_cents = NULL WHERE id = ?", (entity_id,))
        else:
            db.execute("DELETE FROM records WHERE entity = ? AND id = ?", (entity, entity_id))
        return
    assert op == "put", op
    data = change["data"]
    assert isinstance(data, dict)
    put = _PUTS.get(entity)
    if put is None:
        db.execute(
            "INSERT INTO records (entity, id, data_json) VALUES (?, ?, ?) "
            "ON CONFLICT (entity, id) DO UPDATE SET data_json = excluded.data_json",
            (entity, entity_id, dumps(data)),
        )
        return
    put(db, entity_id, data)


def _put_user(db: sqlite3.Connection, entity_id: str, data: dict[str, Any]) -> None:
    db.execute(
        "INSERT INTO users (id, phone, name, language, server_version, data_json) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET phone = excluded.phone, "
        "name = excluded.name, language = excluded.language, "
        "server_version = excluded.server_version, data_json = excluded.data_json",
        (
            entity_id,
            str(data.get("phone", "")),
            str(data.get("name", "")),
            str(data.get("language", "en")),
            int(data.get("version", 0)),
            dumps(data),
        ),
    )


def _put_wallet(db: sqlite3.Connection, entity_id: str, data: dict[str, Any]) -> None:
    # The wallet may arrive before the user row in a snapshot: a placeholder row takes it.
    db.execute(
        "INSERT INTO users (id, phone, name, balance_cents) VALUES (?, '', '', ?) "
        "ON CONFLICT (id) DO UPDATE SET balance_cents = excluded.balance_cents",
        (entity_id, int(data["balance_cents"])),
    )


def _put_loan(db: sqlite3.Connection, entity_id: str, data: dict[str, Any]) -> None:
    db.execute(
        "INSERT INTO loans (id, code, borrower_id, lender_id, borrower_phone, lender_phone, "
        "state, principal_cents, fee_cents, owed_cents, due_date, requested_at, server_version, "
        "data_json, is_local) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0) "
        "ON CONFLICT (id) DO UPDATE SET code = excluded.code, "
        "borrower_id = excluded.borrower_id, lender_id = excluded.lender_id, "
        "borrower_phone = excluded.borrower_phone, lender_phone = excluded.lender_phone, "
        "state = excluded.state, principal_cents = excluded.principal_cents, "
        "fee_cents = excluded.fee_cents, owed_cents = excluded.owed_cents, "
        "due_date = excluded.due_date, requested_at = excluded.requested_at, "
        "server_version = excluded.server_version, data_json = excluded.data_json, is_local = 0",
        (
            entity_id,
            data.get("code"),
            data.get("borrower_id"),
            data.get("lender_id"),
            data.get("borrower_phone"),
            data.get("lender_phone"),
            str(data["state"]),
            int(data["principal_cents"]),
            int(data.get("fee_cents", 0)),
            int(data.get("owed_cents", 0)),
            data.get("due_date"),
            data.get("requested_at"),
            int(data.get("version", 0)),
            dumps(data),
        ),
    )


def _put_repayment(db: sqlite3.Connection, entity_id: str, data: dict[str, Any]) -> None:
    db.execute(
        "INSERT OR REPLACE INTO repayments (id, loan_id, amount_cents, created_at, data_json, "
        "is_local) VALUES (?, ?, ?, ?, ?, 0)",
        (
            entity_id,
            str(data["loan_id"]),
            int(data["amount_cents"]),
            data.get("created_at"),
            dumps(data),
        ),
    )


def _put_transaction(db: sqlite3.Connection, entity_id: str, data: dict[str, Any]) -> None:
    db.execute(
        "INSERT OR REPLACE INTO transactions (id, kind, amount_cents, balance_after_cents, "
        "loan_id, created_at, data_json, is_local) VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
        (
            entity_id,
            str(data.get("kind", "")),
            int(data["amount_cents"]),
            data.get("balance_after_cents"),
            data.get("loan_id"),
            data.get("created_at"),
            dumps(data),
        ),
    )


def _put_notification(db: sqlite3.Connection, entity_id: str, data: dict[str, Any]) -> None:
    db.execute(
        "INSERT OR REPLACE INTO notifications (id, kind, body, loan_id, created_at, read_at, "
        "data_json, local_read) VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
        (
            entity_id,
            str(data.get("kind", "")),
            str(data.get("body", "")),
            data.get("loan_id"),
            data.get("created_at"),
            data.get("read_at"),
            dumps(data),
        ),
    )


_PUTS: Final[dict[str, Callable[[sqlite3.Connection, str, dict[str, Any]], None]]] = {
    "user": _put_user,
    "wallet": _put_wallet,
    "loan": _put_loan,
    "repayment": _put_repayment,
    "transaction": _put_transaction,
    "notification": _put_notification,
}
