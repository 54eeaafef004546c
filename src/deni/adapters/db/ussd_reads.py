"""What USSD screens show (services/ussd_ports.UssdReads), each read in one statement.

Every read is a SQLAlchemy Core SELECT built once, at import, with bound parameters, and run
through the public API (`connection.execute(query, params)`): SQLAlchemy compiles it once per
dialect (its statement cache) and applies the column types on the way out. Each is a lone
statement (`reading(..., one_statement=True)`): no BEGIN and ROLLBACK around it, autocommit on
PostgreSQL (one round trip); on SQLite its own read transaction, which never waits for a writer
(WAL).

Domain rules still apply: a loan is built by the same row mapper as the repository's, and its
penalty is accrued to today exactly as the API's view accrues it (on a copy, nothing saved).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from sqlalchemy import Engine, Row, Select, bindparam, select

from deni.adapters.db import tables as t
from deni.adapters.db.engine import reading
from deni.adapters.db.loans import loan_from_row
from deni.domain.errors import NotFound
from deni.domain.ledger import NormalSide, balance_delta, wallet_account_id
from deni.domain.loans import FINAL_STATES, LoanState
from deni.services.ussd_ports import (
    PAGE_ROWS_MAX,
    ROLES,
    LoanLine,
    Member,
    MiniStatement,
    StatementLine,
)


def _member_query() -> Select[Any]:
    u = t.users
    return select(u.c.id, u.c.name, u.c.language, u.c.phone_proven_at).where(
        u.c.phone == bindparam("phone")
    )


def _balance_query() -> Select[Any]:
    a = t.accounts
    return select(a.c.balance_cents).where(a.c.id == bindparam("account_id"))


def _statement_query() -> Select[Any]:
    """The account, and its newest postings (if any) beside it: one row per posting."""
    a, p, e = t.accounts, t.postings, t.journal_entries
    newest = (
        select(p.c.id, p.c.account_id, p.c.amount_cents, p.c.created_at, e.c.code, e.c.cause_type)
        .join(e, e.c.id == p.c.entry_id)
        .where(p.c.account_id == bindparam("account_id"))
        .order_by(p.c.id.desc())
        .limit(bindparam("limit"))
        .subquery("newest")
    )
    return (
        select(
            a.c.balance_cents,
            a.c.normal_side,
            newest.c.id.label("posting_id"),
            newest.c.amount_cents,
            newest.c.created_at,
            newest.c.code,
            newest.c.cause_type,
        )
        .select_from(a.outerjoin(newest, newest.c.account_id == a.c.id))
        .where(a.c.id == bindparam("account_id"))
        .order_by(newest.c.id.desc())
    )


def _loans_query(role: str, *, past: bool = False) -> Select[Any]:
    """A page of the user's loans as `role`: in one state (a bound parameter), or every loan
    that is over (`past`)."""
    loans = t.loans
    borrower, lender = t.users.alias("borrower"), t.users.alias("lender")
    mine = loans.c.borrower_id if role == "borrower" else loans.c.lender_id
    in_state = (
        loans.c.state.in_(sorted(s.value for s in FINAL_STATES))
        if past
        else loans.c.state == bindparam("state")
    )
    return (
        select(loans, borrower.c.name.label("borrower_name"), lender.c.name.label("lender_name"))
        .join(borrower, borrower.c.id == loans.c.borrower_id)
        .join(lender, lender.c.id == loans.c.lender_id)
        .where(mine == bindparam("user_id"), in_state)
        .order_by(loans.c.requested_at.desc(), loans.c.id)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )


def _loan_query() -> Select[Any]:
    loans = t.loans
    borrower, lender = t.users.alias("borrower"), t.users.alias("lender")
    return (
        select(loans, borrower.c.name.label("borrower_name"), lender.c.name.label("lender_name"))
        .join(borrower, borrower.c.id == loans.c.borrower_id)
        .join(lender, lender.c.id == loans.c.lender_id)
        .where(loans.c.id == bindparam("loan_id"))
    )


# Built once: SQLAlchemy keys its compiled-statement cache on them, so each is compiled once.
MEMBER = _member_query()
BALANCE = _balance_query()
STATEMENT = _statement_query()
LOANS = {role: _loans_query(role) for role in ROLES}
PAST_LOANS = {role: _loans_query(role, past=True) for role in ROLES}
LOAN = _loan_query()


class SqlUssdReads:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def member(self, phone: str) -> Member | None:
        rows = self._rows(MEMBER, {"phone": phone})
        if not rows:
            return None
        row = rows[0]
        return Member(row.id, row.name, row.language, row.phone_proven_at is not None)

    def balance_cents(self, user_id: str) -> int:
        rows = self._rows(BALANCE, {"account_id": wallet_account_id(user_id)})
        if not rows:
            raise NotFound("No wallet for this user.", code="wallet_not_found")
        balance = int(rows[0].balance_cents)
        assert balance >= 0
        return balance

    def statement(self, user_id: str, *, limit: int) -> MiniStatement:
        assert 1 <= limit <= PAGE_ROWS_MAX
        rows = self._rows(STATEMENT, {"account_id": wallet_account_id(user_id), "limit": limit})
        if not rows:
            raise NotFound("No wallet for this user.", code="wallet_not_found")
        side = NormalSide(rows[0].normal_side)
        lines = [
            StatementLine(
                row.code, balance_delta(side, row.amount_cents), row.created_at, row.cause_type
            )
            for row in rows
            if row.posting_id is not None
        ]
        return MiniStatement(int(rows[0].balance_cents), lines)

    def loans(
        self, *, user_id: str, role: str, state: LoanState, offset: int, limit: int, today: date
    ) -> list[LoanLine]:
        """Newest first, like the API's list."""
        assert role in ROLES
        assert 1 <= limit <= PAGE_ROWS_MAX
        assert offset >= 0
        params = {"user_id": user_id, "state": state.value, "limit": limit, "offset": offset}
        return [_line(row, today) for row in self._rows(LOANS[role], params)]

    def past_loans(
        self, *, user_id: str, role: str, offset: int, limit: int, today: date
    ) -> list[LoanLine]:
        assert role in ROLES
        assert 1 <= limit <= PAGE_ROWS_MAX
        assert offset >= 0
        params = {"user_id": user_id, "limit": limit, "offset": offset}
        return [_line(row, today) for row in self._rows(PAST_LOANS[role], params)]

    def loan(self, loan_id: str, *, today: date) -> LoanLine | None:
        rows = self._rows(LOAN, {"loan_id": loan_id})
        return _line(rows[0], today) if rows else None

    def _rows(self, query: Select[Any], params: Mapping[str, object]) -> Sequence[Row[Any]]:
        with reading(self._engine, one_statement=True) as connection:
            return connection.execute(query, params).all()


def _line(row: Row[Any], today: date) -> LoanLine:
    loan = loan_from_row(row)
    loan.accrue_penalty(today)  # on a copy read for display; nothing is saved
    return LoanLine(loan, loan.owed().total_cents, row.borrower_name, row.lender_name)
