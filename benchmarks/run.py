"""`make bench`: ledger transfers/s (PostgreSQL, SQLite) against pgbench, API latency, USSD.

    .venv/bin/python -m benchmarks.run [--seconds 10] [--pg-clients 8] [--round-trips 300] ...
    .venv/bin/python -m benchmarks.run --only ussd [--ussd-backends postgresql sqlite] ...

Prints a table and writes docs/benchmarks.md with SVG charts beside it. Everything talks to
127.0.0.1 only; every loop is bounded in count and in time. It creates (and afterwards drops)
the PostgreSQL databases deni_bench_ledger, deni_bench_pgbench, deni_bench_api and
deni_bench_ussd, and SQLite files under var/bench/.

With --only, the parts that did not run keep their figures: the USSD section lives in its own
file (docs/benchmarks-ussd.md, linked from docs/benchmarks.md), so `--only ussd` rewrites just
that file and its chart, and a run without ussd leaves them alone.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from benchmarks import api_latency, cpu, databases, pgbench, report, transfers, ussd_load
from benchmarks.machine import describe
from benchmarks.report import Results
from benchmarks.settings import PIN_PEPPER, bench_settings
from benchmarks.statements import statements_per_transfer
from deni.adapters.security import PepperedArgon2PinHasher
from deni.bootstrap import Deni, bootstrap
from deni.config import Settings

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
WORK = REPO / "var" / "bench"
LEDGER_DB = "deni_bench_ledger"
PGBENCH_DB = "deni_bench_pgbench"
API_DB = "deni_bench_api"
USSD_DB = "deni_bench_ussd"
OWN_PAGE_TIMEOUT_S = 1_800
PARTS = ("ledger", "pgbench", "argon2", "api", "ussd", "callbacks", "sync")
DEFAULT_MEMORY_KIB = int(Settings.model_fields["pin_hash_memory_kib"].default)
DEFAULT_TIME_COST = int(Settings.model_fields["pin_hash_time_cost"].default)
# OWASP's argon2id minimum, the default before ADR 0006: measured in-process for comparison.
OWASP_MEMORY_KIB, OWASP_TIME_COST = 19_456, 2
ARGON2_SAMPLES = 30
STATEMENT_SAMPLE = 200


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="per throughput run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds not counted")
    parser.add_argument("--pg-clients", type=int, default=8, help="threads, and pgbench -c")
    parser.add_argument(
        "--group-clients",
        type=int,
        default=32,
        help="threads handing transfers to the group commit (pgbench runs with as many too)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=8,  # one client thread per process: no GIL between clients, as N API processes
        help="also run the PostgreSQL clients spread over this many processes (0: skip)",
    )
    parser.add_argument("--sqlite-clients", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--wallets", type=int, default=1_000)
    parser.add_argument("--pgbench-scale", type=int, default=10)
    parser.add_argument("--round-trips", type=int, default=300)
    parser.add_argument("--warmup-round-trips", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=10, help="lender/borrower pairs")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=PARTS,
        default=list(PARTS),
        help="run only these parts (default: all); docs of the others are left as they are",
    )
    plan = ussd_load.UssdPlan()
    parser.add_argument(
        "--ussd-backends",
        nargs="+",
        choices=("postgresql", "sqlite"),
        default=["postgresql", "sqlite"],
    )
    parser.add_argument("--ussd-sessions", type=int, default=plan.sessions)
    parser.add_argument("--ussd-seconds", type=float, default=plan.seconds)
    parser.add_argument("--ussd-warmup", type=float, default=plan.warmup_s)
    parser.add_argument("--ussd-think", type=float, nargs=2, default=list(plan.think_s))
    parser.add_argument("--ussd-clients", type=int, default=plan.capacity_clients)
    parser.add_argument("--ussd-capacity-seconds", type=float, default=plan.capacity_seconds)
    parser.add_argument("--ussd-workers", type=int, default=plan.workers)
    parser.add_argument("--ussd-store", choices=("memory", "sql", "redis"), default=plan.store)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/")
    parser.add_argument("--keep", action="store_true", help="keep the bench databases")
    args = parser.parse_args(argv)
    if (
        args.pg_clients < 1
        or args.group_clients < 1
        or args.wallets < 2
        or args.round_trips < 1
        or args.pairs < 1
    ):
        parser.error("clients, pairs and round trips must be positive; wallets at least 2")
    if args.processes and args.pg_clients % args.processes:
        parser.error("--pg-clients must divide evenly over --processes")
    if "ussd" in args.only:
        try:
            args.ussd_plan = ussd_load.UssdPlan(
                sessions=args.ussd_sessions,
                think_s=(args.ussd_think[0], args.ussd_think[1]),
                seconds=args.ussd_seconds,
                warmup_s=args.ussd_warmup,
                capacity_clients=args.ussd_clients,
                capacity_seconds=args.ussd_capacity_seconds,
                workers=args.ussd_workers,
                store=args.ussd_store,
            )
        except AssertionError as error:
            parser.error(f"USSD options out of bounds {error or ''}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    console = Console(width=None if sys.stdout.isatty() else 120)
    command = shlex.join([".venv/bin/python", "-m", "benchmarks.run", *(argv or sys.argv[1:])])
    results = Results(
        command=command,
        started_at=datetime.now(UTC),
        commit=_git("rev-parse", "--short", "HEAD"),
        dirty=bool(_git("status", "--porcelain", "--untracked-files=no", "src")),
        machine=describe(),
        load_before=cpu.load_average(),
        seconds=args.seconds,
        warmup_s=args.warmup,
        pgbench_scale=args.pgbench_scale,
    )
    if results.load_before > 0.5:
        console.print(
            f"[yellow]Load average is {results.load_before:.2f}: something else is running; "
            "the figures will be lower than on a quiet machine.[/yellow]"
        )
    WORK.mkdir(parents=True, exist_ok=True)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console) as progress:
            if "ledger" in args.only:
                _ledger_postgres(args, progress, results)
                _ledger_sqlite(args, progress, results)
            if "pgbench" in args.only:
                _pgbench(args, progress, results)
            if "argon2" in args.only:
                _argon2(progress, results)
            if "api" in args.only:
                _api(args, progress, results)
            if "ussd" in args.only:
                _ussd(args, progress, results)
    finally:
        if not args.keep:
            for name in (LEDGER_DB, PGBENCH_DB, API_DB, USSD_DB):
                databases.drop_pg_database(name)
            for path in WORK.glob("*.sqlite3*"):
                path.unlink(missing_ok=True)
    # These two run as their own programs and write their own pages.
    if "callbacks" in args.only:
        _own_page(console, "callback_ingest", *(["--no-docs"] if args.no_write else []))
    if "sync" in args.only:
        page = _own_page(console, "sync_bench")
        if not args.no_write:
            (DOCS / report.SYNC_DOC).write_text(page)
    results.finished_at = datetime.now(UTC)
    results.load_after = cpu.load_average()
    console.print(report.table(results))
    if not args.no_write:
        DOCS.mkdir(exist_ok=True)
        if results.ussd:
            (DOCS / "benchmarks-ussd.md").write_text(report.ussd_markdown(results))
            (DOCS / "benchmarks-ussd.svg").write_text(report.ussd_chart(results))
            console.print("Wrote docs/benchmarks-ussd.md, docs/benchmarks-ussd.svg")
        if set(args.only) - {"ussd", "callbacks", "sync"}:
            if set(PARTS) - set(args.only):
                console.print(
                    "[yellow]Not rewriting docs/benchmarks.md: only part of it ran "
                    f"({', '.join(args.only)}). Run all of `make bench` to refresh it.[/yellow]"
                )
            else:
                (DOCS / "benchmarks.md").write_text(report.markdown(results))
                (DOCS / "benchmarks-throughput.svg").write_text(report.throughput_chart(results))
                (DOCS / "benchmarks-latency.svg").write_text(report.latency_chart(results))
                console.print(
                    "Wrote docs/benchmarks.md, docs/benchmarks-throughput.svg, -latency.svg"
                )
    return 0


def _time_task(
    progress: Progress, label: str, total_s: float, meter: cpu.CpuMeter
) -> Callable[[float, int], None]:
    task = progress.add_task(label, total=total_s)

    def tick(elapsed_s: float, done: int) -> None:
        meter.poll()
        progress.update(
            task, completed=min(elapsed_s, total_s), description=f"{label}: {done:,} done"
        )

    return tick


@contextmanager
def _step(progress: Progress, label: str) -> Iterator[TaskID]:
    task = progress.add_task(label, total=1)
    yield task
    progress.update(task, completed=1)


def _ledger_postgres(args: argparse.Namespace, progress: Progress, results: Results) -> None:
    with _step(progress, f"PostgreSQL: fresh {LEDGER_DB}, {args.wallets:,} funded wallets"):
        url = databases.recreate_pg_database(LEDGER_DB)
        databases.migrate(url)
        deni = bootstrap(bench_settings(url, pool_size=args.pg_clients))
        wallet_ids = transfers.seed_wallets(
            deni, count=args.wallets, pin_hash=deni.hasher.hash("4821")
        )
    try:
        label = f"ledger PostgreSQL, {args.pg_clients} threads"
        meter = cpu.CpuMeter(LEDGER_DB)
        run = transfers.run_transfers(
            deni,
            backend="PostgreSQL",
            wallet_ids=wallet_ids,
            clients=args.pg_clients,
            seconds=args.seconds,
            warmup_s=args.warmup,
            tick=_time_task(progress, label, args.warmup + args.seconds, meter),
        )
        results.ledger.append((run, meter.stop()))
        _group_committed(args, progress, results, deni, "PostgreSQL", wallet_ids, LEDGER_DB)
        with _step(progress, f"statements per transfer ({STATEMENT_SAMPLE} transfers)"):
            results.statements = statements_per_transfer(
                deni, wallet_ids, transfers=STATEMENT_SAMPLE
            )
    finally:
        deni.close()
    if args.processes:
        per = args.pg_clients // args.processes
        label = f"ledger PostgreSQL, {args.processes} processes x {per} threads"
        meter = cpu.CpuMeter(LEDGER_DB)
        run = transfers.run_transfer_processes(
            url,
            backend="PostgreSQL",
            processes=args.processes,
            threads_per_process=per,
            seconds=args.seconds,
            warmup_s=args.warmup,
            tick=_time_task(progress, label, args.warmup + args.seconds, meter),
        )
        results.ledger.append((run, meter.stop()))


def _ledger_sqlite(args: argparse.Namespace, progress: Progress, results: Results) -> None:
    for clients in args.sqlite_clients:
        path = WORK / f"ledger-{clients}.sqlite3"
        with _step(progress, f"SQLite: fresh {path.name}, {args.wallets:,} funded wallets"):
            url = databases.fresh_sqlite(path)
            databases.migrate(url)
            deni = bootstrap(bench_settings(url))
            wallet_ids = transfers.seed_wallets(
                deni, count=args.wallets, pin_hash=deni.hasher.hash("4821")
            )
        try:
            label = f"ledger SQLite, {clients} thread{'s' if clients > 1 else ''}"
            meter = cpu.CpuMeter(None)
            run = transfers.run_transfers(
                deni,
                backend="SQLite",
                wallet_ids=wallet_ids,
                clients=clients,
                seconds=args.seconds,
                warmup_s=args.warmup,
                tick=_time_task(progress, label, args.warmup + args.seconds, meter),
            )
            results.ledger.append((run, meter.stop()))
            if clients == max(args.sqlite_clients):
                _group_committed(args, progress, results, deni, "SQLite", wallet_ids, None)
        finally:
            deni.close()


def _group_committed(
    args: argparse.Namespace,
    progress: Progress,
    results: Results,
    deni: Deni,
    backend: str,
    wallet_ids: list[str],
    database: str | None,
) -> None:
    """The same clients, each transfer handed to the ledger's entry committer."""
    label = f"ledger {backend}, {args.group_clients} threads, group commit"
    meter = cpu.CpuMeter(database)
    with transfers.group_committed(deni) as transfer:
        run = transfers.run_transfers(
            deni,
            backend=backend,
            wallet_ids=wallet_ids,
            clients=args.group_clients,
            seconds=args.seconds,
            warmup_s=args.warmup,
            tick=_time_task(progress, label, args.warmup + args.seconds, meter),
            transfer=transfer,
        )
    results.ledger.append((run, meter.stop()))


