"""M-PESA's money rules on the service tier: pushes in, payouts out, suspense, against the fake
unit of work (or, with DENI_TEST_SERVICES_SQLITE=1, SQLite too) and a scripted Daraja.

The worker's steps are called by hand: the outbox pass sends, stored callbacks are applied,
the reconciler asks. Nothing sleeps: the clock is moved.
"""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from deni.domain.errors import Conflict
from deni.domain.ledger import HoldState, PlatformAccount
from deni.domain.mpesa import EventKind, MpesaRequest, Purpose, RequestState
from deni.domain.users import User
from deni.services.mpesa import callbacks, claims, reconcile, requests
from deni.services.mpesa.callbacks import Stored
from deni.services.mpesa.ports import (
    B2CResultEvent,
    C2BEvent,
    CallbackEvent,
    CallbackKind,
    ClaimState,
    InboxState,
    MpesaDeps,
    MpesaPolicy,
    PayoutCandidate,
    StatusResultEvent,
    StkResultEvent,
    SuspenseState,
)
from deni.services.outbox import OutboxReport, run_once
from tests.fakes.gateway import FakeMpesaGateway, body, not_paid, not_sent, unknown
from tests.services.world import World
from tests.support.builders import fund, lend, register, wallet_cents

PIN = "3591"
WAIT_S = 60.0  # every wait of the policy below
POLICY = MpesaPolicy(
    stk_query_after_s=WAIT_S,
    status_after_s=WAIT_S,
    check_backoff_s=WAIT_S,
    not_found_answers_min=3,
    lease_s=WAIT_S,
)
NOT_FOUND = "R000001"  # Transaction Status: no such transaction


@pytest.fixture
def gateway() -> FakeMpesaGateway:
    return FakeMpesaGateway()


@pytest.fixture
def deps(world: World, gateway: FakeMpesaGateway) -> MpesaDeps:
    return MpesaDeps(uow=world.uow, clock=world.clock, gateway=gateway, policy=POLICY)


def send(deps: MpesaDeps) -> OutboxReport:
    """The worker's outbox pass."""
    return run_once(
        deps,
        handlers=requests.handlers(deps),
        policy=deps.policy,
        rng=random.Random(7),
    )


def deliver(deps: MpesaDeps, kind: CallbackKind, event: CallbackEvent) -> Stored:
    """Daraja posts a callback: stored by the hook, then applied by the worker's pass."""
    stored = callbacks.store_callback(
        deps, kind=kind, body=body(event), source_ip="196.201.214.200"
    )
    callbacks.apply_pending(deps)
    return stored


def later(world: World) -> None:
    """Past every wait of the policy (the outbox's backoff included)."""
    world.clock.advance(timedelta(minutes=11))


def stored(deps: MpesaDeps, request_id: str) -> MpesaRequest:
    with deps.uow.read_only() as uow:
        found = uow.mpesa_requests.get(request_id)
    assert found is not None
    return found


def hold_state(deps: MpesaDeps, request: MpesaRequest) -> HoldState:
    assert request.hold_id is not None
    with deps.uow.read_only() as uow:
        hold = uow.ledger.lock_hold(request.hold_id)
    assert hold is not None
    return hold.state


def platform_cents(deps: MpesaDeps, account: PlatformAccount) -> int:
    with deps.uow.read_only() as uow:
        found = uow.ledger.get_account(account.value)
    assert found is not None
    return found.balance_cents


def top_up(deps: MpesaDeps, user: User, amount_cents: int) -> MpesaRequest:
    return requests.request_stk(
        deps, user_id=user.id, amount_cents=amount_cents, idempotency_key="top-up-1"
    )


def withdraw(world: World, deps: MpesaDeps, user: User, amount_cents: int) -> MpesaRequest:
    assert deps.uow is world.uow  # the world's hasher proves the PIN over the same units of work
    return requests.withdraw(
        world, user_id=user.id, pin=PIN, amount_cents=amount_cents,
        idempotency_key="withdraw-1", channel="api",
    )  # fmt: skip


def paid_push(request: MpesaRequest, receipt: str, *, phone: str | None = None) -> StkResultEvent:
    assert request.checkout_request_id is not None
    return StkResultEvent(
        request.checkout_request_id, "0", "The service request is processed successfully.",
        request.amount_cents, receipt, phone or request.phone,
    )  # fmt: skip


