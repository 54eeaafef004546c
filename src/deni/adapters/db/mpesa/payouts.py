"""SQL for the loans and repayments whose money should go out to M-PESA."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Connection,
    and_,
    exists,
    literal,
    or_,
    select,
)

from deni.adapters.db import tables as t
from deni.adapters.db.mpesa import tables as m
from deni.domain.loans import LoanState
from deni.domain.mpesa import (
    Purpose,
)
from deni.services.mpesa.ports import (
    PayoutCandidate,
)


class SqlPayoutCandidateRepository:
    """Loans and repayments whose money should go out to M-PESA and has not yet."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

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
        r, loans, prefs, requests = (
            t.repayments,
            t.loans,
            m.mpesa_preferences,
            m.mpesa_requests,
        )
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
