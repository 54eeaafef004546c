"""USSD under load: realistic *383# journeys against POST /ussd, from a loopback load generator.

One uvicorn server (`benchmarks.ussd_app:app`: Deni's production app plus a constant
`CON hello` route, production settings from DENI_* variables) runs on a fresh, migrated
database. A pool of users with funded wallets and a few loans each is written first, through
the services (not timed; one cheap PIN hash shared by all, swapped for a production-cost hash
afterwards, so the setup does not pay for thousands of argon2 hashes). Then, against that one
server:

1. latency under real load: `sessions` virtual users, each dialling journey after journey and
   pausing `think` seconds (uniform) before every hop, as people do; p50/p99 per hop;
2. capacity: `capacity_clients` users with no pauses at all (closed loop), hops per second;
3. the ceiling: the same clients posting the same forms to the constant `CON hello` route;
4. a reference: the same forms to a route that makes only a hop's session-store round trips.

The client is plain asyncio over raw HTTP/1.1 keep-alive connections (one request in flight per
connection): httpx costs several times more CPU per request, and on a 2-core machine the client
shares the CPU with the server. Its CPU use is measured and reported next to the server's.
Everything is bounded: users, hops per journey, hops per run, seconds, and every request's
timeout.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import httpx
from sqlalchemy import update

from benchmarks.api_latency import free_port
from benchmarks.rawhttp import FORM, Connection, HttpError
from benchmarks.settings import API_PROCESS_ENV, USSD_TOKEN, bench_env, bench_settings
from benchmarks.stats import percentile
from benchmarks.transfers import seed_wallets
from deni.adapters.db import tables as t
from deni.bootstrap import Deni, bootstrap, database_engine
from deni.services import loans

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
SERVICE_CODE = "*383#"
HELLO_PATH = "/ussd-hello"  # served by benchmarks/ussd_app.py only
# Also the bench's only: the session store's two round trips of a hop, on a hop thread, with no
# Deni logic and no database. What the hops' own I/O allows, next to the ceiling.
STORE_IO_PATH = "/ussd-store-io"
USSD_PATH = f"/ussd/{USSD_TOKEN}"  # as Africa's Talking posts in production
PIN = "4821"
CHEAP_MEMORY_KIB, CHEAP_TIME_COST = 8_192, 1  # the seed's throwaway hash: cheap to verify
SCREEN_CHARS_MAX = 182
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 10.0
HOPS_PER_JOURNEY_MAX = 10
MPESA_JOURNEYS_MAX = 8_000  # the fake M-PESA recorder keeps 10,000 per server process
LOOP_GRACE_S = 30.0  # after the clock runs out, hops in flight get this long to finish
REDIS_URL = "redis://127.0.0.1:6379/14"  # not the default db 0, nor the tests' 15
SEED_LOAN_KES = 1_000
SEED_LOAN_DAYS = 30
HOPS_PER_MINUTE_UNLIMITED = 1_000_000  # the server's per-phone limit, lifted for scripted users

Tick = Callable[[float, int], None]  # (seconds elapsed, hops so far)


# --- journeys --------------------------------------------------------------------------------

READ, WRITE, PIN_HOP = "read", "write", "pin"


@dataclass(frozen=True, slots=True)
class Hop:
    entry: str  # what the user types; "{lender}" and "{pin}" are filled in per user
    kind: str  # READ: shows data; WRITE: writes to the database (besides the session); PIN_HOP
    end: bool = False  # the reply must be END (else CON)


@dataclass(frozen=True, slots=True)
class Journey:
    name: str
    weight: int
    hops: tuple[Hop, ...]


def _hops(*entries: str) -> tuple[Hop, ...]:
    return tuple(Hop(entry, READ) for entry in entries)


# After the last hop the user hangs up (or the reply was END). What a journey leaves on a
# non-menu screen is kept for resume, so the next dial within 2 minutes is usually answered
# "Continue where you left off?"; the user says 2 (No), one more hop, counted like any other.
JOURNEYS = (
    Journey("balance", 25, _hops("", "5")),
    Journey("mini-statement", 20, _hops("", "6")),
    Journey("loans I owe: list, detail", 15, _hops("", "2", "1")),
    Journey("loans I gave: list, detail", 10, _hops("", "3", "1")),
    Journey("requests waiting for me", 5, _hops("", "4")),
    Journey("loan request up to the quote", 12, _hops("", "1", "{lender}", "500", "30", "50")),
    Journey("top up (M-PESA queued at END)", 6, (*_hops("", "5", "1"), Hop("100", WRITE, True))),
    Journey(
        "repay by M-PESA (queued at END)",
        5,
        (*_hops("", "2", "1", "2"), Hop("50", WRITE, True)),
    ),
    Journey(
        "loan request confirmed with PIN",
        2,
        (*_hops("", "1", "{lender}", "500", "30", "50"), Hop("{pin}", PIN_HOP, True)),
    ),
)
MPESA_JOURNEYS = frozenset(j.name for j in JOURNEYS if any(h.kind == WRITE for h in j.hops))
assert all(len(j.hops) <= HOPS_PER_JOURNEY_MAX for j in JOURNEYS)
RESUME_PROMPT = "CON Continue where you left off?"


def phone_of(index: int) -> str:
    """The MSISDN `transfers.seed_wallets` gives user `index`."""
    return f"2547{index:08d}"


def national(index: int) -> str:
    return "0" + phone_of(index)[3:]


# --- results ---------------------------------------------------------------------------------


@dataclass(slots=True)
class LoadRun:
    label: str
    clients: int  # concurrent sessions
    seconds: float  # measured window
    think_s: tuple[float, float] | None
    samples_ms: dict[str, list[float]] = field(default_factory=dict, repr=False)  # by hop kind
    journeys: int = 0
    resumes: int = 0
    unexpected: int = 0  # replies that were not the screen the journey expects
    failures: int = 0  # transport errors and timeouts
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    examples: list[str] = field(default_factory=list, repr=False)

    def add(self, kind: str, ms: float) -> None:
        self.samples_ms.setdefault(kind, []).append(ms)

    def hops(self, *kinds: str) -> list[float]:
        kinds = kinds or tuple(self.samples_ms)
        return [ms for kind in kinds for ms in self.samples_ms.get(kind, [])]

    @property
    def count(self) -> int:
        return len(self.hops())

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def p(self, q: float, *kinds: str) -> float | None:
        values = self.hops(*kinds)
        return percentile(values, q) if values else None

    def client_cpu_ms_per_hop(self) -> float | None:
        return self.client_cpu_s / self.count * 1000 if self.count else None

    def server_cpu_ms_per_hop(self) -> float | None:
        return self.server_cpu_s / self.count * 1000 if self.count else None


@dataclass(slots=True)
class UssdResult:
    backend: str
    workers: int
    store: str
    users: int
    seed_s: float
    latency: LoadRun
    capacity: LoadRun
    hello: LoadRun
    store_io: LoadRun

    @property
    def ratio(self) -> float:
        """Hops against the empty route: the capacity floor's measure."""
        return _share_of(self.capacity, self.hello)

    @property
    def store_io_ratio(self) -> float:
        """A route doing only a hop's session-store I/O, against the empty route: as far as
        the ratio could go if the hop's own work (database, screens) cost nothing."""
        return _share_of(self.store_io, self.hello)


