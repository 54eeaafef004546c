"""The world a test runs in: Deni (its worker steps called by hand) and the Daraja sandbox."""

from __future__ import annotations

import itertools
import random
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx

from deni.bootstrap import Deni, bootstrap
from deni.bootstrap.worker import WorkReport, work_once
from deni.domain.ledger import PlatformAccount, wallet_account_id
from deni.domain.mpesa import MpesaRequest
from deni.domain.users import User
from deni.sandbox.client import SandboxAdmin
from deni.services import ledger, users
from deni.services.mpesa import payments
from deni.services.mpesa.ports import MpesaDeps
from tests.fakes import ManualClock

CALLBACK_TOKEN = "5f0c7e1a9b3d4c2e8f6a0b1c2d3e4f5a"
# Phones far from the sandbox's magic numbers (2547000xxxxx).
_phones = itertools.count(722_000_001)
_receipts = itertools.count(1)
WORK_ROUNDS_MAX = 10
PIN = "3591"  # every World.user's, unless told otherwise


def next_phone() -> str:
    return f"0{next(_phones)}"


def msisdn(user: User) -> str:
    return user.phone


@dataclass
class World:
    deni: Deni
    admin: SandboxAdmin
    clock: ManualClock
    url: str
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.url, timeout=10)
        org = self.admin.organisation()
        self.start_working_cents = int(org["working_account_cents"])
        self.start_utility_cents = int(org["utility_account_cents"])

    def close(self) -> None:
        self.http.close()

    def snapshot(self) -> None:
        """Start counting conservation from now (for several flows in one world)."""
        org = self.admin.organisation()
        paybill_cents, float_cents = self.ledger_mpesa()
        self.start_working_cents = int(org["working_account_cents"]) - paybill_cents
        self.start_utility_cents = int(org["utility_account_cents"]) - float_cents

    @property
    def deps(self) -> MpesaDeps:
        assert self.deni.mpesa is not None
        return self.deni.mpesa

    # --- people ---------------------------------------------------------------------------

    def user(
        self,
        name: str = "Wanjiku",
        *,
        phone: str | None = None,
        pin: str = PIN,
        language: str = "en",
    ) -> User:
        return users.register_user(
            self.deni,
            phone=phone or next_phone(),
            name=name,
            pin=pin,
            language=language,
            phone_proven=True,
        )

    def headers(self, user: User) -> dict[str, str]:
        token, _ = self.deni.tokens.issue(user_id=user.id, now=self.clock.now())
        return {"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())}

    def post(self, user: User, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.http.post("/api/v1" + path, json=body, headers=self.headers(user))

    def fund(self, user: User, amount_cents: int) -> None:
        """Money that reached the wallet some earlier way (a receipt of its own): the sandbox
        working account grows by the same amount, so conservation checks still hold."""
        receipt = f"SEED{next(_receipts):06d}"
        payments.record_mpesa_payment(
            self.deni,
            user_id=user.id,
            amount_cents=amount_cents,
            receipt=receipt,
        )
        self.start_working_cents -= amount_cents

    def balance(self, user: User) -> int:
        return self.balance_of(user.id)

    def balance_of(self, user_id: str) -> int:
        with self.deni.uow.read_only() as uow:
            return ledger.wallet_balance_cents(uow, user_id=user_id)

    # --- Daraja ---------------------------------------------------------------------------

    def register_c2b(self) -> None:
        self.deps.gateway.register_c2b_urls()

    def hook_url(self, kind: str, token: str = CALLBACK_TOKEN) -> str:
        return f"{self.url}/hooks/{token}/{kind}"

    def work(self, *, reconcile: bool = False) -> WorkReport:
        return work_once(self.deps, rng=self.rng, reconcile_now=reconcile)

    def drain(self) -> None:
        """Send everything due (retries included: the clock jumps past any backoff)."""
        for _ in range(WORK_ROUNDS_MAX):
            report = self.work()
            if report.outbox.claimed == 0:
                return
            self.clock.advance(timedelta(minutes=11))
        raise AssertionError("the outbox did not drain")

    def settle(self) -> None:
        """Send, let the sandbox deliver every callback, and apply what waits."""
        self.drain()
        self.admin.flush()
        self.work()

    def confirm(self) -> None:
        """Money a callback claimed: M-PESA answers the Transaction Status query the worker
        asked (by the receipt), and the worker applies what it confirms."""
        self.admin.flush()
        self.work()

    def reconcile(self, *, rounds: int = 3, step: timedelta = timedelta(minutes=10)) -> None:
        """Let time pass and the reconciler ask Daraja until nothing is left open."""
        for _ in range(rounds):
            self.clock.advance(step)
            self.drain()
            self.work(reconcile=True)
            self.admin.flush()
            self.work()

    def other_worker(self, **settings: Any) -> Deni:
        """Another Deni process on the same database (and clock) whose Daraja settings differ:
        a worker that cannot reach Safaricom, or gives up on it sooner. Close it after use."""
        changed = self.deni.settings.model_copy(update=settings)
        return bootstrap(changed, clock=self.clock, hasher=self.deni.hasher)

    def request(self, request_id: str) -> MpesaRequest:
        with self.deni.uow.read_only() as uow:
            found = uow.mpesa_requests.get(request_id)
        assert found is not None
        return found

    # --- money checks ------------------------------------------------------------------------

    def ledger_mpesa(self) -> tuple[int, int]:
        with self.deni.uow.read_only() as uow:
            paybill = uow.ledger.get_account(PlatformAccount.MPESA_PAYBILL.value)
            float_ = uow.ledger.get_account(PlatformAccount.MPESA_B2C_FLOAT.value)
        assert paybill is not None
        assert float_ is not None
        return paybill.balance_cents, float_.balance_cents

    def assert_conserved(self) -> None:
        """Money is never created, lost or paid twice: the ledger's M-PESA accounts moved
        exactly as the sandbox's organisation accounts did, and the books balance."""
        org = self.admin.organisation()
        paybill_cents, float_cents = self.ledger_mpesa()
        assert int(org["working_account_cents"]) - self.start_working_cents == paybill_cents
        assert int(org["utility_account_cents"]) - self.start_utility_cents == float_cents
        with self.deni.uow.read_only() as uow:
            totals = ledger.check(uow)
        assert totals.postings_sum_cents == 0
        assert totals.unbalanced_entry_ids == ()
        assert totals.mismatched_accounts == ()
        assert totals.negative_wallets == ()

    def wallet_lines(self, user: User) -> list[Any]:
        with self.deni.uow.read_only() as uow:
            return uow.ledger.statement(
                wallet_account_id(user.id), before_posting_id=None, limit=50
            )


def stk_success_body(checkout_request_id: str, receipt: str, amount: int) -> dict[str, object]:
    """A paid STK push's callback, as Daraja posts it."""
    return {
        "Body": {
            "stkCallback": {
                "MerchantRequestID": "29115-34620561-1",
                "CheckoutRequestID": checkout_request_id,
                "ResultCode": 0,
                "ResultDesc": "The service request is processed successfully.",
                "CallbackMetadata": {
                    "Item": [
                        {"Name": "Amount", "Value": amount},
                        {"Name": "MpesaReceiptNumber", "Value": receipt},
                        {"Name": "TransactionDate", "Value": 20261126090102},
                        {"Name": "PhoneNumber", "Value": 254722000001},
                    ]
                },
            }
        }
    }


def b2c_result_body(
    originator_conversation_id: str, code: int, desc: str = "Declined"
) -> dict[str, object]:
    """A B2C result that says the payout failed, as Daraja posts one (anyone can post it)."""
    return {
        "Result": {
            "ResultType": 0,
            "ResultCode": code,
            "ResultDesc": desc,
            "OriginatorConversationID": originator_conversation_id,
            "ConversationID": "AG_20261126_0000forged00000000",
            "TransactionID": "TKQ0000000",
            "ReferenceData": {"ReferenceItem": {"Key": "QueueTimeoutURL", "Value": "x"}},
        }
    }


def c2b_confirmation_body(
    trans_id: str, amount: int, account: str, msisdn: str = "254708374149"
) -> dict[str, object]:
    """A paybill confirmation, as Daraja posts one (anyone can post it)."""
    return {
        "TransactionType": "Pay Bill",
        "TransID": trans_id,
        "TransTime": "20261126090102",
        "TransAmount": f"{amount}.00",
        "BusinessShortCode": "600000",
        "BillRefNumber": account,
        "InvoiceNumber": "",
        "OrgAccountBalance": "",
        "ThirdPartyTransID": "",
        "MSISDN": msisdn,
        "FirstName": "John",
    }
