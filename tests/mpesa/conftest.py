"""Deni and the Daraja sandbox on real loopback ports, wired to each other.

The sandbox and Deni's HTTP server live for the whole session (starting uvicorn costs a few
hundred milliseconds); each test gets its own database, Deni and a reset sandbox (each
Hypothesis example too, through `fresh_world`). The server
serves whichever app the current test plugs in. The sandbox holds every callback until the test
calls `flush()` (callback_delay_s is long), so callback timing is the test's to decide.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from deni.adapters.security import PepperedArgon2PinHasher
from deni.bootstrap import bootstrap
from deni.config import Settings
from deni.entrypoints.api.app import create_app
from deni.sandbox.app import SandboxConfig, create_sandbox_app
from deni.sandbox.client import SandboxAdmin
from deni.sandbox.server import BackgroundServer
from tests.conftest import settings_for
from tests.fakes import ManualClock
from tests.fakes.clock import START
from tests.support.mpesa import CALLBACK_TOKEN, World

SANDBOX_HOLD_S = 3_600.0  # callbacks wait for flush()


class Switch:
    """An ASGI app that forwards to the app of the running test; answers lifespan itself."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert self.app is not None, "no test app plugged in"
        await self.app(scope, receive, send)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def sandbox_url() -> Iterator[str]:
    config = SandboxConfig(callback_delay_s=SANDBOX_HOLD_S)
    with BackgroundServer(create_sandbox_app(config)) as server:
        yield server.url


@pytest.fixture(scope="session")
def session_admin(sandbox_url: str) -> Iterator[SandboxAdmin]:
    with SandboxAdmin(sandbox_url) as admin:
        yield admin


@pytest.fixture(scope="session")
def certificate(session_admin: SandboxAdmin) -> str:
    return session_admin.certificate_pem().decode()


@pytest.fixture(scope="session")
def deni_server() -> Iterator[tuple[Switch, str]]:
    switch = Switch()
    with BackgroundServer(switch, port=_free_port()) as server:
        yield switch, server.url


@pytest.fixture
def admin(session_admin: SandboxAdmin) -> Iterator[SandboxAdmin]:
    session_admin.reset()
    yield session_admin
    session_admin.clear_faults()


def mpesa_settings(
    settings: Settings, *, sandbox_url: str, deni_url: str, certificate: str, **extra: Any
) -> Settings:
    return settings.model_copy(
        update={
            "mpesa": True,
            "daraja_base_url": sandbox_url,
            "daraja_certificate_pem": certificate,
            "daraja_timeout_s": 5.0,
            "callback_base_url": deni_url,
            "callback_token": CALLBACK_TOKEN,
            "worker_interval_s": 0.0,
            "c2b_validation": True,
            **extra,
        }
    )


@contextmanager
def _open_world(
    settings: Settings,
    clock: ManualClock,
    hasher: PepperedArgon2PinHasher,
    admin: SandboxAdmin,
    sandbox_url: str,
    certificate: str,
    deni_server: tuple[Switch, str],
) -> Iterator[World]:
    switch, deni_url = deni_server
    wired = bootstrap(
        mpesa_settings(
            settings, sandbox_url=sandbox_url, deni_url=deni_url, certificate=certificate
        ),
        clock=clock,
        hasher=hasher,
    )
    switch.app = create_app(wired)
    world = World(wired, admin, clock, deni_url)
    world.register_c2b()
    try:
        yield world
    finally:
        world.close()
        switch.app = None
        wired.close()


@pytest.fixture
def world(
    settings: Settings,
    clock: ManualClock,
    hasher: PepperedArgon2PinHasher,
    admin: SandboxAdmin,
    sandbox_url: str,
    certificate: str,
    deni_server: tuple[Switch, str],
) -> Iterator[World]:
    with _open_world(
        settings, clock, hasher, admin, sandbox_url, certificate, deni_server
    ) as world:
        yield world


@pytest.fixture(scope="session")
def fresh_world(
    fresh_database: Callable[[], AbstractContextManager[str]],
    hasher: PepperedArgon2PinHasher,
    session_admin: SandboxAdmin,
    sandbox_url: str,
    certificate: str,
    deni_server: tuple[Switch, str],
) -> Callable[[], AbstractContextManager[World]]:
    """`with fresh_world() as world:` in a Hypothesis test: what `world` gives a test (a
    database, Deni, clock and reset sandbox of its own), new for each example."""

    @contextmanager
    def open_example() -> Iterator[World]:
        session_admin.reset()
        try:
            with (
                fresh_database() as url,
                _open_world(
                    settings_for(url),
                    ManualClock(START),
                    hasher,
                    session_admin,
                    sandbox_url,
                    certificate,
                    deni_server,
                ) as world,
            ):
                yield world
        finally:
            session_admin.clear_faults()

    return open_example
