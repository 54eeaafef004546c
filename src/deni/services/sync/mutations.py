"""The mutations a sync push may carry (docs/sync.md section 4): their argument shapes and
what each does. Every money or loan-state mutation calls the same service the API and USSD
call; the sync-only ones (edit a loan request, resolve a conflict) live here.

A handler runs inside the push's transaction for this mutation; services get a savepoint of
it, so a refused command leaves nothing behind while its wrong-PIN bookkeeping (committed by
the service before it raises) stays.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from deni.domain.errors import Conflict, DomainError, InvalidTransition, NotFound
from deni.domain.loans import REQUEST_TTL, Loan, LoanState, Terms, lapse_at, make_terms
from deni.domain.loans import resolve_due_date as resolve_due
from deni.domain.mpesa import Purpose
from deni.domain.users import nairobi_today
from deni.ids import new_id
from deni.services import loans, notifications, users
from deni.services.common import audit, notify
from deni.services.mpesa import preferences, requests
from deni.services.notifications import IDS_PER_MARK_MAX
from deni.services.ports import Clock, PinHasher
from deni.services.sync.ports import ConflictRecord, SavepointsOf, SyncUnitOfWork

STRING_CHARS_MAX = 200
ID_CHARS_MAX = 64
IDS_PER_MUTATION_MAX = IDS_PER_MARK_MAX
INT_ABS_MAX = 2**53  # what every JSON parser reads exactly


@dataclass(frozen=True, slots=True)
class SyncContext:
    user_id: str
    client_id: str
    mutation_id: int
    key: str  # idempotency key for the services: "sync:<client>:<id>" or "dl:<dead letter>"
    now: datetime
    clock: Clock
    hasher: PinHasher
    mpesa_on: bool
    # Set when the member's lender lookups ran out (services/limits.py): counted before the
    # push's transaction, whose write lock would otherwise hold up the counters' own write.
    lender_lookup_refusal: DomainError | None = None

    def within(self, uow: SyncUnitOfWork) -> InPushGroup:
        """What the use cases of this mutation run on: savepoints of the push group's
        transaction, so a refused mutation undoes only its own writes."""
        return InPushGroup(SavepointsOf(uow), self.clock, self.hasher)


@dataclass(frozen=True, slots=True)
class InPushGroup:
    uow: SavepointsOf
    clock: Clock
    hasher: PinHasher


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # applied | conflict
    entity_id: str | None = None
    resolution: str | None = None
    conflict_id: str | None = None


class MalformedMutation(Exception):
    """Not a mutation this server can even try: a dead letter."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


Args = dict[str, object]
# name -> {arg: (kind, required)}
SPECS: Mapping[str, Mapping[str, tuple[str, bool]]] = {
    "request_loan": {
        "loan_id": ("uuid", True),
        "lender_phone": ("str", True),
        "principal_cents": ("int", True),
        "fee_cents": ("int", False),
        "penalty_daily_cents": ("int", False),
        "due_date": ("date", False),
        "term_days": ("int", False),
    },
    "approve_loan": {"loan_id": ("id", True), "pin": ("str", True), "base_version": ("int", False)},
    "decline_loan": {"loan_id": ("id", True)},
    "cancel_loan": {"loan_id": ("id", True)},
    "repay_loan": {"loan_id": ("id", True), "amount_cents": ("int", True), "pin": ("str", True)},
    "top_up": {"amount_cents": ("int", True)},
    "repay_by_mpesa": {"loan_id": ("id", True), "amount_cents": ("int", True)},
    "withdraw": {"amount_cents": ("int", True), "pin": ("str", True)},
    "mark_notification_read": {"notification_ids": ("ids", True)},
    "set_preferences": {
        "disburse_to_mpesa": ("bool", False),
        "auto_payout": ("bool", False),
        "pin": ("str", True),
    },
    "update_profile": {
        "base_version": ("int", True),
        "name": ("str", False),
        "language": ("str", False),
    },
    "edit_loan_request": {
        "loan_id": ("id", True),
        "base_version": ("int", True),
        "principal_cents": ("int", False),
        "fee_cents": ("int", False),
        "penalty_daily_cents": ("int", False),
        "due_date": ("date", False),
        "term_days": ("int", False),
    },
    "resolve_conflict": {"conflict_id": ("id", True), "choice": ("choice", True)},
}
# Mutations that change nothing unless at least one of these is given.
ONE_OF: Mapping[str, tuple[str, ...]] = {
    "set_preferences": ("disburse_to_mpesa", "auto_payout"),
    "update_profile": ("name", "language"),
    "edit_loan_request": (
        "principal_cents",
        "fee_cents",
        "penalty_daily_cents",
        "due_date",
        "term_days",
    ),
}


