"""Reversals on the service tier: a payment received sent back to its payer, against the fake
unit of work (or SQLite and PostgreSQL with DENI_TEST_SERVICES_SQLITE=1) and a scripted Daraja.

The money is held at once; only M-PESA's word moves the ledger: a success result posts the
hold to the paybill (or takes the money out of suspense), a failure result is believed once
Transaction Status confirms it, and nothing moves twice.
"""

from __future__ import annotations

import random

import pytest

from deni.domain.errors import Conflict, DomainError, InsufficientFunds, NotFound
from deni.domain.ledger import EntryCode, HoldState, PlatformAccount
from deni.domain.mpesa import EventKind, MpesaRequest, RequestKind, RequestState
from deni.domain.users import User
from deni.services import ledger
from deni.services.mpesa import claims, decisions, payments, reconcile, requests, reversals
from deni.services.mpesa.ports import (
    C2BEvent,
    CallbackKind,
    InboxState,
    MpesaDeps,
    QueueTimeoutEvent,
    ReversalResultEvent,
    SuspenseState,
)
from deni.services.outbox import OutboxReport, run_once
from tests.fakes.gateway import FakeMpesaGateway, refused, unknown
from tests.services.test_mpesa import (
    NOT_FOUND,
    PIN,
    POLICY,
    deliver,
    hold_state,
    later,
    platform_cents,
    status_answer,
    stored,
    withdraw,
)
from tests.services.world import World
from tests.support.builders import register, wallet_cents

OPERATOR = "akinyi"
REASON = "paid to the wrong paybill, second operator njeri approved"


@pytest.fixture
def gateway() -> FakeMpesaGateway:
    return FakeMpesaGateway()


@pytest.fixture
def deps(world: World, gateway: FakeMpesaGateway) -> MpesaDeps:
    return MpesaDeps(uow=world.uow, clock=world.clock, gateway=gateway, policy=POLICY)


def send(deps: MpesaDeps) -> OutboxReport:
    """The worker's outbox pass, with every handler it has."""
    handlers = {**requests.handlers(deps), **reversals.handlers(deps)}
    return run_once(deps, handlers=handlers, policy=deps.policy, rng=random.Random(7))


def paid_in(world: World, user: User, receipt: str, amount_cents: int) -> None:
    """A payment M-PESA confirmed, credited to the member's wallet under its receipt."""
    payments.record_mpesa_payment(
        world, user_id=user.id, amount_cents=amount_cents, receipt=receipt
    )


def reverse(deps: MpesaDeps, receipt: str) -> MpesaRequest:
    return reversals.request_reversal(deps, receipt=receipt, operator=OPERATOR, reason=REASON)


def result(
    request: MpesaRequest, code: str, receipt: str | None = None, desc: str = "result"
) -> ReversalResultEvent:
    assert request.originator_conversation_id is not None
    return ReversalResultEvent(
        request.originator_conversation_id, request.conversation_id, code, desc, receipt,
        request.amount_cents, request.original_receipt,
    )  # fmt: skip


def assert_books_balance(deps: MpesaDeps) -> None:
    with deps.uow.read_only() as uow:
        totals = ledger.check(uow)
    assert totals.postings_sum_cents == 0
    assert totals.unbalanced_entry_ids == ()
    assert totals.mismatched_accounts == ()
    assert totals.negative_wallets == ()


def in_suspense(world: World, deps: MpesaDeps, gateway: FakeMpesaGateway, receipt: str) -> None:
    """A paybill payment for no account, confirmed by M-PESA: it waits in suspense."""
    deliver(deps, CallbackKind.C2B_CONFIRMATION, C2BEvent(receipt, 300_00, "NOSUCH", None, "x"))
    claims.check_due(deps)
    with deps.uow.read_only() as uow:
        claim = uow.claims.lock(receipt)
    assert claim is not None
    answer = status_answer(claim.status_conversation_id, "0", "Completed", receipt, 300_00)
    deliver(deps, CallbackKind.STATUS_RESULT, answer)
    assert platform_cents(deps, PlatformAccount.SUSPENSE) == 300_00


def suspense_state(deps: MpesaDeps, receipt: str) -> SuspenseState:
    with deps.uow.read_only() as uow:
        payment = uow.suspense.lock(receipt)
    assert payment is not None
    return payment.state


