"""Wallet-to-wallet transfers per second through the ledger service.

Each transfer is what production code does: `services.ledger.transfer` inside its own unit of
work, one commit each. Client threads pick random pairs among many funded wallets. A variant
spreads the same number of clients over several processes, as N API processes would. Another
hands each transfer to the ledger's entry committer (`ledger.entry_committer`), which writes
the transfers waiting at one moment in one transaction (group commit); each client thread
still waits for its own transfer to be committed before it sends the next.
"""

from __future__ import annotations

import multiprocessing
import queue
import random
import resource
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.synchronize import Event

from sqlalchemy import select

from benchmarks.settings import bench_settings
from benchmarks.stats import percentile
from deni.adapters.db import tables as t
from deni.bootstrap import Deni, bootstrap, database_engine
from deni.domain.errors import InsufficientFunds
from deni.domain.ledger import AccountKind, EntryCode, wallet_account_id
from deni.domain.users import User
from deni.ids import new_id
from deni.services import ledger
from deni.services.ports import StorageBusy

SEED_BATCH = 250
WALLET_START_CENTS = 10_000_000  # KES 100,000 each: random transfers of KES 0.01-10 never run dry
TRANSFER_CENTS_MAX = 1_000
BUSY_RETRIES_MAX = 10
TRANSFERS_PER_THREAD_MAX = 2_000_000  # a hard cap besides the clock
START_DELAY_S = 0.3
JOIN_GRACE_S = 60.0
PROCESS_READY_TIMEOUT_S = 120.0

GROUP_WAIT_TIMEOUT_S = 30.0
Tick = Callable[[float, int], None]  # (seconds elapsed, transfers so far) for a progress bar
TransferFn = Callable[[Deni, str, str, int], None]  # (deni, source, target, amount_cents)


@dataclass(frozen=True, slots=True)
class TransferRun:
    backend: str
    clients: int
    processes: int
    wallets: int
    seconds: float
    transfers: int
    insufficient: int
    busy_retries: int
    all_transfers: int  # including the warm-up, for CPU per transfer over the whole run
    client_cpu_s: float  # CPU the transferring process(es) used over the whole run
    samples_ms: list[float] = field(repr=False)
    grouped: bool = False  # through the entry committer (group commit)

    @property
    def per_second(self) -> float:
        return self.transfers / self.seconds

    @property
    def p50_ms(self) -> float:
        return percentile(self.samples_ms, 50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.samples_ms, 99)


def seed_wallets(deni: Deni, *, count: int, pin_hash: str) -> list[str]:
    """`count` users with funded wallets, written in a few big transactions (setup, not timed).

    Users go in through the repositories rather than register_user, so the setup does not pay
    for `count` argon2 hashes; the money goes in through the ledger service as deposits.
    """
    wallet_ids: list[str] = []
    now = datetime.now(UTC)
    for start in range(0, count, SEED_BATCH):
        with deni.uow() as uow:
            for i in range(start, min(start + SEED_BATCH, count)):
                user = User(new_id(), f"2547{i:08d}", f"Bench {i}", "en", pin_hash, now)
                user.prove_phone(now)  # as USSD registration does: they lend and borrow
                uow.users.add(user)
                ledger.open_wallet(uow, user_id=user.id, now=now)
                wallet_id = wallet_account_id(user.id)
                ledger.credit_from_mpesa(
                    uow,
                    wallet_id=wallet_id,
                    amount_cents=WALLET_START_CENTS,
                    receipt=f"SEED{i:08d}",
                    now=now,
                )
                wallet_ids.append(wallet_id)
            uow.commit()
    return wallet_ids


def wallet_ids_in(deni: Deni) -> list[str]:
    with database_engine(deni).connect() as connection:
        query = select(t.accounts.c.id).where(t.accounts.c.kind == AccountKind.WALLET.value)
        return sorted(connection.execute(query).scalars())


def run_transfers(
    deni: Deni,
    *,
    backend: str,
    wallet_ids: list[str],
    clients: int,
    seconds: float,
    warmup_s: float,
    start_at: float | None = None,
    tick: Tick | None = None,
    transfer: TransferFn | None = None,
) -> TransferRun:
    """`clients` threads transfer from `start_at` (time.monotonic) for warmup_s + seconds,
    each with `transfer` (by default `transfer_once`: a transaction of its own).

    Only transfers that finish inside the last `seconds` count.
    """
    transfer_fn = transfer or transfer_once
    start = start_at if start_at is not None else time.monotonic() + START_DELAY_S
    counted_from, deadline = start + warmup_s, start + warmup_s + seconds
    finished: list[list[tuple[float, float]]] = [[] for _ in range(clients)]
    insufficient, busy = [0] * clients, [0] * clients
    failures: list[BaseException] = []

    def client(index: int) -> None:
        rng = random.Random(index)  # noqa: S311 (picks wallets, not secrets)
        time.sleep(max(0.0, start - time.monotonic()))
        mine = finished[index]
        try:
            while time.monotonic() < deadline and len(mine) < TRANSFERS_PER_THREAD_MAX:
                source, target = rng.sample(wallet_ids, 2)
                began = time.monotonic()
                for _ in range(BUSY_RETRIES_MAX):
                    try:
                        transfer_fn(deni, source, target, rng.randint(1, TRANSFER_CENTS_MAX))
                    except StorageBusy:
                        busy[index] += 1
                        continue
                    except InsufficientFunds:
                        insufficient[index] += 1
                    break
                ended = time.monotonic()
                mine.append((ended, ended - began))
        except BaseException as error:
            failures.append(error)
            raise

    threads = [
        threading.Thread(target=client, args=(i,), name=f"bench-{i}", daemon=True)
        for i in range(clients)
    ]
    cpu_before = _own_cpu_s()
    for thread in threads:
        thread.start()
    hard_stop = deadline + JOIN_GRACE_S
    while any(t.is_alive() for t in threads) and time.monotonic() < hard_stop:
        time.sleep(0.1)
        if tick is not None:
            tick(max(0.0, time.monotonic() - start), sum(len(f) for f in finished))
    for thread in threads:
        thread.join(timeout=max(0.0, hard_stop - time.monotonic()))
    if any(t.is_alive() for t in threads):
        raise RuntimeError("transfer threads did not stop in time")
    if failures:
        raise RuntimeError("a transfer thread failed") from failures[0]
    samples = [lat * 1000 for per in finished for (end, lat) in per if counted_from <= end]
    return TransferRun(
        backend=backend,
        clients=clients,
        processes=1,
        wallets=len(wallet_ids),
        seconds=seconds,
        transfers=len(samples),
        insufficient=sum(insufficient),
        busy_retries=sum(busy),
        all_transfers=sum(len(f) for f in finished),
        client_cpu_s=_own_cpu_s() - cpu_before,
        samples_ms=samples,
        grouped=transfer is not None,
    )


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def transfer_once(deni: Deni, source: str, target: str, amount_cents: int) -> None:
    with deni.uow() as uow:
        ledger.transfer(
            uow,
            source_account_id=source,
            target_account_id=target,
            amount_cents=amount_cents,
            code=EntryCode.TRANSFER,
            idempotency_key=f"bench:{uuid.uuid4()}",
            cause_type="bench",
            cause_id="transfer",
            now=deni.clock.now(),
        )
        uow.commit()


