"""Daraja callback ingest: STK result callbacks applied exactly once per second, and the time
Deni takes to acknowledge each one, on PostgreSQL and SQLite.

    .venv/bin/python -m benchmarks.callback_ingest [--seconds 20] [--callbacks 12000]
        [--concurrency 32] [--backend postgresql|sqlite|both] [--workers 1]
        [--pg-database deni_bench_callbacks]

For each backend: a fresh database (PostgreSQL `--pg-database` on 127.0.0.1, dropped
afterwards; a new SQLite file under var/bench/), N users, and N STK pushes recorded through the
services exactly as the worker leaves them once Daraja has accepted the push (state `sent`, a
CheckoutRequestID, the outbox message done). Deni's production ASGI app then runs under uvicorn
in a subprocess with M-PESA on (Daraja itself unreachable: the pushes are recorded as if STK
Query had already confirmed them paid, so the query a success callback waits for in production
is not measured here), next to
`--workers` `deni worker` processes, and a loopback load generator POSTs Daraja's exact STK
success body (tests/fixtures/daraja/stk_callback_success.json, with our ids) to
/hooks/<token>/stk over `--concurrency` keep-alive connections, one callback in flight per
connection. About 5% of the posts repeat an earlier callback, as Daraja does.

Measured:
- acknowledgement latency per POST (p50/p99), from the client, in the steady part of the run;
- applied exactly once per second: distinct callbacks whose money reached the wallet, counted
  from the database afterwards (journal entries), over the span from the first POST to the last
  credit;
- then verified: every callback sent credited its wallet exactly once, duplicates credited
  nothing, every push is `succeeded` with its receipt, the inbox holds one row per callback, and
  `deni ledger check` finds the ledger whole;
- CPU seconds of the client (this process), the server and worker processes, and the
  PostgreSQL backends of the bench database.

The client is plain asyncio over raw HTTP/1.1 (httpx costs several times more CPU per request,
and on a 2-core machine the client shares the CPU with the server). Every loop is bounded: in
callbacks, in seconds, and in each request's timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from benchmarks import databases
from benchmarks.api_latency import free_port
from benchmarks.cpu import CpuMeter
from benchmarks.machine import Machine, describe
from benchmarks.rawhttp import JSON, Connection, HttpError
from benchmarks.settings import API_PROCESS_ENV, bench_env, bench_settings
from benchmarks.stats import percentile
from deni.adapters.db import tables as t
from deni.adapters.db.mpesa import tables as m
from deni.bootstrap import Deni, bootstrap, database_engine
from deni.domain.ledger import PlatformAccount, wallet_account_id
from deni.domain.mpesa import RequestState
from deni.domain.users import User
from deni.ids import new_id
from deni.services import ledger
from deni.services.mpesa import requests
from deni.services.mpesa.ports import InboxState, OutboxState

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
WORK = REPO / "var" / "bench"
PG_DATABASE = "deni_bench_callbacks"
SQLITE_FILE = "callbacks.sqlite3"
FIXTURE = REPO / "tests" / "fixtures" / "daraja" / "stk_callback_success.json"
# A bench-only path secret: 32+ hex characters, as production demands.
CALLBACK_TOKEN = "b3c4e5f60718293a4b5c6d7e8f901a2b3c4d5e6f"  # noqa: S105
AMOUNT_KES = 100
POOL_SIZE = 40  # anyio's default thread limit: one connection per hook thread
DUPLICATE_SHARE = 0.05
SEED_BATCH = 500
CALLBACKS_MAX = 500_000
CONCURRENCY_MAX = 1_000
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 300.0  # after the last POST, how long the worker may take to apply the rest
_TICKS = os.sysconf("SC_CLK_TCK")


# --- results ---------------------------------------------------------------------------------


@dataclass(slots=True)
class IngestRun:
    backend: str
    concurrency: int
    workers: int
    callbacks: int  # distinct callbacks posted
    duplicates: int  # repeats posted
    errors: int  # POSTs not answered 200 {"ResultCode": 0}
    post_seconds: float  # first POST to last acknowledgement
    apply_seconds: float  # first POST to last wallet credit
    applied: int  # distinct callbacks credited, counted from the database
    latencies_ms: list[float] = field(repr=False, default_factory=list)
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    postgres_cpu_s: float = 0.0
    load_before: str = ""
    checks: list[str] = field(default_factory=list)  # what was verified, one line each
    problems: list[str] = field(default_factory=list)

    @property
    def posts(self) -> int:
        return self.callbacks + self.duplicates

    @property
    def acks_per_s(self) -> float:
        return self.posts / self.post_seconds if self.post_seconds else 0.0

    @property
    def applied_per_s(self) -> float:
        return self.applied / self.apply_seconds if self.apply_seconds else 0.0

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms, 50) if self.latencies_ms else float("nan")

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 99) if self.latencies_ms else float("nan")

    @property
    def ok(self) -> bool:
        return not self.problems and self.errors == 0


# --- the data set ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Push:
    user_id: str
    phone: str
    checkout_request_id: str
    receipt: str


def phone_of(index: int) -> str:
    return f"2547{index:08d}"


def seed_pushes(deni: Deni, *, count: int) -> list[Push]:
    """`count` users, each with one STK top-up that Daraja has accepted (not timed).

    Users go in through the repositories (no PIN hashing), the push through
    `requests.record_stk` (request row, outbox message, audit); then what the worker records after
    Daraja's answer: state `sent`, attempt 1, the CheckoutRequestID, the message done.
    """
    pushes: list[Push] = []
    now = datetime.now(UTC)
    far = now + timedelta(days=1)  # no STK Query during the run
    for start in range(0, count, SEED_BATCH):
        with deni.uow() as uow:
            for i in range(start, min(start + SEED_BATCH, count)):
                user = User(new_id(), phone_of(i), f"Bench {i}", "en", "unused", now)
                uow.users.add(user)
                ledger.open_wallet(uow, user_id=user.id, now=now)
                request = requests.record_stk(
                    uow,
                    user_id=user.id,
                    amount_cents=AMOUNT_KES * 100,
                    idempotency_key=f"bench-{i}",
                    now=now,
                )
                push = Push(user.id, user.phone, f"ws_CO_BENCH{i:010d}", f"BQ{i:08d}")
                request.state = RequestState.SENT
                request.attempt = 1
                request.acknowledged = True
                request.checkout_request_id = push.checkout_request_id
                # As if STK Query had already said "paid": Daraja is unreachable here, so the
                # query each push's success callback waits for is not part of this measure.
                request.paid_confirmed = True
                request.next_check_at = far
                uow.mpesa_requests.save(request, now)
                pushes.append(push)
            for message in uow.outbox.list(states=[OutboxState.PENDING], limit=SEED_BATCH):
                uow.outbox.mark_done(message.id, now=now)
            uow.commit()
    return pushes


def callback_body(template: dict[str, object], push: Push) -> bytes:
    """Daraja's STK success callback, byte for byte in shape, carrying this push's ids."""
    body = json.loads(json.dumps(template))
    stk = body["Body"]["stkCallback"]
    stk["MerchantRequestID"] = f"29115-{push.checkout_request_id[-10:]}-1"
    stk["CheckoutRequestID"] = push.checkout_request_id
    values = {
        "Amount": AMOUNT_KES,
        "MpesaReceiptNumber": push.receipt,
        "TransactionDate": int(datetime.now(UTC).strftime("%Y%m%d%H%M%S")),
        "PhoneNumber": int(push.phone),
    }
    for item in stk["CallbackMetadata"]["Item"]:
        if item["Name"] in values:
            item["Value"] = values[item["Name"]]
    return json.dumps(body).encode()


def schedule(count: int, rng: random.Random) -> list[int]:
    """Indices to post: each callback once, plus ~5% repeats a little after their first post."""
    keyed = [(float(i), i) for i in range(count)]
    repeats = rng.sample(range(count), k=round(count * DUPLICATE_SHARE))
    window = max(count * 0.05, 10.0)
    keyed += [(i + rng.uniform(1.0, window), i) for i in repeats]
    keyed.sort()
    return [i for _, i in keyed]


# --- the server and the workers --------------------------------------------------------------


def server_env(database_url: str, daraja_port: int, *, workers: int) -> dict[str, str]:
    return {
        **os.environ,
        **bench_env(database_url, pin_hash_memory_kib=8_192, pin_hash_time_cost=1),
        "DENI_MPESA": "on",
        "DENI_CALLBACK_TOKEN": CALLBACK_TOKEN,
        # Daraja is never needed here; a closed local port makes any stray call fail at once.
        "DENI_DARAJA_BASE_URL": f"http://{HOST}:{daraja_port}",
        "DENI_DARAJA_TIMEOUT_S": "1",
        "DENI_DARAJA_SECURITY_CREDENTIAL": "bench-unused",
        "DENI_MPESA_STK_QUERY_AFTER_S": "86400",
        **API_PROCESS_ENV,  # the workers deliver SMS; with none, nobody does in this bench
        # Enough pooled connections for the threads the hook runs on: past the pool, SQLAlchemy
        # opens overflow connections and closes them again (a new PostgreSQL backend each).
        "DENI_DATABASE_POOL_SIZE": str(POOL_SIZE),
        # With `deni worker` processes, the API process runs no worker of its own (production);
        # without, its embedded worker (the default of `deni serve`) applies what is left.
        "DENI_WORKER_INTERVAL_S": "0" if workers else "1",
    }


@contextmanager
def processes(
    database_url: str, *, workers: int, worker_interval_s: float, log_dir: Path
) -> Iterator[tuple[int, list[int]]]:
    """The API server (uvicorn, production settings) and `workers` `deni worker` processes.
    Yields (port, pids)."""
    port, daraja_port = free_port(), free_port()
    env = server_env(database_url, daraja_port, workers=workers)
    log_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "uvicorn", "deni.entrypoints.api.asgi:app"]
    argv += ["--host", HOST, "--port", str(port), "--no-access-log", "--log-level", "warning"]
    with ExitStack() as stack:
        started: list[subprocess.Popen[bytes]] = []

        def start(args: list[str], log_name: str) -> subprocess.Popen[bytes]:
            log = stack.enter_context((log_dir / log_name).open("w"))
            proc = subprocess.Popen(  # noqa: S603 (fixed argv, no shell)
                args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO
            )
            started.append(proc)
            return proc

        try:
            server = start(argv, "callbacks-server.log")
            for n in range(workers):
                start(
                    [
                        str(Path(sys.executable).parent / "deni"),
                        "worker",
                        "--interval-s",
                        str(worker_interval_s),
                        "--reconcile-interval-s",
                        "3600",
                    ],
                    f"callbacks-worker-{n}.log",
                )
            _wait_until_up(port, server)
            yield port, [proc.pid for proc in started]
        finally:
            for proc in started:
                proc.terminate()
            for proc in started:
                try:
                    proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=STOP_TIMEOUT_S)


def _wait_until_up(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=REQUEST_TIMEOUT_S) as client:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"the API server exited with {server.returncode}; see its log")
            try:
                if client.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"the API server did not answer within {STARTUP_TIMEOUT_S}s")


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds used so far by these processes (and their threads)."""
    total = 0.0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        total += (int(fields[11]) + int(fields[12])) / _TICKS
    return total


