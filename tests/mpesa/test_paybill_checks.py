"""Paybill (C2B) payments whose confirmation is lost: seen at validation, asked about by
Transaction Status, credited once whichever answer comes first."""

from __future__ import annotations

import json

import httpx

from deni.domain.users import User
from deni.services.mpesa import paybills
from deni.services.mpesa.callbacks import validate_c2b
from deni.services.mpesa.ports import ExpectedPaybill, InboxState, PaybillCheck
from tests.support.mpesa import CALLBACK_TOKEN, World


def _expected(world: World, trans_id: str) -> ExpectedPaybill:
    with world.deni.uow.read_only() as uow:
        [found] = [
            p
            for p in uow.paybills.in_states(states=list(PaybillCheck), limit=50)
            if p.trans_id == trans_id
        ]
    return found


def _pay_and_lose_the_confirmation(world: World, user: User, amount: int) -> str:
    world.admin.add_fault(kind="c2b", phone=user.phone, action="drop")
    paid = world.admin.pay_paybill(user.phone, amount, user.phone)
    assert paid["status"] == "completed"
    world.admin.flush()
    world.work()
    world.admin.clear_faults()
    return str(paid["TransID"])


def test_a_lost_confirmation_is_credited_by_transaction_status(world: World) -> None:
    user = world.user()
    trans_id = _pay_and_lose_the_confirmation(world, user, 250)
    assert world.balance(user) == 0  # M-PESA holds the money; Deni has not heard
    assert _expected(world, trans_id).state is PaybillCheck.WAITING

    world.reconcile(rounds=2)

    assert world.balance(user) == 250_00
    settled = _expected(world, trans_id)
    assert settled.state is PaybillCheck.CONFIRMED
    assert settled.checks == 1
    [line] = world.wallet_lines(user)
    assert line.memo == trans_id
    world.assert_conserved()


def test_the_confirmation_arriving_after_the_status_credits_nothing_more(world: World) -> None:
    user = world.user()
    trans_id = _pay_and_lose_the_confirmation(world, user, 120)
    world.reconcile(rounds=2)
    assert world.balance(user) == 120_00

    # M-PESA's confirmation carries the validation's fields; it turns up at last.
    with world.deni.uow.read_only() as uow:
        [validation] = [
            row
            for row in uow.mpesa_inbox.rows(states=[InboxState.APPLIED], limit=50)
            if row.dedupe_key == f"c2b_validation:{trans_id}"
        ]
    late = httpx.post(world.hook_url("c2b/confirmation", CALLBACK_TOKEN), content=validation.body)
    assert late.status_code == 200
    world.work()

    assert world.balance(user) == 120_00
    world.assert_conserved()


def test_a_confirmed_payment_ends_its_validation_wait_without_a_second_question(
    world: World,
) -> None:
    """The confirmation came: its claim is asked about once (by the receipt), and the wait
    that began at validation ends without asking M-PESA again."""
    user = world.user()
    paid = world.admin.pay_paybill(user.phone, 80, user.phone)
    world.admin.flush()
    world.work()
    assert world.balance(user) == 0  # claimed, not yet confirmed
    world.confirm()
    assert world.balance(user) == 80_00
    status_queries_before = len(world.admin.callbacks("status_result"))

    world.reconcile(rounds=1)

    settled = _expected(world, str(paid["TransID"]))
    assert settled.state is PaybillCheck.CONFIRMED
    assert settled.checks == 0
    assert settled.result_desc == "confirmation received"
    assert len(world.admin.callbacks("status_result")) == status_queries_before
    assert world.balance(user) == 80_00
    world.assert_conserved()


def test_a_payment_m_pesa_never_completed_moves_nothing(world: World) -> None:
    """Accepted at validation, then never completed (the customer's side failed): Transaction
    Status keeps answering "not found" and, after a few answers, the wait ends."""
    user = world.user()
    body = {
        "TransactionType": "Pay Bill",
        "TransID": "TNEVERPAID1",
        "TransTime": "20261127090000",
        "TransAmount": "40.00",
        "BusinessShortCode": world.deni.settings.daraja_paybill_shortcode or "174379",
        "BillRefNumber": user.phone,
        "InvoiceNumber": "",
        "OrgAccountBalance": "",
        "ThirdPartyTransID": "",
        "MSISDN": "254708374149",
        "FirstName": "John",
    }
    raw = json.dumps(body).encode()
    answer = validate_c2b(world.deps, body=raw, source_ip="127.0.0.1", enabled=True)
    assert answer["ResultCode"] == "0"
    assert _expected(world, "TNEVERPAID1").state is PaybillCheck.WAITING

    world.reconcile(rounds=world.deps.policy.not_found_answers_min + 1)

    settled = _expected(world, "TNEVERPAID1")
    assert settled.state is PaybillCheck.NOT_PAID
    assert settled.checks == world.deps.policy.not_found_answers_min
    assert world.balance(user) == 0
    world.assert_conserved()


def test_a_rejected_payment_is_not_awaited(world: World) -> None:
    user = world.user()
    refused = world.admin.pay_paybill(user.phone, 30, "NO-SUCH-LOAN")
    assert refused["status"] == "rejected"
    with world.deni.uow.read_only() as uow:
        assert uow.paybills.in_states(states=list(PaybillCheck), limit=50) == []


def test_a_confirmation_is_stored_under_its_receipt_and_what_it_says(world: World) -> None:
    user = world.user()
    paid = world.admin.pay_paybill(user.phone, 10, user.phone)
    world.admin.flush()
    key = paybills.confirmation_key(str(paid["TransID"]))
    with world.deni.uow.read_only() as uow:
        [row] = [
            r
            for r in uow.mpesa_inbox.rows(states=list(InboxState), limit=10)
            if r.kind == "c2b/confirmation"
        ]
    assert row.dedupe_key.startswith(key + ":")
