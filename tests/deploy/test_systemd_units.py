"""The systemd units of deploy/systemd/ as `systemd-analyze` reads them: no line ignored, and
sandboxed (`systemd-analyze security` scores what a compromised process could still do).

`verify` wants each ExecStart program to exist: it runs on copies whose /opt/deni/venv/bin/deni
is a stub in a temporary folder. The `deni` user need not exist for either check. Without
systemd-analyze the tests skip, and fail under CI, which has it (Debian's systemd package).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
DENI = "/opt/deni/venv/bin/deni"
# What `verify` is asked to load: the worker, and two instances of the API's template.
TO_VERIFY = ("deni-worker.service", "deni-api@8001.service", "deni-api@8002.service")
# systemd-analyze security's scale: 0 (locked down) to 10 (nothing); "OK" is below 4.5.
EXPOSURE_MAX = 2.0
SANDBOXING = {
    "User": "deni",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "SystemCallFilter": "@system-service",
    "SystemCallArchitectures": "native",
}


@pytest.fixture(scope="module")
def analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        reason = "no systemd-analyze (apt-get install systemd): deploy/systemd is not checked"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def _copies(folder: Path) -> Path:
    """The units with their program replaced by an executable stub of the same name."""
    stub = folder / "bin" / "deni"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    for unit in UNITS.glob("*.service"):
        (folder / unit.name).write_text(unit.read_text().replace(DENI, str(stub)))
    return folder


def _verify(analyze: str, folder: Path, *units: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (systemd-analyze, our own files)
        [analyze, "verify", "--man=no", *(f"./{unit}" for unit in units)],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_systemd_analyze_verify_finds_nothing_to_say(analyze: str, tmp_path: Path) -> None:
    """Exit 0 alone is not enough: an unknown key or a bad value is a warning, the line
    ignored, the unit started without it. Anything printed fails."""
    result = _verify(analyze, _copies(tmp_path), *TO_VERIFY)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_a_line_systemd_would_ignore_is_caught(analyze: str, tmp_path: Path) -> None:
    folder = _copies(tmp_path)
    worker = folder / "deni-worker.service"
    worker.write_text(worker.read_text().replace("ProtectSystem=strict", "ProtectSystm=strict"))
    result = _verify(analyze, folder, "deni-worker.service")
    assert "Unknown key 'ProtectSystm'" in result.stdout + result.stderr


def _service_settings(unit: Path) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    section = ""
    for line in unit.read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


@pytest.mark.parametrize("unit", ["deni-api@.service", "deni-worker.service"])
def test_units_are_sandboxed_and_read_their_secrets_from_a_file(unit: str) -> None:
    settings = _service_settings(UNITS / unit)
    for key, value in SANDBOXING.items():
        assert settings.get(key) == [value], (unit, key)
    assert "/etc/deni/secrets.env" in settings["EnvironmentFile"]
    assert "ReadWritePaths" not in settings  # only StateDirectory (/var/lib/deni) is writable
    assert settings["ExecStart"][0].startswith(DENI)


@pytest.mark.parametrize("unit", ["deni-api@8001.service", "deni-worker.service"])
def test_systemd_scores_the_units_exposure_low(analyze: str, tmp_path: Path, unit: str) -> None:
    result = subprocess.run(  # noqa: S603 (systemd-analyze, our own files)
        [analyze, "security", "--offline=true", "--no-pager", f"./{unit}"],
        cwd=_copies(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= EXPOSURE_MAX, result.stdout
