"""`deni offline watch`: a real `deni` process that stays on and syncs by itself, against a real
Deni server (uvicorn on a loopback port) that is stopped and started again under it.
"""

from __future__ import annotations

import queue as lines_queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deni.bootstrap import Deni
from deni.domain.loans import LoanState
from deni.domain.users import User
from deni.entrypoints.api.app import create_app
from deni.offline import queue
from deni.offline.api import Api
from deni.offline.client import OfflineClient
from deni.offline.store import Store
from deni.offline.sync import Syncer
from deni.offline.watch import WatchPolicy
from deni.sandbox.server import BackgroundServer
from deni.services import queries
from tests.support.builders import fund, register

PIN = "3591"
PORTS = range(18500, 18600)
WAIT_S = 20.0
LINES_MAX = 10_000


def free_port() -> int:
    for port in PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port in {PORTS}")


@dataclass
class Server:
    """Deni on one fixed port, stopped and started again like a server process."""

    deni: Deni
    port: int
    running: BackgroundServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.running is None
        self.running = BackgroundServer(create_app(self.deni), port=self.port)
        self.running.start()

    def stop(self) -> None:
        assert self.running is not None
        self.running.stop()
        self.running = None


@pytest.fixture
def server(deni: Deni) -> Iterator[Server]:
    found = Server(deni, free_port())
    found.start()
    yield found
    if found.running is not None:
        found.stop()


