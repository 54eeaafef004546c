"""Readiness: may this process be sent traffic? (`GET /health/ready`, docs/deploy.md)

Four checks, each named with its state:

- database: one round trip (`SELECT 1`);
- schema: the database's Alembic revision is this code's head, not an older one (migrations
  pending) nor one this code does not know (another release's schema);
- redis: a PING, when USSD sessions and the abuse counters live in Redis;
- worker: with M-PESA on, some worker process beat its heartbeat within
  `Settings.worker_heartbeat_stale_s` (adapters/db/heartbeats.py).

A check that cannot be made because an earlier one failed says "not_checked". Nothing secret
goes into a check: states, revisions and ages only (errors are logged, by class name).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from sqlalchemy import Engine, text

from deni.adapters.db.heartbeats import newest_beat
from deni.adapters.db.migrate import SchemaStatus, schema_status
from deni.config import Settings

log = structlog.get_logger(__name__)

# States that let a check pass.
PASSING = frozenset({"ok", "not_used"})
Detail = str | float | int | None


@dataclass(frozen=True, slots=True)
class Check:
    name: str  # database, schema, redis, worker
    state: str
    details: dict[str, Detail] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.state in PASSING


@dataclass(frozen=True, slots=True)
class Readiness:
    checks: tuple[Check, ...]

    @property
    def ready(self) -> bool:
        return all(check.passed for check in self.checks)

    def check(self, name: str) -> Check:
        return next(check for check in self.checks if check.name == name)


def readiness(
    engine: Engine,
    settings: Settings,
    *,
    now: datetime,
    ping_redis: Callable[[], None] | None,
) -> Readiness:
    read = _read_database(engine, settings)
    return Readiness((*read.checks(), _redis(ping_redis), _worker(settings, now, read)))


def _failed(check: str, error: Exception) -> None:
    log.warning("readiness_check_failed", check=check, error=type(error).__name__)


@dataclass(slots=True)
class _DatabaseRead:
    """How far one connection got: reached, the schema read, the newest heartbeat read."""

    reached: bool = False
    schema: SchemaStatus | None = None
    beat_read: bool = False
    beat: datetime | None = None

    def checks(self) -> tuple[Check, Check]:
        if not self.reached:
            return Check("database", "unreachable"), Check("schema", "not_checked")
        if self.schema is None:
            return Check("database", "ok"), Check("schema", "unreadable")
        return Check("database", "ok"), _schema(self.schema)


def _read_database(engine: Engine, settings: Settings) -> _DatabaseRead:
    """The database, its schema and (with M-PESA on, at this code's schema) the newest
    heartbeat, on one connection."""
    read = _DatabaseRead()
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            read.reached = True
            read.schema = schema_status(connection)
            if settings.mpesa and read.schema.ok:
                read.beat = newest_beat(connection)
                read.beat_read = True
    except Exception as error:
        stage = "database" if not read.reached else "schema" if read.schema is None else "worker"
        _failed(stage, error)
    return read


def _schema(status: SchemaStatus) -> Check:
    return Check("schema", status.state, {"revision": status.revision, "head": status.head})


def _redis(ping: Callable[[], None] | None) -> Check:
    if ping is None:
        return Check("redis", "not_used")
    try:
        ping()
    except Exception as error:
        _failed("redis", error)
        return Check("redis", "unreachable")
    return Check("redis", "ok")


def _worker(settings: Settings, now: datetime, read: _DatabaseRead) -> Check:
    if not settings.mpesa:
        return Check("worker", "not_used")
    stale_s = settings.worker_heartbeat_stale_s
    if not read.beat_read:
        return Check("worker", "not_checked", {"stale_after_s": stale_s})
    if read.beat is None:
        return Check("worker", "missing", {"stale_after_s": stale_s})
    age_s = max((now - read.beat).total_seconds(), 0.0)
    state = "ok" if age_s <= stale_s else "stale"
    return Check("worker", state, {"age_s": round(age_s, 3), "stale_after_s": stale_s})
