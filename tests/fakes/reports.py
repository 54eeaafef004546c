"""The money reports' aggregates (services/report_ports.ReportQueries) computed from the fake
tables, the same sums as adapters/db/reports.py; tests/services/test_reports.py runs the same
test bodies on both."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TypeVar

from deni.domain.ledger import AccountKind
from deni.domain.loans import Loan, LoanState
from deni.domain.mpesa import OPEN_STATES, RequestState
from deni.services.mpesa.ports import ClaimState, SuspenseState
from deni.services.report_ports import (
    WALLETS_GROUP,
    AccountGroupBalance,
    AccountGroupTotals,
    BalanceReportRow,
    CountAndCents,
    EntryVolume,
    LoanStateTotals,
    MpesaFlow,
)
from tests.fakes.loans import _copy
from tests.fakes.tables import Tables

T = TypeVar("T")
SETTLED_CLAIMS = (ClaimState.CONFIRMED, ClaimState.ACCEPTED)
OPEN_CLAIMS = (ClaimState.WAITING, ClaimState.DISPUTED)


def _within(at: datetime | None, since: datetime | None, before: datetime | None) -> bool:
    if at is None:
        return False
    return (since is None or at >= since) and (before is None or at < before)


def _flows(
    rows: Iterable[T], key: Callable[[T], tuple[str, str]], amount: Callable[[T], int]
) -> list[MpesaFlow]:
    sums: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        sums[key(row)][0] += 1
        sums[key(row)][1] += amount(row)
    return [MpesaFlow(kind, state, n, cents) for (kind, state), (n, cents) in sums.items()]


class FakeReportQueries:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def _group(self, account_id: str) -> str:
        account = self._t.accounts[account_id]
        return WALLETS_GROUP if account.kind is AccountKind.WALLET else account.id

    def account_totals(
        self, *, since: datetime | None, before: datetime | None
    ) -> list[AccountGroupTotals]:
        sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        accounts: dict[str, set[str]] = defaultdict(set)
        for posting in self._t.postings:
            if not _within(posting.created_at, since, before):
                continue
            group = self._group(posting.account_id)
            accounts[group].add(posting.account_id)
            sums[group][0] += 1
            sums[group][1 if posting.amount_cents > 0 else 2] += abs(posting.amount_cents)
        return [
            AccountGroupTotals(
                group,
                self._t.accounts[next(iter(accounts[group]))].normal_side.value,
                len(accounts[group]),
                n,
                debit,
                credit,
            )
            for group, (n, debit, credit) in sums.items()
        ]

    def account_balances(self) -> list[AccountGroupBalance]:
        sums: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for account in self._t.accounts.values():
            key = (self._group(account.id), account.normal_side.value)
            sums[key][0] += 1
            sums[key][1] += account.balance_cents
        return [AccountGroupBalance(g, side, n, cents) for (g, side), (n, cents) in sums.items()]

    def entry_volumes(self, *, since: datetime, before: datetime) -> list[EntryVolume]:
        sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for row in self._t.entries.values():
            if _within(row.created_at, since, before):
                sums[row.entry.code.value][0] += 1
                sums[row.entry.code.value][1] += sum(
                    p.amount_cents for p in row.entry.postings if p.amount_cents > 0
                )
        return [EntryVolume(code, n, cents) for code, (n, cents) in sums.items()]

    def loans_page(
        self, *, states: Sequence[LoanState], after_id: str | None, limit: int
    ) -> list[Loan]:
        found = sorted(
            (
                loan
                for loan in self._t.loans.values()
                if loan.state in states and (after_id is None or loan.id > after_id)
            ),
            key=lambda loan: loan.id,
        )
        return [_copy(loan) for loan in found[:limit]]

    def loan_states(self) -> list[LoanStateTotals]:
        sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for loan in self._t.loans.values():
            line = sums[loan.state.value]
            line[0] += 1
            line[1] += loan.terms.principal_cents
            line[2] += loan.owed().total_cents
        return [LoanStateTotals(state, *line) for state, line in sums.items()]

    def settled_requests(self, *, since: datetime, before: datetime) -> list[MpesaFlow]:
        return _flows(
            (
                r
                for r in self._t.mpesa_requests.values()
                if r.state is RequestState.SUCCEEDED and _within(r.updated_at, since, before)
            ),
            lambda r: (r.kind.value, r.state.value),
            lambda r: r.amount_cents,
        )

    def settled_claims(self, *, since: datetime, before: datetime) -> list[MpesaFlow]:
        return _flows(
            (
                c
                for c in self._t.claims.values()
                if c.state in SETTLED_CLAIMS and _within(c.settled_at, since, before)
            ),
            lambda c: (c.source.value, "settled"),
            lambda c: c.amount_cents,
        )

    def open_requests(self) -> list[MpesaFlow]:
        return _flows(
            (r for r in self._t.mpesa_requests.values() if r.state in OPEN_STATES),
            lambda r: (r.kind.value, r.state.value),
            lambda r: r.amount_cents,
        )

    def open_claims(self) -> list[MpesaFlow]:
        return _flows(
            (c for c in self._t.claims.values() if c.state in OPEN_CLAIMS),
            lambda c: (c.source.value, c.state.value),
            lambda c: c.amount_cents,
        )

    def awaiting_decision(self) -> CountAndCents:
        found = [r.amount_cents for r in self._t.mpesa_requests.values() if r.awaiting_decision]
        return CountAndCents(len(found), sum(found))

    def unassigned_suspense(self, *, created_cuts: Sequence[datetime]) -> list[CountAndCents]:
        sums = [[0, 0] for _ in range(len(created_cuts) + 1)]
        for payment in self._t.suspense.values():
            if payment.state is SuspenseState.ASSIGNED:
                continue
            i = next(
                (i for i, cut in enumerate(created_cuts) if payment.created_at >= cut),
                len(created_cuts),
            )
            sums[i][0] += 1
            sums[i][1] += payment.amount_cents
        return [CountAndCents(n, cents) for n, cents in sums]

    def suspense_created(self, *, since: datetime, before: datetime) -> CountAndCents:
        found = [
            p.amount_cents
            for p in self._t.suspense.values()
            if _within(p.created_at, since, before)
        ]
        return CountAndCents(len(found), sum(found))

    def outbox_states(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for row in self._t.outbox.values():
            counts[row.message.state.value] += 1
        return dict(counts)

    def last_balance_report(
        self, *, before: datetime | None, received_only: bool
    ) -> BalanceReportRow | None:
        found = [
            r
            for r in self._t.balance_reports.values()
            if _within(r.requested_at, None, before)
            and (not received_only or r.state == "received")
        ]
        if not found:
            return None
        r = max(found, key=lambda r: (r.requested_at, r.id))
        return BalanceReportRow(
            id=r.id,
            state=r.state,
            requested_at=r.requested_at,
            received_at=r.received_at,
            working_cents=r.working_cents,
            utility_cents=r.utility_cents,
            ledger_paybill_cents=r.ledger_paybill_cents,
            ledger_float_cents=r.ledger_float_cents,
            result_desc=r.result_desc,
            struck_at=r.struck_at,
            working_difference_cents=r.working_difference_cents,
            utility_difference_cents=r.utility_difference_cents,
        )
