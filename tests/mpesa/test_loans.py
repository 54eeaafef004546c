"""A whole loan over M-PESA: disbursement by B2C, repayment by STK push or paybill (C2B),
suspense and its assignment, auto-repay on the due date, lenders' automatic payout."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from deni.domain.loans import Loan
from deni.domain.mpesa import Purpose
from deni.domain.security import MONEY_HOLD_AFTER_RESET
from deni.domain.users import User
from deni.services import loans, queries
from deni.services.mpesa.ports import MpesaPreferences, SuspenseState
from deni.services.mpesa.reconcile import assign_suspense
from tests.support.mpesa import PIN, World


def _loan(world: World, borrower: User, lender: User, principal_cents: int = 1_000_00) -> Loan:
    loan = loans.request_loan(
        world.deni,
        borrower_id=borrower.id,
        lender_phone=lender.phone,
        principal_cents=principal_cents,
        fee_cents=100_00,
        term_days=14,
    )
    return loans.approve_loan(
        world.deni,
        lender_id=lender.id,
        loan_id=loan.id,
        pin="3591",
    )


def _pay(world: World, phone: str, amount: int, account: str) -> dict[str, object]:
    paid = world.admin.pay_paybill(phone, amount, account)
    world.admin.flush()  # the confirmation: a claim, asked about by the receipt
    world.work()
    world.confirm()  # M-PESA confirms it: credited
    return paid


def _requests(world: World, purpose: Purpose) -> list[object]:
    with world.deni.uow.read_only() as uow:
        return [
            r for r in uow.mpesa_requests.in_states(states=[], limit=50) if r.purpose is purpose
        ]


def test_approval_pays_the_borrower_out_by_b2c(world: World) -> None:
    borrower, lender = world.user("Amina"), world.user("Baraka")
    world.fund(lender, 1_000_00)

    _loan(world, borrower, lender)
    world.work(reconcile=True)  # the sweep queues the payout
    world.settle()

    [payout] = _requests(world, Purpose.DISBURSEMENT)
    assert payout.state.value == "succeeded"  # type: ignore[attr-defined]
    assert world.balance(borrower) == 0
    assert [t["kind"] for t in world.admin.transactions(borrower.phone)] == ["b2c"]
    world.assert_conserved()


def test_borrower_may_keep_the_loan_in_the_wallet(world: World) -> None:
    borrower, lender = world.user(), world.user()
    world.fund(lender, 1_000_00)
    answer = world.http.put(
        "/api/v1/mpesa/preferences",
        json={"disburse_to_mpesa": False, "pin": PIN},
        headers=world.headers(borrower),
    )
    assert answer.status_code == 200, answer.text

    _loan(world, borrower, lender)
    world.work(reconcile=True)
    world.settle()

    assert _requests(world, Purpose.DISBURSEMENT) == []
    assert world.balance(borrower) == 1_000_00


def test_failed_disbursement_leaves_the_money_in_the_wallet(world: World) -> None:
    borrower, lender = world.user(phone="0700002040"), world.user()
    world.fund(lender, 1_000_00)

    _loan(world, borrower, lender)
    world.work(reconcile=True)
    world.settle()
    world.reconcile(rounds=world.deps.policy.not_found_answers_min)  # the failure confirmed

    [payout] = _requests(world, Purpose.DISBURSEMENT)
    assert payout.state.value == "failed"  # type: ignore[attr-defined]
    assert world.balance(borrower) == 1_000_00
    world.assert_conserved()


def test_repay_by_stk_push_pays_the_lender(world: World) -> None:
    borrower, lender = world.user(), world.user()
    world.fund(lender, 1_000_00)
    with world.deni.uow() as uow:
        uow.mpesa_preferences.set(MpesaPreferences(borrower.id, False), world.clock.now())
        uow.commit()
    loan = _loan(world, borrower, lender)

    answer = world.post(borrower, f"/loans/{loan.id}/mpesa-repayments", {"amount_cents": 600_00})
    assert answer.status_code == 202, answer.text
    world.settle()

    # The wallet held the principal (kept there), the push added 600: 600 went to the lender.
    assert world.balance(lender) == 600_00
    assert world.balance(borrower) == 1_000_00
    too_much = world.post(borrower, f"/loans/{loan.id}/mpesa-repayments", {"amount_cents": 600_00})
    assert too_much.status_code == 422
    world.assert_conserved()


def _push(world: World, user: User, mutations: list[dict[str, Any]]) -> dict[str, Any]:
    answer = world.http.post(
        "/api/v1/sync/push",
        json={
            "client_id": str(uuid.uuid5(uuid.NAMESPACE_URL, user.id)),
            "schema_version": 1,
            "mutations": mutations,
        },
        headers=world.headers(user),
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def test_the_web_app_repays_by_stk_push_through_sync_under_the_same_rule(world: World) -> None:
    """`repay_by_mpesa` (the web app's "Pay with M-PESA") makes the same request as
    /loans/{id}/mpesa-repayments: only the borrower, only an active loan, at most what is owed;
    once the sandbox's M-PESA says it is paid, the loan owes less, once."""
    borrower, lender, stranger = world.user(), world.user(), world.user()
    world.fund(lender, 1_000_00)
    with world.deni.uow() as uow:
        uow.mpesa_preferences.set(MpesaPreferences(borrower.id, False), world.clock.now())
        uow.commit()
    loan = _loan(world, borrower, lender)  # owes 1,100

    def repay(mutation_id: int, amount_cents: int) -> dict[str, Any]:
        args = {"loan_id": loan.id, "amount_cents": amount_cents}
        return {"id": mutation_id, "name": "repay_by_mpesa", "args": args}

    refused = _push(world, stranger, [repay(1, 100_00)])["results"]
    assert [(r["status"], r["code"]) for r in refused] == [("rejected", "loan_not_found")]
    refused = _push(world, lender, [repay(1, 100_00)])["results"]
    assert [(r["status"], r["code"]) for r in refused] == [("rejected", "loan_not_found")]
    answer = _push(world, borrower, [repay(1, 1_200_00), repay(2, 600_00)])
    [too_much, paying] = answer["results"]
    assert (too_much["status"], too_much["code"]) == ("rejected", "more_than_owed")
    assert paying["status"] == "applied"
    request = world.request(paying["entity_id"])
    assert (request.purpose, request.loan_id, request.amount_cents) == (
        Purpose.REPAYMENT,
        loan.id,
        600_00,
    )
    # The same mutation again (an answer lost on the way): the same request, not a second push.
    again = _push(world, borrower, [repay(2, 600_00)])["results"]
    assert again[0]["replayed"] is True
    assert again[0]["entity_id"] == request.id
    world.settle()
    world.settle()

    assert world.balance(lender) == 600_00
    assert world.balance(borrower) == 1_000_00
    detail = queries.loan_detail(world.deni, user_id=borrower.id, loan_id=loan.id)
    assert detail.view.owed.total_cents == 500_00
    assert [r.amount_cents for r in detail.repayments] == [600_00]
    world.assert_conserved()


def test_paybill_with_loan_code_or_phone_and_suspense(world: World) -> None:
    borrower, lender = world.user(), world.user()
    world.fund(lender, 1_000_00)
    loan = _loan(world, borrower, lender)
    world.work(reconcile=True)
    world.settle()  # disbursed to M-PESA

    paid = _pay(world, borrower.phone, 300, loan.code)
    assert paid["status"] == "completed"
    assert world.balance(lender) == 300_00

    _pay(world, borrower.phone, 50, borrower.phone)  # own phone: a top-up
    assert world.balance(borrower) == 50_00

    rejected = _pay(world, borrower.phone, 70, "NOSUCHCODE")
    assert rejected["status"] == "rejected"  # validation refuses unknown account numbers
    world.assert_conserved()


def test_unmatched_payment_waits_in_suspense_until_assigned(world: World) -> None:
    world.deni.settings.__dict__["c2b_validation"] = False  # accept everything
    user = world.user()
    paid = _pay(world, user.phone, 80, "WHO-KNOWS")
    assert paid["status"] == "completed"
    with world.deni.uow.read_only() as uow:
        [waiting] = uow.suspense.in_states(states=[SuspenseState.UNASSIGNED], limit=5)
    assert waiting.amount_cents == 80_00
    world.assert_conserved()

    assign_suspense(world.deps, receipt=waiting.receipt, user_id=user.id)
    assign_suspense(world.deps, receipt=waiting.receipt, user_id=user.id)  # twice: once

    assert world.balance(user) == 80_00
    [line] = world.wallet_lines(user)
    assert line.memo == waiting.receipt
    world.assert_conserved()


def test_auto_repay_takes_the_wallet_then_pushes_for_the_rest(world: World) -> None:
    borrower, lender = world.user(), world.user()
    world.fund(lender, 1_000_00)
    with world.deni.uow() as uow:
        uow.mpesa_preferences.set(MpesaPreferences(borrower.id, False), world.clock.now())
        uow.commit()
    _loan(world, borrower, lender)  # 1,000 principal + 100 fee, in 14 days
    world.clock.advance(timedelta(days=14))

    world.work(reconcile=True)  # due today: the wallet's 1,000 goes; a push asks for 100
    assert world.balance(lender) == 1_000_00
    [push] = _requests(world, Purpose.AUTO_REPAY)
    assert push.amount_cents == 100_00  # type: ignore[attr-defined]
    world.work(reconcile=True)
    assert len(_requests(world, Purpose.AUTO_REPAY)) == 1  # at most once a day
    world.settle()

    assert world.balance(lender) == 1_100_00
    world.assert_conserved()


def test_lender_auto_payout_sends_repayments_to_mpesa(world: World) -> None:
    borrower, lender = world.user(), world.user()
    world.fund(lender, 1_000_00)
    answer = world.http.put(
        "/api/v1/mpesa/preferences",
        json={"auto_payout": True, "pin": PIN},
        headers=world.headers(lender),
    )
    assert answer.status_code == 200
    loan = _loan(world, borrower, lender)
    world.work(reconcile=True)
    world.settle()

    _pay(world, borrower.phone, 500, loan.code)
    world.work(reconcile=True)
    world.settle()

    [payout] = _requests(world, Purpose.AUTO_PAYOUT)
    assert payout.state.value == "succeeded"  # type: ignore[attr-defined]
    assert world.balance(lender) == 0
    world.assert_conserved()


def test_a_disbursement_waits_while_a_pin_reset_holds_the_borrowers_money(world: World) -> None:
    borrower, lender = world.user(), world.user()
    world.fund(lender, 1_000_00)
    with world.deni.uow() as uow:  # a SIM-swapped thief would arrive this way
        user = uow.users.lock(borrower.id)
        assert user is not None
        user.reset_pin(world.deni.hasher.hash("2468"), world.clock.now())
        uow.users.save(user, world.clock.now())
        uow.commit()
    _loan(world, borrower, lender)

    world.work(reconcile=True)
    world.settle()
    assert _requests(world, Purpose.DISBURSEMENT) == []
    assert world.balance(borrower) == 1_000_00  # lent, and kept in the wallet for now

    world.clock.advance(MONEY_HOLD_AFTER_RESET)
    world.work(reconcile=True)
    world.settle()
    [payout] = _requests(world, Purpose.DISBURSEMENT)
    assert payout.state.value == "succeeded"  # type: ignore[attr-defined]
    assert world.balance(borrower) == 0
    world.assert_conserved()


def test_the_due_date_sweep_leaves_a_held_wallet_alone_until_the_hold_ends(world: World) -> None:
    """A thief resets the PIN, borrows from an accomplice for one day, and waits for Deni's
    own due-date repayment to empty the wallet into the accomplice's: it waits for the hold."""
    borrower, lender = world.user(), world.user()
    world.fund(lender, 1_000_00)
    with world.deni.uow() as uow:
        uow.mpesa_preferences.set(MpesaPreferences(borrower.id, False), world.clock.now())
        user = uow.users.lock(borrower.id)
        assert user is not None
        user.reset_pin(world.deni.hasher.hash("2468"), world.clock.now())
        uow.users.save(user, world.clock.now())
        uow.commit()
    loan = loans.request_loan(
        world.deni,
        borrower_id=borrower.id,
        lender_phone=lender.phone,
        principal_cents=1_000_00,
        fee_cents=1_000_00,
        term_days=1,
    )
    loans.approve_loan(
        world.deni,
        lender_id=lender.id,
        loan_id=loan.id,
        pin="3591",
    )
    world.clock.advance(timedelta(hours=20))  # the due date, still in the hold

    world.work(reconcile=True)
    assert world.balance(borrower) == 1_000_00
    assert world.balance(lender) == 0

    world.clock.advance(MONEY_HOLD_AFTER_RESET)
    world.work(reconcile=True)
    assert world.balance(borrower) == 0
    assert world.balance(lender) == 1_000_00


def _ussd(world: World, user: User, *entries: str) -> str:
    """One session on *383#, through the server's own /ussd, typing `entries`."""
    session = f"ATUid_loans_{user.id}_{len(entries)}_{world.rng.random()}"
    text, screen = "", ""
    for hop in ("", *entries):
        text = hop if text == "" else f"{text}*{hop}"
        form = {"sessionId": session, "serviceCode": "*383#", "phoneNumber": "+" + user.phone}
        answer = world.http.post("/ussd", data={**form, "networkCode": "63902", "text": text})
        assert answer.status_code == 200, answer.text
        screen = answer.text
    return screen


def test_a_loan_paid_out_to_mpesa_says_so_in_the_sms_and_on_the_statement(world: World) -> None:
    borrower = world.user("Amina", language="sw")
    lender = world.user("Baraka")
    world.fund(lender, 1_000_00)

    loan = _loan(world, borrower, lender)
    world.work(reconcile=True)
    world.settle()

    # The SMS says where the money goes, not that it stays in the wallet it leaves.
    with world.deni.uow.read_only() as uow:
        notes = uow.notifications.list_for(borrower.id, unread_only=False, limit=20, offset=0)
    [disbursed] = [n for n in notes if n.kind.startswith("loan_disbursed")]
    assert disbursed.kind == "loan_disbursed_mpesa"
    assert "zinatumwa kwa M-PESA yako" in disbursed.body
    # The statement: the loan came in, and went on to M-PESA as the loan's, not a withdrawal.
    statement = world.http.get("/api/v1/wallet/statement", headers=world.headers(borrower)).json()
    out, came_in = statement["lines"][0], statement["lines"][1]
    assert (came_in["kind"], came_in["amount_cents"]) == ("loan_disbursement", 1_000_00)
    assert (out["kind"], out["amount_cents"]) == ("payout_hold", -1_000_00)
    assert (out["loan_id"], out["reference"]) == (loan.id, loan.code)
    assert out["mpesa_receipt"]  # settled by the B2C
    screen = _ussd(world, borrower, "6")
    assert "-KES 1,000 M-PESA" in screen
    assert "+KES 1,000 Mkopo" in screen
    assert "Toa" not in screen  # a withdrawal she never asked for


def test_a_withdrawal_is_still_a_withdrawal_on_the_statement(world: World) -> None:
    member = world.user("Chebet", language="sw")
    world.fund(member, 500_00)
    answer = world.post(member, "/mpesa/withdrawals", {"amount_cents": 200_00, "pin": PIN})
    assert answer.status_code in (200, 201, 202), answer.text
    statement = world.http.get("/api/v1/wallet/statement", headers=world.headers(member)).json()
    assert (statement["lines"][0]["kind"], statement["lines"][0]["loan_id"]) == (
        "payout_hold",
        None,
    )
    assert "-KES 200 Toa" in _ussd(world, member, "6")
