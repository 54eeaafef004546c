"""Faults a test queues through the admin API, consumed by the next matching requests.

A request takes at most one fault of each family: one that spoils the synchronous answer, one
that changes the outcome, and one that changes how the callback travels.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

KINDS = frozenset(
    {
        "oauth",
        "stk",
        "stk_query",
        "b2c",
        "c2b",
        "c2b_register",
        "balance",
        "status",
        "reversal",
        "pull_register",
        "pull",
    }
)
ANY_KIND = "any"
_TIMES_MAX = 1_000
_COPIES_MAX = 10
_DELAY_S_MAX = 300.0


class Action(Enum):
    # The synchronous answer.
    HTTP_500 = "http_500"
    HTTP_429 = "http_429"
    INVALID_TOKEN = "invalid_token"  # noqa: S105 (a fault's name, not a secret)
    GARBAGE = "garbage"
    SLOW = "slow"
    # The outcome.
    RESULT_CODE = "result_code"
    TIMEOUT = "timeout"
    # The callback's journey.
    DELAY = "delay"
    DUPLICATE = "duplicate"
    DROP = "drop"
    REORDER = "reorder"


SYNC_ACTIONS = frozenset(
    {Action.HTTP_500, Action.HTTP_429, Action.INVALID_TOKEN, Action.GARBAGE, Action.SLOW}
)
OUTCOME_ACTIONS = frozenset({Action.RESULT_CODE, Action.TIMEOUT})
DELIVERY_ACTIONS = frozenset({Action.DELAY, Action.DUPLICATE, Action.DROP, Action.REORDER})


@dataclass
class ReorderGroup:
    """Callbacks held back until `size` of them wait, then sent newest first."""

    size: int
    held: list[int] = field(default_factory=list)  # callback record ids


@dataclass
class Fault:
    fault_id: int
    kind: str
    action: Action
    phone: str | None
    remaining: int
    result_code: int | str = 0
    queue_timeout: bool = False
    processed: bool = False
    http_status: int = 200
    delay_s: float = 0.0
    copies: int = 2
    group: ReorderGroup | None = None

    def matches(self, kind: str, phone: str | None) -> bool:
        kind_ok = self.kind in (ANY_KIND, kind)
        phone_ok = self.phone is None or self.phone == phone
        return self.remaining > 0 and kind_ok and phone_ok

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.fault_id,
            "kind": self.kind,
            "action": self.action.value,
            "phone": self.phone,
            "remaining": self.remaining,
            "result_code": self.result_code,
            "queue_timeout": self.queue_timeout,
            "processed": self.processed,
            "http_status": self.http_status,
            "delay_s": self.delay_s,
            "copies": self.copies,
        }


@dataclass
class DeliveryPolicy:
    extra_delay_s: float = 0.0
    copies: int = 1
    drop: bool = False
    group: ReorderGroup | None = None


@dataclass
class RequestFaults:
    """The faults one request took."""

    sync: Fault | None = None
    outcome: Fault | None = None
    delivery: DeliveryPolicy = field(default_factory=DeliveryPolicy)


class FaultBook:
    def __init__(self, faults_max: int) -> None:
        assert faults_max > 0
        self._faults_max = faults_max
        self._faults: deque[Fault] = deque()
        self._next_id = 1

    def add(self, spec: dict[str, Any]) -> Fault:
        """Raises ValueError with a message for the admin client when the spec is wrong."""
        if len(self._faults) >= self._faults_max:
            raise ValueError(f"at most {self._faults_max} faults may wait")
        fault = parse_fault(spec, self._next_id)
        self._next_id += 1
        self._faults.append(fault)
        return fault

    def clear(self) -> None:
        self._faults.clear()

    def pending(self) -> list[Fault]:
        return [f for f in self._faults if f.remaining > 0]

    def take(self, kind: str, phone: str | None) -> RequestFaults:
        assert kind in KINDS
        taken = RequestFaults(
            sync=self._take_one(kind, phone, SYNC_ACTIONS),
            outcome=self._take_one(kind, phone, OUTCOME_ACTIONS),
        )
        taken.delivery = self.take_delivery(kind, phone)
        return taken

    def take_delivery(self, kind: str, phone: str | None) -> DeliveryPolicy:
        fault = self._take_one(kind, phone, DELIVERY_ACTIONS)
        return DeliveryPolicy() if fault is None else _policy(fault)

    def _take_one(self, kind: str, phone: str | None, family: frozenset[Action]) -> Fault | None:
        for fault in self._faults:
            if fault.action in family and fault.matches(kind, phone):
                fault.remaining -= 1
                self._forget_spent()
                return fault
        return None

    def _forget_spent(self) -> None:
        # Reorder groups live on in the policies that hold them, so a spent fault can go.
        self._faults = deque(f for f in self._faults if f.remaining > 0)


def _policy(fault: Fault) -> DeliveryPolicy:
    if fault.action is Action.DELAY:
        return DeliveryPolicy(extra_delay_s=fault.delay_s)
    if fault.action is Action.DUPLICATE:
        return DeliveryPolicy(copies=fault.copies)
    if fault.action is Action.DROP:
        return DeliveryPolicy(drop=True)
    assert fault.action is Action.REORDER
    assert fault.group is not None
    return DeliveryPolicy(group=fault.group)


def parse_fault(spec: dict[str, Any], fault_id: int) -> Fault:
    kind = spec.get("kind", ANY_KIND)
    if kind != ANY_KIND and kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)} or {ANY_KIND!r}")
    try:
        action = Action(spec.get("action"))
    except ValueError:
        raise ValueError(f"action must be one of {[a.value for a in Action]}") from None
    times = _bounded_int(spec, "times", default=1, low=1, high=_TIMES_MAX)
    phone = spec.get("phone")
    if phone is not None and not (isinstance(phone, str) and phone.isdigit()):
        raise ValueError("phone must be a string of digits like 254712345678")
    fault = Fault(
        fault_id=fault_id,
        kind=kind,
        action=action,
        phone=phone,
        remaining=times,
        result_code=_result_code(spec),
        queue_timeout=bool(spec.get("queue_timeout", False)),
        processed=bool(spec.get("processed", False)),
        http_status=_bounded_int(spec, "http_status", default=200, low=100, high=599),
        delay_s=_bounded_float(spec, "delay_s", default=0.0, high=_DELAY_S_MAX),
        copies=_bounded_int(spec, "copies", default=2, low=2, high=_COPIES_MAX),
    )
    if action is Action.REORDER:
        fault.group = ReorderGroup(size=times)
    return fault


def _result_code(spec: dict[str, Any]) -> int | str:
    code = spec.get("result_code", 0)
    if isinstance(code, bool) or not isinstance(code, int | str):
        raise ValueError("result_code must be an integer or a string such as 'R000001'")
    return code


def _bounded_int(spec: dict[str, Any], name: str, *, default: int, low: int, high: int) -> int:
    value = spec.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}")
    return value


def _bounded_float(spec: dict[str, Any], name: str, *, default: float, high: float) -> float:
    value = spec.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= high:
        raise ValueError(f"{name} must be a number of seconds from 0 to {high}")
    return float(value)
