"""The optimistic view: server state (as last pulled) plus the mutations it does not show yet.

Server rows are never edited by a local intent. An intent writes an *overlay*: `local_state`,
`local_owed_cents` and the `local_*` terms on a loan, `local_name` and `local_language` on the
user, `local_read` on a notification, `pending_mutation_id` on a conflict record, or a row
flagged `is_local` (a requested loan, a repayment, a withdrawal) carrying the id of the
mutation that made it. `rebase` throws the overlay away and replays every unconfirmed mutation
on top of the fresh server state (Replicache's "rewind and replay"), in one local transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from deni.domain.users import nairobi_today
from deni.offline.queue import Mutation

# Loan states in which each intent makes sense (the server's state machine decides for real).
APPROVABLE: Final = frozenset({"requested"})
DECLINABLE: Final = frozenset({"requested"})
CANCELLABLE: Final = frozenset({"requested", "approved"})
REPAYABLE: Final = frozenset({"active"})


class LocalRefused(Exception):
    """An intent that cannot make sense even offline (not your loan, nothing owed, ...)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _loan(db: sqlite3.Connection, loan_id: str) -> sqlite3.Row:
    row = db.execute("SELECT * FROM loans WHERE id = ?", (loan_id,)).fetchone()
    if row is None:
        raise LocalRefused("No such loan on this device.", code="loan_not_found")
    assert isinstance(row, sqlite3.Row)
    return row


def effective_state(row: sqlite3.Row) -> str:
    return str(row["local_state"] or row["state"])


def effective_owed_cents(row: sqlite3.Row) -> int:
    owed = row["local_owed_cents"]
    return int(row["owed_cents"] if owed is None else owed)


def effective_principal_cents(row: sqlite3.Row) -> int:
    principal = row["local_principal_cents"]
    return int(row["principal_cents"] if principal is None else principal)


def effective_fee_cents(row: sqlite3.Row) -> int:
    fee = row["local_fee_cents"]
    return int(row["fee_cents"] if fee is None else fee)


def effective_due_date(row: sqlite3.Row) -> str | None:
    due = row["local_due_date"] or row["due_date"]
    return None if due is None else str(due)


Effect = Callable[[sqlite3.Connection, int, str, dict[str, Any]], None]


def _moves_to(target: str, *, role: str, allowed: frozenset[str]) -> Effect:
    """The local effect of a loan state change `role` may make from the `allowed` states."""

    def apply(db: sqlite3.Connection, mutation_id: int, me_id: str, args: dict[str, Any]) -> None:
        loan_id = str(args["loan_id"])
        row = _loan(db, loan_id)
        if row[f"{role}_id"] != me_id:
            raise LocalRefused(f"Only the {role} can do that.", code=f"not_the_{role}")
        state = effective_state(row)
        if state not in allowed:
            raise LocalRefused(
                f"A loan that is {state} cannot become {target}.", code="invalid_state"
            )
        db.execute(
            "UPDATE loans SET local_state = ?, pending_mutation_id = ? WHERE id = ?",
            (target, mutation_id, loan_id),
        )

    return apply


def _request(db: sqlite3.Connection, mutation_id: int, me_id: str, args: dict[str, Any]) -> None:
    principal_cents = int(args["principal_cents"])
    fee_cents = int(args.get("fee_cents", 0))
    exists = db.execute("SELECT 1 FROM loans WHERE id = ?", (args["loan_id"],)).fetchone()
    if exists is not None:
        raise LocalRefused("That loan id is already used.", code="duplicate_id")
    db.execute(
        "INSERT INTO loans (id, borrower_id, lender_phone, state, principal_cents, fee_cents, "
        "owed_cents, due_date, requested_at, is_local, pending_mutation_id) "
        "VALUES (?, ?, ?, 'requested', ?, ?, ?, ?, ?, 1, ?)",
        (
            args["loan_id"],
            me_id,
            args["lender_phone"],
            principal_cents,
            fee_cents,
            principal_cents + fee_cents,
            args.get("due_date"),
            datetime.now(UTC).isoformat(timespec="seconds"),
            mutation_id,
        ),
    )


def _repay(db: sqlite3.Connection, mutation_id: int, me_id: str, args: dict[str, Any]) -> None:
    row = _loan(db, str(args["loan_id"]))
    if row["borrower_id"] != me_id:
        raise LocalRefused("Only the borrower repays a loan.", code="not_the_borrower")
    state = effective_state(row)
    if state not in REPAYABLE:
        raise LocalRefused(f"A loan that is {state} takes no repayment.", code="invalid_state")
    amount_cents = int(args["amount_cents"])
    owed_cents = effective_owed_cents(row)
    left_cents = max(owed_cents - amount_cents, 0)
    db.execute(
        "UPDATE loans SET local_owed_cents = ?, local_state = ?, pending_mutation_id = ? "
        "WHERE id = ?",
        (left_cents, "repaid" if left_cents == 0 else None, mutation_id, row["id"]),
    )
    db.execute(
        "INSERT INTO repayments (id, loan_id, amount_cents, created_at, is_local, "
        "pending_mutation_id) VALUES (?, ?, ?, ?, 1, ?)",
        (
            f"local-{mutation_id}",
            row["id"],
            min(amount_cents, owed_cents),
            datetime.now(UTC).isoformat(timespec="seconds"),
            mutation_id,
        ),
    )


