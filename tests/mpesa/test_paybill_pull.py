"""The Pull API end to end: Deni's reconciler asks the Daraja sandbox over HTTP which payments
reached the paybill, and credits, once, those whose confirmation never came."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from deni.services.mpesa import paybill_pull
from tests.support.mpesa import World


def _on_the_sandbox_clock(world: World) -> None:
    """Deni's test clock starts in the past; the sandbox stamps payments with the real time."""
    world.clock.advance(datetime.now(UTC) - world.clock.now())


def _past_settling(world: World) -> None:
    world.clock.advance(timedelta(seconds=world.deps.policy.pull_settle_s + 60))


def test_a_payment_whose_confirmation_was_lost_is_credited_once(world: World) -> None:
    _on_the_sandbox_clock(world)
    world.deps.gateway.register_pull()
    user = world.user()
    world.admin.add_fault(kind="c2b", phone=user.phone, action="drop")
    paid = world.admin.pay_paybill(user.phone, 640, user.phone)
    world.admin.flush()
    world.work()
    world.admin.clear_faults()
    assert world.balance(user) == 0  # M-PESA holds the money; Deni has not heard
    _past_settling(world)

    pull = paybill_pull.pull_missed_payments(world.deps)
    assert (pull.state, pull.rows, pull.recovered) == ("done", 1, 1)
    assert world.balance(user) == 640_00
    [line] = world.wallet_lines(user)
    assert line.memo == paid["TransID"]

    # The Transaction Status check of the validated payment answers later: nothing more.
    world.reconcile(rounds=2)
    again = paybill_pull.pull_missed_payments(world.deps)
    assert again.recovered == 0
    assert world.balance(user) == 640_00
    world.assert_conserved()


def test_a_paid_push_whose_callback_was_lost_is_left_to_its_own_checks(world: World) -> None:
    _on_the_sandbox_clock(world)
    world.deps.gateway.register_pull()
    user = world.user()
    world.admin.add_fault(kind="stk", phone=user.phone, action="drop")
    answer = world.post(user, "/mpesa/top-ups", {"amount_cents": 250_00})
    assert answer.status_code == 202, answer.text
    world.drain()
    world.admin.flush()
    world.work()
    world.admin.clear_faults()
    assert world.balance(user) == 0
    _past_settling(world)

    pull = paybill_pull.pull_missed_payments(world.deps)

    assert (pull.rows, pull.left_to_stk, pull.recovered) == (1, 1, 0)
    assert world.balance(user) == 0
    world.reconcile(rounds=3)  # STK Query, then Transaction Status for the receipt
    assert world.request(answer.json()["id"]).state.value == "succeeded"
    assert world.balance(user) == 250_00
    world.assert_conserved()


def test_an_unregistered_paybill_fails_the_pass_and_the_next_one_retries(world: World) -> None:
    _on_the_sandbox_clock(world)

    refused = paybill_pull.pull_missed_payments(world.deps)
    world.deps.gateway.register_pull()
    world.clock.advance(timedelta(minutes=15))
    retried = paybill_pull.pull_missed_payments(world.deps)

    assert refused.state == "failed"
    assert "not registered" in refused.error
    assert retried.state == "done"
    assert retried.window_start == world.clock.now() - paybill_pull.PULL_WINDOW_MAX
