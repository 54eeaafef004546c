"""Liveness and readiness: /health/live answers without I/O; /health/ready (and /health, the
same check for older callers) is 200 only when the database is reached and at this code's
schema, Redis is reached when sessions live there, and with M-PESA on a worker's heartbeat is
fresh. Each check is named with its state; anything else is a 503."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, make_url, select, text
from tests.fakes.clock import ManualClock
from tests.fakes.gateway import FakeMpesaGateway
from tests.support.waiting import wait_until

import deni.adapters.db as deni_db
from deni.adapters.db.heartbeats import FORGET_AFTER, SqlWorkerHeartbeats
from deni.adapters.db.migrate import alembic_config, code_head
from deni.adapters.db.tables import worker_heartbeats
from deni.adapters.security import PepperedArgon2PinHasher
from deni.bootstrap import Deni, bootstrap, database_engine
from deni.bootstrap.worker import HEARTBEAT_EVERY_S, MpesaWorker
from deni.config import Settings
from deni.entrypoints.api.app import create_app

READY_PATHS = ("/health/ready", "/health")
UNREACHABLE_REDIS = "redis://127.0.0.1:1/9"  # nothing listens on port 1
REDIS = "redis://127.0.0.1:6379/9"

# The migrations as their files number them, oldest first: the last is the code's head.
REVISIONS = sorted(
    path.name[:4]
    for path in (Path(deni_db.__file__).parent / "migrations" / "versions").glob("0*.py")
)


def _states(body: dict[str, Any]) -> dict[str, str]:
    return {name: check["state"] for name, check in body["checks"].items()}


def _ready(client: TestClient, path: str = "/health/ready") -> tuple[int, dict[str, Any]]:
    response = client.get(path)
    return response.status_code, response.json()


@pytest.fixture
def wire(clock: ManualClock, hasher: PepperedArgon2PinHasher) -> Iterator[Any]:
    """Another Deni on changed settings, closed after the test."""
    made: list[Deni] = []

    def build(settings: Settings, **changes: Any) -> Deni:
        gateway = FakeMpesaGateway() if changes.get("mpesa") else None
        wired = bootstrap(
            settings.model_copy(update=changes), clock=clock, hasher=hasher, mpesa_gateway=gateway
        )
        made.append(wired)
        return wired

    yield build
    for wired in made:
        wired.close()


def _client(deni: Deni) -> TestClient:
    """No lifespan: no background work, so no worker beats unless the test says so."""
    return TestClient(create_app(deni), raise_server_exceptions=False)


@pytest.mark.parametrize("path", READY_PATHS)
def test_ready_when_everything_is_fine(client: TestClient, path: str) -> None:
    status, body = _ready(client, path)
    assert status == 200
    assert body == {
        "status": "ok",
        "checks": {
            "database": {"state": "ok"},
            "schema": {"state": "ok", "revision": code_head(), "head": code_head()},
            "redis": {"state": "not_used"},
            "worker": {"state": "not_used"},
        },
    }
    assert code_head() == REVISIONS[-1]


@pytest.fixture
def unreachable_database(deni: Deni) -> Iterator[None]:
    real = deni._engine
    deni._engine = create_engine("sqlite:////nonexistent-directory/deni.sqlite3")
    yield
    deni._engine.dispose()
    deni._engine = real


@pytest.mark.usefixtures("unreachable_database")
def test_live_answers_without_the_database_and_ready_does_not(client: TestClient) -> None:
    live = client.get("/health/live")
    assert live.status_code == 200
    assert live.json() == {"status": "ok"}
    for path in READY_PATHS:
        status, body = _ready(client, path)
        assert status == 503
        assert body["status"] == "degraded"
        assert _states(body) == {
            "database": "unreachable",
            "schema": "not_checked",
            "redis": "not_used",
            "worker": "not_used",
        }


@pytest.fixture
def schema_one_behind(database_url: str) -> Iterator[str]:
    """The database as the release before this one left it: migrated to the revision before
    this code's head. Put back at the head after, whatever happened."""
    config = alembic_config(database_url)
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "-1")
        yield REVISIONS[-2]
    finally:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        engine.dispose()


def test_not_ready_while_migrations_are_pending(client: TestClient, schema_one_behind: str) -> None:
    for path in READY_PATHS:
        status, body = _ready(client, path)
        assert status == 503
        assert body["checks"]["schema"] == {
            "state": "behind",
            "revision": schema_one_behind,
            "head": code_head(),
        }
        assert body["checks"]["database"] == {"state": "ok"}


def test_not_ready_on_another_releases_schema(client: TestClient, deni: Deni) -> None:
    engine = database_engine(deni)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    try:
        status, body = _ready(client)
    finally:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = :head"),
                               {"head": code_head()})  # fmt: skip
    assert status == 503
    assert body["checks"]["schema"] == {
        "state": "unknown",
        "revision": "0999",
        "head": REVISIONS[-1],
    }


@pytest.fixture
def empty_database_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A database of the same kind with nothing in it: no tables, no revision."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    empty = url.set(database=f"{url.database}_empty")
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{empty.database}"'))
        connection.execute(text(f'CREATE DATABASE "{empty.database}"'))
    try:
        yield empty.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{empty.database}" WITH (FORCE)'))
        admin.dispose()


