"""The worker applies paid top-ups in batches: once each, one bad row blocks nothing, and a
worker killed mid-batch leaves every row to be applied again, once."""

from __future__ import annotations

import threading

import pytest

from deni.adapters.db.mpesa.inbox import SqlCallbackInboxRepository
from deni.domain.mpesa import RequestState
from deni.domain.users import User
from deni.services.mpesa.callbacks import apply_pending
from deni.services.mpesa.ports import InboxState
from tests.support.mpesa import World, stk_success_body

TOP_UP_CENTS = 250_00


def _top_ups(world: World, count: int) -> list[tuple[User, str]]:
    made = []
    for i in range(count):
        user = world.user(f"Batch {i}")
        answer = world.post(user, "/mpesa/top-ups", {"amount_cents": TOP_UP_CENTS})
        assert answer.status_code == 202, answer.text
        made.append((user, answer.json()["id"]))
    world.drain()  # pushed: the sandbox holds every callback until flush()
    return made


def _inbox(world: World) -> dict[InboxState, int]:
    with world.deni.uow.read_only() as uow:
        rows = uow.mpesa_inbox.rows(states=list(InboxState), limit=500)
    counts: dict[InboxState, int] = {}
    for row in rows:
        if row.kind == "stk":
            counts[row.state] = counts.get(row.state, 0) + 1
    return counts


def _credits(world: World, request_ids: list[str]) -> int:
    found = 0
    with world.deni.uow.read_only() as uow:
        for request_id in request_ids:
            request = uow.mpesa_requests.get(request_id)
            assert request is not None
            if request.receipt and uow.ledger.find_entry(f"mpesa:{request.receipt}"):
                found += 1
    return found


def test_one_pass_credits_a_batch_once_each(world: World) -> None:
    made = _top_ups(world, 6)
    world.admin.flush()

    report = world.work()

    assert report.callbacks_retried == 6
    assert report.callbacks_settled == 6
    assert _inbox(world) == {InboxState.APPLIED: 6}
    for user, request_id in made:
        assert world.request(request_id).state is RequestState.SUCCEEDED
        assert world.balance(user) == TOP_UP_CENTS
    assert _credits(world, [request_id for _, request_id in made]) == 6
    world.admin.flush()  # nothing new; a second pass finds nothing to do
    assert world.work().callbacks_retried == 0
    world.assert_conserved()


def test_a_row_that_fails_the_batch_blocks_no_other(world: World) -> None:
    made = _top_ups(world, 4)
    bad = world.request(made[0][1])
    # A receipt Deni refuses (not letters and digits): it fails the whole batch transaction.
    body = stk_success_body(bad.checkout_request_id or "", "BAD-RECEIPT", TOP_UP_CENTS // 100)
    assert world.http.post(world.hook_url("stk"), json=body).status_code == 200
    # The genuine callback for `bad` says something else, so it is no repeat: stored too.
    world.admin.flush()

    world.work()

    assert _inbox(world) == {InboxState.APPLIED: 4, InboxState.RECEIVED: 1}
    assert world.request(made[0][1]).state is RequestState.SUCCEEDED
    assert [world.balance(user) for user, _ in made] == [TOP_UP_CENTS] * 4
    with world.deni.uow.read_only() as uow:
        (row,) = uow.mpesa_inbox.rows(states=[InboxState.RECEIVED], limit=5)
    assert row.attempts == 1
    assert "receipt" in row.error


def test_worker_killed_mid_batch_leaves_every_row_for_the_next(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = _top_ups(world, 5)
    world.admin.flush()

    def killed(*args: object, **kwargs: object) -> None:
        raise SystemExit("killed after the credits, before the commit")

    with monkeypatch.context() as patch:
        patch.setattr(SqlCallbackInboxRepository, "mark_many", killed)
        with pytest.raises(SystemExit):
            world.work()

    assert _inbox(world) == {InboxState.RECEIVED: 5}
    assert [world.balance(user) for user, _ in made] == [0] * 5
    world.work()
    assert _inbox(world) == {InboxState.APPLIED: 5}
    assert [world.balance(user) for user, _ in made] == [TOP_UP_CENTS] * 5
    assert _credits(world, [request_id for _, request_id in made]) == 5
    world.assert_conserved()


def test_concurrent_workers_apply_each_callback_once(world: World) -> None:
    made = _top_ups(world, 24)
    world.admin.flush()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(20):
                if apply_pending(world.deps).tried == 0:
                    return
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors
    assert _inbox(world) == {InboxState.APPLIED: 24}
    assert [world.balance(user) for user, _ in made] == [TOP_UP_CENTS] * 24
    assert _credits(world, [request_id for _, request_id in made]) == 24
    world.assert_conserved()
