"""SQL for paybill payments Deni expects Daraja to confirm."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    select,
)
from sqlalchemy import update as sql_update

from deni.adapters.db.mpesa import tables as m
from deni.adapters.db.upsert import insert_or_nothing
from deni.services.mpesa.ports import (
    ExpectedPaybill,
    PaybillCheck,
)


class SqlExpectedPaybillRepository:
    """Paybill payments Deni validated and expects Daraja to confirm."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def expect(self, expected: ExpectedPaybill) -> bool:
        # On the validation path, which M-PESA waits for: one statement, no savepoint.
        table = m.expected_paybills
        statement = insert_or_nothing(
            self._connection, table, _paybill_values(expected), conflict_columns=["trans_id"]
        )
        return self._connection.execute(statement.returning(table.c.trans_id)).first() is not None

    def due(self, *, now: datetime, limit: int) -> list[ExpectedPaybill]:
        c = m.expected_paybills.c
        query = (
            select(m.expected_paybills)
            .where(c.state == PaybillCheck.WAITING.value, c.next_check_at <= now)
            .order_by(c.next_check_at)
            .limit(limit)
        )
        return [_paybill(row) for row in self._connection.execute(query)]

    def lock(self, trans_id: str) -> ExpectedPaybill | None:
        query = select(m.expected_paybills).where(m.expected_paybills.c.trans_id == trans_id)
        row = self._connection.execute(query.with_for_update()).first()
        return _paybill(row) if row else None

    def get(self, trans_id: str) -> ExpectedPaybill | None:
        query = select(m.expected_paybills).where(m.expected_paybills.c.trans_id == trans_id)
        row = self._connection.execute(query).first()
        return _paybill(row) if row else None

    def by_status_conversation(self, conversation_id: str) -> ExpectedPaybill | None:
        c = m.expected_paybills.c
        query = select(m.expected_paybills).where(c.status_conversation_id == conversation_id)
        row = self._connection.execute(query).first()
        return _paybill(row) if row else None

    def save(self, expected: ExpectedPaybill) -> None:
        values = _paybill_values(expected)
        del values["trans_id"]
        self._connection.execute(
            sql_update(m.expected_paybills)
            .where(m.expected_paybills.c.trans_id == expected.trans_id)
            .values(values)
        )

    def in_states(self, *, states: Sequence[PaybillCheck], limit: int) -> list[ExpectedPaybill]:
        c = m.expected_paybills.c
        query = (
            select(m.expected_paybills)
            .where(c.state.in_([s.value for s in states]))
            .order_by(c.created_at.desc())
            .limit(limit)
        )
        return [_paybill(row) for row in self._connection.execute(query)]


def _paybill_values(expected: ExpectedPaybill) -> dict[str, Any]:
    return {
        "trans_id": expected.trans_id,
        "amount_cents": expected.amount_cents,
        "account_reference": expected.account_reference[:40],
        "phone_raw": expected.phone_raw[:80],
        "phone": expected.phone,
        "state": expected.state.value,
        "checks": expected.checks,
        "next_check_at": expected.next_check_at,
        "status_conversation_id": expected.status_conversation_id,
        "result_desc": expected.result_desc[:200],
        "created_at": expected.created_at,
        "updated_at": expected.updated_at,
    }


def _paybill(row: Row[Any]) -> ExpectedPaybill:
    return ExpectedPaybill(
        trans_id=row.trans_id,
        amount_cents=int(row.amount_cents),
        account_reference=row.account_reference,
        phone_raw=row.phone_raw,
        phone=row.phone,
        state=PaybillCheck(row.state),
        created_at=row.created_at,
        updated_at=row.updated_at,
        next_check_at=row.next_check_at,
        checks=int(row.checks),
        status_conversation_id=row.status_conversation_id,
        result_desc=row.result_desc,
    )
