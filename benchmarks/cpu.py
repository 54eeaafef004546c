"""CPU time spent by the client side (this process and its children) and by the PostgreSQL
backends serving one database, so other work on the machine does not count."""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class CpuUse:
    client_s: float  # the bench process (all threads) and children it waited for
    postgres_s: float  # the backends connected to the bench's database


def client_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class CpuMeter:
    """Start it, poll it often (backends that exit take their counters with them), stop it.

    A PostgreSQL backend's command line names its database ("postgres: 15/main: postgres
    deni_bench_ledger 127.0.0.1(5432) idle"); only those backends count. Background processes
    (WAL writer, checkpointer) are shared with everything else and left out.
    """

    def __init__(self, database: str | None) -> None:
        self._database = database
        self._client_start = client_seconds()
        self._start = self._backends()
        self._last = dict(self._start)

    def poll(self) -> None:
        self._last.update(self._backends())

    def stop(self) -> CpuUse:
        self.poll()
        used = sum(cpu - self._start.get(pid, 0.0) for pid, cpu in self._last.items())
        return CpuUse(client_seconds() - self._client_start, used)

    def _backends(self) -> dict[int, float]:
        if self._database is None:
            return {}
        found: dict[int, float] = {}
        needle = f" {self._database} ".encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if needle not in (proc / "cmdline").read_bytes():
                    continue
                stat = (proc / "stat").read_text()
            except OSError:
                continue
            if not stat[stat.find("(") + 1 :].startswith("postgres"):
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            found[int(proc.name)] = (int(fields[11]) + int(fields[12])) / _TICKS
        return found


def load_average() -> float:
    return os.getloadavg()[0]
