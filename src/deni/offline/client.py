"""The offline client's commands: log in once online, then work from the local database.

Reads (loans, balance, notifications, profile, conflicts, queue) never touch the network.
Intents (request, edit, approve, decline, cancel, repay, top-up, withdraw, mark read, profile,
resolve a conflict) are validated with the same domain rules the server uses, applied
optimistically and queued in one local transaction; `sync` sends them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

from deni.domain.errors import DomainError
from deni.domain.loans import make_terms, resolve_due_date
from deni.domain.money import CENTS_PER_SHILLING, MOVEMENT_CENTS_MAX, require_cents
from deni.domain.phone import normalise_msisdn
from deni.domain.security import require_new_pin
from deni.domain.users import nairobi_today, require_language, require_name
from deni.offline import local, queue
from deni.offline.api import Api, ApiError, OfflineError
from deni.offline.local import PREFERENCE_FIELDS
from deni.offline.store import Store

HOME_ENV: Final = "DENI_OFFLINE_HOME"
DEFAULT_HOME: Final = "~/.deni-offline"
CURRENT_FILE: Final = "current"
LOANS_SHOWN_MAX: Final = 500
NOTIFICATIONS_SHOWN_MAX: Final = 500
CONFLICTS_SHOWN_MAX: Final = 100
LOAN_REF_CHARS_MIN: Final = 4
REF_CHARS_MIN: Final = 4  # an id prefix must be at least this long
IDS_PER_MUTATION_MAX: Final = 100  # notification ids in one mark_notification_read (sync.md)
CHOICES: Final = ("server", "client")


class NotLoggedIn(OfflineError):
    pass


class Refused(OfflineError):
    """An intent refused on the device, before anything was queued."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


def home_dir(home: str | Path | None = None) -> Path:
    chosen = home or os.environ.get(HOME_ENV) or DEFAULT_HOME
    return Path(chosen).expanduser()


def database_path(home: Path, phone: str) -> Path:
    return home / f"{normalise_msisdn(phone)}.sqlite3"


def open_store(home: Path, phone: str | None = None) -> Store:
    """The database of `phone`, or of whoever logged in last on this device."""
    if phone is None:
        current = home / CURRENT_FILE
        if not current.exists():
            raise NotLoggedIn("Nobody has logged in on this device: run `deni offline login`.")
        phone = current.read_text().strip()
    return Store(database_path(home, phone))


@dataclass(frozen=True, slots=True)
class LoanLine:
    id: str
    code: str | None
    role: str  # borrower | lender
    counterpart: str
    state: str  # what the user will see once pending intents land (optimistic)
    server_state: str | None  # None: the server has not seen this loan yet
    principal_cents: int
    owed_cents: int
    due_date: str | None
    pending: bool


@dataclass(frozen=True, slots=True)
class NotificationLine:
    id: str
    kind: str
    body: str
    loan_id: str | None
    created_at: str | None
    read: bool  # read on the server, or marked read here (client wins)
    read_pending: bool  # marked read here, not yet synced


@dataclass(frozen=True, slots=True)
class Preferences:
    """M-PESA preferences, with queued changes applied; `server` is what the last pull said."""

    disburse_to_mpesa: bool  # a loan I borrow is paid out to my M-PESA (else kept in the wallet)
    auto_payout: bool  # repayments I receive as a lender go on to my M-PESA
    server: tuple[bool, bool]

    @property
    def pending(self) -> bool:
        return (self.disburse_to_mpesa, self.auto_payout) != self.server


@dataclass(frozen=True, slots=True)
class Profile:
    phone: str
    name: str  # with a queued change applied (the server decides per field, last writer wins)
    language: str
    server_name: str
    server_language: str
    version: int  # the server's profile version this device last saw (update_profile's base)
    # False: made before numbers were proven; no lending or borrowing until proven
    # (`deni offline prove-phone`). Unknown (an older server) counts as proven.
    phone_proven: bool = True

    @property
    def pending(self) -> bool:
        return (self.name, self.language) != (self.server_name, self.server_language)


@dataclass(frozen=True, slots=True)
class ConflictView:
    """An open manual conflict as pulled: what is disputed and both versions, side by side."""

    id: str
    entity: str
    entity_id: str
    label: str  # the loan's code when the device knows it, else the entity id
    server_version: dict[str, Any]
    client_version: dict[str, Any]
    created_at: str | None
    resolving: str | None  # "server"/"client" once a choice is queued here, else None


