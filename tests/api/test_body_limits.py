"""Oversized bodies and clients that vanish mid-body, as an attacker sends them.

The real-server tests run Deni in uvicorn on a loopback port behind a wrapper that counts the
body bytes uvicorn hands the app: a 100 MB body must be refused having read at most the
route's limit (and a chunk), with or without a Content-Length. A client that goes away in the
middle of its body is no server error, and the hook's secret path reaches no log line.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
import structlog
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from tests.fakes import ManualClock
from tests.support.api import assert_error, assert_nothing_written, db_state
from tests.support.builders import api_user
from tests.support.waiting import wait_until

from deni.adapters.observability import configure_logging
from deni.adapters.security import PepperedArgon2PinHasher
from deni.bootstrap import Deni, bootstrap
from deni.config import Settings
from deni.entrypoints.api.app import ROUTE_BODY_BYTES_MAX, create_app
from deni.entrypoints.api.limits import BODY_BYTES_MAX
from deni.entrypoints.api.routes.hooks import BODY_BYTES_MAX as HOOK_BODY_BYTES_MAX
from deni.entrypoints.api.routes.sync import PUSH_BODY_BYTES_MAX
from deni.entrypoints.ussd.router import BODY_BYTES_MAX as USSD_BODY_BYTES_MAX
from deni.sandbox.server import BackgroundServer

HOOK_TOKEN = "5e1f0c2a9b7d43e6a8c1f2d3e4b5a6978c0d1e2f"  # this test's own
ATTACK_BYTES = 100 * 1024 * 1024
CHUNK_BYTES = 64 * 1024
# What may reach the app beyond the limit: the chunk that crossed it, as uvicorn read it.
READ_SLACK_BYTES = 256 * 1024
# What the attacker may push before the refusal reaches it: the limit plus both kernels'
# socket buffers on loopback. Far below the 100 MB it tried to send.
SENT_BYTES_MAX = 16 * 1024 * 1024
ANSWER_TIMEOUT_S = 10.0
AUTH_BODY_BYTES_MAX = dict(ROUTE_BODY_BYTES_MAX)["/api/v1/auth/"]


# --- through the test client -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body_bytes_max"),
    [
        ("/api/v1/auth/login", AUTH_BODY_BYTES_MAX),
        ("/api/v1/loans", BODY_BYTES_MAX),
        ("/api/v1/loans/quote", BODY_BYTES_MAX),
        ("/api/v1/sync/push", PUSH_BODY_BYTES_MAX),
        ("/ussd", BODY_BYTES_MAX),
    ],
)
def test_a_body_over_the_routes_limit_is_refused_in_the_error_envelope(
    client: TestClient, deni: Deni, path: str, body_bytes_max: int
) -> None:
    before = db_state(deni)
    body = b'{"x": "' + b"a" * body_bytes_max + b'"}'
    response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    error = assert_error(response, 413, "body_too_large")
    assert str(body_bytes_max) in error["message"]
    assert response.headers["Connection"] == "close"
    assert_nothing_written(deni, before)


def test_a_body_at_the_limit_is_read_as_usual(client: TestClient, deni: Deni) -> None:
    who = api_user(client, deni)
    padding = " " * (BODY_BYTES_MAX - 200)
    body = '{"principal_cents": 100000, "term_days": 7}' + padding
    response = client.post(
        "/api/v1/loans/quote",
        content=body.encode(),
        headers={**who.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text


def test_a_get_with_a_body_is_limited_too(client: TestClient) -> None:
    response = client.request("GET", "/health", content=b"x" * (BODY_BYTES_MAX + 1))
    assert_error(response, 413, "body_too_large")


# --- against a real server -------------------------------------------------------------------


class CountingApp:
    """The app behind a counter of the body bytes the server hands it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.body_bytes = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.body_bytes += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


@dataclass
class Served:
    deni: Deni
    counter: CountingApp
    url: str


@pytest.fixture
def served(
    settings: Settings, clock: ManualClock, hasher: PepperedArgon2PinHasher
) -> Iterator[Served]:
    """Deni with M-PESA on (so the hook reads its body), in uvicorn on a free loopback port."""
    wired = bootstrap(
        settings.model_copy(
            update={
                "mpesa": True,
                "callback_token": HOOK_TOKEN,
                "worker_interval_s": 0.0,
                "daraja_security_credential": "unused-in-this-test",
            }
        ),
        clock=clock,
        hasher=hasher,
    )
    counter = CountingApp(create_app(wired))
    with BackgroundServer(counter) as server:
        yield Served(wired, counter, server.url)
    wired.close()


@dataclass
class Outcome:
    status: int
    head: str
    sent_bytes: int


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    return socket.create_connection((parts.hostname, parts.port), timeout=ANSWER_TIMEOUT_S)


