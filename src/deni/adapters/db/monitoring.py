"""The business metrics' one read (services/monitoring_ports.MonitoringReads): a dozen
aggregates in one transaction, REPEATABLE READ on PostgreSQL so they describe one moment.

Each is bounded by an index or a small table: the outbox, suspense, the callback inbox and SMS
by their state indexes (only rows still waiting are read), payouts awaiting a decision by
theirs, PAR over active loans (ix_loans_state_due), the day's payouts over the last
PAYOUT_LOOKBACK of B2C requests (ix_mpesa_requests_kind_created_at), the ledger's M-PESA
accounts by key, balance reports (one a day) and heartbeats (one per worker process) whole.
The wallets' total sums the accounts table (one row per member), as the dashboard does.
Portable SQL only.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, case, func, select

from deni.adapters.db import tables as t
from deni.adapters.db.engine import reading
from deni.adapters.db.heartbeats import newest_beat
from deni.adapters.db.mpesa import tables as m
from deni.adapters.db.sync import tables as s
from deni.domain.ledger import AccountKind, PlatformAccount
from deni.domain.loans import LoanState
from deni.domain.mpesa import RequestKind, RequestState
from deni.services.monitoring_ports import BalanceReportFigures, MonitoringSnapshot
from deni.services.mpesa.ports import InboxState, OutboxState, SuspenseState

OUTBOX_WATCHED = (OutboxState.PENDING.value, OutboxState.SENDING.value, OutboxState.DEAD.value)
SUSPENSE_HELD = (
    SuspenseState.UNASSIGNED.value,
    SuspenseState.ASSIGNING.value,
    SuspenseState.REVERSING.value,
)
SMS_QUEUED = ("pending", "sending")
SYNC_DEAD_LETTER_OPEN = "open"
# A payout succeeding today was asked for at most this long ago (results come in minutes; an
# operator's decision on an unknown one in days): bounds the scan to recent B2C requests.
PAYOUT_LOOKBACK = timedelta(days=7)


def _int(value: Any) -> int:
    """SUM() is NULL over no rows, and a NUMERIC (Decimal) on PostgreSQL."""
    return int(value or 0)


class SqlMonitoringReads:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def snapshot(
        self,
        *,
        day_since: datetime,
        day_before: datetime,
        due_before: Mapping[int, date],
    ) -> MonitoringSnapshot:
        with reading(self._engine) as connection:
            if connection.dialect.name == "postgresql":
                connection.execution_options(isolation_level="REPEATABLE READ")
            one = connection.execute
            o = m.outbox.c
            outbox = {
                row.state: row.n
                for row in one(
                    select(o.state, func.count().label("n"))
                    .where(o.state.in_(OUTBOX_WATCHED))
                    .group_by(o.state)
                )
            }
            oldest_pending = one(
                select(func.min(o.created_at)).where(o.state == OutboxState.PENDING.value)
            ).scalar()
            d = s.sync_dead_letters.c
            sync_dead = one(
                select(func.count()).where(d.state == SYNC_DEAD_LETTER_OPEN)
            ).scalar_one()
            p = m.suspense_payments.c
            suspense, suspense_oldest = one(
                select(func.count(), func.min(p.created_at)).where(p.state.in_(SUSPENSE_HELD))
            ).one()
            r = m.mpesa_requests.c
            awaiting = one(select(func.count()).where(r.awaiting_decision.is_(True))).scalar_one()
            payouts_today = one(
                select(func.sum(r.amount_cents)).where(
                    r.kind == RequestKind.B2C.value,
                    r.created_at >= day_since - PAYOUT_LOOKBACK,
                    r.state == RequestState.SUCCEEDED.value,
                    r.updated_at >= day_since,
                    r.updated_at < day_before,
                )
            ).scalar()
            i = m.callback_inbox.c
            callbacks, callbacks_oldest = one(
                select(func.count(), func.min(i.received_at)).where(
                    i.state == InboxState.RECEIVED.value
                )
            ).one()
            b = m.balance_reports.c
            report = one(
                select(m.balance_reports)
                .where(b.state == "received")
                .order_by(b.requested_at.desc(), b.id.desc())
                .limit(1)
            ).first()
            a = t.accounts.c
            mpesa_accounts = (
                PlatformAccount.MPESA_PAYBILL.value,
                PlatformAccount.MPESA_B2C_FLOAT.value,
            )
            ledger_mpesa = one(
                select(func.sum(a.balance_cents)).where(a.id.in_(mpesa_accounts))
            ).scalar()
            wallets = one(
                select(func.sum(a.balance_cents)).where(a.kind == AccountKind.WALLET.value)
            ).scalar()
            loan = t.loans.c
            owed = loan.principal_cents - loan.principal_paid_cents
            par_columns = [
                func.sum(case((loan.due_date < cut, owed), else_=0)) for cut in due_before.values()
            ]
            active, *at_risk = one(
                select(func.sum(owed), *par_columns).where(loan.state == LoanState.ACTIVE.value)
            ).one()
            n = t.notifications.c
            sms = one(select(func.count()).where(n.sms_state.in_(SMS_QUEUED))).scalar_one()
            beat = newest_beat(connection)
        return MonitoringSnapshot(
            outbox_counts=outbox,
            outbox_oldest_pending_at=oldest_pending,
            sync_dead_letters_open=int(sync_dead),
            suspense_held=int(suspense),
            suspense_oldest_at=suspense_oldest,
            payouts_awaiting_decision=int(awaiting),
            callbacks_received=int(callbacks),
            callbacks_oldest_received_at=callbacks_oldest,
            balance_report=None
            if report is None
            else BalanceReportFigures(
                requested_at=report.requested_at,
                received_at=report.received_at,
                mpesa_cents=_int(report.working_cents) + _int(report.utility_cents),
                ledger_cents=int(report.ledger_paybill_cents) + int(report.ledger_float_cents),
                difference_cents=_difference(
                    report.working_difference_cents, report.utility_difference_cents
                ),
            ),
            ledger_mpesa_cents=_int(ledger_mpesa),
            wallet_liabilities_cents=_int(wallets),
            active_principal_cents=_int(active),
            at_risk_principal_cents={
                days: _int(cents) for days, cents in zip(due_before, at_risk, strict=True)
            },
            payouts_today_cents=_int(payouts_today),
            sms_queued=int(sms),
            newest_heartbeat_at=beat,
        )


def _difference(working_cents: int | None, utility_cents: int | None) -> int | None:
    if working_cents is None and utility_cents is None:
        return None
    return abs(working_cents or 0) + abs(utility_cents or 0)