# --- from a wallet ------------------------------------------------------------------------------


def test_a_credited_payment_is_held_at_once_and_leaves_the_paybill_once_mpesa_reverses_it(
    world: World, deps: MpesaDeps, gateway: FakeMpesaGateway
) -> None:
    user = register(world)
    paid_in(world, user, "TKR1AB2CD3", 500_00)

    request = reverse(deps, "tkr1ab2cd3 ")  # as an operator may type it

    assert (request.kind, request.state) == (RequestKind.REVERSAL, RequestState.QUEUED)
    assert (request.original_receipt, request.amount_cents) == ("TKR1AB2CD3", 500_00)
    assert hold_state(deps, request) is HoldState.PENDING
    assert wallet_cents(world, user) == 0  # held at once: it cannot be withdrawn meanwhile
    assert platform_cents(deps, PlatformAccount.MPESA_PAYBILL) == 500_00  # nothing left yet

    assert send(deps).done == 1
    [sent] = gateway.called("reversal")
    assert sent == {
        "original_receipt": "TKR1AB2CD3",
        "amount_cents": 500_00,
        "originator_conversation_id": f"{request.id}-1",
        "remarks": reversals.REMARKS,
    }
    accepted = stored(deps, request.id)
    assert accepted.state is RequestState.SENT

    first = deliver(deps, CallbackKind.REVERSAL_RESULT, result(accepted, "0", "TKV1AB2CD3"))
    repeat = deliver(deps, CallbackKind.REVERSAL_RESULT, result(accepted, "0", "TKV1AB2CD3"))
    other = deliver(deps, CallbackKind.REVERSAL_RESULT, result(accepted, "0", "TKV9FORGED"))

    assert first.inbox_id is not None
    assert repeat.inbox_id is None  # the same body twice is stored once
    assert other.inbox_id is not None  # said differently: stored, but moves nothing more
    done = stored(deps, request.id)
    assert (done.state, done.receipt, done.result_code) == (
        RequestState.SUCCEEDED,
        "TKV1AB2CD3",
        "0",
    )
    assert hold_state(deps, request) is HoldState.POSTED
    assert wallet_cents(world, user) == 0
    assert platform_cents(deps, PlatformAccount.MPESA_PAYBILL) == 0
    assert platform_cents(deps, PlatformAccount.PAYOUTS_IN_FLIGHT) == 0
    assert len(gateway.called("reversal")) == 1
    assert_books_balance(deps)


def test_a_reversal_entry_cannot_itself_be_reversed(
    world: World, deps: MpesaDeps, gateway: FakeMpesaGateway
) -> None:
    user = register(world)
    paid_in(world, user, "TKR2AB2CD3", 100_00)
    request = reverse(deps, "TKR2AB2CD3")
    send(deps)
    deliver(deps, CallbackKind.REVERSAL_RESULT, result(stored(deps, request.id), "0", "TKV2AB"))
    with deps.uow.read_only() as uow:
        hold = uow.ledger.lock_hold(request.hold_id or "")
        assert hold is not None
        assert hold.resolve_entry_id is not None
        entry = uow.ledger.get_entry(hold.resolve_entry_id)
    assert entry is not None
    assert entry.code is EntryCode.MPESA_REVERSAL

    with deps.uow() as uow, pytest.raises(Conflict) as refusal:
        ledger.reverse_entry(
            uow, entry_id=entry.id, idempotency_key="undo", reason="no", now=world.clock.now()
        )
    assert refusal.value.code == "not_reversible"