def _share_of(run: LoadRun, ceiling: LoadRun) -> float:
    return run.per_second / ceiling.per_second if ceiling.per_second else 0.0


@dataclass(frozen=True, slots=True)
class UssdPlan:
    sessions: int = 1_000
    think_s: tuple[float, float] = (2.0, 10.0)
    seconds: float = 60.0
    warmup_s: float = 15.0
    capacity_clients: int = 32
    capacity_seconds: float = 15.0
    capacity_warmup_s: float = 3.0
    connections: int = 64  # the think-time run's pool, shared by all users
    # One uvicorn worker per core, as a production API machine runs (docs/deploy.md); the
    # ceiling runs on the same number. Redis sessions, since hops may reach any worker.
    workers: int = field(default_factory=lambda: min(16, os.cpu_count() or 1))
    store: str = "redis"

    def __post_init__(self) -> None:
        assert 1 <= self.sessions <= 20_000
        assert 0 <= self.think_s[0] <= self.think_s[1] <= 60
        assert 0 < self.seconds <= 3_600
        assert 0 <= self.warmup_s <= 600
        assert 1 <= self.capacity_clients <= 1_000
        assert self.capacity_clients <= self.sessions
        assert 0 < self.capacity_seconds <= 600
        assert 0 <= self.capacity_warmup_s <= 120
        assert 1 <= self.connections <= 1_000
        assert 1 <= self.workers <= 16
        assert self.store in ("memory", "sql", "redis")
        assert self.store != "memory" or self.workers == 1, "memory sessions live in one process"


