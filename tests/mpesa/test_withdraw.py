"""Withdraw a wallet to M-PESA by B2C, two-phase: hold, then post or void; unknowns asked."""

from __future__ import annotations

from datetime import timedelta

import pytest

from deni.domain.users import User
from deni.services.mpesa.decisions import Decision, decide_payout
from tests.support.mpesa import PIN, World


def _withdraw(world: World, user: User, amount_cents: int) -> str:
    answer = world.post(user, "/mpesa/withdrawals", {"amount_cents": amount_cents, "pin": PIN})
    assert answer.status_code == 202, answer.text
    request_id: str = answer.json()["id"]
    return request_id


def _payouts(world: World, user: User) -> list[dict[str, object]]:
    return [t for t in world.admin.transactions(user.phone) if t["kind"] == "b2c"]


def test_withdrawal_holds_then_posts_on_success(world: World) -> None:
    user = world.user()
    world.fund(user, 1_000_00)

    request_id = _withdraw(world, user, 400_00)
    assert world.balance(user) == 600_00  # held at once
    world.settle()

    request = world.request(request_id)
    assert request.state.value == "succeeded"
    assert request.receipt
    assert world.balance(user) == 600_00
    assert len(_payouts(world, user)) == 1
    # The owner's statement shows each M-PESA receipt: the payout's on the withdrawal line.
    statement = world.http.get("/api/v1/wallet/statement", headers=world.headers(user))
    assert statement.status_code == 200, statement.text
    withdrawal, deposit = statement.json()["lines"]
    assert (withdrawal["kind"], withdrawal["amount_cents"]) == ("payout_hold", -400_00)
    assert withdrawal["mpesa_receipt"] == request.receipt
    assert deposit["mpesa_receipt"] == deposit["reference"]
    assert deposit["mpesa_receipt"].startswith("SEED")
    world.assert_conserved()


@pytest.mark.parametrize("phone", ["0700002040", "0700002001", "0700000001"])
def test_failed_payout_voids_the_hold_and_tells_the_owner(world: World, phone: str) -> None:
    """A failure result is only a claim (callbacks are not signed): the money stays held until
    Transaction Status, asked often enough, knows no such payment either."""
    user = world.user(phone=phone)
    world.fund(user, 1_000_00)

    request_id = _withdraw(world, user, 400_00)
    world.settle()
    claimed = world.request(request_id)
    code = phone[-4:].lstrip("0")
    assert (claimed.state.value, claimed.claimed_failure_code) == ("unknown", code)
    assert world.balance(user) == 600_00  # still held

    world.reconcile(rounds=world.deps.policy.not_found_answers_min)

    request = world.request(request_id)
    assert request.state.value == "failed"
    assert request.result_code == code
    assert world.balance(user) == 1_000_00  # the money is back
    with world.deni.uow.read_only() as uow:
        kinds = [
            n.kind
            for n in uow.notifications.list_for(user.id, unread_only=False, limit=20, offset=0)
        ]
    assert "payout_failed" in kinds
    world.assert_conserved()


def test_withdrawal_beyond_the_wallet_is_refused(world: World) -> None:
    user = world.user()
    world.fund(user, 100_00)
    answer = world.post(user, "/mpesa/withdrawals", {"amount_cents": 400_00, "pin": PIN})
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "insufficient_funds"
    answer = world.post(user, "/mpesa/withdrawals", {"amount_cents": 50_50, "pin": PIN})
    assert answer.status_code == 422  # M-PESA moves whole shillings


def test_queue_timeout_is_unknown_and_transaction_status_settles_it(world: World) -> None:
    user = world.user(phone="0700000504")  # money moves, QueueTimeOutURL hears a timeout
    world.fund(user, 1_000_00)

    request_id = _withdraw(world, user, 300_00)
    world.settle()
    assert world.request(request_id).state.value == "unknown"
    assert world.balance(user) == 700_00  # still held: never voided on a timeout

    world.reconcile()

    request = world.request(request_id)
    assert request.state.value == "succeeded"
    assert len(_payouts(world, user)) == 1
    world.assert_conserved()


def test_missing_result_is_asked_for_by_transaction_status(world: World) -> None:
    user = world.user(phone="0700000408")  # money moves, no callback at all
    world.fund(user, 1_000_00)

    request_id = _withdraw(world, user, 300_00)
    world.settle()
    assert world.request(request_id).state.value == "sent"

    world.reconcile()

    assert world.request(request_id).state.value == "succeeded"
    assert len(_payouts(world, user)) == 1
    world.assert_conserved()


@pytest.mark.parametrize("action", ["http_500", "http_429", "garbage"])
@pytest.mark.parametrize("processed", [True, False])
def test_unknown_send_outcome_is_never_sent_blindly(
    world: World, action: str, processed: bool
) -> None:
    user = world.user()
    world.fund(user, 1_000_00)
    world.admin.add_fault(kind="b2c", action=action, processed=processed)

    request_id = _withdraw(world, user, 300_00)
    world.settle()
    # Processed: the result callback settles it. Not processed: Daraja does not know it.
    expected = "succeeded" if processed else "unknown"
    assert world.request(request_id).state.value == expected

    world.reconcile(rounds=4)

    request = world.request(request_id)
    if processed:
        assert request.state.value == "succeeded"
        assert len(_payouts(world, user)) == 1
    else:
        # M-PESA never saw it, but nothing proves that: a person decides, nobody re-sends.
        assert (request.state.value, request.awaiting_decision) == ("unknown", True)
        assert request.attempt == 1
        assert _payouts(world, user) == []
        decide_payout(
            world.deps,
            request_id=request_id,
            decision=Decision.RESEND,
            operator="wanjiru",
            reason="Safaricom support: no such payment",
        )
        world.settle()
        request = world.request(request_id)
        assert (request.state.value, request.attempt) == ("succeeded", 2)
        assert len(_payouts(world, user)) == 1  # paid exactly once
    assert world.balance(user) == 700_00
    world.assert_conserved()


