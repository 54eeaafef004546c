"""The local database, the queue and the optimistic view, without any server."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from deni.offline import local, queue
from deni.offline.client import OfflineClient, Refused
from deni.offline.store import MIGRATIONS, SCHEMA_VERSION, LocalSchemaTooNew, Store

ME = "user-me"
LENDER = "user-lender"


def seeded(path: Path) -> OfflineClient:
    """A device database as a pull would leave it: me, a lender, two loans, a balance."""
    store = Store(path)
    with store.write() as db:
        db.execute(
            "INSERT INTO sync_metadata (key, value) VALUES ('user_id', ?), ('phone', ?)",
            (ME, "254700000001"),
        )
        db.execute(
            "INSERT INTO users (id, phone, name, balance_cents) VALUES (?, ?, 'Me', 50000)",
            (ME, "254700000001"),
        )
        db.execute(
            "INSERT INTO loans (id, code, borrower_id, lender_id, lender_phone, state, "
            "principal_cents, fee_cents, owed_cents) "
            "VALUES ('loan-active', 'DN1', ?, ?, '254700000002', 'active', 20000, 1000, 21000)",
            (ME, LENDER),
        )
        db.execute(
            "INSERT INTO loans (id, code, borrower_id, lender_id, borrower_phone, state, "
            "principal_cents, fee_cents, owed_cents) "
            "VALUES ('loan-asked', 'DN2', ?, ?, '254700000002', 'requested', 30000, 0, 30000)",
            (LENDER, ME),
        )
    return OfflineClient(store)


def test_schema_has_the_tables_indexes_and_version(tmp_path: Path) -> None:
    store = Store(tmp_path / "d.sqlite3")
    names = {
        row[0] for row in store.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    wanted = {"users", "loans", "transactions", "repayments", "notifications"}
    assert wanted | {"sync_metadata", "offline_queue"} <= names
    indexes = {
        row[0] for row in store.db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
    }
    assert {"loans_borrower", "loans_lender", "offline_queue_status"} <= indexes
    assert store.schema_version() == SCHEMA_VERSION
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_older_local_schema_is_migrated_and_keeps_the_queue(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    raw = sqlite3.connect(path)
    for statement in MIGRATIONS[0]:
        raw.execute(statement)
    raw.execute("INSERT INTO sync_metadata VALUES ('schema_version', '1')")
    raw.execute(
        "INSERT INTO offline_queue (mutation_id, idempotency_key, name, args_json, status, "
        "created_at_device) VALUES (1, 'k1', 'top_up', '{\"amount_cents\": 100}', 'pending', 'x')"
    )
    raw.commit()
    raw.close()
    store = Store(path)
    assert store.schema_version() == SCHEMA_VERSION
    kept = queue.get(store.db, 1)
    assert kept is not None
    assert kept.schema_version == 1
    assert kept.args == {"amount_cents": 100}


def test_a_newer_local_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    Store(path).set("schema_version", SCHEMA_VERSION + 1)
    with pytest.raises(LocalSchemaTooNew, match="newer"):
        Store(path)


def test_mutation_ids_go_up_by_one_and_the_effect_is_visible(tmp_path: Path) -> None:
    client = seeded(tmp_path / "d.sqlite3")
    first = client.repay("DN1", amount_cents=1000)
    second = client.top_up(amount_cents=500)
    third = client.approve("loan-asked")
    assert [first.mutation_id, second.mutation_id, third.mutation_id] == [1, 2, 3]
    lines = {line.id: line for line in client.loans()}
    assert lines["loan-active"].owed_cents == 20000
    assert lines["loan-asked"].state == "approved"
    assert lines["loan-asked"].server_state == "requested"
    assert lines["loan-asked"].pending


def test_balance_is_server_balance_minus_pending_outgoing(tmp_path: Path) -> None:
    client = seeded(tmp_path / "d.sqlite3")
    client.repay("DN1", amount_cents=1000)  # out: 1,000
    client.withdraw(amount_cents=2000)  # out: 2,000
    client.approve("DN2")  # out: the principal, 30,000
    client.top_up(amount_cents=7000)  # in, but not until M-PESA confirms
    balance = client.balance()
    assert balance.server_cents == 50000
    assert balance.pending_outgoing_cents == 33000
    assert balance.pending_incoming_cents == 7000
    assert balance.available_cents == 17000
    with pytest.raises(Refused, match="will not hold"):
        client.withdraw(amount_cents=17100)


def test_intents_that_cannot_make_sense_are_refused_and_queue_nothing(tmp_path: Path) -> None:
    client = seeded(tmp_path / "d.sqlite3")
    with pytest.raises(Refused) as refused:
        client.approve("DN1")  # I am the borrower of DN1
    assert refused.value.code == "not_the_lender"
    with pytest.raises(Refused):
        client.repay("DN2", amount_cents=100)  # requested, not active; and I am the lender
    with pytest.raises(Refused) as bad_amount:
        client.repay("DN1", amount_cents=0)
    assert bad_amount.value.code == "invalid_amount"
    with pytest.raises(Refused) as bad_phone:
        client.request_loan(lender_phone="12345", principal_cents=10000, term_days=7)
    assert bad_phone.value.code == "invalid_phone_number"
    assert queue.counts(client.store.db)["pending"] == 0
    assert client.store.get_int("next_mutation_id", 1) == 1


def test_a_failure_between_local_write_and_queue_insert_leaves_neither(tmp_path: Path) -> None:
    client = seeded(tmp_path / "d.sqlite3")

    def half_done(db: sqlite3.Connection, mutation_id: int) -> None:
        local.apply(db, mutation_id, ME, "approve_loan", {"loan_id": "loan-asked"})
        raise RuntimeError("crash before the queue insert")

    with pytest.raises(RuntimeError):
        queue.enqueue(
            client.store,
            name="approve_loan",
            args={"loan_id": "loan-asked"},
            aggregate_id="loan-asked",
            effect=half_done,
        )
    assert {line.id: line.state for line in client.loans()}["loan-asked"] == "requested"
    assert queue.counts(client.store.db)["pending"] == 0
    # The next intent still gets mutation id 1: no gap.
    assert client.approve("loan-asked").mutation_id == 1


def test_a_killed_process_between_local_write_and_queue_insert_leaves_neither(
    tmp_path: Path,
) -> None:
    path = tmp_path / "d.sqlite3"
    seeded(path).store.close()
    script = textwrap.dedent(
        f"""
        import os
        from deni.offline import local, queue
        from deni.offline.store import Store

        store = Store({str(path)!r})

        def effect(db, mutation_id):
            local.apply(db, mutation_id, {ME!r}, "approve_loan", {{"loan_id": "loan-asked"}})
            os._exit(9)  # the process dies here: local write done, queue row not yet

        queue.enqueue(store, name="approve_loan", args={{"loan_id": "loan-asked"}},
                      aggregate_id="loan-asked", effect=effect)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], check=False, timeout=60)  # noqa: S603
    assert done.returncode == 9
    client = OfflineClient(Store(path))
    assert {line.id: line.state for line in client.loans()}["loan-asked"] == "requested"
    assert queue.counts(client.store.db) == {s: 0 for s in queue.ALL_STATES}
    assert client.approve("loan-asked").mutation_id == 1


