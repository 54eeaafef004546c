"""Payouts written as the attacks and accidents that would pay money out twice or give held
money back: a forged failure result, a send whose outcome nobody knows, "not found" answers.
Over real HTTP to the Daraja sandbox; the operator's decisions through the service the
`deni payments` commands call."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest

from deni.bootstrap.worker import work_once
from deni.domain.errors import Conflict, DomainError
from deni.domain.mpesa import EventKind
from deni.domain.users import User
from deni.services.mpesa.decisions import Decision, decide_payout, waiting_payouts
from tests.support.mpesa import PIN, World, b2c_result_body

NOT_FOUND = "R000002"  # what the sandbox (and so Deni) reads as "no such transaction"


def _withdraw(world: World, user: User, amount_cents: int) -> str:
    answer = world.post(user, "/mpesa/withdrawals", {"amount_cents": amount_cents, "pin": PIN})
    assert answer.status_code == 202, answer.text
    request_id: str = answer.json()["id"]
    return request_id


def _payouts(world: World, user: User) -> list[dict[str, object]]:
    return [t for t in world.admin.transactions(user.phone) if t["kind"] == "b2c"]


def _notified(world: World, user: User) -> list[str]:
    with world.deni.uow.read_only() as uow:
        found = uow.notifications.list_for(user.id, unread_only=False, limit=50, offset=0)
    return [n.kind for n in found]


def _audit_by(world: World, actor: str) -> list[str]:
    with world.deni.uow.read_only() as uow:
        return [r.command for r in uow.audit.by_actor(actor, after_seq=0, limit=50)]


def test_a_forged_failure_result_gives_no_money_back(world: World) -> None:
    """Someone who knows the callback URL posts "the payout failed" for a payout that went out.
    Believed, it would give the money back to the wallet to be withdrawn a second time."""
    user = world.user()
    world.fund(user, 1_000_00)
    world.admin.add_fault(kind="b2c", action="drop")  # only the forged result ever arrives
    request_id = _withdraw(world, user, 400_00)
    world.drain()
    world.admin.flush()
    assert len(_payouts(world, user)) == 1  # the money reached the customer's M-PESA
    originator = world.request(request_id).originator_conversation_id
    assert originator is not None

    forged = b2c_result_body(originator, 2040)
    assert world.http.post(world.hook_url("b2c/result"), json=forged).status_code == 200
    world.work()

    request = world.request(request_id)
    assert (request.state.value, request.claimed_failure_code) == ("unknown", "2040")
    assert world.balance(user) == 600_00  # still held: nothing given back
    assert "payout_failed" not in _notified(world, user)
    again = world.post(user, "/mpesa/withdrawals", {"amount_cents": 1_000_00, "pin": PIN})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "insufficient_funds"

    world.reconcile()  # Transaction Status: completed, with M-PESA's receipt

    request = world.request(request_id)
    assert request.state.value == "succeeded"
    assert request.receipt == _payouts(world, user)[0]["transaction_id"]
    assert request.claimed_failure_code is None
    assert world.balance(user) == 600_00
    assert len(_payouts(world, user)) == 1
    world.assert_conserved()


def test_a_failure_result_for_a_payout_that_failed_is_confirmed_then_returned(
    world: World,
) -> None:
    user = world.user(phone="0700002040")  # M-PESA refuses to pay this number
    world.fund(user, 1_000_00)
    request_id = _withdraw(world, user, 400_00)
    world.settle()
    assert world.balance(user) == 600_00

    world.reconcile(rounds=world.deps.policy.not_found_answers_min)

    assert world.request(request_id).state.value == "failed"
    assert world.balance(user) == 1_000_00
    assert _notified(world, user).count("payout_failed") == 1
    kinds = [e.kind for e in _evidence(world, request_id)]
    assert kinds.count(EventKind.STATUS_ANSWER) == world.deps.policy.not_found_answers_min
    assert kinds[-1] is EventKind.SETTLED
    world.assert_conserved()


def _evidence(world: World, request_id: str) -> list[object]:
    with world.deni.uow.read_only() as uow:
        return list(uow.mpesa_requests.events_for(request_id, limit=100))


def test_a_send_that_timed_out_and_is_not_found_waits_for_a_person(world: World) -> None:
    """The send reached M-PESA and the money left, but the answer never came back in time, and
    Transaction Status says "not found" three times (it lags, or is wrong). Sending again would
    pay twice: the payout waits, held, for an operator, who decides once."""
    user = world.user()
    world.fund(user, 1_000_00)
    world.admin.add_fault(kind="b2c", action="slow", delay_s=1.5)
    world.admin.add_fault(kind="b2c", action="drop")
    world.admin.add_fault(kind="status", action="result_code", result_code=NOT_FOUND, times=10)
    request_id = _withdraw(world, user, 300_00)
    impatient = world.other_worker(daraja_timeout_s=0.5)
    try:
        assert impatient.mpesa is not None
        work_once(impatient.mpesa, rng=world.rng, reconcile_now=False)
    finally:
        impatient.close()
    world.admin.flush()
    assert world.request(request_id).state.value == "unknown"
    assert len(_payouts(world, user)) == 1  # it did go out

    world.reconcile(rounds=6)

    request = world.request(request_id)
    assert (request.state.value, request.awaiting_decision, request.attempt) == (
        "unknown",
        True,
        1,
    )
    assert len(_payouts(world, user)) == 1  # never sent again
    assert world.balance(user) == 700_00  # never given back
    [waiting] = waiting_payouts(world.deps)
    assert waiting.request.id == request_id
    kinds = [event.kind for event in waiting.evidence]
    assert kinds[:3] == [EventKind.QUEUED, EventKind.SEND, EventKind.SEND_ERROR]
    assert "ReadTimeout" in waiting.evidence[2].detail
    assert kinds.count(EventKind.STATUS_ANSWER) == world.deps.policy.not_found_answers_min
    assert kinds[-1] is EventKind.WAITING

    receipt = str(_payouts(world, user)[0]["transaction_id"])
    decide_payout(
        world.deps,
        request_id=request_id,
        decision=Decision.SUCCEEDED,
        operator="akinyi",
        reason="found in the M-PESA org portal",
        receipt=receipt,
    )
    with pytest.raises(Conflict) as second:
        decide_payout(
            world.deps,
            request_id=request_id,
            decision=Decision.RESEND,
            operator="otieno",
            reason="send it again to be sure",
        )
    assert second.value.code == "not_awaiting_decision"

    request = world.request(request_id)
    assert (request.state.value, request.receipt) == ("succeeded", receipt)
    assert world.balance(user) == 700_00
    assert _audit_by(world, "akinyi") == ["payout_decision"]
    assert _audit_by(world, "otieno") == []
    world.reconcile(rounds=2)
    assert len(_payouts(world, user)) == 1
    world.assert_conserved()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # closed again: a connection to it is refused


def test_a_payout_that_never_left_is_sent_again(world: World) -> None:
    """A connection refused: the request was never written, so nothing reached Safaricom and
    sending it again (with a new OriginatorConversationID) cannot pay twice."""
    user = world.user()
    world.fund(user, 1_000_00)
    request_id = _withdraw(world, user, 300_00)
    cut_off = world.other_worker(daraja_base_url=f"http://127.0.0.1:{_closed_port()}")
    try:
        assert cut_off.mpesa is not None
        report = work_once(cut_off.mpesa, rng=world.rng, reconcile_now=False)
    finally:
        cut_off.close()
    assert report.outbox.retried == 1
    request = world.request(request_id)
    assert (request.state.value, request.attempt) == ("queued", 1)
    assert "not_sent" in _evidence(world, request_id)[-1].detail  # type: ignore[attr-defined]

    world.clock.advance(timedelta(minutes=11))
    world.settle()

    request = world.request(request_id)
    assert (request.state.value, request.attempt) == ("succeeded", 2)
    assert request.originator_conversation_id == f"{request_id}-2"
    assert len(_payouts(world, user)) == 1
    world.assert_conserved()


def test_decisions_need_a_name_a_reason_and_a_waiting_payout(world: World) -> None:
    user = world.user()
    world.fund(user, 1_000_00)
    request_id = _withdraw(world, user, 300_00)
    world.settle()  # paid: nothing to decide
    for operator, reason, code in (
        ("", "why not", "invalid_operator"),
        ("akinyi", "  ", "invalid_reason"),
        ("akinyi", "checked", "not_awaiting_decision"),
    ):
        with pytest.raises(DomainError) as refused:
            decide_payout(
                world.deps,
                request_id=request_id,
                decision=Decision.FAIL,
                operator=operator,
                reason=reason,
            )
        assert refused.value.code == code
    assert world.request(request_id).state.value == "succeeded"
    assert world.balance(user) == 700_00
