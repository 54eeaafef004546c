"""SQL for loans, and the loans a credit may settle."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date, datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    BindParameter,
    ColumnElement,
    Connection,
    Date,
    Row,
    Select,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from deni.adapters.db import tables as t
from deni.adapters.db.conflicts import ConcurrentUpdate
from deni.adapters.db.sync.tables import Change, log_changes
from deni.domain.loans import REQUESTS_READ_MAX, Loan, LoanState, PastRequest, Terms
from deni.services.ports import LoanFigures, RepaymentRecord

# ON CONFLICT DO NOTHING with no target: a taken id or a taken code both insert nothing.
_LOAN_INSERT = {
    "postgresql": postgresql.insert(t.loans).on_conflict_do_nothing().returning(t.loans.c.id),
    "sqlite": sqlite.insert(t.loans).on_conflict_do_nothing().returning(t.loans.c.id),
}
_LOAN_FIXED_COLUMNS = ("id", "code", "borrower_id", "lender_id", "requested_at")
_LOAN_SAVE = (
    update(t.loans)
    .where(and_(t.loans.c.id == bindparam("loan_id"), t.loans.c.version == bindparam("seen")))
    .values({c.name: bindparam(c.name) for c in t.loans.c if c.name not in _LOAN_FIXED_COLUMNS})
)
_LOAN_BY_ID = select(t.loans).where(t.loans.c.id == bindparam("id"))
_LOAN_BY_CODE = select(t.loans).where(t.loans.c.code == bindparam("code"))
_LOAN_LOCK = _LOAN_BY_ID.with_for_update(key_share=True)
_LOAN_LOCK_OR_SKIP = _LOAN_BY_ID.with_for_update(key_share=True, skip_locked=True)


def _loan_changes(loan: Loan) -> list[Change]:
    return [(user_id, "loan", loan.id, "put") for user_id in (loan.borrower_id, loan.lender_id)]


def _settleable_by_credits() -> Select[Any]:
    """Per user of :ids, the loans money reaching their wallet may settle, at most :per_user
    of each kind, oldest request first: overdue ones they borrowed, approved ones they lent."""
    loans_ = t.loans
    ids: BindParameter[Any] = bindparam("ids", expanding=True)
    overdue = select(
        loans_.c.id, loans_.c.borrower_id.label("user_id"), literal("overdue").label("role"),
        loans_.c.requested_at,
    ).where(
        loans_.c.state == LoanState.ACTIVE.value,
        loans_.c.borrower_id.in_(ids),
        loans_.c.due_date < bindparam("due_before"),
    )  # fmt: skip
    waiting = select(
        loans_.c.id, loans_.c.lender_id.label("user_id"), literal("waiting").label("role"),
        loans_.c.requested_at,
    ).where(loans_.c.state == LoanState.APPROVED.value, loans_.c.lender_id.in_(ids))  # fmt: skip
    both = union_all(overdue, waiting).subquery()
    order = (both.c.requested_at, both.c.id)
    rank = func.row_number().over(partition_by=(both.c.user_id, both.c.role), order_by=order)
    ranked = select(both, rank.label("n")).subquery()
    return (
        select(ranked.c.id, ranked.c.user_id, ranked.c.role)
        .where(ranked.c.n <= bindparam("per_user"))
        .order_by(ranked.c.requested_at, ranked.c.id)
    )


_SETTLEABLE_BY_CREDITS = _settleable_by_credits()

# A loan counts in a book once its principal moved; it is open while something may be repaid.
_LENT_STATES = [
    s.value
    for s in (LoanState.DISBURSING, LoanState.ACTIVE, LoanState.REPAID, LoanState.WRITTEN_OFF)
]
_OPEN_STATES = [LoanState.DISBURSING.value, LoanState.ACTIVE.value]
_FIGURES = (
    "loans_count", "principal_cents", "repaid_cents", "fees_paid_cents", "outstanding_cents",
    "fees_due_cents", "overdue_count", "overdue_cents", "written_off_count", "written_off_cents",
)  # fmt: skip


def _days_after(today: BindParameter[Any], day: ColumnElement[Any], dialect: str) -> Any:
    """Whole days from `day` to `today`, in the database's own date arithmetic."""
    if dialect == "postgresql":
        return today - day  # date - date is an integer number of days
    return cast(func.julianday(today) - func.julianday(day), BigInteger)


