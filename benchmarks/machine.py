"""What the figures ran on: cores, memory, CPU model, PostgreSQL and Python versions."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.databases import psql


@dataclass(frozen=True, slots=True)
class Machine:
    cores: int
    memory: str
    cpu_model: str
    kernel: str
    postgres: str
    postgres_settings: str
    python: str
    sqlite: str


def describe() -> Machine:
    import sqlite3

    return Machine(
        cores=os.cpu_count() or 0,
        memory=_memory(),
        cpu_model=_cpu_model(),
        kernel=f"{platform.system()} {platform.release()}",
        postgres=psql("SELECT version()"),
        postgres_settings=psql(
            "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name)"
            " FROM pg_settings WHERE name IN ('shared_buffers', 'synchronous_commit', 'fsync',"
            " 'max_connections', 'wal_level')"
        ),
        python=sys.version.split()[0],
        sqlite=sqlite3.sqlite_version,
    )


def _memory() -> str:
    try:
        done = subprocess.run(
            ["free", "-h"],  # noqa: S607 (from PATH, like psql)
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    for line in done.stdout.splitlines():
        if line.startswith("Mem:"):
            return f"{line.split()[1]} total (free -h)"
    return "unknown"


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"
