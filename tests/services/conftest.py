"""The fast service tier: every test here gets a `world` on the in-memory fakes.

With DENI_TEST_SERVICES_SQLITE=1 (`make test` sets it) each test also runs on a migrated
SQLite file through the SQL repositories, and with DENI_TEST_POSTGRES_URL on PostgreSQL too,
which holds the fakes to the real behaviour and the use cases to both databases.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from deni.adapters.db.engine import make_engine
from deni.adapters.security import PepperedArgon2PinHasher
from tests.conftest import empty_postgres
from tests.fakes import ManualClock
from tests.services.world import World, fake_world, sql_world

SQL_TOO = os.environ.get("DENI_TEST_SERVICES_SQLITE") == "1"
BACKENDS = [
    "fake",
    *(["sqlite"] if SQL_TOO else []),
    *(["postgres"] if SQL_TOO and os.environ.get("DENI_TEST_POSTGRES_URL") else []),
]


@pytest.fixture(params=BACKENDS)
def world(
    request: pytest.FixtureRequest, clock: ManualClock, hasher: PepperedArgon2PinHasher
) -> Iterator[World]:
    if request.param == "fake":
        yield fake_world(clock, hasher)
        return
    if request.param == "postgres":
        engine = make_engine(str(request.getfixturevalue("postgres_ready")))
        empty_postgres(engine)
    else:
        template: Path = request.getfixturevalue("sqlite_template")
        path = request.getfixturevalue("tmp_path") / "deni.sqlite3"
        shutil.copy(template, path)
        engine = make_engine(f"sqlite:///{path}")
    yield sql_world(engine, clock, hasher, request.param)
    engine.dispose()
