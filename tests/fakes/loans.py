"""Loans and repayments in memory, with the SQL repository's keys, version check and orders."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import fields, replace
from datetime import date, datetime

from deni.domain.errors import Conflict
from deni.domain.loans import REQUESTS_READ_MAX, Loan, LoanState, PastRequest
from deni.services.ports import NO_FIGURES, LoanFigures, RepaymentRecord
from tests.fakes.tables import ConstraintViolated, Tables


class FakeLoanRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def add(self, loan: Loan) -> bool:
        if loan.id in self._t.loans or self.get_by_code(loan.code) is not None:
            return False
        self._store(loan)
        return True

    def get(self, loan_id: str) -> Loan | None:
        loan = self._t.loans.get(loan_id)
        return _copy(loan) if loan is not None else None

    def get_by_code(self, code: str) -> Loan | None:
        return next((_copy(loan) for loan in self._t.loans.values() if loan.code == code), None)

    def lock(self, loan_id: str, *, skip_locked: bool = False) -> Loan | None:
        # One writer at a time (the fake unit of work's lock): nothing is ever skipped.
        return self.get(loan_id)

    def save(self, loan: Loan, now: datetime) -> None:
        stored = self._t.loans.get(loan.id)
        if stored is None or stored.version != loan.version:
            # The SQL repository's ConcurrentUpdate (adapters are not the fakes' to import).
            raise Conflict(
                "The loan changed while you were acting on it; try again.",
                code="concurrent_update",
            )
        fixed = ("id", "code", "borrower_id", "lender_id", "requested_at")
        assert all(getattr(stored, name) == getattr(loan, name) for name in fixed)
        self._store(replace(loan, version=loan.version + 1))
        loan.version += 1

    def requests_since(self, borrower_id: str, *, since: datetime, limit: int) -> list[PastRequest]:
        assert 0 < limit <= REQUESTS_READ_MAX
        found = [
            loan
            for loan in self._t.loans.values()
            if loan.borrower_id == borrower_id
            and (loan.requested_at >= since or loan.state is LoanState.REQUESTED)
        ]
        found.sort(key=lambda loan: loan.requested_at, reverse=True)
        return [PastRequest(loan.lender_id, loan.state, loan.requested_at) for loan in found][
            :limit
        ]

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

        def wanted(loan: Loan) -> bool:
            mine = {
                "borrower": loan.borrower_id == user_id,
                "lender": loan.lender_id == user_id,
                "any": user_id in (loan.borrower_id, loan.lender_id),
            }[role]
            if not mine or (states and loan.state not in states):
                return False
            if overdue_on is None:
                return True
            is_overdue = loan.state is LoanState.ACTIVE and loan.terms.due_date < overdue_on
            return is_overdue == overdue

        found = [loan for loan in self._t.loans.values() if wanted(loan)]
        # Newest request first, ties by id ascending, as the SQL ORDER BY.
        found.sort(key=lambda loan: loan.id)
        found.sort(key=lambda loan: loan.requested_at, reverse=True)
        return [_copy(loan) for loan in found[offset : offset + limit]]

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
        found = [
            loan
            for loan in self._t.loans.values()
            if loan.state in states
            and lender_id in (None, loan.lender_id)
            and borrower_id in (None, loan.borrower_id)
            and (expires_before is None or loan.expires_at <= expires_before)
            and (due_before is None or loan.terms.due_date < due_before)
        ]
        found.sort(key=lambda loan: (loan.requested_at, loan.id))
        return [loan.id for loan in found[:limit]]

    def settleable_by_credits(
        self, user_ids: Collection[str], *, due_before: date, per_user: int
    ) -> list[tuple[str, str, str]]:
        users = set(user_ids)
        in_order = sorted(self._t.loans.values(), key=lambda loan: (loan.requested_at, loan.id))
        taken: dict[tuple[str, str], int] = {}
        found: list[tuple[str, str, str]] = []
        for loan in in_order:
            if (
                loan.state is LoanState.ACTIVE
                and loan.borrower_id in users
                and loan.terms.due_date < due_before
            ):
                user_id, role = loan.borrower_id, "overdue"
            elif loan.state is LoanState.APPROVED and loan.lender_id in users:
                user_id, role = loan.lender_id, "waiting"
            else:
                continue
            taken[user_id, role] = taken.get((user_id, role), 0) + 1
            if taken[user_id, role] <= per_user:
                found.append((loan.id, user_id, role))
        return found

    def active_due_before(self, due_before: date, *, after_id: str, limit: int) -> list[str]:
        found = sorted(
            loan.id
            for loan in self._t.loans.values()
            if loan.state is LoanState.ACTIVE
            and loan.terms.due_date < due_before
            and loan.id > after_id
        )
        return found[:limit]

    def count_by_state(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for loan in self._t.loans.values():
            counts[loan.state.value] = counts.get(loan.state.value, 0) + 1
        return counts

    def figures(self, *, user_id: str, role: str, today: date) -> LoanFigures:
        rows = self._figures_by_counterparty(user_id, role, today)
        total = NO_FIGURES
        for row in rows.values():
            total = _plus(total, row)
        return replace(total, counterparties_count=len(rows))

    def figures_by_counterparty(
        self, *, user_id: str, role: str, today: date, limit: int, offset: int
    ) -> list[tuple[str, LoanFigures]]:
        rows = sorted(self._figures_by_counterparty(user_id, role, today).items())
        rows.sort(key=lambda row: (-row[1].outstanding_cents, -row[1].principal_cents))
        return rows[offset : offset + limit]

    def _figures_by_counterparty(
        self, user_id: str, role: str, today: date
    ) -> dict[str, LoanFigures]:
        assert role in ("borrower", "lender")
        rows: dict[str, LoanFigures] = {}
        for loan in self._t.loans.values():
            mine, other = (
                (loan.lender_id, loan.borrower_id)
                if role == "lender"
                else (loan.borrower_id, loan.lender_id)
            )
            if mine == user_id and loan.state in _LENT_STATES:
                rows[other] = _plus(rows.get(other, NO_FIGURES), _one_loan(loan, today))
        return {other: replace(row, counterparties_count=1) for other, row in rows.items()}

    def add_repayment(self, repayment: RepaymentRecord) -> None:
        if repayment.id in self._t.repayments:
            raise ConstraintViolated(f"repayments.id {repayment.id} is taken")
        if any(r.entry_id == repayment.entry_id for r in self._t.repayments.values()):
            raise ConstraintViolated(f"repayments.entry_id {repayment.entry_id} is taken")
        if repayment.loan_id not in self._t.loans:
            raise ConstraintViolated(f"repayments.loan_id {repayment.loan_id}")
        self._t.repayments[repayment.id] = repayment

    def repayments(self, loan_id: str) -> list[RepaymentRecord]:
        found = [r for r in self._t.repayments.values() if r.loan_id == loan_id]
        found.sort(key=lambda r: r.id)
        found.sort(key=lambda r: r.created_at, reverse=True)
        return found

    def _store(self, loan: Loan) -> None:
        if loan.borrower_id == loan.lender_id:
            raise ConstraintViolated("CHECK not_self on loans")
        if (
            loan.principal_paid_cents > loan.terms.principal_cents
            or loan.fee_paid_cents > loan.terms.fee_cents
            or loan.penalty_paid_cents > loan.penalty_charged_cents
        ):
            raise ConstraintViolated("CHECK paid at most owed on loans")
        self._t.loans[loan.id] = _copy(loan)


_LENT_STATES = frozenset(
    {LoanState.DISBURSING, LoanState.ACTIVE, LoanState.REPAID, LoanState.WRITTEN_OFF}
)
_OPEN_STATES = frozenset({LoanState.DISBURSING, LoanState.ACTIVE})


def _one_loan(stored: Loan, today: date) -> LoanFigures:
    """One loan's figures, read with the domain's own rules (penalties accrued on a copy)."""
    loan = _copy(stored)
    loan.accrue_penalty(today)
    owed = loan.owed()
    is_open = loan.state in _OPEN_STATES
    outstanding_cents = owed.total_cents if is_open else 0
    written_off = loan.state is LoanState.WRITTEN_OFF
    overdue = loan.is_overdue(today)
    return LoanFigures(
        loans_count=1,
        principal_cents=loan.terms.principal_cents,
        repaid_cents=loan.principal_paid_cents + loan.fee_paid_cents + loan.penalty_paid_cents,
        fees_paid_cents=loan.fee_paid_cents + loan.penalty_paid_cents,
        outstanding_cents=outstanding_cents,
        fees_due_cents=owed.fee_cents + owed.penalty_cents if is_open else 0,
        overdue_count=int(overdue),
        overdue_cents=outstanding_cents if overdue else 0,
        written_off_count=int(written_off),
        written_off_cents=owed.total_cents if written_off else 0,
        counterparties_count=0,
    )


def _plus(a: LoanFigures, b: LoanFigures) -> LoanFigures:
    return LoanFigures(*(getattr(a, f.name) + getattr(b, f.name) for f in fields(LoanFigures)))


def _copy(loan: Loan) -> Loan:
    """A loan as the SQL repository reads one back: its own object, no pending events."""
    return replace(loan, events=[])
