"""No raw path, query or client address in the logs of a real server: uvicorn's own access
line is never written, however Deni is started (`deni serve`, or any ASGI server pointed at
`deni.entrypoints.api.asgi:app` with its access log left on), and Deni's own access line names
the route template only. Played as an attacker who puts secrets in paths and query strings."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

USSD_TOKEN = "Ussd0Secret0Token0abcdefghij0123"
CALLBACK_TOKEN = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
OPS_TOKEN = "Ops0Token0in0a0path0zyxwvutsrq98"
PIN = "4826"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
ATTACKS = (
    f"/ussd/{USSD_TOKEN}/events?t={USSD_TOKEN}",
    f"/ussd/events?t={USSD_TOKEN}",
    f"/ussd?t={USSD_TOKEN}",
    f"/hooks/{CALLBACK_TOKEN}/stk?token={CALLBACK_TOKEN}",
    f"/metrics/{OPS_TOKEN}",
    f"/api/v1/me?pin={PIN}&access_token={OPS_TOKEN}",
    f"/api/v1/auth/login?pin={PIN}",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _environment(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DENI_ENVIRONMENT": "development",
        "DENI_SANDBOX": "off",
        "DENI_DATABASE_URL": f"sqlite:///{tmp_path / 'deni.db'}",
        "DENI_USSD_TOKEN": USSD_TOKEN,
        "DENI_CALLBACK_TOKEN": CALLBACK_TOKEN,
        "DENI_OPS_TOKEN": OPS_TOKEN,
        "DENI_LOG_JSON": "true",
        "DENI_LOG_LEVEL": "INFO",
    }


def _command(how: str, port: int) -> list[str]:
    if how == "deni serve":
        deni = str(Path(sys.executable).parent / "deni")
        return [deni, "serve", "--host", "127.0.0.1", "--port", str(port)]
    # Any ASGI server on the module, uvicorn's access log left at its default (on).
    app = "deni.entrypoints.api.asgi:app"
    return [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]


@pytest.fixture(params=["deni serve", "uvicorn on the asgi module"])
def server_output(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """Start a real server, send the attacks, stop it: how it was started, and all it wrote."""
    port = _free_port()
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(  # noqa: S603 (our own interpreter, fixed arguments)
            _command(request.param, port),
            env=_environment(tmp_path),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_until_up(url, process)
            with httpx.Client(base_url=url, timeout=5) as client:
                for path in ATTACKS:
                    client.get(path)
                    client.post(path, content=b"{}")
        finally:
            process.terminate()
            process.wait(timeout=STOP_TIMEOUT_S)
    return request.param, log_path.read_text()


def _wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server stopped"
        try:
            if httpx.get(f"{url}/health/live", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("the server did not start")


def test_no_secret_in_a_path_or_query_reaches_the_log(server_output: tuple[str, str]) -> None:
    how, output = server_output
    for secret in (USSD_TOKEN, CALLBACK_TOKEN, OPS_TOKEN, f"pin={PIN}"):
        assert secret not in output, (how, secret)
    assert not re.search(r'127\.0\.0\.1:\d+ - "', output), how  # uvicorn's client address
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert not [r for r in records if r.get("logger") == "uvicorn.access"], how
    # Deni's own access line was written, once per request, with the route template only.
    access = [r for r in records if r.get("logger") == "deni.access"]
    assert len(access) >= 2 * len(ATTACKS), (how, output[-2000:])
    assert all(r["route"] == "unmatched" or "?" not in r["route"] for r in access), how
