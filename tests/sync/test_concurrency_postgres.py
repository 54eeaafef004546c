"""PostgreSQL: a pull never skips a change committed concurrently.

Writers in threads append changes (notifications marked read, loans requested) while a reader
pulls again and again; at the end the union of everything pulled covers every change.
"""

from __future__ import annotations

import threading
import uuid

import pytest
from fastapi.testclient import TestClient

from deni.bootstrap import Deni
from tests.helpers import api_user, fund
from tests.sync.support import Device

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