@dataclass(frozen=True, slots=True)
class Balance:
    server_cents: int
    pending_outgoing_cents: int
    pending_incoming_cents: int
    as_of: str | None  # when the server balance was pulled

    @property
    def available_cents(self) -> int:
        return self.server_cents - self.pending_outgoing_cents


class OfflineClient:
    """Commands over one local database."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- identity -----------------------------------------------------------------------------

    @property
    def me_id(self) -> str:
        user_id = self.store.get("user_id")
        if user_id is None:
            raise NotLoggedIn("Not logged in on this device: run `deni offline login`.")
        return user_id

    @property
    def client_id(self) -> str:
        return self.store.client_id()

    def login(self, *, url: str, phone: str, pin: str, api: Api | None = None) -> str:
        """Online once: exchange phone and PIN for tokens. The PIN is not kept."""
        msisdn = normalise_msisdn(phone)
        own = api is None
        api = api or Api(url)
        try:
            session = api.login(phone=msisdn, pin=pin)
        finally:
            if own:
                api.close()
        known_user = self.store.get("user_id")
        if known_user is not None and known_user != session.user_id:
            raise ApiError(
                "This device database belongs to another user.", status=409, code="wrong_user"
            )
        with self.store.write() as db:
            from deni.offline.store import set_in

            set_in(db, "server_url", url.rstrip("/"))
            set_in(db, "user_id", session.user_id)
            set_in(db, "phone", msisdn)
            set_in(db, "access_token", session.access_token)
            set_in(db, "refresh_token", session.refresh_token)
            set_in(db, "logged_in_at", _now())
        _ = self.client_id
        return session.user_id

    def register(
        self,
        *,
        url: str,
        phone: str,
        code: str,
        name: str,
        pin: str,
        language: str,
        api: Api,
    ) -> str:
        """Online: open an account with the code Deni sent the number by SMS, then log in as
        `login` does. The PIN is not kept. A weak PIN (domain/security.py) is refused here,
        before anything is sent, as the server would refuse it (`weak_pin`)."""
        msisdn = normalise_msisdn(phone)
        require_new_pin(pin)
        api.register(phone=msisdn, code=code, name=name, pin=pin, language=language)
        return self.login(url=url, phone=msisdn, pin=pin, api=api)

    # -- reads --------------------------------------------------------------------------------

    def loans(self, *, role: str = "any") -> list[LoanLine]:
        me = self.me_id
        assert role in ("any", "borrower", "lender")
        rows = self.store.db.execute(
            "SELECT * FROM loans ORDER BY coalesce(requested_at, '') DESC, id DESC LIMIT ?",
            (LOANS_SHOWN_MAX,),
        ).fetchall()
        lines: list[LoanLine] = []
        for row in rows:
            mine_as = "borrower" if row["borrower_id"] == me else "lender"
            if role != "any" and role != mine_as:
                continue
            counterpart = (
                row["lender_phone"] if mine_as == "borrower" else row["borrower_phone"]
            ) or "?"
            lines.append(
                LoanLine(
                    id=str(row["id"]),
                    code=row["code"],
                    role=mine_as,
                    counterpart=str(counterpart),
                    state=local.effective_state(row),
                    server_state=None if row["is_local"] else str(row["state"]),
                    principal_cents=local.effective_principal_cents(row),
                    owed_cents=local.effective_owed_cents(row),
                    due_date=local.effective_due_date(row),
                    pending=row["pending_mutation_id"] is not None,
                )
            )
        return lines

    def balance(self) -> Balance:
        me = self.me_id
        row = self.store.db.execute(
            "SELECT balance_cents FROM users WHERE id = ?", (me,)
        ).fetchone()
        server_cents = 0 if row is None or row[0] is None else int(row[0])
        unconfirmed = queue.unconfirmed(self.store.db, confirmed_mutation_id=self.confirmed_id)
        outgoing_cents = local.pending_outgoing_cents(self.store.db, unconfirmed, me)
        incoming_cents = sum(
            int(m.args.get("amount_cents", 0)) for m in unconfirmed if m.name == "top_up"
        )
        return Balance(
            server_cents=server_cents,
            pending_outgoing_cents=outgoing_cents,
            pending_incoming_cents=incoming_cents,
            as_of=self.store.get("last_pull_at"),
        )

    @property
    def confirmed_id(self) -> int:
        """The last mutation id whose effect the pulled server state includes."""
        return self.store.get_int("confirmed_mutation_id", 0)

    def find_loan(self, ref: str) -> str:
        """A loan by id, code, or a unique id prefix (at least 4 characters)."""
        ref = ref.strip()
        db = self.store.db
        row = db.execute("SELECT id FROM loans WHERE id = ? OR code = ?", (ref, ref)).fetchone()
        if row is not None:
            return str(row[0])
        if len(ref) >= LOAN_REF_CHARS_MIN:
            rows = db.execute(
                "SELECT id FROM loans WHERE id LIKE ? ESCAPE '\\' LIMIT 2",
                (ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",),
            ).fetchall()
            if len(rows) == 1:
                return str(rows[0][0])
            if len(rows) > 1:
                raise Refused(f"{ref!r} matches several loans: give more of it.", code="ambiguous")
        raise Refused(f"No loan {ref!r} on this device (sync to see new ones).", code="not_found")

    def notifications(self, *, unread_only: bool = False) -> list[NotificationLine]:
        """Newest first."""
        where = "WHERE read_at IS NULL AND local_read = 0 " if unread_only else ""
        rows = self.store.db.execute(
            f"SELECT * FROM notifications {where}"  # noqa: S608 (a fixed clause)
            "ORDER BY coalesce(created_at, '') DESC, id DESC LIMIT ?",
            (NOTIFICATIONS_SHOWN_MAX,),
        ).fetchall()
        return [
            NotificationLine(
                id=str(row["id"]),
                kind=str(row["kind"]),
                body=str(row["body"]),
                loan_id=row["loan_id"],
                created_at=row["created_at"],
                read=row["read_at"] is not None or bool(row["local_read"]),
                read_pending=row["read_at"] is None and bool(row["local_read"]),
            )
            for row in rows
        ]

    def profile(self) -> Profile:
        me = self.me_id
        row = self.store.db.execute("SELECT * FROM users WHERE id = ?", (me,)).fetchone()
        if row is None or not row["phone"]:
            raise Refused(
                "Your profile has not been pulled yet: run `deni offline sync`.",
                code="not_synced",
            )
        return Profile(
            phone=str(row["phone"]),
            name=str(row["local_name"] or row["name"]),
            language=str(row["local_language"] or row["language"]),
            server_name=str(row["name"]),
            server_language=str(row["language"]),
            version=int(row["server_version"]),
            phone_proven=bool(json.loads(row["data_json"] or "{}").get("phone_proven", True)),
        )

    def conflicts(self) -> list[ConflictView]:
        """Open manual conflicts, oldest first (pulled; resolved ones are tombstoned)."""
        rows = self.store.db.execute(
            "SELECT id, data_json, pending_mutation_id FROM records WHERE entity = 'conflict' "
            "ORDER BY id LIMIT ?",
            (CONFLICTS_SHOWN_MAX,),
        ).fetchall()
        views: list[ConflictView] = []
        for row in rows:
            data = json.loads(row["data_json"])
            entity, entity_id = str(data.get("entity", "?")), str(data.get("entity_id", "?"))
            label = entity_id
            if entity == "loan":
                loan = self.store.db.execute(
                    "SELECT code FROM loans WHERE id = ?", (entity_id,)
                ).fetchone()
                label = str(loan[0]) if loan is not None and loan[0] else entity_id
            resolving = None
            if row["pending_mutation_id"] is not None:
                mutation = queue.get(self.store.db, int(row["pending_mutation_id"]))
                resolving = None if mutation is None else str(mutation.args.get("choice"))
            views.append(
                ConflictView(
                    id=str(row["id"]),
                    entity=entity,
                    entity_id=entity_id,
                    label=label,
                    server_version=dict(data.get("server_version") or {}),
                    client_version=dict(data.get("client_version") or {}),
                    created_at=data.get("created_at"),
                    resolving=resolving,
                )
            )
        return views

    def find_notification(self, ref: str) -> str:
        return _find(self.store.db, "notifications", "", ref, what="notification")

    def find_conflict(self, ref: str) -> str:
        return _find(self.store.db, "records", "entity = 'conflict' AND ", ref, what="conflict")

    # -- intents (queued) ---------------------------------------------------------------------

    def request_loan(
        self,
        *,
        lender_phone: str,
        principal_cents: int,
        fee_cents: int = 0,
        penalty_daily_cents: int = 0,
        term_days: int | None = None,
        due_date: date | None = None,
        today: date | None = None,
    ) -> queue.Mutation:
        try:
            lender = normalise_msisdn(lender_phone)
            day = today or nairobi_today(datetime.now(UTC))
            resolved = resolve_due_date(due_date=due_date, term_days=term_days, today=day)
            make_terms(
                principal_cents=principal_cents,
                fee_cents=fee_cents,
                penalty_daily_cents=penalty_daily_cents,
                due_date=resolved,
            )
        except DomainError as error:
            raise Refused(error.message, code=error.code) from error
        if lender == self.store.get("phone"):
            raise Refused("You cannot lend to yourself.", code="self_lending")
        args: dict[str, Any] = {
            "loan_id": str(uuid.uuid4()),
            "lender_phone": lender,
            "principal_cents": principal_cents,
            "fee_cents": fee_cents,
            "penalty_daily_cents": penalty_daily_cents,
        }
        if due_date is not None:
            args["due_date"] = due_date.isoformat()
        else:
            args["term_days"] = term_days
        return self._queue("request_loan", args, aggregate_id=str(args["loan_id"]))

    def approve(self, loan_ref: str) -> queue.Mutation:
        """Queued without the PIN: the PIN is asked at sync time and never stored."""
        loan_id = self.find_loan(loan_ref)
        args: dict[str, Any] = {"loan_id": loan_id}
        row = self.store.db.execute(
            "SELECT server_version, is_local FROM loans WHERE id = ?", (loan_id,)
        ).fetchone()
        if row is not None and not row["is_local"] and int(row["server_version"]) > 0:
            # The version the lender saw: if the terms change before this lands, it is refused.
            args["base_version"] = int(row["server_version"])
        return self._queue("approve_loan", args, aggregate_id=loan_id)

    def decline(self, loan_ref: str) -> queue.Mutation:
        loan_id = self.find_loan(loan_ref)
        return self._queue("decline_loan", {"loan_id": loan_id}, aggregate_id=loan_id)

    def cancel(self, loan_ref: str) -> queue.Mutation:
        loan_id = self.find_loan(loan_ref)
        return self._queue("cancel_loan", {"loan_id": loan_id}, aggregate_id=loan_id)

    def repay(self, loan_ref: str, *, amount_cents: int) -> queue.Mutation:
        """Queued without the PIN: the PIN is asked at sync time and never stored."""
        loan_id = self.find_loan(loan_ref)
        self._amount(amount_cents, amount_cents_max=MOVEMENT_CENTS_MAX)
        args = {"loan_id": loan_id, "amount_cents": amount_cents}
        return self._queue("repay_loan", args, aggregate_id=loan_id)

    def top_up(self, *, amount_cents: int) -> queue.Mutation:
        self._amount(amount_cents, amount_cents_max=MOVEMENT_CENTS_MAX, whole_shillings=True)
        return self._queue("top_up", {"amount_cents": amount_cents}, aggregate_id="wallet")

    def withdraw(self, *, amount_cents: int) -> queue.Mutation:
        """Queued without the PIN: the PIN is asked at sync time and never stored."""
        self._amount(amount_cents, amount_cents_max=MOVEMENT_CENTS_MAX, whole_shillings=True)
        available_cents = self.balance().available_cents
        if amount_cents > available_cents:
            raise Refused(
                "Your wallet will not hold that much once your pending changes land.",
                code="insufficient_funds",
            )
        return self._queue("withdraw", {"amount_cents": amount_cents}, aggregate_id="wallet")

    def mark_read(self, refs: list[str]) -> list[queue.Mutation]:
        """Mark notifications read (ids or unique id prefixes). Client wins: applied here at
        once and always by the server. Unknown ids refuse the whole command; ones already
        read are skipped; nothing to mark queues nothing (an empty list)."""
        if not refs:
            raise Refused("Give notification ids, or --all.", code="nothing_to_mark")
        ids = list(dict.fromkeys(self.find_notification(ref) for ref in refs))
        return self._mark_read(self._unread(ids))

    def mark_all_read(self) -> list[queue.Mutation]:
        rows = self.store.db.execute(
            "SELECT id FROM notifications WHERE read_at IS NULL AND local_read = 0 "
            "ORDER BY coalesce(created_at, ''), id"
        ).fetchall()
        return self._mark_read([str(row[0]) for row in rows])

    def _unread(self, ids: list[str]) -> list[str]:
        unread: list[str] = []
        for notification_id in ids:
            row = self.store.db.execute(
                "SELECT read_at, local_read FROM notifications WHERE id = ?", (notification_id,)
            ).fetchone()
            if row is not None and row["read_at"] is None and not row["local_read"]:
                unread.append(notification_id)
        return unread

    def _mark_read(self, ids: list[str]) -> list[queue.Mutation]:
        """One mutation per IDS_PER_MUTATION_MAX ids, all queued in one local transaction."""
        chunks = [
            ids[i : i + IDS_PER_MUTATION_MAX] for i in range(0, len(ids), IDS_PER_MUTATION_MAX)
        ]
        if not chunks:
            return []
        return self._queue_all(
            [
                ("mark_notification_read", {"notification_ids": chunk}, "notifications")
                for chunk in chunks
            ]
        )

    def update_profile(
        self, *, name: str | None = None, language: str | None = None
    ) -> queue.Mutation:
        """Change your name and/or language. The server keeps, per field, the value that
        reaches it last (its version order, never device clocks); shown here at once."""
        if name is None and language is None:
            raise Refused("Give --name and/or --language.", code="nothing_to_change")
        args: dict[str, Any] = {"base_version": self.profile().version}
        try:
            if name is not None:
                args["name"] = require_name(name)
            if language is not None:
                args["language"] = require_language(language)
        except DomainError as error:
            raise Refused(error.message, code=error.code) from error
        return self._queue("update_profile", args, aggregate_id="profile")

    def preferences(self) -> Preferences:
        row = self.store.db.execute(
            "SELECT data_json FROM records WHERE entity = 'preferences' AND id = ?", (self.me_id,)
        ).fetchone()
        if row is None:
            raise Refused(
                "Your preferences have not been pulled yet: run `deni offline sync`.",
                code="not_synced",
            )
        data = json.loads(row["data_json"])
        server = (bool(data["disburse_to_mpesa"]), bool(data["auto_payout"]))
        wanted = dict(zip(PREFERENCE_FIELDS, server, strict=True))
        for mutation in queue.open_mutations(self.store.db):
            if mutation.name == "set_preferences":
                wanted.update({k: v for k, v in mutation.args.items() if k in wanted})
        return Preferences(wanted["disburse_to_mpesa"], wanted["auto_payout"], server)

    def set_preferences(
        self, *, disburse_to_mpesa: bool | None = None, auto_payout: bool | None = None
    ) -> queue.Mutation:
        """Choose where money goes: a loan's payout to M-PESA or the wallet, and whether a
        lender's repayments go on to M-PESA. Queued (without the PIN, which is asked at sync
        time and never stored); shown here at once; the last to reach the server wins."""
        args = {
            name: value
            for name, value in zip(PREFERENCE_FIELDS, (disburse_to_mpesa, auto_payout), strict=True)
            if value is not None
        }
        if not args:
            raise Refused("Choose at least one preference to change.", code="nothing_to_change")
        return self._queue("set_preferences", args, aggregate_id="preferences")

    def edit_request(
        self,
        loan_ref: str,
        *,
        principal_cents: int | None = None,
        fee_cents: int | None = None,
        penalty_daily_cents: int | None = None,
        term_days: int | None = None,
        due_date: date | None = None,
        today: date | None = None,
    ) -> queue.Mutation:
        """Borrower: change the terms of a request the lender has not answered. Another edit
        that reached the server first (another device) makes this a manual conflict."""
        loan_id = self.find_loan(loan_ref)
        row = self.store.db.execute("SELECT * FROM loans WHERE id = ?", (loan_id,)).fetchone()
        assert row is not None
        if row["is_local"]:
            raise Refused(
                "The server has not seen this request yet: sync first, then edit it.",
                code="not_synced",
            )
        waiting = [
            m
            for m in queue.unconfirmed(self.store.db, confirmed_mutation_id=self.confirmed_id)
            if m.aggregate_id == loan_id and m.name in ("edit_loan_request", "resolve_conflict")
        ]
        if waiting:
            raise Refused(
                f"A change of this request (#{waiting[0].mutation_id}) waits to sync: sync "
                "first, then edit again.",
                code="edit_pending",
            )
        data = json.loads(row["data_json"] or "{}")
        args: dict[str, Any] = {"loan_id": loan_id, "base_version": int(row["server_version"])}
        given = {
            "principal_cents": principal_cents,
            "fee_cents": fee_cents,
            "penalty_daily_cents": penalty_daily_cents,
        }
        args |= {key: value for key, value in given.items() if value is not None}
        try:
            if due_date is None and term_days is None:
                resolved = _date(row["due_date"])
            else:
                day = today or nairobi_today(datetime.now(UTC))
                resolved = resolve_due_date(due_date=due_date, term_days=term_days, today=day)
            make_terms(
                principal_cents=args.get("principal_cents", row["principal_cents"]),
                fee_cents=args.get("fee_cents", row["fee_cents"]),
                penalty_daily_cents=args.get(
                    "penalty_daily_cents", int(data.get("penalty_daily_cents", 0))
                ),
                due_date=resolved,
            )
        except DomainError as error:
            raise Refused(error.message, code=error.code) from error
        if due_date is not None:
            args["due_date"] = due_date.isoformat()
        elif term_days is not None:
            args["term_days"] = term_days
        if len(args) == 2:
            raise Refused(
                "Give at least one new term (--amount, --fee, --penalty, --days or --due).",
                code="nothing_to_change",
            )
        return self._queue("edit_loan_request", args, aggregate_id=loan_id)

    def resolve_conflict(self, conflict_ref: str, *, keep: str) -> queue.Mutation:
        """Choose a version for a manual conflict: queued (works offline), resolved here at
        once; the server's answer arrives with a later pull."""
        if keep not in CHOICES:
            raise Refused("Keep 'server' or 'client'.", code="invalid_choice")
        conflict_id = self.find_conflict(conflict_ref)
        row = self.store.db.execute(
            "SELECT data_json FROM records WHERE entity = 'conflict' AND id = ?", (conflict_id,)
        ).fetchone()
        assert row is not None
        entity_id = json.loads(row[0]).get("entity_id")
        args = {"conflict_id": conflict_id, "choice": keep}
        return self._queue("resolve_conflict", args, aggregate_id=str(entity_id or conflict_id))

    def _amount(
        self, amount_cents: int, *, amount_cents_max: int, whole_shillings: bool = False
    ) -> None:
        try:
            require_cents(amount_cents, amount_cents_min=1, amount_cents_max=amount_cents_max)
        except DomainError as error:
            raise Refused(error.message, code=error.code) from error
        if whole_shillings and amount_cents % CENTS_PER_SHILLING:
            raise Refused("M-PESA moves whole shillings only.", code="invalid_amount")

    def _queue(self, name: str, args: dict[str, Any], *, aggregate_id: str) -> queue.Mutation:
        [mutation] = self._queue_all([(name, args, aggregate_id)])
        return mutation

    def _queue_all(self, intents: list[tuple[str, dict[str, Any], str]]) -> list[queue.Mutation]:
        """Queue intents with their local effects, all in one local transaction."""
        me = self.me_id

        def effect_of(name: str, args: dict[str, Any]) -> queue.LocalEffect:
            def effect(db: sqlite3.Connection, mutation_id: int) -> None:
                try:
                    local.apply(db, mutation_id, me, name, args)
                except local.LocalRefused as error:
                    raise Refused(error.message, code=error.code) from error

            return effect

        return queue.enqueue_all(
            self.store,
            [
                queue.Intent(name, args, aggregate_id, effect_of(name, args))
                for name, args, aggregate_id in intents
            ],
        )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _date(value: object) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise Refused("This loan has no due date here: sync first.", code="not_synced") from None


def _find(db: sqlite3.Connection, table: str, where: str, ref: str, *, what: str) -> str:
    """An id in `table` (restricted by `where`), given whole or as a unique prefix."""
    ref = ref.strip()
    sql = f"SELECT id FROM {table} WHERE {where}"  # noqa: S608 (fixed names and clauses)
    row = db.execute(sql + "id = ?", (ref,)).fetchone()
    if row is not None:
        return str(row[0])
    if len(ref) >= REF_CHARS_MIN:
        pattern = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = db.execute(sql + "id LIKE ? ESCAPE '\\' LIMIT 2", (pattern,)).fetchall()
        if len(rows) == 1:
            return str(rows[0][0])
        if len(rows) > 1:
            raise Refused(f"{ref!r} matches several {what}s: give more of it.", code="ambiguous")
    raise Refused(
        f"No {what} {ref!r} on this device (sync to see new ones).", code=f"{what}_not_found"
    )