def own_cpu_seconds() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


# --- the client: raw HTTP/1.1 keep-alive -----------------------------------------------------


@dataclass(slots=True)
class _Load:
    bodies: list[bytes]
    order: list[int]
    stop_at: float
    warm_until: float
    next: int = 0
    sent: set[int] = field(default_factory=set)
    repeats: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    last_ack: float = 0.0


async def _connection_loop(port: int, path: str, load: _Load) -> None:
    connection = Connection(port)
    try:
        for _ in range(len(load.order)):  # bounded: each turn takes one post off the schedule
            if load.next >= len(load.order) or time.monotonic() >= load.stop_at:
                return
            index = load.order[load.next]
            load.next += 1
            repeat = index in load.sent
            load.sent.add(index)
            began = time.perf_counter()
            try:
                status, text = await connection.post(path, load.bodies[index], content_type=JSON)
            except HttpError:
                load.errors += 1
                continue
            ended = time.perf_counter()
            load.last_ack = time.monotonic()
            if status != 200 or json.loads(text).get("ResultCode") != 0:
                load.errors += 1
                continue
            load.repeats += repeat
            if time.monotonic() >= load.warm_until:
                load.latencies_ms.append((ended - began) * 1000)
    finally:
        connection.close()


async def _post_all(port: int, load: _Load, concurrency: int) -> None:
    path = f"/hooks/{CALLBACK_TOKEN}/stk"
    tasks = [asyncio.create_task(_connection_loop(port, path, load)) for _ in range(concurrency)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        with suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)


