"""The request -> approve round trip through the real HTTP API, timed from a client.

A uvicorn subprocess serves `deni.entrypoints.api.asgi:app` on 127.0.0.1 (settings from DENI_*
variables, as in production). Users register and log in through the API; lenders are funded
through `payments.record_mpesa_payment` on the same database (the path M-PESA callbacks take).
Each round trip is POST /api/v1/loans by a borrower, then POST /api/v1/loans/{id}/approve with
the lender's PIN, on one keep-alive connection per client.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from benchmarks.settings import API_PROCESS_ENV, bench_env, bench_settings
from benchmarks.stats import percentile
from deni.bootstrap import Deni, bootstrap
from deni.domain.loans import REQUESTS_PER_DAY_MAX, REQUESTS_TO_ONE_LENDER_PER_DAY_MAX
from deni.services import users
from deni.services.mpesa import payments

HOST = "127.0.0.1"
PIN = "4821"
PRINCIPAL_CENTS = 50_000  # KES 500
STARTUP_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 10.0
LOOP_TIMEOUT_S = 300.0  # however many round trips are asked for, stop after this
STOP_TIMEOUT_S = 10.0

Tick = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class LatencyRun:
    backend: str
    pin_hash_memory_kib: int
    pin_hash_time_cost: int
    round_trips: int
    seconds: float
    samples_ms: list[float] = field(repr=False)
    request_ms: list[float] = field(repr=False)
    approve_ms: list[float] = field(repr=False)

    @property
    def p50_ms(self) -> float:
        return percentile(self.samples_ms, 50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.samples_ms, 99)

    @property
    def request_p50_ms(self) -> float:
        return percentile(self.request_ms, 50)

    @property
    def approve_p50_ms(self) -> float:
        return percentile(self.approve_ms, 50)

    @property
    def approve_p99_ms(self) -> float:
        return percentile(self.approve_ms, 99)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def run_round_trips(
    database_url: str,
    *,
    backend: str,
    pin_hash_memory_kib: int,
    pin_hash_time_cost: int,
    round_trips: int,
    warmup: int,
    pairs: int,
    log_path: Path,
    tick: Tick | None = None,
) -> LatencyRun:
    """Start a server on `database_url` (already migrated), time `round_trips` after `warmup`."""
    port = free_port()
    env = {
        **os.environ,
        **bench_env(
            database_url,
            pin_hash_memory_kib=pin_hash_memory_kib,
            pin_hash_time_cost=pin_hash_time_cost,
        ),
        **API_PROCESS_ENV,
    }
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "deni.entrypoints.api.asgi:app",
        "--host",
        HOST,
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        server = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            base = f"http://{HOST}:{port}"
            with httpx.Client(base_url=base, timeout=REQUEST_TIMEOUT_S) as client:
                _wait_until_up(client, server)
                return _measure(
                    client,
                    database_url,
                    backend=backend,
                    pin_hash_memory_kib=pin_hash_memory_kib,
                    pin_hash_time_cost=pin_hash_time_cost,
                    round_trips=round_trips,
                    warmup=warmup,
                    pairs=pairs,
                    tick=tick,
                )
        finally:
            server.terminate()
            try:
                server.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=STOP_TIMEOUT_S)


def _wait_until_up(client: httpx.Client, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the API server exited with {server.returncode}; see its log")
        try:
            if client.get("/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the API server did not answer /health within {STARTUP_TIMEOUT_S}s")


@dataclass(frozen=True, slots=True)
class _Person:
    id: str
    phone: str
    headers: dict[str, str]


def register_member(deni: Deni, phone: str, name: str, *, pin: str) -> str:
    """A member made in-process, the number proven as USSD proves it: registering is setup,
    not what is measured, and POST /auth/register takes a code sent by SMS (which one address
    may ask for only 10 times an hour)."""
    user = users.register_user(
        deni,
        phone=phone,
        name=name,
        pin=pin,
        phone_proven=True,
    )
    return user.id


def _person(client: httpx.Client, deni: Deni, phone: str, name: str) -> _Person:
    user_id = register_member(deni, phone, name, pin=PIN)
    login = client.post("/api/v1/auth/login", json={"phone": phone, "pin": PIN})
    _expect(login, 200)
    token = login.json()["access_token"]
    return _Person(user_id, phone, {"Authorization": f"Bearer {token}"})


def _expect(response: httpx.Response, status: int) -> None:
    if response.status_code != status:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code} {response.text[:300]}"
        )


def _measure(
    client: httpx.Client,
    database_url: str,
    *,
    backend: str,
    pin_hash_memory_kib: int,
    pin_hash_time_cost: int,
    round_trips: int,
    warmup: int,
    pairs: int,
    tick: Tick | None,
) -> LatencyRun:
    run_id = uuid.uuid4().int % 10_000
    deni = bootstrap(
        bench_settings(
            database_url,
            pool_size=2,
            pin_hash_memory_kib=pin_hash_memory_kib,
            pin_hash_time_cost=pin_hash_time_cost,
        )
    )
    try:
        # A borrower may ask one lender a few times a day and anyone a few more: enough
        # borrowers, each asking each lender up to the daily limit, keep every request legal.
        asks_per_lender = REQUESTS_TO_ONE_LENDER_PER_DAY_MAX
        lenders_n = max(pairs, -(-REQUESTS_PER_DAY_MAX // asks_per_lender))
        borrowers_n = -(-(round_trips + warmup) // REQUESTS_PER_DAY_MAX)
        lenders = [
            _person(client, deni, f"07{run_id:04d}{n:04d}", f"Bench lender {n}")
            for n in range(lenders_n)
        ]
        borrowers = [
            _person(client, deni, f"07{run_id:04d}{lenders_n + n:04d}", f"Bench borrower {n}")
            for n in range(borrowers_n)
        ]
        # Borrowers b and b + 1 share lender b's asks: it funds up to twice its share.
        loans_per_lender = 2 * asks_per_lender * -(-borrowers_n // lenders_n)
        for n, lender in enumerate(lenders):
            payments.record_mpesa_payment(
                deni,
                user_id=lender.id,
                amount_cents=loans_per_lender * PRINCIPAL_CENTS,
                receipt=f"BENCH{run_id:04d}{n:04d}",
            )
    finally:
        deni.close()

    totals: list[float] = []
    requests: list[float] = []
    approvals: list[float] = []
    began = time.monotonic()
    stop_at = began + LOOP_TIMEOUT_S
    for i in range(warmup + round_trips):
        if time.monotonic() > stop_at:
            break
        borrower = borrowers[i // REQUESTS_PER_DAY_MAX]
        asked = i % REQUESTS_PER_DAY_MAX  # this borrower's asks so far today
        lender = lenders[(asked // asks_per_lender + i // REQUESTS_PER_DAY_MAX) % lenders_n]
        body = {"lender_phone": lender.phone, "principal_cents": PRINCIPAL_CENTS, "term_days": 30}
        t0 = time.perf_counter()
        requested = client.post("/api/v1/loans", json=body, headers={**borrower.headers, **_key()})
        t1 = time.perf_counter()
        _expect(requested, 201)
        loan_id = requested.json()["id"]
        t2 = time.perf_counter()
        approved = client.post(
            f"/api/v1/loans/{loan_id}/approve",
            json={"pin": PIN},
            headers={**lender.headers, **_key()},
        )
        t3 = time.perf_counter()
        _expect(approved, 200)
        if approved.json()["state"] != "active":
            raise RuntimeError(f"loan {loan_id} is {approved.json()['state']}, not active")
        if i >= warmup:
            requests.append((t1 - t0) * 1000)
            approvals.append((t3 - t2) * 1000)
            totals.append((t1 - t0 + t3 - t2) * 1000)
            if tick is not None:
                tick(len(totals))
    return LatencyRun(
        backend=backend,
        pin_hash_memory_kib=pin_hash_memory_kib,
        pin_hash_time_cost=pin_hash_time_cost,
        round_trips=len(totals),
        seconds=time.monotonic() - began,
        samples_ms=totals,
        request_ms=requests,
        approve_ms=approvals,
    )


def _key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}
