"""The money reports (services/reports.py) as RFC 4180 CSV: a header row, CRLF line ends,
fields quoted only when they must be. Amounts come twice where people read them: KES with two
decimals (`1234.50`, no thousands separator, a leading `-` below zero) and whole cents.

Shared by every channel that hands out a report (`deni report`, the operator console): each
renderer yields the file's lines, so a large loan book streams a line at a time.

Formula injection: a spreadsheet runs a cell that starts with `=`, `+`, `-`, `@`, a tab or a
carriage return as a formula. Every text field that comes from people (names, codes, states,
M-PESA's descriptions) is written with a leading apostrophe when it starts with one of those;
the numbers Deni formats itself are written as they are.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime

from deni.domain.money import CENTS_PER_SHILLING
from deni.services.reports import (
    ArrearsAgeing,
    LoanBookRow,
    MpesaReconciliation,
    TrialBalance,
)

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class Amount(str):
    """A number Deni formatted itself ("-400.00"): written as it is, never guarded."""

    __slots__ = ()


Cell = str | int | date | datetime | None


def safe_text(value: str) -> str:
    """A text field a spreadsheet will not run: a leading apostrophe before a formula start."""
    return f"'{value}" if value.startswith(FORMULA_STARTS) else value


def kes(amount_cents: int) -> Amount:
    """Cents as KES with two decimals: 123450 -> "1234.50", -5 -> "-0.05"."""
    assert type(amount_cents) is int
    sign = "-" if amount_cents < 0 else ""
    shillings, cents = divmod(abs(amount_cents), CENTS_PER_SHILLING)
    return Amount(f"{sign}{shillings}.{cents:02d}")


def _cell(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Amount):
        return str(value)
    return safe_text(value)


def csv_line(cells: Sequence[Cell]) -> str:
    """One RFC 4180 record with its CRLF; text cells guarded against formula injection."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow([_cell(c) for c in cells])
    return buffer.getvalue()


def _money(cents: int) -> list[Cell]:
    return [kes(cents), cents]


# --- Trial balance ------------------------------------------------------------------------------

TRIAL_BALANCE_HEADER = (
    "account_group", "normal_side", "accounts", "postings",
    "debit_kes", "debit_cents", "credit_kes", "credit_cents",
    "balance_debit_kes", "balance_debit_cents", "balance_credit_kes", "balance_credit_cents",
)  # fmt: skip


def trial_balance_csv(balance: TrialBalance) -> Iterator[str]:
    yield csv_line(TRIAL_BALANCE_HEADER)
    for line in balance.lines:
        yield csv_line(
            [
                line.group,
                line.normal_side,
                line.accounts,
                line.postings,
                *_money(line.debit_cents),
                *_money(line.credit_cents),
                *_money(line.balance_debit_cents),
                *_money(line.balance_credit_cents),
            ]
        )
    yield csv_line(
        [
            "TOTAL",
            "",
            sum(x.accounts for x in balance.lines),
            sum(x.postings for x in balance.lines),
            *_money(balance.debit_cents),
            *_money(balance.credit_cents),
            *_money(balance.balance_debit_cents),
            *_money(balance.balance_credit_cents),
        ]
    )


# --- Loan book ----------------------------------------------------------------------------------

LOAN_BOOK_HEADER = (
    "code", "state", "lender_id", "lender", "borrower_id", "borrower",
    "principal_kes", "principal_cents", "fee_kes", "fee_cents", "penalty_kes", "penalty_cents",
    "repaid_kes", "repaid_cents", "outstanding_kes", "outstanding_cents",
    "written_off_kes", "written_off_cents", "due_date", "days_overdue", "disbursed_at",
)  # fmt: skip


def loan_book_csv(rows: Iterable[LoanBookRow]) -> Iterator[str]:
    """The loan book, a line per loan; give it `reports.iter_loan_book(...)` to stream."""
    yield csv_line(LOAN_BOOK_HEADER)
    for row in rows:
        yield csv_line(
            [
                row.code,
                row.state,
                row.lender_id,
                row.lender_name,
                row.borrower_id,
                row.borrower_name,
                *_money(row.principal_cents),
                *_money(row.fee_cents),
                *_money(row.penalty_cents),
                *_money(row.repaid_cents),
                *_money(row.outstanding_cents),
                *_money(row.written_off_cents),
                row.due_date,
                row.days_overdue,
                row.disbursed_at,
            ]
        )


