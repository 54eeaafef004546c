"""`make soak`: the whole system under load and faults, ending in the proof that no shilling
was lost or paid twice (docs/benchmarks-soak.md).

    SOAK_SECONDS=600 SOAK_SEED=7 make soak

Knobs (environment): SOAK_SECONDS (load time, default 600), SOAK_SEED (default: random, and
printed), SOAK_SETTLE_S (bound on the settle, default 240), SOAK_PORT_BASE (default 18790:
Redis there, the sandbox +1, the balancer +2, the APIs +3 and +4), SOAK_WORKERS (1-2, default
2), SOAK_OUT (where the JSON and the chart go, default var/soak). A failing run prints its seed;
the same seed gives the same people and the same fault schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from benchmarks.soak import doc, figures, population, proof
from benchmarks.soak import faults as faults_mod
from benchmarks.soak.topology import POSTGRES_URL, Ports, Topology, drop_database
from deni.adapters.db.engine import make_engine
from deni.config import Settings

REPO = Path(__file__).resolve().parents[2]
SECONDS_MAX = 24 * 3600
SETTLE_S_DEFAULT = 240.0
console = Console()


@dataclass(slots=True)
class SoakConfig:
    seconds: float = 600.0
    seed: int = 0
    settle_s: float = SETTLE_S_DEFAULT
    port_base: int = 18790
    workers: int = 2
    out_dir: Path = REPO / "var" / "soak"
    plan: population.PopulationPlan = field(default_factory=population.PopulationPlan)
    # How soon Deni questions M-PESA's silence (STK Query, Transaction Status), in seconds.
    question_after_s: float = 20.0
    progress: bool = True
    # Any database on the PostgreSQL server to use; the soak makes its own beside it.
    postgres_url: str = POSTGRES_URL
    keep_database: bool = True
    # M-PESA faults (faults.SANDBOX_FAULTS names) not to inject.
    faults_left_out: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        assert 10 <= self.seconds <= SECONDS_MAX
        assert 10 <= self.settle_s <= 3_600
        assert 1 <= self.workers <= 2
        assert 1024 < self.port_base < 65_530


@dataclass(slots=True)
class SoakResult:
    config: SoakConfig
    proof: proof.Proof
    faults: list[faults_mod.Fault]
    recorder: population.Recorder
    commands: dict[str, dict[str, Any]]
    report: dict[str, Any] = field(default_factory=dict)
    phases_s: dict[str, float] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.proof.ok and all(c["ok"] for c in self.commands.values())


def config_from_env() -> SoakConfig:
    seed_text = os.environ.get("SOAK_SEED", "")
    seed = int(seed_text) if seed_text else random.SystemRandom().randrange(1, 10**6)
    return SoakConfig(
        seconds=float(os.environ.get("SOAK_SECONDS", "600")),
        seed=seed,
        settle_s=float(os.environ.get("SOAK_SETTLE_S", str(SETTLE_S_DEFAULT))),
        port_base=int(os.environ.get("SOAK_PORT_BASE", "18790")),
        workers=int(os.environ.get("SOAK_WORKERS", "2")),
        out_dir=Path(os.environ.get("SOAK_OUT", str(REPO / "var" / "soak"))),
        postgres_url=os.environ.get("SOAK_POSTGRES_URL", POSTGRES_URL),
    )


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_soak(config: SoakConfig) -> SoakResult:
    ports = Ports(config.port_base)
    run_dir = config.out_dir / f"run-{config.seed}"
    topology = Topology(ports, run_dir, workers=config.workers, postgres_url=config.postgres_url)
    say = console.print
    say(
        f"soak: seed {config.seed}, {config.seconds:.0f} s of load,"
        f" settle within {config.settle_s:.0f} s"
    )
    marks = {"begin": time.monotonic()}
    context: dict[str, Any] = {
        "started_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "load_before": os.getloadavg()[0],
    }
    try:
        topology.prepare()
        question = str(config.question_after_s)
        topology.env.update(
            {
                "DENI_MPESA_STK_QUERY_AFTER_S": question,
                "DENI_MPESA_STATUS_AFTER_S": question,
                "DENI_MPESA_CHECK_BACKOFF_S": question,
            }
        )
        members = population.people(config.seed, config.plan)
        topology.start_apis()
        with _environment(topology.env):  # while the APIs start
            population.seed_members(Settings(), members)
        topology.finish_start()
        say(f"soak: up (database {topology.database.rsplit('/', 1)[-1]}, logs {run_dir})")
        schedule = faults_mod.schedule(
            config.seed, config.seconds, config.workers, leave_out=config.faults_left_out
        )
        marks["up"] = time.monotonic()
        recorder = asyncio.run(_load(config, topology, members, schedule))
        marks["loaded"] = time.monotonic()
        for name, managed in topology.processes.items():
            if not managed.alive():  # a restart that failed: the settle needs everyone
                say(f"soak: {name} was down at the end; starting it again")
                topology.restart(name)
        engine = make_engine(topology.database, pool_size=2)
        try:
            result_proof = proof.Proof()
            # A day passes once more before the settle: the Pull API reads paybill payments
            # up to 10 minutes old (Deni's clock), so one whose confirmation M-PESA dropped
            # near the end is found by the next pull, as it would be 10 minutes later.
            offset_s = topology.advance_clock(faults_mod.DAY_S)
            with httpx.Client(base_url=topology.sandbox_url, timeout=30.0) as sandbox:
                sandbox.post("/sandbox/clock/advance", json={"seconds": faults_mod.DAY_S})
            settled, settle_s, left = proof.settle(
                engine,
                topology.sandbox_url,
                timeout_s=config.settle_s,
                pulled_since=datetime.now(UTC) + timedelta(seconds=offset_s),
            )
            result_proof.settled, result_proof.settle_s = settled, settle_s
            if not settled:
                result_proof.add("settled in time", False, f"still moving: {left}")
            say(f"soak: settled={settled} in {settle_s:.0f} s; proving")
            proof.prove(engine, topology.sandbox_url, result_proof)
            marks["settled"] = time.monotonic()
            commands = _deni_checks(topology, engine)
            proof.balance_reports(engine, result_proof)
        finally:
            engine.dispose()
        _keep_sandbox_records(topology)
        marks["checked"] = time.monotonic()
        result = SoakResult(config, result_proof, schedule, recorder, commands)
        context["load_after"] = os.getloadavg()[0]
        result.context = context
        names = list(marks)
        result.phases_s = {
            f"{a}->{b}": round(marks[b] - marks[a], 1) for a, b in itertools.pairwise(names)
        }
        result.report = figures.report(result_summary(result), run_dir)
        return result
    finally:
        topology.stop_all()
        if not config.keep_database and topology.database:
            drop_database(topology.database)


async def _load(
    config: SoakConfig,
    topology: Topology,
    members: list[population.Member],
    schedule: list[faults_mod.Fault],
) -> population.Recorder:
    recorder = population.Recorder()
    world = population.new_world(
        front_url=topology.front_url,
        sandbox_url=topology.sandbox_url,
        ussd_token=topology.env["DENI_USSD_TOKEN"],
        members=members,
        seconds=config.seconds,
        recorder=recorder,
        run_dir=topology.run_dir,
        plan=config.plan,
    )
    injector = asyncio.create_task(faults_mod.inject(topology, schedule, recorder.started))
    crowd = asyncio.create_task(population.run_population(world, config.seed))
    try:
        if config.progress:
            await _progress(config, recorder, schedule, crowd)
        await crowd
        injector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await injector
    finally:
        world.stop_at = 0.0  # interrupted or done: every actor, threads too, stops
        await world.http.aclose()
        await world.sandbox.aclose()
    if topology.balancer is not None:
        recorder.count("balancer_refused", topology.balancer.balancer.refused)
    return recorder


async def _progress(
    config: SoakConfig,
    recorder: population.Recorder,
    schedule: list[faults_mod.Fault],
    crowd: asyncio.Task[None],
) -> None:
    columns = (
        TextColumn("[bold]soak[/bold]"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("load", total=config.seconds, status="")
        while not crowd.done():
            now = recorder.now_s()
            done = [f for f in schedule if f.injected_at_s is not None]
            errors = sum(1 for s in recorder.samples if s.status == 0 or s.status >= 500)
            status = (
                f"{len(recorder.samples)} requests, {errors} 5xx/broken,"
                f" faults {len(done)}/{len(schedule)}"
                + (f" (last: {done[-1].name})" if done else "")
            )
            bar.update(task, completed=min(now, config.seconds), status=status)
            await asyncio.sleep(1.0)


def _deni_checks(topology: Topology, engine: Any) -> dict[str, dict[str, Any]]:
    """Deni's own checks, as an operator runs them. `deni reconcile` asks M-PESA for the
    balance, whose answer arrives as a callback: wait (bounded) until it is applied."""
    commands = {
        "deni ledger check": ("ledger", "check"),
        "deni audit verify": ("audit", "verify"),
        "deni reconcile": ("reconcile",),
    }
    since = datetime.now(UTC) + timedelta(seconds=topology.clock_offset_s()) - timedelta(seconds=1)
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        done = {name: pool.submit(topology.deni_command, *argv) for name, argv in commands.items()}
    out: dict[str, dict[str, Any]] = {}
    for name, future in done.items():
        finished = future.result()
        text_out = (finished.stdout + finished.stderr)[-6_000:]
        out[name] = {
            "ok": finished.returncode == 0,
            "exit": finished.returncode,
            "output": text_out,
        }
    answered = _wait_balance_report(topology, engine, since)
    out["deni reconcile"]["ok"] = out["deni reconcile"]["ok"] and answered
    if not answered:
        out["deni reconcile"]["output"] += "\n(the balance report was not answered in time)"
    return out


def _wait_balance_report(
    topology: Topology, engine: Any, since: datetime, timeout_s: float = 60.0
) -> bool:
    """The report `deni reconcile` asked for (from `since`, Deni's clock) answered and applied.
    One asked during the load whose answer a fault lost stays `requested`; it is not this."""
    from sqlalchemy import text

    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=topology.sandbox_url, timeout=30.0) as sandbox:
        while time.monotonic() < deadline:
            sandbox.post("/sandbox/callbacks/flush", json={"timeout_s": 10})
            with engine.connect() as connection:
                asked, waiting = connection.execute(
                    text(
                        "SELECT count(*), count(*) FILTER (WHERE state = 'requested')"
                        " FROM balance_reports WHERE requested_at >= :since"
                    ),
                    {"since": since},
                ).one()
            if asked and not waiting:
                return True
            time.sleep(1.0)
    return False


def _keep_sandbox_records(topology: Topology) -> None:
    """M-PESA's side of the story, kept beside the run's logs for whoever reads a failure."""
    with httpx.Client(base_url=topology.sandbox_url, timeout=30.0) as sandbox:
        for name in ("transactions", "callbacks", "balances"):
            body = sandbox.get(f"/sandbox/{name}").json()
            (topology.run_dir / f"sandbox-{name}.json").write_text(json.dumps(body, indent=1))


def error_events(run_dir: Path) -> dict[str, dict[str, int]]:
    """Error-level events in each process's JSON log lines: what an operator's alerts see."""
    out: dict[str, dict[str, int]] = {}
    for log_path in sorted(run_dir.glob("*.log")):
        counts: dict[str, int] = {}
        for line in log_path.read_text(errors="replace").splitlines():
            if '"level": "error"' not in line:
                continue
            try:
                event = str(json.loads(line).get("event", "?"))[:60]
            except ValueError:
                continue
            counts[event] = counts.get(event, 0) + 1
        if counts:
            out[log_path.stem] = counts
    return out


def result_summary(result: SoakResult) -> dict[str, Any]:
    return {
        "seed": result.config.seed,
        "seconds": result.config.seconds,
        "workers": result.config.workers,
        "population": {
            "api_members": result.config.plan.api_members,
            "defaulters": result.config.plan.defaulters,
            "ussd_members": result.config.plan.ussd_members,
            "ussd_newcomers": result.config.plan.ussd_newcomers,
            "sync_members": result.config.plan.sync_members,
            "ussd_think_s": list(result.config.plan.ussd_think_s),
        },
        "ok": result.ok,
        "phases_s": result.phases_s,
        "context": result.context,
        "proof": result.proof.as_json(),
        "deni_commands": {
            k: {"ok": v["ok"], "exit": v["exit"]} for k, v in result.commands.items()
        },
        "faults": [f.as_json() for f in result.faults],
        "events": dict(sorted(result.recorder.events.items())),
        "error_events": error_events(result.config.out_dir / f"run-{result.config.seed}"),
        "channels": figures.channels(result.recorder, result.faults),
    }


def _commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 (git from PATH)
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def main() -> int:
    config = config_from_env()
    result = run_soak(config)
    if os.environ.get("SOAK_DOCS") == "1":  # the page and chart in docs/, from this run
        doc.write(result.report, REPO / "docs", config.out_dir / f"run-{config.seed}")
    console.print_json(json.dumps({k: v for k, v in result.report.items() if k != "channels"}))
    for check in result.proof.checks:
        mark = "[green]ok[/green]" if check.ok else "[red]FAILED[/red]"
        console.print(f"  {mark} {check.name}: {check.detail}")
        for line in check.evidence:
            console.print(f"      {line}")
    for name, outcome in result.commands.items():
        mark = "[green]ok[/green]" if outcome["ok"] else "[red]FAILED[/red]"
        console.print(f"  {mark} {name} (exit {outcome['exit']})")
        if not outcome["ok"]:
            console.print(outcome["output"][-2_000:])
    console.print(
        f"  parked payouts (waiting for a person, money held): {result.proof.parked_payouts}"
    )
    if not result.ok:
        console.print(
            f"[red]soak FAILED[/red]; replay with SOAK_SEED={config.seed}"
            f" SOAK_SECONDS={config.seconds:.0f} make soak"
        )
        return 1
    console.print(f"[green]soak passed[/green] (seed {config.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
