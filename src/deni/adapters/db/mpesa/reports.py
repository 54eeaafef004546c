"""SQL for Daraja's balance reports."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    insert,
    select,
)
from sqlalchemy import update as sql_update

from deni.adapters.db.mpesa import tables as m
from deni.services.mpesa.ports import BalanceReport, MpesaPosition


class SqlBalanceReportRepository:
    """Daraja's answers about the paybill and B2C balances, beside the ledger's."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, report: BalanceReport) -> None:
        self._connection.execute(insert(m.balance_reports).values(**_report_values(report)))

    def by_conversation(self, conversation_id: str) -> BalanceReport | None:
        row = self._connection.execute(
            select(m.balance_reports).where(m.balance_reports.c.conversation_id == conversation_id)
        ).first()
        return _report(row) if row else None

    def save(self, report: BalanceReport) -> None:
        values = _report_values(report)
        del values["id"]
        self._connection.execute(
            sql_update(m.balance_reports).where(m.balance_reports.c.id == report.id).values(values)
        )

    def latest(self, *, limit: int) -> list[BalanceReport]:
        query = select(m.balance_reports).order_by(m.balance_reports.c.requested_at.desc())
        return [_report(row) for row in self._connection.execute(query.limit(limit))]


def _report_values(report: BalanceReport) -> dict[str, Any]:
    return {
        "id": report.id,
        "conversation_id": report.conversation_id,
        "state": report.state,
        "working_cents": report.working_cents,
        "utility_cents": report.utility_cents,
        "ledger_paybill_cents": report.ledger_paybill_cents,
        "ledger_float_cents": report.ledger_float_cents,
        "result_desc": report.result_desc[:200],
        "requested_at": report.requested_at,
        "received_at": report.received_at,
        "struck_at": report.struck_at,
        "position_before": report.before.to_json() if report.before else None,
        "position_after": report.after.to_json() if report.after else None,
        "working_difference_cents": report.working_difference_cents,
        "utility_difference_cents": report.utility_difference_cents,
        "working_outside_low_cents": report.working_outside[0] if report.working_outside else None,
        "working_outside_high_cents": report.working_outside[1] if report.working_outside else None,
        "utility_outside_low_cents": report.utility_outside[0] if report.utility_outside else None,
        "utility_outside_high_cents": report.utility_outside[1] if report.utility_outside else None,
    }


def _report(row: Row[Any]) -> BalanceReport:
    return BalanceReport(
        id=row.id,
        state=row.state,
        ledger_paybill_cents=int(row.ledger_paybill_cents),
        ledger_float_cents=int(row.ledger_float_cents),
        requested_at=row.requested_at,
        conversation_id=row.conversation_id,
        working_cents=row.working_cents,
        utility_cents=row.utility_cents,
        result_desc=row.result_desc,
        received_at=row.received_at,
        struck_at=row.struck_at,
        before=MpesaPosition.from_json(row.position_before) if row.position_before else None,
        after=MpesaPosition.from_json(row.position_after) if row.position_after else None,
        working_difference_cents=row.working_difference_cents,
        utility_difference_cents=row.utility_difference_cents,
        working_outside=_pair(row.working_outside_low_cents, row.working_outside_high_cents),
        utility_outside=_pair(row.utility_outside_low_cents, row.utility_outside_high_cents),
    )


def _pair(low: int | None, high: int | None) -> tuple[int, int] | None:
    return None if low is None or high is None else (int(low), int(high))
