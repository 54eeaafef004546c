"""SQL for an operator's look-ups (services/lookup_ports.LookupQueries): bounded reads only.

Nothing here writes, and no statement selects a secret: users' PIN and code hashes are read
into the domain `User` (as every user read does) but the use cases never show them; the SMS
outbox's sealed text is never selected; LIKE patterns escape what they were given.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import ColumnElement, Connection, false, func, or_, select, tuple_

from deni.adapters.db import tables as t
from deni.adapters.db.audit import audit_record
from deni.adapters.db.ledger import hold_from_row
from deni.adapters.db.mpesa import tables as m
from deni.adapters.db.mpesa.claims import claim_from_row
from deni.adapters.db.mpesa.inbox import inbox_from_row
from deni.adapters.db.mpesa.requests import request_from_row
from deni.adapters.db.mpesa.suspense import suspense_from_row
from deni.adapters.db.users import user_from_row
from deni.adapters.db.ussd_tables import sms_deliveries, sms_outbox
from deni.domain.audit import ChainRow
from deni.domain.ledger import Hold
from deni.domain.mpesa import MpesaRequest
from deni.domain.users import User
from deni.services.lookup_ports import (
    LIKE_ESCAPE,
    LOOKUP_ROWS_MAX,
    EntryLine,
    NotificationLine,
    PostingLine,
    SmsLine,
    like_fragment,
)
from deni.services.mpesa.ports import InboxRow, PaymentClaim, SuspensePayment


def _bounded(limit: int) -> int:
    assert 1 <= limit <= LOOKUP_ROWS_MAX, limit
    return limit


class SqlLookupQueries:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def users_named(self, fragment: str, *, limit: int) -> list[User]:
        assert fragment
        pattern = f"%{like_fragment(fragment.lower())}%"
        u = t.users.c
        query = (
            select(t.users)
            .where(func.lower(u.name).like(pattern, escape=LIKE_ESCAPE))
            .order_by(u.id)  # registration order: no collation to differ between databases
            .limit(_bounded(limit))
        )
        return [user_from_row(row) for row in self._connection.execute(query)]

    def requests_of(
        self, *, user_id: str | None = None, loan_id: str | None = None, limit: int
    ) -> list[MpesaRequest]:
        assert (user_id is None) != (loan_id is None), "one of user_id, loan_id"
        r = m.mpesa_requests.c
        where = r.user_id == user_id if user_id is not None else r.loan_id == loan_id
        return self._requests(where, limit=limit)

    def requests_with_receipt(self, receipt: str, *, limit: int) -> list[MpesaRequest]:
        return self._requests(m.mpesa_requests.c.receipt == receipt, limit=limit)

    def _requests(self, where: ColumnElement[bool], *, limit: int) -> list[MpesaRequest]:
        r = m.mpesa_requests.c
        query = (
            select(m.mpesa_requests)
            .where(where)
            .order_by(r.created_at.desc(), r.id.desc())
            .limit(_bounded(limit))
        )
        return [request_from_row(row) for row in self._connection.execute(query)]

    def callbacks(self, *, key_prefixes: Sequence[str], limit: int) -> list[InboxRow]:
        if not key_prefixes:
            return []
        c = m.callback_inbox.c
        matches = [
            c.dedupe_key.like(like_fragment(prefix) + "%", escape=LIKE_ESCAPE)
            for prefix in key_prefixes
        ]
        query = select(m.callback_inbox).where(or_(*matches)).order_by(c.id)
        return [
            inbox_from_row(row) for row in self._connection.execute(query.limit(_bounded(limit)))
        ]

    def suspense_payment(self, receipt: str) -> SuspensePayment | None:
        query = select(m.suspense_payments).where(m.suspense_payments.c.receipt == receipt)
        row = self._connection.execute(query).first()
        return suspense_from_row(row) if row else None

    def claims_of(self, user_id: str, *, limit: int) -> list[PaymentClaim]:
        c = m.payment_claims.c
        query = (
            select(m.payment_claims)
            .where(c.user_id == user_id)
            .order_by(c.claimed_at.desc(), c.receipt)
            .limit(_bounded(limit))
        )
        return [claim_from_row(row) for row in self._connection.execute(query)]

    def entries(
        self,
        *,
        causes: Collection[tuple[str, str]] = (),
        entry_ids: Collection[str] = (),
        limit: int,
    ) -> list[EntryLine]:
        e = t.journal_entries.c
        matches: list[ColumnElement[bool]] = []
        if causes:
            matches.append(tuple_(e.cause_type, e.cause_id).in_(sorted(causes)))
        if entry_ids:
            matches.append(e.id.in_(sorted(entry_ids)))
        if not matches:
            return []
        query = (
            select(t.journal_entries)
            .where(or_(*matches))
            .order_by(e.created_at, e.id)
            .limit(_bounded(limit))
        )
        rows = self._connection.execute(query).all()
        postings = self._postings([row.id for row in rows])
        return [
            EntryLine(
                entry_id=row.id,
                code=row.code,
                cause_type=row.cause_type,
                cause_id=row.cause_id,
                memo=row.memo,
                reverses_entry_id=row.reverses_entry_id,
                created_at=row.created_at,
                postings=tuple(postings.get(row.id, ())),
            )
            for row in rows
        ]

    def _postings(self, entry_ids: list[str]) -> dict[str, list[PostingLine]]:
        if not entry_ids:
            return {}
        p = t.postings.c
        query = select(t.postings).where(p.entry_id.in_(entry_ids)).order_by(p.id)
        found: dict[str, list[PostingLine]] = {}
        for row in self._connection.execute(query):
            found.setdefault(row.entry_id, []).append(
                PostingLine(
                    posting_id=int(row.id),
                    account_id=row.account_id,
                    amount_cents=int(row.amount_cents),
                    balance_after_cents=int(row.balance_after_cents),
                )
            )
        return found

    def holds(
        self, *, account_id: str | None = None, hold_ids: Collection[str] = (), limit: int
    ) -> list[Hold]:
        h = t.holds.c
        matches: list[ColumnElement[bool]] = []
        if account_id is not None:
            matches.append(h.account_id == account_id)
        if hold_ids:
            matches.append(h.id.in_(sorted(hold_ids)))
        where = or_(*matches) if matches else false()
        query = select(t.holds).where(where).order_by(h.id.desc()).limit(_bounded(limit))
        return [hold_from_row(row) for row in self._connection.execute(query)]

    def notifications_of(self, user_id: str, *, limit: int) -> list[NotificationLine]:
        n, d = t.notifications.c, sms_deliveries.c
        query = (
            select(
                n.id,
                n.kind,
                n.body,
                n.loan_id,
                n.created_at,
                n.read_at,
                n.sms_state,
                d.attempts,
                d.last_error,
            )
            .select_from(t.notifications.outerjoin(sms_deliveries, d.notification_id == n.id))
            .where(n.user_id == user_id)
            .order_by(n.created_at.desc(), n.id.desc())
            .limit(_bounded(limit))
        )
        return [
            NotificationLine(
                id=row.id,
                kind=row.kind,
                body=row.body,
                loan_id=row.loan_id,
                created_at=row.created_at,
                read_at=row.read_at,
                sms_state=row.sms_state,
                sms_attempts=int(row.attempts or 0),
                sms_last_error=row.last_error or "",
            )
            for row in self._connection.execute(query)
        ]

    def sms_to(self, phone: str, *, limit: int) -> list[SmsLine]:
        o = sms_outbox.c
        # The sealed text (the whole message, for the fake handset) is never selected.
        query = (
            select(o.id, o.phone, o.body, o.holds_secret, o.created_at)
            .where(o.phone == phone)
            .order_by(o.created_at.desc(), o.id.desc())
            .limit(_bounded(limit))
        )
        return [
            SmsLine(row.id, row.phone, row.body, bool(row.holds_secret), row.created_at)
            for row in self._connection.execute(query)
        ]

    def audit_rows(
        self, *, actor_id: str | None = None, mentioning: str | None = None, limit: int
    ) -> list[ChainRow]:
        a = t.audit_log.c
        matches: list[ColumnElement[bool]] = []
        if actor_id is not None:
            matches.append(a.actor_id == actor_id)
        if mentioning is not None:
            assert mentioning
            pattern = f"%{like_fragment(mentioning)}%"
            matches.append(a.details.like(pattern, escape=LIKE_ESCAPE))
        if not matches:
            return []
        query = select(t.audit_log).where(or_(*matches)).order_by(a.seq.desc())
        return [audit_record(row) for row in self._connection.execute(query.limit(_bounded(limit)))]
