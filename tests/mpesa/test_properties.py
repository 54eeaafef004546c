"""Random flows under random sandbox faults, and forged callbacks among them: after
reconciliation, money is never created, lost or paid twice, and the ledger's M-PESA accounts
match the sandbox's own balances. Each example runs on a database and a sandbox of its own."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deni.domain.mpesa import FINAL_STATES
from deni.services.mpesa.decisions import Decision, decide_payout, waiting_payouts
from tests.support.mpesa import (
    PIN,
    World,
    b2c_result_body,
    c2b_confirmation_body,
    stk_success_body,
)

FAULTS: list[dict[str, Any] | None] = [
    None,
    {"action": "http_500", "processed": True},
    {"action": "http_500", "processed": False},
    {"action": "http_429", "processed": True},
    {"action": "garbage", "processed": True},
    {"action": "garbage", "processed": False},
    {"action": "invalid_token"},
    {"action": "timeout"},
    {"action": "timeout", "queue_timeout": True},
    {"action": "drop"},
    {"action": "duplicate", "copies": 2},
    {"action": "reorder", "times": 2},
    {"action": "result_code", "result_code": 1032},
    {"action": "result_code", "result_code": 2040},
]

C2B_FAULTS = frozenset({"duplicate", "reorder", "drop"})

FORGERIES = frozenset({"forge_c2b", "forge_b2c_failure", "forge_stk_success"})

step = st.tuples(
    st.sampled_from(["top_up", "withdraw", "pay_phone", "pay_unknown", *sorted(FORGERIES)]),
    st.integers(min_value=10, max_value=900),  # whole shillings
    st.sampled_from(FAULTS),
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=1, max_size=6))
def test_random_flows_conserve_money(
    fresh_world: Callable[[], AbstractContextManager[World]], steps: list[tuple[str, int, Any]]
) -> None:
    with fresh_world() as world:
        _flows_conserve_money(world, steps)


def _flows_conserve_money(world: World, steps: list[tuple[str, int, Any]]) -> None:
    forged = itertools.count(1)  # receipts of this example's forgeries
    user = world.user()
    world.fund(user, 2_000_00)
    request_ids: list[str] = []
    for action, shillings, fault in steps:
        if action in FORGERIES:
            _forge(world, action, shillings, user.phone, request_ids, forged)
            continue
        kind = {"top_up": "stk", "withdraw": "b2c"}.get(action, "c2b")
        if kind == "c2b" and fault is not None and fault["action"] not in C2B_FAULTS:
            # A paybill payment can only lose its confirmation, or get it twice or late (a
            # lost one is found by Transaction Status, services/paybills.py).
            fault = {"action": "duplicate", "copies": 2}
        if fault is not None:
            world.admin.add_fault(kind=kind, phone=user.phone, **fault)
        if action == "top_up":
            answer = world.post(user, "/mpesa/top-ups", {"amount_cents": shillings * 100})
        elif action == "withdraw":
            body = {"amount_cents": shillings * 100, "pin": PIN}
            answer = world.post(user, "/mpesa/withdrawals", body)
        else:
            account = user.phone if action == "pay_phone" else "NOBODY"
            world.admin.pay_paybill(user.phone, shillings, account)
            continue
        if answer.status_code == 202:
            request_ids.append(answer.json()["id"])
        world.drain()
    world.admin.clear_faults()
    world.settle()
    world.reconcile(rounds=5)

    world.assert_conserved()  # whatever waits for a person, nothing was paid twice
    _operator_decides(world, user.phone)
    world.assert_conserved()
    for request_id in request_ids:
        request = world.request(request_id)
        # Settled, or (an STK push whose answer was lost) failed with its money, if any,
        # in suspense: never open forever, never twice.
        assert request.state in FINAL_STATES, (request.state, request.result_desc)


def _forge(
    world: World,
    action: str,
    shillings: int,
    phone: str,
    request_ids: list[str],
    forged: Iterator[int],
) -> None:
    """What someone who knows the callback URL posts: a paybill payment M-PESA never made, a
    failure for the newest payout, a success for the newest push (whatever they really did)."""
    if action == "forge_c2b":
        body = c2b_confirmation_body(f"TFORGE{next(forged):04d}", shillings, phone)
        assert world.http.post(world.hook_url("c2b/confirmation"), json=body).status_code == 200
        return
    kind = "b2c" if action == "forge_b2c_failure" else "stk"
    mine = [world.request(i) for i in request_ids]
    newest = [r for r in mine if r.kind.value == kind]
    if not newest:
        return
    request = newest[-1]
    if kind == "b2c" and request.originator_conversation_id:
        body = b2c_result_body(request.originator_conversation_id, 2040)
        assert world.http.post(world.hook_url("b2c/result"), json=body).status_code == 200
    elif kind == "stk" and request.checkout_request_id:
        body = stk_success_body(
            request.checkout_request_id, f"TFSTK{next(forged):05d}", request.amount_cents // 100
        )
        assert world.http.post(world.hook_url("stk"), json=body).status_code == 200


def _operator_decides(world: World, phone: str) -> None:
    """What a careful operator does with payouts nobody could settle: look the attempt up at
    Safaricom (here, the sandbox's own log) and record what became of it."""
    paid = {
        str(t["originator_conversation_id"]): str(t["transaction_id"])
        for t in world.admin.transactions(phone)
        if t["kind"] == "b2c"
    }
    for waiting in waiting_payouts(world.deps):
        request = waiting.request
        receipt = paid.get(request.originator_conversation_id or "")
        decide_payout(
            world.deps,
            request_id=request.id,
            decision=Decision.SUCCEEDED if receipt else Decision.FAIL,
            operator="operator",
            reason="looked it up at Safaricom",
            receipt=receipt,
        )