def _attack(url: str, path: str, *, declared: bool) -> Outcome:
    """POST 100 MB of JSON-ish bytes, chunk by chunk, until the server answers or hangs up."""
    framing = (
        f"Content-Length: {ATTACK_BYTES}\r\n" if declared else "Transfer-Encoding: chunked\r\n"
    )
    head = f"POST {path} HTTP/1.1\r\nHost: deni\r\nContent-Type: application/json\r\n{framing}\r\n"
    chunk = b"[" + b"1," * (CHUNK_BYTES // 2 - 1) + b"1"
    frame = chunk if declared else f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent_bytes = 0
    with _connect(url) as sock:
        sock.sendall(head.encode())
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while sent_bytes < ATTACK_BYTES and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 1.0)
            if readable:
                break
            if writable:
                try:
                    sent_bytes += sock.send(frame)
                except OSError:  # the server hung up on us: its answer is waiting
                    break
        return Outcome(*_read_head(sock), sent_bytes)


def _read_head(sock: socket.socket) -> tuple[int, str]:
    """The status and the whole answer (head and body, by its Content-Length)."""
    data = b""
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while not _complete(data) and time.monotonic() < deadline:
        try:
            received = sock.recv(65_536)
        except OSError:
            break
        if not received:
            break
        data += received
    text = data.decode("latin-1")
    status = int(text.split(" ", 2)[1]) if text.startswith("HTTP/1.1 ") else 0
    return status, text


def _complete(data: bytes) -> bool:
    head, separator, body = data.partition(b"\r\n\r\n")
    if not separator:
        return False
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return True


ATTACKED = [
    ("/api/v1/auth/login", AUTH_BODY_BYTES_MAX),
    ("/api/v1/loans", BODY_BYTES_MAX),
    ("/api/v1/sync/push", PUSH_BODY_BYTES_MAX),
    (f"/hooks/{HOOK_TOKEN}/stk", HOOK_BODY_BYTES_MAX),
]


@pytest.mark.parametrize(("path", "body_bytes_max"), ATTACKED)
def test_a_declared_100_mb_body_is_refused_before_a_byte_is_read(
    served: Served, path: str, body_bytes_max: int
) -> None:
    outcome = _attack(served.url, path, declared=True)
    assert outcome.status == 413, outcome.head
    assert '"code":"body_too_large"' in outcome.head
    assert served.counter.body_bytes == 0
    assert outcome.sent_bytes < SENT_BYTES_MAX


@pytest.mark.parametrize(("path", "body_bytes_max"), ATTACKED)
def test_a_chunked_100_mb_body_is_refused_once_the_limit_is_passed(
    served: Served, path: str, body_bytes_max: int
) -> None:
    outcome = _attack(served.url, path, declared=False)
    assert outcome.status == 413, outcome.head
    assert '"code":"body_too_large"' in outcome.head
    assert served.counter.body_bytes <= body_bytes_max + READ_SLACK_BYTES
    assert outcome.sent_bytes < SENT_BYTES_MAX + body_bytes_max


def test_ussd_stops_reading_at_its_own_limit(served: Served) -> None:
    outcome = _attack(served.url, "/ussd", declared=False)
    # Past its own 8 KiB the USSD route answers END text, as for any bad hop; a first read
    # already past the app-wide limit is refused by that limit first.
    assert outcome.status in (200, 413), outcome.head
    assert served.counter.body_bytes <= USSD_BODY_BYTES_MAX + READ_SLACK_BYTES
    declared = _attack(served.url, "/ussd", declared=True)
    assert declared.status == 413, declared.head


# --- a client that leaves mid-body -----------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The test configures Deni's own logging (JSON on stderr); the test's is restored after."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers, root.level = saved
    structlog.reset_defaults()


def _requests_with_status(deni: Deni, status: str) -> float:
    total = 0.0
    for metric in deni.metrics.http_requests_total.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels["status"] == status:
                total += sample.value
    return total


def _leave_mid_body(url: str, path: str) -> None:
    head = f"POST {path} HTTP/1.1\r\nHost: deni\r\nContent-Type: application/json\r\n"
    with _connect(url) as sock:
        sock.sendall(f"{head}Content-Length: 1000\r\n\r\n".encode() + b'{"Body": {"stkCall')


@pytest.mark.parametrize("path", [f"/hooks/{HOOK_TOKEN}/stk", "/api/v1/auth/login", "/ussd"])
def test_a_client_leaving_mid_body_is_no_server_error_and_no_secret_is_logged(
    served: Served, restore_logging: None, capfd: pytest.CaptureFixture[str], path: str
) -> None:
    configure_logging(level="INFO", json=True)
    _leave_mid_body(served.url, path)
    wait_until(
        lambda: _requests_with_status(served.deni, "499") >= 1,
        what="the request the client left to be counted as 499",
        timeout_s=ANSWER_TIMEOUT_S,
    )

    assert _requests_with_status(served.deni, "499") == 1
    assert _requests_with_status(served.deni, "500") == 0
    out, err = capfd.readouterr()
    assert HOOK_TOKEN not in out + err
    records: list[dict[str, Any]] = [
        json.loads(line) for line in err.splitlines() if line.startswith("{")
    ]
    assert not [r for r in records if r["level"] in ("error", "critical")], records
    [access] = [r for r in records if r["event"] == "request"]
    assert access["status"] == 499
    assert access["level"] == "info"
