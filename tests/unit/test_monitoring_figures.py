"""The business figures from one snapshot (services/monitoring.py): ages at the scrape, 0 for
an empty queue, NaN without a balance report, +Inf without a heartbeat, PAR as a ratio, and
the drift compared with the ledger as it stood when the report was asked for."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

from deni.services import monitoring
from deni.services.monitoring_ports import BalanceReportFigures, MonitoringSnapshot

NOW = datetime(2026, 11, 26, 21, 30, tzinfo=UTC)  # 00:30 on the 27th in Nairobi
EMPTY = MonitoringSnapshot(
    outbox_counts={},
    outbox_oldest_pending_at=None,
    sync_dead_letters_open=0,
    suspense_held=0,
    suspense_oldest_at=None,
    payouts_awaiting_decision=0,
    callbacks_received=0,
    callbacks_oldest_received_at=None,
    balance_report=None,
    ledger_mpesa_cents=0,
    wallet_liabilities_cents=0,
    active_principal_cents=0,
    at_risk_principal_cents={1: 0, 7: 0, 30: 0},
    payouts_today_cents=0,
    sms_queued=0,
    newest_heartbeat_at=None,
)


@dataclass
class Reads:
    snap: MonitoringSnapshot
    asked: dict[str, object] | None = None

    def snapshot(
        self, *, day_since: datetime, day_before: datetime, due_before: Mapping[int, date]
    ) -> MonitoringSnapshot:
        self.asked = {"since": day_since, "before": day_before, "due_before": dict(due_before)}
        return self.snap


@dataclass
class Deps:
    monitoring_reads: Reads


def test_nothing_waiting_is_zero_and_nothing_known_is_nan_or_infinite() -> None:
    reads = Reads(EMPTY)
    figures = monitoring.figures(Deps(reads), now=NOW)
    assert figures.outbox_messages == {"pending": 0, "sending": 0, "dead": 0}
    assert figures.dead_letters == {"outbox": 0, "sync": 0}
    assert figures.outbox_oldest_pending_age_s == 0
    assert figures.suspense_oldest_age_s == 0
    assert figures.callback_inbox_lag_s == 0
    assert figures.portfolio_at_risk_ratio == {1: 0, 7: 0, 30: 0}
    assert math.isnan(figures.mpesa_float_cents)
    assert math.isnan(figures.reconciliation_drift_cents)
    assert figures.worker_heartbeat_age_s == math.inf
    # Today is Nairobi's 27th: its window, and the due dates PAR counts from.
    assert reads.asked == {
        "since": datetime(2026, 11, 26, 21, 0, tzinfo=UTC),
        "before": datetime(2026, 11, 27, 21, 0, tzinfo=UTC),
        "due_before": {1: date(2026, 11, 26), 7: date(2026, 11, 20), 30: date(2026, 10, 28)},
    }


def test_ages_ratios_and_the_drift_at_the_reports_moment() -> None:
    snap = replace(
        EMPTY,
        outbox_counts={"pending": 2, "dead": 1, "done": 40},
        outbox_oldest_pending_at=NOW - timedelta(seconds=75),
        sync_dead_letters_open=3,
        suspense_held=1,
        suspense_oldest_at=NOW - timedelta(days=2),
        callbacks_received=4,
        callbacks_oldest_received_at=NOW - timedelta(seconds=12),
        balance_report=BalanceReportFigures(
            requested_at=NOW - timedelta(hours=20),
            received_at=NOW - timedelta(hours=20),
            mpesa_cents=1_500_00,
            ledger_cents=1_200_00,
            difference_cents=300_00,
        ),
        ledger_mpesa_cents=9_999_00,  # money moved since the report: not drift
        active_principal_cents=8_000_00,
        at_risk_principal_cents={1: 2_000_00, 7: 1_000_00, 30: 0},
        newest_heartbeat_at=NOW - timedelta(seconds=4),
    )
    figures = monitoring.figures(Deps(Reads(snap)), now=NOW)
    assert figures.outbox_messages == {"pending": 2, "sending": 0, "dead": 1}
    assert figures.dead_letters == {"outbox": 1, "sync": 3}
    assert figures.outbox_oldest_pending_age_s == 75
    assert figures.suspense_oldest_age_s == 2 * 86_400
    assert figures.callback_inbox_lag_s == 12
    assert figures.mpesa_float_cents == 1_500_00
    assert figures.ledger_mpesa_cents == 9_999_00
    assert figures.reconciliation_drift_cents == 300_00
    assert figures.portfolio_at_risk_ratio == {1: 0.25, 7: 0.125, 30: 0}
    assert figures.worker_heartbeat_age_s == 4
