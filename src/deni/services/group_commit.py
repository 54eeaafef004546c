"""Group commit: callers hand items to one writer thread, which writes all the items waiting at
that moment in one transaction and then answers each caller.

Nobody waits on purpose: while one transaction commits, the next items queue up, so the busier
the callers the bigger (and the cheaper per item) the transactions. A caller hears back only
once its item is committed. The write answers each item on its own (a result, or the error
that refused just that item); if the write itself fails, every caller in the batch gets that
error and nothing of the batch is kept.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog

from deni.services.ports import StorageBusy

log = structlog.get_logger(__name__)

STOP_TIMEOUT_S = 10.0

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(frozen=True, slots=True)
class _Waiting(Generic[Item, Result]):
    item: Item
    answer: Future[Result]


class GroupCommitter(Generic[Item, Result]):
    """`write(items)` returns, in order, each item's result or the exception refusing it."""

    def __init__(
        self,
        write: Callable[[Sequence[Item]], Sequence[Result | Exception]],
        *,
        name: str,
        queued_max: int,
        batch_max: int,
    ) -> None:
        assert queued_max >= 1
        assert batch_max >= 1
        self._write_items = write
        self._name = name
        self._batch_max = batch_max
        self._queue: queue.Queue[_Waiting[Item, Result] | None] = queue.Queue(maxsize=queued_max)
        self._thread: threading.Thread | None = None
        self._stopped = False  # items may queue before start, never after stop

    def start(self) -> None:
        assert self._thread is None, "started once"
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped = True
        if self._thread is None:
            return
        self._queue.put(None)  # after what is queued: those are still written and answered
        self._thread.join(timeout=STOP_TIMEOUT_S)
        self._thread = None

    def submit(self, item: Item) -> Future[Result]:
        """A future that is done once `item` is committed (or refused). A full queue is
        StorageBusy at once: callers are told to come back rather than piling up; so is an
        item after stop(), which nobody would write."""
        if self._stopped:
            raise StorageBusy(f"The {self._name} has stopped.")
        waiting: _Waiting[Item, Result] = _Waiting(item, Future())
        try:
            self._queue.put_nowait(waiting)
        except queue.Full:
            raise StorageBusy(f"Too many waiting for the {self._name}.") from None
        return waiting.answer

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stopping = self._more([first])
            self._write(batch)
            if stopping:
                return

    def _more(
        self, batch: list[_Waiting[Item, Result]]
    ) -> tuple[list[_Waiting[Item, Result]], bool]:
        """What else is waiting now, up to batch_max; True if the stop marker came too."""
        while len(batch) < self._batch_max:
            try:
                waiting = self._queue.get_nowait()
            except queue.Empty:
                return batch, False
            if waiting is None:
                return batch, True
            batch.append(waiting)
        return batch, False

    def _write(self, batch: list[_Waiting[Item, Result]]) -> None:
        # A caller that gave up (its future cancelled) is left out before anything is written.
        batch = [w for w in batch if w.answer.set_running_or_notify_cancel()]
        if not batch:
            return
        try:
            results = self._write_items([w.item for w in batch])
        except Exception as error:  # every caller in the batch hears it; the thread goes on
            if not isinstance(error, StorageBusy):
                log.exception("group_commit.write_failed", writer=self._name, items=len(batch))
            for waiting in batch:
                waiting.answer.set_exception(error)
            return
        assert len(results) == len(batch)
        for waiting, result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                waiting.answer.set_exception(result)
            else:
                waiting.answer.set_result(result)