def test_not_ready_on_a_database_without_tables(
    settings: Settings, wire: Any, empty_database_url: str
) -> None:
    """What /health once called healthy: a database that answers, with no tables at all."""
    empty = wire(settings, database_url=empty_database_url)
    with _client(empty) as client:
        for path in READY_PATHS:
            status, body = _ready(client, path)
            assert status == 503
            assert body["checks"]["database"] == {"state": "ok"}
            assert body["checks"]["schema"] == {"state": "missing", "head": code_head()}


def test_not_ready_when_redis_is_unreachable(settings: Settings, wire: Any) -> None:
    deni = wire(settings, session_store="redis", redis_url=UNREACHABLE_REDIS)
    with _client(deni) as client:
        for path in READY_PATHS:
            status, body = _ready(client, path)
            assert status == 503
            assert _states(body)["redis"] == "unreachable"
            assert _states(body)["database"] == "ok"
        assert client.get("/health/live").status_code == 200


def test_ready_when_redis_answers(settings: Settings, wire: Any) -> None:
    deni = wire(settings, session_store="redis", redis_url=REDIS)
    with _client(deni) as client:
        status, body = _ready(client)
    assert status == 200, body
    assert _states(body)["redis"] == "ok"


MPESA = {"mpesa": True, "callback_token": "a" * 32, "worker_interval_s": 0.0}


def test_with_mpesa_on_not_ready_until_a_worker_beats_nor_once_its_beat_is_stale(
    settings: Settings, wire: Any, clock: ManualClock
) -> None:
    deni = wire(settings, **MPESA)
    stale_s = deni.settings.worker_heartbeat_stale_s
    assert stale_s == 120
    with _client(deni) as client:
        status, body = _ready(client)
        assert status == 503
        assert body["checks"]["worker"] == {"state": "missing", "stale_after_s": stale_s}

        deni.heartbeats.start(clock.now())
        clock.advance(timedelta(seconds=stale_s))
        status, body = _ready(client)
        assert status == 200, body
        assert body["checks"]["worker"] == {
            "state": "ok",
            "age_s": stale_s,
            "stale_after_s": stale_s,
        }

        clock.advance(timedelta(seconds=1))
        for path in READY_PATHS:
            status, body = _ready(client, path)
            assert status == 503
            assert body["checks"]["worker"] == {
                "state": "stale",
                "age_s": stale_s + 1,
                "stale_after_s": stale_s,
            }

        deni.heartbeats.beat(clock.now())  # any process's beat counts
        assert _ready(client)[0] == 200


def test_the_in_process_worker_of_a_serving_app_beats(settings: Settings, wire: Any) -> None:
    """`make run`'s background: the app's lifespan starts the M-PESA worker, whose first pass
    beats, and the app turns ready."""
    deni = wire(settings, **{**MPESA, "worker_interval_s": 0.05})
    with TestClient(create_app(deni), raise_server_exceptions=False) as client:
        wait_until(lambda: client.get("/health/ready").status_code == 200, what="ready")
        assert _states(client.get("/health/ready").json())["worker"] == "ok"


class Beats:
    def __init__(self) -> None:
        self.started: list[object] = []
        self.beats: list[object] = []

    def start(self, now: object) -> None:
        self.started.append(now)

    def beat(self, now: object) -> None:
        self.beats.append(now)


def test_the_worker_beats_when_it_starts_then_at_most_every_ten_seconds(
    settings: Settings, wire: Any
) -> None:
    deni = wire(settings, **MPESA)
    assert deni.mpesa is not None
    beats = Beats()
    worker = MpesaWorker(deni.mpesa, interval_s=0.01, reconcile_interval_s=3600, heartbeat=beats)
    worker.start()
    try:
        wait_until(lambda: beats.started, what="the worker's first beat")
    finally:
        worker.stop()
    assert beats.started == [deni.clock.now()]

    # Its passes come every 10 ms; the beats, at most every HEARTBEAT_EVERY_S of monotonic time.
    worker._beat()
    assert beats.beats == []
    assert worker._last_beat_s is not None
    worker._last_beat_s -= HEARTBEAT_EVERY_S
    worker._beat()
    assert beats.beats == [deni.clock.now()]


def test_a_starting_worker_forgets_processes_gone_a_week(deni: Deni, clock: ManualClock) -> None:
    engine = database_engine(deni)
    gone = SqlWorkerHeartbeats(engine, worker_id="old-host:41")
    recent = SqlWorkerHeartbeats(engine, worker_id="other-host:7")
    gone.start(clock.now() - FORGET_AFTER - timedelta(seconds=1))
    recent.start(clock.now() - FORGET_AFTER)
    deni.heartbeats.start(clock.now())
    with engine.connect() as connection:
        rows = connection.execute(select(worker_heartbeats.c.worker_id)).scalars().all()
    assert sorted(rows) == sorted(["other-host:7", deni.heartbeats.worker_id])
    assert deni.heartbeats.newest() == clock.now()
