"""Reversals end to end: Deni's worker sends them to the Daraja sandbox over real HTTP, the
sandbox answers on the result (or queue timeout) hook with M-PESA's own result codes, and the
books follow only what M-PESA did: the sandbox's working account and Deni's paybill account
move together (`assert_conserved`), and a repeated or forged callback moves nothing twice."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from deni.domain.ledger import PlatformAccount
from deni.domain.mpesa import MpesaRequest, RequestState
from deni.domain.users import User
from deni.sandbox import codes
from deni.services.mpesa import reversals
from deni.services.mpesa.ports import SuspenseState
from tests.support.mpesa import World

OPERATOR = "akinyi"
REASON = "paid to Deni by mistake; approved by njeri"


def _paid(world: World, user: User, amount: int, account: str | None = None) -> str:
    """A paybill payment M-PESA confirmed: in the member's wallet (or in suspense)."""
    paid = world.admin.pay_paybill(user.phone, amount, account or user.phone)
    world.admin.flush()  # the confirmation
    world.clock.advance(timedelta(seconds=2))
    world.work()  # a claim; Transaction Status asked by the receipt
    world.clock.advance(timedelta(seconds=1))
    world.confirm()
    return str(paid["TransID"])


def _customer_cents(world: World, user: User) -> int:
    return int(world.admin.customer(user.phone)["balance_cents"])


def _reverse(world: World, receipt: str) -> MpesaRequest:
    return reversals.request_reversal(world.deps, receipt=receipt, operator=OPERATOR, reason=REASON)


def _platform(world: World, account: PlatformAccount) -> int:
    with world.deni.uow.read_only() as uow:
        found = uow.ledger.get_account(account.value)
    assert found is not None
    return found.balance_cents


def _results(world: World) -> list[dict[str, Any]]:
    return [c["body"]["Result"] for c in world.admin.callbacks(kind="reversal_result")]


def test_a_paybill_payment_goes_back_to_its_payer_and_leaves_the_books_once(
    world: World,
) -> None:
    member = world.user()
    receipt = _paid(world, member, 640)
    assert world.balance(member) == 640_00
    paid_cents = _customer_cents(world, member)
    world.admin.add_fault(kind="reversal", action="duplicate", copies=3)

    request = _reverse(world, receipt)
    assert world.balance(member) == 0  # held at once
    world.settle()

    done = world.request(request.id)
    assert done.state is RequestState.SUCCEEDED
    [original] = [t for t in world.admin.transactions(member.phone) if t["kind"] == "c2b"]
    assert original["reversed_by"] == done.receipt
    [result] = {str(r["TransactionID"]): r for r in _results(world)}.values()  # 3 copies, 1 body
    assert (result["ResultCode"], result["ResultDesc"]) == (0, codes.SUCCESS_DESC)
    assert result["OriginatorConversationID"] == f"{request.id}-1"
    assert _customer_cents(world, member) == paid_cents + 640_00  # the payer has it back
    assert world.balance(member) == 0
    assert _platform(world, PlatformAccount.PAYOUTS_IN_FLIGHT) == 0
    world.assert_conserved()  # paybill and working account went down together, once


@pytest.mark.parametrize("code", ["R000002", 11, 2001, 1, 21, 2006, 2028, 8006])
def test_a_failed_reversal_leaves_the_money_with_the_member_once_mpesa_confirms(
    world: World, code: int | str
) -> None:
    member = world.user()
    receipt = _paid(world, member, 300)
    paid_cents = _customer_cents(world, member)
    world.admin.add_fault(kind="reversal", action="result_code", result_code=code)

    request = _reverse(world, receipt)
    world.settle()

    [result] = _results(world)
    assert (result["ResultCode"], result["ResultDesc"]) == (code, codes.REVERSAL_RESULTS[code])
    claimed = world.request(request.id)
    assert (claimed.state, claimed.claimed_failure_code) == (RequestState.UNKNOWN, str(code))
    assert world.balance(member) == 0  # a failure result alone gives nothing back

    world.reconcile(rounds=world.deps.policy.not_found_answers_min)

    failed = world.request(request.id)
    assert (failed.state, failed.result_code) == (RequestState.FAILED, str(code))
    assert failed.result_desc.startswith(codes.REVERSAL_RESULTS[code])
    assert world.balance(member) == 300_00
    assert _customer_cents(world, member) == paid_cents
    assert len(_results(world)) == 1  # never sent again
    world.assert_conserved()


