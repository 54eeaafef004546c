"""How long money a callback claims waits for M-PESA's confirmation before it is spendable.

    .venv/bin/python -m benchmarks.confirmation_wait [--payments 20] [--callback-delay-s 0.5]

One process, as `make run` has it: the local Daraja sandbox and Deni (SQLite in a temporary
directory, the in-process worker polling every second and woken by each stored callback) on
loopback HTTP, on the real clock. Customers pay the paybill one after another, each to a
member's phone number; the sandbox sends each confirmation, and then each Transaction Status
result, `--callback-delay-s` after the request that causes it (Safaricom's take seconds). The
wait measured per payment is Deni's own record (payment_claims.confirm_wait_ms): from the
confirmation stored to the Transaction Status answer that confirmed it applied. Bounded: at
most `--payments` payments, and each waits at most WAIT_S_MAX.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.api_latency import free_port
from benchmarks.stats import percentile
from deni.adapters.db.migrate import upgrade
from deni.bootstrap import Deni, bootstrap, database_engine
from deni.config import Settings
from deni.entrypoints.api.app import create_app
from deni.sandbox.app import SandboxConfig, create_sandbox_app
from deni.sandbox.client import SandboxAdmin
from deni.sandbox.server import BackgroundServer
from deni.services import users

WAIT_S_MAX = 30.0
POLL_S = 0.02
TOKEN = "0123456789abcdef0123456789abcdef"  # noqa: S105 (a local run's callback token)


def measure(payments: int, callback_delay_s: float) -> list[int]:
    assert 1 <= payments <= 1_000
    sandbox_app = create_sandbox_app(SandboxConfig(callback_delay_s=callback_delay_s))
    with tempfile.TemporaryDirectory() as folder, BackgroundServer(sandbox_app) as sandbox:
        with SandboxAdmin(sandbox.url) as admin:
            certificate = admin.certificate_pem().decode()
        port = free_port()
        settings = Settings(
            database_url=f"sqlite:///{Path(folder) / 'deni.sqlite3'}",
            mpesa=True,
            daraja_base_url=sandbox.url,
            daraja_certificate_pem=certificate,
            port=port,
            callback_token=TOKEN,
            log_level="WARNING",
        )
        deni = bootstrap(settings)
        upgrade(database_engine(deni))
        try:
            with BackgroundServer(create_app(deni), port=port), SandboxAdmin(sandbox.url) as admin:
                assert deni.mpesa is not None
                deni.mpesa.gateway.register_c2b_urls()
                return [_one(deni, admin, i) for i in range(payments)]
        finally:
            deni.close()


def _one(deni: Deni, admin: SandboxAdmin, i: int) -> int:
    member = users.register_user(
        deni,
        phone=f"07230{i:05d}",
        name="Bench Member",
        pin="4821",
    )
    paid = admin.pay_paybill(member.phone, 100, member.phone)
    receipt = str(paid["TransID"])
    deadline = time.monotonic() + WAIT_S_MAX
    while time.monotonic() < deadline:
        with deni.uow.read_only() as uow:
            claim = uow.claims.for_receipts([receipt]).get(receipt)
        if claim is not None and claim.confirm_wait_ms is not None:
            return claim.confirm_wait_ms
        time.sleep(POLL_S)
    raise AssertionError(f"payment {receipt} was not confirmed within {WAIT_S_MAX} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--payments", type=int, default=20)
    parser.add_argument("--callback-delay-s", type=float, default=0.5)
    args = parser.parse_args()
    waits = measure(args.payments, args.callback_delay_s)
    print(
        f"{len(waits)} payments, sandbox answering after {args.callback_delay_s} s: "
        f"confirmation wait p50 {percentile(waits, 50):.0f} ms, "
        f"p90 {percentile(waits, 90):.0f} ms, max {max(waits)} ms"
    )


if __name__ == "__main__":
    main()
