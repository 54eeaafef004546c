"""Top up a wallet by STK push, end to end over HTTP against the sandbox."""

from __future__ import annotations

from tests.support.mpesa import World


def test_top_up_by_stk_push_credits_the_wallet_once(world: World) -> None:
    user = world.user()

    answer = world.post(user, "/mpesa/top-ups", {"amount_cents": 500_00})
    assert answer.status_code == 202, answer.text
    assert answer.json()["state"] == "queued"
    world.settle()

    request = world.request(answer.json()["id"])
    assert request.state.value == "succeeded"
    assert request.receipt
    assert world.balance(user) == 500_00
    [line] = world.wallet_lines(user)
    assert line.memo == request.receipt  # the statement shows the M-PESA receipt
    world.assert_conserved()
