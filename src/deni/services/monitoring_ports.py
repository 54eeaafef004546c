"""What the business metrics read (services/monitoring.py), as a port: one bounded read of the
figures an operator watches. The adapter is adapters/db/monitoring.py; every answer is a count,
a sum, an oldest time or one row, each from an indexed or small table, so a Prometheus scrape
costs a handful of aggregates however large the books grow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class BalanceReportFigures:
    """The newest balance report M-PESA answered, beside the ledger when it was asked for."""

    requested_at: datetime
    received_at: datetime | None
    mpesa_cents: int  # working + utility account
    ledger_cents: int  # the ledger's paybill + B2C float when the report was asked for
    # What the report found unexplained, money in flight and money outside the ledger (the
    # opening float) accounted for (services/mpesa/balances.py); None for the first report.
    difference_cents: int | None = None


@dataclass(frozen=True, slots=True)
class MonitoringSnapshot:
    outbox_counts: Mapping[str, int]  # pending, sending, dead (0 when none)
    outbox_oldest_pending_at: datetime | None
    sync_dead_letters_open: int
    suspense_held: int  # neither assigned nor sent back
    suspense_oldest_at: datetime | None
    payouts_awaiting_decision: int
    callbacks_received: int  # stored, not applied yet
    callbacks_oldest_received_at: datetime | None
    balance_report: BalanceReportFigures | None
    ledger_mpesa_cents: int  # paybill + B2C float natural balances, now
    wallet_liabilities_cents: int  # every wallet's balance, now
    active_principal_cents: int  # principal still owed on active loans
    at_risk_principal_cents: Mapping[int, int]  # days -> principal owed on loans due before
    payouts_today_cents: int  # B2C payouts that succeeded in the window
    sms_queued: int  # notifications waiting for their SMS (pending or being sent)
    newest_heartbeat_at: datetime | None


class MonitoringReads(Protocol):
    def snapshot(
        self,
        *,
        day_since: datetime,
        day_before: datetime,
        due_before: Mapping[int, date],
    ) -> MonitoringSnapshot:
        """The figures, read in one transaction (one snapshot on PostgreSQL).

        `day_since`/`day_before`: today's window for the payouts; `due_before`: for each PAR
        day count, the due date before which an active loan is more than that many days
        overdue."""
        ...
