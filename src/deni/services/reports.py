"""The back office's read side for money: the trial balance, the loan book, arrears ageing,
the day's M-PESA reconciliation and the dashboard's figures.

Read-only use cases, each in read-only transactions (like services/queries.py). Amounts are
integer cents; ratios are exact (`Fraction`, and whole basis points rounded half up). What
each figure means and how it is computed: docs/reports.md. The database does the sums
(`uow.reports`, services/report_ports.py); the domain's own rules do the rest (penalties
accrued to the day, days overdue).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from fractions import Fraction

from deni.domain.errors import ValidationFailed
from deni.domain.ledger import EntryCode, NormalSide, PlatformAccount
from deni.domain.loans import Loan, LoanState
from deni.domain.users import NAIROBI, nairobi_today
from deni.services.mpesa.ports import OutboxState
from deni.services.ports import Deps, UnitOfWork
from deni.services.report_ports import (
    LOAN_PAGE_MAX,
    WALLETS_GROUP,
    AccountGroupTotals,
    BalanceReportRow,
    CountAndCents,
    LoanStateTotals,
    MpesaFlow,
)

# --- Days and windows ----------------------------------------------------------------------------


def day_window(day: date) -> tuple[datetime, datetime]:
    """The instants [start, end) of a Nairobi calendar day."""
    start = datetime.combine(day, time.min, tzinfo=NAIROBI)
    return start, start + timedelta(days=1)


REPORT_DAY_MIN = date(2000, 1, 1)
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def report_day(text: str | None, *, today: date) -> date:
    """The day a report is asked of, written YYYY-MM-DD, from REPORT_DAY_MIN to `today`
    (the default): outside, a day's window overflows Python's or PostgreSQL's dates, and a
    day to come has no report yet."""
    if text is None:
        return today
    try:
        if not _DAY.fullmatch(text):
            raise ValueError(text)
        day = date.fromisoformat(text)
    except ValueError:
        raise ValidationFailed(
            "A day is written YYYY-MM-DD, such as 2026-01-31.", code="invalid_day"
        ) from None
    if not REPORT_DAY_MIN <= day <= today:
        raise ValidationFailed(
            f"A report is of a day from {REPORT_DAY_MIN.isoformat()} to today, written YYYY-MM-DD.",
            code="invalid_day",
        )
    return day


def end_of_day(day: date) -> datetime:
    """The first instant after a Nairobi day: a report "as of" the day counts what came before."""
    return day_window(day)[1]


# --- Trial balance ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrialBalanceLine:
    """One account group: a platform account alone, or every member's wallet together.

    `debit_cents`/`credit_cents` are the turnover (every posting); the balance sits in one
    column, `balance_debit_cents` or `balance_credit_cents`, by its sign. `balance_cents` is
    the natural balance (what the account is usually said to hold)."""

    group: str
    normal_side: str
    accounts: int
    postings: int
    debit_cents: int
    credit_cents: int
    balance_debit_cents: int
    balance_credit_cents: int
    balance_cents: int


@dataclass(frozen=True, slots=True)
class TrialBalance:
    as_of: datetime | None  # postings made before this instant; None: every posting
    lines: tuple[TrialBalanceLine, ...]
    debit_cents: int
    credit_cents: int
    balance_debit_cents: int
    balance_credit_cents: int

    @property
    def balanced(self) -> bool:
        return (
            self.debit_cents == self.credit_cents
            and self.balance_debit_cents == self.balance_credit_cents
        )


def _line(totals: AccountGroupTotals) -> TrialBalanceLine:
    net_debit_cents = totals.debit_cents - totals.credit_cents
    natural = NormalSide(totals.normal_side)
    return TrialBalanceLine(
        group=totals.group,
        normal_side=totals.normal_side,
        accounts=totals.accounts,
        postings=totals.postings,
        debit_cents=totals.debit_cents,
        credit_cents=totals.credit_cents,
        balance_debit_cents=max(net_debit_cents, 0),
        balance_credit_cents=max(-net_debit_cents, 0),
        balance_cents=net_debit_cents if natural is NormalSide.DEBIT else -net_debit_cents,
    )


def _group_order(group: str) -> tuple[int, str]:
    platform = [p.value for p in PlatformAccount]
    return (platform.index(group), group) if group in platform else (len(platform), group)


_EVERY_GROUP = (
    *((p.value, p.normal_side) for p in PlatformAccount),
    (WALLETS_GROUP, NormalSide.CREDIT),
)


def trial_balance(deps: Deps, *, as_of: datetime | None = None) -> TrialBalance:
    """Every account group's debits and credits from the postings made before `as_of`."""
    with deps.uow.read_only() as uow:
        totals = {t.group: t for t in uow.reports.account_totals(since=None, before=as_of)}
    for group, side in _EVERY_GROUP:  # every group has a line, postings or not
        totals.setdefault(group, AccountGroupTotals(group, side.value, 0, 0, 0, 0))
    lines = tuple(_line(totals[group]) for group in sorted(totals, key=_group_order))
    return TrialBalance(
        as_of=as_of,
        lines=lines,
        debit_cents=sum(line.debit_cents for line in lines),
        credit_cents=sum(line.credit_cents for line in lines),
        balance_debit_cents=sum(line.balance_debit_cents for line in lines),
        balance_credit_cents=sum(line.balance_credit_cents for line in lines),
    )


