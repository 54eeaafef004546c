"""Engine helpers: a read connection hands its pooled connection back ready for writers."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from deni.adapters.db.engine import BEGIN_MODE_KEY, make_engine, reading


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
