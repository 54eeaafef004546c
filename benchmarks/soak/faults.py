"""The fault schedule, drawn from the seed, and the injector that runs it.

Process faults: kill -9 of an API process or a worker (started again by the soak after a
pause), a restart of the soak's own Redis, every PostgreSQL backend of the soak's own database
terminated. M-PESA faults, queued in the sandbox (its admin API, src/deni/sandbox/faults.py):
callbacks delayed, duplicated, reordered, dropped; B2C results that never come (or come as a
queue timeout), answers lost after the work was done; STK pushes the customer cancels.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from benchmarks.soak.topology import Topology, terminate_backends

# (name, weight) of the M-PESA faults; each becomes one POST /sandbox/faults.
SANDBOX_FAULTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("stk callback delayed", {"kind": "stk", "action": "delay", "delay_s": 8.0, "times": 3}),
    ("stk callback duplicated", {"kind": "stk", "action": "duplicate", "copies": 3, "times": 3}),
    ("stk callbacks reordered", {"kind": "stk", "action": "reorder", "times": 3}),
    ("stk callback dropped", {"kind": "stk", "action": "drop", "times": 2}),
    (
        "stk cancelled by the customer",
        {"kind": "stk", "action": "result_code", "result_code": 1032, "times": 2},
    ),
    (
        "stk answer lost after the push",
        {"kind": "stk", "action": "http_500", "processed": True, "times": 1},
    ),
    ("b2c result dropped", {"kind": "b2c", "action": "drop", "times": 2}),
    ("b2c result duplicated", {"kind": "b2c", "action": "duplicate", "copies": 2, "times": 2}),
    ("b2c results reordered", {"kind": "b2c", "action": "reorder", "times": 2}),
    ("b2c timeout, no result", {"kind": "b2c", "action": "timeout", "times": 1}),
    (
        "b2c timeout, queue timeout",
        {"kind": "b2c", "action": "timeout", "queue_timeout": True, "times": 1},
    ),
    (
        "b2c answer lost after the send",
        {"kind": "b2c", "action": "http_500", "processed": True, "times": 1},
    ),
    ("b2c refused 500", {"kind": "b2c", "action": "http_500", "times": 2}),
    ("c2b confirmation delayed", {"kind": "c2b", "action": "delay", "delay_s": 6.0, "times": 2}),
    (
        "c2b confirmation duplicated",
        {"kind": "c2b", "action": "duplicate", "copies": 2, "times": 2},
    ),
    ("c2b confirmation dropped", {"kind": "c2b", "action": "drop", "times": 1}),
)
PROCESS_FAULTS = ("kill api", "kill worker", "restart redis", "terminate postgres backends")
# Time passing: every Deni process and the sandbox a day later at once (DENI_CLOCK_OFFSET_FILE),
# so loans fall due, reminders go out, penalties accrue and auto-repay runs within the soak.
CLOCK_STEP = "a day passes"
DAY_S = 86_400
CLOCK_STEPS_PER_S = 1 / 45  # one day every 45 s of soak, at least 3
KILLED_FOR_S = (1.0, 4.0)
STARTS_FROM = 0.08  # share of the run before the first fault
ENDS_AT = 0.85  # and after the last: the run's end is calm, then the settle


@dataclass(slots=True)
class Fault:
    at_s: float
    name: str
    target: str = ""
    spec: dict[str, Any] = field(default_factory=dict)
    down_s: float = 0.0
    # Filled in as it runs.
    injected_at_s: float | None = None
    healthy_after_s: float | None = None
    detail: str = ""

    @property
    def is_process(self) -> bool:
        return self.name in PROCESS_FAULTS

    def as_json(self) -> dict[str, Any]:
        return {
            "at_s": round(self.at_s, 2),
            "name": self.name,
            "target": self.target,
            "spec": self.spec,
            "down_s": round(self.down_s, 2),
            "injected_at_s": None if self.injected_at_s is None else round(self.injected_at_s, 2),
            "healthy_after_s": None
            if self.healthy_after_s is None
            else round(self.healthy_after_s, 2),
            "detail": self.detail,
        }


def schedule(
    seed: int, seconds: float, workers: int, *, leave_out: frozenset[str] = frozenset()
) -> list[Fault]:
    """Every process fault at least once, then more of them and M-PESA faults (but those
    named in `leave_out`), spread over the middle of the run; the same seed, length and
    `leave_out` give the same list."""
    rng = random.Random(f"{seed}:faults")  # noqa: S311 (a seeded load, not secrets)
    start, end = seconds * STARTS_FROM, seconds * ENDS_AT
    process_count = max(len(PROCESS_FAULTS), int(seconds / 60))
    names = list(PROCESS_FAULTS) + [rng.choice(PROCESS_FAULTS) for _ in range(process_count - 4)]
    rng.shuffle(names)
    slot = (end - start) / len(names)
    faults: list[Fault] = []
    for i, name in enumerate(names):
        at = start + slot * i + rng.uniform(0, slot * 0.5)
        target = ""
        if name == "kill api":
            target = rng.choice(["api-1", "api-2"])
        elif name == "kill worker":
            target = f"worker-{rng.randint(1, workers)}"
        down = rng.uniform(*KILLED_FOR_S) if name.startswith("kill") else 0.0
        faults.append(Fault(at, name, target, down_s=down))
    sandbox_count = max(len(SANDBOX_FAULTS), int(seconds / 10))
    kinds = [(name, spec) for name, spec in SANDBOX_FAULTS if name not in leave_out]
    sandbox_names = [kinds[i % len(kinds)] for i in range(sandbox_count)]
    rng.shuffle(sandbox_names)
    for name, spec in sandbox_names:
        faults.append(Fault(rng.uniform(start, end), name, "sandbox", dict(spec)))
    days = max(3, int(seconds * CLOCK_STEPS_PER_S))
    for i in range(days):
        at = start + (end - start) * (i + 0.5) / days
        faults.append(Fault(at, CLOCK_STEP, "clock", {"seconds": DAY_S}))
    return sorted(faults, key=lambda f: f.at_s)


async def inject(topology: Topology, faults: list[Fault], started: float) -> None:
    """Run the schedule; each fault is stamped with when it happened and how long the process
    took to be healthy again."""
    async with httpx.AsyncClient(base_url=topology.sandbox_url, timeout=10.0) as sandbox:
        running: list[asyncio.Task[None]] = []
        for fault in faults:
            wait_s = started + fault.at_s - time.monotonic()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            # A process fault runs on its own (a restart takes seconds): the next one is on time.
            running.append(asyncio.create_task(_stamped(topology, sandbox, fault, started)))
        await asyncio.gather(*running)


async def _stamped(
    topology: Topology, sandbox: httpx.AsyncClient, fault: Fault, started: float
) -> None:
    fault.injected_at_s = time.monotonic() - started
    try:
        await _one(topology, sandbox, fault)
    except Exception as error:
        fault.detail = f"injection failed: {type(error).__name__}: {error}"[:300]


async def _one(topology: Topology, sandbox: httpx.AsyncClient, fault: Fault) -> None:
    if fault.name == CLOCK_STEP:
        offset_s = topology.advance_clock(fault.spec["seconds"])
        response = await sandbox.post("/sandbox/clock/advance", json=fault.spec)
        response.raise_for_status()
        fault.detail = f"Deni and M-PESA now {offset_s / DAY_S:.0f} day(s) ahead"
        return
    if fault.name == "terminate postgres backends":
        ended = await asyncio.to_thread(terminate_backends, topology.database)
        fault.detail = f"{ended} backends of {topology.database.rsplit('/', 1)[-1]} ended"
        return
    if fault.name == "restart redis":
        redis = topology.processes["redis"]
        await asyncio.to_thread(redis.kill9)
        fault.healthy_after_s = await asyncio.to_thread(topology.restart, "redis")
        fault.detail = "kill -9, started again at once (empty: sessions lost)"
        return
    if fault.name.startswith("kill"):
        process = topology.processes[fault.target]
        pid = process.pid
        await asyncio.to_thread(process.kill9)
        await asyncio.sleep(fault.down_s)
        restart_s = await asyncio.to_thread(topology.restart, fault.target)
        fault.healthy_after_s = fault.down_s + restart_s
        fault.detail = (
            f"pid {pid} killed -9; pid {process.pid} healthy {restart_s:.1f} s after start"
        )
        return
    response = await sandbox.post("/sandbox/faults", json=fault.spec)
    response.raise_for_status()
    fault.detail = f"sandbox fault {response.json()['id']} queued"