# --- Loan book ----------------------------------------------------------------------------------

# Loans that never reached anyone's wallet and never will are not on the book.
BOOK_STATES = (
    LoanState.REQUESTED,
    LoanState.APPROVED,
    LoanState.DISBURSING,
    LoanState.ACTIVE,
    LoanState.REPAID,
    LoanState.WRITTEN_OFF,
)
LOAN_BOOK_PAGE = 500


@dataclass(frozen=True, slots=True)
class LoanBookRow:
    loan_id: str
    code: str
    lender_id: str
    lender_name: str
    borrower_id: str
    borrower_name: str
    state: str
    principal_cents: int
    fee_cents: int
    penalty_cents: int  # charged, with what accrues up to the day
    repaid_cents: int  # principal, fee and penalty paid
    outstanding_cents: int  # what an active loan's borrower owes on the day; 0 otherwise
    written_off_cents: int  # what a written-off loan's borrower still owed; 0 otherwise
    due_date: date
    days_overdue: int
    disbursed_at: datetime | None


@dataclass(frozen=True, slots=True)
class LoanBookPage:
    as_of_day: date
    rows: tuple[LoanBookRow, ...]
    next_after_id: str | None  # pass as `after_id` for the next page; None: this was the last


def _book_row(loan: Loan, today: date, names: dict[str, tuple[str, str]]) -> LoanBookRow:
    loan.accrue_penalty(today)  # on a copy read for the report; nothing is saved
    owed_cents = loan.owed().total_cents
    return LoanBookRow(
        loan_id=loan.id,
        code=loan.code,
        lender_id=loan.lender_id,
        lender_name=names.get(loan.lender_id, ("", ""))[0],
        borrower_id=loan.borrower_id,
        borrower_name=names.get(loan.borrower_id, ("", ""))[0],
        state=loan.state.value,
        principal_cents=loan.terms.principal_cents,
        fee_cents=loan.terms.fee_cents,
        penalty_cents=loan.penalty_charged_cents,
        repaid_cents=loan.principal_paid_cents + loan.fee_paid_cents + loan.penalty_paid_cents,
        outstanding_cents=owed_cents if loan.state is LoanState.ACTIVE else 0,
        written_off_cents=owed_cents if loan.state is LoanState.WRITTEN_OFF else 0,
        due_date=loan.terms.due_date,
        days_overdue=loan.days_overdue(today),
        disbursed_at=loan.disbursed_at,
    )