# --- one run ---------------------------------------------------------------------------------


def run_ingest(
    database_url: str,
    *,
    backend: str,
    pg_database: str | None,
    callbacks: int,
    seconds: float,
    warmup_s: float,
    concurrency: int,
    workers: int,
    worker_interval_s: float,
    seed: int,
) -> IngestRun:
    assert 1 <= callbacks <= CALLBACKS_MAX
    assert 1 <= concurrency <= CONCURRENCY_MAX
    assert 0 < seconds <= 3_600
    setup = bootstrap(bench_settings(database_url, pool_size=2))
    try:
        pushes = seed_pushes(setup, count=callbacks)
    finally:
        setup.close()
    template = json.loads(FIXTURE.read_text())
    bodies = [callback_body(template, push) for push in pushes]
    order = schedule(callbacks, random.Random(seed))  # noqa: S311 (a schedule, not secrets)
    load_before = _loadavg()
    with processes(
        database_url, workers=workers, worker_interval_s=worker_interval_s, log_dir=WORK
    ) as (port, pids):
        meter = CpuMeter(pg_database)
        client_cpu0, server_cpu0 = own_cpu_seconds(), cpu_seconds(pids)
        began_wall = datetime.now(UTC)
        began = time.monotonic()
        load = _Load(bodies, order, stop_at=began + seconds, warm_until=began + warmup_s)
        asyncio.run(_post_all(port, load, concurrency))
        meter.poll()
        client_cpu = own_cpu_seconds() - client_cpu0
        post_seconds = load.last_ack - began
        sent = sorted(load.sent)
        _wait_applied(database_url, expected=len(sent), meter=meter)
        server_cpu = cpu_seconds(pids) - server_cpu0
        postgres_cpu = meter.stop().postgres_s
    run = IngestRun(
        backend=backend,
        concurrency=concurrency,
        workers=workers,
        callbacks=len(sent),
        duplicates=load.repeats,
        errors=load.errors,
        post_seconds=post_seconds,
        apply_seconds=0.0,
        applied=0,
        latencies_ms=load.latencies_ms,
        client_cpu_s=client_cpu,
        server_cpu_s=server_cpu,
        postgres_cpu_s=postgres_cpu,
        load_before=load_before,
    )
    verify(database_url, run, [pushes[i] for i in sent], began_wall)
    return run


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _wait_applied(database_url: str, *, expected: int, meter: CpuMeter) -> None:
    """Until every stored callback is applied (the worker may still be at it); bounded."""
    deni = bootstrap(bench_settings(database_url, pool_size=1))
    try:
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline:
            with database_engine(deni).connect() as connection:
                pending = connection.execute(
                    select(func.count())
                    .select_from(m.callback_inbox)
                    .where(m.callback_inbox.c.state == InboxState.RECEIVED.value)
                ).scalar_one()
                stored = connection.execute(
                    select(func.count()).select_from(m.callback_inbox)
                ).scalar_one()
            meter.poll()
            if pending == 0 and stored >= expected:
                return
            time.sleep(0.2)
    finally:
        deni.close()