def _money(kind: str, sign: int) -> Effect:
    def apply(db: sqlite3.Connection, mutation_id: int, me_id: str, args: dict[str, Any]) -> None:
        db.execute(
            "INSERT INTO transactions (id, kind, amount_cents, created_at, is_local, "
            "pending_mutation_id) VALUES (?, ?, ?, ?, 1, ?)",
            (
                f"local-{mutation_id}",
                kind,
                sign * int(args["amount_cents"]),
                datetime.now(UTC).isoformat(timespec="seconds"),
                mutation_id,
            ),
        )

    return apply


def _mark_read(db: sqlite3.Connection, mutation_id: int, me_id: str, args: dict[str, Any]) -> None:
    ids = [str(i) for i in args.get("notification_ids", [])]
    for notification_id in ids[:100]:
        db.execute("UPDATE notifications SET local_read = 1 WHERE id = ?", (notification_id,))


def _profile(db: sqlite3.Connection, mutation_id: int, me_id: str, args: dict[str, Any]) -> None:
    # An overlay: the pulled name and language stay as the server sent them until it answers.
    for column in ("name", "language"):
        if column in args:
            db.execute(
                f"UPDATE users SET local_{column} = ? WHERE id = ?",  # noqa: S608 (fixed names)
                (str(args[column]), me_id),
            )


def _edit(db: sqlite3.Connection, mutation_id: int, me_id: str, args: dict[str, Any]) -> None:
    row = _loan(db, str(args["loan_id"]))
    if row["borrower_id"] != me_id:
        raise LocalRefused("Only the borrower can edit a request.", code="not_the_borrower")
    state = effective_state(row)
    if state != "requested":
        raise LocalRefused(f"A loan that is {state} cannot be edited.", code="invalid_state")
    due = args.get("due_date")
    if due is None and args.get("term_days") is not None:
        today = nairobi_today(datetime.now(UTC))
        due = (today + timedelta(days=int(args["term_days"]))).isoformat()
    _overlay_terms(
        db,
        row,
        mutation_id,
        principal_cents=args.get("principal_cents"),
        fee_cents=args.get("fee_cents"),
        due_date=due,
    )


def _overlay_terms(
    db: sqlite3.Connection,
    row: sqlite3.Row,
    mutation_id: int,
    *,
    principal_cents: int | None,
    fee_cents: int | None,
    due_date: str | None,
) -> None:
    principal = effective_principal_cents(row) if principal_cents is None else int(principal_cents)
    fee = effective_fee_cents(row) if fee_cents is None else int(fee_cents)
    db.execute(
        "UPDATE loans SET local_principal_cents = ?, local_fee_cents = ?, local_owed_cents = ?, "
        "local_due_date = coalesce(?, local_due_date), pending_mutation_id = ? WHERE id = ?",
        (principal, fee, principal + fee, due_date, mutation_id, row["id"]),
    )


def _conflict(db: sqlite3.Connection, conflict_id: str) -> sqlite3.Row:
    row = db.execute(
        "SELECT * FROM records WHERE entity = 'conflict' AND id = ?", (conflict_id,)
    ).fetchone()
    if row is None:
        raise LocalRefused(
            "No such open conflict on this device (sync to see new ones).",
            code="conflict_not_found",
        )
    assert isinstance(row, sqlite3.Row)
    return row


def _resolve(db: sqlite3.Connection, mutation_id: int, me_id: str, args: dict[str, Any]) -> None:
    row = _conflict(db, str(args["conflict_id"]))
    if row["pending_mutation_id"] is not None:
        raise LocalRefused(
            f"You already chose for this conflict (#{row['pending_mutation_id']}, waiting to "
            "sync).",
            code="conflict_resolved",
        )
    choice = args["choice"]
    if choice not in ("server", "client"):
        raise LocalRefused("Keep 'server' or 'client'.", code="invalid_choice")
    data = json.loads(row["data_json"])
    if choice == "client" and data.get("entity") == "loan":
        # The server applies this device's version only to a request still open: so here.
        loan = _loan(db, str(data.get("entity_id")))
        state = effective_state(loan)
        if state != "requested":
            raise LocalRefused(
                f"The loan is {state} now: only its current terms can be kept.",
                code="invalid_state",
            )
        wanted = data.get("client_version") or {}
        _overlay_terms(
            db,
            loan,
            mutation_id,
            principal_cents=wanted.get("principal_cents"),
            fee_cents=wanted.get("fee_cents"),
            due_date=wanted.get("due_date"),
        )
    db.execute(
        "UPDATE records SET pending_mutation_id = ? WHERE entity = 'conflict' AND id = ?",
        (mutation_id, row["id"]),
    )