def loan_book(
    deps: Deps, *, as_of_day: date, after_id: str | None = None, limit: int = LOAN_BOOK_PAGE
) -> LoanBookPage:
    """One page of the loan book, in the order loans were requested (keyset paging)."""
    assert 1 <= limit <= LOAN_PAGE_MAX
    with deps.uow.read_only() as uow:
        loans = uow.reports.loans_page(states=BOOK_STATES, after_id=after_id, limit=limit + 1)
        page = loans[:limit]
        names = uow.users.contacts({u for loan in page for u in (loan.borrower_id, loan.lender_id)})
    rows = tuple(_book_row(loan, as_of_day, names) for loan in page)
    return LoanBookPage(as_of_day, rows, page[-1].id if len(loans) > limit else None)


def iter_loan_book(
    deps: Deps, *, as_of_day: date, page_size: int = LOAN_BOOK_PAGE
) -> Iterator[LoanBookRow]:
    """The whole loan book, a page (one short read-only transaction) at a time: memory stays
    bounded by `page_size` however large the book. Pages are read one after another, so a loan
    changing between two pages shows as it was when its page was read."""
    after_id: str | None = None
    while True:
        page = loan_book(deps, as_of_day=as_of_day, after_id=after_id, limit=page_size)
        yield from page.rows
        if page.next_after_id is None:
            return
        after_id = page.next_after_id


# --- Arrears ageing and portfolio at risk --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgeingBucket:
    name: str
    days_from: int  # days overdue, inclusive
    days_to: int | None  # inclusive; None: no upper bound
    loans: int
    outstanding_cents: int  # everything owed: principal, fee, penalties
    principal_cents: int  # principal still owed


@dataclass(frozen=True, slots=True)
class PortfolioAtRisk:
    """PAR `days`: principal still owed on loans more than `days` days overdue, over the
    principal still owed on every active loan."""

    days: int
    at_risk_principal_cents: int
    outstanding_principal_cents: int

    @property
    def ratio(self) -> Fraction:
        if self.outstanding_principal_cents == 0:
            return Fraction(0)
        return Fraction(self.at_risk_principal_cents, self.outstanding_principal_cents)

    @property
    def basis_points(self) -> int:
        """The ratio in whole basis points (1/10,000), rounded half up."""
        scaled = self.ratio * 10_000
        return (scaled.numerator * 2 + scaled.denominator) // (2 * scaled.denominator)


@dataclass(frozen=True, slots=True)
class ArrearsAgeing:
    as_of_day: date
    buckets: tuple[AgeingBucket, ...]  # current first
    loans: int  # active loans
    outstanding_cents: int
    overdue_outstanding_cents: int  # every bucket but "current"
    outstanding_principal_cents: int
    par: tuple[PortfolioAtRisk, ...]  # PAR 1, 7, 30

    def par_for(self, days: int) -> PortfolioAtRisk:
        return next(p for p in self.par if p.days == days)


# (name, first day overdue, last day overdue or None)
AGEING_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("current", 0, 0),
    ("1-7", 1, 7),
    ("8-30", 8, 30),
    ("31-60", 31, 60),
    ("61-90", 61, 90),
    ("90+", 91, None),
)
PAR_DAYS = (1, 7, 30)
ARREARS_PAGE = 500


def _active_loans(uow: UnitOfWork, *, page_size: int = ARREARS_PAGE) -> Iterator[Loan]:
    """Every active loan, read a page at a time inside the caller's transaction."""
    after_id: str | None = None
    while True:
        page = uow.reports.loans_page(
            states=(LoanState.ACTIVE,), after_id=after_id, limit=page_size
        )
        yield from page
        if len(page) < page_size:
            return
        after_id = page[-1].id