def parse(name: str, args: object) -> Args:
    """Check the shape of a mutation; MalformedMutation if it is not one we know."""
    spec = SPECS.get(name)
    if spec is None:
        raise MalformedMutation("unknown_mutation", f"This server has no mutation {name!r}.")
    if not isinstance(args, dict):
        raise MalformedMutation("invalid_args", "args must be a JSON object.")
    extra = sorted(set(args) - set(spec))
    if extra:
        raise MalformedMutation("invalid_args", f"Unknown args for {name}: {', '.join(extra)}.")
    parsed: Args = {}
    for arg, (kind, required) in spec.items():
        if arg not in args or args[arg] is None:
            if required:
                raise MalformedMutation("invalid_args", f"{name} needs {arg}.")
            continue
        parsed[arg] = _value(kind, arg, args[arg])
    wanted = ONE_OF.get(name)
    if wanted is not None and not any(arg in parsed for arg in wanted):
        raise MalformedMutation("invalid_args", f"{name} needs one of: {', '.join(wanted)}.")
    return parsed


def _value(kind: str, arg: str, value: object) -> object:
    def bad(what: str) -> MalformedMutation:
        return MalformedMutation("invalid_args", f"{arg} must be {what}.")

    if kind == "ids":
        return _ids(value)
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > INT_ABS_MAX:
            raise bad("an integer")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if not isinstance(value, str) or "\x00" in value:
        raise bad("a string")
    if kind == "str":
        if len(value) > STRING_CHARS_MAX:
            raise bad(f"at most {STRING_CHARS_MAX} characters")
        return value
    if kind == "id":
        if not 1 <= len(value) <= ID_CHARS_MAX or not value.isprintable():
            raise bad("an id")
        return value
    if kind == "uuid":
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise bad("a UUID") from None
    if kind == "date":
        try:
            return date.fromisoformat(value) if len(value) == 10 else _raise()
        except ValueError:
            raise bad("a date YYYY-MM-DD") from None
    if kind == "choice":
        if value not in ("server", "client"):
            raise bad("'server' or 'client'")
        return value
    raise AssertionError(kind)


def _raise() -> date:
    raise ValueError("not YYYY-MM-DD")


def _ids(value: object) -> list[str]:
    if not isinstance(value, list) or not 1 <= len(value) <= IDS_PER_MUTATION_MAX:
        raise MalformedMutation(
            "invalid_args", f"notification_ids must be a list of 1 to {IDS_PER_MUTATION_MAX}."
        )
    return [str(_value("id", "notification_ids", item)) for item in value]


# --- handlers -------------------------------------------------------------------------------

Handler = Callable[[SyncUnitOfWork, SyncContext, Args], Outcome]


def _s(args: Args, name: str) -> str:
    value = args[name]
    assert isinstance(value, str)
    return value


def _i(args: Args, name: str) -> int:
    value = args[name]
    assert isinstance(value, int)
    return value


