"""Push applies mutations in groups, one transaction per group (docs/adr/0005-offline-sync.md).

Whatever fails in mutation k (a busy database, a bug), the database ends up with every
mutation before k whole, with its result and the client's last mutation id, and nothing of k;
nothing is applied twice when the device pushes again.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from deni.bootstrap import Deni, database_engine
from deni.services.ports import StorageBusy
from deni.services.sync import mutations as sync_mutations
from deni.services.sync import push as sync_push
from deni.services.sync.mutations import Args, Outcome, SyncContext
from deni.services.sync.ports import SyncUnitOfWork
from tests.support.api import assert_ledger_whole
from tests.support.builders import ApiUser, api_user, fund
from tests.support.sync import STATUS, Device, push_raw
from tests.support.waiting import wait_until


@pytest.fixture
def pair(client: TestClient, deni: Deni) -> tuple[ApiUser, ApiUser]:
    lender = api_user(client, deni, name="Lender Lee")
    borrower = api_user(client, deni, name="Borrower Bo")
    fund(deni, lender.user, 500_000)
    return lender, borrower


def _requests(device: Device, lender: ApiUser, count: int) -> list[str]:
    loan_ids = [str(uuid.uuid4()) for _ in range(count)]
    for loan_id in loan_ids:
        device.queue_mutation(
            "request_loan",
            loan_id=loan_id,
            lender_phone=lender.user.phone,
            principal_cents=10_000,
            term_days=7,
        )
    return loan_ids


class _FailOnce:
    """request_loan that does its work, then fails for one loan id (its writes must vanish)."""

    def __init__(self, loan_id: str, error: Exception) -> None:
        self.loan_id = loan_id
        self.error = error
        self.armed = True
        self.real = sync_mutations.HANDLERS["request_loan"]

    def __call__(self, uow: SyncUnitOfWork, ctx: SyncContext, args: Args) -> Outcome:
        outcome = self.real(uow, ctx, args)
        if self.armed and args["loan_id"] == self.loan_id:
            self.armed = False
            raise self.error
        return outcome


@pytest.fixture(params=[1, 25], ids=["groups-of-1", "groups-of-25"])
def group_size(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Production commits each mutation alone; the grouped path must keep the same promises."""
    size = int(request.param)
    monkeypatch.setattr(sync_push, "GROUP_MUTATIONS_MAX", size)
    return size


@pytest.fixture
def handlers(monkeypatch: pytest.MonkeyPatch, group_size: int) -> dict[str, Any]:
    table = dict(sync_mutations.HANDLERS)
    monkeypatch.setattr(sync_mutations, "HANDLERS", table)
    monkeypatch.setattr(sync_push, "HANDLERS", table)
    return table


def _loans_of(deni: Deni, lender: ApiUser) -> list[str]:
    with deni.uow.read_only() as uow:
        found = uow.loans.list_for(
            user_id=lender.user.id, role="lender", states=[], limit=100, offset=0
        )
    return sorted(loan.id for loan in found)


def _logged(deni: Deni, user: ApiUser) -> set[tuple[str, str]]:
    with deni.uow.read_only() as uow:
        rows = uow.sync.changes_after(
            user_id=user.user.id, after=(0, 0), below_xid=None, limit=1000
        )
    return {(row.entity, row.entity_id) for row in rows}


def _last_mutation_id(client: TestClient, who: ApiUser, client_id: str) -> int:
    status = client.get(STATUS, params={"client_id": client_id}, headers=who.headers)
    value = status.json()["last_mutation_id"]
    assert isinstance(value, int)
    return value


@pytest.mark.parametrize("failing", [0, 2])
def test_a_busy_database_in_mutation_k_keeps_those_before_and_nothing_of_k(
    client: TestClient,
    deni: Deni,
    pair: tuple[ApiUser, ApiUser],
    handlers: dict[str, Any],
    failing: int,
) -> None:
    lender, borrower = pair
    b = Device(client, borrower)
    loan_ids = _requests(b, lender, 5)
    handlers["request_loan"] = _FailOnce(loan_ids[failing], StorageBusy("lock timeout"))
    answer = b.push()
    assert [r["status"] for r in answer["results"]] == ["applied"] * failing
    assert answer["stopped"]["code"] == "busy"
    assert answer["stopped"]["mutation_id"] == failing + 1
    assert answer["stopped"]["expected_mutation_id"] == failing + 1
    assert answer["last_mutation_id"] == failing
    assert _last_mutation_id(client, borrower, b.client_id) == failing
    assert _loans_of(deni, lender) == sorted(loan_ids[:failing])
    assert ("loan", loan_ids[failing]) not in _logged(deni, lender)
    # The device pushes the rest again: each loan is requested exactly once.
    again = b.push()
    assert again["stopped"] is None
    assert [r["mutation_id"] for r in again["results"]] == list(range(failing + 1, 6))
    assert _loans_of(deni, lender) == sorted(loan_ids)
    lender_device = Device(client, lender)
    lender_device.pull()
    requested = [
        n for n in lender_device.records("notification").values() if n["kind"] == "loan_requested"
    ]
    assert len(requested) == 5
    assert_ledger_whole(deni)


def test_a_bug_in_mutation_k_is_a_500_and_those_before_k_are_kept(
    client: TestClient, deni: Deni, pair: tuple[ApiUser, ApiUser], handlers: dict[str, Any]
) -> None:
    lender, borrower = pair
    b = Device(client, borrower)
    loan_ids = _requests(b, lender, 4)
    handlers["request_loan"] = _FailOnce(loan_ids[2], RuntimeError("a bug"))
    body = {"client_id": b.client_id, "schema_version": 1, "mutations": b.queue}
    response = client.post("/api/v1/sync/push", json=body, headers=borrower.headers)
    assert response.status_code == 500
    assert _last_mutation_id(client, borrower, b.client_id) == 2
    assert _loans_of(deni, lender) == sorted(loan_ids[:2])
    answer = b.push()  # the whole queue again: 1 and 2 are replays
    assert [r["replayed"] for r in answer["results"]] == [True, True, False, False]
    assert _loans_of(deni, lender) == sorted(loan_ids)


