"""What a serving process runs beside its requests, started and stopped in one place.

Started (by the app's lifespan) in this order: housekeeping (SMS delivery and the sweep, if
their intervals are above zero), then with M-PESA on the M-PESA worker (if
DENI_WORKER_INTERVAL_S is above zero) and the callbacks' inbox writer, and with the local
sandbox the C2B and Pull registrations. Stopped in the reverse order, the hop threads last:
a callback already queued is committed before the worker that applies it stops, and a hop
still running finishes on its thread. Settings are read at `start`, not when it is built.

Until `start` (an app served without its lifespan) a hook stores its callback itself and no
worker runs; the hop threads work either way, each started by a hop that needs it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

import structlog

from deni.bootstrap.housekeeping import Housekeeper
from deni.bootstrap.inbox_writer import InboxWriter
from deni.bootstrap.worker import MpesaWorker
from deni.services.mpesa.ports import MpesaDeps

if TYPE_CHECKING:
    from deni.bootstrap import Deni

# Hops block (session store, database, a PIN hash), so they run on threads. A few of our own:
# anyio's shared pool of 40, with its limiter and cancel scopes, cost more CPU per hop in
# hand-offs and GIL contention than a whole plain request (docs/ussd.md). Per process; 2 and
# 4 measured alike under the capacity bench, 8 about 10% slower on PostgreSQL.
HOP_THREADS = 4
T = TypeVar("T")
log = structlog.get_logger(__name__)


class HopThreads:
    """The USSD channel's own threads for the blocking part of a hop."""

    def __init__(self, count: int) -> None:
        assert 1 <= count <= 64
        self._count = count
        self._executor = self._threads()

    async def run(self, call: Callable[[], T]) -> T:
        """`call` on a hop thread: it blocks (the session store, the database, a PIN hash)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def stop(self) -> None:
        """The hop threads finish what they hold and go. An app served again (its lifespan
        run a second time) gets new ones, started by its first hop."""
        stopping, self._executor = self._executor, self._threads()
        stopping.shutdown(wait=True)

    def _threads(self) -> ThreadPoolExecutor:
        # No thread starts here: the pool starts one per hop submitted, up to `count`.
        return ThreadPoolExecutor(self._count, thread_name_prefix="ussd-hop")


class Background:
    def __init__(self, deni: Deni) -> None:
        self._deni = deni
        self.hops = HopThreads(HOP_THREADS)
        self.housekeeper: Housekeeper | None = None
        self.mpesa_worker: MpesaWorker | None = None
        # The hooks hand it their callbacks while it runs; None: they store them themselves.
        self.inbox_writer: InboxWriter | None = None

    def start(self) -> None:
        assert self.housekeeper is None, "started once"
        assert self.mpesa_worker is None
        assert self.inbox_writer is None
        deni, settings = self._deni, self._deni.settings
        self.housekeeper = housekeeper(deni)
        if self.housekeeper is not None:
            self.housekeeper.start()
        if deni.mpesa is not None and settings.worker_interval_s > 0:
            self.mpesa_worker = MpesaWorker(
                deni.mpesa,
                interval_s=settings.worker_interval_s,
                reconcile_interval_s=settings.reconcile_interval_s,
                heartbeat=deni.heartbeats,
            )
            self.mpesa_worker.start()
        if deni.mpesa is not None:
            self.inbox_writer = InboxWriter(deni.mpesa)
            self.inbox_writer.start()
        if deni.mpesa is not None and settings.sandbox:
            _register_c2b(deni.mpesa)

    def wake_mpesa_worker(self) -> None:
        """Something arrived (a stored callback): the worker applies it now, not at its next
        poll. Nothing to do when no worker runs here."""
        if self.mpesa_worker is not None:
            self.mpesa_worker.wake()

    def stop(self) -> None:
        if self.inbox_writer is not None:
            self.inbox_writer.stop()
            self.inbox_writer = None
        if self.mpesa_worker is not None:
            self.mpesa_worker.stop()
            self.mpesa_worker = None
        if self.housekeeper is not None:
            self.housekeeper.stop()
            self.housekeeper = None
        self.hops.stop()


def housekeeper(deni: Deni) -> Housekeeper | None:
    """Housekeeping at the settings' intervals; None when both are zero (nothing to do)."""
    interval_s, sms_interval_s = deni.settings.sweep_interval_s, deni.settings.sms_interval_s
    if interval_s > 0 or sms_interval_s > 0:
        return Housekeeper(deni, interval_s=interval_s, sms_interval_s=sms_interval_s)
    return None


def _register_c2b(deps: MpesaDeps) -> None:
    """The local sandbox forgets registrations when it restarts: tell it where to call, and
    that the reconciler will read the Pull API."""
    try:
        deps.gateway.register_c2b_urls()
    except Exception:
        log.exception("mpesa.c2b_register_failed")
    try:
        deps.gateway.register_pull()
    except Exception:
        log.exception("mpesa.pull_register_failed")