def _request_loan(uow: SyncUnitOfWork, ctx: SyncContext, a: Args) -> Outcome:
    due = a.get("due_date")
    term = a.get("term_days")
    assert due is None or isinstance(due, date)
    assert term is None or isinstance(term, int)
    if ctx.lender_lookup_refusal is not None:
        raise ctx.lender_lookup_refusal
    loan = loans.request_loan(
        ctx.within(uow),
        borrower_id=ctx.user_id,
        lender_phone=_s(a, "lender_phone"),
        principal_cents=a["principal_cents"],
        fee_cents=a.get("fee_cents", 0),
        penalty_daily_cents=a.get("penalty_daily_cents", 0),
        due_date=due,
        term_days=term,
        loan_id=_s(a, "loan_id"),
        channel="sync",
    )
    return Outcome("applied", entity_id=loan.id)


def _approve_loan(uow: SyncUnitOfWork, ctx: SyncContext, a: Args) -> Outcome:
    base = a.get("base_version")
    assert base is None or isinstance(base, int)
    loan = loans.approve_loan(
        ctx.within(uow),
        lender_id=ctx.user_id,
        loan_id=_s(a, "loan_id"),
        pin=_s(a, "pin"),
        channel="sync",
        base_version=base,
    )
    return Outcome("applied", entity_id=loan.id)


def _decline_loan(uow: SyncUnitOfWork, ctx: SyncContext, a: Args) -> Outcome:
    loan = loans.decline_loan(
        ctx.within(uow),
        lender_id=ctx.user_id,
        loan_id=_s(a, "loan_id"),
        channel="sync",
    )
    return Outcome("applied", entity_id=loan.id)


def _cancel_loan(uow: SyncUnitOfWork, ctx: SyncContext, a: Args) -> Outcome:
    loan = loans.cancel_loan(
        ctx.within(uow),
        borrower_id=ctx.user_id,
        loan_id=_s(a, "loan_id"),
        channel="sync",
    )
    return Outcome("applied", entity_id=loan.id)


def _repay_loan(uow: SyncUnitOfWork, ctx: SyncContext, a: Args) -> Outcome:
    repayment = loans.repay_loan(
        ctx.within(uow),
        borrower_id=ctx.user_id,
        loan_id=_s(a, "loan_id"),
        amount_cents=a["amount_cents"],
        pin=_s(a, "pin"),
        idempotency_key=ctx.key,
        channel="sync",
    )
    return Outcome("applied", entity_id=repayment.loan.id)


def _require_mpesa(ctx: SyncContext) -> None:
    if not ctx.mpesa_on:
        raise Conflict("M-PESA is not switched on here.", code="mpesa_off")


def _top_up(uow: SyncUnitOfWork, ctx: SyncContext, a: Args) -> Outcome:
    _require_mpesa(ctx)
    request = requests.request_stk(
        ctx.within(uow),
        user_id=ctx.user_id,
        amount_cents=a["amount_cents"],
        idempotency_key=ctx.key,
    )
    return Outcome("applied", entity_id=request.id)


def _repay_by_mpesa(uow: SyncUnitOfWork, ctx: SyncContext, a: Args) -> Outcome:
    """An STK push whose settlement repays the loan: the same request the API's
    /loans/{id}/mpesa-repayments and USSD make (record_stk checks the loan and the amount)."""
    _require_mpesa(ctx)
    request = requests.request_stk(
        ctx.within(uow),
        user_id=ctx.user_id,
        amount_cents=a["amount_cents"],
        idempotency_key=ctx.key,
        purpose=Purpose.REPAYMENT,
        loan_id=_s(a, "loan_id"),
    )
    return Outcome("applied", entity_id=request.id)


def _withdraw(uow: SyncUnitOfWork, ctx: SyncContext, a: Args) -> Outcome:
    _require_mpesa(ctx)
    request = requests.withdraw(
        ctx.within(uow),
        user_id=ctx.user_id,
        pin=_s(a, "pin"),
        amount_cents=a["amount_cents"],
        idempotency_key=ctx.key,
        channel="sync",
    )
    return Outcome("applied", entity_id=request.id)


