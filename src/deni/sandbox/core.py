"""The sandbox's parts in one place, and the per-request bookkeeping of faults."""

from __future__ import annotations

from datetime import datetime, timedelta

from deni.sandbox.callbacks import Dispatcher, Job, QueueFull
from deni.sandbox.config import SandboxConfig
from deni.sandbox.faults import Action, FaultBook, RequestFaults
from deni.sandbox.formats import IdMint
from deni.sandbox.security import InitiatorVault
from deni.sandbox.state import TokenDesk, World
from deni.sandbox.validation import busy


class Sandbox:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.clock_offset = timedelta(0)
        self.world = World(config)
        self.tokens = TokenDesk(config)
        self.faults = FaultBook(config.faults_max)
        self.mint = IdMint()
        self.vault = InitiatorVault(
            password=config.initiator_password,
            now=self.now(),
            organisation=config.organisation_name,
        )
        self.dispatcher = Dispatcher(config, lambda: self.now().isoformat())

    def now(self) -> datetime:
        moment = self.config.clock() + self.clock_offset
        assert moment.tzinfo is not None, "the sandbox clock must be timezone-aware"
        return moment

    async def reset(self) -> None:
        """Money, logs, faults and callbacks start over; tokens, keys and the clock stay."""
        await self.dispatcher.reset()
        self.world = World(self.config)
        self.faults.clear()

    def initiator_ok(self, initiator: str, security_credential: str) -> bool:
        return initiator == self.config.initiator_name and self.vault.credential_is_valid(
            security_credential
        )

    def schedule(self, job: Job, extra_delay_s: float = 0.0) -> None:
        """Run a settlement after the configured delay; a full queue is Daraja's "busy"."""
        try:
            self.dispatcher.schedule(self.config.callback_delay_s + extra_delay_s, job)
        except QueueFull:
            raise busy() from None


class Interrupted(Exception):
    """A synchronous fault answers instead of the endpoint: nothing reaches M-PESA."""


class Call:
    """One HTTP request to a Daraja endpoint and the faults it took."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.faults = RequestFaults()

    def begin(self, kind: str, phone: str | None = None) -> RequestFaults:
        """The request is valid: take its faults. Raises Interrupted when M-PESA never sees it."""
        self.faults = self.sandbox.faults.take(kind, phone)
        sync = self.faults.sync
        if sync is not None and sync.action is not Action.SLOW and not sync.processed:
            raise Interrupted
        return self.faults