@cache
def _figures_query(dialect: str, role: str, *, grouped: bool) -> Select[Any]:
    """The sums of LoanFigures over the loans of :user_id as `role`, penalties accrued to
    :today exactly as Loan.accrue_penalty does (in duplum: at most the principal still owed);
    `grouped`: one row per other party, a page (:limit, :offset), most outstanding first."""
    c = t.loans.c
    mine, other = (c.lender_id, c.borrower_id) if role == "lender" else (c.borrower_id, c.lender_id)
    today: BindParameter[Any] = bindparam("today", type_=Date)
    overdue = and_(c.state == LoanState.ACTIVE.value, c.due_date < today)
    principal_left = c.principal_cents - c.principal_paid_cents
    accrued = _days_after(today, c.due_date, dialect) * c.penalty_daily_cents
    target = case((accrued < principal_left, accrued), else_=principal_left)
    penalty_now = case(
        (and_(overdue, target > c.penalty_charged_cents), target), else_=c.penalty_charged_cents
    )
    paid = c.principal_paid_cents + c.fee_paid_cents + c.penalty_paid_cents
    is_open = c.state.in_(_OPEN_STATES)
    owed_now = c.principal_cents + c.fee_cents + penalty_now - paid
    written_off = c.state == LoanState.WRITTEN_OFF.value
    owed_at_write_off = c.principal_cents + c.fee_cents + c.penalty_charged_cents - paid
    fees_due = c.fee_cents - c.fee_paid_cents + penalty_now - c.penalty_paid_cents

    def total(value: Any) -> Any:
        return func.coalesce(func.sum(value), 0)

    sums = [
        func.count(),
        total(c.principal_cents),
        total(paid),
        total(c.fee_paid_cents + c.penalty_paid_cents),
        total(case((is_open, owed_now), else_=0)),
        total(case((is_open, fees_due), else_=0)),
        total(case((overdue, 1), else_=0)),
        total(case((overdue, owed_now), else_=0)),
        total(case((written_off, 1), else_=0)),
        total(case((written_off, owed_at_write_off), else_=0)),
    ]
    columns = [value.label(name) for value, name in zip(sums, _FIGURES, strict=True)]
    where = and_(mine == bindparam("user_id"), c.state.in_(_LENT_STATES))
    if not grouped:
        return select(*columns, func.count(other.distinct()).label("counterparties")).where(where)
    outstanding, principal = columns[4], columns[1]
    return (
        select(other.label("counterparty_id"), *columns, literal(1).label("counterparties"))
        .where(where)
        .group_by(other)
        .order_by(outstanding.desc(), principal.desc(), other)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )


def _figures(row: Row[Any]) -> LoanFigures:
    values = {name: int(getattr(row, name)) for name in _FIGURES}  # PostgreSQL sums: numeric
    return LoanFigures(**values, counterparties_count=int(row.counterparties))


class SqlLoanRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, loan: Loan) -> bool:
        values = {**_loan_values(loan), "updated_at": loan.requested_at}
        insert = _LOAN_INSERT[self._connection.dialect.name]
        if self._connection.execute(insert, values).first() is None:
            return False
        log_changes(self._connection, _loan_changes(loan), loan.requested_at)
        return True

    def get(self, loan_id: str) -> Loan | None:
        row = self._connection.execute(_LOAN_BY_ID, {"id": loan_id}).first()
        return loan_from_row(row) if row else None

    def get_by_code(self, code: str) -> Loan | None:
        row = self._connection.execute(_LOAN_BY_CODE, {"code": code}).first()
        return loan_from_row(row) if row else None

    def lock(self, loan_id: str, *, skip_locked: bool = False) -> Loan | None:
        query = _LOAN_LOCK_OR_SKIP if skip_locked else _LOAN_LOCK
        row = self._connection.execute(query, {"id": loan_id}).first()
        return loan_from_row(row) if row else None

    def save(self, loan: Loan, now: datetime) -> None:
        values = _loan_values(loan)
        for fixed in _LOAN_FIXED_COLUMNS:
            del values[fixed]
        values.update(loan_id=loan.id, seen=loan.version, version=loan.version + 1, updated_at=now)
        result = self._connection.execute(_LOAN_SAVE, values)
        if result.rowcount != 1:
            raise ConcurrentUpdate("The loan changed while you were acting on it; try again.")
        loan.version += 1
        log_changes(self._connection, _loan_changes(loan), now)

    def requests_since(self, borrower_id: str, *, since: datetime, limit: int) -> list[PastRequest]:
        assert 0 < limit <= REQUESTS_READ_MAX
        c = t.loans.c
        waiting = c.state == LoanState.REQUESTED.value
        query = (
            select(c.lender_id, c.state, c.requested_at)
            .where(c.borrower_id == borrower_id, or_(c.requested_at >= since, waiting))
            .order_by(c.requested_at.desc())
            .limit(limit)
        )
        rows = self._connection.execute(query)
        return [PastRequest(row.lender_id, LoanState(row.state), row.requested_at) for row in rows]

    def list_for(
        self,
        *,
        user_id: str,
        role: str,
        states: Sequence[LoanState],
        limit: int,
        offset: int,
        overdue_on: date | None = None,
        overdue: bool = True,
    ) -> list[Loan]:
        assert role in ("borrower", "lender", "any")
        owner = {
            "borrower": t.loans.c.borrower_id == user_id,
            "lender": t.loans.c.lender_id == user_id,
            "any": (t.loans.c.borrower_id == user_id) | (t.loans.c.lender_id == user_id),
        }[role]
        query = select(t.loans).where(owner)
        if states:
            query = query.where(t.loans.c.state.in_([s.value for s in states]))
        if overdue_on is not None:
            is_overdue = and_(
                t.loans.c.state == LoanState.ACTIVE.value, t.loans.c.due_date < overdue_on
            )
            query = query.where(is_overdue if overdue else ~is_overdue)
        query = query.order_by(t.loans.c.requested_at.desc(), t.loans.c.id).limit(limit)
        return [loan_from_row(row) for row in self._connection.execute(query.offset(offset))]

    def ids_in_state(
        self,
        *,
        states: Sequence[LoanState],
        lender_id: str | None = None,
        borrower_id: str | None = None,
        expires_before: datetime | None = None,
        due_before: date | None = None,
        limit: int,
    ) -> list[str]:
        query = select(t.loans.c.id).where(t.loans.c.state.in_([s.value for s in states]))
        if lender_id is not None:
            query = query.where(t.loans.c.lender_id == lender_id)
        if borrower_id is not None:
            query = query.where(t.loans.c.borrower_id == borrower_id)
        if expires_before is not None:
            query = query.where(t.loans.c.expires_at <= expires_before)
        if due_before is not None:
            query = query.where(t.loans.c.due_date < due_before)
        query = query.order_by(t.loans.c.requested_at, t.loans.c.id).limit(limit)
        return [row.id for row in self._connection.execute(query)]

    def settleable_by_credits(
        self, user_ids: Collection[str], *, due_before: date, per_user: int
    ) -> list[tuple[str, str, str]]:
        params = {"ids": list(user_ids), "due_before": due_before, "per_user": per_user}
        rows = self._connection.execute(_SETTLEABLE_BY_CREDITS, params)
        return [(row.id, row.user_id, row.role) for row in rows]

    def active_due_before(self, due_before: date, *, after_id: str, limit: int) -> list[str]:
        query = (
            select(t.loans.c.id)
            .where(t.loans.c.state == LoanState.ACTIVE.value)
            .where(t.loans.c.due_date < due_before)
            .where(t.loans.c.id > after_id)
            .order_by(t.loans.c.id)
            .limit(limit)
        )
        return [row.id for row in self._connection.execute(query)]

    def count_by_state(self) -> dict[str, int]:
        query = select(t.loans.c.state, func.count()).group_by(t.loans.c.state)
        return {row[0]: int(row[1]) for row in self._connection.execute(query)}

    def figures(self, *, user_id: str, role: str, today: date) -> LoanFigures:
        assert role in ("borrower", "lender")
        query = _figures_query(self._connection.dialect.name, role, grouped=False)
        return _figures(self._connection.execute(query, {"user_id": user_id, "today": today}).one())

    def figures_by_counterparty(
        self, *, user_id: str, role: str, today: date, limit: int, offset: int
    ) -> list[tuple[str, LoanFigures]]:
        assert role in ("borrower", "lender")
        query = _figures_query(self._connection.dialect.name, role, grouped=True)
        params = {"user_id": user_id, "today": today, "limit": limit, "offset": offset}
        rows = self._connection.execute(query, params)
        return [(row.counterparty_id, _figures(row)) for row in rows]

    def add_repayment(self, repayment: RepaymentRecord) -> None:
        self._connection.execute(
            t.repayments.insert().values(
                id=repayment.id,
                loan_id=repayment.loan_id,
                entry_id=repayment.entry_id,
                amount_cents=repayment.amount_cents,
                penalty_cents=repayment.penalty_cents,
                fee_cents=repayment.fee_cents,
                principal_cents=repayment.principal_cents,
                channel=repayment.channel,
                created_at=repayment.created_at,
            )
        )
        parties = self._connection.execute(
            select(t.loans.c.borrower_id, t.loans.c.lender_id).where(
                t.loans.c.id == repayment.loan_id
            )
        ).one()
        log_changes(
            self._connection,
            [(user_id, "repayment", repayment.id, "put") for user_id in parties],
            repayment.created_at,
        )

    def repayments(self, loan_id: str) -> list[RepaymentRecord]:
        query = (
            select(t.repayments)
            .where(t.repayments.c.loan_id == loan_id)
            .order_by(t.repayments.c.created_at.desc(), t.repayments.c.id)
        )
        return [
            RepaymentRecord(
                id=row.id,
                loan_id=row.loan_id,
                entry_id=row.entry_id,
                amount_cents=row.amount_cents,
                penalty_cents=row.penalty_cents,
                fee_cents=row.fee_cents,
                principal_cents=row.principal_cents,
                channel=row.channel,
                created_at=row.created_at,
            )
            for row in self._connection.execute(query)
        ]