# --- Arrears ageing -----------------------------------------------------------------------------

ARREARS_HEADER = (
    "line", "days_overdue_from", "days_overdue_to", "loans",
    "outstanding_kes", "outstanding_cents", "principal_kes", "principal_cents",
    "par_basis_points",
)  # fmt: skip


def arrears_csv(ageing: ArrearsAgeing) -> Iterator[str]:
    """A line per bucket, a TOTAL line, then PAR 1/7/30 (at-risk principal, basis points)."""
    yield csv_line(ARREARS_HEADER)
    for b in ageing.buckets:
        yield csv_line(
            [
                b.name,
                b.days_from,
                b.days_to,
                b.loans,
                *_money(b.outstanding_cents),
                *_money(b.principal_cents),
                None,
            ]
        )
    yield csv_line(
        [
            "TOTAL",
            0,
            None,
            ageing.loans,
            *_money(ageing.outstanding_cents),
            *_money(ageing.outstanding_principal_cents),
            None,
        ]
    )
    for par in ageing.par:
        # PAR N counts loans more than N days overdue: from N + 1 days on.
        yield csv_line(
            [
                f"PAR {par.days}",
                par.days + 1,
                None,
                None,
                None,
                None,
                *_money(par.at_risk_principal_cents),
                par.basis_points,
            ]
        )


# --- The day's M-PESA reconciliation ------------------------------------------------------------

MPESA_RECON_HEADER = ("section", "kind", "detail", "count", "amount_kes", "amount_cents")


def mpesa_reconciliation_csv(day: MpesaReconciliation) -> Iterator[str]:
    """Sections: money in and out as M-PESA's records have them, the ledger's M-PESA accounts,
    the differences, suspense, what is still pending, and M-PESA's balance report."""
    yield csv_line(MPESA_RECON_HEADER)
    for flow in day.money_in:
        yield csv_line(["mpesa_in", flow.kind, flow.source, flow.count, *_money(flow.amount_cents)])
    yield csv_line(["mpesa_in_total", "", "", None, *_money(day.mpesa_in_cents)])
    for flow in day.money_out:
        yield csv_line(
            ["mpesa_out", flow.kind, flow.source, flow.count, *_money(flow.amount_cents)]
        )
    yield csv_line(["mpesa_out_total", "", "", None, *_money(day.mpesa_out_cents)])
    for side in day.ledger:
        yield csv_line(
            ["ledger", side.account_id, "debit", side.postings, *_money(side.debit_cents)]
        )
        yield csv_line(["ledger", side.account_id, "credit", None, *_money(side.credit_cents)])
    yield csv_line(["ledger_in", "", "net debit of the paybill account", None,
                    *_money(day.ledger_in_cents)])  # fmt: skip
    yield csv_line(["ledger_out", "", "net credit of the B2C float", None,
                    *_money(day.ledger_out_cents)])  # fmt: skip
    yield csv_line(["difference_in", "", "mpesa - ledger", None, *_money(day.in_difference_cents)])
    yield csv_line(["difference_out", "", "mpesa - ledger", None,
                    *_money(day.out_difference_cents)])  # fmt: skip
    received, unassigned = day.suspense_received, day.suspense_unassigned
    yield csv_line(["suspense", "", "received on the day", received.count,
                    *_money(received.amount_cents)])  # fmt: skip
    yield csv_line(["suspense", "", "unassigned now", unassigned.count,
                    *_money(unassigned.amount_cents)])  # fmt: skip
    for pending in day.pending:
        yield csv_line(["pending", pending.kind, pending.state, pending.count,
                        *_money(pending.amount_cents)])  # fmt: skip
    awaiting = day.awaiting_decision
    yield csv_line(["awaiting_decision", "b2c", "", awaiting.count, *_money(awaiting.amount_cents)])
    report = day.balance_report
    if report is not None:
        detail = f"{report.state} {report.requested_at.isoformat()}"
        for account, cents in (("working", report.working_cents),
                               ("utility", report.utility_cents)):  # fmt: skip
            amount: list[Cell] = _money(cents) if cents is not None else [None, None]
            yield csv_line(["balance_report", account, detail, None, *amount])
        differences = (
            ("working_difference", report.working_difference_cents),
            ("utility_difference", report.utility_difference_cents),
        )
        for account, cents in differences:
            if cents is not None:
                yield csv_line(["balance_report", account, detail, None, *_money(cents)])
