"""Background housekeeping in a thread: SMS and Web Push delivery every few seconds, the loan
sweep every minute or so, and with it the pruning of what must not be kept (idempotency keys
past their retention, hashes of expired reset codes, the fake outbox's sealed texts, the sync
log).
Bootstrap starts it in a serving process (`deni serve`, the embedded default) and in
`deni worker` when DENI_SWEEP_INTERVAL_S or DENI_SMS_INTERVAL_S is above zero.

Both jobs are safe to run from every process at once (leases, row locks and dedupe keys); in
production, turn them off on the API processes (DENI_SWEEP_INTERVAL_S=0, DENI_SMS_INTERVAL_S=0)
and let the worker processes do them.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import structlog

from deni.adapters.sessions import SqlSessionStore
from deni.adapters.sms import DatabaseSmsOutbox
from deni.services import idempotency, phone_proof, pin_reset, push, reminders, sms
from deni.services.sync import pull as sync_pull

if TYPE_CHECKING:
    from deni.bootstrap import Deni

log = structlog.get_logger(__name__)
STOP_WAIT_S = 10.0


class Housekeeper:
    def __init__(self, deni: Deni, *, interval_s: float, sms_interval_s: float = 0.0) -> None:
        assert interval_s >= 0
        assert sms_interval_s >= 0
        assert interval_s > 0 or sms_interval_s > 0, "nothing to do"
        self._deni = deni
        self._interval_s = interval_s
        self._sms_interval_s = sms_interval_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deni-housekeeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=STOP_WAIT_S)

    def run_once(self) -> reminders.SweepReport | None:
        deni = self._deni
        try:
            report = reminders.sweep(
                deni,
            )
            if isinstance(deni.sessions, SqlSessionStore):  # memory and Redis expire by themselves
                deni.sessions.purge_expired(now=deni.clock.now())
            pruned = sync_pull.prune_change_log(
                deni,
            )
            forgotten = sync_pull.prune_mutation_results(
                deni,
            )
            secrets_dropped = self._drop_what_secrets_left()
            codes = phone_proof.prune_codes(
                deni,
            )
        except Exception:
            # One failed sweep (a lock timeout, a unique clash with another process) must not
            # end the thread: the next run picks up whatever this one missed.
            log.exception("housekeeping_failed")
            return None
        if report.expired or report.reminders or report.funded or pruned or forgotten or codes:
            log.info(
                "housekeeping",
                expired=report.expired,
                reminders=report.reminders,
                funded=report.funded,
                change_log_pruned=pruned,
                mutation_results_pruned=forgotten,
                phone_codes_pruned=codes,
            )
        if any(secrets_dropped.values()):
            log.info("housekeeping_secrets", **secrets_dropped)
        return report

    def _drop_what_secrets_left(self) -> dict[str, int]:
        """Idempotency keys past their retention, hashes of reset codes that expired unused,
        and the sealed text of fake SMS past their reading window: each in bounded batches."""
        deni = self._deni
        now = deni.clock.now()
        dropped = {
            "idempotency_keys_pruned": idempotency.prune_expired(
                deni,
            ),
            "reset_codes_forgotten": pin_reset.forget_expired_codes(
                deni,
            ),
            "sms_secrets_forgotten": 0,
        }
        if isinstance(deni.sms, DatabaseSmsOutbox):  # Africa's Talking: nothing kept here
            dropped["sms_secrets_forgotten"] = deni.sms.forget_secrets(now=now)
        return dropped

    def deliver_sms(self) -> sms.SmsReport | None:
        deni = self._deni
        try:
            report = sms.send_pending_sms(queue=deni.sms_queue, sender=deni.sms, clock=deni.clock)
        except Exception:
            log.exception("sms_delivery_failed")  # the next tick retries; leases expire
            return None
        if report.sent or report.failed:
            log.info("sms_delivery", sent=report.sent, failed=report.failed)
        return report

    def deliver_push(self) -> push.PushReport | None:
        """Web Push to the web app's subscribers, on the same tick as SMS (services/push.py)."""
        try:
            report = push.deliver(self._deni.push)
        except Exception:
            log.exception("push_delivery_failed")  # the next tick retries; leases expire
            return None
        if report.sent or report.failed or report.gone:
            log.info("push_delivery", sent=report.sent, failed=report.failed, gone=report.gone)
        return report

    def _run(self) -> None:
        tick_s = min(i for i in (self._interval_s, self._sms_interval_s) if i > 0)
        next_sweep = time.monotonic() + self._interval_s
        while not self._stopping.wait(tick_s):
            if self._sms_interval_s > 0:
                self.deliver_sms()
                self.deliver_push()
            if self._interval_s > 0 and time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + self._interval_s
                self.run_once()
