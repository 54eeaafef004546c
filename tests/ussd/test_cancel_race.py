"""Two sessions of one member (two phones on one SIM's number never happen, but a session
dropped and dialled again does, and so does a retried gateway) confirm the same cancel at the
same moment: the request is cancelled once, the lender hears it once, one session says
"cancelled" and the other that the loan changed. The PostgreSQL case is the one that matters:
its hops run on separate connections and meet at the loan row's lock."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests.support.builders import fund, next_phone
from tests.support.ussd import Phone, register

from deni.adapters.db import tables as t
from deni.bootstrap import Deni, database_engine
from deni.domain.loans import LoanState
from deni.services import loans, users

PIN = "3591"
ROUNDS = 4
BARRIER_TIMEOUT_S = 30.0


def test_two_sessions_cancel_the_same_request_at_once(client: TestClient, deni: Deni) -> None:
    lender, borrower = Phone(client, next_phone()), Phone(client, next_phone())
    register(lender, name="Otieno Lender", pin=PIN)
    register(borrower, name="Wanjiku Borrower", pin=PIN)
    with deni.uow.read_only() as uow:
        borrower_id = users.find_by_phone(uow, borrower.number).id
    for _ in range(ROUNDS):
        loan = loans.request_loan(
            deni,
            borrower_id=borrower_id,
            lender_phone=lender.number,
            principal_cents=70_000,
            term_days=14,
        )
        sessions = [Phone(client, borrower.number) for _ in range(2)]
        for session in sessions:
            session.dial()
            assert "Yes, cancel it" in session.send("2", "2", "1", "1")
        barrier = threading.Barrier(len(sessions), timeout=BARRIER_TIMEOUT_S)

        def confirm(session: Phone, barrier: threading.Barrier = barrier) -> str:
            barrier.wait()
            return session.send("1")

        with ThreadPoolExecutor(max_workers=len(sessions)) as pool:
            screens = list(pool.map(confirm, sessions))
        cancelled = [s for s in screens if s.startswith("END Cancelled.")]
        changed = [s for s in screens if "That loan has changed" in s]
        assert (len(cancelled), len(changed)) == (1, 1), screens
        with deni.uow.read_only() as uow:
            stored = uow.loans.get(loan.id)
        assert stored is not None
        assert stored.state is LoanState.CANCELLED
        with database_engine(deni).connect() as connection:
            heard = connection.scalar(
                select(func.count())
                .select_from(t.notifications)
                .where(
                    t.notifications.c.loan_id == loan.id, t.notifications.c.kind == "loan_cancelled"
                )
            )
        assert heard == 1


def test_a_request_approved_while_the_cancel_screen_is_open_is_not_cancelled(
    client: TestClient, deni: Deni
) -> None:
    lender, borrower = Phone(client, next_phone()), Phone(client, next_phone())
    register(lender, name="Otieno Lender", pin=PIN)
    register(borrower, name="Wanjiku Borrower", pin=PIN)
    with deni.uow.read_only() as uow:
        borrower_id = users.find_by_phone(uow, borrower.number).id
        lender_user = users.find_by_phone(uow, lender.number)
    fund(deni, lender_user, 500_000)
    loan = loans.request_loan(
        deni, borrower_id=borrower_id, lender_phone=lender.number, principal_cents=70_000,
        term_days=14,
    )  # fmt: skip
    borrower.dial()
    assert "Yes, cancel it" in borrower.send("2", "2", "1", "1")
    loans.approve_loan(deni, lender_id=lender_user.id, loan_id=loan.id, pin=PIN)
    stale = borrower.send("1")
    assert "That loan has changed" in stale
    assert not borrower.ended
    with deni.uow.read_only() as uow:
        stored = uow.loans.get(loan.id)
    assert stored is not None
    assert stored.state is LoanState.ACTIVE
