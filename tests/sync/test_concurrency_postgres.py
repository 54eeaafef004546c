"""PostgreSQL: a pull never skips a change committed concurrently, and waits only for writers
in its own database.

Writers in threads append changes (notifications marked read, loans requested) while a reader
pulls again and again; at the end the union of everything pulled covers every change.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import make_url

from deni.bootstrap import Deni
from tests.support.builders import ApiUser, api_user, fund
from tests.support.sync import Device

WRITERS = 4
WRITES_PER_WRITER = 15


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_pull_never_skips_a_concurrent_commit(client: TestClient, deni: Deni) -> None:
    lender = api_user(client, deni, name="Lender Lee")
    borrowers = [api_user(client, deni, name=f"Borrower {i}") for i in range(WRITERS)]
    fund(deni, lender.user, 100_000)
    reader = Device(client, lender)
    seen = {(change["entity"], change["id"]) for change in reader.pull()}
    done = threading.Event()
    errors: list[BaseException] = []

    def write(who_index: int) -> None:
        try:
            device = Device(client, borrowers[who_index])
            for _ in range(WRITES_PER_WRITER):
                device.queue_mutation(
                    "request_loan",
                    loan_id=str(uuid.uuid4()),
                    lender_phone=lender.user.phone,
                    principal_cents=1_000,
                    term_days=3,
                )
                device.push()
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    pulls = 0
    while not done.is_set() and pulls < 10_000:
        for change in reader.pull(limit=3):
            seen.add((change["entity"], change["id"]))
        pulls += 1
        if not any(t.is_alive() for t in threads):
            done.set()
    for thread in threads:
        thread.join()
    for change in reader.pull():
        seen.add((change["entity"], change["id"]))
    assert not errors, errors
    expected_loans = WRITERS * WRITES_PER_WRITER
    with deni.uow.read_only() as uow:
        loans = uow.loans.list_for(
            user_id=lender.user.id, role="lender", states=[], limit=100, offset=0
        )
        notes = uow.notifications.list_for(lender.user.id, unread_only=False, limit=100, offset=0)
    assert len(loans) == expected_loans
    assert {("loan", loan.id) for loan in loans} <= seen
    missing = [n for n in notes if ("notification", n.id) not in seen]
    assert not missing, [(n.kind, n.created_at) for n in missing]
    assert pulls > 1


ELSEWHERE_DATABASE = "deni_test_elsewhere"


@contextmanager
def _open_writer(url: str) -> Iterator[psycopg.Connection]:
    """A transaction that has written (it holds a transaction id) and stays open."""
    with psycopg.connect(url) as connection:
        connection.execute("SELECT pg_current_xact_id()")
        try:
            yield connection
        finally:
            connection.rollback()


def _raw_url(deni: Deni, database: str | None = None) -> str:
    url = make_url(deni.settings.database_url).set(drivername="postgresql")
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


def _request_a_loan(client: TestClient, borrower: ApiUser, lender: ApiUser) -> str:
    loan_id = str(uuid.uuid4())
    device = Device(client, borrower)
    device.queue_mutation(
        "request_loan",
        loan_id=loan_id,
        lender_phone=lender.user.phone,
        principal_cents=1_000,
        term_days=3,
    )
    device.push()
    return loan_id


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_writer_in_another_database_does_not_hold_pulls_back(
    client: TestClient, deni: Deni
) -> None:
    lender = api_user(client, deni, name="Lender Lee")
    borrower = api_user(client, deni, name="Borrower Bo")
    reader = Device(client, lender)
    reader.pull()
    with psycopg.connect(_raw_url(deni, "postgres"), autocommit=True) as admin:
        found = admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (ELSEWHERE_DATABASE,)
        ).fetchone()
        if found is None:
            admin.execute(f'CREATE DATABASE "{ELSEWHERE_DATABASE}"')

    # Another application's long transaction on the same server, begun before the change.
    with _open_writer(_raw_url(deni, ELSEWHERE_DATABASE)):
        loan_id = _request_a_loan(client, borrower, lender)
        pulled = {(c["entity"], c["id"]) for c in reader.pull()}

    assert ("loan", loan_id) in pulled


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_writer_in_this_database_holds_pulls_until_it_ends(
    client: TestClient, deni: Deni
) -> None:
    """It may still commit changes numbered below the new one: serving the new one first would
    move the cursor past them."""
    lender = api_user(client, deni, name="Lender Lee")
    borrower = api_user(client, deni, name="Borrower Bo")
    reader = Device(client, lender)
    reader.pull()

    with _open_writer(_raw_url(deni)):
        loan_id = _request_a_loan(client, borrower, lender)
        held = {(c["entity"], c["id"]) for c in reader.pull()}
    served = {(c["entity"], c["id"]) for c in reader.pull()}

    assert ("loan", loan_id) not in held
    assert ("loan", loan_id) in served