@dataclass
class Watcher:
    """`deni offline watch` in its own process; its output read line by line."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _arrived: lines_queue.Queue[str] = field(default_factory=lines_queue.Queue)

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._arrived.put(line.rstrip("\n"))

    def wait_for(self, text: str, *, after: int = 0) -> int:
        """The index of the first line from `after` on that holds `text`."""
        deadline = time.monotonic() + WAIT_S
        for _ in range(LINES_MAX):
            for index in range(after, len(self.lines)):
                if text in self.lines[index]:
                    return index
            left_s = deadline - time.monotonic()
            assert left_s > 0, f"no line with {text!r} in {WAIT_S} s: {self.lines}"
            try:
                self.lines.append(self._arrived.get(timeout=left_s))
            except lines_queue.Empty:
                continue
        raise AssertionError(f"more than {LINES_MAX} lines: {self.lines[-20:]}")

    def stop(self, signum: int) -> int:
        """Send `signum`; the exit code, once every line it wrote is read."""
        self.process.send_signal(signum)
        code = self.process.wait(timeout=WAIT_S)
        self.close()
        return code

    def close(self) -> None:
        self._reader.join(WAIT_S)
        assert not self._reader.is_alive()
        assert self.process.stdout is not None
        self.process.stdout.close()
        while not self._arrived.empty():
            self.lines.append(self._arrived.get())


@pytest.fixture
def start_watch(tmp_path: Path) -> Iterator[Callable[[str], Watcher]]:
    started: list[Watcher] = []

    def start(phone: str) -> Watcher:
        deni_command = Path(sys.executable).parent / "deni"
        process = subprocess.Popen(  # noqa: S603 (our own command, fixed arguments)
            [
                str(deni_command),
                "offline",
                "watch",
                "--home",
                str(tmp_path),
                "--phone",
                phone,
                "--every-s",
                "30",
                "--retry-max-s",
                "1",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        watcher = Watcher(process)
        started.append(watcher)
        return watcher

    yield start
    for watcher in started:
        if watcher.process.poll() is None:
            watcher.process.kill()
            watcher.process.wait(timeout=WAIT_S)
        if watcher.process.stdout is not None and not watcher.process.stdout.closed:
            watcher.close()


def logged_in_device(server: Server, user: User, home: Path) -> OfflineClient:
    client = OfflineClient(Store(home / f"{user.phone}.sqlite3"))
    with Api(server.url) as api:
        client.login(url=server.url, phone=user.phone, pin=PIN, api=api)
    return client


def loan_ids(deni: Deni, user: User) -> list[str]:
    return sorted(
        view.loan.id for view in queries.list_loans(deni, user_id=user.id, role="borrower")
    )


def test_queued_work_lands_once_when_the_server_comes_back_then_stops_on_sigterm(
    deni: Deni, server: Server, tmp_path: Path, start_watch: Callable[[str], Watcher]
) -> None:
    borrower = register(deni, name="Wanjiku Borrower", pin=PIN)
    lender = register(deni, name="Otieno Lender", pin=PIN)
    fund(deni, lender, 100_000)
    device = logged_in_device(server, borrower, tmp_path)
    server.stop()  # the network goes
    first = device.request_loan(lender_phone=lender.phone, principal_cents=30_000, term_days=7)

    watcher = start_watch(borrower.phone)
    offline_at = watcher.wait_for("offline: Cannot reach")
    again = watcher.wait_for("offline: Cannot reach", after=offline_at + 1)  # it keeps trying
    assert "1 queued; next try in" in watcher.lines[again]
    assert loan_ids(deni, borrower) == []

    server.start()  # the server is back: nobody runs `sync`
    synced_at = watcher.wait_for("synced: pushed 1 (1 applied)", after=again)
    assert "0 queued; next sync in" in watcher.lines[synced_at]
    assert loan_ids(deni, borrower) == [first.args["loan_id"]]
    assert queue.counts(device.store.db)["applied"] == 1

    # Something queued while it waits is sent at once, not at the next 30 s tick.
    second = device.request_loan(lender_phone=lender.phone, principal_cents=20_000, term_days=7)
    watcher.wait_for("synced: pushed 1 (1 applied)", after=synced_at + 1)
    assert loan_ids(deni, borrower) == sorted([first.args["loan_id"], second.args["loan_id"]])

    # The server goes again; what is queued meanwhile waits for it, and lands once.
    server.stop()
    third = device.request_loan(lender_phone=lender.phone, principal_cents=10_000, term_days=7)
    down_at = watcher.wait_for("offline: Cannot reach", after=synced_at + 1)
    assert "1 queued" in watcher.lines[down_at]
    server.start()
    back_at = watcher.wait_for("synced: pushed 1 (1 applied)", after=down_at)
    assert watcher.stop(signal.SIGTERM) == 0
    assert any("SIGTERM: stopping" in line for line in watcher.lines[back_at:])
    assert "stopped: Stopped; 0 queued" in watcher.lines[-1]
    ids = [first.args["loan_id"], second.args["loan_id"], third.args["loan_id"]]
    assert loan_ids(deni, borrower) == sorted(ids)  # each once, through every outage


def test_ctrl_c_stops_it_cleanly_while_it_waits_for_the_server(
    deni: Deni, server: Server, tmp_path: Path, start_watch: Callable[[str], Watcher]
) -> None:
    borrower = register(deni, name="Wanjiku Borrower", pin=PIN)
    lender = register(deni, name="Otieno Lender", pin=PIN)
    device = logged_in_device(server, borrower, tmp_path)
    server.stop()
    device.request_loan(lender_phone=lender.phone, principal_cents=30_000, term_days=7)
    watcher = start_watch(borrower.phone)
    watcher.wait_for("offline: Cannot reach")
    started_s = time.monotonic()
    assert watcher.stop(signal.SIGINT) == 0
    assert time.monotonic() - started_s < 5.0  # a wait is cut short, not slept out
    assert "stopped: Stopped; 1 queued" in watcher.lines[-1]
    assert queue.counts(device.store.db)["sent"] == 1  # kept for the next sync


def test_a_queued_approval_waits_for_the_pin_and_what_follows_it_too(
    deni: Deni, server: Server, tmp_path: Path, start_watch: Callable[[str], Watcher]
) -> None:
    borrower = register(deni, name="Wanjiku Borrower", pin=PIN)
    lender = register(deni, name="Otieno Lender", pin=PIN)
    fund(deni, lender, 100_000)
    asker = logged_in_device(server, borrower, tmp_path)
    asked = asker.request_loan(lender_phone=lender.phone, principal_cents=30_000, term_days=7)
    with Api(server.url) as api:
        Syncer(asker.store, api).sync()
    device = logged_in_device(server, lender, tmp_path)
    with Api(server.url) as api:
        Syncer(device.store, api).sync()
    device.approve(str(asked.args["loan_id"]))
    device.update_profile(name="Otieno Mkopeshaji")  # queued after the approval

    watcher = start_watch(lender.phone)
    at = watcher.wait_for("synced: pushed 0 (0 applied)")
    assert "2 queued" in watcher.lines[at]
    assert watcher.wait_for("1 change(s) wait for your PIN", after=at) == at + 1
    assert watcher.stop(signal.SIGTERM) == 0
    [view] = queries.list_loans(deni, user_id=borrower.id, role="borrower")
    assert view.loan.state is LoanState.REQUESTED  # nothing moved without the PIN
    with deni.uow.read_only() as uow:
        unchanged = uow.users.get(lender.id)
    assert unchanged is not None
    assert unchanged.name == "Otieno Lender"  # nor what was queued after it


@pytest.mark.parametrize("seed", range(20))
def test_the_wait_between_tries_doubles_up_to_its_cap_with_jitter(seed: int) -> None:
    policy = WatchPolicy(retry_first_s=1.0, retry_cap_s=60.0)
    rng = random.Random(seed)
    for failures, ceiling_s in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (10**6, 60.0)]:
        delay_s = policy.retry_delay_s(failures, rng)
        assert ceiling_s / 2 <= delay_s <= ceiling_s


def test_a_policy_out_of_bounds_is_refused() -> None:
    with pytest.raises(AssertionError):
        WatchPolicy(retry_first_s=10.0, retry_cap_s=1.0)
    with pytest.raises(AssertionError):
        WatchPolicy(cycles_max=0)
