"""The soak's clock (DENI_CLOCK_OFFSET_FILE): every process reading one file lives in the same
moved time; it follows the file forward, never back, and a bad file changes nothing."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from deni.adapters import clock as clock_module
from deni.adapters.clock import OffsetClock
from deni.bootstrap import bootstrap
from deni.config import Settings

DAY = timedelta(days=1)


@pytest.fixture(autouse=True)
def _reread_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock_module, "_REREAD_S", 0.0)


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    # A new modification time even within the file system's timestamp granularity.
    stamp = time.time_ns() + 1_000_000_000
    os.utime(path, ns=(stamp, stamp))


def _ahead(clock: OffsetClock) -> timedelta:
    return clock.now() - datetime.now(UTC)


def test_the_clock_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "offset"
    _write(path, "0\n")
    clock = OffsetClock(path)
    assert abs(_ahead(clock)) < timedelta(seconds=5)
    _write(path, "86400\n")
    assert DAY - timedelta(seconds=5) < _ahead(clock) < DAY + timedelta(seconds=5)
    _write(path, "172800.5\n")
    assert 2 * DAY - timedelta(seconds=5) < _ahead(clock) < 2 * DAY + timedelta(seconds=5)


@pytest.mark.parametrize("bad", ["", "a day", "-86400", "1e20"])
def test_a_bad_or_backward_file_changes_nothing(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "offset"
    _write(path, "86400")
    clock = OffsetClock(path)
    assert _ahead(clock) > DAY - timedelta(seconds=5)
    _write(path, bad)
    assert _ahead(clock) > DAY - timedelta(seconds=5)
    path.unlink()
    assert _ahead(clock) > DAY - timedelta(seconds=5)


def test_a_smaller_offset_never_moves_time_back(tmp_path: Path) -> None:
    path = tmp_path / "offset"
    _write(path, "172800")
    clock = OffsetClock(path)
    first = clock.now()
    _write(path, "86400")
    assert clock.now() >= first


def test_bootstrap_gives_every_use_case_the_moved_clock(tmp_path: Path) -> None:
    path = tmp_path / "offset"
    _write(path, "86400")
    settings = Settings(database_url="sqlite://", clock_offset_file=str(path))
    deni = bootstrap(settings)
    try:
        assert deni.clock.now() - datetime.now(UTC) > DAY - timedelta(seconds=5)
    finally:
        deni.close()
    plain = bootstrap(Settings(database_url="sqlite://"))
    try:
        assert abs(plain.clock.now() - datetime.now(UTC)) < timedelta(seconds=5)
    finally:
        plain.close()
