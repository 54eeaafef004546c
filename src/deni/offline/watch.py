"""Staying on: sync whenever the server can be reached (`deni offline watch`, docs/offline.md).

One loop, bounded by `WatchPolicy.cycles_max`. Each cycle is one whole sync (push, pull,
rebase) whose calls are retried only briefly (`TRY_ATTEMPTS_MAX` within about two seconds: a
refresh whose answer was lost must be sent again within the server's 30 s grace, or the login
ends); the loop's backoff spaces out the rest.

- The server answered: the next sync is `idle_every_s` later, or at once when something new is
  queued on this device meanwhile (another `deni offline` command; the local queue is looked at
  every `local_check_every_s`).
- It did not (no network, a stopped server, 5xx, busy): the next try waits
  `retry_first_s * 2**failures`, capped at `retry_cap_s`, with jitter (half to all of it), so a
  server coming back is found within `retry_cap_s` and a fleet of devices does not knock on it
  all at the same second.
- Signed out or too old a client for the server: the loop ends; waiting cannot fix those.
- `stop` (set by SIGINT or SIGTERM in the CLI) ends the loop between cycles, or cuts a wait
  short; a sync under way finishes first (its HTTP calls have timeouts), so the device's
  database is never left mid-write.

Mutations that need the PIN are not sent from here: a PIN is held only for one sync the person
runs (`deni offline sync`), never for the life of a long-running process. They, and what was
queued after them, wait; every status line says how many.
"""

from __future__ import annotations

import enum
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from deni.offline import queue
from deni.offline.api import Api, ApiError, OfflineError, Transient
from deni.offline.retry import Backoff
from deni.offline.store import Store
from deni.offline.sync import NotLoggedIn, Syncer, SyncFailed, SyncReport, UpgradeRequired

IDLE_EVERY_S: Final = 60.0
RETRY_FIRST_S: Final = 1.0
RETRY_CAP_S: Final = 60.0
LOCAL_CHECK_EVERY_S: Final = 1.0
# A bound on the loop, not a schedule: at least a second a cycle, this is weeks of running.
CYCLES_MAX: Final = 10_000_000
FAILURES_EXPONENT_MAX: Final = 30  # 2**30 s is far past any cap: no overflow, no surprise
TRY_ATTEMPTS_MAX: Final = 3  # per call, within one sync
TRY_BASE_DELAY_S: Final = 0.25
TRY_CAP_DELAY_S: Final = 2.0


@dataclass(frozen=True, slots=True)
class WatchPolicy:
    idle_every_s: float = IDLE_EVERY_S
    retry_first_s: float = RETRY_FIRST_S
    retry_cap_s: float = RETRY_CAP_S
    local_check_every_s: float = LOCAL_CHECK_EVERY_S
    cycles_max: int = CYCLES_MAX

    def __post_init__(self) -> None:
        assert 0.05 <= self.local_check_every_s <= 60.0
        assert self.local_check_every_s <= self.idle_every_s <= 86_400.0
        assert 0.05 <= self.retry_first_s <= self.retry_cap_s <= 3_600.0
        assert 1 <= self.cycles_max <= CYCLES_MAX

    def retry_delay_s(self, failures: int, rng: random.Random) -> float:
        """The wait after `failures` failed syncs in a row (1 or more): half to all of the
        doubled delay, capped."""
        assert failures >= 1
        exponent = min(failures - 1, FAILURES_EXPONENT_MAX)
        ceiling_s = min(self.retry_cap_s, self.retry_first_s * 2**exponent)
        delay_s = rng.uniform(ceiling_s / 2, ceiling_s)
        assert 0 < delay_s <= self.retry_cap_s
        return delay_s


class State(enum.Enum):
    SYNCED = "synced"  # the server answered; everything it could take was sent
    OFFLINE = "offline"  # not reachable, or asked to be tried later
    FAILED = "failed"  # a definite refusal of the whole sync; tried again later all the same
    ENDED = "ended"  # cannot go on: signed out, or the server needs a newer client
    STOPPED = "stopped"  # asked to stop, or the cycle bound reached


@dataclass(frozen=True, slots=True)
class Status:
    state: State
    message: str
    queued: int  # mutations the server has not answered yet
    waiting_for_pin: int = 0
    next_in_s: float | None = None  # when the loop goes on
    report: SyncReport | None = None


