"""The soak's processes on this machine: PostgreSQL (a database of its own on the running
server), a Redis of its own, the Daraja sandbox, 2 API processes behind a small TCP balancer,
and the workers. Everything it starts it can kill (-9) and start again; nothing else.

Ports: `base` (Redis), +1 the sandbox, +2 the balancer (the one address clients and M-PESA's
callbacks use), +3 and +4 the APIs. Logs and the sandbox's certificate in `run_dir`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
from sqlalchemy.engine import make_url

HOST = "127.0.0.1"
BIN = Path(sys.executable).parent
DENI = str(BIN / "deni")
START_WAIT_S = 60.0
STOP_WAIT_S = 10.0
POLL_S = 0.2
PROXY_CONNECT_TIMEOUT_S = 2.0
PROXY_CONNECTIONS_MAX = 2_000
PIPE_CHUNK_BYTES = 65_536
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True, slots=True)
class Ports:
    base: int

    @property
    def redis(self) -> int:
        return self.base

    @property
    def sandbox(self) -> int:
        return self.base + 1

    @property
    def front(self) -> int:
        return self.base + 2

    @property
    def apis(self) -> tuple[int, int]:
        return (self.base + 3, self.base + 4)


@dataclass(slots=True)
class Managed:
    """One process the soak started: how to start it again, and its current pid."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    health_url: str | None
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 (our own commands, fixed argv)
                self.argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.log_path.parent,
            )
        self.starts += 1

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill9(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_WAIT_S)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            self.kill9()

    def wait_healthy(self, timeout_s: float = START_WAIT_S) -> float:
        """Seconds until the health URL answers 200 (or the process is up, without one)."""
        started = time.monotonic()
        deadline = started + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                tail = self.log_path.read_text(errors="replace")[-2_000:]
                raise RuntimeError(f"{self.name} exited while starting; its log ends:\n{tail}")
            if self.health_url is None:
                return time.monotonic() - started
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.health_url, timeout=2.0).status_code == 200:
                    return time.monotonic() - started
            time.sleep(POLL_S)
        raise RuntimeError(f"{self.name} not healthy within {timeout_s:.0f} s: {self.log_path}")


def soak_database_url(server_url: str, ports: Ports) -> str:
    """The soak's own database on the server `server_url` names (any database there)."""
    url = make_url(server_url).set(drivername="postgresql+psycopg")
    return url.set(database=f"deni_soak_{ports.base}").render_as_string(hide_password=False)


def _admin(url: str) -> str:
    admin = make_url(url).set(drivername="postgresql", database="postgres")
    return admin.render_as_string(hide_password=False)


def _soak_name(url: str) -> str:
    name = make_url(url).database
    assert name, url
    assert name.startswith("deni_soak_"), name  # never anyone else's database
    return name


def fresh_database(url: str) -> None:
    name = _soak_name(url)
    with psycopg.connect(_admin(url), autocommit=True, connect_timeout=5) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def drop_database(url: str) -> None:
    name = _soak_name(url)
    with psycopg.connect(_admin(url), autocommit=True, connect_timeout=5) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def terminate_backends(url: str) -> int:
    """End every PostgreSQL backend of the soak's own database (and only those)."""
    name = _soak_name(url)
    with psycopg.connect(_admin(url), autocommit=True, connect_timeout=5) as connection:
        rows = connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return sum(1 for (ended,) in rows if ended)


def free_port_base(first: int, last: int, width: int = 5) -> int:
    """The first base from `first` (in steps of `width`) whose `width` ports are all free."""
    import socket

    for base in range(first, last - width + 2, width):
        free = True
        for port in range(base, base + width):
            with socket.socket() as sock:
                try:
                    sock.bind((HOST, port))
                except OSError:
                    free = False
                    break
        if free:
            return base
    raise RuntimeError(f"no {width} free ports together from {first} to {last}")


class Balancer:
    """A TCP balancer (what Caddy or a cloud load balancer does in front of the APIs):
    connections go round the live backends; one that refuses to connect is skipped."""

    def __init__(self, port: int, backends: tuple[int, ...]) -> None:
        self.port = port
        self.backends = backends
        self._turn = itertools.count()
        self._server: asyncio.Server | None = None
        self._open = 0
        self.refused = 0  # connections no backend took

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, HOST, self.port, backlog=1024)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= PROXY_CONNECTIONS_MAX:
            writer.close()
            return
        self._open += 1
        try:
            upstream = await self._connect()
            if upstream is None:
                self.refused += 1
                writer.close()
                return
            up_reader, up_writer = upstream
            await asyncio.gather(
                _pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True
            )
        finally:
            self._open -= 1

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        first = next(self._turn)
        for i in range(len(self.backends)):
            port = self.backends[(first + i) % len(self.backends)]
            try:
                return await asyncio.wait_for(
                    asyncio.open_connection(HOST, port), PROXY_CONNECT_TIMEOUT_S
                )
            except (OSError, TimeoutError):
                continue
        return None


