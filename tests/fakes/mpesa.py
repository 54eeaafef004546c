"""The rest of M-PESA in memory: the callback inbox, the outbox, suspense, paybill payments
awaited, payment claims, Pull API passes, preferences, payouts due and balance reports.

Each refuses what its SQL repository refuses, the same way: a key already stored is False (or
None) where SQL inserts with ON CONFLICT DO NOTHING or in a savepoint, and ConstraintViolated
where SQL would raise IntegrityError. Locks are reads (one writer at a time in the fake).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from deni.domain.loans import LoanState
from deni.domain.mpesa import Purpose
from deni.services.mpesa.ports import (
    BalanceReport,
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
from tests.fakes.tables import ConstraintViolated, OutboxRow, PreferencesRow, Tables

ERROR_CHARS_MAX = 300


class FakeCallbackInboxRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def add(
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
        key = dedupe_key[:200]
        if any(row.dedupe_key == key for row in self._t.inbox.values()):
            return None
        # SQLite's INTEGER PRIMARY KEY: one past the largest id stored.
        inbox_id = max(self._t.inbox, default=0) + 1
        row = InboxRow(inbox_id, kind, key, body, state, 0, error[:ERROR_CHARS_MAX], now)
        self._t.inbox[inbox_id] = row
        return inbox_id

    def get(self, inbox_id: int) -> InboxRow | None:
        return self._t.inbox.get(inbox_id)

    def lock(self, inbox_id: int) -> InboxRow | None:
        return self.get(inbox_id)

    def mark(self, inbox_id: int, *, state: InboxState, error: str, now: datetime) -> None:
        self.mark_many([(inbox_id, state, error)], now=now)

    def mark_many(self, marks: Sequence[tuple[int, InboxState, str]], *, now: datetime) -> None:
        for inbox_id, state, error in marks:
            row = self._t.inbox.get(inbox_id)
            if row is not None:
                marked = replace(
                    row, state=state, error=error[:ERROR_CHARS_MAX], attempts=row.attempts + 1
                )
                self._t.inbox[inbox_id] = marked

    def claim(self, *, limit: int) -> list[InboxRow]:
        # SKIP LOCKED skips nothing here: no other transaction holds a row while this one runs.
        return self.received(limit=limit)

    def received(self, *, limit: int) -> list[InboxRow]:
        return self._in([InboxState.RECEIVED])[:limit]

    def ids(self, *, states: Sequence[InboxState], limit: int) -> list[int]:
        return [row.id for row in self._in(states)[:limit]]

    def rows(self, *, states: Sequence[InboxState], limit: int) -> list[InboxRow]:
        return self._in(states)[::-1][:limit]

    def keys_stored(self, dedupe_keys: Sequence[str]) -> set[str]:
        wanted = set(dedupe_keys)
        return {row.dedupe_key for row in self._t.inbox.values() if row.dedupe_key in wanted}

    def _in(self, states: Sequence[InboxState]) -> list[InboxRow]:
        return sorted((r for r in self._t.inbox.values() if r.state in states), key=lambda r: r.id)


class FakeOutboxRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def add(self, message: OutboxMessage, now: datetime) -> bool:
        rows = self._t.outbox.values()
        if message.id in self._t.outbox or any(
            row.message.unique_key == message.unique_key for row in rows
        ):
            return False
        self._t.outbox[message.id] = OutboxRow(replace(message, created_at=now))
        return True

    def claim_due(self, *, now: datetime, limit: int, lease_s: float) -> list[OutboxMessage]:
        def due(row: OutboxRow) -> bool:
            state = row.message.state
            if state is OutboxState.PENDING:
                return row.message.next_attempt_at <= now
            lapsed = row.claimed_until is not None and row.claimed_until < now
            return state is OutboxState.SENDING and lapsed

        found = sorted(
            (row for row in self._t.outbox.values() if due(row)),
            key=lambda row: row.message.next_attempt_at,
        )[:limit]
        claimed = []
        for row in found:
            message = replace(
                row.message, state=OutboxState.SENDING, attempts=row.message.attempts + 1
            )
            self._t.outbox[message.id] = OutboxRow(message, now + timedelta(seconds=lease_s))
            claimed.append(message)
        return claimed

    def get(self, message_id: str) -> OutboxMessage | None:
        row = self._t.outbox.get(message_id)
        return row.message if row is not None else None

    def mark_done(self, message_id: str, *, now: datetime) -> None:
        self._set(message_id, state=OutboxState.DONE)

    def mark_retry(
        self, message_id: str, *, now: datetime, next_attempt_at: datetime, error: str
    ) -> None:
        self._set(
            message_id,
            state=OutboxState.PENDING,
            next_attempt_at=next_attempt_at,
            last_error=error[:ERROR_CHARS_MAX],
        )

    def mark_dead(self, message_id: str, *, now: datetime, error: str) -> None:
        self._set(message_id, state=OutboxState.DEAD, last_error=error[:ERROR_CHARS_MAX])

    def rearm(self, message_id: str, *, now: datetime) -> bool:
        row = self._t.outbox.get(message_id)
        if row is None or row.message.state is not OutboxState.DEAD:
            return False
        rearmed = replace(row.message, state=OutboxState.PENDING, attempts=0, next_attempt_at=now)
        # The lease is left as it was, as the SQL UPDATE leaves claimed_until.
        self._t.outbox[message_id] = OutboxRow(rearmed, row.claimed_until)
        return True

    def list(self, *, states: Sequence[OutboxState], limit: int) -> list[OutboxMessage]:
        found = [row.message for row in self._t.outbox.values() if row.message.state in states]
        found.sort(key=_created_at)
        return found[:limit]

    def _set(self, message_id: str, **values: object) -> None:
        row = self._t.outbox.get(message_id)
        if row is not None:
            self._t.outbox[message_id] = OutboxRow(replace(row.message, **values))  # type: ignore[arg-type]


def _created_at(message: OutboxMessage) -> datetime:
    assert message.created_at is not None, "add() stamps it"
    return message.created_at


class FakeSuspenseRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def add(self, payment: SuspensePayment) -> bool:
        # The SQL insert runs in a savepoint, and any refusal (the receipt, the entry it points
        # at) comes back as False.
        if (
            payment.receipt in self._t.suspense
            or payment.entry_id not in self._t.entries
            or (payment.user_id is not None and payment.user_id not in self._t.users)
        ):
            return False
        self._t.suspense[payment.receipt] = replace(
            payment,
            account_reference=payment.account_reference[:40],
            phone=payment.phone[:40],
            reason=payment.reason[:200],
        )
        return True

    def lock(self, receipt: str) -> SuspensePayment | None:
        payment = self._t.suspense.get(receipt)
        return replace(payment) if payment is not None else None

    def save(self, payment: SuspensePayment) -> None:
        stored = self._t.suspense.get(payment.receipt)
        if stored is None:
            return
        if payment.user_id is not None and payment.user_id not in self._t.users:
            raise ConstraintViolated(f"suspense_payments.user_id {payment.user_id}")
        self._t.suspense[payment.receipt] = replace(
            stored, state=payment.state, user_id=payment.user_id, assigned_at=payment.assigned_at
        )

    def in_states(self, *, states: Sequence[SuspenseState], limit: int) -> list[SuspensePayment]:
        found = [replace(p) for p in self._t.suspense.values() if p.state in states]
        found.sort(key=lambda p: p.created_at)
        return found[:limit]


class FakeExpectedPaybillRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def expect(self, expected: ExpectedPaybill) -> bool:
        if expected.trans_id in self._t.paybills:
            return False
        self._store(expected)
        return True

    def due(self, *, now: datetime, limit: int) -> list[ExpectedPaybill]:
        found = [
            replace(p)
            for p in self._t.paybills.values()
            if p.state is PaybillCheck.WAITING and p.next_check_at is not None
            and p.next_check_at <= now
        ]  # fmt: skip
        found.sort(key=lambda p: p.next_check_at or now)
        return found[:limit]

    def lock(self, trans_id: str) -> ExpectedPaybill | None:
        return self.get(trans_id)

    def get(self, trans_id: str) -> ExpectedPaybill | None:
        expected = self._t.paybills.get(trans_id)
        return replace(expected) if expected is not None else None

    def by_status_conversation(self, conversation_id: str) -> ExpectedPaybill | None:
        rows = self._t.paybills.values()
        found = (p for p in rows if p.status_conversation_id == conversation_id)
        return next((replace(p) for p in found), None)

    def save(self, expected: ExpectedPaybill) -> None:
        if expected.trans_id in self._t.paybills:
            self._store(expected)

    def in_states(self, *, states: Sequence[PaybillCheck], limit: int) -> list[ExpectedPaybill]:
        found = [replace(p) for p in self._t.paybills.values() if p.state in states]
        found.sort(key=lambda p: p.created_at, reverse=True)
        return found[:limit]

    def _store(self, expected: ExpectedPaybill) -> None:
        conversation = expected.status_conversation_id
        if conversation is not None and any(
            p.status_conversation_id == conversation and p.trans_id != expected.trans_id
            for p in self._t.paybills.values()
        ):
            raise ConstraintViolated(f"expected_paybills.status_conversation_id {conversation}")
        self._t.paybills[expected.trans_id] = replace(
            expected,
            account_reference=expected.account_reference[:40],
            phone_raw=expected.phone_raw[:80],
            result_desc=expected.result_desc[:200],
        )


class FakePaymentClaimRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def add(self, claim: PaymentClaim) -> bool:
        if claim.receipt in self._t.claims:
            return False
        self._store(claim)
        return True

    def lock(self, receipt: str) -> PaymentClaim | None:
        claim = self._t.claims.get(receipt)
        return replace(claim) if claim is not None else None

    def save(self, claim: PaymentClaim) -> None:
        if claim.receipt in self._t.claims:
            self._store(claim)

    def by_status_conversation(self, conversation_id: str) -> PaymentClaim | None:
        rows = self._t.claims.values()
        found = (c for c in rows if c.status_conversation_id == conversation_id)
        return next((replace(c) for c in found), None)

    def due(self, *, now: datetime, limit: int) -> list[PaymentClaim]:
        found = [
            replace(c)
            for c in self._t.claims.values()
            if c.state is ClaimState.WAITING and c.next_check_at is not None
            and c.next_check_at <= now
        ]  # fmt: skip
        found.sort(key=lambda c: c.next_check_at or now)
        return found[:limit]

    def in_states(self, *, states: Sequence[ClaimState], limit: int) -> list[PaymentClaim]:
        found = [replace(c) for c in self._t.claims.values() if c.state in states]
        found.sort(key=lambda c: c.claimed_at, reverse=True)
        return found[:limit]

    def for_receipts(self, receipts: Sequence[str]) -> dict[str, PaymentClaim]:
        return {r: replace(self._t.claims[r]) for r in set(receipts) if r in self._t.claims}

    def arriving(self, user_id: str, *, limit: int) -> list[PaymentClaim]:
        found = [
            replace(c)
            for c in self._t.claims.values()
            if c.user_id == user_id and c.state is ClaimState.WAITING
        ]
        found.sort(key=lambda c: c.claimed_at, reverse=True)
        return found[:limit]

    def confirmation_waits(self, bounds_ms: Sequence[int]) -> tuple[list[int], int, int]:
        claims = self._t.claims.values()
        waits = [c.confirm_wait_ms for c in claims if c.confirm_wait_ms is not None]
        counts = [sum(1 for wait in waits if wait <= bound) for bound in bounds_ms]
        return counts, len(waits), sum(waits)

    def receipts_seen(self, receipts: Sequence[str]) -> set[str]:
        wanted = set(receipts)
        seen = wanted & (set(self._t.claims) | set(self._t.suspense))
        seen |= {r.receipt for r in self._t.mpesa_requests.values() if r.receipt in wanted}
        credited = {row.entry.idempotency_key for row in self._t.entries.values()}
        seen |= {receipt for receipt in wanted if f"mpesa:{receipt}" in credited}
        return seen

    def _store(self, claim: PaymentClaim) -> None:
        conversation = claim.status_conversation_id
        if conversation is not None and any(
            c.status_conversation_id == conversation and c.receipt != claim.receipt
            for c in self._t.claims.values()
        ):
            raise ConstraintViolated(f"payment_claims.status_conversation_id {conversation}")
        if claim.user_id is not None and claim.user_id not in self._t.users:
            raise ConstraintViolated(f"payment_claims.user_id {claim.user_id}")
        self._t.claims[claim.receipt] = replace(
            claim,
            account_reference=claim.account_reference[:40],
            phone_raw=claim.phone_raw[:80],
            result_desc=claim.result_desc[:200],
            decided_by=claim.decided_by[:100],
        )


class FakePaybillPullRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def add(self, pull: PaybillPull) -> None:
        if pull.id in self._t.pulls:
            raise ConstraintViolated(f"paybill_pulls.id {pull.id} is taken")
        self._store(pull)

    def save(self, pull: PaybillPull) -> None:
        if pull.id in self._t.pulls:
            self._store(pull)

    def last(self, *, finished_only: bool) -> PaybillPull | None:
        pulls = list(self._t.pulls.values())
        if finished_only:
            done = [p for p in pulls if p.state == "done"]
            found = max(done, key=lambda p: p.window_end, default=None)
        else:
            found = max(pulls, key=lambda p: p.started_at, default=None)
        return replace(found) if found is not None else None

    def _store(self, pull: PaybillPull) -> None:
        if pull.window_start > pull.window_end:
            raise ConstraintViolated("CHECK window on paybill_pulls")
        self._t.pulls[pull.id] = replace(pull, error=pull.error[:200])


class FakePreferencesRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def get(self, user_id: str) -> MpesaPreferences:
        row = self._t.mpesa_preferences.get(user_id)
        return row.preferences if row is not None else MpesaPreferences(user_id)

    def set(self, preferences: MpesaPreferences, now: datetime) -> None:
        if preferences.user_id not in self._t.users:
            raise ConstraintViolated(f"mpesa_preferences.user_id {preferences.user_id}")
        self._t.mpesa_preferences[preferences.user_id] = PreferencesRow(preferences, now)


class FakePayoutCandidateRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def loans_to_disburse(self, *, since: datetime, limit: int) -> list[PayoutCandidate]:
        requested = {
            r.loan_id for r in self._t.mpesa_requests.values() if r.purpose is Purpose.DISBURSEMENT
        }
        found = []
        for loan in self._t.loans.values():
            prefs = self._t.mpesa_preferences.get(loan.borrower_id)
            if (
                loan.state in (LoanState.ACTIVE, LoanState.REPAID)
                and loan.disbursed_at is not None
                and loan.disbursed_at >= since
                and (prefs is None or prefs.preferences.disburse_to_mpesa)
                and loan.id not in requested
            ):
                found.append(loan)
        found.sort(key=lambda loan: loan.disbursed_at or since)
        return [
            PayoutCandidate(loan.id, loan.borrower_id, loan.id, loan.terms.principal_cents)
            for loan in found[:limit]
        ]

    def repayments_to_pay_out(self, *, since: datetime, limit: int) -> list[PayoutCandidate]:
        keys = {r.idempotency_key for r in self._t.mpesa_requests.values()}
        found = []
        for repayment in self._t.repayments.values():
            loan = self._t.loans[repayment.loan_id]
            prefs = self._t.mpesa_preferences.get(loan.lender_id)
            if (
                prefs is not None
                and prefs.preferences.auto_payout
                and repayment.created_at >= since
                and repayment.created_at >= prefs.updated_at
                and f"auto_payout:{loan.lender_id}:{repayment.id}" not in keys
            ):
                found.append(repayment)
        found.sort(key=lambda repayment: repayment.created_at)
        return [
            PayoutCandidate(r.id, self._t.loans[r.loan_id].lender_id, r.loan_id, r.amount_cents)
            for r in found[:limit]
        ]


class FakeBalanceReportRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def add(self, report: BalanceReport) -> None:
        if report.id in self._t.balance_reports:
            raise ConstraintViolated(f"balance_reports.id {report.id} is taken")
        self._store(report)

    def by_conversation(self, conversation_id: str) -> BalanceReport | None:
        rows = self._t.balance_reports.values()
        found = (r for r in rows if r.conversation_id == conversation_id)
        return next((replace(r) for r in found), None)

    def save(self, report: BalanceReport) -> None:
        if report.id in self._t.balance_reports:
            self._store(report)

    def latest(self, *, limit: int) -> list[BalanceReport]:
        found = [replace(r) for r in self._t.balance_reports.values()]
        found.sort(key=lambda r: r.requested_at, reverse=True)
        return found[:limit]

    def _store(self, report: BalanceReport) -> None:
        conversation = report.conversation_id
        if conversation is not None and any(
            r.conversation_id == conversation and r.id != report.id
            for r in self._t.balance_reports.values()
        ):
            raise ConstraintViolated(f"balance_reports.conversation_id {conversation}")
        self._t.balance_reports[report.id] = replace(report, result_desc=report.result_desc[:200])
