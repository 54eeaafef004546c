"""What each of Deni's long-running processes (`deni serve`, `deni worker`, `deni sandbox`)
tells the world: where M-PESA calls back, its log lines, the worker's metrics."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from deni.bootstrap import daraja_config
from deni.config import Settings
from deni.entrypoints.cli import app

CALLBACK_TOKEN = "5e4d3c2b1a09f8e7d6c5b4a392817065"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
DENI = str(Path(sys.executable).parent / "deni")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _served_settings(monkeypatch: pytest.MonkeyPatch, *args: str) -> Settings:
    """Run `deni serve ARGS` with uvicorn stubbed out: the settings the app would be built
    with (entrypoints/api/asgi.py reads them from the environment as uvicorn imports it)."""
    for name in ("DENI_HOST", "DENI_PORT", "DENI_CALLBACK_BASE_URL"):
        monkeypatch.delenv(name, raising=False)  # restored after the test, whatever serve set
    monkeypatch.setenv("DENI_DATABASE_URL", "sqlite://")
    seen: list[Settings] = []
    monkeypatch.setattr(uvicorn, "run", lambda *_a, **_k: seen.append(Settings()))
    result = CliRunner().invoke(app, ["serve", *args])
    assert result.exit_code == 0, result.output
    (settings,) = seen
    return settings


def test_deni_serve_on_another_port_tells_mpesa_to_call_back_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _served_settings(monkeypatch, "--port", "18123")
    assert settings.port == 18123
    assert settings.callback_base == "http://127.0.0.1:18123"
    config = daraja_config(
        settings.model_copy(update={"mpesa": True, "daraja_security_credential": "x"})
    )
    assert config.callback_base_url == "http://127.0.0.1:18123"


def test_a_server_on_every_address_is_called_back_on_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _served_settings(monkeypatch, "--host", "0.0.0.0", "--port", "18124")  # noqa: S104
    assert settings.callback_base == "http://127.0.0.1:18124"
    assert Settings(host="::", port=18125).callback_base == "http://[::1]:18125"
    assert Settings(host="::1", port=18125).callback_base == "http://[::1]:18125"


def test_behind_a_proxy_the_public_url_wins_over_the_port_served(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DENI_CALLBACK_BASE_URL", "https://deni.example/")
    seen: list[Settings] = []
    monkeypatch.setattr(uvicorn, "run", lambda *_a, **_k: seen.append(Settings()))
    monkeypatch.delenv("DENI_PORT", raising=False)
    monkeypatch.delenv("DENI_HOST", raising=False)
    monkeypatch.setenv("DENI_DATABASE_URL", "sqlite://")
    assert CliRunner().invoke(app, ["serve", "--port", "18126"]).exit_code == 0
    assert seen[0].callback_base == "https://deni.example"


def _records(output: str) -> list[dict[str, Any]]:
    """Every line on stderr is one JSON record: nothing in console format."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines, "nothing was logged"
    return [json.loads(line) for line in lines]


def _environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("DENI_")},
        "DENI_ENVIRONMENT": "development",
        "DENI_LOG_JSON": "true",
        "DENI_LOG_LEVEL": "INFO",
        **extra,
    }


def _stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    process.terminate()
    return process.communicate(timeout=STOP_TIMEOUT_S)


def test_deni_worker_logs_json_redacted_and_serves_metrics_on_loopback_only(
    tmp_path: Path,
) -> None:
    """A database with no schema makes every pass fail: each failure is one JSON line whose
    traceback names no local value, and the failed passes are counted on the metrics port."""
    port = _free_port()
    environment = _environment(
        tmp_path,
        DENI_DATABASE_URL=f"sqlite:///{tmp_path / 'no-schema.db'}",
        DENI_MPESA="on",
        DENI_DARAJA_SECURITY_CREDENTIAL="not-used",
        DENI_CALLBACK_TOKEN=CALLBACK_TOKEN,
        DENI_SMS_INTERVAL_S="0",
        DENI_SWEEP_INTERVAL_S="0",
        # A secret that a traceback's local values would show: the settings hold it.
        DENI_PIN_PEPPER="pepper-0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d",
    )
    process = subprocess.Popen(  # noqa: S603 (our own command, fixed arguments)
        [DENI, "worker", "--interval-s", "0.2", "--metrics-port", str(port)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        body = _wait_for_failed_passes(f"http://127.0.0.1:{port}/metrics", process)
        with pytest.raises(httpx.TransportError):  # 127.0.0.1 only
            httpx.get(f"http://{_another_address()}:{port}/metrics", timeout=2)
    finally:
        stdout, stderr = _stop(process)
    assert process.returncode == 0, stderr[-2000:]  # SIGTERM stops it as Ctrl-C does
    assert "stopped" in stdout
    assert "mpesa_worker_passes_total" in body
    records = _records(stderr)
    failures = [r for r in records if r["event"] == "mpesa_worker_failed"]
    assert failures, stderr[-2000:]
    assert all(r["level"] == "error" and "Traceback" in r["exception"] for r in failures)
    assert "pepper-0a9b8c7d" not in stderr
    assert "locals" not in stderr.lower()
    listening = [r for r in records if r["event"] == "worker_metrics_listening"]
    assert len(listening) == 1
    assert listening[0]["host"] == "127.0.0.1"


def _wait_for_failed_passes(url: str, process: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1][-2000:]
        try:
            body = httpx.get(url, timeout=1).text
        except httpx.TransportError:
            body = ""
        if 'mpesa_worker_passes_total{outcome="failed"}' in body:
            return body
        time.sleep(0.1)
    raise AssertionError("the worker counted no failed pass")


def _another_address() -> str:
    """An address of this machine that is not loopback (or one nothing answers on)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))  # no packet is sent: it only picks a route
            address = str(sock.getsockname()[0])
        except OSError:
            return "192.0.2.1"
    return address if not address.startswith("127.") else "192.0.2.1"


def test_deni_sandbox_logs_json_too(tmp_path: Path) -> None:
    port = _free_port()
    process = subprocess.Popen(  # noqa: S603 (our own command, fixed arguments)
        [DENI, "sandbox", "--host", "127.0.0.1", "--port", str(port)],
        env=_environment(tmp_path, DENI_DATABASE_URL=f"sqlite:///{tmp_path / 'unused.db'}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert process.poll() is None, process.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the sandbox did not start"
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/sandbox/balances", timeout=1)
            except httpx.TransportError:
                time.sleep(0.1)
                continue
            assert answer.status_code == 200
            break
    finally:
        _, stderr = _stop(process)
    records = _records(stderr)
    assert any(r["logger"].startswith("uvicorn") for r in records), stderr
    assert not [r for r in records if r["logger"] == "uvicorn.access"]
