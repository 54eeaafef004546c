"""A scripted book: two lenders, three borrowers, loans repaid on time and late, partly
repaid, overdue, not yet due, written off and declined; the figures each member should see.

Day 0 is the test clock's start (09:00 in Nairobi). Everything is done through the services,
so the same script builds the book for the service tier (fakes, SQLite, PostgreSQL), the API,
the web app and USSD. At the end the clock stands on day 10.

| loan | lender | borrower | principal | fee | penalty/day | due | what happens |
|---|---|---|---:|---:|---:|---|---|
| A | Wanjiku | Otieno | 10,000 | 500 | 0 | day 7 | repaid in full on day 3 (on time) |
| B | Wanjiku | Akinyi | 20,000 | 1,000 | 100 | day 7 | 6,000 repaid on day 3; 3 days overdue |
| C | Wanjiku | Njeri | 5,000 | 0 | 50 | day 5 | nothing repaid; 5 days overdue |
| D | Kamau | Otieno | 30,000 | 1,500 | 0 | day 14 | not due yet |
| E | Kamau | Akinyi | 8,000 | 400 | 0 | day 2 | repaid in full on day 4 (late) |
| F | Kamau | Njeri | 7,000 | 0 | 0 | day 7 | declined |
| G | Kamau | Njeri | 4,000 | 200 | 0 | day 3 | 1,000 repaid on day 1; written off on day 10 |

(Amounts in cents.)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from deni.domain.loans import Loan
from deni.domain.users import User
from deni.services import loans
from tests.fakes import ManualClock
from tests.support.builders import Services, fund, register

PIN = "3591"
DAY = timedelta(days=1)


@dataclass
class Book:
    wanjiku: User  # lender of A, B, C
    kamau: User  # lender of D, E, F, G
    otieno: User  # borrower of A, D
    akinyi: User  # borrower of B, E
    njeri: User  # borrower of C, F, G
    loans: dict[str, Loan]


def _ask(deps: Services, borrower: User, lender: User, principal: int, fee: int, penalty: int,
         days: int) -> Loan:  # fmt: skip
    return loans.request_loan(
        deps,
        borrower_id=borrower.id,
        lender_phone=lender.phone,
        principal_cents=principal,
        fee_cents=fee,
        penalty_daily_cents=penalty,
        term_days=days,
    )


def _repay(deps: Services, borrower: User, loan: Loan, cents: int) -> None:
    loans.repay_loan(
        deps,
        borrower_id=borrower.id,
        loan_id=loan.id,
        amount_cents=cents,
        pin=PIN,
        idempotency_key=str(uuid.uuid4()),
    )


def build_book(deps: Services, clock: ManualClock) -> Book:
    wanjiku = register(deps, name="Wanjiku Kamau", pin=PIN)
    kamau = register(deps, name="Kamau Mwangi", pin=PIN)
    otieno = register(deps, name="Otieno Odhiambo", pin=PIN)
    akinyi = register(deps, name="Akinyi Atieno", pin=PIN)
    njeri = register(deps, name="Njeri Wambui", pin=PIN, language="sw")
    fund(deps, wanjiku, 35_000)
    fund(deps, kamau, 42_000)
    for borrower in (otieno, akinyi, njeri):
        fund(deps, borrower, 2_000)  # for the fees
    terms = {
        "A": (otieno, wanjiku, 10_000, 500, 0, 7),
        "B": (akinyi, wanjiku, 20_000, 1_000, 100, 7),
        "C": (njeri, wanjiku, 5_000, 0, 50, 5),
        "D": (otieno, kamau, 30_000, 1_500, 0, 14),
        "E": (akinyi, kamau, 8_000, 400, 0, 2),
        "F": (njeri, kamau, 7_000, 0, 0, 7),
        "G": (njeri, kamau, 4_000, 200, 0, 3),
    }
    made: dict[str, Loan] = {}
    for name, (borrower, lender, *money) in terms.items():
        clock.advance(timedelta(minutes=1))  # requests in order, newest last
        made[name] = _ask(deps, borrower, lender, *money)
        if name == "F":
            loans.decline_loan(deps, lender_id=lender.id, loan_id=made[name].id)
        else:
            loans.approve_loan(deps, lender_id=lender.id, loan_id=made[name].id, pin=PIN)
    clock.advance(DAY)  # day 1
    _repay(deps, njeri, made["G"], 1_000)
    clock.advance(2 * DAY)  # day 3
    _repay(deps, otieno, made["A"], 10_500)
    _repay(deps, akinyi, made["B"], 6_000)
    clock.advance(DAY)  # day 4
    _repay(deps, akinyi, made["E"], 8_400)
    clock.advance(6 * DAY)  # day 10
    loans.write_off_loan(deps, lender_id=kamau.id, loan_id=made["G"].id, pin=PIN)
    return Book(wanjiku, kamau, otieno, akinyi, njeri, made)


# What each member's book says on day 10.
WANJIKU_TOTALS = {
    "loans_count": 3,
    "lent_cents": 35_000,
    "outstanding_cents": 20_550,  # B: 15,000 + 300 penalty; C: 5,000 + 250 penalty
    "repaid_cents": 16_500,  # A 10,500 + B 6,000
    "fees_earned_cents": 1_500,  # A's fee 500 + B's fee 1,000
    "fees_due_cents": 550,  # the penalties accrued on B and C
    "overdue_count": 2,
    "overdue_cents": 20_550,
    "written_off_count": 0,
    "written_off_cents": 0,
}
KAMAU_TOTALS = {
    "loans_count": 3,  # D, E, G; F was declined
    "lent_cents": 42_000,
    "outstanding_cents": 31_500,  # D
    "repaid_cents": 9_400,  # E 8,400 + G 1,000
    "fees_earned_cents": 600,  # E's fee 400 + G's fee 200
    "fees_due_cents": 1_500,  # D's fee
    "overdue_count": 0,
    "overdue_cents": 0,
    "written_off_count": 1,
    "written_off_cents": 3_200,  # G: 4,000 - 800
}
# Wanjiku's borrowers, most outstanding first: (name, loans, lent, outstanding, repaid, overdue)
WANJIKU_BORROWERS = [
    ("Akinyi Atieno", 1, 20_000, 15_300, 6_000, 15_300),
    ("Njeri Wambui", 1, 5_000, 5_250, 0, 5_250),
    ("Otieno Odhiambo", 1, 10_000, 0, 10_500, 0),
]
# Each borrower's history: (borrowed, repaid, outstanding) and, newest first, (loan, state,
# punctuality, repaid, outstanding).
HISTORY = {
    "otieno": (
        (40_000, 10_500, 31_500),
        [("D", "active", "open", 0, 31_500), ("A", "repaid", "on_time", 10_500, 0)],
    ),
    "akinyi": (
        (28_000, 14_400, 15_300),
        [("E", "repaid", "late", 8_400, 0), ("B", "active", "late", 6_000, 15_300)],
    ),
    "njeri": (
        (9_000, 1_000, 5_250),
        [
            ("G", "written_off", "late", 1_000, 0),
            ("F", "declined", "not_lent", 0, 0),
            ("C", "active", "late", 0, 5_250),
        ],
    ),
}
