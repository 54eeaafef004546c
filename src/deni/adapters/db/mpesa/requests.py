"""SQL for M-PESA requests and their evidence."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
)
from sqlalchemy import update as sql_update

from deni.adapters.db.mpesa import tables as m
from deni.adapters.db.mpesa.rows import ERROR_CHARS_MAX
from deni.domain.mpesa import (
    UNANSWERED_PUSH_CODE,
    EventKind,
    MpesaRequest,
    Purpose,
    RequestEvent,
    RequestKind,
    RequestState,
)

# Columns a request may change after it is written.
_MUTABLE = (
    "state",
    "hold_id",
    "attempt",
    "checkout_request_id",
    "originator_conversation_id",
    "conversation_id",
    "status_conversation_id",
    "acknowledged",
    "receipt",
    "result_code",
    "result_desc",
    "status_checks",
    "next_check_at",
    "not_found_answers",
    "awaiting_decision",
    "claimed_failure_code",
    "claimed_failure_desc",
    "paid_confirmed",
)
_SAVE_REQUEST = (
    sql_update(m.mpesa_requests)
    .where(m.mpesa_requests.c.id == bindparam("request_id"))
    .values(
        {
            **{name: bindparam(f"new_{name}") for name in _MUTABLE},
            "updated_at": bindparam("new_updated_at"),
        }
    )
)


def _request_changes(request: MpesaRequest, now: datetime) -> dict[str, Any]:
    values = {f"new_{name}": getattr(request, name) for name in _MUTABLE}
    values["new_state"] = request.state.value
    return {**values, "new_updated_at": now, "request_id": request.id}


class SqlMpesaRequestRepository:
    """STK pushes and B2C payouts, one row each, with a payout's evidence."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, request: MpesaRequest) -> None:
        values = {name: getattr(request, name) for name in _MUTABLE}
        self._connection.execute(
            insert(m.mpesa_requests).values(
                id=request.id,
                kind=request.kind.value,
                purpose=request.purpose.value,
                user_id=request.user_id,
                loan_id=request.loan_id,
                phone=request.phone,
                amount_cents=request.amount_cents,
                idempotency_key=request.idempotency_key,
                original_receipt=request.original_receipt,
                created_at=request.created_at,
                updated_at=request.updated_at,
                **{**values, "state": request.state.value},
            )
        )

    def get(self, request_id: str) -> MpesaRequest | None:
        return self._one(m.mpesa_requests.c.id == request_id)

    def lock(self, request_id: str) -> MpesaRequest | None:
        return self._one(m.mpesa_requests.c.id == request_id, lock=True)

    def find_by_key(self, idempotency_key: str) -> MpesaRequest | None:
        return self._one(m.mpesa_requests.c.idempotency_key == idempotency_key)

    def find_by_checkout(self, checkout_request_id: str) -> MpesaRequest | None:
        return self._one(m.mpesa_requests.c.checkout_request_id == checkout_request_id)

    def find_by_originator(self, originator_conversation_id: str) -> MpesaRequest | None:
        c = m.mpesa_requests.c
        return self._one(c.originator_conversation_id == originator_conversation_id)

    def find_by_status_conversation(self, conversation_id: str) -> MpesaRequest | None:
        return self._one(m.mpesa_requests.c.status_conversation_id == conversation_id)

    def awaiting_decision(self, *, limit: int) -> list[MpesaRequest]:
        c = m.mpesa_requests.c
        query = (
            select(m.mpesa_requests)
            .where(c.awaiting_decision.is_(True))
            .order_by(c.created_at, c.id)
            .limit(limit)
        )
        return [request_from_row(row) for row in self._connection.execute(query)]

    def add_events(self, events: Sequence[RequestEvent]) -> None:
        if not events:
            return
        self._connection.execute(
            insert(m.mpesa_request_events),
            [
                {
                    "request_id": event.request_id,
                    "attempt": event.attempt,
                    "kind": event.kind.value,
                    "detail": event.detail[:ERROR_CHARS_MAX],
                    "actor": event.actor[:100],
                    "at": event.at,
                }
                for event in events
            ],
        )

    def events_for(self, request_id: str, *, limit: int) -> list[RequestEvent]:
        c = m.mpesa_request_events.c
        query = (
            select(m.mpesa_request_events)
            .where(c.request_id == request_id)
            .order_by(c.id)
            .limit(limit)
        )
        return [
            RequestEvent(
                row.request_id, int(row.attempt), EventKind(row.kind), row.detail, row.at,
                row.actor,
            )
            for row in self._connection.execute(query)
        ]  # fmt: skip

    def unanswered_pushes(
        self, *, phone: str, amount_cents: int, since: datetime, until: datetime, limit: int
    ) -> list[MpesaRequest]:
        c = m.mpesa_requests.c
        maybe_sent = [RequestState.SENDING.value, RequestState.UNKNOWN.value]
        query = (
            select(m.mpesa_requests)
            .where(
                c.kind == RequestKind.STK.value,
                c.phone == phone,
                c.amount_cents == amount_cents,
                c.created_at >= since,
                c.created_at <= until,
                c.checkout_request_id.is_(None),
                c.receipt.is_(None),
                or_(
                    c.state.in_(maybe_sent),
                    and_(
                        c.state == RequestState.FAILED.value,
                        c.result_code == UNANSWERED_PUSH_CODE,
                    ),
                ),
            )
            .order_by(c.created_at, c.id)
            .limit(limit)
        )
        return [request_from_row(row) for row in self._connection.execute(query)]

    def save(self, request: MpesaRequest, now: datetime) -> None:
        result = self._connection.execute(_SAVE_REQUEST, _request_changes(request, now))
        assert result.rowcount == 1, request.id
        request.updated_at = now

    def find_by_checkouts(self, checkout_request_ids: Sequence[str]) -> list[MpesaRequest]:
        if not checkout_request_ids:
            return []
        c = m.mpesa_requests.c
        query = select(m.mpesa_requests).where(
            c.checkout_request_id.in_(sorted(set(checkout_request_ids)))
        )
        return [request_from_row(row) for row in self._connection.execute(query)]

    def lock_by_checkout(self, checkout_request_ids: Sequence[str]) -> list[MpesaRequest]:
        if not checkout_request_ids:
            return []
        c = m.mpesa_requests.c
        query = (
            select(m.mpesa_requests)
            .where(c.checkout_request_id.in_(sorted(set(checkout_request_ids))))
            .order_by(c.id)
            .with_for_update()
        )
        return [request_from_row(row) for row in self._connection.execute(query)]

    def save_many(self, requests: Sequence[MpesaRequest], now: datetime) -> None:
        if not requests:
            return
        changes = [_request_changes(request, now) for request in requests]
        self._connection.execute(_SAVE_REQUEST, changes)
        for request in requests:
            request.updated_at = now

    def due_checks(self, *, now: datetime, limit: int) -> list[str]:
        c = m.mpesa_requests.c
        open_states = [RequestState.SENDING, RequestState.SENT, RequestState.UNKNOWN]
        query = (
            select(c.id)
            .where(c.state.in_([s.value for s in open_states]), c.next_check_at <= now)
            .order_by(c.next_check_at)
            .limit(limit)
        )
        return list(self._connection.execute(query).scalars())

    def in_states(
        self, *, states: Sequence[RequestState], limit: int, user_id: str | None = None
    ) -> list[MpesaRequest]:
        c = m.mpesa_requests.c
        query = select(m.mpesa_requests).order_by(c.created_at.desc()).limit(limit)
        if states:
            query = query.where(c.state.in_([s.value for s in states]))
        if user_id is not None:
            query = query.where(c.user_id == user_id)
        return [request_from_row(row) for row in self._connection.execute(query)]

    def count(self, *, loan_id: str, purpose: Purpose) -> int:
        c = m.mpesa_requests.c
        query = select(func.count()).where(c.loan_id == loan_id, c.purpose == purpose.value)
        return int(self._connection.execute(query).scalar_one())

    def stk_pushes_like(
        self,
        *,
        amount_cents: int,
        phone: str | None,
        created_from: datetime,
        created_to: datetime,
        limit: int,
    ) -> list[MpesaRequest]:
        c = m.mpesa_requests.c
        query = select(m.mpesa_requests).where(
            c.kind == RequestKind.STK.value,
            c.amount_cents == amount_cents,
            c.created_at >= created_from,
            c.created_at <= created_to,
            c.receipt.is_(None),
        )
        if phone is not None:
            query = query.where(c.phone == phone)
        return [request_from_row(row) for row in self._connection.execute(query.limit(limit))]

    def reversals(self, *, limit: int) -> list[MpesaRequest]:
        c = m.mpesa_requests.c
        query = (
            select(m.mpesa_requests)
            .where(c.kind == RequestKind.REVERSAL.value)
            .order_by(c.created_at.desc(), c.id.desc())
            .limit(limit)
        )
        return [request_from_row(row) for row in self._connection.execute(query)]

    def reversals_of(self, original_receipt: str) -> list[MpesaRequest]:
        c = m.mpesa_requests.c
        query = (
            select(m.mpesa_requests)
            .where(c.original_receipt == original_receipt, c.kind == RequestKind.REVERSAL.value)
            .order_by(c.created_at, c.id)
        )
        return [request_from_row(row) for row in self._connection.execute(query)]

    def find_by_conversation(self, conversation_id: str) -> MpesaRequest | None:
        c = m.mpesa_requests.c
        return self._one(c.conversation_id == conversation_id, c.kind == RequestKind.REVERSAL.value)

    def _one(self, *where: Any, lock: bool = False) -> MpesaRequest | None:
        query = select(m.mpesa_requests).where(*where)
        if lock:
            query = query.with_for_update()
        row = self._connection.execute(query).first()
        return request_from_row(row) if row else None


