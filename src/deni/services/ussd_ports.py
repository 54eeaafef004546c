"""What USSD screens read, as a port: small views, each one statement in the adapter.

The REST API's read side (services/queries.py) builds whole views for any client: a loan with
its repayments and both parties' contacts, a statement page with receipts. A USSD screen shows
a few fields of one of those, and nearly every hop reads one, so `UssdReads` answers exactly
that: a user by phone, a wallet balance, the mini-statement, a page of loans with the other
party's name, one loan with both names. The adapter is adapters/db/ussd_reads.py; a test keeps
it in step with queries.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from deni.domain.loans import Loan, LoanState

ROLES = ("borrower", "lender")
PAGE_ROWS_MAX = 20


@dataclass(frozen=True, slots=True)
class Member:
    """A registered user, as a session needs them."""

    id: str
    name: str
    language: str
    phone_proven: bool = True  # False: made online and never proven; its PIN proves it here


@dataclass(frozen=True, slots=True)
class LoanLine:
    loan: Loan  # penalties accrued to today, as the borrower would pay now
    owed_cents: int
    borrower_name: str
    lender_name: str


@dataclass(frozen=True, slots=True)
class StatementLine:
    code: str
    amount_cents: int  # + money in, - money out (the wallet's natural balance moves by it)
    created_at: datetime
    cause_type: str = ""  # "loan" on a payout hold: a loan's principal sent on to M-PESA


@dataclass(frozen=True, slots=True)
class MiniStatement:
    balance_cents: int
    lines: list[StatementLine]  # newest first


class UssdReads(Protocol):
    """Read-only, each call one statement (one snapshot); nothing is ever written."""

    def member(self, phone: str) -> Member | None:
        """The user with this (normalised) phone number, if registered."""
        ...

    def balance_cents(self, user_id: str) -> int:
        """The wallet's balance; NotFound (wallet_not_found) if there is no wallet."""
        ...

    def statement(self, user_id: str, *, limit: int) -> MiniStatement:
        """The balance and the newest `limit` (1 to PAGE_ROWS_MAX) postings of the wallet."""
        ...

    def loans(
        self, *, user_id: str, role: str, state: LoanState, offset: int, limit: int, today: date
    ) -> list[LoanLine]:
        """The user's loans as `role` (ROLES) in `state`, newest first, like the API's list;
        penalties accrued to `today` on the copies read (nothing is saved)."""
        ...

    def past_loans(
        self, *, user_id: str, role: str, offset: int, limit: int, today: date
    ) -> list[LoanLine]:
        """The user's loans as `role` that are over (repaid, written off, declined, cancelled,
        expired), newest first."""
        ...

    def loan(self, loan_id: str, *, today: date) -> LoanLine | None:
        """One loan with both names, penalties accrued to `today`; None if there is none."""
        ...