def test_a_long_push_is_several_groups_with_the_same_answer(
    client: TestClient,
    deni: Deni,
    pair: tuple[ApiUser, ApiUser],
    handlers: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sync_push, "GROUP_MUTATIONS_MAX", 3)
    lender, borrower = pair
    b = Device(client, borrower)
    loan_ids = _requests(b, lender, 4)
    b.queue_mutation("cancel_loan", loan_id=loan_ids[0])
    b.queue_mutation("cancel_loan", loan_id=loan_ids[0])  # rejected: already cancelled
    b.queue_mutation("teleport_money", amount_cents=5)  # a dead letter
    loan_ids += _requests(b, lender, 3)
    queued = list(b.queue)
    handlers["request_loan"] = _FailOnce(loan_ids[5], StorageBusy("deadlock"))  # mutation 9
    first = b.push()
    assert [(r["mutation_id"], r["status"]) for r in first["results"]] == [
        (1, "applied"),
        (2, "applied"),
        (3, "applied"),
        (4, "applied"),
        (5, "applied"),
        (6, "rejected"),
        (7, "dead_letter"),
        (8, "applied"),
    ]
    assert first["stopped"]["mutation_id"] == 9
    assert first["last_mutation_id"] == 8
    second = b.push()
    assert [r["mutation_id"] for r in second["results"]] == [9, 10]
    assert second["stopped"] is None
    replay = push_raw(client, borrower, b.client_id, queued).json()
    assert [r["replayed"] for r in replay["results"]] == [True] * 10
    assert [r["status"] for r in replay["results"]] == [
        r["status"] for r in first["results"] + second["results"]
    ]
    assert _loans_of(deni, lender) == sorted(loan_ids)
    b.pull()
    assert b.loan(loan_ids[0])["state"] == "cancelled"
    rejected = [n for n in b.records("notification").values() if n["kind"] == "sync_rejected"]
    assert len(rejected) == 1


def test_the_same_id_twice_in_one_push(
    client: TestClient, deni: Deni, pair: tuple[ApiUser, ApiUser]
) -> None:
    lender, borrower = pair
    b = Device(client, borrower)
    _requests(b, lender, 1)
    twice = push_raw(client, borrower, b.client_id, [b.queue[0], b.queue[0]]).json()
    assert [(r["status"], r["replayed"]) for r in twice["results"]] == [
        ("applied", False),
        ("applied", True),
    ]
    other = {"id": 2, "name": "cancel_loan", "args": {"loan_id": str(uuid.uuid4())}}
    clash = push_raw(client, borrower, b.client_id, [other, {**other, "args": {}}]).json()
    assert [r["mutation_id"] for r in clash["results"]] == [2]
    assert clash["stopped"]["code"] == "mutation_id_reused"
    assert len(_loans_of(deni, lender)) == 1


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_real_deadlock_in_mutation_k_keeps_those_before_and_nothing_of_k(
    client: TestClient,
    deni: Deni,
    pair: tuple[ApiUser, ApiUser],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A group holds what its mutations locked until it commits: a command that holds a loan a
    later mutation needs, and then wants a loan an earlier mutation locked, closes a cycle.
    PostgreSQL breaks it; the push keeps the mutations before k and stops at k as busy.
    (One reason production uses groups of one; the grouped path must still keep its promises.)"""
    monkeypatch.setattr(sync_push, "GROUP_MUTATIONS_MAX", 25)
    lender, borrower = pair
    b = Device(client, borrower)
    loan_x, loan_z = _requests(b, lender, 2)
    assert b.push()["stopped"] is None
    b.queue_mutation("cancel_loan", loan_id=loan_z)  # 3: locks loan Z
    b.queue_mutation("cancel_loan", loan_id=loan_x)  # 4: needs loan X, held below
    locked, other_error = threading.Event(), []

    def push_waits_for(holder_pid: int) -> bool:
        """The push waits for a lock this holder has (loan X; it locked Z before)."""
        with database_engine(deni).connect() as connection:
            waiting = text(
                "SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"
            )
            return bool(connection.execute(waiting, {"pid": holder_pid}).scalar_one())

    def hold_x_then_want_z() -> None:
        with database_engine(deni).connect() as connection, connection.begin():
            connection.exec_driver_sql("SET LOCAL deadlock_timeout = '20s'")  # the push detects
            lock = text("SELECT id FROM loans WHERE id = :id FOR UPDATE")
            connection.execute(lock, {"id": loan_x})
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
            locked.set()
            try:
                wait_until(lambda: push_waits_for(pid), what="the push to wait for loan X")
                connection.execute(lock, {"id": loan_z})
            except Exception as error:  # reported below
                other_error.append(error)

    holder = threading.Thread(target=hold_x_then_want_z)
    holder.start()
    assert locked.wait(10)
    answer = b.push()
    holder.join()
    assert not other_error
    assert [(r["mutation_id"], r["status"]) for r in answer["results"]] == [(3, "applied")]
    assert answer["stopped"]["code"] == "busy"
    assert answer["stopped"]["mutation_id"] == 4
    assert answer["last_mutation_id"] == 3
    again = b.push()
    assert [(r["mutation_id"], r["status"]) for r in again["results"]] == [(4, "applied")]
    b.pull()
    assert b.loan(loan_x)["state"] == "cancelled"
    assert b.loan(loan_z)["state"] == "cancelled"