def _mark_notification_read(uow: SyncUnitOfWork, ctx: SyncContext, a: Args) -> Outcome:
    ids = a["notification_ids"]
    assert isinstance(ids, list)
    # Client wins: a read flag set on a device is kept; ids not the user's are ignored.
    notifications.mark_read(ctx.within(uow), user_id=ctx.user_id, notification_ids=ids)
    return Outcome("applied")


def _set_preferences(uow: SyncUnitOfWork, ctx: SyncContext, a: Args) -> Outcome:
    disburse, auto_payout = a.get("disburse_to_mpesa"), a.get("auto_payout")
    assert disburse is None or isinstance(disburse, bool)
    assert auto_payout is None or isinstance(auto_payout, bool)
    # Client wins: the value pushed last is kept.
    preferences.set_preferences(
        ctx.within(uow),
        user_id=ctx.user_id,
        pin=_s(a, "pin"),
        disburse_to_mpesa=disburse,
        auto_payout=auto_payout,
        channel="sync",
    )
    uow.sync.log_changes([(ctx.user_id, "preferences", ctx.user_id, "put")], ctx.now)
    return Outcome("applied", entity_id=ctx.user_id)


def _update_profile(uow: SyncUnitOfWork, ctx: SyncContext, a: Args) -> Outcome:
    versions = uow.sync.profile_versions(ctx.user_id)
    base = _i(a, "base_version")
    given = [field for field in ("name", "language") if field in a]
    overwritten = [field for field in given if versions.get(field, 0) > base]
    name, language = a.get("name"), a.get("language")
    assert name is None or isinstance(name, str)
    assert language is None or isinstance(language, str)
    users.update_profile(
        ctx.within(uow),
        user_id=ctx.user_id,
        name=name,
        language=language,
        channel="sync",
    )
    if overwritten:
        # Last writer wins per field, in server arrival order: this push's value is kept.
        return Outcome("conflict", entity_id=ctx.user_id, resolution="last_writer_wins")
    return Outcome("applied", entity_id=ctx.user_id)


def _terms_json(terms: Terms) -> dict[str, object]:
    return {
        "principal_cents": terms.principal_cents,
        "fee_cents": terms.fee_cents,
        "penalty_daily_cents": terms.penalty_daily_cents,
        "due_date": terms.due_date.isoformat(),
    }


def _requested_loan_of_borrower(uow: SyncUnitOfWork, loan_id: str, user_id: str) -> Loan:
    loan = loans.loan_for(uow, loan_id, user_id=user_id, role="borrower")
    if loan.state is not LoanState.REQUESTED:
        raise InvalidTransition(f"A loan that is {loan.state.value} cannot be edited.")
    return loan


def _apply_terms(uow: SyncUnitOfWork, loan: Loan, terms: Terms, ctx: SyncContext) -> None:
    loan.terms = terms
    loan.expires_at = lapse_at(now=ctx.now, ttl=REQUEST_TTL, due_date=terms.due_date)
    uow.loans.save(loan, ctx.now)
    borrower, lender = uow.users.get(loan.borrower_id), uow.users.get(loan.lender_id)
    assert borrower is not None
    assert lender is not None
    notify(
        uow,
        user=lender,
        kind="loan_request_changed",
        params={
            "borrower_name": borrower.name,
            "amount_cents": terms.principal_cents,
            "total_cents": terms.total_cents,
            "due_date": terms.due_date,
            "loan_code": loan.code,
        },
        now=ctx.now,
        loan_id=loan.id,
    )
    audit(
        uow,
        actor_id=ctx.user_id,
        channel="sync",
        command="edit_loan_request",
        details={"loan_id": loan.id, **_terms_json(terms)},
        now=ctx.now,
    )


