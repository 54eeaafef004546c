"""Worker heartbeats: each worker process's last pass, in the database every process shares.

The M-PESA worker loop (bootstrap/worker.py) beats at most every HEARTBEAT_EVERY_S; readiness
(`GET /health/ready`) and the metrics read the newest beat of any process. The database, not
the session store: it is the one store every deployment has and every process shares (the
memory session store is per process), and a metrics scrape reads it with the other figures.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from deni.adapters.db.tables import worker_heartbeats

# Rows of processes that stopped beating this long ago are deleted when a worker starts.
FORGET_AFTER = timedelta(days=7)


class SqlWorkerHeartbeats:
    def __init__(self, engine: Engine, *, worker_id: str) -> None:
        assert 0 < len(worker_id) <= 200
        self._engine = engine
        self.worker_id = worker_id

    def start(self, now: datetime) -> None:
        """A worker starts: forget long-gone processes, then beat."""
        with self._engine.begin() as connection:
            connection.execute(
                delete(worker_heartbeats).where(worker_heartbeats.c.beat_at < now - FORGET_AFTER)
            )
            self._upsert(connection, now, started=True)

    def beat(self, now: datetime) -> None:
        with self._engine.begin() as connection:
            self._upsert(connection, now, started=False)

    def newest(self) -> datetime | None:
        with self._engine.connect() as connection:
            return newest_beat(connection)

    def _upsert(self, connection: Connection, now: datetime, *, started: bool) -> None:
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(worker_heartbeats).values(
            worker_id=self.worker_id, started_at=now, beat_at=now
        )
        changes = {"beat_at": now, **({"started_at": now} if started else {})}
        connection.execute(
            statement.on_conflict_do_update(index_elements=["worker_id"], set_=changes)
        )


def newest_beat(connection: Connection) -> datetime | None:
    """The newest beat of any worker process; None when none ever beat."""
    newest: datetime | None = connection.execute(
        select(func.max(worker_heartbeats.c.beat_at))
    ).scalar()
    return newest
