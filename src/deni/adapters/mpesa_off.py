"""M-PESA switched off (DENI_MPESA unset, the default of `deni serve`): what a channel asks of
M-PESA (a USSD top-up, withdrawal or repayment) is kept in this process's memory, once per
key, and sent nowhere. Bootstrap wires it instead of the outbox (services/mpesa.MpesaOutbox)
whenever M-PESA is off: a USSD journey that asks for money ends as it would with M-PESA on and
is audited, but no money moves. Tests read `requests` to see what a journey asked for.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

from deni.services.ports import UnitOfWork

# Kept in memory until the process ends: bounded, so a long-running server cannot grow it.
RECORDS_MAX = 10_000


@dataclass(frozen=True, slots=True)
class MpesaRequest:
    kind: str  # "top_up" | "withdrawal" | "stk_repayment"
    user_id: str
    amount_cents: int
    idempotency_key: str
    requested_at: datetime
    loan_id: str | None = None


class MpesaOffRequests:
    def __init__(self) -> None:
        self.requests: list[MpesaRequest] = []
        self._keys: set[str] = set()
        self._lock = threading.Lock()

    def request_top_up(
        self,
        uow: UnitOfWork,
        *,
        user_id: str,
        amount_cents: int,
        idempotency_key: str,
        now: datetime,
    ) -> None:
        self._record(MpesaRequest("top_up", user_id, amount_cents, idempotency_key, now))

    def request_withdrawal(
        self,
        uow: UnitOfWork,
        *,
        user_id: str,
        amount_cents: int,
        idempotency_key: str,
        now: datetime,
    ) -> None:
        self._record(MpesaRequest("withdrawal", user_id, amount_cents, idempotency_key, now))

    def request_stk_repayment(
        self,
        uow: UnitOfWork,
        *,
        user_id: str,
        loan_id: str,
        amount_cents: int,
        idempotency_key: str,
        now: datetime,
    ) -> None:
        self._record(
            MpesaRequest("stk_repayment", user_id, amount_cents, idempotency_key, now, loan_id)
        )

    def _record(self, request: MpesaRequest) -> None:
        assert request.amount_cents > 0
        with self._lock:
            if request.idempotency_key in self._keys:
                return
            assert len(self.requests) < RECORDS_MAX, "M-PESA is off: kept in memory, bounded"
            self._keys.add(request.idempotency_key)
            self.requests.append(request)
