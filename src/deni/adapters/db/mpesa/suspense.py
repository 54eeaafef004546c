"""SQL for payments in suspense."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    insert,
    select,
)
from sqlalchemy import update as sql_update

from deni.adapters.db.mpesa import tables as m
from deni.adapters.db.mpesa.rows import inserted
from deni.services.mpesa.ports import (
    SuspensePayment,
    SuspenseState,
)


class SqlSuspenseRepository:
    """Paybill payments no member could be matched to, until an operator assigns them."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, payment: SuspensePayment) -> bool:
        return inserted(
            self._connection,
            insert(m.suspense_payments).values(
                receipt=payment.receipt,
                amount_cents=payment.amount_cents,
                source=payment.source,
                account_reference=payment.account_reference[:40],
                phone=payment.phone[:40],
                reason=payment.reason[:200],
                entry_id=payment.entry_id,
                state=payment.state.value,
                user_id=payment.user_id,
                created_at=payment.created_at,
                assigned_at=payment.assigned_at,
            ),
        )

    def lock(self, receipt: str) -> SuspensePayment | None:
        row = self._connection.execute(
            select(m.suspense_payments)
            .where(m.suspense_payments.c.receipt == receipt)
            .with_for_update()
        ).first()
        return suspense_from_row(row) if row else None

    def save(self, payment: SuspensePayment) -> None:
        self._connection.execute(
            sql_update(m.suspense_payments)
            .where(m.suspense_payments.c.receipt == payment.receipt)
            .values(
                state=payment.state.value,
                user_id=payment.user_id,
                assigned_at=payment.assigned_at,
            )
        )

    def in_states(self, *, states: Sequence[SuspenseState], limit: int) -> list[SuspensePayment]:
        c = m.suspense_payments.c
        query = (
            select(m.suspense_payments)
            .where(c.state.in_([s.value for s in states]))
            .order_by(c.created_at)
            .limit(limit)
        )
        return [suspense_from_row(row) for row in self._connection.execute(query)]


def suspense_from_row(row: Row[Any]) -> SuspensePayment:
    return SuspensePayment(
        receipt=row.receipt,
        amount_cents=int(row.amount_cents),
        source=row.source,
        account_reference=row.account_reference,
        phone=row.phone,
        reason=row.reason,
        entry_id=row.entry_id,
        state=SuspenseState(row.state),
        created_at=row.created_at,
        user_id=row.user_id,
        assigned_at=row.assigned_at,
    )
