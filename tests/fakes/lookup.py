"""The operator's look-ups over the fake tables, in the SQL adapter's orders."""

from __future__ import annotations

import copy
from collections.abc import Collection, Sequence

from deni.domain.audit import ChainRow
from deni.domain.ledger import Hold
from deni.domain.mpesa import MpesaRequest
from deni.domain.users import User
from deni.services.lookup_ports import (
    LOOKUP_ROWS_MAX,
    EntryLine,
    NotificationLine,
    PostingLine,
    SmsLine,
)
from deni.services.mpesa.ports import InboxRow, PaymentClaim, SuspensePayment
from tests.fakes.tables import Tables


def _bounded(limit: int) -> int:
    assert 1 <= limit <= LOOKUP_ROWS_MAX, limit
    return limit


class FakeLookupQueries:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def users_named(self, fragment: str, *, limit: int) -> list[User]:
        assert fragment
        wanted = fragment.lower()
        found = sorted(
            (u for u in self._t.users.values() if wanted in u.name.lower()), key=lambda u: u.id
        )
        return [copy.copy(u) for u in found[: _bounded(limit)]]

    def requests_of(
        self, *, user_id: str | None = None, loan_id: str | None = None, limit: int
    ) -> list[MpesaRequest]:
        assert (user_id is None) != (loan_id is None), "one of user_id, loan_id"
        return self._requests(
            [
                r
                for r in self._t.mpesa_requests.values()
                if (r.user_id == user_id if user_id is not None else r.loan_id == loan_id)
            ],
            limit=limit,
        )

    def requests_with_receipt(self, receipt: str, *, limit: int) -> list[MpesaRequest]:
        found = [r for r in self._t.mpesa_requests.values() if r.receipt == receipt]
        return self._requests(found, limit=limit)

    def _requests(self, found: list[MpesaRequest], *, limit: int) -> list[MpesaRequest]:
        found.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        return [copy.copy(r) for r in found[: _bounded(limit)]]

    def callbacks(self, *, key_prefixes: Sequence[str], limit: int) -> list[InboxRow]:
        found = [
            row
            for _, row in sorted(self._t.inbox.items())
            if any(row.dedupe_key.startswith(prefix) for prefix in key_prefixes)
        ]
        return found[: _bounded(limit)]

    def suspense_payment(self, receipt: str) -> SuspensePayment | None:
        found = self._t.suspense.get(receipt)
        return copy.copy(found) if found is not None else None

    def claims_of(self, user_id: str, *, limit: int) -> list[PaymentClaim]:
        found = [c for c in self._t.claims.values() if c.user_id == user_id]
        found.sort(key=lambda c: c.receipt)
        found.sort(key=lambda c: c.claimed_at, reverse=True)
        return [copy.copy(c) for c in found[: _bounded(limit)]]

    def entries(
        self,
        *,
        causes: Collection[tuple[str, str]] = (),
        entry_ids: Collection[str] = (),
        limit: int,
    ) -> list[EntryLine]:
        wanted_causes, wanted_ids = set(causes), set(entry_ids)
        rows = sorted(
            (
                row
                for row in self._t.entries.values()
                if (row.cause_type, row.cause_id) in wanted_causes or row.entry.id in wanted_ids
            ),
            key=lambda row: (row.created_at, row.entry.id),
        )[: _bounded(limit)]
        return [
            EntryLine(
                entry_id=row.entry.id,
                code=row.entry.code.value,
                cause_type=row.cause_type,
                cause_id=row.cause_id,
                memo=row.memo,
                reverses_entry_id=row.entry.reverses_entry_id,
                created_at=row.created_at,
                postings=tuple(
                    PostingLine(p.id, p.account_id, p.amount_cents, p.balance_after_cents)
                    for p in self._t.postings
                    if p.entry_id == row.entry.id
                ),
            )
            for row in rows
        ]

    def holds(
        self, *, account_id: str | None = None, hold_ids: Collection[str] = (), limit: int
    ) -> list[Hold]:
        wanted = set(hold_ids)
        found = [
            h
            for h in self._t.holds.values()
            if (account_id is not None and h.account_id == account_id) or h.id in wanted
        ]
        found.sort(key=lambda h: h.id, reverse=True)
        return found[: _bounded(limit)]

    def notifications_of(self, user_id: str, *, limit: int) -> list[NotificationLine]:
        found = [n for n in self._t.notifications.values() if n.user_id == user_id]
        found.sort(key=lambda n: (n.created_at, n.id), reverse=True)
        # The fake keeps no SMS deliveries: every notification waits for its SMS, as a stored
        # one does on SQL until the sender runs (which service tests never start).
        return [
            NotificationLine(
                n.id, n.kind, n.body, n.loan_id, n.created_at, n.read_at, "pending", 0, ""
            )
            for n in found[: _bounded(limit)]
        ]

    def sms_to(self, phone: str, *, limit: int) -> list[SmsLine]:
        found = [s for s in self._t.sms_outbox if s.phone == phone]
        found.sort(key=lambda s: (s.created_at, s.id), reverse=True)
        return [
            SmsLine(s.id, s.phone, s.body, s.holds_secret, s.created_at)
            for s in found[: _bounded(limit)]
        ]

    def audit_rows(
        self, *, actor_id: str | None = None, mentioning: str | None = None, limit: int
    ) -> list[ChainRow]:
        if actor_id is None and mentioning is None:
            return []
        found = [
            row
            for row in self._t.audit_log
            if (actor_id is not None and row.actor_id == actor_id)
            or (mentioning is not None and mentioning in row.details)
        ]
        found.sort(key=lambda row: row.seq, reverse=True)
        return found[: _bounded(limit)]