def test_the_open_queue_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = seeded(tmp_path / "d.sqlite3")
    monkeypatch.setattr(queue, "QUEUE_OPEN_MAX", 3)
    for _ in range(3):
        client.top_up(amount_cents=100)
    with pytest.raises(queue.QueueFull, match="sync"):
        client.top_up(amount_cents=100)


def test_rebase_replays_pending_intents_on_new_server_state(tmp_path: Path) -> None:
    client = seeded(tmp_path / "d.sqlite3")
    client.repay("DN1", amount_cents=5000)
    client.approve("DN2")
    # A pull brings news: the borrower cancelled DN2, and DN1's owed amount went down to 8,000.
    with client.store.write() as db:
        db.execute("UPDATE loans SET state = 'cancelled' WHERE id = 'loan-asked'")
        db.execute("UPDATE loans SET owed_cents = 8000 WHERE id = 'loan-active'")
        pending = queue.unconfirmed(db, confirmed_mutation_id=0)
        stale = local.rebase(db, ME, pending)
    assert stale == [2]  # the approval no longer applies; it stays queued, the server decides
    lines = {line.id: line for line in client.loans()}
    assert lines["loan-active"].owed_cents == 3000
    assert lines["loan-asked"].state == "cancelled"
    assert not lines["loan-asked"].pending