def _ageing(uow: UnitOfWork, today: date) -> ArrearsAgeing:
    counts = [[0, 0, 0] for _ in AGEING_BUCKETS]  # loans, outstanding, principal
    at_risk = dict.fromkeys(PAR_DAYS, 0)
    for loan in _active_loans(uow):
        loan.accrue_penalty(today)
        owed = loan.owed()
        days = loan.days_overdue(today)
        index = next(
            i
            for i, (_, low, high) in enumerate(AGEING_BUCKETS)
            if low <= days and (high is None or days <= high)
        )
        counts[index][0] += 1
        counts[index][1] += owed.total_cents
        counts[index][2] += owed.principal_cents
        for par_days in PAR_DAYS:
            if days > par_days:
                at_risk[par_days] += owed.principal_cents
    buckets = tuple(
        AgeingBucket(name, low, high, *counts[i])
        for i, (name, low, high) in enumerate(AGEING_BUCKETS)
    )
    principal_cents = sum(b.principal_cents for b in buckets)
    return ArrearsAgeing(
        as_of_day=today,
        buckets=buckets,
        loans=sum(b.loans for b in buckets),
        outstanding_cents=sum(b.outstanding_cents for b in buckets),
        overdue_outstanding_cents=sum(b.outstanding_cents for b in buckets[1:]),
        outstanding_principal_cents=principal_cents,
        par=tuple(PortfolioAtRisk(d, at_risk[d], principal_cents) for d in PAR_DAYS),
    )


def arrears_ageing(deps: Deps, *, as_of_day: date) -> ArrearsAgeing:
    """What active loans owe on the day, by how many days overdue they are, and PAR 1/7/30."""
    with deps.uow.read_only() as uow:
        return _ageing(uow, as_of_day)


# --- The day's M-PESA reconciliation ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlowLine:
    kind: str  # "stk", "c2b" (paybill), "b2c"
    source: str  # "requests" (Deni's own pushes and payouts) or "claims" (callbacks confirmed)
    count: int
    amount_cents: int


@dataclass(frozen=True, slots=True)
class LedgerSide:
    """What the ledger booked against one M-PESA account on the day."""

    account_id: str
    postings: int
    debit_cents: int
    credit_cents: int


@dataclass(frozen=True, slots=True)
class PendingLine:
    kind: str  # "stk" | "b2c" for requests, "claim:c2b" | "claim:stk" for claims
    state: str
    count: int
    amount_cents: int


@dataclass(frozen=True, slots=True)
class MpesaReconciliation:
    day: date
    since: datetime
    before: datetime
    money_in: tuple[FlowLine, ...]
    money_out: tuple[FlowLine, ...]
    mpesa_in_cents: int  # what M-PESA's records say came in
    mpesa_out_cents: int  # and went out
    ledger: tuple[LedgerSide, ...]  # the paybill account, then the B2C float
    ledger_in_cents: int  # the paybill account's net debit on the day
    ledger_out_cents: int  # the B2C float's net credit on the day
    in_difference_cents: int  # mpesa_in - ledger_in: 0 when they agree
    out_difference_cents: int  # mpesa_out - ledger_out
    suspense_received: CountAndCents  # payments that went to suspense on the day
    suspense_unassigned: CountAndCents  # every payment still in suspense now
    pending: tuple[PendingLine, ...]  # requests and claims not settled yet, now
    awaiting_decision: CountAndCents  # payouts an operator must decide, now
    balance_report: BalanceReportRow | None  # M-PESA's last balance report up to the day's end

    @property
    def agrees(self) -> bool:
        return self.in_difference_cents == 0 and self.out_difference_cents == 0


def _flows(flows: list[MpesaFlow], source: str, kinds: tuple[str, ...]) -> list[FlowLine]:
    return [FlowLine(f.kind, source, f.count, f.amount_cents) for f in flows if f.kind in kinds]


