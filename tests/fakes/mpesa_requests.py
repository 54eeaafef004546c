"""M-PESA requests and their evidence in memory, with the SQL repository's unique ids and orders.

Locks are reads here: the fake unit of work lets one writer in at a time, which is what
SELECT ... FOR UPDATE (and SKIP LOCKED) would give a single process anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from deni.domain.mpesa import (
    UNANSWERED_PUSH_CODE,
    MpesaRequest,
    Purpose,
    RequestEvent,
    RequestKind,
    RequestState,
)
from tests.fakes.tables import ConstraintViolated, Tables

ERROR_CHARS_MAX = 300
ACTOR_CHARS_MAX = 100
# The columns the SQL schema keeps unique, besides the id.
_UNIQUE = (
    "idempotency_key",
    "checkout_request_id",
    "originator_conversation_id",
    "status_conversation_id",
)


class FakeMpesaRequestRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def add(self, request: MpesaRequest) -> None:
        if request.id in self._t.mpesa_requests:
            raise ConstraintViolated(f"mpesa_requests.id {request.id} is taken")
        self._store(request)

    def get(self, request_id: str) -> MpesaRequest | None:
        request = self._t.mpesa_requests.get(request_id)
        return replace(request) if request is not None else None

    def lock(self, request_id: str) -> MpesaRequest | None:
        return self.get(request_id)

    def find_by_key(self, idempotency_key: str) -> MpesaRequest | None:
        return self._first(lambda r: r.idempotency_key == idempotency_key)

    def find_by_checkout(self, checkout_request_id: str) -> MpesaRequest | None:
        return self._first(lambda r: r.checkout_request_id == checkout_request_id)

    def find_by_originator(self, originator_conversation_id: str) -> MpesaRequest | None:
        return self._first(lambda r: r.originator_conversation_id == originator_conversation_id)

    def find_by_status_conversation(self, conversation_id: str) -> MpesaRequest | None:
        return self._first(lambda r: r.status_conversation_id == conversation_id)

    def awaiting_decision(self, *, limit: int) -> list[MpesaRequest]:
        found = self._where(lambda r: r.awaiting_decision)
        found.sort(key=lambda r: (r.created_at, r.id))
        return found[:limit]

    def add_events(self, events: Sequence[RequestEvent]) -> None:
        for event in events:
            if event.request_id not in self._t.mpesa_requests:
                raise ConstraintViolated(f"mpesa_request_events.request_id {event.request_id}")
        self._t.mpesa_events.extend(
            replace(e, detail=e.detail[:ERROR_CHARS_MAX], actor=e.actor[:ACTOR_CHARS_MAX])
            for e in events
        )

    def events_for(self, request_id: str, *, limit: int) -> list[RequestEvent]:
        return [e for e in self._t.mpesa_events if e.request_id == request_id][:limit]

    def unanswered_pushes(
        self, *, phone: str, amount_cents: int, since: datetime, until: datetime, limit: int
    ) -> list[MpesaRequest]:
        maybe_sent = (RequestState.SENDING, RequestState.UNKNOWN)

        def unanswered(r: MpesaRequest) -> bool:
            return (
                r.kind is RequestKind.STK
                and r.phone == phone
                and r.amount_cents == amount_cents
                and since <= r.created_at <= until
                and r.checkout_request_id is None
                and r.receipt is None
                and (
                    r.state in maybe_sent
                    or (r.state is RequestState.FAILED and r.result_code == UNANSWERED_PUSH_CODE)
                )
            )

        found = self._where(unanswered)
        found.sort(key=lambda r: (r.created_at, r.id))
        return found[:limit]

    def save(self, request: MpesaRequest, now: datetime) -> None:
        stored = self._t.mpesa_requests.get(request.id)
        assert stored is not None, request.id
        fixed = ("kind", "purpose", "user_id", "loan_id", "phone", "amount_cents")
        # Only the mutable columns are written: what else the caller changed is not kept.
        kept = {name: getattr(stored, name) for name in (*fixed, "idempotency_key", "created_at")}
        self._store(replace(request, **kept, updated_at=now))
        request.updated_at = now

    def find_by_checkouts(self, checkout_request_ids: Sequence[str]) -> list[MpesaRequest]:
        wanted = set(checkout_request_ids)
        return self._where(lambda r: r.checkout_request_id in wanted)

    def lock_by_checkout(self, checkout_request_ids: Sequence[str]) -> list[MpesaRequest]:
        return sorted(self.find_by_checkouts(checkout_request_ids), key=lambda r: r.id)

    def save_many(self, requests: Sequence[MpesaRequest], now: datetime) -> None:
        for request in requests:
            self.save(request, now)

    def due_checks(self, *, now: datetime, limit: int) -> list[str]:
        checked = (RequestState.SENDING, RequestState.SENT, RequestState.UNKNOWN)
        found = self._where(
            lambda r: r.state in checked and r.next_check_at is not None and r.next_check_at <= now
        )
        found.sort(key=lambda r: r.next_check_at or now)
        return [r.id for r in found[:limit]]

    def in_states(
        self, *, states: Sequence[RequestState], limit: int, user_id: str | None = None
    ) -> list[MpesaRequest]:
        found = self._where(
            lambda r: (not states or r.state in states) and user_id in (None, r.user_id)
        )
        found.sort(key=lambda r: r.created_at, reverse=True)
        return found[:limit]

    def count(self, *, loan_id: str, purpose: Purpose) -> int:
        return len(self._where(lambda r: r.loan_id == loan_id and r.purpose is purpose))

    def stk_pushes_like(
        self,
        *,
        amount_cents: int,
        phone: str | None,
        created_from: datetime,
        created_to: datetime,
        limit: int,
    ) -> list[MpesaRequest]:
        found = self._where(
            lambda r: (
                r.kind is RequestKind.STK
                and r.amount_cents == amount_cents
                and created_from <= r.created_at <= created_to
                and r.receipt is None
                and phone in (None, r.phone)
            )
        )
        return found[:limit]

    def reversals(self, *, limit: int) -> list[MpesaRequest]:
        found = self._where(lambda r: r.kind is RequestKind.REVERSAL)
        found.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        return found[:limit]

    def reversals_of(self, original_receipt: str) -> list[MpesaRequest]:
        found = self._where(
            lambda r: r.kind is RequestKind.REVERSAL and r.original_receipt == original_receipt
        )
        return sorted(found, key=lambda r: (r.created_at, r.id))

    def find_by_conversation(self, conversation_id: str) -> MpesaRequest | None:
        return self._first(
            lambda r: r.kind is RequestKind.REVERSAL and r.conversation_id == conversation_id
        )

    def _first(self, wanted: Callable[[MpesaRequest], bool]) -> MpesaRequest | None:
        found = self._where(wanted)
        return found[0] if found else None

    def _where(self, wanted: Callable[[MpesaRequest], bool]) -> list[MpesaRequest]:
        return [replace(r) for r in self._t.mpesa_requests.values() if wanted(r)]

    def _store(self, request: MpesaRequest) -> None:
        """Checks what the schema checks: unique ids, the rows it points at."""
        for name in _UNIQUE:
            value = getattr(request, name)
            if value is None:
                continue
            for other in self._t.mpesa_requests.values():
                if other.id != request.id and getattr(other, name) == value:
                    raise ConstraintViolated(f"mpesa_requests.{name} {value} is taken")
        if request.user_id is not None and request.user_id not in self._t.users:
            raise ConstraintViolated(f"mpesa_requests.user_id {request.user_id}")
        if request.loan_id is not None and request.loan_id not in self._t.loans:
            raise ConstraintViolated(f"mpesa_requests.loan_id {request.loan_id}")
        if request.hold_id is not None and request.hold_id not in self._t.holds:
            raise ConstraintViolated(f"mpesa_requests.hold_id {request.hold_id}")
        self._t.mpesa_requests[request.id] = replace(request)