def test_already_reversed_waits_for_an_operator(world: World) -> None:
    member = world.user()
    receipt = _paid(world, member, 200)
    world.admin.add_fault(kind="reversal", action="result_code", result_code="R000001")

    request = _reverse(world, receipt)
    world.settle()

    waiting = world.request(request.id)
    assert waiting.awaiting_decision
    assert world.balance(member) == 0
    world.reconcile(rounds=2)
    assert len(_results(world)) == 1
    world.assert_conserved()


def test_a_timed_out_reversal_is_settled_by_transaction_status_not_sent_again(
    world: World,
) -> None:
    member = world.user()
    receipt = _paid(world, member, 500)
    paid_cents = _customer_cents(world, member)
    world.admin.add_fault(kind="reversal", action="timeout", queue_timeout=True)

    request = _reverse(world, receipt)
    world.settle()
    assert world.admin.callbacks(kind="reversal_queue_timeout")
    assert world.request(request.id).state is RequestState.UNKNOWN
    assert world.balance(member) == 0

    world.reconcile(rounds=1)

    done = world.request(request.id)
    assert done.state is RequestState.SUCCEEDED
    assert done.receipt is not None
    assert done.receipt != receipt
    assert _customer_cents(world, member) == paid_cents + 500_00
    assert _results(world) == []  # one reversal, and no result ever came
    world.assert_conserved()


def test_a_forged_failure_cannot_give_the_money_back_when_mpesa_reversed_it(
    world: World,
) -> None:
    member = world.user()
    receipt = _paid(world, member, 400)
    world.admin.add_fault(kind="reversal", action="delay", delay_s=30)
    request = _reverse(world, receipt)
    world.drain()
    sent = world.request(request.id)
    forged = {
        "Result": {
            "ResultType": 0,
            "ResultCode": "R000002",
            "ResultDesc": "The OriginalTransactionID is invalid.",
            "OriginatorConversationID": sent.originator_conversation_id,
            "ConversationID": "AG_20261126_0000forged00000000",
            "TransactionID": "TKQ0000000",
        }
    }
    assert world.http.post(world.hook_url("reversal/result"), json=forged).status_code == 200
    world.work()
    assert world.request(request.id).claimed_failure_code == "R000002"
    assert world.balance(member) == 0  # still held

    world.admin.flush()  # M-PESA's genuine success
    world.work()
    world.reconcile(rounds=world.deps.policy.not_found_answers_min)

    assert world.request(request.id).state is RequestState.SUCCEEDED
    assert world.balance(member) == 0
    world.assert_conserved()


def test_a_payment_in_suspense_goes_back_and_cannot_be_assigned_meanwhile(
    world: World,
) -> None:
    world.deni.settings.__dict__["c2b_validation"] = False  # accept every account number
    payer = world.user()
    receipt = _paid(world, payer, 250, account="NOSUCHLOAN")
    assert _platform(world, PlatformAccount.SUSPENSE) == 250_00
    paid_cents = _customer_cents(world, payer)

    request = _reverse(world, receipt)
    with world.deni.uow.read_only() as uow:
        payment = uow.suspense.lock(receipt)
    assert payment is not None
    assert payment.state is SuspenseState.REVERSING
    world.settle()

    assert world.request(request.id).state is RequestState.SUCCEEDED
    assert _platform(world, PlatformAccount.SUSPENSE) == 0
    assert _customer_cents(world, payer) == paid_cents + 250_00
    assert world.balance(payer) == 0
    world.assert_conserved()
    [listed] = reversals.list_reversals(world.deps, limit=5)
    assert (listed.source, listed.requested_by, listed.reason) == ("suspense", OPERATOR, REASON)
