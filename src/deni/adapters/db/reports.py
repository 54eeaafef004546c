"""SQL for the money reports (services/report_ports.ReportQueries): every answer an aggregate
over a fixed number of groups, or one page of at most `limit` loans. Portable SQL only, so it
runs unchanged on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    case,
    func,
    literal,
    select,
)

from deni.adapters.db import tables as t
from deni.adapters.db.loans import loan_from_row
from deni.adapters.db.mpesa import tables as m
from deni.domain.ledger import AccountKind
from deni.domain.loans import Loan, LoanState
from deni.domain.mpesa import OPEN_STATES, RequestState
from deni.services.mpesa.ports import ClaimState, SuspenseState
from deni.services.report_ports import (
    WALLETS_GROUP,
    AccountGroupBalance,
    AccountGroupTotals,
    BalanceReportRow,
    CountAndCents,
    EntryVolume,
    LoanStateTotals,
    MpesaFlow,
)

SETTLED_CLAIMS = (ClaimState.CONFIRMED.value, ClaimState.ACCEPTED.value)
OPEN_CLAIMS = (ClaimState.WAITING.value, ClaimState.DISPUTED.value)


def _int(value: Any) -> int:
    """SUM() is NULL over no rows, and a NUMERIC (Decimal) on PostgreSQL."""
    return int(value or 0)


def _group() -> ColumnElement[str]:
    return case(
        (t.accounts.c.kind == AccountKind.WALLET.value, literal(WALLETS_GROUP)),
        else_=t.accounts.c.id,
    )


def _window(
    column: ColumnElement[Any], since: datetime | None, before: datetime | None
) -> list[ColumnElement[bool]]:
    conditions = []
    if since is not None:
        conditions.append(column >= since)
    if before is not None:
        conditions.append(column < before)
    return conditions


class SqlReportQueries:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def _rows(self, query: Any) -> list[Any]:
        return list(self._connection.execute(query))

    def account_totals(
        self, *, since: datetime | None, before: datetime | None
    ) -> list[AccountGroupTotals]:
        p, group = t.postings.c, _group()
        query = (
            select(
                group.label("grp"),
                t.accounts.c.normal_side,
                func.count(func.distinct(p.account_id)).label("accounts"),
                func.count(p.id).label("postings"),
                func.sum(case((p.amount_cents > 0, p.amount_cents), else_=0)).label("debit"),
                func.sum(case((p.amount_cents < 0, -p.amount_cents), else_=0)).label("credit"),
            )
            .select_from(t.postings.join(t.accounts, t.accounts.c.id == p.account_id))
            .where(*_window(p.created_at, since, before))
            .group_by(group, t.accounts.c.normal_side)
        )
        return [
            AccountGroupTotals(
                row.grp,
                row.normal_side,
                row.accounts,
                row.postings,
                _int(row.debit),
                _int(row.credit),
            )
            for row in self._rows(query)
        ]

    def account_balances(self) -> list[AccountGroupBalance]:
        a, group = t.accounts.c, _group()
        query = select(
            group.label("grp"), a.normal_side, func.count().label("n"),
            func.sum(a.balance_cents).label("balance"),
        ).group_by(group, a.normal_side)  # fmt: skip
        return [
            AccountGroupBalance(row.grp, row.normal_side, row.n, _int(row.balance))
            for row in self._rows(query)
        ]

    def entry_volumes(self, *, since: datetime, before: datetime) -> list[EntryVolume]:
        e, p = t.journal_entries.c, t.postings.c
        query = (
            select(
                e.code,
                func.count(func.distinct(e.id)).label("entries"),
                func.sum(case((p.amount_cents > 0, p.amount_cents), else_=0)).label("amount"),
            )
            .select_from(t.journal_entries.join(t.postings, p.entry_id == e.id))
            .where(*_window(e.created_at, since, before))
            .group_by(e.code)
        )
        return [EntryVolume(row.code, row.entries, _int(row.amount)) for row in self._rows(query)]

    def loans_page(
        self, *, states: Sequence[LoanState], after_id: str | None, limit: int
    ) -> list[Loan]:
        c = t.loans.c
        query = select(t.loans).where(c.state.in_([s.value for s in states]))
        if after_id is not None:
            query = query.where(c.id > after_id)
        query = query.order_by(c.id).limit(limit)
        return [loan_from_row(row) for row in self._rows(query)]

    def loan_states(self) -> list[LoanStateTotals]:
        c = t.loans.c
        owed = (
            c.principal_cents
            + c.fee_cents
            + c.penalty_charged_cents
            - c.principal_paid_cents
            - c.fee_paid_cents
            - c.penalty_paid_cents
        )
        query = select(
            c.state, func.count().label("n"), func.sum(c.principal_cents).label("principal"),
            func.sum(owed).label("owed"),
        ).group_by(c.state)  # fmt: skip
        return [
            LoanStateTotals(row.state, row.n, _int(row.principal), _int(row.owed))
            for row in self._rows(query)
        ]

    def _flows(
        self, table: Any, kind: ColumnElement[str], state: ColumnElement[str], *where: Any
    ) -> list[MpesaFlow]:
        query = (
            select(
                kind.label("kind"),
                state.label("state"),
                func.count().label("n"),
                func.sum(table.c.amount_cents).label("amount"),
            )
            .where(*where)
            .group_by(kind, state)
        )
        return [
            MpesaFlow(row.kind, row.state, row.n, _int(row.amount)) for row in self._rows(query)
        ]

    def settled_requests(self, *, since: datetime, before: datetime) -> list[MpesaFlow]:
        r = m.mpesa_requests.c
        return self._flows(
            m.mpesa_requests,
            r.kind,
            r.state,
            r.state == RequestState.SUCCEEDED.value,
            *_window(r.updated_at, since, before),
        )

    def settled_claims(self, *, since: datetime, before: datetime) -> list[MpesaFlow]:
        c = m.payment_claims.c
        return self._flows(
            m.payment_claims,
            c.source,
            literal("settled"),
            c.state.in_(SETTLED_CLAIMS),
            *_window(c.settled_at, since, before),
        )

    def open_requests(self) -> list[MpesaFlow]:
        r = m.mpesa_requests.c
        return self._flows(
            m.mpesa_requests, r.kind, r.state, r.state.in_([s.value for s in OPEN_STATES])
        )

    def open_claims(self) -> list[MpesaFlow]:
        c = m.payment_claims.c
        return self._flows(m.payment_claims, c.source, c.state, c.state.in_(OPEN_CLAIMS))

    def _count_and_cents(self, table: Any, *where: Any) -> CountAndCents:
        query = select(func.count(), func.sum(table.c.amount_cents)).where(*where)
        n, amount = self._connection.execute(query).one()
        return CountAndCents(int(n), _int(amount))

    def awaiting_decision(self) -> CountAndCents:
        r = m.mpesa_requests.c
        return self._count_and_cents(m.mpesa_requests, r.awaiting_decision.is_(True))

    def unassigned_suspense(self, *, created_cuts: Sequence[datetime]) -> list[CountAndCents]:
        s = m.suspense_payments.c
        bucket: ColumnElement[int] = (
            case(
                *((s.created_at >= cut, literal(i)) for i, cut in enumerate(created_cuts)),
                else_=literal(len(created_cuts)),
            )
            if created_cuts
            else literal(0)
        )
        query = (
            select(bucket.label("bucket"), func.count().label("n"), func.sum(s.amount_cents))
            .where(s.state != SuspenseState.ASSIGNED.value)
            .group_by(bucket)
        )
        found = {row[0]: CountAndCents(row.n, _int(row[2])) for row in self._rows(query)}
        return [found.get(i, CountAndCents(0, 0)) for i in range(len(created_cuts) + 1)]

    def suspense_created(self, *, since: datetime, before: datetime) -> CountAndCents:
        s = m.suspense_payments.c
        return self._count_and_cents(
            m.suspense_payments, and_(*_window(s.created_at, since, before))
        )

    def outbox_states(self) -> dict[str, int]:
        o = m.outbox.c
        query = select(o.state, func.count().label("n")).group_by(o.state)
        return {row.state: row.n for row in self._rows(query)}

    def last_balance_report(
        self, *, before: datetime | None, received_only: bool
    ) -> BalanceReportRow | None:
        b = m.balance_reports.c
        query = select(m.balance_reports).where(*_window(b.requested_at, None, before))
        if received_only:
            query = query.where(b.state == "received")
        row = self._connection.execute(
            query.order_by(b.requested_at.desc(), b.id.desc()).limit(1)
        ).first()
        if row is None:
            return None
        return BalanceReportRow(
            id=row.id,
            state=row.state,
            requested_at=row.requested_at,
            received_at=row.received_at,
            working_cents=row.working_cents,
            utility_cents=row.utility_cents,
            ledger_paybill_cents=int(row.ledger_paybill_cents),
            ledger_float_cents=int(row.ledger_float_cents),
            result_desc=row.result_desc,
            struck_at=row.struck_at,
            working_difference_cents=row.working_difference_cents,
            utility_difference_cents=row.utility_difference_cents,
        )
