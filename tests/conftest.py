"""Shared fixtures: a real database per test (SQLite always, PostgreSQL when configured), and
one per example for Hypothesis tests (`fresh_database`, `fresh_deni`).

Set DENI_TEST_POSTGRES_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/deni_test) to run
every `db`-using test on PostgreSQL as well. `.ci/run` does.

Hypothesis runs under the `dev` profile, or `ci` when CI=true; HYPOTHESIS_PROFILE names either.
docs/testing.md ("Property tests") says how to replay a failure.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import hypothesis
import hypothesis.core
import hypothesis.vendor.pretty
import pytest
from fastapi.testclient import TestClient
from schemathesis.generation import hypothesis as schemathesis_hypothesis
from sqlalchemy import Engine, create_engine, make_url, text

from deni.adapters.db import tables
from deni.adapters.db.engine import make_engine
from deni.adapters.db.migrate import seed, upgrade
from deni.adapters.security import PepperedArgon2PinHasher
from deni.bootstrap import Deni, bootstrap
from deni.config import Settings
from deni.domain import loans as domain_loans
from deni.entrypoints.api.app import create_app
from deni.services import limits
from tests.fakes.clock import START, ManualClock

POSTGRES_URL = os.environ.get("DENI_TEST_POSTGRES_URL")
TEST_HOPS_PER_MINUTE_MAX = 100_000
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
UNBOUNDED = 1_000_000

# Hypothesis profiles. `ci` draws the same examples on every run (derandomize: the seed comes
# from each test's name), so a red build fails the same way on any machine, with no example
# database to carry over. `dev` draws new examples each run and keeps failures in .hypothesis/
# to try first next time. Both print a failure's @reproduce_failure blob. Neither has a
# deadline: timing is the benchmarks' business, and a per-example wall-clock bound on a busy
# machine fails at random; for the same reason `ci` skips the too_slow health check (a
# measure of time spent generating data). Tests with heavier examples set their own
# max_examples. Both derive from Hypothesis's defaults, not from whatever profile Hypothesis
# chose itself on seeing a CI variable.
HYPOTHESIS_EXAMPLES_MAX = 100
_HYPOTHESIS_DEFAULTS = hypothesis.settings.get_profile("default")
hypothesis.settings.register_profile(
    "dev",
    parent=_HYPOTHESIS_DEFAULTS,
    max_examples=HYPOTHESIS_EXAMPLES_MAX,
    deadline=None,
    print_blob=True,
)
hypothesis.settings.register_profile(
    "ci",
    parent=_HYPOTHESIS_DEFAULTS,
    max_examples=HYPOTHESIS_EXAMPLES_MAX,
    deadline=None,
    print_blob=True,
    derandomize=True,
    database=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or (
    "ci" if os.environ.get("CI") == "true" else "dev"
)
hypothesis.settings.load_profile(HYPOTHESIS_PROFILE)


def _keep_failing_examples_printed() -> None:
    """Schemathesis (its pytest plugin, and tests/api/test_contract.py) swaps Hypothesis's
    printer, for the whole process, for one that prints nothing: a failing property test would
    show `plan=,` instead of the example to replay. Let it make its changes (once: it skips them
    after), then put the printer back."""
    schemathesis_hypothesis.setup()
    printer = hypothesis.vendor.pretty.RepresentationPrinter
    hypothesis.core.RepresentationPrinter = printer  # type: ignore[attr-defined]


_keep_failing_examples_printed()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrate once; each test copies the file (much faster than migrating per test)."""
    path = tmp_path_factory.mktemp("template") / "deni.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_ready() -> Iterator[str]:
    """A database of this test run's own (named after the process), so parallel runs never
    truncate each other's tables; dropped at the end."""
    if not POSTGRES_URL:
        pytest.skip("DENI_TEST_POSTGRES_URL is not set: PostgreSQL tier off")
    base = make_url(POSTGRES_URL)
    url = base.set(database=f"{base.database}_{os.getpid()}")
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{url.database}"'))
        connection.execute(text(f'CREATE DATABASE "{url.database}"'))
    engine = make_engine(url.render_as_string(hide_password=False))
    upgrade(engine)
    engine.dispose()
    yield url.render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    admin.dispose()