# --- the data set ----------------------------------------------------------------------------


def seed_users(database_url: str, *, users: int, pin_hash_memory_kib: int, time_cost: int) -> None:
    """`users` funded users; user i lent to user i+1 (an active loan each way round the ring)
    and has asked user i+2 for a loan (a request waiting for them). Not timed."""
    assert users >= 3
    cheap = bootstrap(
        bench_settings(
            database_url,
            pool_size=2,
            pin_hash_memory_kib=CHEAP_MEMORY_KIB,
            pin_hash_time_cost=CHEAP_TIME_COST,
        )
    )
    try:
        seed_wallets(cheap, count=users, pin_hash=cheap.hasher.hash(PIN))
        ids = _user_ids(cheap)
        for i in range(users):
            borrower = ids[phone_of((i + 1) % users)]
            lent = loans.request_loan(
                cheap,
                borrower_id=borrower,
                lender_phone=phone_of(i),
                principal_cents=SEED_LOAN_KES * 100,
                fee_cents=SEED_LOAN_KES * 10,
                term_days=SEED_LOAN_DAYS,
                channel="api",
            )
            loans.approve_loan(
                cheap,
                lender_id=ids[phone_of(i)],
                loan_id=lent.id,
                pin=PIN,
                channel="api",
            )
            loans.request_loan(
                cheap,
                borrower_id=ids[phone_of(i)],
                lender_phone=phone_of((i + 2) % users),
                principal_cents=SEED_LOAN_KES * 100,
                term_days=SEED_LOAN_DAYS,
                channel="api",
            )
        # PIN hops during the run pay what production pays: one real-cost hash for everyone.
        real = bootstrap(
            bench_settings(
                database_url,
                pool_size=1,
                pin_hash_memory_kib=pin_hash_memory_kib,
                pin_hash_time_cost=time_cost,
            )
        )
        try:
            with database_engine(real).begin() as connection:
                connection.execute(update(t.users).values(pin_hash=real.hasher.hash(PIN)))
        finally:
            real.close()
    finally:
        cheap.close()


def _user_ids(deni: Deni) -> dict[str, str]:
    with database_engine(deni).connect() as connection:
        rows = connection.execute(t.users.select().with_only_columns(t.users.c.phone, t.users.c.id))
        return {phone: user_id for phone, user_id in rows}


# --- the server ------------------------------------------------------------------------------


@contextmanager
def serve(
    database_url: str,
    *,
    workers: int,
    store: str,
    pin_hash_memory_kib: int,
    pin_hash_time_cost: int,
    log_path: Path,
) -> Iterator[tuple[int, int]]:
    """A uvicorn server on `benchmarks.ussd_app:app`; yields (port, pid)."""
    port = free_port()
    env = {
        **os.environ,
        **bench_env(
            database_url,
            pin_hash_memory_kib=pin_hash_memory_kib,
            pin_hash_time_cost=pin_hash_time_cost,
        ),
        "DENI_SESSION_STORE": store,
        "DENI_REDIS_URL": REDIS_URL,
        # The load's users are scripts (32 of them make every hop of the capacity phase): the
        # per-phone limit, there for people, would end their sessions.
        "DENI_USSD_HOPS_PER_MINUTE_MAX": str(HOPS_PER_MINUTE_UNLIMITED),
        **API_PROCESS_ENV,
    }
    argv = [sys.executable, "-m", "uvicorn", "benchmarks.ussd_app:app"]
    argv += ["--host", HOST, "--port", str(port), "--no-access-log", "--log-level", "warning"]
    if workers > 1:
        argv += ["--workers", str(workers)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        server = subprocess.Popen(  # noqa: S603 (fixed argv, no shell)
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO
        )
        try:
            _wait_until_up(port, server, workers)
            yield port, server.pid
        finally:
            server.terminate()
            try:
                server.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=STOP_TIMEOUT_S)


