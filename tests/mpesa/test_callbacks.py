"""STK pushes that fail or go astray, and callbacks that are forged, malformed or repeated."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from deni.services import loans
from deni.services.mpesa.ports import ClaimState, InboxState, MpesaPreferences, SuspenseState
from tests.support.mpesa import CALLBACK_TOKEN, PIN, World, next_phone, stk_success_body


def _top_up(world: World, phone: str | None = None, amount_cents: int = 500_00) -> tuple[str, str]:
    user = world.user(phone=phone)
    answer = world.post(user, "/mpesa/top-ups", {"amount_cents": amount_cents})
    assert answer.status_code == 202, answer.text
    return user.id, answer.json()["id"]


@pytest.mark.parametrize(
    ("phone", "code"), [("0700001032", "1032"), ("0700000001", "1"), ("0700001037", "1037")]
)
def test_failed_push_moves_nothing(world: World, phone: str, code: str) -> None:
    _, request_id = _top_up(world, phone)
    world.settle()

    request = world.request(request_id)
    assert request.state.value == "failed"
    assert request.result_code == code
    world.assert_conserved()


def test_dropped_callback_is_found_by_query_and_status(world: World) -> None:
    user_id, request_id = _top_up(world, "0700000408")  # paid, no callback
    world.settle()
    assert world.request(request_id).state.value == "sent"

    world.reconcile()

    request = world.request(request_id)
    assert request.state.value == "succeeded"
    assert request.receipt
    with world.deni.uow.read_only() as uow:
        from deni.services import ledger

        assert ledger.wallet_balance_cents(uow, user_id=user_id) == 500_00
    world.assert_conserved()


def test_late_callback_after_query_settled_it_is_a_no_op(world: World) -> None:
    _, request_id = _top_up(world)
    world.drain()
    world.reconcile(rounds=1)  # query: still pending at the sandbox
    world.admin.flush()  # the late callback
    world.work()
    world.reconcile(rounds=2)

    assert world.request(request_id).state.value == "succeeded"
    world.assert_conserved()


@pytest.mark.parametrize("action", ["http_500", "http_429", "garbage", "invalid_token"])
def test_push_refused_or_garbled_never_creates_money(world: World, action: str) -> None:
    world.admin.add_fault(kind="stk", action=action, processed=True)
    _, request_id = _top_up(world)
    world.settle()
    world.clock.advance(timedelta(minutes=5))
    world.reconcile(rounds=2)
    world.admin.flush()
    world.work()

    # Whatever the answer was, every shilling the sandbox took is in the ledger (a wallet or
    # suspense), once.
    world.assert_conserved()
    assert world.request(request_id).state.value in {"succeeded", "failed"}


def test_duplicate_callbacks_credit_once(world: World) -> None:
    world.admin.add_fault(kind="stk", action="duplicate", copies=3)
    _, request_id = _top_up(world)
    world.settle()

    assert world.request(request_id).state.value == "succeeded"
    with world.deni.uow.read_only() as uow:
        rows = uow.mpesa_inbox.rows(states=list(InboxState), limit=10)
    assert len([r for r in rows if r.kind == "stk"]) == 1
    world.assert_conserved()


def test_forged_callback_with_a_wrong_token_is_404_and_moves_nothing(world: World) -> None:
    _, request_id = _top_up(world)
    world.drain()
    request = world.request(request_id)
    body = stk_success_body(request.checkout_request_id or "", "FORGED0001", 500)

    answer = world.http.post(world.hook_url("stk", token="f" * 32), json=body)
    assert answer.status_code == 404
    answer = world.http.post(f"{world.url}/hooks/{CALLBACK_TOKEN}/nonsense", json=body)
    assert answer.status_code == 404
    assert world.request(request_id).state.value == "sent"


def test_malformed_json_is_stored_and_answered_200(world: World) -> None:
    answer = world.http.post(world.hook_url("stk"), content=b"{not json")
    assert answer.status_code == 200
    assert answer.json() == {"ResultCode": 0, "ResultDesc": "Accepted"}
    answer = world.http.post(world.hook_url("b2c/result"), json={"Result": {"ResultCode": "x"}})
    assert answer.status_code == 200
    with world.deni.uow.read_only() as uow:
        rows = uow.mpesa_inbox.rows(states=[InboxState.MALFORMED], limit=10)
    assert {r.kind for r in rows} == {"stk", "b2c/result"}
    assert rows[-1].body == b"{not json"


def test_forged_unknown_checkout_and_wrong_amount_credit_nothing(world: World) -> None:
    """Payments Deni cannot match to an open push of its own (an unknown CheckoutRequestID, an
    amount it did not ask) are claims until M-PESA confirms them: forged ones, for receipts
    M-PESA never issued, end before an operator with nothing credited, not even suspense."""
    _, request_id = _top_up(world)
    world.drain()
    request = world.request(request_id)

    unknown = stk_success_body("ws_CO_unknown_0001", "UNKNOWN001", 100)
    assert world.http.post(world.hook_url("stk"), json=unknown).status_code == 200
    wrong = stk_success_body(request.checkout_request_id or "", "WRONGAMT01", 499)
    assert world.http.post(world.hook_url("stk"), json=wrong).status_code == 200
    for _ in range(world.deps.policy.inbox_attempts_max + 2):
        world.work()  # many quick worker passes inside the grace period: still waiting
    with world.deni.uow.read_only() as uow:
        assert len(uow.mpesa_inbox.ids(states=[InboxState.RECEIVED], limit=10)) == 1
    world.clock.advance(timedelta(minutes=5))  # the unknown one waits a grace period
    world.work()
    assert world.request(request_id).state.value == "sent"  # the push itself is untouched
    world.reconcile(rounds=world.deps.policy.not_found_answers_min)  # the genuine one too

    with world.deni.uow.read_only() as uow:
        assert uow.suspense.in_states(states=list(SuspenseState), limit=10) == []
        disputed = uow.claims.in_states(states=[ClaimState.DISPUTED], limit=10)
    assert {c.receipt for c in disputed} == {"UNKNOWN001", "WRONGAMT01"}
    request = world.request(request_id)
    assert request.state.value == "succeeded"  # by the genuine callback, once
    assert request.receipt not in {"UNKNOWN001", "WRONGAMT01"}
    assert world.balance_of(request.user_id) == 500_00
    world.assert_conserved()


def test_a_paid_push_whose_answer_was_lost_finds_its_loan_by_phone_and_amount(
    world: World,
) -> None:
    """Daraja prompted the phone but its answer to Deni was lost (HTTP 500), so the callback
    names a CheckoutRequestID Deni never learnt. The payment still repays the loan the push was
    for, once, rather than waiting in suspense for an operator."""
    borrower, lender = world.user(phone=next_phone()), world.user()
    world.fund(lender, 1_000_00)
    with world.deni.uow() as uow:
        uow.mpesa_preferences.set(MpesaPreferences(borrower.id, False), world.clock.now())
        uow.commit()
    loan = _approved_loan(world, borrower.id, lender.phone)
    world.admin.add_fault(kind="stk", phone=borrower.phone, action="http_500", processed=True)
    answer = world.post(borrower, f"/loans/{loan}/mpesa-repayments", {"amount_cents": 300_00})
    assert answer.status_code == 202, answer.text
    request_id = answer.json()["id"]
    world.settle()
    assert world.request(request_id).checkout_request_id is None
    assert world.balance(lender) == 0

    world.reconcile()  # past the grace for unknown ids; the reconciler gives the push up too

    request = world.request(request_id)
    assert request.state.value == "succeeded"
    assert request.receipt
    assert world.balance(lender) == 300_00  # the repayment reached the lender
    with world.deni.uow.read_only() as uow:
        assert uow.suspense.in_states(states=[SuspenseState.UNASSIGNED], limit=10) == []
    world.assert_conserved()


def test_an_unknown_payment_matches_no_push_of_another_amount(world: World) -> None:
    phone = next_phone()
    user = world.user(phone=phone)
    world.admin.add_fault(kind="stk", phone=user.phone, action="http_500", processed=False)
    answer = world.post(user, "/mpesa/top-ups", {"amount_cents": 200_00})
    request_id = answer.json()["id"]
    world.drain()  # Daraja never answered; nothing reached the phone
    unknown = stk_success_body("ws_CO_unknown_0002", "UNKNOWN002", 150)
    unknown["Body"]["stkCallback"]["CallbackMetadata"]["Item"][3]["Value"] = int(user.phone)  # type: ignore[index]
    assert world.http.post(world.hook_url("stk"), json=unknown).status_code == 200
    world.reconcile()

    assert world.request(request_id).state.value == "failed"
    assert world.balance(user) == 0
    with world.deni.uow.read_only() as uow:
        assert uow.suspense.in_states(states=list(SuspenseState), limit=10) == []
        [claim] = uow.claims.in_states(states=list(ClaimState), limit=10)
    assert (claim.receipt, claim.state, claim.user_id) == (
        "UNKNOWN002",
        ClaimState.DISPUTED,
        user.id,
    )


def _approved_loan(world: World, borrower_id: str, lender_phone: str) -> str:
    loan = loans.request_loan(
        world.deni,
        borrower_id=borrower_id,
        lender_phone=lender_phone,
        principal_cents=1_000_00,
        fee_cents=0,
        term_days=14,
    )
    lender_id = loan.lender_id
    approved = loans.approve_loan(
        world.deni,
        lender_id=lender_id,
        loan_id=loan.id,
        pin="3591",
    )
    return approved.id


def test_hook_answers_every_callback_kind(world: World) -> None:
    for kind in ("balance/timeout", "status/timeout", "reversal/result", "reversal/timeout"):
        answer = world.http.post(world.hook_url(kind), content=json.dumps({"Result": {}}))
        assert answer.status_code == 200


def test_a_forged_success_for_a_real_pending_push_credits_nothing(world: World) -> None:
    """A CheckoutRequestID is a date, a time and the payer's number: guessable. Whoever knows
    the callback URL posts "paid" for a member's open push that the member never pays (here
    they cancel the prompt). STK Query, Deni's own question, is asked before any credit."""
    member = world.user(phone="0700001032")  # cancels the STK prompt
    answer = world.post(member, "/mpesa/top-ups", {"amount_cents": 5_000_00})
    request_id = answer.json()["id"]
    world.drain()  # the push is on the phone; the member has not answered yet
    checkout = world.request(request_id).checkout_request_id or ""
    forged = stk_success_body(checkout, "TFORGEDSTK", 5_000)

    assert world.http.post(world.hook_url("stk"), json=forged).status_code == 200
    for _ in range(3):
        world.work()  # STK Query: still being processed, so the row waits
    assert world.balance(member) == 0
    withdrawal = world.post(member, "/mpesa/withdrawals", {"amount_cents": 5_000_00, "pin": PIN})
    assert withdrawal.status_code == 409

    world.admin.flush()  # the member cancels; M-PESA's own callback says so
    world.work()

    request = world.request(request_id)
    assert (request.state.value, request.result_code) == ("failed", "1032")
    assert world.balance(member) == 0
    with world.deni.uow.read_only() as uow:
        rows = uow.mpesa_inbox.rows(states=list(InboxState), limit=10)
    [forged_row] = [r for r in rows if b"TFORGEDSTK" in r.body]
    assert forged_row.state is InboxState.IGNORED
    assert "contradicted by STK Query" in forged_row.error
    world.assert_conserved()


