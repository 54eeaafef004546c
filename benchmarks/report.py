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
from benchmarks.stats import percentile
from benchmarks.transfers import TransferRun
from benchmarks.ussd_load import JOURNEYS, PIN_HOP, READ, WRITE, LoadRun, UssdPlan, UssdResult
from deni.config import Settings

RATIO_TARGET = 0.5
P99_TARGET_MS = 20.0
DEFAULT_COST = (
    int(Settings.model_fields["pin_hash_memory_kib"].default),
    int(Settings.model_fields["pin_hash_time_cost"].default),
)
USSD_P99_TARGET_MS = 50.0
USSD_RATIO_TARGET = 0.5
USSD_DOC = "benchmarks-ussd.md"
CALLBACKS_DOC = "benchmarks-callbacks.md"
SYNC_DOC = "benchmarks-sync.md"


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
    pgbench: list[tuple[PgbenchRun, CpuUse]] = field(default_factory=list)  # by clients
    argon2_ms: dict[tuple[int, int], float] = field(default_factory=dict)
    latency: list[LatencyRun] = field(default_factory=list)
    ussd: list[UssdResult] = field(default_factory=list)
    ussd_plan: UssdPlan | None = None


def ledger_label(run: TransferRun) -> str:
    if run.processes > 1:
        per = run.clients // run.processes
        return f"{run.backend}, {run.processes} processes x {per} threads"
    threads = f"{run.backend}, {run.clients} thread{'s' if run.clients > 1 else ''}"
    return f"{threads}, group commit" if run.grouped else threads


def cost_label(run: LatencyRun) -> str:
    cost = (run.pin_hash_memory_kib, run.pin_hash_time_cost)
    tag = "production default" if cost == DEFAULT_COST else "NOT the default"
    return f"argon2id {cost[0]} KiB x {cost[1]} ({tag})"


def yardstick(results: Results, clients: int | None = None) -> PgbenchRun | None:
    """pgbench with `clients` clients if it ran so, else with the fewest (the yardstick)."""
    runs = sorted((run for run, _ in results.pgbench), key=lambda run: run.clients)
    same = [run for run in runs if run.clients == clients]
    return (same or runs or [None])[0]


def _ratio(run: TransferRun, results: Results) -> float | None:
    bench = yardstick(results, run.clients)
    if bench is None or run.backend != "PostgreSQL":
        return None
    return run.per_second / bench.per_second


def _ratio_note(run: TransferRun, results: Results) -> str:
    bench = yardstick(results, run.clients)
    assert bench is not None
    return f"of pgbench with {bench.clients} clients"


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
        target = (
            f"{ratio:.2f} {_ratio_note(run, results)}, {_verdict(ratio >= RATIO_TARGET)}"
            if ratio
            else ""
        )
        out.add_row(
            f"ledger transfers/s, {ledger_label(run)}",
            f"{run.per_second:,.0f}  (p50 {run.p50_ms:.1f} ms, p99 {run.p99_ms:.1f} ms)",
            target,
        )
    for bench, _ in results.pgbench:
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
    for row in ussd_rows(results):
        out.add_row(*row)
    return out


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def ussd_rows(results: Results) -> list[tuple[str, str, str]]:
    """(measurement, result, target) per USSD run, for the terminal and the summaries."""
    rows = []
    for u in results.ussd:
        lat, p99 = u.latency, u.latency.p(99, READ, WRITE)
        rows.append(
            (
                f"USSD hop latency, {u.backend}, {lat.clients:,} sessions pausing "
                f"{_think(lat)} (PIN hops apart)",
                f"p50 {_ms(lat.p(50, READ, WRITE))} ms, p99 {_ms(p99)} ms "
                f"at {lat.per_second:,.0f} hops/s",
                f"p99 < {USSD_P99_TARGET_MS:.0f} ms: "
                f"{_verdict(p99 is not None and p99 < USSD_P99_TARGET_MS)}",
            )
        )
        rows.append(
            (
                f"USSD capacity, {u.backend}, {u.capacity.clients} clients, no pauses",
                f"{u.capacity.per_second:,.0f} hops/s vs CON hello {u.hello.per_second:,.0f}/s",
                f"{u.ratio:.2f} of the ceiling: {_verdict(u.ratio >= USSD_RATIO_TARGET)} "
                f"(>= {USSD_RATIO_TARGET})",
            )
        )
        rows.append(
            (
                f"Reference, {u.backend}: a route making only a hop's session-store round trips",
                f"{u.store_io.per_second:,.0f}/s vs CON hello {u.hello.per_second:,.0f}/s",
                f"{u.store_io_ratio:.2f} of the ceiling (no target: what a hop's I/O alone allows)",
            )
        )
    return rows