@pytest.mark.parametrize("code", ["R000002", "11", "2001", "1", "21", "2006", "2028", "8006"])
def test_a_failure_result_keeps_the_money_held_until_mpesa_confirms_it_then_gives_it_back(
    world: World, deps: MpesaDeps, gateway: FakeMpesaGateway, code: str
) -> None:
    user = register(world)
    paid_in(world, user, "TKR3AB2CD3", 500_00)
    request = reverse(deps, "TKR3AB2CD3")
    send(deps)

    deliver(deps, CallbackKind.REVERSAL_RESULT, result(stored(deps, request.id), code))

    claimed = stored(deps, request.id)
    assert (claimed.state, claimed.claimed_failure_code) == (RequestState.UNKNOWN, code)
    assert wallet_cents(world, user) == 0  # a callback alone gives nothing back
    for _ in range(POLICY.not_found_answers_min):
        later(world)
        assert reconcile.check_due(deps) == 1
        asking = stored(deps, request.id)
        answer = status_answer(asking.status_conversation_id, NOT_FOUND, None)
        deliver(deps, CallbackKind.STATUS_RESULT, answer)

    failed = stored(deps, request.id)
    assert (failed.state, failed.result_code) == (RequestState.FAILED, code)
    assert hold_state(deps, request) is HoldState.VOIDED
    assert wallet_cents(world, user) == 500_00  # the money stays the member's
    assert platform_cents(deps, PlatformAccount.MPESA_PAYBILL) == 500_00
    asked = {c["originator_conversation_id"] for c in gateway.called("transaction_status")}
    assert asked == {f"{request.id}-1"}
    assert len(gateway.called("reversal")) == 1
    assert_books_balance(deps)

    again = reverse(deps, "TKR3AB2CD3")  # a failed reversal may be asked for again
    assert again.id != request.id
    assert wallet_cents(world, user) == 0


def test_a_forged_failure_is_overruled_by_mpesa_saying_the_reversal_completed(
    world: World, deps: MpesaDeps, gateway: FakeMpesaGateway
) -> None:
    user = register(world)
    paid_in(world, user, "TKR4AB2CD3", 200_00)
    request = reverse(deps, "TKR4AB2CD3")
    send(deps)
    deliver(deps, CallbackKind.REVERSAL_RESULT, result(stored(deps, request.id), "R000002"))
    later(world)
    reconcile.check_due(deps)

    asking = stored(deps, request.id).status_conversation_id
    original = status_answer(asking, "0", "Completed", "TKR4AB2CD3", 200_00)
    assert deliver(deps, CallbackKind.STATUS_RESULT, original).inbox_id is not None
    assert stored(deps, request.id).state is RequestState.UNKNOWN  # the payment, not its reversal
    later(world)
    reconcile.check_due(deps)
    asking = stored(deps, request.id).status_conversation_id
    answer = status_answer(asking, "0", "Completed", "TKV4AB2CD3", 200_00)
    deliver(deps, CallbackKind.STATUS_RESULT, answer)

    done = stored(deps, request.id)
    assert (done.state, done.receipt) == (RequestState.SUCCEEDED, "TKV4AB2CD3")
    assert wallet_cents(world, user) == 0
    assert platform_cents(deps, PlatformAccount.MPESA_PAYBILL) == 0
    assert_books_balance(deps)


def test_a_timed_out_reversal_is_asked_about_never_sent_again(
    world: World, deps: MpesaDeps, gateway: FakeMpesaGateway
) -> None:
    user = register(world)
    paid_in(world, user, "TKR5AB2CD3", 200_00)
    request = reverse(deps, "TKR5AB2CD3")
    send(deps)
    timeout = QueueTimeoutEvent(f"{request.id}-1", None, "The service request has timed out.")
    deliver(deps, CallbackKind.REVERSAL_TIMEOUT, timeout)
    assert stored(deps, request.id).state is RequestState.UNKNOWN

    for _ in range(POLICY.not_found_answers_min):
        later(world)
        send(deps)
        reconcile.check_due(deps)
        asking = stored(deps, request.id)
        answer = status_answer(asking.status_conversation_id, NOT_FOUND, None)
        deliver(deps, CallbackKind.STATUS_RESULT, answer)

    waiting = stored(deps, request.id)
    assert waiting.awaiting_decision  # "not found" is no proof: an operator decides
    assert len(gateway.called("reversal")) == 1
    assert hold_state(deps, request) is HoldState.PENDING
    assert wallet_cents(world, user) == 0
    [listed] = decisions.waiting_payouts(deps)
    assert listed.request.id == request.id

    decisions.decide_payout(
        deps,
        request_id=request.id,
        decision=decisions.Decision.SUCCEEDED,
        operator="njeri",
        reason="reversed in the org portal",
        receipt="TKV5AB2CD3",
    )
    assert stored(deps, request.id).state is RequestState.SUCCEEDED
    assert platform_cents(deps, PlatformAccount.MPESA_PAYBILL) == 0
    assert_books_balance(deps)