def _wait_until_up(port: int, server: subprocess.Popen[bytes], workers: int) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=REQUEST_TIMEOUT_S) as client:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"the USSD server exited with {server.returncode}; see its log")
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError(f"the USSD server did not answer within {STARTUP_TIMEOUT_S}s")
    # With several workers the first answer comes from one of them; give the rest a moment.
    while workers > 1 and len(_process_tree(server.pid)) < workers + 1:
        if time.monotonic() > deadline:
            raise RuntimeError("the USSD server's workers did not all start")
        time.sleep(0.1)
    time.sleep(0.5 if workers > 1 else 0.0)


_TICKS = os.sysconf("SC_CLK_TCK")


def _process_tree(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        parents[int(proc.name)] = int(stat[stat.rfind(")") + 2 :].split()[1])
    tree, frontier = [root], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        tree += children
        frontier += children
    return tree


def server_cpu_s(root: int) -> float:
    """CPU seconds used so far by the server process and its workers (not PostgreSQL)."""
    total = 0.0
    for pid in _process_tree(root):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        total += (int(fields[11]) + int(fields[12])) / _TICKS
    return total


# --- the client: raw HTTP/1.1 keep-alive -----------------------------------------------------


class FormConnection(Connection):
    """What a USSD gateway posts: a form; anything but 200 is an error."""

    async def post_form(self, path: str, body: bytes) -> str:
        status, answer = await self.post(path, body, content_type=FORM)
        if status != 200:
            raise HttpError(f"HTTP {status}")
        return answer.decode()


def form(session_id: str, phone: str, text: str) -> bytes:
    fields = {
        "sessionId": session_id,
        "serviceCode": SERVICE_CODE,
        "phoneNumber": "+" + phone,
        "networkCode": "63902",
        "text": text,
    }
    return urlencode(fields).encode()


# --- the load generator ----------------------------------------------------------------------


@dataclass(slots=True)
class _Window:
    """When hops count, and when everything stops."""

    measure_from: float
    stop_at: float
    hops_max: int
    hops_started: int = 0
    mpesa_journeys: int = 0

    def running(self) -> bool:
        return time.monotonic() < self.stop_at and self.hops_started < self.hops_max

    def counts(self, started: float) -> bool:
        return started >= self.measure_from


class _User:
    def __init__(self, index: int, users: int, rng: random.Random, run_tag: str) -> None:
        self.index, self.users, self.rng, self.run_tag = index, users, rng, run_tag
        self.phone = phone_of(index)
        self.lender = national((index + 1) % users)
        self.journeys = 0

    def entry(self, hop: Hop) -> str:
        return hop.entry.format(lender=self.lender, pin=PIN)


async def _journey(
    user: _User,
    journey: Journey,
    *,
    post: Callable[[str, bytes], Awaitable[str]],
    run: LoadRun,
    window: _Window,
    think_s: tuple[float, float] | None,
) -> None:
    """One session from dial to hang-up (or END); pauses before each hop after the first."""
    user.journeys += 1
    started = time.monotonic()
    session_id = f"ATUid_bench_{user.run_tag}_{user.index}_{user.journeys}"
    entries: list[str] = []
    hops = list(journey.hops)
    step = 0
    while step < len(hops) and step < HOPS_PER_JOURNEY_MAX + 1:
        hop = hops[step]
        if think_s is not None and step > 0:
            await asyncio.sleep(user.rng.uniform(*think_s))
        if not window.running():
            return
        if step > 0:
            entries.append(user.entry(hop))
        body = form(session_id, user.phone, "*".join(entries))
        window.hops_started += 1
        began = time.monotonic()
        try:
            reply = await post(USSD_PATH, body)
        except HttpError:
            if window.counts(began):
                run.failures += 1
            return
        ms = (time.monotonic() - began) * 1000
        counted = window.counts(began)
        if counted:
            run.add(hop.kind, ms)
        if step == 0 and reply.startswith(RESUME_PROMPT):
            # A journey dropped less than 2 minutes ago: "2" (No) and on to the main menu.
            if counted:
                run.resumes += 1
            hops.insert(1, Hop("2", READ))
        expected = "END " if hop.end else "CON "
        if not reply.startswith(expected) or len(reply) > SCREEN_CHARS_MAX:
            if counted:
                run.unexpected += 1
                if len(run.examples) < 5:
                    run.examples.append(f"{journey.name} hop {step}: {reply[:80]!r}")
            return
        step += 1
    if window.counts(started):
        run.journeys += 1


def _pick(user: _User, window: _Window) -> Journey:
    journey = user.rng.choices(JOURNEYS, weights=[j.weight for j in JOURNEYS])[0]
    if journey.name in MPESA_JOURNEYS:
        if window.mpesa_journeys >= MPESA_JOURNEYS_MAX:
            return JOURNEYS[0]
        window.mpesa_journeys += 1
    return journey


class _Pool:
    """`size` connections shared by many users; a hop waits for a free one (timed)."""

    def __init__(self, port: int, size: int) -> None:
        self._free: asyncio.Queue[FormConnection] = asyncio.Queue()
        for _ in range(size):
            self._free.put_nowait(FormConnection(port))

    async def post(self, path: str, body: bytes) -> str:
        connection = await self._free.get()
        try:
            return await connection.post_form(path, body)
        finally:
            self._free.put_nowait(connection)

    def close(self) -> None:
        while not self._free.empty():
            self._free.get_nowait().close()


async def _ticker(tick: Tick | None, began: float, run: LoadRun, stop: asyncio.Event) -> None:
    while not stop.is_set():
        if tick is not None:
            tick(time.monotonic() - began, run.count)
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)


