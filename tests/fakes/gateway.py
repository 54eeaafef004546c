"""Daraja as a test scripts it: the `MpesaGateway` port, recording every call.

Each call answers with what the test queued for it (`will`), else what the test said it always
answers (`always`), else the happy answer: a push, a payout or a reversal accepted, STK Query
saying paid, a Transaction Status or balance query acknowledged.
A queued GatewayError is raised, with the outcome the test chose (refused, busy, not sent,
unknown). Callback bodies are the events themselves as JSON (`body`): parsing Daraja's own
bodies is the Daraja adapter's, tested in tests/unit/daraja.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from deni.domain.mpesa import SUCCESS
from deni.services.mpesa.ports import (
    B2CResultEvent,
    BalanceResultEvent,
    C2BEvent,
    CallbackEvent,
    CallbackKind,
    ConversationAck,
    GatewayError,
    GatewayOutcome,
    MalformedCallbackError,
    OtherResultEvent,
    PulledPayment,
    PullPage,
    QueueTimeoutEvent,
    ReversalResultEvent,
    StatusResultEvent,
    StkAck,
    StkQueryAnswer,
    StkResultEvent,
)

PULL_PAGE_ROWS = 3
SCRIPTED_MAX = 100

# Which events each callback path carries (the Daraja adapter's parsers, by kind).
_EVENTS: dict[CallbackKind, type[Any]] = {
    CallbackKind.STK: StkResultEvent,
    CallbackKind.B2C_RESULT: B2CResultEvent,
    CallbackKind.B2C_TIMEOUT: QueueTimeoutEvent,
    CallbackKind.C2B_VALIDATION: C2BEvent,
    CallbackKind.C2B_CONFIRMATION: C2BEvent,
    CallbackKind.STATUS_RESULT: StatusResultEvent,
    CallbackKind.BALANCE_RESULT: BalanceResultEvent,
    CallbackKind.BALANCE_TIMEOUT: OtherResultEvent,
    CallbackKind.STATUS_TIMEOUT: OtherResultEvent,
    CallbackKind.REVERSAL_RESULT: ReversalResultEvent,
    CallbackKind.REVERSAL_TIMEOUT: QueueTimeoutEvent,
}


def refused(message: str = "Bad Request: invalid phone", code: str = "400.002.02") -> GatewayError:
    return GatewayError(message, outcome=GatewayOutcome.REFUSED, code=code)


def busy(message: str = "rate limited") -> GatewayError:
    return GatewayError(message, outcome=GatewayOutcome.BUSY, code="429")


def not_sent(message: str = "connection refused") -> GatewayError:
    return GatewayError(message, outcome=GatewayOutcome.NOT_SENT)


def unknown(message: str = "read timeout") -> GatewayError:
    return GatewayError(message, outcome=GatewayOutcome.UNKNOWN)


def paid() -> StkQueryAnswer:
    return StkQueryAnswer(SUCCESS, "The service request is processed successfully.")


def not_paid(code: str = "1032") -> StkQueryAnswer:
    return StkQueryAnswer(code, "Request cancelled by user")


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    kwargs: dict[str, Any]


@dataclass
class FakeMpesaGateway:
    calls: list[Call] = field(default_factory=list)
    # What the Pull API lists: the payments completed in the asked window, a page at a time.
    listed: list[PulledPayment] = field(default_factory=list)
    unreadable_rows: int = 0  # counted on the first page but not returned, as Daraja may
    _scripted: dict[str, deque[object]] = field(default_factory=lambda: defaultdict(deque))
    _always: dict[str, object] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def will(self, method: str, *answers: object) -> None:
        """Queue the next answers of `method`: a value to return or a GatewayError to raise."""
        assert callable(getattr(self, method, None)), method
        assert len(self._scripted[method]) + len(answers) <= SCRIPTED_MAX
        self._scripted[method].extend(answers)

    def always(self, method: str, answer: object) -> None:
        """Answer `method` so whenever nothing is queued for it (instead of the happy answer)."""
        assert callable(getattr(self, method, None)), method
        self._always[method] = answer

    def called(self, method: str) -> list[dict[str, Any]]:
        return [call.kwargs for call in self.calls if call.method == method]

    def _answer(self, method: str, happy: object, **kwargs: Any) -> Any:
        self.calls.append(Call(method, kwargs))
        scripted = self._scripted[method]
        answer = scripted.popleft() if scripted else self._always.get(method, happy)
        if isinstance(answer, GatewayError):
            raise answer
        return answer

    # --- the port ----------------------------------------------------------------------------

    def stk_push(
        self, *, phone: str, amount_cents: int, account_reference: str, description: str
    ) -> StkAck:
        n = next(self._ids)
        happy = StkAck(f"ws_CO_fake_{n}", f"fake-merchant-{n}")
        return self._answer(  # type: ignore[no-any-return]
            "stk_push", happy, phone=phone, amount_cents=amount_cents,
            account_reference=account_reference, description=description,
        )  # fmt: skip

    def stk_query(self, *, checkout_request_id: str) -> StkQueryAnswer:
        return self._answer(  # type: ignore[no-any-return]
            "stk_query", paid(), checkout_request_id=checkout_request_id
        )

    def b2c_payment(
        self, *, phone: str, amount_cents: int, originator_conversation_id: str, remarks: str
    ) -> ConversationAck:
        happy = ConversationAck(originator_conversation_id, f"AG_fake_b2c_{next(self._ids)}")
        return self._answer(  # type: ignore[no-any-return]
            "b2c_payment", happy, phone=phone, amount_cents=amount_cents,
            originator_conversation_id=originator_conversation_id, remarks=remarks,
        )  # fmt: skip

    def transaction_status(
        self, *, originator_conversation_id: str | None = None, transaction_id: str | None = None
    ) -> ConversationAck:
        n = next(self._ids)
        happy = ConversationAck(f"fake-status-{n}", f"AG_fake_status_{n}")
        return self._answer(  # type: ignore[no-any-return]
            "transaction_status", happy,
            originator_conversation_id=originator_conversation_id, transaction_id=transaction_id,
        )  # fmt: skip

    def account_balance(self) -> ConversationAck:
        n = next(self._ids)
        happy = ConversationAck(f"fake-balance-{n}", f"AG_fake_balance_{n}")
        return self._answer("account_balance", happy)  # type: ignore[no-any-return]

    def reversal(
        self,
        *,
        original_receipt: str,
        amount_cents: int,
        originator_conversation_id: str,
        remarks: str,
    ) -> ConversationAck:
        happy = ConversationAck(originator_conversation_id, f"AG_fake_reversal_{next(self._ids)}")
        return self._answer(  # type: ignore[no-any-return]
            "reversal", happy, original_receipt=original_receipt, amount_cents=amount_cents,
            originator_conversation_id=originator_conversation_id, remarks=remarks,
        )  # fmt: skip

    def register_c2b_urls(self) -> None:
        self._answer("register_c2b_urls", None)

    def register_pull(self) -> None:
        self._answer("register_pull", None)

    def pull_payments(self, *, start: datetime, end: datetime, offset: int) -> PullPage:
        window = sorted(
            (p for p in self.listed if start <= p.paid_at <= end), key=lambda p: p.paid_at
        )
        unreadable = self.unreadable_rows if offset == 0 else 0
        first = max(0, offset - self.unreadable_rows)
        page = window[first : first + PULL_PAGE_ROWS - unreadable]
        happy = PullPage(tuple(page), rows=len(page) + unreadable)
        return self._answer(  # type: ignore[no-any-return]
            "pull_payments", happy, start=start, end=end, offset=offset
        )

    def parse_callback(self, kind: str, body: bytes) -> CallbackEvent:
        try:
            expected = _EVENTS[CallbackKind(kind)]
            fields = json.loads(body)
            assert fields.pop("event") == expected.__name__
            for name in ("debit_parties", "credit_parties"):
                if name in fields:
                    fields[name] = tuple(fields[name])
            event: CallbackEvent = expected(**fields)
        except (ValueError, KeyError, TypeError, AssertionError) as error:
            raise MalformedCallbackError(f"not a {kind[:40]} body: {error}"[:300]) from error
        return event

    def close(self) -> None:
        return None


def body(event: CallbackEvent) -> bytes:
    """What `FakeMpesaGateway.parse_callback` reads back as `event`."""
    fields = dataclasses.asdict(event)
    return json.dumps({"event": type(event).__name__, **fields}, sort_keys=True).encode()