def verify(database_url: str, run: IngestRun, sent: list[Push], began: datetime) -> None:
    """Count the credits from the database and check every one happened exactly once."""
    deni = bootstrap(bench_settings(database_url, pool_size=1))
    problems, checks = run.problems, run.checks
    expected_cents = len(sent) * AMOUNT_KES * 100
    try:
        with database_engine(deni).connect() as connection:
            e = t.journal_entries.c
            deposits = connection.execute(
                select(
                    func.count(), func.count(func.distinct(e.cause_id)), func.max(e.created_at)
                ).where(e.idempotency_key.like("mpesa:BQ%"))
            ).one()
            run.applied = int(deposits[1])
            if deposits[2] is not None:
                run.apply_seconds = max((deposits[2] - began).total_seconds(), run.post_seconds)
            if deposits[0] != deposits[1] or deposits[0] != len(sent):
                problems.append(
                    f"{deposits[0]} credits for {deposits[1]} receipts; {len(sent)} were sent"
                )
            else:
                checks.append(f"{len(sent):,} callbacks sent, {deposits[0]:,} credits, one each")
            r = m.mpesa_requests.c
            states: dict[str, int] = dict(
                connection.execute(select(r.state, func.count()).group_by(r.state)).all()
            )
            succeeded = connection.execute(
                select(func.count()).where(
                    r.state == RequestState.SUCCEEDED.value, r.receipt.like("BQ%")
                )
            ).scalar_one()
            if succeeded != len(sent):
                problems.append(f"{succeeded} pushes succeeded, {len(sent)} expected: {states}")
            else:
                checks.append(f"{succeeded:,} pushes succeeded with their receipt")
            i = m.callback_inbox.c
            inbox: dict[str, int] = dict(
                connection.execute(select(i.state, func.count()).group_by(i.state)).all()
            )
            if inbox != {InboxState.APPLIED.value: len(sent)}:
                problems.append(f"inbox {inbox}, expected {len(sent)} applied")
            else:
                checks.append(
                    f"inbox: {len(sent):,} rows, all applied; {run.duplicates:,} repeats stored"
                    " nothing"
                )
            a = t.accounts.c
            wallets = {wallet_account_id(p.user_id) for p in sent}
            wrong = 0
            for start in range(0, len(sent), SEED_BATCH):
                chunk = [wallet_account_id(p.user_id) for p in sent[start : start + SEED_BATCH]]
                rows = connection.execute(select(a.id, a.balance_cents).where(a.id.in_(chunk)))
                wrong += sum(1 for _, cents in rows if cents != AMOUNT_KES * 100)
            paybill = connection.execute(
                select(a.balance_cents).where(a.id == PlatformAccount.MPESA_PAYBILL.value)
            ).scalar_one()
            if wrong or paybill != expected_cents:
                problems.append(f"{wrong} wallets wrong; paybill {paybill} != {expected_cents}")
            else:
                checks.append(
                    f"{len(wallets):,} wallets hold KES {AMOUNT_KES} each; paybill"
                    f" KES {paybill // 100:,}"
                )
        with deni.uow.read_only() as uow:
            totals = ledger.check(uow)
        whole = (
            totals.postings_sum_cents == 0
            and not totals.unbalanced_entry_ids
            and not totals.mismatched_accounts
            and not totals.negative_wallets
        )
        if whole:
            checks.append(
                f"ledger check whole: {totals.entries_checked:,} entries,"
                f" {totals.accounts_checked:,} accounts"
            )
        else:
            problems.append(f"ledger check: {totals}")
    finally:
        deni.close()