def request_from_row(row: Row[Any]) -> MpesaRequest:
    return MpesaRequest(
        id=row.id,
        kind=RequestKind(row.kind),
        purpose=Purpose(row.purpose),
        user_id=row.user_id,
        loan_id=row.loan_id,
        phone=row.phone,
        amount_cents=int(row.amount_cents),
        idempotency_key=row.idempotency_key,
        state=RequestState(row.state),
        created_at=row.created_at,
        updated_at=row.updated_at,
        hold_id=row.hold_id,
        attempt=int(row.attempt),
        checkout_request_id=row.checkout_request_id,
        originator_conversation_id=row.originator_conversation_id,
        conversation_id=row.conversation_id,
        status_conversation_id=row.status_conversation_id,
        acknowledged=bool(row.acknowledged),
        receipt=row.receipt,
        result_code=row.result_code,
        result_desc=row.result_desc,
        status_checks=int(row.status_checks),
        next_check_at=row.next_check_at,
        not_found_answers=int(row.not_found_answers),
        awaiting_decision=bool(row.awaiting_decision),
        claimed_failure_code=row.claimed_failure_code,
        claimed_failure_desc=row.claimed_failure_desc,
        paid_confirmed=bool(row.paid_confirmed),
        original_receipt=row.original_receipt,
    )
