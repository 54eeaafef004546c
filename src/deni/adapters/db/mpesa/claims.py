"""SQL for payment claims."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    case,
    func,
    select,
)
from sqlalchemy import update as sql_update

from deni.adapters.db import tables as t
from deni.adapters.db.mpesa import tables as m
from deni.adapters.db.upsert import insert_or_nothing
from deni.services.mpesa.ports import (
    ClaimSource,
    ClaimState,
    PaymentClaim,
)


class SqlPaymentClaimRepository:
    """Payments a callback claims, waiting for Daraja to confirm them before any money moves."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, claim: PaymentClaim) -> bool:
        table = m.payment_claims
        statement = insert_or_nothing(
            self._connection, table, _claim_values(claim), conflict_columns=["receipt"]
        )
        return self._connection.execute(statement.returning(table.c.receipt)).first() is not None

    def lock(self, receipt: str) -> PaymentClaim | None:
        query = select(m.payment_claims).where(m.payment_claims.c.receipt == receipt)
        row = self._connection.execute(query.with_for_update()).first()
        return claim_from_row(row) if row else None

    def save(self, claim: PaymentClaim) -> None:
        values = _claim_values(claim)
        del values["receipt"]
        self._connection.execute(
            sql_update(m.payment_claims)
            .where(m.payment_claims.c.receipt == claim.receipt)
            .values(values)
        )

    def by_status_conversation(self, conversation_id: str) -> PaymentClaim | None:
        c = m.payment_claims.c
        query = select(m.payment_claims).where(c.status_conversation_id == conversation_id)
        row = self._connection.execute(query).first()
        return claim_from_row(row) if row else None

    def due(self, *, now: datetime, limit: int) -> list[PaymentClaim]:
        c = m.payment_claims.c
        query = (
            select(m.payment_claims)
            .where(c.state == ClaimState.WAITING.value, c.next_check_at <= now)
            .order_by(c.next_check_at)
            .limit(limit)
        )
        return [claim_from_row(row) for row in self._connection.execute(query)]

    def in_states(self, *, states: Sequence[ClaimState], limit: int) -> list[PaymentClaim]:
        c = m.payment_claims.c
        query = (
            select(m.payment_claims)
            .where(c.state.in_([s.value for s in states]))
            .order_by(c.claimed_at.desc())
            .limit(limit)
        )
        return [claim_from_row(row) for row in self._connection.execute(query)]

    def for_receipts(self, receipts: Sequence[str]) -> dict[str, PaymentClaim]:
        if not receipts:
            return {}
        query = select(m.payment_claims).where(m.payment_claims.c.receipt.in_(list(receipts)))
        return {row.receipt: claim_from_row(row) for row in self._connection.execute(query)}

    def arriving(self, user_id: str, *, limit: int) -> list[PaymentClaim]:
        c = m.payment_claims.c
        query = (
            select(m.payment_claims)
            .where(c.user_id == user_id, c.state == ClaimState.WAITING.value)
            .order_by(c.claimed_at.desc())
            .limit(limit)
        )
        return [claim_from_row(row) for row in self._connection.execute(query)]

    def confirmation_waits(self, bounds_ms: Sequence[int]) -> tuple[list[int], int, int]:
        c = m.payment_claims.c
        wait = c.confirm_wait_ms
        columns = [func.count(case((wait <= bound, 1))) for bound in bounds_ms]
        query = select(*columns, func.count(wait), func.coalesce(func.sum(wait), 0)).where(
            wait.is_not(None)
        )
        row = self._connection.execute(query).one()
        counts = [int(value) for value in row[: len(bounds_ms)]]
        return counts, int(row[len(bounds_ms)]), int(row[len(bounds_ms) + 1])

    def receipts_seen(self, receipts: Sequence[str]) -> set[str]:
        if not receipts:
            return set()
        wanted = list(receipts)
        credit_keys = [f"mpesa:{receipt}" for receipt in wanted]
        queries = (
            select(m.payment_claims.c.receipt).where(m.payment_claims.c.receipt.in_(wanted)),
            select(m.mpesa_requests.c.receipt).where(m.mpesa_requests.c.receipt.in_(wanted)),
            select(m.suspense_payments.c.receipt).where(m.suspense_payments.c.receipt.in_(wanted)),
            select(t.journal_entries.c.idempotency_key).where(
                t.journal_entries.c.idempotency_key.in_(credit_keys)
            ),
        )
        seen: set[str] = set()
        for query in queries:
            seen.update(key.split(":", 1)[-1] for key in self._connection.execute(query).scalars())
        return seen & set(wanted)


def _claim_values(claim: PaymentClaim) -> dict[str, Any]:
    return {
        "receipt": claim.receipt,
        "source": claim.source.value,
        "amount_cents": claim.amount_cents,
        "account_reference": claim.account_reference[:40],
        "phone_raw": claim.phone_raw[:80],
        "phone": claim.phone,
        "user_id": claim.user_id,
        "checkout_request_id": claim.checkout_request_id,
        "inbox_id": claim.inbox_id,
        "state": claim.state.value,
        "checks": claim.checks,
        "not_found_answers": claim.not_found_answers,
        "next_check_at": claim.next_check_at,
        "status_conversation_id": claim.status_conversation_id,
        "result_desc": claim.result_desc[:200],
        "claimed_at": claim.claimed_at,
        "settled_at": claim.settled_at,
        "confirm_wait_ms": claim.confirm_wait_ms,
        "decided_by": claim.decided_by[:100],
        "updated_at": claim.updated_at,
    }


def claim_from_row(row: Row[Any]) -> PaymentClaim:
    return PaymentClaim(
        receipt=row.receipt,
        source=ClaimSource(row.source),
        amount_cents=int(row.amount_cents),
        account_reference=row.account_reference,
        phone_raw=row.phone_raw,
        phone=row.phone,
        state=ClaimState(row.state),
        claimed_at=row.claimed_at,
        updated_at=row.updated_at,
        user_id=row.user_id,
        checkout_request_id=row.checkout_request_id,
        inbox_id=row.inbox_id,
        next_check_at=row.next_check_at,
        checks=int(row.checks),
        not_found_answers=int(row.not_found_answers),
        status_conversation_id=row.status_conversation_id,
        result_desc=row.result_desc,
        settled_at=row.settled_at,
        confirm_wait_ms=None if row.confirm_wait_ms is None else int(row.confirm_wait_ms),
        decided_by=row.decided_by,
    )