def payout_result(request: MpesaRequest, code: str, receipt: str | None = None) -> B2CResultEvent:
    assert request.originator_conversation_id is not None
    return B2CResultEvent(
        request.originator_conversation_id, "AG_1", code, "result", request.amount_cents, receipt
    )


def status_answer(
    conversation_id: str | None, code: str, status: str | None, receipt: str | None = None,
    amount_cents: int | None = None,
) -> StatusResultEvent:  # fmt: skip
    assert conversation_id is not None
    return StatusResultEvent(conversation_id, code, "answer", status, receipt, amount_cents, None)


# --- pushes in ---------------------------------------------------------------------------------


def test_a_top_up_is_pushed_once_and_credited_once_by_its_paid_callback(
    world: World, deps: MpesaDeps, gateway: FakeMpesaGateway
) -> None:
    user = register(world)
    request = top_up(deps, user, 250_00)
    assert top_up(deps, user, 250_00).id == request.id  # the same key asks once

    assert send(deps).done == 1
    assert send(deps).claimed == 0
    [pushed] = gateway.called("stk_push")
    assert (pushed["phone"], pushed["amount_cents"]) == (user.phone, 250_00)
    sent = stored(deps, request.id)
    assert sent.state is RequestState.SENT
    assert wallet_cents(world, user) == 0  # "accepted" is no money yet

    first = deliver(deps, CallbackKind.STK, paid_push(sent, "TKP1AB2CD3"))
    repeat = deliver(deps, CallbackKind.STK, paid_push(sent, "TKP1AB2CD3"))

    assert first.inbox_id is not None
    assert repeat.inbox_id is None  # the same body twice is stored once
    assert wallet_cents(world, user) == 250_00
    assert world.rows.entries_for("TKP1AB2CD3", "deposit") == 1
    assert gateway.called("stk_query") == [{"checkout_request_id": sent.checkout_request_id}]
    settled = stored(deps, request.id)
    assert (settled.state, settled.receipt) == (RequestState.SUCCEEDED, "TKP1AB2CD3")


def test_another_body_for_a_credited_push_credits_nothing_more(
    world: World, deps: MpesaDeps
) -> None:
    user = register(world)
    request = top_up(deps, user, 100_00)
    send(deps)
    sent = stored(deps, request.id)
    deliver(deps, CallbackKind.STK, paid_push(sent, "TKP2AB2CD3"))

    # The same receipt, said differently (another phone): a new inbox row, no new money.
    again = deliver(deps, CallbackKind.STK, paid_push(sent, "TKP2AB2CD3", phone="254799000001"))

    assert again.inbox_id is not None
    with deps.uow.read_only() as uow:
        row = uow.mpesa_inbox.get(again.inbox_id)
    assert row is not None
    assert (row.state, row.error) == (InboxState.IGNORED, "already credited")
    assert wallet_cents(world, user) == 100_00
    assert platform_cents(deps, PlatformAccount.MPESA_PAYBILL) == 100_00


def test_a_paid_callback_that_stk_query_contradicts_credits_nothing(
    world: World, deps: MpesaDeps, gateway: FakeMpesaGateway
) -> None:
    user = register(world)
    request = top_up(deps, user, 100_00)
    send(deps)
    gateway.always("stk_query", not_paid("1032"))

    deliver(deps, CallbackKind.STK, paid_push(stored(deps, request.id), "TKP3FORGED"))

    assert wallet_cents(world, user) == 0
    failed = stored(deps, request.id)
    assert (failed.state, failed.result_code) == (RequestState.FAILED, "1032")


def test_a_push_with_no_callback_is_asked_about_and_a_cancelled_one_fails(
    world: World, deps: MpesaDeps, gateway: FakeMpesaGateway
) -> None:
    user = register(world)
    request = top_up(deps, user, 100_00)
    send(deps)
    assert reconcile.check_due(deps) == 0  # not yet: the customer may still be typing the PIN
    gateway.will("stk_query", not_paid("1032"))
    later(world)

    assert reconcile.check_due(deps) == 1

    assert len(gateway.called("stk_query")) == 1
    assert stored(deps, request.id).state is RequestState.FAILED
    assert wallet_cents(world, user) == 0


# --- payouts out -------------------------------------------------------------------------------


