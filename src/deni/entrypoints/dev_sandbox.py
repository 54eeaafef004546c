"""`DENI_SANDBOX=on` (development only): the local Daraja sandbox inside Deni's process.

`make run` sets it, so one command shows a whole loan on one machine: the sandbox starts on
DENI_SANDBOX_PORT in a thread, its fresh certificate is handed to the Daraja client, and Daraja
calls and callbacks travel over real loopback HTTP between the two.
"""

from __future__ import annotations

import structlog

from deni.config import Settings
from deni.sandbox.app import SandboxConfig, create_sandbox_app
from deni.sandbox.client import SandboxAdmin
from deni.sandbox.server import BackgroundServer

log = structlog.get_logger(__name__)
_running: list[BackgroundServer] = []  # one per process; kept so it is not collected


def with_sandbox(settings: Settings) -> Settings:
    """Start the sandbox if the settings ask for it; return settings wired to it."""
    if not settings.sandbox:
        return settings
    assert settings.environment != "production"
    if not _running:
        server = BackgroundServer(create_sandbox_app(SandboxConfig()), port=settings.sandbox_port)
        server.start()
        _running.append(server)
        log.info("sandbox_started", url=server.url)
    url = _running[0].url
    with SandboxAdmin(url) as admin:
        certificate = admin.certificate_pem().decode()
    return settings.model_copy(
        update={"mpesa": True, "daraja_base_url": url, "daraja_certificate_pem": certificate}
    )
