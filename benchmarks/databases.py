"""Bench databases: fresh PostgreSQL databases on 127.0.0.1 and fresh SQLite files, migrated."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from deni.adapters.db.engine import make_engine
from deni.adapters.db.migrate import upgrade

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"
PG_URL_BASE = f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}"
PSQL_TIMEOUT_S = 60
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def pg_url(database: str) -> str:
    return f"{PG_URL_BASE}/{_checked(database)}"


def pg_conninfo() -> list[str]:
    """Connection flags shared by psql and pgbench: local TCP only."""
    return ["-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER]


def _checked(database: str) -> str:
    if not _NAME.match(database):
        raise ValueError(f"not a plain database name: {database!r}")
    return database


def psql(*commands: str, database: str = "postgres") -> str:
    argv = ["psql", *pg_conninfo(), "-d", database, "-v", "ON_ERROR_STOP=1", "-qAt"]
    for command in commands:
        argv += ["-c", command]
    env = {**os.environ, "PGOPTIONS": "-c client_min_messages=warning"}
    done = subprocess.run(  # noqa: S603 (fixed argv, no shell)
        argv, capture_output=True, text=True, timeout=PSQL_TIMEOUT_S, env=env, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"psql failed: {done.stderr.strip()}")
    return done.stdout.strip()


def recreate_pg_database(database: str) -> str:
    """Drop (ending stale sessions) and create `database`; returns its SQLAlchemy URL."""
    name = _checked(database)
    psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}")
    return pg_url(name)


def drop_pg_database(database: str) -> None:
    psql(f"DROP DATABASE IF EXISTS {_checked(database)} WITH (FORCE)")


def fresh_sqlite(path: Path) -> str:
    """A new SQLite file (and no stale -wal/-shm beside it); returns its URL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path}"


def migrate(url: str) -> None:
    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
