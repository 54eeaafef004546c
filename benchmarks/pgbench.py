"""PostgreSQL's yardstick, `pgbench -b tpcb-like` (itself a balance transfer), same server."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass

from benchmarks.databases import pg_conninfo, recreate_pg_database

INIT_TIMEOUT_S = 600
RUN_GRACE_S = 120
_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.MULTILINE)
_LATENCY = re.compile(r"^latency average = ([0-9.]+) ms", re.MULTILINE)
_COUNT = re.compile(r"^number of transactions actually processed: (\d+)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class PgbenchRun:
    clients: int
    threads: int
    scale: int
    seconds: int
    transactions: int
    per_second: float
    latency_avg_ms: float
    command: str


def init(database: str, *, scale: int) -> None:
    recreate_pg_database(database)
    _pgbench(["-i", "-s", str(scale), "-q", database], timeout_s=INIT_TIMEOUT_S)


def run(database: str, *, clients: int, seconds: int, scale: int) -> PgbenchRun:
    threads = max(1, min(clients, os.cpu_count() or 1))
    args = ["-b", "tpcb-like", "-c", str(clients), "-j", str(threads), "-T", str(seconds)]
    output = _pgbench([*args, database], timeout_s=seconds + RUN_GRACE_S)
    tps, latency, count = _TPS.search(output), _LATENCY.search(output), _COUNT.search(output)
    if not (tps and latency and count):
        raise RuntimeError(f"could not read pgbench's output:\n{output}")
    return PgbenchRun(
        clients=clients,
        threads=threads,
        scale=scale,
        seconds=seconds,
        transactions=int(count.group(1)),
        per_second=float(tps.group(1)),
        latency_avg_ms=float(latency.group(1)),
        command=" ".join(["pgbench", *args, database]),
    )


def _pgbench(args: list[str], *, timeout_s: int) -> str:
    done = subprocess.run(  # noqa: S603 (fixed argv, no shell)
        ["pgbench", *pg_conninfo(), *args],  # noqa: S607 (pgbench from PATH, like psql)
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pgbench {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout + done.stderr
