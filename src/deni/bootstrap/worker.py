"""The M-PESA worker: sends the outbox, applies stored callbacks, runs the reconciler.

`work_once` is one bounded step of everything (tests call it directly). `MpesaWorker` runs it in
a thread: inside `deni serve` (the embedded default) or as `deni worker` (production: M of them,
next to N API processes). Every step is safe to run in several processes at once: outbox rows
are leased (SKIP LOCKED on PostgreSQL), and every settlement is keyed and idempotent.

The loop beats a heartbeat (adapters/db/heartbeats.py) before a pass, at most every
HEARTBEAT_EVERY_S: readiness and the metrics tell from it that some worker is running.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import structlog

from deni.services import outbox
from deni.services.mpesa import claims, reconcile, requests, reversals
from deni.services.mpesa.callbacks import apply_pending
from deni.services.mpesa.ports import MpesaDeps

log = structlog.get_logger(__name__)
STOP_WAIT_S = 10.0
# A beat per pass would be a write a second per worker; one every 10 s is plenty against a
# staleness bound of minutes (Settings.worker_heartbeat_stale_s).
HEARTBEAT_EVERY_S = 10.0


class Heartbeat(Protocol):
    def start(self, now: datetime) -> None: ...

    def beat(self, now: datetime) -> None: ...


@dataclass(frozen=True, slots=True)
class WorkReport:
    outbox: outbox.OutboxReport
    callbacks_retried: int
    reconciled: reconcile.ReconcileReport | None
    callbacks_settled: int = 0


def work_once(deps: MpesaDeps, *, rng: random.Random, reconcile_now: bool) -> WorkReport:
    sent = outbox.run_once(
        deps,
        handlers={**requests.handlers(deps), **reversals.handlers(deps)},
        policy=deps.policy,
        rng=rng,
    )
    pending = apply_pending(deps)
    # Money a callback claimed is asked about at once, not at the next reconcile interval: its
    # owner sees it arriving until M-PESA confirms it.
    claims.check_due(deps)
    # Payouts of fresh loans and repayments go out within a pass, not a reconcile interval.
    reconcile.sweep_disbursements(deps)
    reconcile.sweep_auto_payouts(deps)
    reconciled = None
    if reconcile_now:
        reconciled = reconcile.reconcile_once(deps)
        if reconcile.balance_report_due(deps):
            reconcile.request_balance_report(deps)
    return WorkReport(sent, pending.tried, reconciled, pending.settled)


class MpesaWorker:
    def __init__(
        self,
        deps: MpesaDeps,
        *,
        interval_s: float,
        reconcile_interval_s: float,
        heartbeat: Heartbeat | None = None,
        on_pass: Callable[[bool], None] | None = None,
    ) -> None:
        """`on_pass(ok)` after every pass, whether it failed (`deni worker`'s metrics)."""
        assert interval_s > 0
        assert reconcile_interval_s > 0
        self._deps = deps
        self._heartbeat = heartbeat
        self._last_beat_s: float | None = None
        self._on_pass = on_pass
        self._interval_s = interval_s
        self._reconcile_interval_s = reconcile_interval_s
        self._rng = random.Random()  # noqa: S311 (jitter, not secrets)
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deni-mpesa-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout=STOP_WAIT_S)

    def wake(self) -> None:
        """Something arrived (a stored callback): run a pass now rather than at the next poll."""
        self._wake.set()

    def run_forever(self) -> None:
        """For `deni worker`: the same loop in the calling thread, until interrupted."""
        self._run()

    def _beat(self) -> None:
        """Before a pass, at most every HEARTBEAT_EVERY_S. A beat that fails (the database
        away) is logged and the pass goes on: the beat's absence is the signal."""
        if self._heartbeat is None:
            return
        now_s, last_s = time.monotonic(), self._last_beat_s
        if last_s is not None and now_s - last_s < HEARTBEAT_EVERY_S:
            return
        try:
            if last_s is None:
                self._heartbeat.start(self._deps.clock.now())
            else:
                self._heartbeat.beat(self._deps.clock.now())
        except Exception:
            log.exception("mpesa_worker_heartbeat_failed")
            return
        self._last_beat_s = now_s

    def _run(self) -> None:
        next_reconcile = time.monotonic()
        while not self._stopping.is_set():
            self._beat()
            self._wake.clear()  # a wake during the pass below makes the next wait return at once
            reconcile_now = time.monotonic() >= next_reconcile
            if reconcile_now:
                next_reconcile = time.monotonic() + self._reconcile_interval_s
            try:
                report = work_once(self._deps, rng=self._rng, reconcile_now=reconcile_now)
            except Exception:
                # One failed pass (a lock timeout, Daraja down) must not end the worker.
                log.exception("mpesa_worker_failed")
                self._passed(ok=False)
            else:
                self._passed(ok=True)
                if report.outbox.claimed or report.callbacks_retried:
                    log.info(
                        "mpesa_worker",
                        sent=report.outbox.done,
                        retried=report.outbox.retried,
                        dead=report.outbox.dead,
                        callbacks=report.callbacks_retried,
                    )
                full = report.callbacks_retried >= self._deps.policy.batch_max
                if full and report.callbacks_settled:
                    continue  # a full batch, and progress: more are waiting, no pause
            self._wake.wait(self._interval_s)

    def _passed(self, *, ok: bool) -> None:
        if self._on_pass is not None:
            self._on_pass(ok)
