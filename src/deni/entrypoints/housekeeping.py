"""A background thread that runs the loan sweep every few seconds inside `deni serve`.

The sweep is safe to run from every process at once (row locks and dedupe keys), so each API
process may run its own; the worker process that comes with the M-PESA work will take it over.
"""

from __future__ import annotations

import threading

import structlog

from deni.bootstrap import Deni
from deni.services import reminders

log = structlog.get_logger(__name__)
STOP_WAIT_S = 10.0


class Housekeeper:
    def __init__(self, deni: Deni, *, interval_s: float) -> None:
        assert interval_s > 0
        self._deni = deni
        self._interval_s = interval_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deni-housekeeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=STOP_WAIT_S)

    def run_once(self) -> reminders.SweepReport | None:
        try:
            report = reminders.sweep(uow_factory=self._deni.uow, clock=self._deni.clock)
        except Exception:
            # One failed sweep (a lock timeout, a unique clash with another process) must not
            # end the thread: the next run picks up whatever this one missed.
            log.exception("housekeeping_failed")
            return None
        if report.expired or report.reminders or report.funded:
            log.info(
                "housekeeping",
                expired=report.expired,
                reminders=report.reminders,
                funded=report.funded,
            )
        return report

    def _run(self) -> None:
        while not self._stopping.wait(self._interval_s):
            self.run_once()
