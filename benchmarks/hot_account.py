"""The hot platform account: how fast can the ledger post when every entry touches one row?

Every M-PESA deposit debits `platform:mpesa_paybill` (`ledger.mpesa_deposit`), every payout
goes through `platform:payouts_in_flight` and `platform:mpesa_b2c_float`. A posting locks its
accounts' rows (`SELECT ... FOR UPDATE` in id order) and rewrites their cached balances, so
deposits from many threads queue on one row lock. This bench measures that queue on
PostgreSQL, against wallet-to-wallet transfers between random pairs of many wallets (almost
never the same row) as the yardstick:

- spread, one transaction each: `services.ledger.transfer` (benchmarks.transfers' default);
- hot, one transaction each: `services.ledger.credit_from_mpesa` to a random wallet, so every
  entry locks and updates the paybill row;
- both again through the ledger's entry committer (group commit, docs/adr/0007): the entries
  waiting at one moment are locked and written in one transaction;
- hot, split: the same deposits, one transaction each, debiting one of SPLIT_WAYS platform
  sub-accounts picked at random (added by this bench only; Deni has one paybill account): what
  splitting a hot account into N rows summed for reporting would give.

    .venv/bin/python -m benchmarks.hot_account [--threads 1,4,8,16] [--seconds 3]

It drops and recreates its own database (`deni_test_scaling` unless --database says other).
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from benchmarks import databases, machine, transfers
from benchmarks.settings import bench_settings
from deni.bootstrap import Deni, bootstrap
from deni.domain.ledger import (
    MPESA_RECEIPT_CAUSE,
    Account,
    AccountKind,
    EntryCode,
    EntryDraft,
    PlatformAccount,
    movement,
)
from deni.services import ledger

DATABASE_DEFAULT = "deni_test_scaling"
WALLETS_DEFAULT = 2_000
THREADS_DEFAULT = "1,4,8,16"
THREADS_MAX = 64
SECONDS_MAX = 120.0
GROUP_WAIT_TIMEOUT_S = 30.0
SPLIT_WAYS = 8


def deposit_once(deni: Deni, _source: str, target: str, amount_cents: int) -> None:
    """A paybill deposit to `target` in a transaction of its own (the source is unused)."""
    with deni.uow() as uow:
        ledger.credit_from_mpesa(
            uow,
            wallet_id=target,
            amount_cents=amount_cents,
            receipt=f"HOT{uuid.uuid4().hex[:20].upper()}",
            now=deni.clock.now(),
        )
        uow.commit()


def split_accounts(deni: Deni) -> list[str]:
    """SPLIT_WAYS sub-accounts of the paybill, debit-normal like it, opened once."""
    paybill = PlatformAccount.MPESA_PAYBILL
    ids = [f"{paybill.value}:{k}" for k in range(SPLIT_WAYS)]
    with deni.uow() as uow:
        for account_id in ids:
            if uow.ledger.get_account(account_id) is None:
                account = Account(
                    id=account_id,
                    kind=AccountKind.PLATFORM,
                    normal_side=paybill.normal_side,
                    owner_id=None,
                    no_overdraft=False,
                    balance_cents=0,
                )
                uow.ledger.add_account(account, deni.clock.now())
        uow.commit()
    return ids


def deposit_split(sub_accounts: list[str]) -> transfers.TransferFn:
    def deposit(deni: Deni, _source: str, target: str, amount_cents: int) -> None:
        receipt = f"HOT{uuid.uuid4().hex[:20].upper()}"
        sub_account = sub_accounts[int(receipt[3:11], 16) % len(sub_accounts)]
        postings = movement(
            debit_account_id=sub_account, credit_account_id=target, amount_cents=amount_cents
        )
        draft = EntryDraft(
            f"mpesa:{receipt}",
            EntryCode.DEPOSIT,
            postings,
            MPESA_RECEIPT_CAUSE,
            receipt,
            memo=receipt,
        )
        with deni.uow() as uow:
            ledger.post_entry(uow, draft, now=deni.clock.now())
            uow.commit()

    return deposit


@contextmanager
def one_each(fn: transfers.TransferFn) -> Iterator[transfers.TransferFn]:
    yield fn


@contextmanager
def deposits_grouped(deni: Deni) -> Iterator[transfers.TransferFn]:
    """Paybill deposits through a started entry committer, stopped on the way out."""
    committer = ledger.entry_committer(deni.uow, deni.clock)
    committer.start()

    def deposit(_deni: Deni, _source: str, target: str, amount_cents: int) -> None:
        receipt = f"HOT{uuid.uuid4().hex[:20].upper()}"
        draft = ledger.mpesa_deposit(target, amount_cents, receipt)
        committer.submit(draft).result(timeout=GROUP_WAIT_TIMEOUT_S)

    try:
        yield deposit
    finally:
        committer.stop()


def _mode(deni: Deni, name: str) -> AbstractContextManager[transfers.TransferFn]:
    if name == "spread":
        return one_each(transfers.transfer_once)
    if name == "hot":
        return one_each(deposit_once)
    if name == "spread-grouped":
        return transfers.group_committed(deni)
    if name == "hot-split":
        return one_each(deposit_split(split_accounts(deni)))
    assert name == "hot-grouped", name
    return deposits_grouped(deni)


MODES = ("spread", "hot", "hot-split", "spread-grouped", "hot-grouped")


def _threads(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or any(not 1 <= n <= THREADS_MAX for n in counts):
        raise argparse.ArgumentTypeError(f"thread counts between 1 and {THREADS_MAX}")
    return counts


def commit_short() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 (from PATH)
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip()


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--threads", type=_threads, default=_threads(THREADS_DEFAULT))
    parser.add_argument("--seconds", type=float, default=3.0, help="counted, per point")
    parser.add_argument("--warmup", type=float, default=0.5, help="not counted, per point")
    parser.add_argument("--wallets", type=int, default=WALLETS_DEFAULT)
    parser.add_argument("--database", default=DATABASE_DEFAULT)
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args(argv)
    assert 0 < args.seconds <= SECONDS_MAX
    modes = [m for m in args.modes.split(",") if m]
    assert modes, "at least one mode"
    assert set(modes) <= set(MODES), modes

    described = machine.describe()
    print(f"commit {commit_short()}; {described.cores} cores, {described.cpu_model}")
    print(f"{described.postgres}")
    print(f"{described.postgres_settings}")
    print(f"load average before (1, 5, 15 min): {load_average()}")

    url = databases.recreate_pg_database(args.database)
    databases.migrate(url)
    deni = bootstrap(bench_settings(url, pool_size=max(args.threads) + 2))
    try:
        wallet_ids = transfers.seed_wallets(
            deni, count=args.wallets, pin_hash=deni.hasher.hash("4821")
        )
        print(f"{len(wallet_ids)} wallets seeded; {args.seconds:g} s counted per point")
        print(f"{'mode':<16}{'threads':>8}{'per s':>10}{'p50 ms':>10}{'p99 ms':>10}{'busy':>7}")
        for name, clients in itertools.product(modes, args.threads):
            with _mode(deni, name) as fn:
                run = transfers.run_transfers(
                    deni,
                    backend="PostgreSQL",
                    wallet_ids=wallet_ids,
                    clients=clients,
                    seconds=args.seconds,
                    warmup_s=args.warmup,
                    transfer=fn,
                )
            print(
                f"{name:<16}{clients:>8}{run.per_second:>10.0f}{run.p50_ms:>10.1f}"
                f"{run.p99_ms:>10.1f}{run.busy_retries:>7}",
                flush=True,
            )
            time.sleep(0.2)
        with deni.uow() as uow:
            totals = ledger.check(uow)
            paybill = uow.ledger.get_account(PlatformAccount.MPESA_PAYBILL.value)
        assert paybill is not None
        print(
            f"books: postings sum {totals.postings_sum_cents}, unbalanced "
            f"{len(totals.unbalanced_entry_ids)}, mismatched {len(totals.mismatched_accounts)}; "
            f"{totals.entries_checked} entries; paybill balance {paybill.balance_cents} cents"
        )
    finally:
        deni.close()
        databases.drop_pg_database(args.database)
    print(f"load average after (1, 5, 15 min): {load_average()}")


if __name__ == "__main__":
    main()
