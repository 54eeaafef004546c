"""The money reports as CSV: RFC 4180 records, KES beside cents, and no cell a spreadsheet
would run as a formula."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime

import pytest

from deni.entrypoints import reports_csv
from deni.services import reports
from deni.services.report_ports import WALLETS_GROUP, AccountGroupTotals, CountAndCents

DAY = date(2026, 11, 26)


def parsed(lines: object) -> list[list[str]]:
    text = "".join(lines)  # type: ignore[arg-type]
    assert text.endswith("\r\n")
    return list(csv.reader(io.StringIO(text, newline="")))


def book_row(**changes: object) -> reports.LoanBookRow:
    values: dict[str, object] = {
        "loan_id": "01J0", "code": "AB12CD", "lender_id": "L1", "lender_name": "Wanjiku",
        "borrower_id": "B1", "borrower_name": "Otieno", "state": "active",
        "principal_cents": 1_000_00, "fee_cents": 50_00, "penalty_cents": 5,
        "repaid_cents": 300_00, "outstanding_cents": 750_05, "written_off_cents": 0,
        "due_date": DAY, "days_overdue": 3,
        "disbursed_at": datetime(2026, 11, 1, 6, 0, tzinfo=UTC),
    }  # fmt: skip
    values.update(changes)
    return reports.LoanBookRow(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cents", "text"),
    [(0, "0.00"), (5, "0.05"), (123_450, "1234.50"), (-5, "-0.05"), (-400_00, "-400.00"),
     (100_000_000_00, "100000000.00")],
)  # fmt: skip
def test_kes_has_two_decimals_no_separators_and_a_sign(cents: int, text: str) -> None:
    assert reports_csv.kes(cents) == text


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_a_name_that_would_run_as_a_formula_gets_a_leading_apostrophe(start: str) -> None:
    name = f'{start}HYPERLINK("http://x","y")'
    [_, row] = parsed(reports_csv.loan_book_csv([book_row(borrower_name=name, code=name)]))
    header = list(reports_csv.LOAN_BOOK_HEADER)
    assert row[header.index("borrower")] == f"'{name}"
    assert row[header.index("code")] == f"'{name}"
    assert row[header.index("lender")] == "Wanjiku"  # harmless text stays as it is


def test_quotes_commas_and_line_breaks_in_names_survive_the_round_trip() -> None:
    name = 'Mama "Njeri", Kisumu\nline two'
    [header, row] = parsed(reports_csv.loan_book_csv([book_row(lender_name=name)]))
    assert header == list(reports_csv.LOAN_BOOK_HEADER)
    assert row[header.index("lender")] == name


def test_every_record_ends_with_crlf() -> None:
    lines = list(reports_csv.loan_book_csv([book_row(), book_row(code="ZZ99")]))
    assert len(lines) == 3
    assert all(line.endswith("\r\n") and "\n" not in line[:-2] for line in lines)


def test_the_loan_book_has_kes_and_cents_columns() -> None:
    [header, row] = parsed(reports_csv.loan_book_csv([book_row()]))
    cells = dict(zip(header, row, strict=True))
    assert (cells["outstanding_kes"], cells["outstanding_cents"]) == ("750.05", "75005")
    assert (cells["penalty_kes"], cells["penalty_cents"]) == ("0.05", "5")
    assert cells["due_date"] == "2026-11-26"
    assert cells["days_overdue"] == "3"
    assert cells["disbursed_at"] == "2026-11-01T06:00:00+00:00"


def test_an_empty_loan_book_is_its_header() -> None:
    assert parsed(reports_csv.loan_book_csv([])) == [list(reports_csv.LOAN_BOOK_HEADER)]


def test_the_trial_balance_csv_ends_with_equal_totals() -> None:
    balance = reports.TrialBalance(
        as_of=None,
        lines=(
            reports._line(AccountGroupTotals("platform:mpesa_paybill", "debit", 1, 2, 900, 0)),
            reports._line(AccountGroupTotals(WALLETS_GROUP, "credit", 2, 3, 100, 1000)),
        ),
        debit_cents=1000, credit_cents=1000, balance_debit_cents=900, balance_credit_cents=900,
    )  # fmt: skip
    rows = parsed(reports_csv.trial_balance_csv(balance))
    assert rows[0] == list(reports_csv.TRIAL_BALANCE_HEADER)
    cells = dict(zip(rows[0], rows[-1], strict=True))
    assert cells["account_group"] == "TOTAL"
    assert cells["debit_kes"] == cells["credit_kes"] == "10.00"
    assert cells["balance_debit_cents"] == cells["balance_credit_cents"] == "900"
    wallets = dict(zip(rows[0], rows[2], strict=True))
    assert (wallets["balance_credit_kes"], wallets["balance_debit_cents"]) == ("9.00", "0")


def test_arrears_csv_has_buckets_a_total_and_par_in_basis_points() -> None:
    par = tuple(reports.PortfolioAtRisk(d, 1, 3) for d in (1, 7, 30))
    buckets = tuple(
        reports.AgeingBucket(name, low, high, 1, 100, 90)
        for name, low, high in reports.AGEING_BUCKETS
    )
    ageing = reports.ArrearsAgeing(DAY, buckets, 6, 600, 500, 540, par)
    rows = parsed(reports_csv.arrears_csv(ageing))
    assert [r[0] for r in rows[1:]] == [
        "current", "1-7", "8-30", "31-60", "61-90", "90+", "TOTAL", "PAR 1", "PAR 7", "PAR 30",
    ]  # fmt: skip
    header = rows[0]
    par1 = dict(zip(header, rows[-3], strict=True))
    assert (par1["days_overdue_from"], par1["par_basis_points"]) == ("2", "3333")
    assert dict(zip(header, rows[6], strict=True))["days_overdue_to"] == ""


def test_the_mpesa_day_csv_has_its_sections_and_a_negative_difference_as_a_number() -> None:
    since, before = reports.day_window(DAY)
    day = reports.MpesaReconciliation(
        day=DAY, since=since, before=before,
        money_in=(reports.FlowLine("stk", "requests", 1, 900_00),), money_out=(),
        mpesa_in_cents=900_00, mpesa_out_cents=0,
        ledger=(reports.LedgerSide("platform:mpesa_paybill", 2, 1_023_00, 0),
                reports.LedgerSide("platform:mpesa_b2c_float", 0, 0, 0)),
        ledger_in_cents=1_023_00, ledger_out_cents=0, in_difference_cents=-123_00,
        out_difference_cents=0, suspense_received=CountAndCents(0, 0),
        suspense_unassigned=CountAndCents(1, 70_00),
        pending=(reports.PendingLine("claim:c2b", "waiting", 1, 10_00),),
        awaiting_decision=CountAndCents(0, 0), balance_report=None,
    )  # fmt: skip
    rows = parsed(reports_csv.mpesa_reconciliation_csv(day))
    assert rows[0] == list(reports_csv.MPESA_RECON_HEADER)
    sections = {r[0] for r in rows[1:]}
    assert {"mpesa_in", "ledger", "difference_in", "suspense", "pending"} <= sections
    [difference] = [r for r in rows if r[0] == "difference_in"]
    assert difference[-2:] == ["-123.00", "-12300"]  # our own number: no apostrophe