def test_an_unknown_send_is_asked_about_and_a_refused_one_gives_the_money_back(
    world: World, deps: MpesaDeps, gateway: FakeMpesaGateway
) -> None:
    user = register(world)
    paid_in(world, user, "TKR6AB2CD3", 100_00)
    paid_in(world, user, "TKR7AB2CD3", 200_00)
    gateway.will("reversal", unknown(), refused("Bad Request - Invalid TransactionID"))
    maybe = reverse(deps, "TKR6AB2CD3")
    send(deps)
    not_taken = reverse(deps, "TKR7AB2CD3")
    send(deps)

    assert stored(deps, maybe.id).state is RequestState.UNKNOWN
    assert stored(deps, not_taken.id).state is RequestState.FAILED
    assert wallet_cents(world, user) == 200_00  # the unknown one stays held
    later(world)
    send(deps)
    assert len(gateway.called("reversal")) == 2  # none sent twice


def test_already_reversed_waits_for_an_operator_with_the_money_held(
    world: World, deps: MpesaDeps, gateway: FakeMpesaGateway
) -> None:
    user = register(world)
    paid_in(world, user, "TKR8AB2CD3", 300_00)
    request = reverse(deps, "TKR8AB2CD3")
    send(deps)

    deliver(deps, CallbackKind.REVERSAL_RESULT, result(stored(deps, request.id), "R000001"))

    waiting = stored(deps, request.id)
    assert waiting.awaiting_decision
    assert waiting.result_code == "R000001"
    assert wallet_cents(world, user) == 0
    decisions.decide_payout(
        deps,
        request_id=request.id,
        decision=decisions.Decision.FAIL,
        operator="njeri",
        reason="Safaricom: not reversed after all",
    )
    assert stored(deps, request.id).state is RequestState.FAILED
    assert wallet_cents(world, user) == 300_00
    assert_books_balance(deps)


# --- refusals -----------------------------------------------------------------------------------


def refusal(deps: MpesaDeps, receipt: str) -> DomainError:
    with pytest.raises(DomainError) as refused_:
        reverse(deps, receipt)
    return refused_.value


def test_what_cannot_be_reversed_is_refused_with_a_reason(
    world: World, deps: MpesaDeps, gateway: FakeMpesaGateway
) -> None:
    user = register(world, pin=PIN)
    paid_in(world, user, "TKR9AB2CD3", 500_00)

    unknown_receipt = refusal(deps, "TKNOSUCH01")
    assert (type(unknown_receipt), unknown_receipt.code) == (NotFound, "unknown_receipt")

    deliver(deps, CallbackKind.C2B_CONFIRMATION, C2BEvent("TKCLAIM001", 100_00, "X", None, "x"))
    assert refusal(deps, "TKCLAIM001").code == "payment_not_confirmed"

    withdraw(world, deps, user, 100_00)  # part of it is held for a payout
    short = refusal(deps, "TKR9AB2CD3")
    assert (type(short), short.code) == (InsufficientFunds, "wallet_short_for_reversal")
    assert wallet_cents(world, user) == 400_00  # nothing held for a refused reversal

    paid_in(world, user, "TKRAAB2CD3", 100_00)
    request = reverse(deps, "TKRAAB2CD3")
    assert refusal(deps, "TKRAAB2CD3").code == "reversal_pending"
    send(deps)
    deliver(deps, CallbackKind.REVERSAL_RESULT, result(stored(deps, request.id), "0", "TKVA"))
    assert refusal(deps, "TKRAAB2CD3").code == "already_reversed"

    for receipt, operator, reason, code in [
        ("TK-1", OPERATOR, REASON, "invalid_receipt"),
        ("TKRBAB2CD3", "", REASON, "invalid_operator"),
        ("TKRBAB2CD3", OPERATOR, "  ", "reason_required"),
    ]:
        with pytest.raises(DomainError) as invalid:
            reversals.request_reversal(deps, receipt=receipt, operator=operator, reason=reason)
        assert invalid.value.code == code


# --- from suspense ------------------------------------------------------------------------------


