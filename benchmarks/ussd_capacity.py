"""USSD hop latency as the number of sessions grows: where one machine stops keeping up.

The think-time phase of `benchmarks.ussd_load` (each user dialling journey after journey,
pausing 2-10 s before every hop) at several populations, against one server (uvicorn, one
worker per core, Redis sessions) on PostgreSQL. The users are seeded once, for the largest
population; a smaller population is its first N users.

    .venv/bin/python -m benchmarks.ussd_capacity [--sessions 1000,3000,10000] [--seconds 30]

It drops and recreates its own database (`deni_test_scaling` unless --database says other)
and keeps USSD sessions in the Redis given by --redis-url.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import replace
from pathlib import Path

from benchmarks import databases, ussd_load
from benchmarks.hot_account import DATABASE_DEFAULT, commit_short, load_average
from deni.config import Settings

SESSIONS_DEFAULT = "1000,3000,10000"
REDIS_URL_DEFAULT = "redis://127.0.0.1:6379/9"
LOG_PATH = Path("var/bench/ussd-capacity-server.log")
DEFAULT_MEMORY_KIB = int(Settings.model_fields["pin_hash_memory_kib"].default)
DEFAULT_TIME_COST = int(Settings.model_fields["pin_hash_time_cost"].default)


def _sessions(text: str) -> list[int]:
    counts = sorted(int(part) for part in text.split(",") if part.strip())
    if not counts or any(not 32 <= n <= 20_000 for n in counts):
        raise argparse.ArgumentTypeError("session counts between 32 and 20,000")
    return counts


def _row(run: ussd_load.LoadRun, sessions: int, load: str) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    offered = sessions / 6.0  # one hop per mean pause (2-10 s: 6 s), plus the hop itself
    return (
        f"| {sessions:,} | {offered:,.0f} | {run.per_second:,.0f} "
        f"| {ms(run.p(50, 'read', 'write'))} | {ms(run.p(99, 'read', 'write'))} "
        f"| {ms(run.p(99, 'pin'))} | {run.failures} | {run.unexpected} "
        f"| {run.server_cpu_s / run.seconds * 100:.0f}% | {load} |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sessions", type=_sessions, default=_sessions(SESSIONS_DEFAULT))
    parser.add_argument("--seconds", type=float, default=30.0, help="measured, per population")
    parser.add_argument("--warmup", type=float, default=10.0, help="not measured")
    parser.add_argument("--database", default=DATABASE_DEFAULT)
    parser.add_argument("--redis-url", default=REDIS_URL_DEFAULT)
    parser.add_argument("--port", type=int, default=0, help="the server's port (0: any free)")
    args = parser.parse_args(argv)
    assert 0 < args.seconds <= 600

    ussd_load.REDIS_URL = args.redis_url
    if args.port:
        setattr(ussd_load, "free_port", lambda: int(args.port))  # noqa: B010 (mypy: not exported)
    users = max(args.sessions)
    print(f"commit {commit_short()}; load average before: {load_average()}", flush=True)
    url = databases.recreate_pg_database(args.database)
    databases.migrate(url)
    began = time.monotonic()
    try:
        ussd_load.seed_users(
            url, users=users, pin_hash_memory_kib=DEFAULT_MEMORY_KIB, time_cost=DEFAULT_TIME_COST
        )
        print(f"{users:,} users with loans seeded in {time.monotonic() - began:.0f} s", flush=True)
        LOG_PATH.parent.mkdir(parents=True, exist_ok=True)
        with ussd_load.serve(
            url,
            workers=ussd_load.UssdPlan().workers,
            store="redis",
            pin_hash_memory_kib=DEFAULT_MEMORY_KIB,
            pin_hash_time_cost=DEFAULT_TIME_COST,
            log_path=LOG_PATH,
        ) as (port, pid):
            print(
                "| sessions | offered hops/s (about) | hops/s | p50 ms | p99 ms | PIN p99 ms "
                "| failures | bad replies | server CPU (of one core) | load average before |"
            )
            print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
            for sessions in args.sessions:
                plan = replace(
                    ussd_load.UssdPlan(),
                    sessions=sessions,
                    seconds=args.seconds,
                    warmup_s=args.warmup,
                    capacity_clients=min(32, sessions),
                )
                load = load_average()
                run = asyncio.run(
                    ussd_load._think_time_run(port, pid, plan, users=users, tick=None)
                )
                print(_row(run, sessions, load), flush=True)
                for example in run.examples[:3]:
                    print(f"  unexpected reply: {example}", flush=True)
    finally:
        databases.drop_pg_database(args.database)
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
