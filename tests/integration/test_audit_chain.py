"""The audit chain: rows are chained at commit, savepoints take their rows with them, and the
chain's head is not held while a command runs."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from deni.adapters.db import tables as t
from deni.adapters.db.engine import reading
from deni.bootstrap import Deni, database_engine
from deni.services import audit
from deni.services.common import audit as append_audit
from deni.services.ports import UnitOfWork

WAIT_S = 10.0


def _commands(deni: Deni) -> list[str]:
    with reading(database_engine(deni)) as connection:  # never waits for a writer, on SQLite too
        query = select(t.audit_log.c.command).order_by(t.audit_log.c.seq)
        return list(connection.execute(query).scalars())


def _append(uow: UnitOfWork, command: str, deni: Deni) -> None:
    append_audit(
        uow,
        actor_id="tester",
        channel="cli",
        command=command,
        details={},
        now=deni.clock.now(),
    )


def test_a_transactions_rows_are_chained_at_commit_and_a_rolled_back_savepoint_drops_its_own(
    deni: Deni,
) -> None:
    before = _commands(deni)
    with deni.uow() as uow:
        _append(uow, "first", deni)
        with uow.savepoint() as kept:
            _append(kept, "kept", deni)
            kept.commit()
        with uow.savepoint() as undone:
            _append(undone, "undone", deni)  # left without commit: rolled back
        _append(uow, "last", deni)
        assert _commands(deni) == before  # nothing written before the commit
        uow.commit()
    assert _commands(deni)[len(before) :] == ["first", "kept", "last"]
    with deni.uow() as uow:
        _append(uow, "never", deni)  # no commit
    assert "never" not in _commands(deni)
    assert audit.verify_audit_log(
        deni,
    ).ok


def test_a_command_in_progress_does_not_hold_the_chain_for_others(deni: Deni) -> None:
    if database_engine(deni).dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time anyway")
    with deni.uow() as slow:
        _append(slow, "slow", deni)  # queued: the head is not locked yet
        done = threading.Event()

        def other_command() -> None:
            with deni.uow() as uow:
                _append(uow, "quick", deni)
                uow.commit()
            done.set()

        worker = threading.Thread(target=other_command)
        worker.start()
        assert done.wait(WAIT_S), "the other command waited for the audit head"
        worker.join(WAIT_S)
        slow.commit()
    assert _commands(deni)[-2:] == ["quick", "slow"]  # chained in commit order
    assert audit.verify_audit_log(
        deni,
    ).ok
