"""The bench's results: a rich table for the terminal, Markdown and SVG charts for docs/."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from rich.table import Table

from benchmarks.api_latency import LatencyRun
from benchmarks.chart import bar_chart
from benchmarks.cpu import CpuUse
from benchmarks.machine import Machine
from benchmarks.pgbench import PgbenchRun
from benchmarks.transfers import TransferRun

RATIO_TARGET = 0.5
P99_TARGET_MS = 20.0
DEFAULT_COST = (19_456, 2)


@dataclass
class Results:
    command: str
    started_at: datetime
    commit: str
    dirty: bool
    machine: Machine
    load_before: float
    seconds: float
    warmup_s: float
    pgbench_scale: int
    finished_at: datetime | None = None
    load_after: float = 0.0
    ledger: list[tuple[TransferRun, CpuUse]] = field(default_factory=list)
    statements: tuple[list[tuple[str, float]], float] | None = None
    pgbench: tuple[PgbenchRun, CpuUse] | None = None
    argon2_ms: dict[tuple[int, int], float] = field(default_factory=dict)
    latency: list[LatencyRun] = field(default_factory=list)


def ledger_label(run: TransferRun) -> str:
    if run.processes > 1:
        per = run.clients // run.processes
        return f"{run.backend}, {run.processes} processes x {per} threads"
    return f"{run.backend}, {run.clients} thread{'s' if run.clients > 1 else ''}"


def cost_label(run: LatencyRun) -> str:
    cost = (run.pin_hash_memory_kib, run.pin_hash_time_cost)
    tag = "production default" if cost == DEFAULT_COST else "cheaper, NOT the default"
    return f"argon2id {cost[0]} KiB x {cost[1]} ({tag})"


def _ratio(run: TransferRun, results: Results) -> float | None:
    if results.pgbench is None or run.backend != "PostgreSQL":
        return None
    return run.per_second / results.pgbench[0].per_second


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _per_txn_ms(seconds: float, count: int) -> str:
    return f"{seconds / count * 1000:.2f}" if count else "-"


def table(results: Results) -> Table:
    out = Table(title="Deni benchmarks (this machine, this run)")
    out.add_column("Measurement")
    out.add_column("Result", justify="right")
    out.add_column("Target")
    for run, _ in results.ledger:
        ratio = _ratio(run, results)
        target = f"{ratio:.2f} of pgbench, {_verdict(ratio >= RATIO_TARGET)}" if ratio else ""
        out.add_row(
            f"ledger transfers/s, {ledger_label(run)}",
            f"{run.per_second:,.0f}  (p50 {run.p50_ms:.1f} ms, p99 {run.p99_ms:.1f} ms)",
            target,
        )
    if results.pgbench is not None:
        bench = results.pgbench[0]
        out.add_row(
            f"pgbench -b tpcb-like, {bench.clients} clients, -s {bench.scale}",
            f"{bench.per_second:,.0f}  (avg {bench.latency_avg_ms:.1f} ms)",
            f">= {RATIO_TARGET} of this",
        )
    for cost, ms in results.argon2_ms.items():
        out.add_row(f"one argon2id PIN verify, {cost[0]} KiB x {cost[1]}", f"{ms:.1f} ms", "")
    for lat in results.latency:
        out.add_row(
            f"request+approve round trip, {lat.backend}, {cost_label(lat)}",
            f"p50 {lat.p50_ms:.1f} ms, p99 {lat.p99_ms:.1f} ms",
            f"p99 < {P99_TARGET_MS:.0f} ms: {_verdict(lat.p99_ms < P99_TARGET_MS)}",
        )
    return out


def markdown(results: Results) -> str:
    m = results.machine
    lines = [
        "# Benchmarks",
        "",
        "<!-- Written by benchmarks/run.py (`make bench`); rerun it rather than editing. -->",
        "",
        f"One run of `make bench` on {results.started_at:%Y-%m-%d %H:%M} UTC, commit "
        f"`{results.commit}`{' with uncommitted changes under src/' if results.dirty else ''}. "
        "Every figure below was measured in that run, on the machine described at the end.",
        "",
        f"Command: `{results.command}` (what `make bench` runs). Throughput runs last "
        f"{results.seconds:g} s each after a {results.warmup_s:g} s warm-up that is not counted.",
        "",
        "## Summary",
        "",
        "| Measurement | Result | Target |",
        "|---|---:|---|",
    ]
    for run, _ in results.ledger:
        ratio = _ratio(run, results)
        target = (
            f"{ratio:.2f} of pgbench: {_verdict(ratio >= RATIO_TARGET)} (>= {RATIO_TARGET})"
            if ratio
            else ""
        )
        lines.append(
            f"| Ledger transfers/s, {ledger_label(run)} | {run.per_second:,.0f} | {target} |"
        )
    if results.pgbench is not None:
        bench = results.pgbench[0]
        lines.append(
            f"| `pgbench -b tpcb-like`, {bench.clients} clients, scale {bench.scale} "
            f"| {bench.per_second:,.0f} tps | the yardstick |"
        )
    for lat in results.latency:
        lines.append(
            f"| Request → approve round trip over HTTP, {lat.backend}, {cost_label(lat)} "
            f"| p50 {lat.p50_ms:.1f} ms, p99 {lat.p99_ms:.1f} ms "
            f"| p99 < {P99_TARGET_MS:.0f} ms: {_verdict(lat.p99_ms < P99_TARGET_MS)} |"
        )
    default_ms = results.argon2_ms.get(DEFAULT_COST)
    if default_ms is not None:
        lines += [
            "",
            f"**Read this with the latency figures:** approving a loan verifies the lender's PIN "
            f"with argon2id. At the production default cost ({DEFAULT_COST[0]} KiB, "
            f"{DEFAULT_COST[1]} passes, `DENI_PIN_HASH_MEMORY_KIB` / `DENI_PIN_HASH_TIME_COST`) "
            f"one verification alone took {default_ms:.1f} ms (median of 30) on this machine, "
            "so at that cost no request → approve round trip can have a p99 under 20 ms here. "
            "The rows marked *cheaper, NOT the default* use the cheapest cost the settings "
            "accept, to show what the rest of the round trip costs; they are not what "
            "production runs.",
        ]
    lines += [
        "",
        "![Throughput](benchmarks-throughput.svg)",
        "",
        "![Latency](benchmarks-latency.svg)",
        "",
        "## Ledger transfers against pgbench",
        "",
        "Each ledger transfer is `services.ledger.transfer` in its own unit of work with one "
        "commit: lock both accounts (`SELECT ... FOR UPDATE` in id order on PostgreSQL, "
        "`BEGIN IMMEDIATE` on SQLite), check the idempotency key, insert the entry and its two "
        "postings, update both cached balances. Client threads pick random pairs among "
        f"{results.ledger[0][0].wallets:,} funded wallets. pgbench's tpcb-like transaction "
        "updates an account, a teller and a branch, reads the balance and inserts a history "
        "row, in C over the same server.",
        "",
        "| Run | Transfers/s | p50 ms | p99 ms | Busy retries | Client CPU ms/txn "
        "| PostgreSQL CPU ms/txn |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run, used in results.ledger:
        server = _per_txn_ms(used.postgres_s, run.all_transfers) if run.backend != "SQLite" else "-"
        lines.append(
            f"| {ledger_label(run)} | {run.per_second:,.0f} | {run.p50_ms:.1f} | "
            f"{run.p99_ms:.1f} | {run.busy_retries} | "
            f"{_per_txn_ms(run.client_cpu_s, run.all_transfers)} | {server} |"
        )
    if results.pgbench is not None:
        bench, used = results.pgbench
        lines.append(
            f"| pgbench, {bench.clients} clients, {bench.threads} threads | "
            f"{bench.per_second:,.0f} | avg {bench.latency_avg_ms:.1f} | - | - | "
            f"{_per_txn_ms(used.client_s, bench.transactions)} | "
            f"{_per_txn_ms(used.postgres_s, bench.transactions)} |"
        )
        lines += ["", f"pgbench command: `{bench.command}` (after `pgbench -i -s {bench.scale}`)."]
    lines += [
        "",
        "CPU per transaction is CPU time over the whole run (warm-up included) divided by the "
        "transactions completed in it: *client* is the process(es) running the transfers "
        "(for the process runs, measured inside each worker, so start-up is left out) or "
        "pgbench; *PostgreSQL* is the backends serving the bench's "
        "own database (read from /proc; the shared WAL writer and checkpointer are left out). "
        f"Client and server share the machine's {m.cores} cores, so the rate cannot exceed "
        f"{m.cores} x 1000 ms divided by their sum per transaction.",
    ]
    if results.statements is not None:
        shapes, checkouts = results.statements
        total = sum(n for _, n in shapes)
        lines += [
            "",
            f"SQL statements one transfer sends on PostgreSQL ({total:g} in all, counted with a "
            "SQLAlchemy `before_cursor_execute` listener over 200 transfers), besides the "
            "driver's own `BEGIN` and `COMMIT` and the pool's pre-ping on each of the "
            f"{checkouts:g} connection checkout(s) per transfer:",
            "",
        ]
        lines += [f"- {n:g} x `{name}`" for name, n in shapes]
    lines += [
        "",
        "## Request → approve round trip over HTTP",
        "",
        "A uvicorn process serves `deni.entrypoints.api.asgi:app` on 127.0.0.1 with "
        "`DENI_ENVIRONMENT=production`, on a fresh database. Users register and log in through "
        "the API; lenders are funded through `payments.record_mpesa_payment` on the same "
        "database. One client on one keep-alive connection (httpx) then times `POST "
        "/api/v1/loans` by a borrower followed by `POST /api/v1/loans/{id}/approve` with the "
        "lender's PIN (each with an `Idempotency-Key`); the lender's wallet holds the money, so "
        "every approval moves it and the loan is active. The first round trips are a warm-up.",
        "",
        "| Database | argon2id cost | Round trips | p50 ms | p99 ms | Request p50 ms "
        "| Approve p50 ms | Approve p99 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for lat in results.latency:
        lines.append(
            f"| {lat.backend} | {cost_label(lat)} | {lat.round_trips} | {lat.p50_ms:.1f} | "
            f"{lat.p99_ms:.1f} | {lat.request_p50_ms:.1f} | {lat.approve_p50_ms:.1f} | "
            f"{lat.approve_p99_ms:.1f} |"
        )
    lines += ["", "One argon2id PIN verification in-process, median of 30:", ""]
    lines += [
        f"- {cost[0]} KiB x {cost[1]}: {ms:.1f} ms"
        f"{' (production default)' if cost == DEFAULT_COST else ''}"
        for cost, ms in results.argon2_ms.items()
    ]
    lines += [
        "",
        "## Machine",
        "",
        f"- Cores (`nproc`): {m.cores}",
        f"- Memory: {m.memory}",
        f"- CPU: {m.cpu_model} ({m.kernel})",
        f"- PostgreSQL: {m.postgres}",
        f"- PostgreSQL settings: {m.postgres_settings}",
        f"- Python {m.python}, SQLite {m.sqlite}",
        f"- Load average (1 min) before the run: {results.load_before:.2f}; after: "
        f"{results.load_after:.2f}. The bench, its clients and PostgreSQL share these "
        f"{m.cores} cores."
        + (
            " Other work was running on the machine when the run started, so the throughput "
            "figures are lower than a quiet machine would give; the CPU-per-transaction "
            "columns are less sensitive to that."
            if results.load_before > 0.5
            else ""
        ),
        "",
    ]
    return "\n".join(lines)


def throughput_chart(results: Results) -> str:
    bars = [
        (f"ledger, {ledger_label(run)}", run.per_second, "#2b6cb0") for run, _ in results.ledger
    ]
    if results.pgbench is not None:
        bench = results.pgbench[0]
        bars.append((f"pgbench tpcb-like, {bench.clients} clients", bench.per_second, "#718096"))
    target = None
    if results.pgbench is not None:
        target = (RATIO_TARGET * results.pgbench[0].per_second, "target: half of pgbench")
    return bar_chart("Balance transfers per second", bars, unit="/s", target=target)


def latency_chart(results: Results) -> str:
    bars: list[tuple[str, float, str]] = []
    for lat in results.latency:
        is_default = (lat.pin_hash_memory_kib, lat.pin_hash_time_cost) == DEFAULT_COST
        cost = "default argon2" if is_default else "cheap argon2"
        bars.append((f"{lat.backend}, {cost}: p50", lat.p50_ms, "#38a169"))
        bars.append((f"{lat.backend}, {cost}: p99", lat.p99_ms, "#dd6b20"))
    return bar_chart(
        "Request -> approve round trip (ms)",
        bars,
        unit="ms",
        target=(P99_TARGET_MS, "target p99 < 20 ms"),
    )