# --- the command -----------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.callback_ingest")
    parser.add_argument("--seconds", type=float, default=20.0, help="at most this long posting")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of latency not kept")
    parser.add_argument("--callbacks", type=int, default=12_000, help="distinct callbacks")
    parser.add_argument("--concurrency", type=int, default=32, help="keep-alive connections")
    parser.add_argument(
        "--backend", choices=("postgresql", "sqlite", "both"), default="both", help="database"
    )
    parser.add_argument("--workers", type=int, default=1, help="`deni worker` processes")
    parser.add_argument("--worker-interval", type=float, default=0.05, help="their poll (s)")
    parser.add_argument("--seed", type=int, default=383)
    parser.add_argument(
        "--pg-database", default=PG_DATABASE, help="scratch PostgreSQL database (dropped after)"
    )
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite the docs page")
    args = parser.parse_args(argv)
    if not 1 <= args.callbacks <= CALLBACKS_MAX:
        parser.error(f"--callbacks must be 1..{CALLBACKS_MAX}")
    if not 1 <= args.concurrency <= CONCURRENCY_MAX:
        parser.error(f"--concurrency must be 1..{CONCURRENCY_MAX}")
    if not 0 < args.seconds <= 3_600:
        parser.error("--seconds must be in (0, 3600]")
    if not 0 <= args.workers <= 8:
        parser.error("--workers must be 0..8")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    console = Console(width=max(Console().width, 170))
    machine = describe()
    backends = ("postgresql", "sqlite") if args.backend == "both" else (args.backend,)
    runs: list[IngestRun] = []
    for backend in backends:
        console.print(f"[bold]{backend}[/bold]: seeding {args.callbacks:,} pushes, then posting")
        if backend == "postgresql":
            url = databases.recreate_pg_database(args.pg_database)
            pg_database: str | None = args.pg_database
        else:
            url = databases.fresh_sqlite(WORK / SQLITE_FILE)
            pg_database = None
        try:
            databases.migrate(url)
            runs.append(
                run_ingest(
                    url,
                    backend=backend,
                    pg_database=pg_database,
                    callbacks=args.callbacks,
                    seconds=args.seconds,
                    warmup_s=args.warmup,
                    concurrency=args.concurrency,
                    workers=args.workers,
                    worker_interval_s=args.worker_interval,
                    seed=args.seed,
                )
            )
        finally:
            if backend == "postgresql":
                databases.drop_pg_database(args.pg_database)
    console.print(table(runs))
    for run in runs:
        for line in run.checks:
            console.print(f"  [green]ok[/green] {run.backend}: {line}")
        for line in run.problems:
            console.print(f"  [red]PROBLEM[/red] {run.backend}: {line}")
    if not args.no_docs:
        command = "python -m benchmarks.callback_ingest " + " ".join(argv or sys.argv[1:])
        (DOCS / "benchmarks-callbacks.md").write_text(markdown(runs, machine, command.strip()))
    return 0 if all(run.ok for run in runs) else 1