def _think(run: LoadRun) -> str:
    return "-" if run.think_s is None else f"{run.think_s[0]:g}-{run.think_s[1]:g} s"


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
            f"{ratio:.2f} {_ratio_note(run, results)}: {_verdict(ratio >= RATIO_TARGET)} "
            f"(>= {RATIO_TARGET})"
            if ratio
            else ""
        )
        lines.append(
            f"| Ledger transfers/s, {ledger_label(run)} | {run.per_second:,.0f} | {target} |"
        )
    for bench, _ in results.pgbench:
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
    lines += [f"| {a} | {b} | {c} |" for a, b, c in ussd_rows(results)]
    lines += [
        "",
        f"USSD (`POST /ussd` under load, and its ceiling) is in [{USSD_DOC}]({USSD_DOC}), "
        "written by the same command (`--only ussd` reruns just that part). So are M-PESA "
        f"callback ingest, in [{CALLBACKS_DOC}]({CALLBACKS_DOC}) (`--only callbacks`), and "
        f"offline sync, in [{SYNC_DOC}]({SYNC_DOC}) (`--only sync`).",
    ]
    default_ms = results.argon2_ms.get(DEFAULT_COST)
    if default_ms is not None:
        lines += [
            "",
            f"**Read this with the latency figures:** approving a loan verifies the lender's PIN "
            f"with argon2id. At the production default cost ({DEFAULT_COST[0]} KiB, "
            f"{DEFAULT_COST[1]} pass, `DENI_PIN_HASH_MEMORY_KIB` / `DENI_PIN_HASH_TIME_COST`) "
            f"one verification took {default_ms:.1f} ms (median of 30) on this machine. "
            "Why that cost and not OWASP's password profile (measured below for comparison): "
            "a 4-digit PIN has 10,000 values, so no hash cost protects it; the pepper and the "
            "lockout do (docs/adr/0006-pin-hash-cost.md).",
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
        "The *group commit* rows hand each transfer to the ledger's entry committer "
        "(`ledger.entry_committer`, services/group_commit.py) instead: one writer thread "
        "writes every transfer waiting at that moment in one transaction (`ledger.post_each`: "
        "the accounts locked once, each transfer checked against the balances the ones before "
        "it left, one that would overdraw refused alone, all entries in one statement) and then "
        "answers each caller. Every client thread still waits for its own transfer to be "
        "committed before it sends the next, as an API request would. Their ratio is taken "
        "against pgbench run with as many clients.",
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
    for bench, used in results.pgbench:
        lines.append(
            f"| pgbench, {bench.clients} clients, {bench.threads} threads | "
            f"{bench.per_second:,.0f} | avg {bench.latency_avg_ms:.1f} | - | - | "
            f"{_per_txn_ms(used.client_s, bench.transactions)} | "
            f"{_per_txn_ms(used.postgres_s, bench.transactions)} |"
        )
    if results.pgbench:
        commands = "; ".join(f"`{bench.command}`" for bench, _ in results.pgbench)
        scale = results.pgbench[0][0].scale
        lines += ["", f"pgbench commands: {commands} (after `pgbench -i -s {scale}`)."]
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
        "`DENI_ENVIRONMENT=test` (production's settings, less its refusal of the fake SMS "
        "gateway), on a fresh database. Users register and log in through "
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
    for bench, _ in results.pgbench:
        bars.append((f"pgbench tpcb-like, {bench.clients} clients", bench.per_second, "#718096"))
    target = None
    bench = yardstick(results)
    if bench is not None:
        target = (RATIO_TARGET * bench.per_second, "target: half of pgbench")
    return bar_chart("Balance transfers per second", bars, unit="/s", target=target)


def latency_chart(results: Results) -> str:
    bars: list[tuple[str, float, str]] = []
    for lat in results.latency:
        is_default = (lat.pin_hash_memory_kib, lat.pin_hash_time_cost) == DEFAULT_COST
        cost = "default argon2" if is_default else "other argon2"
        bars.append((f"{lat.backend}, {cost}: p50", lat.p50_ms, "#38a169"))
        bars.append((f"{lat.backend}, {cost}: p99", lat.p99_ms, "#dd6b20"))
    return bar_chart(
        "Request -> approve round trip (ms)",
        bars,
        unit="ms",
        target=(P99_TARGET_MS, "target p99 < 20 ms"),
    )


def ussd_markdown(results: Results) -> str:
    m, plan = results.machine, results.ussd_plan
    assert plan is not None
    assert results.ussd
    first = results.ussd[0]
    lines = [
        "# USSD benchmarks",
        "",
        "<!-- Written by benchmarks/run.py (`make bench`, or `--only ussd`); rerun it rather "
        "than editing. -->",
        "",
        f"Run on {results.started_at:%Y-%m-%d %H:%M} UTC, commit `{results.commit}`"
        f"{' with uncommitted changes under src/' if results.dirty else ''}, with "
        f"`{results.command}`. Load average (1 min) before: {results.load_before:.2f}, after: "
        f"{results.load_after:.2f}"
        + (
            " (other work was running: the figures are lower than a quiet machine gives)."
            if results.load_before > 0.5
            else "."
        ),
        "",
        "## Summary",
        "",
        "| Measurement | Result | Target |",
        "|---|---:|---|",
    ]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in ussd_rows(results)]
    lines += [
        "",
        "![USSD](benchmarks-ussd.svg)",
        "",
        "## How it runs",
        "",
        f"One uvicorn server ({first.workers} worker process{'es' if first.workers > 1 else ''},"
        f" `--no-access-log`, uvicorn's default HTTP/1.1 stack) serves "
        "`benchmarks.ussd_app:app`: Deni's production app (`create_app(bootstrap())`, settings "
        "from `DENI_*` with `DENI_ENVIRONMENT=test`, the production argon2id cost) plus a "
        "constant `POST /ussd-hello` route answering `CON hello`, which exists only in the "
        "bench, and a `POST /ussd-store-io` route that reads the same form, hands it to the "
        "same hop threads and makes the same session-store calls as a hop (one read of three "
        "keys, one write of two), then answers `CON hello`: a hop without its database reads "
        "and screens (both plain Starlette routes placed first, as the USSD routes are). The "
        "server "
        "runs as docs/deploy.md runs an API process: SMS delivery and the loan sweep are left "
        "to `deni worker` (not running here), so the server's CPU is the hops' own; the "
        "per-phone limit of hops a minute (`DENI_USSD_HOPS_PER_MINUTE_MAX`, 30, for people) "
        "is lifted, since the bench's users are scripts. "
        f"USSD sessions are kept in `{first.store}` (`DENI_SESSION_STORE`). Each "
        f"database is fresh and holds {first.users:,} users with funded wallets; user *i* lent "
        "KES 1,000 to user *i+1* (an active loan) and asked user *i+2* for a loan (a request "
        "waiting), written through the services with one throwaway PIN hash, then given one "
        "production-cost hash (not timed).",
        "",
        "The load generator is one asyncio process on the same machine, speaking raw HTTP/1.1 "
        "over keep-alive connections (one request in flight per connection), posting the form "
        "Africa's Talking posts (`sessionId`, `serviceCode`, `phoneNumber`, `networkCode`, "
        "`text` with every entry so far joined by `*`). It checks every reply: `CON` or `END` "
        "as the journey expects, at most 182 characters. A hop's time runs from asking for a "
        "connection to the last byte of the reply. Every phone is in at most one session at a "
        "time.",
        "",
        f"- **Latency under real load:** {plan.sessions:,} users, each dialling journey after "
        f"journey, pausing {plan.think_s[0]:g}-{plan.think_s[1]:g} s (uniform) before every "
        f"hop and between journeys, over a pool of {plan.connections} connections. "
        f"{plan.warmup_s:g} s of warm-up, then {plan.seconds:g} s measured.",
        f"- **Capacity:** {plan.capacity_clients} users with no pauses at all, one connection "
        f"each, {plan.capacity_warmup_s:g} s warm-up then {plan.capacity_seconds:g} s "
        "measured: the most hops per second the server gives this mix.",
        "- **Ceiling:** the same clients posting the same form to `/ussd-hello` on the same "
        "server, straight after: what uvicorn, FastAPI and Deni's middleware cost with no work.",
        "- **Reference:** the same clients posting the same form to `/ussd-store-io`, straight "
        "after that: how far the ratio could go if a hop's own work cost nothing.",
        "",
        f"Client and server share the machine's {m.cores} cores (and PostgreSQL, and Redis, "
        "and whatever else runs), so the CPU each side used is measured too: *client* is the "
        "load generator's own CPU time, *server* the uvicorn process(es) (PostgreSQL and Redis "
        "not included).",
        "",
        "Journeys (a user hangs up after the last hop unless the reply was END; a journey "
        "dropped on a screen other than a menu is kept for resume, so the next dial within "
        "2 minutes is usually answered *Continue where you left off?*, and the user answers 2, "
        "one more hop):",
        "",
        "| Journey | Share | Entries after the dial |",
        "|---|---:|---|",
    ]
    total = sum(j.weight for j in JOURNEYS)
    for journey in JOURNEYS:
        entries = " ".join(f"`{h.entry}`" for h in journey.hops[1:]) or "-"
        lines.append(f"| {journey.name} | {100 * journey.weight / total:.0f}% | {entries} |")
    lines += [
        "",
        f"Hop kinds: *{READ}* shows data (menus, balance, statement, lists, details, the quote); "
        f"*{WRITE}* is an END that records an M-PESA request and its audit row in one "
        f"transaction; *{PIN_HOP}* confirms a loan request with the PIN (argon2id at the "
        "production cost, by design tens of milliseconds) and writes the request, its "
        "notification and audit. PIN hops are reported apart; the p99 target is read on the "
        "others. Every hop also reads and writes the session store.",
    ]
    for u in results.ussd:
        lines += ["", f"## {u.backend}", ""]
        lines += [
            "| Phase | Hops | Hops/s | Kind | p50 ms | p99 ms | max ms | Client CPU ms/hop "
            "| Server CPU ms/hop | Bad replies | Failures |",
            "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        phases = (
            (f"latency, {u.latency.clients:,} sessions pausing {_think(u.latency)}", u.latency),
            (f"capacity, {u.capacity.clients} clients", u.capacity),
            (f"CON hello, {u.hello.clients} clients", u.hello),
            (f"session store I/O only, {u.store_io.clients} clients", u.store_io),
        )
        for title, run in phases:
            kinds = [k for k in (READ, WRITE, PIN_HOP) if run.samples_ms.get(k)]
            first_row = True
            for kind in [*kinds, "all"]:
                values = run.hops() if kind == "all" else run.hops(kind)
                if not values or (kind == "all" and len(kinds) == 1):
                    continue
                head = (
                    f"| {title} | {run.count:,} | {run.per_second:,.0f} " if first_row else "| | | "
                )
                tail = (
                    f"| {_ms(run.client_cpu_ms_per_hop())} | {_ms(run.server_cpu_ms_per_hop())} "
                    f"| {run.unexpected} | {run.failures} |"
                    if first_row
                    else "| | | | |"
                )
                lines.append(
                    f"{head}| {kind} ({len(values):,}) | {_ms(percentile(values, 50))} "
                    f"| {_ms(percentile(values, 99))} | {_ms(max(values))} {tail}"
                )
                first_row = False
        lines += [
            "",
            f"Latency phase: {u.latency.journeys:,} journeys began and ended in the window, "
            f"{u.latency.resumes:,} dials were answered with the resume prompt. Capacity: "
            f"{u.ratio:.2f} of the CON hello ceiling; the store-I/O route, "
            f"{u.store_io_ratio:.2f}. Client CPU over the measured window: "
            f"{_share(u.capacity)} (capacity), {_share(u.hello)} (hello), "
            f"{_share(u.store_io)} (store I/O); server: {_server_share(u.capacity)}, "
            f"{_server_share(u.hello)} and {_server_share(u.store_io)}. Setup (users, loans) "
            f"took {u.seed_s:.0f} s.",
        ]
        for run in (u.latency, u.capacity, u.hello, u.store_io):
            for example in run.examples:
                lines.append(f"- unexpected reply, {run.label}: {example}")
    lines += [
        "",
        "## Machine",
        "",
        f"- Cores (`nproc`): {m.cores}",
        f"- Memory: {m.memory}",
        f"- CPU: {m.cpu_model} ({m.kernel})",
        f"- PostgreSQL: {m.postgres}",
        f"- Python {m.python}, SQLite {m.sqlite}",
        "",
    ]
    return "\n".join(lines)


def _share(run: LoadRun) -> str:
    return f"{run.client_cpu_s / run.seconds:.0%} of one core"


def _server_share(run: LoadRun) -> str:
    return f"{run.server_cpu_s / run.seconds:.0%} of one core"


def ussd_chart(results: Results) -> str:
    bars: list[tuple[str, float, str]] = []
    for u in results.ussd:
        bars.append((f"{u.backend}: CON hello ceiling", u.hello.per_second, "#718096"))
        bars.append(
            (f"{u.backend}: session store I/O only", u.store_io.per_second, "#a0aec0"),
        )
        bars.append((f"{u.backend}: USSD journeys, no pauses", u.capacity.per_second, "#2b6cb0"))
        bars.append(
            (
                f"{u.backend}: offered, {u.latency.clients:,} pausing users",
                u.latency.per_second,
                "#38a169",
            )
        )
    return bar_chart("USSD hops per second (one server)", bars, unit="/s")