def test_a_suspense_payment_is_kept_from_assignment_and_leaves_suspense_once_reversed(
    world: World, deps: MpesaDeps, gateway: FakeMpesaGateway
) -> None:
    owner = register(world)
    in_suspense(world, deps, gateway, "TKS1AB2CD3")

    request = reverse(deps, "TKS1AB2CD3")

    assert (request.user_id, request.hold_id) == (None, None)
    assert suspense_state(deps, "TKS1AB2CD3") is SuspenseState.REVERSING
    with pytest.raises(Conflict) as refused_:
        reconcile.assign_suspense(deps, receipt="TKS1AB2CD3", user_id=owner.id)
    assert refused_.value.code == "payment_reversed"
    send(deps)
    accepted = stored(deps, request.id)
    deliver(deps, CallbackKind.REVERSAL_RESULT, result(accepted, "0", "TKVS1AB2CD"))
    deliver(deps, CallbackKind.REVERSAL_RESULT, result(accepted, "0", "TKVS1OTHER"))

    assert stored(deps, request.id).state is RequestState.SUCCEEDED
    assert suspense_state(deps, "TKS1AB2CD3") is SuspenseState.REVERSED
    assert platform_cents(deps, PlatformAccount.SUSPENSE) == 0
    assert platform_cents(deps, PlatformAccount.MPESA_PAYBILL) == 0
    assert wallet_cents(world, owner) == 0
    assert refusal(deps, "TKS1AB2CD3").code == "already_reversed"
    assert_books_balance(deps)


def test_a_suspense_payment_whose_reversal_failed_can_be_assigned_again(
    world: World, deps: MpesaDeps, gateway: FakeMpesaGateway
) -> None:
    owner = register(world)
    in_suspense(world, deps, gateway, "TKS2AB2CD3")
    request = reverse(deps, "TKS2AB2CD3")
    send(deps)
    deliver(deps, CallbackKind.REVERSAL_RESULT, result(stored(deps, request.id), "R000002"))
    for _ in range(POLICY.not_found_answers_min):
        later(world)
        reconcile.check_due(deps)
        asking = stored(deps, request.id)
        answer = status_answer(asking.status_conversation_id, NOT_FOUND, None)
        deliver(deps, CallbackKind.STATUS_RESULT, answer)

    assert stored(deps, request.id).state is RequestState.FAILED
    assert suspense_state(deps, "TKS2AB2CD3") is SuspenseState.UNASSIGNED
    reconcile.assign_suspense(deps, receipt="TKS2AB2CD3", user_id=owner.id)
    assert wallet_cents(world, owner) == 300_00
    assert platform_cents(deps, PlatformAccount.MPESA_PAYBILL) == 300_00
    assert_books_balance(deps)


# --- reading ------------------------------------------------------------------------------------


def test_the_console_lists_reversals_newest_first_with_who_asked_and_why(
    world: World, deps: MpesaDeps, gateway: FakeMpesaGateway
) -> None:
    user = register(world)
    paid_in(world, user, "TKL1AB2CD3", 100_00)
    first = reverse(deps, "TKL1AB2CD3")
    world.clock.advance(__import__("datetime").timedelta(seconds=1))
    in_suspense(world, deps, gateway, "TKL2AB2CD3")
    second = reverse(deps, "TKL2AB2CD3")
    send(deps)

    listed = reversals.list_reversals(deps, limit=10)

    assert [r.request.id for r in listed] == [second.id, first.id]
    assert [r.source for r in listed] == ["suspense", "wallet"]
    assert {(r.requested_by, r.reason) for r in listed} == {(OPERATOR, REASON)}
    kinds = [e.kind for e in listed[1].evidence]
    assert kinds[:2] == [EventKind.QUEUED, EventKind.SEND]
    assert EventKind.ACCEPTED in kinds
    assert reversals.list_reversals(deps, limit=1)[0].request.id == second.id
    with pytest.raises(DomainError):
        reversals.list_reversals(deps, limit=0)


def test_a_result_for_no_reversal_of_ours_is_ignored(world: World, deps: MpesaDeps) -> None:
    forged = ReversalResultEvent("nosuch-1", "AG_x", "0", "ok", "TKV0000000", 100_00, "TK1")
    stored_ = deliver(deps, CallbackKind.REVERSAL_RESULT, forged)
    assert stored_.inbox_id is not None
    with deps.uow.read_only() as uow:
        row = uow.mpesa_inbox.get(stored_.inbox_id)
    assert row is not None
    assert row.state is InboxState.IGNORED
