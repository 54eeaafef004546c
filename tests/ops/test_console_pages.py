"""The console's pages with real data behind them: what an operator reads is what the books
say, and the reports they download add up to the ledger."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable

from deni.bootstrap import Deni
from deni.domain.operators import Role
from tests.ops.conftest import Staff
from tests.support.builders import fund, lend, register, wallet_cents

MakeStaff = Callable[[str, Role], Staff]


def test_search_member_and_loan_pages_show_the_books(deni: Deni, staff: MakeStaff) -> None:
    lender, borrower = register(deni, name="Wanjiku Lender"), register(deni, name="Otieno Borrower")
    fund(deni, lender, 150_000)
    loan = lend(deni, lender=lender, borrower=borrower, approve_with_pin="3591")
    support = staff("amina", Role.SUPPORT)

    found = support.client.get("/ops/search", params={"q": "0" + borrower.phone[3:]}).text
    assert f"/ops/members/{borrower.id}" in found
    by_name = support.client.get("/ops/search", params={"q": "wanjiku"}).text
    assert f"/ops/members/{lender.id}" in by_name
    by_code = support.client.get("/ops/search", params={"q": loan.code.lower()}).text
    assert f"/ops/loans/{loan.id}" in by_code
    refused = support.client.get("/ops/search", params={"q": "x" * 65})
    assert refused.status_code == 400
    assert "lookup_query_too_long" in refused.text

    member = support.client.get(f"/ops/members/{lender.id}").text
    assert "KES 500.00" in member  # 1,500 funded, 1,000 lent
    assert wallet_cents(deni, lender) == 50_000
    assert loan.code in member

    loan_page = support.client.get(f"/ops/loans/{loan.code}").text
    assert "KES 1,000.00" in loan_page
    assert f"wallet:{borrower.id}" in loan_page  # the disbursement's posting
    assert "approve_loan" in loan_page  # its history, from the audit chain

    missing = support.client.get("/ops/loans/NOSUCHLOAN")
    assert missing.status_code == 404
    assert "loan_not_found" in missing.text


def test_the_dashboard_shows_liabilities_and_loans(deni: Deni, staff: MakeStaff) -> None:
    lender, borrower = register(deni, name="Wanjiku"), register(deni, name="Otieno")
    fund(deni, lender, 150_000)
    lend(deni, lender=lender, borrower=borrower, approve_with_pin="3591")
    page = staff("fatuma", Role.FINANCE).client.get("/ops/").text
    assert "KES 1,500.00" in page  # wallets: 500 with the lender, 1,000 with the borrower
    assert "active" in page
    assert "nothing to compare yet" in page  # no balance report received


def test_reports_download_as_csv_and_add_up_to_the_ledger(deni: Deni, staff: MakeStaff) -> None:
    lender, borrower = register(deni, name="Wanjiku"), register(deni, name="=cmd|' /C calc'!A0")
    fund(deni, lender, 150_000)
    lend(deni, lender=lender, borrower=borrower, approve_with_pin="3591")
    finance = staff("fatuma", Role.FINANCE)

    answer = finance.client.get("/ops/reports/trial-balance.csv")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert rows
    wallets = next(r for r in rows if r["account_group"] == "wallets")
    assert int(wallets["balance_credit_cents"]) == wallet_cents(deni, lender) + wallet_cents(
        deni, borrower
    )
    groups = [r for r in rows if r["account_group"] != "TOTAL"]
    assert sum(int(r["debit_cents"]) for r in groups) == sum(int(r["credit_cents"]) for r in groups)

    book = finance.client.get("/ops/reports/loan-book.csv").text
    assert "'=cmd" in book  # a name that would run as a formula in a spreadsheet, defused
    assert finance.client.get("/ops/reports/arrears.csv").status_code == 200
    assert finance.client.get("/ops/reports/mpesa-recon.csv").status_code == 200
    bad_day = finance.client.get("/ops/reports/arrears.csv", params={"day": "2026-13-01"})
    assert bad_day.status_code == 400
    assert "invalid_day" in bad_day.text
    assert finance.client.get("/ops/reports/nothing.csv").status_code == 404


def test_reading_members_data_is_in_the_audit_chain(deni: Deni, staff: MakeStaff) -> None:
    """Who looked at whose data, and which report left the building, are audited like a
    change; a refused reading (not found) leaves no row."""
    lender, borrower = register(deni, name="Wanjiku"), register(deni, name="Otieno")
    fund(deni, lender, 150_000)
    loan = lend(deni, lender=lender, borrower=borrower, approve_with_pin="3591")
    support, finance = staff("amina", Role.SUPPORT), staff("fatuma", Role.FINANCE)

    assert support.client.get(f"/ops/members/{borrower.id}").status_code == 200
    assert support.client.get(f"/ops/loans/{loan.code}").status_code == 200
    assert support.client.get("/ops/loans/NOSUCHLOAN").status_code == 404
    assert finance.client.get("/ops/reports/loan-book.csv", params={"day": "2026-01-31"}).is_success
    assert finance.client.get("/ops/reports/nothing.csv").status_code == 404

    with deni.uow.read_only() as uow:
        rows = [r for r in uow.audit.scan(after_seq=0, limit=1_000) if r.command.startswith("ops_")]
    readings = [
        (r.actor_id, r.command, json.loads(r.details))
        for r in rows
        if r.command not in {"ops_sign_in", "ops_add_operator"}
    ]
    assert readings == [
        ("ops:amina", "ops_read_member", {"user_id": borrower.id}),
        ("ops:amina", "ops_read_loan", {"loan_id": loan.id}),
        ("ops:fatuma", "ops_download_report", {"day": "2026-01-31", "report": "loan-book"}),
    ]
