"""Money a callback says arrived, written as the attacks: forged paybill confirmations must not
become money that leaves. Over real HTTP: the hook, the wallet API, Daraja's Transaction Status
and Pull API in the sandbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from deni.domain.errors import DomainError
from deni.domain.users import User
from deni.services.mpesa import paybill_pull
from deni.services.mpesa.decisions import ClaimDecision, decide_claim, open_claims
from deni.services.mpesa.ports import ClaimState, PaymentClaim
from tests.support.mpesa import PIN, World, c2b_confirmation_body


def _claim(world: World, receipt: str) -> PaymentClaim:
    with world.deni.uow.read_only() as uow:
        found = uow.claims.for_receipts([receipt])
    return found[receipt]


def _wallet(world: World, user: User) -> dict[str, object]:
    answer = world.http.get("/api/v1/wallet", headers=world.headers(user))
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


def _notified(world: World, user: User) -> list[str]:
    with world.deni.uow.read_only() as uow:
        found = uow.notifications.list_for(user.id, unread_only=False, limit=50, offset=0)
    return [n.kind for n in found]


def test_a_forged_paybill_confirmation_credits_nothing_and_cannot_be_withdrawn(
    world: World,
) -> None:
    """Whoever knows the callback URL posts "KES 5,000 paid to this member's account" for a
    receipt M-PESA never issued, then withdraws it by B2C."""
    member = world.user()
    forged = c2b_confirmation_body("TFORGED001", 5_000, member.phone)

    assert world.http.post(world.hook_url("c2b/confirmation"), json=forged).status_code == 200
    world.work()

    assert _wallet(world, member) == {
        "balance_cents": 0,
        "balance": "KES 0",
        "arriving_cents": 5_000_00,
    }
    statement = world.http.get("/api/v1/wallet/statement", headers=world.headers(member)).json()
    assert statement["lines"] == []
    assert [(a["receipt"], a["amount_cents"]) for a in statement["arriving"]] == [
        ("TFORGED001", 5_000_00)
    ]
    me = world.http.get("/api/v1/me", headers=world.headers(member)).json()
    assert (me["balance_cents"], me["arriving_cents"]) == (0, 5_000_00)
    withdrawal = world.post(member, "/mpesa/withdrawals", {"amount_cents": 5_000_00, "pin": PIN})
    assert withdrawal.status_code == 409
    assert withdrawal.json()["error"]["code"] == "insufficient_funds"

    world.confirm()  # M-PESA: no such transaction
    world.reconcile(rounds=world.deps.policy.not_found_answers_min)

    claim = _claim(world, "TFORGED001")
    assert claim.state is ClaimState.DISPUTED
    assert claim.not_found_answers == world.deps.policy.not_found_answers_min
    assert [c.receipt for c in open_claims(world.deps)] == ["TFORGED001"]
    assert _wallet(world, member)["arriving_cents"] == 0
    assert world.balance(member) == 0
    assert "wallet_credited" not in _notified(world, member)

    decide_claim(
        world.deps,
        receipt="TFORGED001",
        decision=ClaimDecision.REJECT,
        operator="njeri",
        reason="not in the org portal",
    )
    with pytest.raises(DomainError) as again:
        decide_claim(
            world.deps,
            receipt="TFORGED001",
            decision=ClaimDecision.ACCEPT,
            operator="kamau",
            reason="looks fine",
        )
    assert again.value.code == "claim_decided"
    assert _claim(world, "TFORGED001").state is ClaimState.REJECTED
    assert world.balance(member) == 0
    with world.deni.uow.read_only() as uow:
        [row] = uow.audit.by_actor("njeri", after_seq=0, limit=5)
    assert row.command == "claim_decision"
    world.assert_conserved()


def test_a_real_paybill_payment_is_credited_once_m_pesa_confirms_it(world: World) -> None:
    member = world.user()
    paid = world.admin.pay_paybill(member.phone, 640, member.phone)
    receipt = str(paid["TransID"])
    world.admin.flush()  # the confirmation
    world.clock.advance(timedelta(seconds=2))
    world.work()  # stored as a claim; Transaction Status asked by the receipt
    assert world.balance(member) == 0
    assert _wallet(world, member)["arriving_cents"] == 640_00

    world.clock.advance(timedelta(seconds=1))
    world.confirm()

    assert world.balance(member) == 640_00
    assert _wallet(world, member)["arriving_cents"] == 0
    claim = _claim(world, receipt)
    assert (claim.state, claim.result_desc) == (
        ClaimState.CONFIRMED,
        "confirmed by Transaction Status",
    )
    assert claim.confirm_wait_ms == 3_000
    assert _notified(world, member).count("wallet_credited") == 1
    metrics = world.http.get("/metrics").text
    assert "mpesa_payment_confirmation_seconds_count 1.0" in metrics
    assert 'mpesa_payment_confirmation_seconds_bucket{le="5.0"} 1.0' in metrics
    assert 'mpesa_payment_confirmation_seconds_bucket{le="2.5"} 0.0' in metrics

    # The same confirmation again, and a later check, credit nothing more.
    [line] = world.wallet_lines(member)
    assert line.memo == receipt
    world.reconcile(rounds=2)
    assert world.balance(member) == 640_00
    world.assert_conserved()


def test_m_pesa_saying_another_amount_leaves_the_claim_to_an_operator(world: World) -> None:
    """A real receipt, claimed for more than was paid."""
    member = world.user()
    world.admin.add_fault(kind="c2b", phone=member.phone, action="drop")
    paid = world.admin.pay_paybill(member.phone, 100, member.phone)
    world.admin.flush()  # the genuine confirmation is lost
    receipt = str(paid["TransID"])
    inflated = c2b_confirmation_body(receipt, 9_000, member.phone)
    assert world.http.post(world.hook_url("c2b/confirmation"), json=inflated).status_code == 200
    world.work()
    world.confirm()

    claim = _claim(world, receipt)
    assert claim.state is ClaimState.DISPUTED
    assert "M-PESA says 10000 cents, the callback 900000" in claim.result_desc
    assert world.balance(member) == 0

    decide_claim(
        world.deps,
        receipt=receipt,
        decision=ClaimDecision.REJECT,
        operator="njeri",
        reason="M-PESA says KES 100",
    )
    assert world.balance(member) == 0


def test_a_forged_confirmation_for_a_real_receipt_does_not_hide_the_genuine_one(
    world: World,
) -> None:
    """A forged confirmation names a genuine receipt but the forger's account, posted before
    M-PESA's own: neither is credited (both cannot be true), and an operator who checked the
    org portal applies the payment to the account Safaricom shows."""
    victim, forger = world.user(), world.user()
    paid = world.admin.pay_paybill(victim.phone, 300, victim.phone)
    receipt = str(paid["TransID"])
    # The forger even names the victim's number as the payer: only the account differs.
    forged = c2b_confirmation_body(receipt, 300, forger.phone, msisdn=victim.phone)
    assert world.http.post(world.hook_url("c2b/confirmation"), json=forged).status_code == 200
    world.work()
    world.admin.flush()  # M-PESA's genuine confirmation: no repeat, so it is stored too
    world.work()
    world.confirm()

    assert _claim(world, receipt).state is ClaimState.DISPUTED
    assert (world.balance(victim), world.balance(forger)) == (0, 0)

    decide_claim(
        world.deps,
        receipt=receipt,
        decision=ClaimDecision.ACCEPT,
        operator="njeri",
        reason="org portal: paid to the victim's number",
        account_reference=victim.phone,
    )
    assert (world.balance(victim), world.balance(forger)) == (300_00, 0)
    world.assert_conserved()


def test_a_claim_the_pull_api_lists_alike_is_confirmed_by_it(world: World) -> None:
    world.clock.advance(datetime.now(UTC) - world.clock.now())  # the sandbox's real time
    world.deps.gateway.register_pull()
    member = world.user()
    world.admin.add_fault(kind="status", action="timeout", times=20)  # status never answers
    paid = world.admin.pay_paybill(member.phone, 450, member.phone)
    receipt = str(paid["TransID"])
    world.admin.flush()
    world.work()
    world.confirm()
    assert world.balance(member) == 0
    assert _claim(world, receipt).state is ClaimState.WAITING

    world.clock.advance(timedelta(seconds=world.deps.policy.pull_settle_s + 60))
    pull = paybill_pull.pull_missed_payments(world.deps)

    assert (pull.state, pull.recovered) == ("done", 0)
    claim = _claim(world, receipt)
    assert (claim.state, claim.result_desc) == (ClaimState.CONFIRMED, "confirmed by the Pull API")
    assert world.balance(member) == 450_00
    world.admin.clear_faults()
    world.assert_conserved()


def test_a_forged_account_for_a_real_receipt_is_caught_by_the_validation(world: World) -> None:
    """M-PESA's own confirmation is lost, so nothing conflicts with the forged one, which names
    the victim as payer; Transaction Status (which says no account number) agrees with it. The
    validation M-PESA asked before the payment completed, before anyone knew its receipt, says
    which account it was for."""
    victim, forger = world.user(), world.user()
    world.admin.add_fault(kind="c2b", phone=victim.phone, action="drop")
    paid = world.admin.pay_paybill(victim.phone, 250, victim.phone)
    world.admin.flush()  # M-PESA's confirmation is lost
    receipt = str(paid["TransID"])
    forged = c2b_confirmation_body(receipt, 250, forger.phone, msisdn=victim.phone)
    assert world.http.post(world.hook_url("c2b/confirmation"), json=forged).status_code == 200
    world.work()
    world.confirm()

    claim = _claim(world, receipt)
    assert claim.state is ClaimState.DISPUTED
    assert f"validated for account '{victim.phone}'" in claim.result_desc
    assert (world.balance(victim), world.balance(forger)) == (0, 0)
    world.reconcile(rounds=2)  # the validation's own wait ends: the claim carries it
    assert (world.balance(victim), world.balance(forger)) == (0, 0)

    decide_claim(
        world.deps,
        receipt=receipt,
        decision=ClaimDecision.ACCEPT,
        operator="njeri",
        reason="org portal: paid to the victim's number",
        account_reference=victim.phone,
    )
    assert (world.balance(victim), world.balance(forger)) == (250_00, 0)
    world.assert_conserved()