def _edit_loan_request(uow: SyncUnitOfWork, ctx: SyncContext, a: Args) -> Outcome:
    loan = _requested_loan_of_borrower(uow, _s(a, "loan_id"), ctx.user_id)
    current = loan.terms
    due, term = a.get("due_date"), a.get("term_days")
    assert due is None or isinstance(due, date)
    assert term is None or isinstance(term, int)
    due_date = current.due_date
    if due is not None or term is not None:
        due_date = resolve_due(due_date=due, term_days=term, today=nairobi_today(ctx.now))
    proposed = make_terms(
        principal_cents=a.get("principal_cents", current.principal_cents),
        fee_cents=a.get("fee_cents", current.fee_cents),
        penalty_daily_cents=a.get("penalty_daily_cents", current.penalty_daily_cents),
        due_date=due_date,
    )
    if loan.version == _i(a, "base_version"):
        _apply_terms(uow, loan, proposed, ctx)
        return Outcome("applied", entity_id=loan.id)
    # Changed since this device saw it (another edit): keep both, the user chooses.
    conflict = ConflictRecord(
        id=new_id(),
        user_id=ctx.user_id,
        client_id=ctx.client_id,
        mutation_id=ctx.mutation_id,
        entity="loan",
        entity_id=loan.id,
        server_version_json=json.dumps({**_terms_json(current), "version": loan.version}),
        client_version_json=json.dumps(
            {**_terms_json(proposed), "base_version": a["base_version"]}
        ),
        state="open",
        resolution=None,
        created_at=ctx.now,
        resolved_at=None,
    )
    uow.sync.add_conflict(conflict)
    uow.sync.log_changes([(ctx.user_id, "conflict", conflict.id, "put")], ctx.now)
    borrower = uow.users.get(ctx.user_id)
    assert borrower is not None
    notify(
        uow,
        user=borrower,
        kind="sync_conflict",
        params={"loan_code": loan.code},
        now=ctx.now,
        loan_id=loan.id,
    )
    return Outcome("conflict", entity_id=loan.id, resolution="manual", conflict_id=conflict.id)


def _resolve_conflict(uow: SyncUnitOfWork, ctx: SyncContext, a: Args) -> Outcome:
    conflict = uow.sync.lock_conflict(_s(a, "conflict_id"))
    if conflict is None or conflict.user_id != ctx.user_id:
        raise NotFound("No such conflict.", code="conflict_not_found")
    if conflict.state != "open":
        raise Conflict("This conflict is already resolved.", code="conflict_resolved")
    choice = _s(a, "choice")
    if choice == "client":
        assert conflict.entity == "loan"
        loan = _requested_loan_of_borrower(uow, conflict.entity_id, ctx.user_id)
        wanted = json.loads(conflict.client_version_json)
        terms = make_terms(
            principal_cents=wanted["principal_cents"],
            fee_cents=wanted["fee_cents"],
            penalty_daily_cents=wanted["penalty_daily_cents"],
            due_date=date.fromisoformat(wanted["due_date"]),
        )
        _apply_terms(uow, loan, terms, ctx)
    uow.sync.resolve_conflict(conflict.id, resolution=choice, now=ctx.now)
    uow.sync.log_changes([(ctx.user_id, "conflict", conflict.id, "delete")], ctx.now)
    return Outcome("applied", entity_id=conflict.entity_id, conflict_id=conflict.id)


HANDLERS: Mapping[str, Handler] = {
    "request_loan": _request_loan,
    "approve_loan": _approve_loan,
    "decline_loan": _decline_loan,
    "cancel_loan": _cancel_loan,
    "repay_loan": _repay_loan,
    "top_up": _top_up,
    "repay_by_mpesa": _repay_by_mpesa,
    "withdraw": _withdraw,
    "mark_notification_read": _mark_notification_read,
    "set_preferences": _set_preferences,
    "update_profile": _update_profile,
    "edit_loan_request": _edit_loan_request,
    "resolve_conflict": _resolve_conflict,
}
assert set(HANDLERS) == set(SPECS)
