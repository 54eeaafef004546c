"""Engine helpers: a read connection hands its pooled connection back ready for writers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import text

from deni.adapters.db.engine import BEGIN_MODE_KEY, make_engine, reading
from deni.adapters.db.uow import SqlUnitOfWork
from deni.domain.ledger import PlatformAccount
from deni.services.ports import StorageBusy

LOCK_WAIT_MS = 200


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
    try:
        with holder:
            holder.ledger.lock_accounts([PlatformAccount.MPESA_PAYBILL.value])
            started = time.monotonic()
            with pytest.raises(StorageBusy), waiter:
                waiter.ledger.lock_accounts([PlatformAccount.MPESA_PAYBILL.value])
            waited_s = time.monotonic() - started
        assert LOCK_WAIT_MS / 1000 <= waited_s < 10 * LOCK_WAIT_MS / 1000
    finally:
        engine.dispose()