def table(runs: list[IngestRun]) -> Table:
    out = Table(title="Daraja STK callback ingest (this machine, this run)")
    for name in (
        "backend",
        "conn.",
        "workers",
        "callbacks (+repeats)",
        "applied once /s",
        "acks /s",
        "ack p50 ms",
        "ack p99 ms",
        "CPU s: client / server / PG",
        "load before",
        "verified",
    ):
        out.add_column(name, justify="right")
    for run in runs:
        out.add_row(
            run.backend,
            str(run.concurrency),
            str(run.workers),
            f"{run.callbacks:,} (+{run.duplicates:,})",
            f"{run.applied_per_s:,.0f}",
            f"{run.acks_per_s:,.0f}",
            f"{run.p50_ms:.1f}",
            f"{run.p99_ms:.1f}",
            f"{run.client_cpu_s:.1f} / {run.server_cpu_s:.1f} / {run.postgres_cpu_s:.1f}",
            run.load_before,
            "yes" if run.ok else f"NO ({run.errors} errors)",
        )
    return out


def markdown(runs: list[IngestRun], machine: Machine, command: str) -> str:
    lines = [
        "# Benchmark: Daraja STK callback ingest",
        "",
        "Generated by `benchmarks/callback_ingest.py`; see its docstring for the method.",
        "Floor, PostgreSQL: at least 1,000 callbacks applied exactly once per second,"
        " p99 acknowledgement under 50 ms.",
        "",
        f"Command: `{command}`",
        "",
        "| backend | connections | workers | callbacks (+ repeats) | applied once /s | acks /s "
        "| ack p50 ms | ack p99 ms | CPU s client / server+workers / PostgreSQL | load before "
        "| verified |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for run in runs:
        lines.append(
            f"| {run.backend} | {run.concurrency} | {run.workers} "
            f"| {run.callbacks:,} (+{run.duplicates:,}) | {run.applied_per_s:,.0f} "
            f"| {run.acks_per_s:,.0f} | {run.p50_ms:.1f} | {run.p99_ms:.1f} "
            f"| {run.client_cpu_s:.1f} / {run.server_cpu_s:.1f} / {run.postgres_cpu_s:.1f} "
            f"| {run.load_before} | {'yes' if run.ok else 'NO'} |"
        )
    lines += ["", "Verified after each run, from the database:", ""]
    for run in runs:
        lines += [f"- {run.backend}: {line}" for line in run.checks]
        lines += [f"- {run.backend}: **problem**: {line}" for line in run.problems]
    lines += [
        "",
        "How to read it: the hook stores the raw body (one INSERT ... ON CONFLICT DO NOTHING,"
        " one commit) and answers; `deni worker` applies the inbox afterwards, a batch of"
        " claimed rows per transaction (top-up: the wallet credit, its notification and audit"
        " rows, the request marked succeeded, the inbox row marked applied). So *acks /s* and"
        " the latencies are the hook's, and"
        " *applied once /s* is the worker's rate, counted from the journal entries: the span"
        " runs from the first POST to the last credit, so a worker that falls behind the"
        " posts shows here. The load generator is a closed loop: with every connection busy,"
        " acknowledgement latency is about connections / acks per second (Little's law).",
        "",
        "Machine:",
        "",
        f"- {machine.cores} cores, {machine.cpu_model}, {machine.memory}; {machine.kernel}",
        f"- {machine.postgres}",
        f"- PostgreSQL settings: {machine.postgres_settings}",
        f"- Python {machine.python}, SQLite {machine.sqlite}",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
