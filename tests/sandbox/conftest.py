"""Fixtures for the Daraja sandbox: the sandbox and a callback receiver on real loopback ports.

Both servers live for the whole session (a reset between tests keeps tests apart); tests that
need another configuration start their own with `start_sandbox`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import httpx
import pytest

from deni.sandbox.app import SandboxConfig, create_sandbox_app
from deni.sandbox.client import SandboxAdmin
from deni.sandbox.server import BackgroundServer
from tests.support.sandbox import Daraja, Receiver


@pytest.fixture(scope="session")
def receiver_server() -> Iterator[Receiver]:
    receiver = Receiver()
    with BackgroundServer(receiver.app) as server:
        receiver.url = server.url
        yield receiver


@pytest.fixture
def hooks(receiver_server: Receiver) -> Receiver:
    receiver_server.reset()
    return receiver_server


@pytest.fixture(scope="session")
def sandbox_url() -> Iterator[str]:
    with BackgroundServer(create_sandbox_app(SandboxConfig(callback_delay_s=0))) as server:
        yield server.url


# Clients live for the session: building an httpx client costs tens of milliseconds.
@pytest.fixture(scope="session")
def session_admin(sandbox_url: str) -> Iterator[SandboxAdmin]:
    with SandboxAdmin(sandbox_url) as client:
        yield client


@pytest.fixture(scope="session")
def session_http(sandbox_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox_url, timeout=10) as client:
        yield client


@pytest.fixture
def admin(session_admin: SandboxAdmin) -> Iterator[SandboxAdmin]:
    session_admin.reset()
    yield session_admin
    # Deliver what the test left behind now, so nothing arrives during the next test.
    session_admin.flush()


@pytest.fixture
def daraja(session_http: httpx.Client, admin: SandboxAdmin, hooks: Receiver) -> Daraja:
    return Daraja(session_http, admin, hooks)


@pytest.fixture
def start_sandbox(hooks: Receiver) -> Iterator[Callable[[SandboxConfig], Daraja]]:
    """Another sandbox with its own configuration, stopped after the test."""
    with ExitStack() as stack:

        def start(config: SandboxConfig) -> Daraja:
            server = stack.enter_context(BackgroundServer(create_sandbox_app(config)))
            admin = stack.enter_context(SandboxAdmin(server.url))
            http = stack.enter_context(httpx.Client(base_url=server.url, timeout=10))
            return Daraja(http, admin, hooks)

        yield start