def test_a_forged_success_for_a_push_the_member_pays_credits_it_once(world: World) -> None:
    """The forged success carries an invented receipt and arrives first; the member pays and
    M-PESA's own callback follows. STK Query says the push was paid, so it is credited once
    (under the receipt that came first); the other success waits for an operator, crediting
    nothing more, not even suspense."""
    member = world.user()
    answer = world.post(member, "/mpesa/top-ups", {"amount_cents": 700_00})
    request_id = answer.json()["id"]
    world.drain()
    checkout = world.request(request_id).checkout_request_id or ""
    forged = stk_success_body(checkout, "TFORGEDRCP", 700)
    assert world.http.post(world.hook_url("stk"), json=forged).status_code == 200
    world.admin.flush()  # the member pays: M-PESA's genuine callback

    world.work()
    world.confirm()

    assert world.balance(member) == 700_00
    assert world.request(request_id).state.value == "succeeded"
    with world.deni.uow.read_only() as uow:
        assert uow.suspense.in_states(states=list(SuspenseState), limit=10) == []
        [claim] = uow.claims.in_states(states=list(ClaimState), limit=10)
    assert claim.state is ClaimState.DISPUTED
    assert "already credited under receipt TFORGEDRCP" in claim.result_desc
    world.reconcile(rounds=2)
    assert world.balance(member) == 700_00
    world.assert_conserved()
