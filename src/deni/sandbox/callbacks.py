"""Asynchronous work: settling requests after a delay and POSTing callbacks to the client.

One worker task takes items from a bounded timeline in (due time, sequence) order, so what it
does is easy to predict: a settlement job runs, its callback goes out, the next one follows.
Delivery: one POST per callback, as Daraja makes ("no repeat callbacks for failed callbacks");
only when the connection itself fails (nothing reached the client) do we try again, at most
`callback_connect_attempts` times in all. Every attempt and the client's answer are recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from deni.sandbox.config import SandboxConfig
from deni.sandbox.faults import DeliveryPolicy, ReorderGroup

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]
_RETRY_BACKOFF_S = 0.1
_RESPONSE_CHARS_MAX = 2_000
_FLUSH_ROUNDS_MAX = 1_000


class QueueFull(Exception):
    """More callbacks wait than the sandbox allows; Daraja would answer "System is busy"."""


@dataclass
class CallbackRecord:
    record_id: int
    kind: str
    url: str
    body: dict[str, Any]
    created_at: str
    state: str = "pending"  # pending, held, delivered, failed, dropped
    response_status: int | None = None
    response_body: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.state in ("delivered", "failed", "dropped")

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.record_id,
            "kind": self.kind,
            "url": self.url,
            "body": self.body,
            "created_at": self.created_at,
            "state": self.state,
            "response_status": self.response_status,
            "response_body": self.response_body,
            "attempts": self.attempts,
        }


@dataclass(order=True)
class _Item:
    due_s: float
    seq: int
    job: Job | None = field(compare=False, default=None)
    record_id: int | None = field(compare=False, default=None)


class Dispatcher:
    def __init__(self, config: SandboxConfig, now_iso: Callable[[], str]) -> None:
        self._config = config
        self._now_iso = now_iso
        self._timeline: list[_Item] = []
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self._records: OrderedDict[int, CallbackRecord] = OrderedDict()
        self._groups: list[ReorderGroup] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._busy = False
        self._forcing = False
        self._worker: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    # Lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        assert self._worker is None
        timeout = httpx.Timeout(self._config.callback_timeout_s, connect=2.0)
        self._client = httpx.AsyncClient(timeout=timeout, headers={"User-Agent": "deni-sandbox"})
        self._worker = asyncio.create_task(self._run(), name="sandbox-callbacks")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def reset(self) -> None:
        """Forget everything waiting and sent; work in progress is cancelled, not finished,
        so nothing from before the reset reaches the client or the fresh state after it."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._timeline.clear()
        self._records.clear()
        self._groups.clear()
        self._busy = False
        self._update_idle()
        if self._worker is not None:
            self._worker = asyncio.create_task(self._run(), name="sandbox-callbacks")

    # Scheduling ----------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        held = sum(len(g.held) for g in self._groups)
        return len(self._timeline) + held

    def schedule(self, delay_s: float, job: Job) -> None:
        """Run `job` after `delay_s`. Raises QueueFull when the timeline is full."""
        if self.waiting >= self._config.pending_callbacks_max:
            raise QueueFull
        self._push(_Item(self._due(delay_s), next(self._seq), job=job))

    def send(
        self, kind: str, url: str, body: dict[str, Any], policy: DeliveryPolicy
    ) -> list[CallbackRecord]:
        """Queue a callback (or several, or none) as the delivery policy says."""
        copies = [self._new_record(kind, url, body) for _ in range(policy.copies)]
        for record in copies:
            if policy.drop:
                record.state = "dropped"
            elif self.waiting >= self._config.pending_callbacks_max:
                record.state = "failed"
                record.attempts.append({"at": self._now_iso(), "error": "sandbox queue full"})
            elif policy.group is not None:
                self._hold(record, policy.group)
            else:
                self._push_record(record, policy.extra_delay_s)
        return copies

    async def call_now(
        self, kind: str, url: str, body: dict[str, Any], timeout_s: float
    ) -> tuple[CallbackRecord, Any]:
        """POST and wait for the answer (C2B validation). Returns the record and parsed JSON."""
        record = self._new_record(kind, url, body)
        response = await self._post_once(record, timeout_s)
        if response is None:
            record.state = "failed"
            return record, None
        record.state = "delivered"
        try:
            return record, response.json()
        except ValueError:
            return record, None

    def records(self) -> list[CallbackRecord]:
        return list(self._records.values())

    # Flushing ------------------------------------------------------------------------------

    async def flush(self, timeout_s: float) -> bool:
        """Run everything now, held callbacks last (newest first); True when all is done."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        self._forcing = True
        try:
            for _ in range(_FLUSH_ROUNDS_MAX):
                self._make_all_due()
                remaining_s = deadline - loop.time()
                if remaining_s <= 0:
                    return False
                try:
                    await asyncio.wait_for(self._idle.wait(), remaining_s)
                except TimeoutError:
                    return False
                if not any(g.held for g in self._groups):
                    return True
                for group in list(self._groups):
                    self._release(group)
            return False
        finally:
            self._forcing = False

    def _make_all_due(self) -> None:
        self._timeline = [
            _Item(float("-inf"), item.seq, item.job, item.record_id) for item in self._timeline
        ]
        heapq.heapify(self._timeline)
        self._wake.set()

    # Internals -----------------------------------------------------------------------------

    def _due(self, delay_s: float) -> float:
        if self._forcing:
            return float("-inf")
        return asyncio.get_running_loop().time() + delay_s

    def _push(self, item: _Item) -> None:
        heapq.heappush(self._timeline, item)
        self._idle.clear()
        self._wake.set()

    def _push_record(self, record: CallbackRecord, extra_delay_s: float) -> None:
        record.state = "pending"
        self._push(_Item(self._due(extra_delay_s), next(self._seq), record_id=record.record_id))

    def _hold(self, record: CallbackRecord, group: ReorderGroup) -> None:
        record.state = "held"
        if group not in self._groups:
            self._groups.append(group)
        group.held.append(record.record_id)
        if len(group.held) >= group.size:
            self._release(group)

    def _release(self, group: ReorderGroup) -> None:
        """Newest first: the point of a reorder fault."""
        for record_id in reversed(group.held):
            record = self._records.get(record_id)
            if record is not None:
                self._push_record(record, 0.0)
        group.held.clear()
        self._groups.remove(group)

    def _new_record(self, kind: str, url: str, body: dict[str, Any]) -> CallbackRecord:
        record = CallbackRecord(next(self._ids), kind, url, body, self._now_iso())
        self._records[record.record_id] = record
        self._forget_old_records()
        return record

    def _forget_old_records(self) -> None:
        while len(self._records) > self._config.callback_records_max:
            oldest_id, oldest = next(iter(self._records.items()))
            if not oldest.final:
                break  # never forget one still on its way; the bound is soft by `waiting`
            del self._records[oldest_id]

    def _update_idle(self) -> None:
        if not self._timeline and not self._busy:
            self._idle.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._update_idle()
            if not self._timeline:
                self._wake.clear()
                await self._wake.wait()
                continue
            wait_s = self._timeline[0].due_s - loop.time()
            if wait_s > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait_s)
                continue
            item = heapq.heappop(self._timeline)
            self._busy = True
            try:
                await self._execute(item)
            except Exception:
                log.exception("sandbox background work failed")
            finally:
                self._busy = False

    async def _execute(self, item: _Item) -> None:
        if item.job is not None:
            await item.job()
            return
        assert item.record_id is not None
        record = self._records.get(item.record_id)
        if record is not None:
            await self._deliver(record)

    async def _deliver(self, record: CallbackRecord) -> None:
        for attempt in range(self._config.callback_connect_attempts):
            response = await self._post_once(record, self._config.callback_timeout_s)
            if response is not None:
                record.state = "delivered"
                return
            if not record.attempts[-1].get("connect_failed"):
                break  # the client may have received it: Daraja would not send it again
            await asyncio.sleep(_RETRY_BACKOFF_S * 2**attempt)
        record.state = "failed"

    async def _post_once(self, record: CallbackRecord, timeout_s: float) -> httpx.Response | None:
        assert self._client is not None, "the sandbox is not started"
        attempt: dict[str, Any] = {"at": self._now_iso()}
        record.attempts.append(attempt)
        try:
            response = await self._client.post(
                record.url,
                content=json.dumps(record.body),
                headers={"Content-Type": "application/json"},
                timeout=timeout_s,
            )
        except httpx.HTTPError as error:
            attempt["error"] = f"{type(error).__name__}: {error}"
            attempt["connect_failed"] = isinstance(error, httpx.ConnectError)
            return None
        attempt["status"] = response.status_code
        record.response_status = response.status_code
        record.response_body = response.text[:_RESPONSE_CHARS_MAX]
        return response