def test_a_withdrawal_holds_the_money_and_a_success_result_posts_it_once(
    world: World, deps: MpesaDeps, gateway: FakeMpesaGateway
) -> None:
    user = register(world, pin=PIN)
    fund(world, user, 1_000_00)
    request = withdraw(world, deps, user, 400_00)
    assert wallet_cents(world, user) == 600_00  # held at once
    assert hold_state(deps, request) is HoldState.PENDING

    send(deps)
    [paid_out] = gateway.called("b2c_payment")
    assert paid_out["originator_conversation_id"] == f"{request.id}-1"
    sent = stored(deps, request.id)
    deliver(deps, CallbackKind.B2C_RESULT, payout_result(sent, "0", "TKB1AB2CD3"))
    deliver(deps, CallbackKind.B2C_RESULT, payout_result(sent, "0", "TKB1AB2CD3"))

    done = stored(deps, request.id)
    assert (done.state, done.receipt) == (RequestState.SUCCEEDED, "TKB1AB2CD3")
    assert hold_state(deps, request) is HoldState.POSTED
    assert wallet_cents(world, user) == 600_00
    assert platform_cents(deps, PlatformAccount.MPESA_B2C_FLOAT) == -400_00
    assert world.rows.count("holds") == 1


def test_a_failure_result_keeps_the_hold_until_transaction_status_confirms_it(
    world: World, deps: MpesaDeps, gateway: FakeMpesaGateway
) -> None:
    user = register(world, pin=PIN)
    fund(world, user, 1_000_00)
    request = withdraw(world, deps, user, 400_00)
    send(deps)

    deliver(deps, CallbackKind.B2C_RESULT, payout_result(stored(deps, request.id), "2001"))

    claimed = stored(deps, request.id)
    assert (claimed.state, claimed.claimed_failure_code) == (RequestState.UNKNOWN, "2001")
    assert hold_state(deps, request) is HoldState.PENDING
    assert wallet_cents(world, user) == 600_00  # a callback alone gives nothing back

    later(world)
    assert reconcile.check_due(deps) == 1
    [asked] = gateway.called("transaction_status")
    assert asked["originator_conversation_id"] == f"{request.id}-1"
    asking = stored(deps, request.id)
    deliver(
        deps,
        CallbackKind.STATUS_RESULT,
        status_answer(asking.status_conversation_id, "0", "Failed"),
    )

    failed = stored(deps, request.id)
    assert failed.state is RequestState.FAILED
    assert hold_state(deps, request) is HoldState.VOIDED
    assert wallet_cents(world, user) == 1_000_00
    assert len(gateway.called("b2c_payment")) == 1


def test_a_forged_failure_result_is_overruled_by_mpesa_saying_the_payout_completed(
    world: World, deps: MpesaDeps
) -> None:
    user = register(world, pin=PIN)
    fund(world, user, 1_000_00)
    request = withdraw(world, deps, user, 400_00)
    send(deps)
    deliver(deps, CallbackKind.B2C_RESULT, payout_result(stored(deps, request.id), "2001"))
    later(world)
    reconcile.check_due(deps)

    answer = status_answer(
        stored(deps, request.id).status_conversation_id, "0", "Completed", "TKB2AB2CD3", 400_00
    )
    deliver(deps, CallbackKind.STATUS_RESULT, answer)

    assert stored(deps, request.id).state is RequestState.SUCCEEDED
    assert hold_state(deps, request) is HoldState.POSTED
    assert wallet_cents(world, user) == 600_00


def test_a_payout_whose_send_is_unknown_is_never_sent_again_but_asked_about(
    world: World, deps: MpesaDeps, gateway: FakeMpesaGateway
) -> None:
    user = register(world, pin=PIN)
    fund(world, user, 1_000_00)
    request = withdraw(world, deps, user, 400_00)
    gateway.will("b2c_payment", unknown("read timeout"))

    assert send(deps).done == 1  # nothing left for the outbox to retry
    assert stored(deps, request.id).state is RequestState.UNKNOWN
    for _ in range(POLICY.not_found_answers_min):
        later(world)
        send(deps)
        reconcile.check_due(deps)
        asking = stored(deps, request.id)
        deliver(
            deps,
            CallbackKind.STATUS_RESULT,
            status_answer(asking.status_conversation_id, NOT_FOUND, None),
        )

    waiting = stored(deps, request.id)
    assert len(gateway.called("b2c_payment")) == 1
    assert len(gateway.called("transaction_status")) == POLICY.not_found_answers_min
    assert waiting.awaiting_decision  # "not found" is no proof: an operator decides
    assert hold_state(deps, request) is HoldState.PENDING
    assert wallet_cents(world, user) == 600_00
    with deps.uow.read_only() as uow:
        kinds = [e.kind for e in uow.mpesa_requests.events_for(request.id, limit=50)]
    assert kinds[-1] is EventKind.WAITING


