"""Sync benchmark: push 1,000 queued mutations, and an initial pull of 10,000
changes, over real HTTP to a uvicorn subprocess, on fresh SQLite and PostgreSQL databases.

    python -m benchmarks.sync_bench            # both backends
    python -m benchmarks.sync_bench sqlite     # one

Targets: the 1,000-mutation push in < 2 s, the 10,000-change initial pull in < 2 s.
PostgreSQL: 127.0.0.1:5432 (trust), database deni_bench_sync, dropped afterwards.
Not a test: figures go to docs/benchmarks-sync.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from benchmarks.api_latency import HOST, free_port, register_member
from benchmarks.databases import drop_pg_database, fresh_sqlite, migrate, recreate_pg_database
from benchmarks.machine import describe
from benchmarks.settings import API_PROCESS_ENV, bench_env, bench_settings
from deni.bootstrap import bootstrap
from deni.services.common import notify
from deni.services.mpesa import payments

PG_DATABASE = "deni_bench_sync"
PUSH_MUTATIONS = 1_000
PUSH_PAGE = 500  # MUTATIONS_PER_PUSH_MAX
PULL_RECORDS = 10_000
PULL_PAGE = 1_000  # PULL_PAGE_MAX
SEED_PAYMENTS = 1_000  # each: a transaction, a notification (and the wallet)
SEED_BATCH = 1_000
PIN_MEMORY_KIB, PIN_TIME_COST = 8192, 1  # logins are not what is measured
TARGET_S = 2.0
STARTUP_TIMEOUT_S = 30.0
PULL_PAGES_MAX = 100
PUSH_REPEATS = 3  # the median is reported: a shared 2-core machine is noisy


@dataclass(frozen=True, slots=True)
class PushRun:
    requests: int
    seconds: float
    cpu_s: float | None  # the API server's CPU seconds during the push (not the database's)


@dataclass(frozen=True, slots=True)
class SyncRun:
    backend: str
    push_mutations: int
    pushes: list[PushRun]  # the same push, repeated by new devices: this machine is noisy
    pull_changes: int
    pull_requests: int
    pull_s: float

    @property
    def push(self) -> PushRun:
        """The median push by time."""
        return sorted(self.pushes, key=lambda p: p.seconds)[len(self.pushes) // 2]


def _server(database_url: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        **bench_env(
            database_url, pin_hash_memory_kib=PIN_MEMORY_KIB, pin_hash_time_cost=PIN_TIME_COST
        ),
        **API_PROCESS_ENV,
    }
    argv = [sys.executable, "-m", "uvicorn", "deni.entrypoints.api.asgi:app", "--host", HOST,
            "--port", str(port), "--no-access-log", "--log-level", "warning"]  # fmt: skip
    with log.open("w") as out:
        server = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
    return server, f"http://{HOST}:{port}"


def _wait(client: httpx.Client, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("the API server exited; see its log")
        try:
            if client.get("/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the API server did not start")


def _person(
    client: httpx.Client, database_url: str, phone: str, name: str
) -> tuple[str, dict[str, str]]:
    deni = bootstrap(bench_settings(database_url, pin_hash_memory_kib=PIN_MEMORY_KIB))
    try:
        user_id = register_member(deni, phone, name, pin="4821")
    finally:
        deni.close()
    login = client.post("/api/v1/auth/login", json={"phone": phone, "pin": "4821"})
    assert login.status_code == 200, login.text
    return user_id, {"Authorization": f"Bearer {login.json()['access_token']}"}


def _seed_pull_records(database_url: str, user_id: str) -> None:
    """~10,000 records for one user, in-process through the service layer: payments (a wallet
    line and a notification each) and notifications."""
    deni = bootstrap(bench_settings(database_url, pin_hash_memory_kib=PIN_MEMORY_KIB))
    try:
        for n in range(SEED_PAYMENTS):
            payments.record_mpesa_payment(deni,
                user_id=user_id, amount_cents=10_000,
                receipt=f"BENCH{n:07d}",
            )  # fmt: skip
        left = PULL_RECORDS - 2 * SEED_PAYMENTS
        now = deni.clock.now()
        with deni.uow() as uow:
            user = uow.users.get(user_id)
            assert user is not None
            for _ in range(left):
                notify(uow, user=user, kind="pin_locked", params={"minutes": 5}, now=now)
            uow.commit()
    finally:
        deni.close()


def _cpu_seconds(pid: int) -> float | None:
    """CPU seconds a process has used so far (Linux /proc), None where that is unknown. Less
    noisy than wall time on a shared machine: other processes' load hardly changes it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _push(
    client: httpx.Client, server: subprocess.Popen[bytes], borrower: dict[str, str]
) -> PushRun:
    """A new device of the borrower pushes its offline queue: 500 loan requests, then their
    500 cancellations, in pages of PUSH_PAGE."""
    client_id = str(uuid.uuid4())
    loan_ids = [str(uuid.uuid4()) for _ in range(PUSH_MUTATIONS // 2)]
    queue = [
        {"id": i + 1, "name": "request_loan", "args": {
            "loan_id": loan_id, "lender_phone": "0711000001",
            "principal_cents": 100_000, "term_days": 7}}
        for i, loan_id in enumerate(loan_ids)
    ] + [
        {"id": len(loan_ids) + i + 1, "name": "cancel_loan", "args": {"loan_id": loan_id}}
        for i, loan_id in enumerate(loan_ids)
    ]  # fmt: skip
    started, cpu_before = time.perf_counter(), _cpu_seconds(server.pid)
    requests = 0
    for start in range(0, len(queue), PUSH_PAGE):
        body = {"client_id": client_id, "schema_version": 1,
                "mutations": queue[start : start + PUSH_PAGE]}  # fmt: skip
        answer = client.post("/api/v1/sync/push", json=body, headers=borrower)
        requests += 1
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
        assert answer.json()["stopped"] is None
        assert {r["status"] for r in results} == {"applied"}, results[:3]
    push_s = time.perf_counter() - started
    cpu_after = _cpu_seconds(server.pid)
    cpu_s = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return PushRun(requests, push_s, cpu_s)


def run(backend: str, database_url: str, workdir: Path) -> SyncRun:
    migrate(database_url)
    server, base = _server(database_url, workdir / f"server-{backend}.log")
    try:
        with httpx.Client(base_url=base, timeout=120.0) as client:
            _wait(client, server)
            _person(client, database_url, "0711000001", "Bench Lender")
            _, borrower = _person(client, database_url, "0711000002", "Bench Borrower")
            # Someone the pushes do not touch: their pull holds exactly the seeded records.
            reader_id, reader = _person(client, database_url, "0711000003", "Bench Reader")
            pushes = [_push(client, server, borrower) for _ in range(PUSH_REPEATS)]
            _seed_pull_records(database_url, reader_id)
            # Initial pull by a fresh device of the reader: every record, in pages.
            device = str(uuid.uuid4())
            started = time.perf_counter()
            cursor, changes, pulls = None, 0, 0
            for _ in range(PULL_PAGES_MAX):
                params: dict[str, str | int] = {
                    "client_id": device, "schema_version": 1, "limit": PULL_PAGE}  # fmt: skip
                if cursor:
                    params["cursor"] = cursor
                page = client.get("/api/v1/sync/pull", params=params, headers=reader)
                pulls += 1
                assert page.status_code == 200, page.text
                data = page.json()
                changes += len(data["changes"])
                cursor = data["cursor"]
                if not data["has_more"]:
                    break
            pull_s = time.perf_counter() - started
            assert changes >= PULL_RECORDS, changes
            return SyncRun(backend, PUSH_MUTATIONS, pushes, changes, pulls, pull_s)
    finally:
        server.terminate()
        server.wait(timeout=30)


def main(argv: list[str]) -> None:
    backends = argv or ["sqlite", "postgres"]
    runs: list[SyncRun] = []
    with tempfile.TemporaryDirectory(prefix="deni-sync-bench-") as tmp:
        workdir = Path(tmp)
        for backend in backends:
            if backend == "sqlite":
                runs.append(run(backend, fresh_sqlite(workdir / "bench.sqlite3"), workdir))
            else:
                url = recreate_pg_database(PG_DATABASE)
                try:
                    runs.append(run(backend, url, workdir))
                finally:
                    drop_pg_database(PG_DATABASE)
    machine = describe()
    load = os.getloadavg()
    print(f"# Sync benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {machine.cores} cores, {machine.memory}, {machine.cpu_model}; "
          f"Python {machine.python}, SQLite {machine.sqlite}; {machine.postgres}")  # fmt: skip
    print(f"load average before/after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print()
    print(
        "| backend | push 1,000 mutations (median of 3) | each push | requests "
        "| API server CPU in the median push | initial pull | changes | requests |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in runs:
        push = r.push
        flag_push = "ok" if push.seconds < TARGET_S else "OVER"
        flag_pull = "ok" if r.pull_s < TARGET_S else "OVER"
        each = ", ".join(f"{p.seconds:.2f}" for p in r.pushes)
        cpu = "?" if push.cpu_s is None else f"{push.cpu_s:.2f} s"
        cells = [
            f"{push.seconds:.2f} s ({flag_push})", f"{each} s", str(push.requests), cpu,
            f"{r.pull_s:.2f} s ({flag_pull})", f"{r.pull_changes:,}", str(r.pull_requests),
        ]  # fmt: skip
        print(f"| {r.backend} | {' | '.join(cells)} |")
    print()
    print(f"Command: `.venv/bin/python -m benchmarks.sync_bench {' '.join(backends)}`.")


if __name__ == "__main__":
    main(sys.argv[1:])