def mpesa_reconciliation(deps: Deps, *, day: date) -> MpesaReconciliation:
    """One Nairobi day: M-PESA's money in and out against the ledger's M-PESA accounts."""
    since, before = day_window(day)
    with deps.uow.read_only() as uow:
        requests = uow.reports.settled_requests(since=since, before=before)
        claims = uow.reports.settled_claims(since=since, before=before)
        totals = {t.group: t for t in uow.reports.account_totals(since=since, before=before)}
        suspense_received = uow.reports.suspense_created(since=since, before=before)
        suspense_unassigned = uow.reports.unassigned_suspense(created_cuts=())[0]
        pending = [PendingLine(f.kind, f.state, f.count, f.amount_cents) for f in
                   uow.reports.open_requests()]  # fmt: skip
        pending += [
            PendingLine(f"claim:{f.kind}", f.state, f.count, f.amount_cents)
            for f in uow.reports.open_claims()
        ]
        awaiting = uow.reports.awaiting_decision()
        report = uow.reports.last_balance_report(before=before, received_only=False)
    money_in = tuple(_flows(requests, "requests", ("stk",)) + _flows(claims, "claims", ("stk",)))
    money_in += tuple(_flows(claims, "claims", ("c2b",)))
    money_out = tuple(_flows(requests, "requests", ("b2c",)))
    sides = []
    for platform in (PlatformAccount.MPESA_PAYBILL, PlatformAccount.MPESA_B2C_FLOAT):
        t = totals.get(platform.value)
        sides.append(
            LedgerSide(
                platform.value,
                t.postings if t else 0,
                t.debit_cents if t else 0,
                t.credit_cents if t else 0,
            )
        )
    paybill, float_ = sides
    mpesa_in_cents = sum(f.amount_cents for f in money_in)
    mpesa_out_cents = sum(f.amount_cents for f in money_out)
    ledger_in_cents = paybill.debit_cents - paybill.credit_cents
    ledger_out_cents = float_.credit_cents - float_.debit_cents
    return MpesaReconciliation(
        day=day,
        since=since,
        before=before,
        money_in=money_in,
        money_out=money_out,
        mpesa_in_cents=mpesa_in_cents,
        mpesa_out_cents=mpesa_out_cents,
        ledger=tuple(sides),
        ledger_in_cents=ledger_in_cents,
        ledger_out_cents=ledger_out_cents,
        in_difference_cents=mpesa_in_cents - ledger_in_cents,
        out_difference_cents=mpesa_out_cents - ledger_out_cents,
        suspense_received=suspense_received,
        suspense_unassigned=suspense_unassigned,
        pending=tuple(sorted(pending, key=lambda p: (p.kind, p.state))),
        awaiting_decision=awaiting,
        balance_report=report,
    )


# --- Dashboard ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FloatPosition:
    """M-PESA's money (its last received balance report) against what Deni owes members."""

    report: BalanceReportRow | None
    mpesa_cents: int | None  # working + utility account of the last received report
    wallet_liabilities_cents: int  # every wallet's balance, now
    in_flight_cents: int  # held for payouts not confirmed yet (still owed to members)
    suspense_cents: int  # received for nobody yet (owed to whoever it turns out to be)
    ledger_mpesa_cents: int  # the ledger's M-PESA cash: paybill + B2C float, natural balances

    @property
    def unexplained_cents(self) -> int | None:
        """What the last received report found M-PESA moved that the ledger and the money in
        flight do not explain (like with like, services/mpesa/balances.py); None before there
        are two reports to compare. Unlike `cover_cents`, no clock skew: 0 means in step."""
        if self.report is None or self.report.working_difference_cents is None:
            return None
        return self.report.working_difference_cents + (self.report.utility_difference_cents or 0)

    @property
    def cover_cents(self) -> int | None:
        """M-PESA's money at the last report minus what Deni owes now (wallets, in flight,
        suspense); None without a report. A rough cover, moving with everything paid since the
        report; below zero, M-PESA may hold less than members are owed."""
        if self.mpesa_cents is None:
            return None
        owed = self.wallet_liabilities_cents + self.in_flight_cents + self.suspense_cents
        return self.mpesa_cents - owed


@dataclass(frozen=True, slots=True)
class ReconciliationState:
    last_report: BalanceReportRow | None  # the newest asked for, whatever its state
    last_received: BalanceReportRow | None
    last_pull_at: datetime | None  # the newest finished pass of the Pull API


@dataclass(frozen=True, slots=True)
class OutboxDepth:
    pending: int
    sending: int
    dead: int


@dataclass(frozen=True, slots=True)
class AgeLine:
    name: str
    count: int
    amount_cents: int