def test_invalid_token_is_healed_by_a_new_token(world: World) -> None:
    user = world.user()
    world.fund(user, 1_000_00)
    world.admin.add_fault(kind="b2c", action="invalid_token")

    request_id = _withdraw(world, user, 300_00)
    world.settle()

    assert world.request(request_id).state.value == "succeeded"
    assert len(_payouts(world, user)) == 1
    world.assert_conserved()


def test_daraja_unreachable_retries_later_and_pays_once(world: World) -> None:
    user = world.user()
    world.fund(user, 1_000_00)
    world.admin.add_fault(kind="oauth", action="http_500", times=2)

    request_id = _withdraw(world, user, 300_00)
    world.clock.advance(timedelta(hours=2))  # the stored token is stale: a fetch is needed
    first = world.work()
    assert first.outbox.retried == 1  # no token: certainly not sent, so retried later
    assert world.request(request_id).state.value == "queued"
    world.clock.advance(timedelta(minutes=11))
    world.settle()

    assert world.request(request_id).state.value == "succeeded"
    assert len(_payouts(world, user)) == 1
    world.assert_conserved()


def test_duplicate_and_reordered_results_move_money_once(world: World) -> None:
    user = world.user()
    world.fund(user, 2_000_00)
    world.admin.add_fault(kind="b2c", action="duplicate", copies=3)
    world.admin.add_fault(kind="b2c", action="reorder", times=2)

    first = _withdraw(world, user, 300_00)
    second = _withdraw(world, user, 200_00)
    world.settle()

    assert world.request(first).state.value == "succeeded"
    assert world.request(second).state.value == "succeeded"
    assert world.balance(user) == 1_500_00
    assert len(_payouts(world, user)) == 2
    world.assert_conserved()


def test_worker_killed_between_send_and_record_does_not_pay_twice(world: World) -> None:
    """The send reached Daraja, then the worker died: its outbox lease lapses, the next worker
    finds the request SENDING and asks Transaction Status instead of sending again."""
    user = world.user()
    world.fund(user, 1_000_00)
    request_id = _withdraw(world, user, 300_00)
    deps = world.deps
    with deps.uow() as uow:
        [message] = uow.outbox.claim_due(now=world.clock.now(), limit=10, lease_s=60)
        uow.commit()
    from deni.services.mpesa import requests

    request = requests.begin_send(deps, request_id)
    assert request is not None
    assert request.originator_conversation_id is not None
    deps.gateway.b2c_payment(
        phone=request.phone,
        amount_cents=request.amount_cents,
        originator_conversation_id=request.originator_conversation_id,
        remarks="Deni wallet withdrawal",
    )
    # ...killed here: neither the request nor the outbox row hears of the answer.
    world.admin.flush()  # the result callback arrives while the worker is dead
    world.clock.advance(timedelta(minutes=2))  # the lease lapses
    world.reconcile()

    assert world.request(request_id).state.value == "succeeded"
    assert len(_payouts(world, user)) == 1
    assert message.topic == "b2c_send"
    world.assert_conserved()


def test_worker_killed_before_the_result_arrives_and_result_dropped(world: World) -> None:
    user = world.user()
    world.fund(user, 1_000_00)
    world.admin.add_fault(kind="b2c", action="drop")
    request_id = _withdraw(world, user, 300_00)
    deps = world.deps
    with deps.uow() as uow:
        uow.outbox.claim_due(now=world.clock.now(), limit=10, lease_s=60)
        uow.commit()
    from deni.services.mpesa import requests

    request = requests.begin_send(deps, request_id)
    assert request is not None
    assert request.originator_conversation_id is not None
    deps.gateway.b2c_payment(
        phone=request.phone,
        amount_cents=request.amount_cents,
        originator_conversation_id=request.originator_conversation_id,
        remarks="Deni wallet withdrawal",
    )
    world.admin.flush()
    world.reconcile(rounds=4)

    assert world.request(request_id).state.value == "succeeded"
    assert len(_payouts(world, user)) == 1
    world.assert_conserved()


def test_not_found_answers_never_send_a_payout_again(world: World) -> None:
    """Transaction Status may not know a payout M-PESA is still working on: however many times
    it says "not found", Deni sends nothing again and gives nothing back; the money stays held
    and the payout waits for a person."""
    user = world.user()
    world.fund(user, 1_000_00)
    world.admin.add_fault(kind="b2c", action="http_500", processed=False)
    request_id = _withdraw(world, user, 300_00)
    world.settle()
    answers_needed = world.deps.policy.not_found_answers_min
    assert answers_needed > 1

    world.reconcile(rounds=answers_needed - 1)

    request = world.request(request_id)
    assert request.state.value == "unknown"
    assert request.attempt == 1  # nothing sent again yet
    assert _payouts(world, user) == []
    assert world.balance(user) == 700_00  # still held, not given back

    world.reconcile(rounds=6)
    request = world.request(request_id)
    assert (request.state.value, request.attempt, request.awaiting_decision) == (
        "unknown",
        1,
        True,
    )
    assert request.not_found_answers == answers_needed
    assert _payouts(world, user) == []
    assert world.balance(user) == 700_00
    world.assert_conserved()