PREFERENCE_FIELDS: Final = ("disburse_to_mpesa", "auto_payout")


def _preferences(
    db: sqlite3.Connection, mutation_id: int, me_id: str, args: dict[str, Any]
) -> None:
    if not args or any(
        k not in PREFERENCE_FIELDS or not isinstance(v, bool) for k, v in args.items()
    ):
        raise LocalRefused("Preferences are yes or no.", code="invalid_preferences")
    db.execute(
        "UPDATE records SET pending_mutation_id = ? WHERE entity = 'preferences' AND id = ?",
        (mutation_id, me_id),
    )


EFFECTS: Final[dict[str, Effect]] = {
    "request_loan": _request,
    "approve_loan": _moves_to("approved", role="lender", allowed=APPROVABLE),
    "decline_loan": _moves_to("declined", role="lender", allowed=DECLINABLE),
    "cancel_loan": _moves_to("cancelled", role="borrower", allowed=CANCELLABLE),
    "repay_loan": _repay,
    "top_up": _money("top_up", +1),
    "withdraw": _money("withdrawal", -1),
    "mark_notification_read": _mark_read,
    "update_profile": _profile,
    "edit_loan_request": _edit,
    "resolve_conflict": _resolve,
    "set_preferences": _preferences,
}


def apply(db: sqlite3.Connection, mutation_id: int, me_id: str, name: str, args: Any) -> None:
    """Apply one intent's optimistic effect (raises LocalRefused if it cannot make sense)."""
    effect = EFFECTS[name]
    effect(db, mutation_id, me_id, dict(args))


def reset_overlay(db: sqlite3.Connection) -> None:
    """Back to pure server state: drop local rows and overlays."""
    db.execute("DELETE FROM loans WHERE is_local = 1")
    db.execute(
        "UPDATE loans SET local_state = NULL, local_owed_cents = NULL, pending_mutation_id = NULL, "
        "local_principal_cents = NULL, local_fee_cents = NULL, local_due_date = NULL "
        "WHERE local_state IS NOT NULL OR local_owed_cents IS NOT NULL "
        "OR pending_mutation_id IS NOT NULL OR local_principal_cents IS NOT NULL "
        "OR local_fee_cents IS NOT NULL OR local_due_date IS NOT NULL"
    )
    db.execute("DELETE FROM repayments WHERE is_local = 1")
    db.execute("DELETE FROM transactions WHERE is_local = 1")
    db.execute("UPDATE notifications SET local_read = 0 WHERE local_read = 1")
    db.execute(
        "UPDATE users SET local_name = NULL, local_language = NULL "
        "WHERE local_name IS NOT NULL OR local_language IS NOT NULL"
    )
    db.execute(
        "UPDATE records SET pending_mutation_id = NULL WHERE pending_mutation_id IS NOT NULL"
    )


def rebase(db: sqlite3.Connection, me_id: str, mutations: list[Mutation]) -> list[int]:
    """Rebuild the optimistic view on fresh server state; returns the ids that no longer apply
    (the server will most likely refuse them; they stay queued, the server decides)."""
    reset_overlay(db)
    stale: list[int] = []
    previous_id = 0
    for mutation in mutations:
        assert mutation.mutation_id > previous_id, "replayed in queue order"
        previous_id = mutation.mutation_id
        try:
            apply(db, mutation.mutation_id, me_id, mutation.name, mutation.args)
        except (LocalRefused, KeyError, ValueError, TypeError):
            stale.append(mutation.mutation_id)
    return stale


def pending_outgoing_cents(db: sqlite3.Connection, mutations: list[Mutation], me_id: str) -> int:
    """Money that unconfirmed intents will take out of my wallet: repayments, withdrawals and
    approvals (the principal leaves the lender's wallet)."""
    total_cents = 0
    for mutation in mutations:
        if mutation.name in ("repay_loan", "withdraw"):
            total_cents += int(mutation.args.get("amount_cents", 0))
        elif mutation.name == "approve_loan":
            row = db.execute(
                "SELECT principal_cents, lender_id FROM loans WHERE id = ?",
                (mutation.args.get("loan_id"),),
            ).fetchone()
            if row is not None and row["lender_id"] == me_id:
                total_cents += int(row["principal_cents"])
    assert total_cents >= 0
    return total_cents