@dataclass(frozen=True, slots=True)
class Volume:
    name: str  # top_ups, repayments, paid_out_to_mpesa, disbursements (wallet to wallet)
    count: int
    amount_cents: int


@dataclass(frozen=True, slots=True)
class Dashboard:
    now: datetime
    today: date
    mpesa_float: FloatPosition
    reconciliation: ReconciliationState
    outbox: OutboxDepth
    suspense: tuple[AgeLine, ...]  # unassigned, by age
    loans: tuple[LoanStateTotals, ...]  # by state
    par: tuple[PortfolioAtRisk, ...]
    today_volumes: tuple[Volume, ...]


# (name, age at least) for suspense; each bucket runs to the next one's start.
SUSPENSE_AGES: tuple[tuple[str, timedelta], ...] = (
    ("under 1 day", timedelta(0)),
    ("1-7 days", timedelta(days=1)),
    ("7-30 days", timedelta(days=7)),
    ("over 30 days", timedelta(days=30)),
)
VOLUMES = (
    ("top_ups", EntryCode.DEPOSIT),
    ("repayments", EntryCode.LOAN_REPAYMENT),
    ("paid_out_to_mpesa", EntryCode.PAYOUT_POST),  # withdrawals and loans sent to M-PESA
    ("disbursements", EntryCode.LOAN_DISBURSEMENT),
)


def dashboard(deps: Deps, *, now: datetime) -> Dashboard:
    """The back office's figures at `now`, read in one read-only transaction."""
    today = nairobi_today(now)
    since, before = day_window(today)
    with deps.uow.read_only() as uow:
        balances = {b.group: b.balance_cents for b in uow.reports.account_balances()}
        last_report = uow.reports.last_balance_report(before=None, received_only=False)
        last_received = uow.reports.last_balance_report(before=None, received_only=True)
        pull = uow.pulls.last(finished_only=True)
        outbox = uow.reports.outbox_states()
        cuts = [now - age for _, age in SUSPENSE_AGES[1:]]
        suspense = uow.reports.unassigned_suspense(created_cuts=cuts)
        loan_states = uow.reports.loan_states()
        ageing = _ageing(uow, today)
        volumes = {v.code: v for v in uow.reports.entry_volumes(since=since, before=before)}
    mpesa_cents = (
        None
        if last_received is None
        else (last_received.working_cents or 0) + (last_received.utility_cents or 0)
    )
    position = FloatPosition(
        report=last_received,
        mpesa_cents=mpesa_cents,
        wallet_liabilities_cents=balances.get(WALLETS_GROUP, 0),
        in_flight_cents=balances.get(PlatformAccount.PAYOUTS_IN_FLIGHT.value, 0),
        suspense_cents=balances.get(PlatformAccount.SUSPENSE.value, 0),
        ledger_mpesa_cents=balances.get(PlatformAccount.MPESA_PAYBILL.value, 0)
        + balances.get(PlatformAccount.MPESA_B2C_FLOAT.value, 0),
    )
    empty = CountAndCents(0, 0)
    return Dashboard(
        now=now,
        today=today,
        mpesa_float=position,
        reconciliation=ReconciliationState(
            last_report, last_received, pull.finished_at if pull else None
        ),
        outbox=OutboxDepth(
            pending=outbox.get(OutboxState.PENDING.value, 0),
            sending=outbox.get(OutboxState.SENDING.value, 0),
            dead=outbox.get(OutboxState.DEAD.value, 0),
        ),
        suspense=tuple(
            AgeLine(name, line.count, line.amount_cents)
            for (name, _), line in zip(SUSPENSE_AGES, suspense, strict=True)
        ),
        loans=tuple(sorted(loan_states, key=lambda s: list(LoanState).index(LoanState(s.state)))),
        par=ageing.par,
        today_volumes=tuple(
            Volume(
                name,
                volumes[code.value].entries if code.value in volumes else empty.count,
                volumes[code.value].amount_cents if code.value in volumes else 0,
            )
            for name, code in VOLUMES
        ),
    )