def _pgbench(args: argparse.Namespace, progress: Progress, results: Results) -> None:
    with _step(progress, f"pgbench -i -s {args.pgbench_scale} {PGBENCH_DB}"):
        pgbench.init(PGBENCH_DB, scale=args.pgbench_scale)
    seconds = max(1, round(args.seconds))
    for clients in sorted({args.pg_clients, args.group_clients}):
        meter = cpu.CpuMeter(PGBENCH_DB)
        tick = _time_task(progress, f"pgbench tpcb-like, {clients} clients", seconds, meter)
        with ThreadPoolExecutor(max_workers=1) as pool:
            future = pool.submit(
                pgbench.run, PGBENCH_DB, clients=clients, seconds=seconds, scale=args.pgbench_scale
            )
            started = time.monotonic()
            while not future.done():
                tick(time.monotonic() - started, 0)
                time.sleep(0.05)
            run = future.result()
        results.pgbench.append((run, meter.stop()))


def _argon2(progress: Progress, results: Results) -> None:
    """What one PIN check costs here, in this process, without a database."""
    costs = ((DEFAULT_MEMORY_KIB, DEFAULT_TIME_COST), (OWASP_MEMORY_KIB, OWASP_TIME_COST))
    for memory_kib, time_cost in costs:
        with _step(progress, f"argon2id verify, {memory_kib} KiB x {time_cost}"):
            hasher = PepperedArgon2PinHasher(
                pepper=PIN_PEPPER, memory_cost_kib=memory_kib, time_cost=time_cost
            )
            stored = hasher.hash("4821")
            samples = []
            for _ in range(ARGON2_SAMPLES):
                began = time.perf_counter()
                assert hasher.verify("4821", stored)
                samples.append((time.perf_counter() - began) * 1000)
            results.argon2_ms[(memory_kib, time_cost)] = statistics.median(samples)