@contextmanager
def group_committed(deni: Deni) -> Iterator[TransferFn]:
    """A TransferFn through a started entry committer, stopped on the way out."""
    committer = ledger.entry_committer(deni.uow, deni.clock)
    committer.start()

    def transfer(deni: Deni, source: str, target: str, amount_cents: int) -> None:
        draft = ledger.wallet_transfer(
            source_wallet_id=source,
            target_wallet_id=target,
            amount_cents=amount_cents,
            idempotency_key=f"bench:{uuid.uuid4()}",
            cause_type="bench",
            cause_id="transfer",
        )
        committer.submit(draft).result(timeout=GROUP_WAIT_TIMEOUT_S)

    try:
        yield transfer
    finally:
        committer.stop()


def run_transfer_processes(
    database_url: str,
    *,
    backend: str,
    processes: int,
    threads_per_process: int,
    seconds: float,
    warmup_s: float,
    tick: Tick | None = None,
) -> TransferRun:
    """The same workload from `processes` processes of `threads_per_process` threads each."""
    context = multiprocessing.get_context("spawn")
    ready: multiprocessing.Queue[int] = context.Queue()
    results: multiprocessing.Queue[TransferRun | str] = context.Queue()
    go = context.Event()
    start_at = context.Value("d", 0.0)
    workers = [
        context.Process(
            target=_process_main,
            args=(database_url, backend, threads_per_process, seconds, warmup_s),
            kwargs={"ready": ready, "go": go, "start_at": start_at, "results": results},
            daemon=True,
        )
        for _ in range(processes)
    ]
    try:
        for worker in workers:
            worker.start()
        for _ in workers:
            ready.get(timeout=PROCESS_READY_TIMEOUT_S)
        start = time.monotonic() + START_DELAY_S
        start_at.value = start
        go.set()
        runs: list[TransferRun] = []
        hard_stop = start + warmup_s + seconds + JOIN_GRACE_S
        while len(runs) < processes and time.monotonic() < hard_stop:
            try:
                result = results.get(timeout=0.1)
            except queue.Empty:
                result = None
            if isinstance(result, str):
                raise RuntimeError(f"a transfer process failed: {result}")
            if result is not None:
                runs.append(result)
            if tick is not None:
                tick(max(0.0, time.monotonic() - start), sum(r.transfers for r in runs))
        if len(runs) < processes:
            raise RuntimeError("transfer processes did not report in time")
    finally:
        for worker in workers:
            worker.join(timeout=5)
            if worker.is_alive():
                worker.terminate()
                worker.join(timeout=5)
    return TransferRun(
        backend=backend,
        clients=processes * threads_per_process,
        processes=processes,
        wallets=runs[0].wallets,
        seconds=seconds,
        transfers=sum(r.transfers for r in runs),
        insufficient=sum(r.insufficient for r in runs),
        busy_retries=sum(r.busy_retries for r in runs),
        all_transfers=sum(r.all_transfers for r in runs),
        client_cpu_s=sum(r.client_cpu_s for r in runs),
        samples_ms=[s for r in runs for s in r.samples_ms],
    )


def _process_main(
    database_url: str,
    backend: str,
    clients: int,
    seconds: float,
    warmup_s: float,
    *,
    ready: multiprocessing.Queue[int],
    go: Event,
    start_at: multiprocessing.sharedctypes.Synchronized[float],
    results: multiprocessing.Queue[TransferRun | str],
) -> None:
    deni = bootstrap(bench_settings(database_url, pool_size=clients))
    try:
        wallet_ids = wallet_ids_in(deni)
        ready.put(multiprocessing.current_process().pid or 0)
        if not go.wait(timeout=PROCESS_READY_TIMEOUT_S):
            results.put("never told to start")
            return
        run = run_transfers(
            deni,
            backend=backend,
            wallet_ids=wallet_ids,
            clients=clients,
            seconds=seconds,
            warmup_s=warmup_s,
            start_at=start_at.value,
        )
        results.put(run)
    except Exception as error:
        results.put(repr(error))
    finally:
        deni.close()
