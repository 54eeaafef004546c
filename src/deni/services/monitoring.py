"""The business figures /metrics exports (docs/metrics.md): queues and their ages, money
waiting for someone, M-PESA's float against the ledger, what members are owed, the portfolio at
risk, the day's payouts, the worker's heartbeat.

Read at scrape time (never per request) in one bounded read (monitoring_ports.py); this module
turns the rows into the figures: ages at `now`, ratios, the drift between M-PESA's balance and
the ledger compared at the moment the balance was asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from deni.domain.users import nairobi_today
from deni.services.monitoring_ports import MonitoringReads
from deni.services.reports import PAR_DAYS, day_window

OUTBOX_STATES = ("pending", "sending", "dead")
DEAD_LETTER_QUEUES = ("outbox", "sync")
NO_HEARTBEAT_AGE_S = math.inf  # never beaten: older than any bound


class MonitoringDeps(Protocol):
    @property
    def monitoring_reads(self) -> MonitoringReads: ...


@dataclass(frozen=True, slots=True)
class Figures:
    outbox_messages: dict[str, int]  # by state: pending, sending, dead
    outbox_oldest_pending_age_s: float  # 0 when none
    dead_letters: dict[str, int]  # by queue: outbox, sync
    suspense_payments: int
    suspense_oldest_age_s: float  # 0 when none
    payouts_awaiting_decision: int
    callback_inbox_pending: int
    callback_inbox_lag_s: float  # 0 when none
    mpesa_float_cents: float  # NaN without a received balance report
    ledger_mpesa_cents: int
    reconciliation_drift_cents: float  # NaN without a received balance report
    wallet_liabilities_cents: int
    portfolio_at_risk_ratio: dict[int, float]  # by days overdue: 1, 7, 30
    payouts_today_cents: int
    sms_queue_pending: int
    worker_heartbeat_age_s: float  # +Inf when no worker ever beat


def _age_s(now: datetime, since: datetime | None) -> float:
    return 0.0 if since is None else max((now - since).total_seconds(), 0.0)


def figures(deps: MonitoringDeps, *, now: datetime) -> Figures:
    today = nairobi_today(now)
    since, before = day_window(today)
    snap = deps.monitoring_reads.snapshot(
        day_since=since,
        day_before=before,
        due_before={days: today - timedelta(days=days) for days in PAR_DAYS},
    )
    report = snap.balance_report
    par = {
        days: (
            snap.at_risk_principal_cents[days] / snap.active_principal_cents
            if snap.active_principal_cents
            else 0.0
        )
        for days in PAR_DAYS
    }
    beat = snap.newest_heartbeat_at
    return Figures(
        outbox_messages={state: snap.outbox_counts.get(state, 0) for state in OUTBOX_STATES},
        outbox_oldest_pending_age_s=_age_s(now, snap.outbox_oldest_pending_at),
        dead_letters={
            "outbox": snap.outbox_counts.get("dead", 0),
            "sync": snap.sync_dead_letters_open,
        },
        suspense_payments=snap.suspense_held,
        suspense_oldest_age_s=_age_s(now, snap.suspense_oldest_at),
        payouts_awaiting_decision=snap.payouts_awaiting_decision,
        callback_inbox_pending=snap.callbacks_received,
        callback_inbox_lag_s=_age_s(now, snap.callbacks_oldest_received_at),
        mpesa_float_cents=math.nan if report is None else float(report.mpesa_cents),
        ledger_mpesa_cents=snap.ledger_mpesa_cents,
        # What the newest report could not explain: M-PESA's balance against the ledger when
        # it was struck, money in flight and money outside the ledger (the opening float)
        # accounted for. NaN until a report has a level to compare with.
        reconciliation_drift_cents=(
            math.nan
            if report is None or report.difference_cents is None
            else float(report.difference_cents)
        ),
        wallet_liabilities_cents=snap.wallet_liabilities_cents,
        portfolio_at_risk_ratio=par,
        payouts_today_cents=snap.payouts_today_cents,
        sms_queue_pending=snap.sms_queued,
        worker_heartbeat_age_s=NO_HEARTBEAT_AGE_S if beat is None else _age_s(now, beat),
    )