def _truncate_postgres(url: str) -> None:
    engine = create_engine(url)
    names = ", ".join(t.name for t in tables.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    seed(engine)
    engine.dispose()


@pytest.fixture(autouse=True)
def _abuse_limits_loose(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fixtures here sign many members up and in from one test client, and make many loans
    between the same two members, within one frozen hour. The limits on that are tested with
    their real figures by the tests that ask for `real_limits` (tests/api/test_abuse_limits.py)."""
    if "real_limits" in request.fixturenames:
        return
    for name in (
        "OPEN_REQUESTS_TO_ONE_LENDER_MAX",
        "REQUESTS_TO_ONE_LENDER_PER_DAY_MAX",
        "REQUESTS_PER_DAY_MAX",
    ):
        monkeypatch.setattr(domain_loans, name, UNBOUNDED)
    for name in dir(limits):
        value = getattr(limits, name)
        if isinstance(value, limits.Limit):
            monkeypatch.setattr(limits, name, dataclasses.replace(value, hits_max=UNBOUNDED))


@pytest.fixture(autouse=True)
def _logging_put_back() -> Iterator[None]:
    """A test that calls configure_logging points the root logger at the stream pytest
    captured for it; put back what was there, so later tests never write to a closed file."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def real_limits() -> None:
    """Ask for it to keep the production figures of every abuse limit."""


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_ready")
        _truncate_postgres(url)
        return str(url)
    template = request.getfixturevalue("sqlite_template")
    path = tmp_path / "deni.sqlite3"
    shutil.copy(template, path)
    return f"sqlite:///{path}"


@dataclasses.dataclass(frozen=True)
class Example:
    """A Deni of one Hypothesis example's own: its own database, clock and HTTP client."""

    deni: Deni
    client: TestClient
    clock: ManualClock


def empty_postgres(engine: Engine) -> None:
    """What `_truncate_postgres` does, some twenty times faster on tables this small: TRUNCATE
    gives every table new files, DELETE only removes the rows."""
    with engine.begin() as connection:
        for table in reversed(tables.metadata.sorted_tables):
            connection.execute(table.delete())
        sequences = connection.execute(
            text("SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema()")
        ).scalars()
        for name in sequences:
            connection.execute(text(f'ALTER SEQUENCE "{name}" RESTART'))
    seed(engine)


@pytest.fixture(scope="session", params=BACKENDS)
def fresh_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[], AbstractContextManager[str]]]:
    """Opens a migrated, empty database for each call: one per Hypothesis example, so no
    example sees another's rows and a failing example replays alone. SQLite: a copy of the
    migrated file, deleted after; PostgreSQL: the run's database, emptied and reseeded.
    Session-scoped, so Hypothesis's check against function-scoped fixtures stays on."""
    if request.param == "postgres":
        url = str(request.getfixturevalue("postgres_ready"))
        engine = create_engine(url)

        @contextmanager
        def fresh_postgres() -> Iterator[str]:
            empty_postgres(engine)
            yield url

        yield fresh_postgres
        engine.dispose()
        return
    template: Path = request.getfixturevalue("sqlite_template")
    folder = tmp_path_factory.mktemp("examples")
    serial = itertools.count()

    @contextmanager
    def fresh_sqlite() -> Iterator[str]:
        path = folder / f"example-{next(serial)}.sqlite3"
        shutil.copy(template, path)
        try:
            yield f"sqlite:///{path}"
        finally:
            for leftover in folder.glob(f"{path.name}*"):  # with its -wal and -shm files
                leftover.unlink()

    yield fresh_sqlite


@pytest.fixture(scope="session")
def fresh_deni(
    fresh_database: Callable[[], AbstractContextManager[str]],
    hasher: PepperedArgon2PinHasher,
) -> Callable[[], AbstractContextManager[Example]]:
    """`with fresh_deni() as example:` in a Hypothesis test: what the `deni`, `client` and
    `clock` fixtures give a test, new for each example."""

    @contextmanager
    def open_example() -> Iterator[Example]:
        with fresh_database() as url:
            clock = ManualClock(START)
            wired = bootstrap(settings_for(url), clock=clock, hasher=hasher)
            try:
                with TestClient(create_app(wired), raise_server_exceptions=False) as client:
                    yield Example(wired, client, clock)
            finally:
                wired.close()

    return open_example


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture(scope="session")
def hasher() -> PepperedArgon2PinHasher:
    # The real adapter with the cheapest argon2 cost it accepts: real hashing, fast tests.
    return PepperedArgon2PinHasher(
        pepper="test-pepper-0123456789abcdef", memory_cost_kib=1024, time_cost=1
    )


def settings_for(database_url: str) -> Settings:
    return Settings(
        environment="test",
        database_url=database_url,
        jwt_secret="test-secret-0123456789abcdef0123456789",
        pin_pepper="test-pepper-0123456789abcdef-0123456789",
        database_pool_size=5,
        sweep_interval_s=0,  # tests run sweeps and SMS delivery themselves, when they choose
        sms_interval_s=0,
        # Journeys here run on a frozen clock, so every hop lands in one "minute"; the limit
        # itself is tested with the production default (tests/ussd/test_rate_limit.py).
        ussd_hops_per_minute_max=TEST_HOPS_PER_MINUTE_MAX,
    )


@pytest.fixture
def settings(database_url: str) -> Settings:
    return settings_for(database_url)


@pytest.fixture
def deni(settings: Settings, clock: ManualClock, hasher: PepperedArgon2PinHasher) -> Iterator[Deni]:
    wired = bootstrap(settings, clock=clock, hasher=hasher)
    yield wired
    wired.close()


@pytest.fixture
def client(deni: Deni) -> Iterator[TestClient]:
    with TestClient(create_app(deni), raise_server_exceptions=False) as test_client:
        yield test_client