def _api(args: argparse.Namespace, progress: Progress, results: Results) -> None:
    costs = ((DEFAULT_MEMORY_KIB, DEFAULT_TIME_COST),)  # what production runs
    for backend in ("PostgreSQL", "SQLite"):
        for memory_kib, time_cost in costs:
            if backend == "PostgreSQL":
                url = databases.recreate_pg_database(API_DB)
            else:
                url = databases.fresh_sqlite(WORK / "api.sqlite3")
            databases.migrate(url)
            label = f"API request+approve, {backend}, argon2 {memory_kib} KiB x {time_cost}"
            task = progress.add_task(label, total=args.round_trips)
            run = api_latency.run_round_trips(
                url,
                backend=backend,
                pin_hash_memory_kib=memory_kib,
                pin_hash_time_cost=time_cost,
                round_trips=args.round_trips,
                warmup=args.warmup_round_trips,
                pairs=args.pairs,
                log_path=WORK / "api-server.log",
                tick=partial(_advance, progress, task),
            )
            results.latency.append(run)


def _ussd(args: argparse.Namespace, progress: Progress, results: Results) -> None:
    plan: ussd_load.UssdPlan = args.ussd_plan
    for backend in args.ussd_backends:
        label = "PostgreSQL" if backend == "postgresql" else "SQLite"
        with _step(progress, f"USSD {label}: fresh database, {plan.sessions:,} users with loans"):
            if backend == "postgresql":
                url = databases.recreate_pg_database(USSD_DB)
            else:
                url = databases.fresh_sqlite(WORK / "ussd.sqlite3")
            databases.migrate(url)

        def phase(title: str, seconds: float) -> Callable[[float, int], None]:
            task = progress.add_task(title, total=seconds)

            def tick(elapsed_s: float, hops: int) -> None:
                progress.update(
                    task, completed=min(elapsed_s, seconds), description=f"{title}: {hops:,} hops"
                )

            return tick

        results.ussd.append(
            ussd_load.run_ussd(
                url,
                backend=label,
                plan=plan,
                pin_hash_memory_kib=DEFAULT_MEMORY_KIB,
                pin_hash_time_cost=DEFAULT_TIME_COST,
                log_path=WORK / "ussd-server.log",
                on_phase=phase,
            )
        )
        results.ussd_plan = plan


def _advance(progress: Progress, task: TaskID, done: int) -> None:
    progress.update(task, completed=done)


def _own_page(console: Console, module: str, *args: str) -> str:
    """Run `python -m benchmarks.<module>`, show what it prints, and return it."""
    console.print(f"[bold]benchmarks.{module}[/bold] (its own progress follows)")
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-m", f"benchmarks.{module}", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=OWN_PAGE_TIMEOUT_S,
        check=True,
    )
    console.print(done.stdout)
    return done.stdout


def _git(*args: str) -> str:
    try:
        done = subprocess.run(  # noqa: S603
            ["git", *args],  # noqa: S607
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip()


if __name__ == "__main__":
    raise SystemExit(main())
