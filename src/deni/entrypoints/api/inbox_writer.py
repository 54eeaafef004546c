"""Group commit for Daraja's callbacks: the hook hands each raw body to one writer thread,
which stores all the bodies waiting at that moment in one transaction and then lets each
hook answer. Nobody waits on purpose: while one transaction commits, the next callbacks
queue up, so the busier the hook the bigger (and cheaper per callback) the transactions.

A hook still answers 200 only after its body is committed; if the transaction fails, every
callback in it gets the error (the hook answers 503, Daraja sends it again).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from deni.services.mpesa import MpesaDeps
from deni.services.mpesa_callbacks import Received, Stored, store_callbacks
from deni.services.ports import StorageBusy

log = structlog.get_logger(__name__)

QUEUED_MAX = 2_000  # callbacks waiting for the writer; past this the hook answers 503
BATCH_MAX = 200  # callbacks per transaction
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class _Waiting:
    received: Received
    loop: asyncio.AbstractEventLoop
    answer: asyncio.Future[Stored]


class InboxWriter:
    def __init__(self, deps: MpesaDeps) -> None:
        self._deps = deps
        self._queue: queue.Queue[_Waiting | None] = queue.Queue(maxsize=QUEUED_MAX)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        assert self._thread is None, "started once"
        self._thread = threading.Thread(target=self._run, name="inbox-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._queue.put(None)  # after what is queued: those are still stored and answered
        self._thread.join(timeout=STOP_TIMEOUT_S)
        self._thread = None

    async def store(self, received: Received) -> Stored:
        """Returns once `received` is committed (or raises what the transaction raised)."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(received, loop, loop.create_future())
        try:
            self._queue.put_nowait(waiting)
        except queue.Full:
            raise StorageBusy("Too many callbacks waiting to be stored.") from None
        return await waiting.answer

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stopping = self._more([first])
            self._write(batch)
            if stopping:
                return

    def _more(self, batch: list[_Waiting]) -> tuple[list[_Waiting], bool]:
        """What else is waiting now, up to BATCH_MAX; True if the stop marker came too."""
        while len(batch) < BATCH_MAX:
            try:
                waiting = self._queue.get_nowait()
            except queue.Empty:
                return batch, False
            if waiting is None:
                return batch, True
            batch.append(waiting)
        return batch, False

    def _write(self, batch: list[_Waiting]) -> None:
        try:
            stored = store_callbacks(self._deps, [w.received for w in batch])
        except Exception as error:  # every hook in the batch hears it; the thread goes on
            if not isinstance(error, StorageBusy):
                log.exception("mpesa.inbox_write_failed", callbacks=len(batch))
            for waiting in batch:
                _tell(waiting, _fail, error)
            return
        for waiting, row in zip(batch, stored, strict=True):
            _tell(waiting, _succeed, row)


def _tell(
    waiting: _Waiting, answer_with: Callable[[asyncio.Future[Stored], Any], None], value: object
) -> None:
    # RuntimeError: that event loop is closed (a server shutting down): nobody listens.
    with contextlib.suppress(RuntimeError):
        waiting.loop.call_soon_threadsafe(answer_with, waiting.answer, value)


def _succeed(answer: asyncio.Future[Stored], row: Stored) -> None:
    if not answer.done():  # the client may have gone: its request was cancelled
        answer.set_result(row)


def _fail(answer: asyncio.Future[Stored], error: Exception) -> None:
    if not answer.done():
        answer.set_exception(error)
