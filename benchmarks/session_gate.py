"""What checking a session on every authenticated request costs: the one primary-key read of
`SqlSessionGate.standing`, on SQLite and PostgreSQL, measured alone and as part of GET
/api/v1/me through the test client (with the check, and with it patched out).

    .venv/bin/python -m benchmarks.session_gate [--reads 5000] [--requests 1000]

Prints the median and p99 of each, in microseconds. PostgreSQL on 127.0.0.1 (as the other
benchmarks); its database is made and dropped here."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from benchmarks.databases import drop_pg_database, fresh_sqlite, migrate, recreate_pg_database
from benchmarks.stats import percentile
from deni.adapters.db.session_gate import SqlSessionGate
from deni.adapters.observability import configure_logging
from deni.adapters.security import PlainPinHasher
from deni.bootstrap import bootstrap, database_engine
from deni.config import Settings
from deni.entrypoints.api.app import create_app
from deni.services import users

PG_DATABASE = "deni_bench_session_gate"
SECRET = "bench-secret-0123456789abcdef0123456789"  # noqa: S105 (a bench's own)


def _timed_us(call: Callable[[], object], times: int) -> list[float]:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1e6)
    return samples


def _summary(samples: list[float]) -> str:
    return f"median {statistics.median(samples):7.1f} us   p99 {percentile(samples, 99):7.1f} us"


def bench(url: str, *, reads: int, requests: int) -> None:
    migrate(url)
    settings = Settings(
        environment="test",
        database_url=url,
        jwt_secret=SECRET,
        pin_pepper=SECRET,
        sweep_interval_s=0,
        sms_interval_s=0,
        worker_interval_s=0,
    )
    deni = bootstrap(settings, hasher=PlainPinHasher())
    user = users.register_user(
        deni,
        phone="0712345678",
        name="Bench",
        pin="1234",
    )
    gate = SqlSessionGate(database_engine(deni))
    _timed_us(lambda: gate.standing(user.id), 200)  # warm the pool and the statement cache
    alone = _timed_us(lambda: gate.standing(user.id), reads)
    token, _ = deni.tokens.issue(user_id=user.id, now=deni.clock.now())
    headers = {"Authorization": f"Bearer {token}"}
    original = users.require_live_session

    def skipped(**_: object) -> None:
        return None

    checked: list[float] = []
    unchecked: list[float] = []
    with TestClient(create_app(deni)) as client:
        _timed_us(lambda: client.get("/api/v1/me", headers=headers), 100)
        # Interleaved, so load from elsewhere on the machine falls on both alike.
        for _ in range(requests):
            checked += _timed_us(lambda: client.get("/api/v1/me", headers=headers), 1)
            users.require_live_session = skipped  # type: ignore[assignment]
            try:
                unchecked += _timed_us(lambda: client.get("/api/v1/me", headers=headers), 1)
            finally:
                users.require_live_session = original
    deni.close()
    added = statistics.median(checked) - statistics.median(unchecked)
    print(f"  the read alone:          {_summary(alone)}")
    print(f"  GET /me with the check:  {_summary(checked)}")
    print(f"  GET /me without it:      {_summary(unchecked)}")
    print(f"  added per request (median difference): {added:.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=5_000)
    parser.add_argument("--requests", type=int, default=1_000)
    args = parser.parse_args()
    configure_logging(level="WARNING", json=True)  # a log line per request would be measured
    with tempfile.TemporaryDirectory() as folder:
        print("SQLite")
        bench(fresh_sqlite(Path(folder) / "gate.sqlite3"), reads=args.reads, requests=args.requests)
    print("PostgreSQL")
    url = recreate_pg_database(PG_DATABASE)
    try:
        bench(url, reads=args.reads, requests=args.requests)
    finally:
        drop_pg_database(PG_DATABASE)


if __name__ == "__main__":
    main()
