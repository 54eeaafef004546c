"""Engine helpers: a read connection hands its pooled connection back ready for writers."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from tests.support.waiting import WAIT_TIMEOUT_S

from deni.adapters.db.engine import BEGIN_MODE_KEY, make_engine, reading
from deni.adapters.db.uow import SqlUnitOfWork
from deni.domain.ledger import PlatformAccount
from deni.services.ports import StorageBusy

LOCK_WAIT_MS = 200
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE when lock_timeout passes


def test_a_read_leaves_no_deferred_begin_on_the_pooled_connection(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'engine.sqlite3'}")
    try:
        with reading(engine) as connection:
            assert connection.info[BEGIN_MODE_KEY] == "BEGIN"  # a read never waits for writers
            assert connection.execute(text("SELECT 1")).scalar_one() == 1
        with engine.connect() as connection:  # the same pooled connection, for a writer now
            assert BEGIN_MODE_KEY not in connection.info  # so it begins IMMEDIATE
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_row_lock_is_waited_for_a_bounded_time_then_the_caller_hears_busy(
    postgres_ready: str,
) -> None:
    """PostgreSQL: a transaction stuck holding a row makes others wait lock_timeout, then
    StorageBusy (a 503 with Retry-After in the API), not an endless wait."""
    engine = make_engine(postgres_ready, lock_timeout_ms=LOCK_WAIT_MS)
    holder, waiter = SqlUnitOfWork(engine), SqlUnitOfWork(engine)
    heard: list[BaseException] = []

    def wait_for_the_row() -> None:
        try:
            with waiter:
                waiter.ledger.lock_accounts([PlatformAccount.MPESA_PAYBILL.value])
        except StorageBusy as error:
            heard.append(error)

    try:
        with holder:
            holder.ledger.lock_accounts([PlatformAccount.MPESA_PAYBILL.value])
            started = time.monotonic()
            # The holder keeps the row until the waiter ends: without a bound, that is never.
            waiting = threading.Thread(target=wait_for_the_row)
            waiting.start()
            waiting.join(timeout=WAIT_TIMEOUT_S)
            assert not waiting.is_alive(), "the waiter is still waiting for the row"
            waited_s = time.monotonic() - started
        [busy] = heard
        assert isinstance(busy.__cause__, DBAPIError)
        sqlstate = getattr(busy.__cause__.orig, "sqlstate", None)
        assert sqlstate == LOCK_NOT_AVAILABLE  # lock_timeout ended the wait
        assert waited_s >= LOCK_WAIT_MS / 1000  # and it did wait that long first
    finally:
        engine.dispose()
