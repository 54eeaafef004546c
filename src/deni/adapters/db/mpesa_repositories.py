"""SQL repositories for the M-PESA work: requests, inbox, suspense, preferences, outbox, token."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
)
from sqlalchemy import update as sql_update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from deni.adapters.db import mpesa_tables as m
from deni.adapters.db import tables as t
from deni.adapters.db.upsert import insert_or_nothing
from deni.domain.loans import LoanState
from deni.domain.mpesa import (
    UNANSWERED_PUSH_CODE,
    EventKind,
    MpesaRequest,
    Purpose,
    RequestEvent,
    RequestKind,
    RequestState,
)
from deni.services.mpesa.ports import (
    BalanceReport,
    ClaimSource,
    ClaimState,
    ExpectedPaybill,
    InboxRow,
    InboxState,
    MpesaPreferences,
    OutboxMessage,
    OutboxState,
    PaybillCheck,
    PaybillPull,
    PaymentClaim,
    PayoutCandidate,
    SuspensePayment,
    SuspenseState,
)

ERROR_CHARS_MAX = 300
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


# Statements on the callback path are built once: building one per call (values as literals,
# then its cache key) cost more CPU than executing it.
_INBOX_COLUMNS = (
    "kind",
    "dedupe_key",
    "body",
    "source_ip",
    "state",
    "attempts",
    "error",
    "received_at",
    "updated_at",
)


def _inbox_add(dialect: str) -> Any:
    """INSERT ... ON CONFLICT (dedupe_key) DO NOTHING RETURNING id: a repeat inserts nothing and
    returns no id, in one statement; no savepoint round trips on the acknowledgement path."""
    make = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = make(m.callback_inbox).values({name: bindparam(name) for name in _INBOX_COLUMNS})
    key = [m.callback_inbox.c.dedupe_key]
    return statement.on_conflict_do_nothing(index_elements=key).returning(m.callback_inbox.c.id)


_INBOX_ADD = {dialect: _inbox_add(dialect) for dialect in ("postgresql", "sqlite")}
_INBOX_MARK = (
    sql_update(m.callback_inbox)
    .where(m.callback_inbox.c.id == bindparam("mark_id"))
    .values(
        state=bindparam("mark_state"),
        error=bindparam("mark_error"),
        attempts=m.callback_inbox.c.attempts + 1,
        updated_at=bindparam("mark_at"),
    )
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


def _inserted(connection: Connection, statement: Any) -> bool:
    """Run an INSERT in a savepoint; False when a unique key was already taken."""
    try:
        with connection.begin_nested():
            connection.execute(statement)
    except IntegrityError:
        return False
    return True


class SqlMpesaRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    # --- requests ---------------------------------------------------------------------------

    def add_request(self, request: MpesaRequest) -> None:
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
                created_at=request.created_at,
                updated_at=request.updated_at,
                **{**values, "state": request.state.value},
            )
        )

    def _one(self, *where: Any, lock: bool = False) -> MpesaRequest | None:
        query = select(m.mpesa_requests).where(*where)
        if lock:
            query = query.with_for_update()
        row = self._connection.execute(query).first()
        return _request(row) if row else None

    def get_request(self, request_id: str) -> MpesaRequest | None:
        return self._one(m.mpesa_requests.c.id == request_id)

    def lock_request(self, request_id: str) -> MpesaRequest | None:
        return self._one(m.mpesa_requests.c.id == request_id, lock=True)

    def find_request(self, idempotency_key: str) -> MpesaRequest | None:
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
        return [_request(row) for row in self._connection.execute(query)]

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
        return [_request(row) for row in self._connection.execute(query)]

    def save_request(self, request: MpesaRequest, now: datetime) -> None:
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
        return [_request(row) for row in self._connection.execute(query)]

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
        return [_request(row) for row in self._connection.execute(query)]

    def save_requests(self, requests: Sequence[MpesaRequest], now: datetime) -> None:
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

    def list_requests(
        self, *, states: Sequence[RequestState], limit: int, user_id: str | None = None
    ) -> list[MpesaRequest]:
        c = m.mpesa_requests.c
        query = select(m.mpesa_requests).order_by(c.created_at.desc()).limit(limit)
        if states:
            query = query.where(c.state.in_([s.value for s in states]))
        if user_id is not None:
            query = query.where(c.user_id == user_id)
        return [_request(row) for row in self._connection.execute(query)]

    def count_requests(self, *, loan_id: str, purpose: Purpose) -> int:
        c = m.mpesa_requests.c
        query = select(func.count()).where(c.loan_id == loan_id, c.purpose == purpose.value)
        return int(self._connection.execute(query).scalar_one())

    # --- callback inbox -----------------------------------------------------------------------

    def inbox_add(
        self,
        *,
        kind: str,
        dedupe_key: str,
        body: bytes,
        source_ip: str,
        state: InboxState,
        error: str,
        now: datetime,
    ) -> int | None:
        values = {
            "kind": kind,
            "dedupe_key": dedupe_key[:200],
            "body": body,
            "source_ip": source_ip[:64],
            "state": state.value,
            "attempts": 0,
            "error": error[:ERROR_CHARS_MAX],
            "received_at": now,
            "updated_at": now,
        }
        statement = _INBOX_ADD[self._connection.dialect.name]
        inserted = self._connection.execute(statement, values).scalar_one_or_none()
        return None if inserted is None else int(inserted)

    def inbox_get(self, inbox_id: int) -> InboxRow | None:
        row = self._connection.execute(
            select(m.callback_inbox).where(m.callback_inbox.c.id == inbox_id)
        ).first()
        return _inbox(row) if row else None

    def inbox_lock(self, inbox_id: int) -> InboxRow | None:
        row = self._connection.execute(
            select(m.callback_inbox).where(m.callback_inbox.c.id == inbox_id).with_for_update()
        ).first()
        return _inbox(row) if row else None

    def inbox_mark(self, inbox_id: int, *, state: InboxState, error: str, now: datetime) -> None:
        self.inbox_mark_many([(inbox_id, state, error)], now=now)

    def inbox_mark_many(
        self, marks: Sequence[tuple[int, InboxState, str]], *, now: datetime
    ) -> None:
        if not marks:
            return
        self._connection.execute(
            _INBOX_MARK,
            [
                {
                    "mark_id": inbox_id,
                    "mark_state": state.value,
                    "mark_error": error[:ERROR_CHARS_MAX],
                    "mark_at": now,
                }
                for inbox_id, state, error in marks
            ],
        )

    def inbox_claim(self, *, limit: int) -> list[InboxRow]:
        c = m.callback_inbox.c
        query = (
            select(m.callback_inbox)
            .where(c.state == InboxState.RECEIVED.value)
            .order_by(c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [_inbox(row) for row in self._connection.execute(query)]

    def inbox_received(self, *, limit: int) -> list[InboxRow]:
        c = m.callback_inbox.c
        query = (
            select(m.callback_inbox)
            .where(c.state == InboxState.RECEIVED.value)
            .order_by(c.id)
            .limit(limit)
        )
        return [_inbox(row) for row in self._connection.execute(query)]

    def inbox_ids(self, *, states: Sequence[InboxState], limit: int) -> list[int]:
        c = m.callback_inbox.c
        query = (
            select(c.id).where(c.state.in_([s.value for s in states])).order_by(c.id).limit(limit)
        )
        return [int(i) for i in self._connection.execute(query).scalars()]

    def inbox_rows(self, *, states: Sequence[InboxState], limit: int) -> list[InboxRow]:
        c = m.callback_inbox.c
        query = (
            select(m.callback_inbox)
            .where(c.state.in_([s.value for s in states]))
            .order_by(c.id.desc())
            .limit(limit)
        )
        return [_inbox(row) for row in self._connection.execute(query)]

    # --- suspense -----------------------------------------------------------------------------

    def suspense_add(self, payment: SuspensePayment) -> bool:
        return _inserted(
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

    def suspense_lock(self, receipt: str) -> SuspensePayment | None:
        row = self._connection.execute(
            select(m.suspense_payments)
            .where(m.suspense_payments.c.receipt == receipt)
            .with_for_update()
        ).first()
        return _suspense(row) if row else None

    def suspense_save(self, payment: SuspensePayment) -> None:
        self._connection.execute(
            sql_update(m.suspense_payments)
            .where(m.suspense_payments.c.receipt == payment.receipt)
            .values(
                state=payment.state.value,
                user_id=payment.user_id,
                assigned_at=payment.assigned_at,
            )
        )

    def suspense_list(
        self, *, states: Sequence[SuspenseState], limit: int
    ) -> list[SuspensePayment]:
        c = m.suspense_payments.c
        query = (
            select(m.suspense_payments)
            .where(c.state.in_([s.value for s in states]))
            .order_by(c.created_at)
            .limit(limit)
        )
        return [_suspense(row) for row in self._connection.execute(query)]

    # --- preferences --------------------------------------------------------------------------

    def preferences(self, user_id: str) -> MpesaPreferences:
        row = self._connection.execute(
            select(m.mpesa_preferences).where(m.mpesa_preferences.c.user_id == user_id)
        ).first()
        if row is None:
            return MpesaPreferences(user_id)
        return MpesaPreferences(user_id, bool(row.disburse_to_mpesa), bool(row.auto_payout))

    def set_preferences(self, preferences: MpesaPreferences, now: datetime) -> None:
        values = {
            "disburse_to_mpesa": preferences.disburse_to_mpesa,
            "auto_payout": preferences.auto_payout,
            "updated_at": now,
        }
        changed = self._connection.execute(
            sql_update(m.mpesa_preferences)
            .where(m.mpesa_preferences.c.user_id == preferences.user_id)
            .values(**values)
        )
        if changed.rowcount == 0:
            self._connection.execute(
                insert(m.mpesa_preferences).values(user_id=preferences.user_id, **values)
            )

    # --- sweeps -------------------------------------------------------------------------------

    def loans_to_disburse(self, *, since: datetime, limit: int) -> list[PayoutCandidate]:
        loans, prefs, requests = t.loans, m.mpesa_preferences, m.mpesa_requests
        already = exists().where(
            requests.c.loan_id == loans.c.id,
            requests.c.purpose == Purpose.DISBURSEMENT.value,
        )
        query = (
            select(loans.c.id, loans.c.borrower_id, loans.c.principal_cents)
            .outerjoin(prefs, prefs.c.user_id == loans.c.borrower_id)
            .where(
                loans.c.state.in_([LoanState.ACTIVE.value, LoanState.REPAID.value]),
                loans.c.disbursed_at >= since,
                or_(prefs.c.user_id.is_(None), prefs.c.disburse_to_mpesa.is_(True)),
                ~already,
            )
            .order_by(loans.c.disbursed_at)
            .limit(limit)
        )
        return [
            PayoutCandidate(row.id, row.borrower_id, row.id, int(row.principal_cents))
            for row in self._connection.execute(query)
        ]

    def repayments_to_pay_out(self, *, since: datetime, limit: int) -> list[PayoutCandidate]:
        r, loans, prefs, requests = t.repayments, t.loans, m.mpesa_preferences, m.mpesa_requests
        already = exists().where(
            requests.c.idempotency_key
            == literal("auto_payout:") + loans.c.lender_id + literal(":") + r.c.id,
        )
        query = (
            select(r.c.id, r.c.loan_id, r.c.amount_cents, loans.c.lender_id)
            .join(loans, loans.c.id == r.c.loan_id)
            .join(prefs, and_(prefs.c.user_id == loans.c.lender_id, prefs.c.auto_payout.is_(True)))
            .where(r.c.created_at >= since, r.c.created_at >= prefs.c.updated_at, ~already)
            .order_by(r.c.created_at)
            .limit(limit)
        )
        return [
            PayoutCandidate(row.id, row.lender_id, row.loan_id, int(row.amount_cents))
            for row in self._connection.execute(query)
        ]

    # --- balance reports ----------------------------------------------------------------------

    def expect_paybill(self, expected: ExpectedPaybill) -> bool:
        # On the validation path, which M-PESA waits for: one statement, no savepoint.
        table = m.expected_paybills
        statement = insert_or_nothing(
            self._connection, table, _paybill_values(expected), conflict_columns=["trans_id"]
        )
        return self._connection.execute(statement.returning(table.c.trans_id)).first() is not None

    def due_paybills(self, *, now: datetime, limit: int) -> list[ExpectedPaybill]:
        c = m.expected_paybills.c
        query = (
            select(m.expected_paybills)
            .where(c.state == PaybillCheck.WAITING.value, c.next_check_at <= now)
            .order_by(c.next_check_at)
            .limit(limit)
        )
        return [_paybill(row) for row in self._connection.execute(query)]

    def lock_paybill(self, trans_id: str) -> ExpectedPaybill | None:
        query = select(m.expected_paybills).where(m.expected_paybills.c.trans_id == trans_id)
        row = self._connection.execute(query.with_for_update()).first()
        return _paybill(row) if row else None

    def paybill(self, trans_id: str) -> ExpectedPaybill | None:
        query = select(m.expected_paybills).where(m.expected_paybills.c.trans_id == trans_id)
        row = self._connection.execute(query).first()
        return _paybill(row) if row else None

    def paybill_by_status_conversation(self, conversation_id: str) -> ExpectedPaybill | None:
        c = m.expected_paybills.c
        query = select(m.expected_paybills).where(c.status_conversation_id == conversation_id)
        row = self._connection.execute(query).first()
        return _paybill(row) if row else None

    def save_paybill(self, expected: ExpectedPaybill) -> None:
        values = _paybill_values(expected)
        del values["trans_id"]
        self._connection.execute(
            sql_update(m.expected_paybills)
            .where(m.expected_paybills.c.trans_id == expected.trans_id)
            .values(values)
        )

    def list_paybills(self, *, states: Sequence[PaybillCheck], limit: int) -> list[ExpectedPaybill]:
        c = m.expected_paybills.c
        query = (
            select(m.expected_paybills)
            .where(c.state.in_([s.value for s in states]))
            .order_by(c.created_at.desc())
            .limit(limit)
        )
        return [_paybill(row) for row in self._connection.execute(query)]

    def inbox_keys_stored(self, dedupe_keys: Sequence[str]) -> set[str]:
        if not dedupe_keys:
            return set()
        c = m.callback_inbox.c
        query = select(c.dedupe_key).where(c.dedupe_key.in_(list(dedupe_keys)))
        return set(self._connection.execute(query).scalars())

    # --- payments claimed by a callback ----------------------------------------------------------

    def claim_add(self, claim: PaymentClaim) -> bool:
        table = m.payment_claims
        statement = insert_or_nothing(
            self._connection, table, _claim_values(claim), conflict_columns=["receipt"]
        )
        return self._connection.execute(statement.returning(table.c.receipt)).first() is not None

    def claim_lock(self, receipt: str) -> PaymentClaim | None:
        query = select(m.payment_claims).where(m.payment_claims.c.receipt == receipt)
        row = self._connection.execute(query.with_for_update()).first()
        return _claim(row) if row else None

    def claim_save(self, claim: PaymentClaim) -> None:
        values = _claim_values(claim)
        del values["receipt"]
        self._connection.execute(
            sql_update(m.payment_claims)
            .where(m.payment_claims.c.receipt == claim.receipt)
            .values(values)
        )

    def claim_by_status_conversation(self, conversation_id: str) -> PaymentClaim | None:
        c = m.payment_claims.c
        query = select(m.payment_claims).where(c.status_conversation_id == conversation_id)
        row = self._connection.execute(query).first()
        return _claim(row) if row else None

    def due_claims(self, *, now: datetime, limit: int) -> list[PaymentClaim]:
        c = m.payment_claims.c
        query = (
            select(m.payment_claims)
            .where(c.state == ClaimState.WAITING.value, c.next_check_at <= now)
            .order_by(c.next_check_at)
            .limit(limit)
        )
        return [_claim(row) for row in self._connection.execute(query)]

    def list_claims(self, *, states: Sequence[ClaimState], limit: int) -> list[PaymentClaim]:
        c = m.payment_claims.c
        query = (
            select(m.payment_claims)
            .where(c.state.in_([s.value for s in states]))
            .order_by(c.claimed_at.desc())
            .limit(limit)
        )
        return [_claim(row) for row in self._connection.execute(query)]

    def claims_for(self, receipts: Sequence[str]) -> dict[str, PaymentClaim]:
        if not receipts:
            return {}
        query = select(m.payment_claims).where(m.payment_claims.c.receipt.in_(list(receipts)))
        return {row.receipt: _claim(row) for row in self._connection.execute(query)}

    def arriving(self, user_id: str, *, limit: int) -> list[PaymentClaim]:
        c = m.payment_claims.c
        query = (
            select(m.payment_claims)
            .where(c.user_id == user_id, c.state == ClaimState.WAITING.value)
            .order_by(c.claimed_at.desc())
            .limit(limit)
        )
        return [_claim(row) for row in self._connection.execute(query)]

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

    # --- the Pull API ---------------------------------------------------------------------------

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
        return [_request(row) for row in self._connection.execute(query.limit(limit))]

    def pull_add(self, pull: PaybillPull) -> None:
        self._connection.execute(insert(m.paybill_pulls).values(**_pull_values(pull)))

    def pull_save(self, pull: PaybillPull) -> None:
        values = _pull_values(pull)
        del values["id"]
        self._connection.execute(
            sql_update(m.paybill_pulls).where(m.paybill_pulls.c.id == pull.id).values(values)
        )

    def last_pull(self, *, finished_only: bool) -> PaybillPull | None:
        c = m.paybill_pulls.c
        query = select(m.paybill_pulls)
        if finished_only:
            query = query.where(c.state == "done").order_by(c.window_end.desc())
        else:
            query = query.order_by(c.started_at.desc())
        row = self._connection.execute(query.limit(1)).first()
        return PaybillPull(**row._asdict()) if row else None

    def report_add(self, report: BalanceReport) -> None:
        self._connection.execute(insert(m.balance_reports).values(**_report_values(report)))

    def report_by_conversation(self, conversation_id: str) -> BalanceReport | None:
        row = self._connection.execute(
            select(m.balance_reports).where(m.balance_reports.c.conversation_id == conversation_id)
        ).first()
        return _report(row) if row else None

    def report_save(self, report: BalanceReport) -> None:
        values = _report_values(report)
        del values["id"]
        self._connection.execute(
            sql_update(m.balance_reports).where(m.balance_reports.c.id == report.id).values(values)
        )

    def reports(self, *, limit: int) -> list[BalanceReport]:
        query = select(m.balance_reports).order_by(m.balance_reports.c.requested_at.desc())
        return [_report(row) for row in self._connection.execute(query.limit(limit))]


class SqlOutboxRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, message: OutboxMessage, now: datetime) -> bool:
        return _inserted(
            self._connection,
            insert(m.outbox).values(
                id=message.id,
                topic=message.topic,
                payload=message.payload,
                unique_key=message.unique_key,
                state=message.state.value,
                attempts=message.attempts,
                next_attempt_at=message.next_attempt_at,
                claimed_until=None,
                last_error=message.last_error,
                created_at=now,
                updated_at=now,
            ),
        )

    def claim_due(self, *, now: datetime, limit: int, lease_s: float) -> list[OutboxMessage]:
        c = m.outbox.c
        due = or_(
            and_(c.state == OutboxState.PENDING.value, c.next_attempt_at <= now),
            and_(c.state == OutboxState.SENDING.value, c.claimed_until < now),
        )
        # SKIP LOCKED: several workers each take different rows (PostgreSQL); on SQLite the
        # writer lock taken by BEGIN IMMEDIATE already serialises claimers.
        query = (
            select(c.id)
            .where(due)
            .order_by(c.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        ids = list(self._connection.execute(query).scalars())
        if not ids:
            return []
        self._connection.execute(
            sql_update(m.outbox)
            .where(c.id.in_(ids))
            .values(
                state=OutboxState.SENDING.value,
                claimed_until=now + timedelta(seconds=lease_s),
                attempts=c.attempts + 1,
                updated_at=now,
            )
        )
        rows = self._connection.execute(select(m.outbox).where(c.id.in_(ids)))
        return sorted((_message(row) for row in rows), key=lambda msg: msg.next_attempt_at)

    def get(self, message_id: str) -> OutboxMessage | None:
        row = self._connection.execute(select(m.outbox).where(m.outbox.c.id == message_id)).first()
        return _message(row) if row else None

    def _set(self, message_id: str, now: datetime, **values: Any) -> None:
        self._connection.execute(
            sql_update(m.outbox)
            .where(m.outbox.c.id == message_id)
            .values(**values, claimed_until=None, updated_at=now)
        )

    def mark_done(self, message_id: str, *, now: datetime) -> None:
        self._set(message_id, now, state=OutboxState.DONE.value)

    def mark_retry(
        self, message_id: str, *, now: datetime, next_attempt_at: datetime, error: str
    ) -> None:
        self._set(
            message_id,
            now,
            state=OutboxState.PENDING.value,
            next_attempt_at=next_attempt_at,
            last_error=error[:ERROR_CHARS_MAX],
        )

    def mark_dead(self, message_id: str, *, now: datetime, error: str) -> None:
        self._set(message_id, now, state=OutboxState.DEAD.value, last_error=error[:ERROR_CHARS_MAX])

    def rearm(self, message_id: str, *, now: datetime) -> bool:
        c = m.outbox.c
        result = self._connection.execute(
            sql_update(m.outbox)
            .where(c.id == message_id, c.state == OutboxState.DEAD.value)
            .values(
                state=OutboxState.PENDING.value, attempts=0, next_attempt_at=now, updated_at=now
            )
        )
        return result.rowcount == 1

    def list(self, *, states: Sequence[OutboxState], limit: int) -> list[OutboxMessage]:
        c = m.outbox.c
        query = (
            select(m.outbox)
            .where(c.state.in_([s.value for s in states]))
            .order_by(c.created_at)
            .limit(limit)
        )
        return [_message(row) for row in self._connection.execute(query)]


class SqlTokenStore:
    """The Daraja OAuth token in one row, read and written in short transactions of its own
    (never inside a business unit of work: the token must survive that one's rollback)."""

    def __init__(self, engine: Engine, *, name: str, clock: Any) -> None:
        assert name
        self._engine = engine
        self._name = name[:100]
        self._clock = clock

    def get(self) -> tuple[str, datetime] | None:
        c = m.daraja_tokens.c
        with self._engine.connect() as connection:
            row = connection.execute(
                select(c.token, c.expires_at).where(c.name == self._name)
            ).first()
            connection.rollback()
        return (row.token, row.expires_at) if row else None

    def put(self, token: str, expires_at: datetime) -> None:
        assert token
        assert expires_at.tzinfo is not None
        c = m.daraja_tokens.c
        now = self._clock()
        with self._engine.begin() as connection:
            changed = connection.execute(
                sql_update(m.daraja_tokens)
                .where(c.name == self._name)
                .values(token=token, expires_at=expires_at, updated_at=now)
            )
            if changed.rowcount == 0:
                connection.execute(
                    insert(m.daraja_tokens).values(
                        name=self._name, token=token, expires_at=expires_at, updated_at=now
                    )
                )


def _request(row: Row[Any]) -> MpesaRequest:
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
    )


def _inbox(row: Row[Any]) -> InboxRow:
    return InboxRow(
        id=int(row.id),
        kind=row.kind,
        dedupe_key=row.dedupe_key,
        body=bytes(row.body),
        state=InboxState(row.state),
        attempts=int(row.attempts),
        error=row.error,
        received_at=row.received_at,
    )


def _suspense(row: Row[Any]) -> SuspensePayment:
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


def _message(row: Row[Any]) -> OutboxMessage:
    return OutboxMessage(
        id=row.id,
        topic=row.topic,
        payload=row.payload,
        unique_key=row.unique_key,
        state=OutboxState(row.state),
        attempts=int(row.attempts),
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        created_at=row.created_at,
    )


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
    )


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


def _pull_values(pull: PaybillPull) -> dict[str, Any]:
    return {
        "id": pull.id,
        "window_start": pull.window_start,
        "window_end": pull.window_end,
        "state": pull.state,
        "rows": pull.rows,
        "recovered": pull.recovered,
        "left_to_stk": pull.left_to_stk,
        "error": pull.error[:200],
        "started_at": pull.started_at,
        "finished_at": pull.finished_at,
    }


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


def _claim(row: Row[Any]) -> PaymentClaim:
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