class BalancerThread:
    """The balancer on an event loop of its own, in a thread: it outlives the load (M-PESA's
    callbacks keep coming through it during the settle) and its work is not queued behind
    the load generator's."""

    def __init__(self, port: int, backends: tuple[int, ...]) -> None:
        self.balancer = Balancer(port, backends)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="soak-balancer", daemon=True)
        self._ready = threading.Event()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self.balancer.start())
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10.0), "the balancer did not start"

    async def _close(self) -> None:
        await self.balancer.stop()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10.0)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)
        if not self._thread.is_alive():
            self._loop.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(PIPE_CHUNK_BYTES):
            writer.write(chunk)
            await writer.drain()
    finally:
        with contextlib.suppress(Exception):
            writer.close()


@dataclass(slots=True)
class Topology:
    ports: Ports
    run_dir: Path
    workers: int = 2
    postgres_url: str = POSTGRES_URL
    database: str = ""
    env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, Managed] = field(default_factory=dict)
    balancer: BalancerThread | None = None
    _registration: subprocess.Popen[bytes] | None = None
    closing: bool = False

    @property
    def clock_file(self) -> Path:
        return self.run_dir / "clock-offset-s"

    def clock_offset_s(self) -> float:
        return float(self.clock_file.read_text() or "0")

    def advance_clock(self, seconds: float) -> float:
        """Every Deni process `seconds` later (they re-read the file within a second)."""
        offset = float(self.clock_file.read_text() or "0") + seconds
        temporary = self.clock_file.with_suffix(".tmp")
        temporary.write_text(f"{offset:.0f}\n")
        temporary.replace(self.clock_file)
        return offset

    @property
    def front_url(self) -> str:
        return f"http://{HOST}:{self.ports.front}"

    @property
    def sandbox_url(self) -> str:
        return f"http://{HOST}:{self.ports.sandbox}"

    @property
    def redis_url(self) -> str:
        return f"redis://{HOST}:{self.ports.redis}/0"

    def prepare(self) -> None:
        """A fresh database, migrated; Redis and the sandbox running; the settings written."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for old_log in self.run_dir.glob("*.log"):  # a replayed seed starts its logs afresh
            old_log.unlink()
        # ... and its devices: a device database remembers the member of the run before.
        shutil.rmtree(self.run_dir / "sync", ignore_errors=True)
        self.database = soak_database_url(self.postgres_url, self.ports)
        fresh_database(self.database)
        redis = Managed(
            "redis",
            [
                "redis-server",
                "--port",
                str(self.ports.redis),
                "--bind",
                HOST,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.run_dir),
            ],
            dict(os.environ),
            self.run_dir / "redis.log",
            None,
        )
        self.processes["redis"] = redis
        redis.start()
        _wait_port(self.ports.redis)
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("DENI_")}
        sandbox = Managed(
            "sandbox",
            [DENI, "sandbox", "--host", HOST, "--port", str(self.ports.sandbox)],
            {**base_env, "DENI_LOG_LEVEL": "WARNING"},
            self.run_dir / "sandbox.log",
            f"{self.sandbox_url}/sandbox/balances",
        )
        self.processes["sandbox"] = sandbox
        sandbox.start()
        # The schema while the sandbox starts: the upgrade needs only the database.
        upgrade = subprocess.Popen(  # noqa: S603
            [DENI, "db", "upgrade"],
            env={**base_env, "DENI_ENVIRONMENT": "development", "DENI_DATABASE_URL": self.database},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        sandbox.wait_healthy()
        certificate = self.run_dir / "sandbox-certificate.pem"
        certificate.write_bytes(httpx.get(f"{self.sandbox_url}/sandbox/certificate").content)
        self.clock_file.write_text("0\n")
        self.env = {**base_env, **self._deni_env(certificate)}
        _, errors = upgrade.communicate(timeout=120)
        if upgrade.returncode != 0:
            raise RuntimeError(f"deni db upgrade failed: {errors.decode()[-2000:]}")

    def _deni_env(self, certificate: Path) -> dict[str, str]:
        return {
            "DENI_ENVIRONMENT": "test",
            "DENI_DATABASE_URL": self.database,
            "DENI_DATABASE_POOL_SIZE": "8",
            "DENI_SESSION_STORE": "redis",
            "DENI_REDIS_URL": self.redis_url,
            "DENI_LOG_JSON": "true",
            "DENI_LOG_LEVEL": "WARNING",
            "DENI_MPESA": "on",
            "DENI_DARAJA_ENVIRONMENT": "sandbox",
            "DENI_DARAJA_BASE_URL": self.sandbox_url,
            "DENI_DARAJA_CERTIFICATE_PEM": str(certificate),
            "DENI_DARAJA_TIMEOUT_S": "10",
            "DENI_CALLBACK_BASE_URL": self.front_url,
            "DENI_CALLBACK_ALLOWED_IPS": "127.0.0.1,::1",
            "DENI_USSD_ALLOWED_IPS": "127.0.0.1,::1",
            "DENI_TRUSTED_PROXIES": "127.0.0.1,::1",
            "DENI_SMS_BACKEND": "fake",
            "DENI_CLOCK_OFFSET_FILE": str(self.clock_file),
            "DENI_JWT_SECRET": secrets.token_hex(32),
            "DENI_PIN_PEPPER": secrets.token_hex(32),
            "DENI_CALLBACK_TOKEN": secrets.token_hex(32),
            "DENI_USSD_TOKEN": secrets.token_hex(32),
            # Scripted dialers hop faster than people; the limit is for people.
            "DENI_USSD_HOPS_PER_MINUTE_MAX": "1000",
            # The soak is minutes long: M-PESA's silence is questioned after seconds, not minutes.
            "DENI_MPESA_STK_QUERY_AFTER_S": "20",
            "DENI_MPESA_STATUS_AFTER_S": "20",
            "DENI_MPESA_CHECK_BACKOFF_S": "20",
            "DENI_MPESA_PAYBILL_CONFIRM_AFTER_S": "30",
            "DENI_MPESA_PULL_INTERVAL_S": "30",
            "DENI_SWEEP_INTERVAL_S": "5",
            "DENI_SMS_INTERVAL_S": "2",
        }

    def start_apis(self) -> None:
        """The 2 API processes, the balancer, the workers and the C2B registration, without
        waiting (each takes seconds): `finish_start` waits."""
        for index, port in enumerate(self.ports.apis, start=1):
            api = Managed(
                f"api-{index}",
                [DENI, "serve", "--host", HOST, "--port", str(port)],
                {
                    **self.env,
                    "DENI_WORKER_INTERVAL_S": "0",
                    "DENI_SWEEP_INTERVAL_S": "0",
                    "DENI_SMS_INTERVAL_S": "0",
                },
                self.run_dir / f"api-{index}.log",
                f"http://{HOST}:{port}/health/live",
            )
            self.processes[api.name] = api
            api.start()
        self.balancer = BalancerThread(self.ports.front, self.ports.apis)
        self.balancer.start()
        for index in range(1, self.workers + 1):
            worker = Managed(
                f"worker-{index}",
                [DENI, "worker", "--interval-s", "0.5", "--reconcile-interval-s", "10"],
                self.env,
                self.run_dir / f"worker-{index}.log",
                None,
            )
            self.processes[worker.name] = worker
            worker.start()
        # Where paybill payments are told (the sandbox forgets it when it restarts).
        self._registration = subprocess.Popen(  # noqa: S603
            [DENI, "payments", "register-urls"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def finish_start(self) -> None:
        for name in ("api-1", "api-2"):
            self.processes[name].wait_healthy()
        assert self._registration is not None
        output, _ = self._registration.communicate(timeout=60)
        if self._registration.returncode != 0:
            raise RuntimeError(f"C2B registration failed: {output.decode()[-2000:]}")

    def restart(self, name: str) -> float:
        """Start a killed process again; seconds until it is healthy."""
        if self.closing:
            raise RuntimeError(f"the soak is stopping: {name} stays down")
        managed = self.processes[name]
        managed.start()
        if name == "redis":
            return _wait_port(self.ports.redis)
        return managed.wait_healthy()

    def stop_all(self) -> None:
        self.closing = True  # a fault's restart still under way must not outlive the soak
        if self.balancer is not None:
            self.balancer.stop()
        for name in reversed(list(self.processes)):
            self.processes[name].stop()

    def deni_command(
        self, *args: str, timeout_s: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603
            [DENI, *args],
            env={**self.env, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )


def _wait_port(port: int, timeout_s: float = START_WAIT_S) -> float:
    import socket

    started = time.monotonic()
    while time.monotonic() < started + timeout_s:
        with socket.socket() as sock:
            sock.settimeout(1.0)
            if sock.connect_ex((HOST, port)) == 0:
                return time.monotonic() - started
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout_s:.0f} s")