def _loan_values(loan: Loan) -> dict[str, Any]:
    return {
        "id": loan.id,
        "code": loan.code,
        "borrower_id": loan.borrower_id,
        "lender_id": loan.lender_id,
        "principal_cents": loan.terms.principal_cents,
        "fee_cents": loan.terms.fee_cents,
        "penalty_daily_cents": loan.terms.penalty_daily_cents,
        "due_date": loan.terms.due_date,
        "state": loan.state.value,
        "requested_at": loan.requested_at,
        "expires_at": loan.expires_at,
        "disbursed_at": loan.disbursed_at,
        "closed_at": loan.closed_at,
        "principal_paid_cents": loan.principal_paid_cents,
        "fee_paid_cents": loan.fee_paid_cents,
        "penalty_charged_cents": loan.penalty_charged_cents,
        "penalty_paid_cents": loan.penalty_paid_cents,
    }


def loan_from_row(row: Row[Any]) -> Loan:
    return Loan(
        id=row.id,
        code=row.code,
        borrower_id=row.borrower_id,
        lender_id=row.lender_id,
        terms=Terms(row.principal_cents, row.fee_cents, row.penalty_daily_cents, row.due_date),
        state=LoanState(row.state),
        requested_at=row.requested_at,
        expires_at=row.expires_at,
        principal_paid_cents=row.principal_paid_cents,
        fee_paid_cents=row.fee_paid_cents,
        penalty_charged_cents=row.penalty_charged_cents,
        penalty_paid_cents=row.penalty_paid_cents,
        disbursed_at=row.disbursed_at,
        closed_at=row.closed_at,
        version=row.version,
    )