def test_a_payout_that_never_left_is_sent_again_as_a_new_attempt(
    world: World, deps: MpesaDeps, gateway: FakeMpesaGateway
) -> None:
    user = register(world, pin=PIN)
    fund(world, user, 1_000_00)
    request = withdraw(world, deps, user, 400_00)
    gateway.will("b2c_payment", not_sent())

    assert send(deps).retried == 1
    later(world)
    assert send(deps).done == 1

    ids = [call["originator_conversation_id"] for call in gateway.called("b2c_payment")]
    assert ids == [f"{request.id}-1", f"{request.id}-2"]
    assert stored(deps, request.id).state is RequestState.SENT
    assert wallet_cents(world, user) == 600_00  # held once, whatever the attempts


# --- suspense ----------------------------------------------------------------------------------


def test_a_paybill_payment_for_no_account_waits_in_suspense_until_assigned_once(
    world: World, deps: MpesaDeps, gateway: FakeMpesaGateway
) -> None:
    owner, other = register(world), register(world)
    paid = C2BEvent("TKC1AB2CD3", 300_00, "NOSUCHACCOUNT", None, "2547 ***** 126")
    deliver(deps, CallbackKind.C2B_CONFIRMATION, paid)
    with deps.uow.read_only() as uow:
        assert [c.state for c in uow.claims.for_receipts(["TKC1AB2CD3"]).values()] == [
            ClaimState.WAITING
        ]
    assert platform_cents(deps, PlatformAccount.SUSPENSE) == 0  # a callback alone moves nothing

    assert claims.check_due(deps) == 1
    [asked] = gateway.called("transaction_status")
    assert asked["transaction_id"] == "TKC1AB2CD3"
    with deps.uow.read_only() as uow:
        claim = uow.claims.lock("TKC1AB2CD3")
    assert claim is not None
    answer = status_answer(claim.status_conversation_id, "0", "Completed", "TKC1AB2CD3", 300_00)
    deliver(deps, CallbackKind.STATUS_RESULT, answer)

    assert platform_cents(deps, PlatformAccount.SUSPENSE) == 300_00
    reconcile.assign_suspense(deps, receipt="TKC1AB2CD3", user_id=owner.id)
    reconcile.assign_suspense(deps, receipt="TKC1AB2CD3", user_id=owner.id)
    with pytest.raises(Conflict):
        reconcile.assign_suspense(deps, receipt="TKC1AB2CD3", user_id=other.id)

    assert wallet_cents(world, owner) == 300_00
    assert wallet_cents(world, other) == 0
    assert platform_cents(deps, PlatformAccount.SUSPENSE) == 0
    with deps.uow.read_only() as uow:
        [assigned] = uow.suspense.in_states(states=[SuspenseState.ASSIGNED], limit=9)
    assert assigned.user_id == owner.id


@pytest.mark.parametrize("asked_cents", [1_000_00, 5_000_00], ids=["paid_out", "kept"])
def test_a_payout_candidate_found_by_two_sweeps_is_queued_once(
    world: World, deps: MpesaDeps, asked_cents: int
) -> None:
    """Two workers read the same candidate before either queued it: the second finds the
    first's request, paid out or kept in the wallet (it no longer holds the amount), and adds
    nothing; it used to fail the whole worker pass on the unique key."""
    lender, borrower = register(world, name="Akinyi"), register(world, name="Otieno")
    fund(world, lender, 2_000_00)
    loan = lend(world, lender=lender, borrower=borrower, approve_with_pin="3591")
    in_wallet_cents = wallet_cents(world, borrower)
    candidate = PayoutCandidate(
        source_id=loan.id, user_id=borrower.id, loan_id=loan.id, amount_cents=asked_cents
    )
    for _ in range(2):
        reconcile.queue_payout(deps, candidate, purpose=Purpose.DISBURSEMENT, key=loan.id)
    with deps.uow.read_only() as uow:
        made = uow.mpesa_requests.find_by_key(
            f"{Purpose.DISBURSEMENT.value}:{borrower.id}:{loan.id}"
        )
        assert made is not None
    paid_out = asked_cents <= in_wallet_cents
    assert made.state is (RequestState.QUEUED if paid_out else RequestState.FAILED)
    assert wallet_cents(world, borrower) == in_wallet_cents - (asked_cents if paid_out else 0)
