"""What `make run` starts (deni serve with the sandbox and the in-process worker), then
`deni demo` walks a whole loan through it over HTTP: top-up, request, approve, B2C payout,
STK repayment. This is the newcomer's path, so it is tested as a newcomer would take it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

START_TIMEOUT_S = 30.0
DEMO_TIMEOUT_S = 90.0
DENI = [sys.executable, "-m", "deni.entrypoints.cli"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    port, sandbox_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "DENI_DATABASE_URL": f"sqlite:///{tmp_path / 'deni.sqlite3'}",
        "DENI_PORT": str(port),
        "DENI_SANDBOX_PORT": str(sandbox_port),
        "DENI_LOG_LEVEL": "WARNING",
    }
    # The two steps of the Makefile's run target, with the same settings.
    upgrade = [*DENI, "db", "upgrade"]
    subprocess.run(upgrade, env=env, check=True, capture_output=True, timeout=60)  # noqa: S603
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(  # noqa: S603
        [*DENI, "serve"],
        env={**env, "DENI_MPESA": "on", "DENI_SANDBOX": "on"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, server)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


def _wait_healthy(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert server.poll() is None, "deni serve exited"
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"deni serve did not answer within {START_TIMEOUT_S} s")


def test_deni_demo_walks_a_whole_loan_through_what_make_run_starts(
    served: str, tmp_path: Path
) -> None:
    # The same database as the server's, as in a shell where `make run` runs: the demo reads
    # the codes the fake SMS gateway "sent" there.
    database = f"sqlite:///{tmp_path / 'deni.sqlite3'}"
    done = subprocess.run(  # noqa: S603
        [*DENI, "demo", "--url", served],
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        env={**os.environ, "COLUMNS": "200", "DENI_DATABASE_URL": database},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Wanjiku registers with the code" in out
    assert "Wanjiku tops up KES 5,000 by STK push" in out
    assert "paid out to Otieno's M-PESA, receipt " in out
    assert "the loan is repaid; Wanjiku's wallet: KES 5,100" in out