async def _think_time_run(
    port: int, server_pid: int, plan: UssdPlan, *, users: int, tick: Tick | None
) -> LoadRun:
    run = LoadRun("think", plan.sessions, plan.seconds, plan.think_s)
    rng = random.Random(5)  # noqa: S311 (a load pattern, not a secret)
    tag = uuid.uuid4().hex[:8]
    began = time.monotonic()
    window = _Window(
        measure_from=began + plan.warmup_s,
        stop_at=began + plan.warmup_s + plan.seconds,
        hops_max=int(plan.sessions * (plan.warmup_s + plan.seconds)),  # >= 1 hop/s/user: never
    )
    pool = _Pool(port, plan.connections)
    people = [_User(i, users, random.Random(rng.random()), tag) for i in range(plan.sessions)]  # noqa: S311

    async def person(user: _User) -> None:
        # Users start spread over one pause, so the first seconds are not one burst.
        await asyncio.sleep(user.rng.uniform(0, plan.think_s[1]))
        while window.running():
            await _journey(
                user,
                _pick(user, window),
                post=pool.post,
                run=run,
                window=window,
                think_s=plan.think_s,
            )
            await asyncio.sleep(user.rng.uniform(*plan.think_s))

    stop = asyncio.Event()
    ticker = asyncio.create_task(_ticker(tick, began, run, stop))
    cpu0, server0 = 0.0, 0.0
    tasks = [asyncio.create_task(person(u)) for u in people]
    await asyncio.sleep(max(0.0, window.measure_from - time.monotonic()))
    cpu0, server0 = time.process_time(), server_cpu_s(server_pid)
    await asyncio.sleep(max(0.0, window.stop_at - time.monotonic()))
    run.client_cpu_s = time.process_time() - cpu0
    run.server_cpu_s = server_cpu_s(server_pid) - server0
    await _settle(tasks)
    stop.set()
    await ticker
    pool.close()
    return run


async def _closed_loop_run(
    port: int,
    server_pid: int,
    plan: UssdPlan,
    *,
    users: int,
    reference: str | None,
    tick: Tick | None,
) -> LoadRun:
    """`capacity_clients` users, one connection each, no pauses: journeys back to back, or
    dials to a `reference` route (HELLO_PATH, STORE_IO_PATH). Every client uses only phones
    i = client (mod clients), so no phone is in two sessions at once."""
    assert reference in (None, HELLO_PATH, STORE_IO_PATH)
    clients = plan.capacity_clients
    label = {None: "capacity", HELLO_PATH: "hello", STORE_IO_PATH: "store I/O"}[reference]
    run = LoadRun(label, clients, plan.capacity_seconds, None)
    rng = random.Random({None: 6, HELLO_PATH: 7, STORE_IO_PATH: 8}[reference])  # noqa: S311
    tag = uuid.uuid4().hex[:8]
    began = time.monotonic()
    window = _Window(
        measure_from=began + plan.capacity_warmup_s,
        stop_at=began + plan.capacity_warmup_s + plan.capacity_seconds,
        hops_max=100_000 * int(plan.capacity_warmup_s + plan.capacity_seconds + 1),
    )

    async def client(c: int) -> None:
        connection = FormConnection(port)
        mine = [
            _User(i, users, random.Random(rng.random()), tag)  # noqa: S311
            for i in range(c, users, clients)
        ]
        n = 0
        try:
            while window.running():
                user = mine[n % len(mine)]
                n += 1
                if reference is not None:
                    await _dial_reference(connection, reference, user, run, window)
                else:
                    await _journey(
                        user,
                        _pick(user, window),
                        post=connection.post_form,
                        run=run,
                        window=window,
                        think_s=None,
                    )
        finally:
            connection.close()

    stop = asyncio.Event()
    ticker = asyncio.create_task(_ticker(tick, began, run, stop))
    tasks = [asyncio.create_task(client(c)) for c in range(clients)]
    await asyncio.sleep(max(0.0, window.measure_from - time.monotonic()))
    cpu0, server0 = time.process_time(), server_cpu_s(server_pid)
    await asyncio.sleep(max(0.0, window.stop_at - time.monotonic()))
    run.client_cpu_s = time.process_time() - cpu0
    run.server_cpu_s = server_cpu_s(server_pid) - server0
    await _settle(tasks)
    stop.set()
    await ticker
    return run


