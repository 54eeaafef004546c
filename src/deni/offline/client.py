"""The offline client's commands: log in once online, then work from the local database.

Reads (loans, balance, queue) never touch the network. Intents (request, approve, decline,
cancel, repay, top-up, withdraw) are validated with the same domain rules the server uses,
applied optimistically and queued in one local transaction; `sync` sends them.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

from deni.domain.errors import DomainError
from deni.domain.loans import make_terms, resolve_due_date
from deni.domain.money import CENTS_PER_SHILLING, MOVEMENT_MAX_CENTS, require_cents
from deni.domain.phone import normalise_msisdn
from deni.domain.users import nairobi_today
from deni.offline import local, queue
from deni.offline.api import Api, ApiError, OfflineError
from deni.offline.store import Store

HOME_ENV: Final = "DENI_OFFLINE_HOME"
DEFAULT_HOME: Final = "~/.deni-offline"
CURRENT_FILE: Final = "current"
LOANS_SHOWN_MAX: Final = 500
LOAN_REF_CHARS_MIN: Final = 4


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
        client_id = self.store.get("client_id")
        if client_id is None:
            client_id = str(uuid.uuid4())
            self.store.set("client_id", client_id)
        return client_id

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
                    principal_cents=int(row["principal_cents"]),
                    owed_cents=local.effective_owed_cents(row),
                    due_date=row["due_date"],
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
        loan_id = self.find_loan(loan_ref)
        self._amount(amount_cents, maximum_cents=MOVEMENT_MAX_CENTS)
        args = {"loan_id": loan_id, "amount_cents": amount_cents}
        return self._queue("repay_loan", args, aggregate_id=loan_id)

    def top_up(self, *, amount_cents: int) -> queue.Mutation:
        self._amount(amount_cents, maximum_cents=MOVEMENT_MAX_CENTS, whole_shillings=True)
        return self._queue("top_up", {"amount_cents": amount_cents}, aggregate_id="wallet")

    def withdraw(self, *, amount_cents: int) -> queue.Mutation:
        self._amount(amount_cents, maximum_cents=MOVEMENT_MAX_CENTS, whole_shillings=True)
        available_cents = self.balance().available_cents
        if amount_cents > available_cents:
            raise Refused(
                "Your wallet will not hold that much once your pending changes land.",
                code="insufficient_funds",
            )
        return self._queue("withdraw", {"amount_cents": amount_cents}, aggregate_id="wallet")

    def mark_read(self, notification_ids: list[str]) -> queue.Mutation:
        assert 1 <= len(notification_ids) <= 100
        return self._queue(
            "mark_notification_read",
            {"notification_ids": notification_ids},
            aggregate_id="notifications",
        )

    def _amount(
        self, amount_cents: int, *, maximum_cents: int, whole_shillings: bool = False
    ) -> None:
        try:
            require_cents(amount_cents, minimum_cents=1, maximum_cents=maximum_cents)
        except DomainError as error:
            raise Refused(error.message, code=error.code) from error
        if whole_shillings and amount_cents % CENTS_PER_SHILLING:
            raise Refused("M-PESA moves whole shillings only.", code="invalid_amount")

    def _queue(self, name: str, args: dict[str, Any], *, aggregate_id: str) -> queue.Mutation:
        me = self.me_id

        def effect(db: sqlite3.Connection, mutation_id: int) -> None:
            try:
                local.apply(db, mutation_id, me, name, args)
            except local.LocalRefused as error:
                raise Refused(error.message, code=error.code) from error

        return queue.enqueue(
            self.store, name=name, args=args, aggregate_id=aggregate_id, effect=effect
        )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
