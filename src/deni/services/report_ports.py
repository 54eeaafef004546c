"""What the back office's money reports read, as a port: aggregates the database computes.

`ReportQueries` is on the unit of work as `uow.reports`; the adapter is
adapters/db/reports.py, the fake tests/fakes/reports.py. Every answer is bounded: a fixed
number of groups (account groups, entry codes, request kinds and states, age buckets), or a
page of at most `limit` rows. The use cases (services/reports.py) derive the figures from
these with the domain's own rules (a loan's penalties accrued, days overdue).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from deni.domain.loans import Loan, LoanState

# The trial balance's group of every wallet; platform accounts are their own groups.
WALLETS_GROUP = "wallets"
LOAN_PAGE_MAX = 1000


@dataclass(frozen=True, slots=True)
class AccountGroupTotals:
    """Postings to one group of accounts: a platform account alone, or every wallet."""

    group: str  # the platform account's id, or WALLETS_GROUP
    normal_side: str  # "debit" | "credit"
    accounts: int  # accounts in the group that have postings in the window
    postings: int
    debit_cents: int  # sum of the positive postings
    credit_cents: int  # sum of the negated negative postings (>= 0)


@dataclass(frozen=True, slots=True)
class AccountGroupBalance:
    """The accounts table's cached natural balances of one group (as of now)."""

    group: str
    normal_side: str
    accounts: int
    balance_cents: int


@dataclass(frozen=True, slots=True)
class EntryVolume:
    """Entries of one code written in a window: how many and how much (each entry's debits)."""

    code: str
    entries: int
    amount_cents: int


@dataclass(frozen=True, slots=True)
class MpesaFlow:
    """M-PESA records of one kind and state (or source) in a window: how many, how much."""

    kind: str  # "stk" | "b2c" for requests; "c2b" | "stk" for claims
    state: str
    count: int
    amount_cents: int


@dataclass(frozen=True, slots=True)
class CountAndCents:
    count: int
    amount_cents: int


@dataclass(frozen=True, slots=True)
class LoanStateTotals:
    """Loans in one state, from the stored columns (penalties as charged so far)."""

    state: str
    count: int
    principal_cents: int
    owed_cents: int  # principal + fee + penalty charged - everything paid


@dataclass(frozen=True, slots=True)
class BalanceReportRow:
    """One of Daraja's balance reports, beside what the ledger held when it was asked for."""

    id: str
    state: str  # requested, received, failed
    requested_at: datetime
    received_at: datetime | None
    working_cents: int | None
    utility_cents: int | None
    ledger_paybill_cents: int
    ledger_float_cents: int
    result_desc: str
    struck_at: datetime | None = None  # M-PESA's own time for the figures
    # What M-PESA moved that the ledger and the money in flight do not explain, against the
    # report before (services/mpesa/balances.py): 0 none, None nothing to compare with.
    working_difference_cents: int | None = None
    utility_difference_cents: int | None = None


class ReportQueries(Protocol):
    """Read-only aggregates for reports. Times are instants; windows are [since, before)."""

    def account_totals(
        self, *, since: datetime | None, before: datetime | None
    ) -> list[AccountGroupTotals]:
        """Posting totals per account group, for postings made in the window (None: open)."""
        ...

    def account_balances(self) -> list[AccountGroupBalance]:
        """Cached balances per account group (every account, postings or not)."""
        ...

    def entry_volumes(self, *, since: datetime, before: datetime) -> list[EntryVolume]:
        """Per entry code, the entries written in the window."""
        ...

    def loans_page(
        self, *, states: Sequence[LoanState], after_id: str | None, limit: int
    ) -> list[Loan]:
        """Loans in these states, in id (creation) order, after `after_id`; at most `limit`."""
        ...

    def loan_states(self) -> list[LoanStateTotals]:
        """Every state that has loans, with their totals."""
        ...

    def settled_requests(self, *, since: datetime, before: datetime) -> list[MpesaFlow]:
        """STK pushes and B2C payouts that succeeded (last updated) in the window, per kind."""
        ...

    def settled_claims(self, *, since: datetime, before: datetime) -> list[MpesaFlow]:
        """Payments callbacks claimed that M-PESA or an operator confirmed in the window, per
        source (c2b, stk)."""
        ...

    def open_requests(self) -> list[MpesaFlow]:
        """Requests not settled yet (queued, sending, sent, unknown), per kind and state."""
        ...

    def open_claims(self) -> list[MpesaFlow]:
        """Claims waiting for M-PESA's word or disputed, per source and state."""
        ...

    def awaiting_decision(self) -> CountAndCents:
        """Payouts an operator must decide."""
        ...

    def unassigned_suspense(self, *, created_cuts: Sequence[datetime]) -> list[CountAndCents]:
        """Suspense payments not assigned yet, by age: `created_cuts` descending (newest
        first); answer i counts those created at or after cut i and before cut i-1, and the
        last answer (len(cuts)) those created before the last cut."""
        ...

    def suspense_created(self, *, since: datetime, before: datetime) -> CountAndCents:
        """Payments that went to suspense in the window, whatever became of them."""
        ...

    def outbox_states(self) -> dict[str, int]:
        """How many outbox messages in each state."""
        ...

    def last_balance_report(
        self, *, before: datetime | None, received_only: bool
    ) -> BalanceReportRow | None:
        """The newest balance report requested before `before` (received ones only, if asked)."""
        ...