async def _dial_reference(
    connection: FormConnection, path: str, user: _User, run: LoadRun, window: _Window
) -> None:
    """The same form a dial sends, to a reference route; both answer `CON hello`."""
    user.journeys += 1
    body = form(f"ATUid_ref_{user.run_tag}_{user.index}_{user.journeys}", user.phone, "")
    window.hops_started += 1
    began = time.monotonic()
    try:
        reply = await connection.post_form(path, body)
    except HttpError:
        if window.counts(began):
            run.failures += 1
        return
    if window.counts(began):
        run.add(READ, (time.monotonic() - began) * 1000)
        if reply != "CON hello":
            run.unexpected += 1


async def _settle(tasks: list[asyncio.Task[None]]) -> None:
    """Let hops in flight finish (bounded), then cancel whatever is still pausing."""
    _, pending = await asyncio.wait(tasks, timeout=LOOP_GRACE_S)
    for task in pending:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            raise result


def run_ussd(
    database_url: str,
    *,
    backend: str,
    plan: UssdPlan,
    pin_hash_memory_kib: int,
    pin_hash_time_cost: int,
    log_path: Path,
    on_phase: Callable[[str, float], Tick] | None = None,
) -> UssdResult:
    """Seed, start one server, run the four phases against it. `database_url` is migrated.

    `on_phase(label, seconds)` returns the tick for that phase's progress bar.
    """
    users = plan.sessions
    seed_began = time.monotonic()
    seed_users(
        database_url,
        users=users,
        pin_hash_memory_kib=pin_hash_memory_kib,
        time_cost=pin_hash_time_cost,
    )
    seed_s = time.monotonic() - seed_began
    with serve(
        database_url,
        workers=plan.workers,
        store=plan.store,
        pin_hash_memory_kib=pin_hash_memory_kib,
        pin_hash_time_cost=pin_hash_time_cost,
        log_path=log_path,
    ) as (port, pid):

        def ticker(label: str, seconds: float) -> Tick | None:
            return on_phase(label, seconds) if on_phase is not None else None

        think = f"{plan.think_s[0]:g}-{plan.think_s[1]:g} s"
        latency = asyncio.run(
            _think_time_run(
                port,
                pid,
                plan,
                users=users,
                tick=ticker(
                    f"USSD {backend}: {plan.sessions:,} sessions, {think} pauses",
                    plan.warmup_s + plan.seconds,
                ),
            )
        )
        span = plan.capacity_warmup_s + plan.capacity_seconds

        def closed_loop(reference: str | None, title: str) -> LoadRun:
            return asyncio.run(
                _closed_loop_run(
                    port,
                    pid,
                    plan,
                    users=users,
                    reference=reference,
                    tick=ticker(f"USSD {backend}: {title}", span),
                )
            )

        capacity = closed_loop(None, f"capacity, {plan.capacity_clients} clients")
        hello = closed_loop(HELLO_PATH, "CON hello ceiling")
        store_io = closed_loop(STORE_IO_PATH, "session store I/O only")
    return UssdResult(
        backend=backend,
        workers=plan.workers,
        store=plan.store,
        users=users,
        seed_s=seed_s,
        latency=latency,
        capacity=capacity,
        hello=hello,
        store_io=store_io,
    )
