"""The business gauges of /metrics, set from the database when Prometheus scrapes (never per
request): services/monitoring.py computes the figures, this puts them on the gauges."""

from __future__ import annotations

from deni.bootstrap import Deni
from deni.services import monitoring


def refresh(deni: Deni) -> None:
    figures = monitoring.figures(deni, now=deni.clock.now())
    m = deni.metrics
    for state, count in figures.outbox_messages.items():
        m.outbox_messages.labels(state=state).set(count)
    m.outbox_oldest_pending_age_seconds.set(figures.outbox_oldest_pending_age_s)
    for queue, count in figures.dead_letters.items():
        m.dead_letters.labels(queue=queue).set(count)
    m.suspense_payments.set(figures.suspense_payments)
    m.suspense_oldest_age_seconds.set(figures.suspense_oldest_age_s)
    m.payouts_awaiting_decision.set(figures.payouts_awaiting_decision)
    m.callback_inbox_pending.set(figures.callback_inbox_pending)
    m.callback_inbox_lag_seconds.set(figures.callback_inbox_lag_s)
    m.mpesa_float_cents.set(figures.mpesa_float_cents)
    m.ledger_mpesa_cents.set(figures.ledger_mpesa_cents)
    m.reconciliation_drift_cents.set(figures.reconciliation_drift_cents)
    m.wallet_liabilities_cents.set(figures.wallet_liabilities_cents)
    for days, ratio in figures.portfolio_at_risk_ratio.items():
        m.portfolio_at_risk_ratio.labels(days=str(days)).set(ratio)
    m.payouts_today_cents.set(figures.payouts_today_cents)
    m.sms_queue_pending.set(figures.sms_queue_pending)
    m.worker_heartbeat_age_seconds.set(figures.worker_heartbeat_age_s)
