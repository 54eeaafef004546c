"""The USSD reads (adapters/db/ussd_reads.py) show what the API's read side shows: same
balances, statement lines, loans, names."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, text
from sqlalchemy.pool import QueuePool
from tests.support.builders import fund, lend, register

from deni.adapters.db.engine import BEGIN_MODE_KEY, make_engine
from deni.adapters.db.ussd_reads import SqlUssdReads
from deni.bootstrap import Deni
from deni.domain.loans import LoanState
from deni.domain.users import nairobi_today
from deni.services import queries


def test_reads_match_the_api_read_side(deni: Deni) -> None:
    lender = register(deni, name="Lender Lucy", pin="3591")
    borrower = register(deni, name="Borrower Ben", pin="5683")
    fund(deni, lender, 1_000_000)
    for approve in (True, False, True):
        lend(deni, lender=lender, borrower=borrower, approve_with_pin="3591" if approve else None)
    reads = deni.ussd_reads
    assert isinstance(reads, SqlUssdReads)  # what bootstrap wires
    today = nairobi_today(deni.clock.now())

    member = reads.member(lender.phone)
    assert member is not None
    assert (member.id, member.name, member.language) == (lender.id, lender.name, "en")
    assert reads.member("254799999999") is None

    for user in (lender, borrower):
        mine = reads.statement(user.id, limit=5)
        api = queries.wallet_statement(deni, user_id=user.id, limit=5)
        assert mine.balance_cents == api.balance_cents == reads.balance_cents(user.id)
        assert [(x.code, x.amount_cents, x.created_at) for x in mine.lines] == [
            (x.code, x.amount_cents, x.created_at) for x in api.lines
        ]
        for role in ("borrower", "lender"):
            for state in (LoanState.ACTIVE, LoanState.REQUESTED):
                lines = reads.loans(
                    user_id=user.id, role=role, state=state, offset=0, limit=4, today=today
                )
                views = queries.list_loans(
                    deni,
                    user_id=user.id,
                    role=role,
                    states=[state],
                    limit=4,
                )
                assert [(x.loan, x.owed_cents, x.borrower_name, x.lender_name) for x in lines] == [
                    (v.loan, v.owed.total_cents, v.borrower_name, v.lender_name) for v in views
                ]
                for line in lines:
                    assert reads.loan(line.loan.id, today=today) == line
    assert reads.loan("no-such-loan", today=today) is None
    assert (
        len(
            reads.loans(
                user_id=borrower.id,
                role="borrower",
                state=LoanState.ACTIVE,
                offset=1,
                limit=4,
                today=today,
            )
        )
        == 1
    )


def test_a_read_leaves_its_pooled_connection_as_writers_expect(database_url: str) -> None:
    """Autocommit (PostgreSQL) or no BEGIN (SQLite) is for the read only: the next
    transaction on the same pooled connection is a real one, begun IMMEDIATE on SQLite."""
    engine = make_engine(database_url, pool_size=1)
    try:
        reads = SqlUssdReads(engine)
        assert reads.member("254799999999") is None
        assert isinstance(engine.pool, QueuePool)
        assert engine.pool.checkedin() == 1  # so the next checkout is the one the read used
        with engine.connect() as connection:
            assert BEGIN_MODE_KEY not in connection.info
            if engine.dialect.name == "postgresql":
                assert connection.get_isolation_level() == "READ COMMITTED"
                assert connection.connection.driver_connection.autocommit is False  # type: ignore[union-attr]
    finally:
        engine.dispose()


def test_a_read_is_one_statement_and_the_next_writer_still_begins_immediate(
    database_url: str,
) -> None:
    """A USSD read sends its SELECT alone (no BEGIN, nothing to roll back: autocommit on
    PostgreSQL); a transaction on the same pooled connection afterwards begins as writers
    must."""
    engine = make_engine(database_url, pool_size=1)
    sqlite = engine.dialect.name == "sqlite"
    sent: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement if statement.startswith("BEGIN") else statement.split()[0])
        if not sqlite:  # psycopg sends its BEGIN itself: its autocommit flag tells
            sent.append(f"autocommit={conn.connection.driver_connection.autocommit}")

    try:
        reads = SqlUssdReads(engine)
        event.listen(engine, "before_cursor_execute", note)
        assert reads.member("254799999999") is None
        assert sent == (["SELECT"] if sqlite else ["SELECT", "autocommit=True"])
        sent.clear()
        with engine.begin() as connection:
            connection.execute(text("SELECT 1"))
        assert sent == (["BEGIN IMMEDIATE", "SELECT"] if sqlite else ["SELECT", "autocommit=False"])
    finally:
        engine.dispose()
