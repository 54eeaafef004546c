"""The weak-PIN rule in the use cases that set a PIN, and never in those that check one."""

from __future__ import annotations

import pytest

from deni.domain.errors import WeakPin
from deni.domain.loans import LoanState
from deni.services import loans, pin_reset, users
from tests.services.world import World
from tests.support.builders import (
    fund,
    next_phone,
    register,
    with_pin_chosen_before_the_weak_pin_rule,
)

PIN = "3591"


def test_registration_refuses_a_weak_pin_and_keeps_nothing(world: World) -> None:
    phone = next_phone()
    with pytest.raises(WeakPin):
        users.register_user(world, phone=phone, name="Amina Weak", pin="1234", phone_proven=True)
    with world.uow.read_only() as uow:
        assert uow.users.get_by_phone("254" + phone[1:]) is None


@pytest.mark.parametrize("new_pin", ["0000", "4321", "1988"])
def test_a_change_or_a_reset_refuses_a_weak_pin_and_the_old_pin_stays(
    world: World, new_pin: str
) -> None:
    member = register(world, pin=PIN)
    with pytest.raises(WeakPin):
        users.change_pin(world, user_id=member.id, old_pin=PIN, new_pin=new_pin)
    with pytest.raises(WeakPin):
        users.change_proven_pin(world, user_id=member.id, new_pin=new_pin, channel="ussd")
    with pytest.raises(WeakPin):
        pin_reset.reset_pin_on_this_sim(world, user_id=member.id, new_pin=new_pin, channel="ussd")
    stored = users.get_user(world, user_id=member.id)
    assert world.hasher.verify(PIN, stored.pin_hash)
    assert stored.pin_reset_at is None  # a refused reset holds no money


def test_a_member_who_chose_a_weak_pin_before_the_rule_still_uses_it(world: World) -> None:
    lender, borrower = register(world, pin=PIN), register(world, pin=PIN)
    fund(world, lender, 100_000)
    with_pin_chosen_before_the_weak_pin_rule(world, lender, "1234")
    loan = loans.request_loan(
        world, borrower_id=borrower.id, lender_phone=lender.phone,
        principal_cents=50_000, term_days=7,
    )  # fmt: skip
    approved = loans.approve_loan(world, lender_id=lender.id, loan_id=loan.id, pin="1234")
    assert approved.state is LoanState.ACTIVE
    # ... and may move to a better one, but not to another weak one.
    with pytest.raises(WeakPin):
        users.change_pin(world, user_id=lender.id, old_pin="1234", new_pin="1111")
    users.change_pin(world, user_id=lender.id, old_pin="1234", new_pin="7391")
    assert world.hasher.verify("7391", users.get_user(world, user_id=lender.id).pin_hash)