@dataclass
class Watch:
    """The loop, for one device database and one server."""

    store: Store
    api: Api
    on_status: Callable[[Status], None]
    policy: WatchPolicy = field(default_factory=WatchPolicy)
    stop: threading.Event = field(default_factory=threading.Event)
    rng: random.Random = field(default_factory=random.Random)
    sleep: Callable[[float], None] = time.sleep  # between the quick tries of one call
    cycles: int = 0  # syncs tried
    synced: int = 0  # of which the server answered

    def run(self) -> Status:
        """Sync until stopped, ended, or `cycles_max` syncs; returns the last status."""
        failures = 0
        for _ in range(self.policy.cycles_max):
            if self.stop.is_set():
                return self._stopped("Stopped")
            status = self._cycle()
            if status.state is State.ENDED:
                self.on_status(status)
                return status
            if status.state is State.SYNCED:
                failures = 0
                wait_s = self.policy.idle_every_s
            else:
                failures += 1
                wait_s = self.policy.retry_delay_s(failures, self.rng)
            self.on_status(_with_next(status, wait_s))
            self._wait(wait_s, wake_on_new_work=status.state is State.SYNCED)
        return self._stopped(f"Stopped after {self.policy.cycles_max} syncs (the loop's bound)")

    def _cycle(self) -> Status:
        self.cycles += 1
        backoff = Backoff(
            attempts_max=TRY_ATTEMPTS_MAX,
            base_delay_s=TRY_BASE_DELAY_S,
            cap_delay_s=TRY_CAP_DELAY_S,
            sleep=self.sleep,
            rng=self.rng,
        )
        syncer = Syncer(self.store, self.api, backoff=backoff, pin=None)
        try:
            report = syncer.sync()
        except (NotLoggedIn, UpgradeRequired) as error:
            return self._status(State.ENDED, error.message)
        except Transient as error:
            return self._status(State.OFFLINE, error.message)
        except SyncFailed as error:
            return self._status(State.FAILED, error.message)
        except ApiError as error:
            return self._status(State.FAILED, f"{error.message} (code: {error.code})")
        except OfflineError as error:
            return self._status(State.FAILED, error.message)
        self.synced += 1
        return self._status(State.SYNCED, _said(report), report=report)

    def _status(self, state: State, message: str, *, report: SyncReport | None = None) -> Status:
        waiting = report.waiting_for_pin if report is not None else self._needing_pin()
        return Status(state, message, self._queued(), waiting, report=report)

    def _stopped(self, message: str) -> Status:
        status = self._status(State.STOPPED, message)
        self.on_status(status)
        return status

    def _queued(self) -> int:
        counts = queue.counts(self.store.db)
        return sum(counts[state] for state in queue.OPEN_STATES)

    def _needing_pin(self) -> int:
        return sum(1 for m in queue.open_mutations(self.store.db) if m.name in queue.NEEDS_PIN)

    def _wait(self, wait_s: float, *, wake_on_new_work: bool) -> None:
        """Wait `wait_s`, or less: until stopped, or (after a good sync) until something new is
        queued on this device."""
        deadline = time.monotonic() + wait_s
        last_id = queue.next_mutation_id(self.store.db)
        checks_max = int(wait_s / self.policy.local_check_every_s) + 1
        for _ in range(checks_max):
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                return
            if self.stop.wait(min(left_s, self.policy.local_check_every_s)):
                return
            if wake_on_new_work and queue.next_mutation_id(self.store.db) != last_id:
                return


def _with_next(status: Status, wait_s: float) -> Status:
    return Status(
        status.state,
        status.message,
        status.queued,
        status.waiting_for_pin,
        next_in_s=wait_s,
        report=status.report,
    )


def _said(report: SyncReport) -> str:
    parts = [f"pushed {report.pushed} ({report.applied} applied"]
    if report.rejected:
        parts.append(f", {len(report.rejected)} rejected")
    if report.conflicts:
        parts.append(f", {report.conflicts} conflicts")
    if report.dead:
        parts.append(f", {report.dead} dead letters")
    if report.replayed:
        parts.append(f", {report.replayed} already done")
    parts.append(f"), pulled {report.changes} change(s)")
    return "".join(parts)
