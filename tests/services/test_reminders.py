"""Due-date reminders: two days before, on the day, on set overdue days; once a day at most."""

from __future__ import annotations

from datetime import timedelta

from deni.domain.users import User
from deni.services import loans, reminders
from tests.services.world import World
from tests.support.builders import fund, register


def _active_loan(world: World, *, term_days: int) -> tuple[User, str]:
    lender = register(world, name="Lender", pin="7141")
    borrower = register(world, name="Borrower", pin="2724", language="sw")
    fund(world, lender, 100_000)
    loan = loans.request_loan(
        world,
        borrower_id=borrower.id,
        lender_phone=lender.phone,
        principal_cents=50_000,
        fee_cents=2_000,
        term_days=term_days,
    )
    loans.approve_loan(
        world,
        lender_id=lender.id,
        loan_id=loan.id,
        pin="7141",
    )
    return borrower, loan.id


def _kinds(world: World, user: User) -> list[str]:
    with world.uow.read_only() as uow:
        records = uow.notifications.list_for(user.id, unread_only=False, limit=100, offset=0)
    return [r.kind for r in records if r.kind in ("due_soon", "due_today", "overdue")]


def test_reminders_follow_the_due_date_and_never_repeat_the_same_day(world: World) -> None:
    borrower, _ = _active_loan(world, term_days=5)
    clock = world.clock
    assert (
        reminders.sweep(
            world,
        ).reminders
        == 0
    )
    clock.advance(timedelta(days=3))  # two days left
    assert (
        reminders.send_due_reminders(
            world,
        )
        == 1
    )
    assert (
        reminders.send_due_reminders(
            world,
        )
        == 0
    )
    clock.advance(timedelta(days=2))  # due today
    assert (
        reminders.send_due_reminders(
            world,
        )
        == 1
    )
    clock.advance(timedelta(days=1))  # one day overdue
    assert (
        reminders.send_due_reminders(
            world,
        )
        == 1
    )
    clock.advance(timedelta(days=1))  # two days overdue: not a reminder day
    assert (
        reminders.send_due_reminders(
            world,
        )
        == 0
    )
    assert _kinds(world, borrower) == ["overdue", "due_today", "due_soon"]


def test_reminders_are_in_the_borrowers_language(world: World) -> None:
    borrower, _ = _active_loan(world, term_days=2)
    reminders.send_due_reminders(
        world,
    )
    with world.uow.read_only() as uow:
        records = uow.notifications.list_for(borrower.id, unread_only=False, limit=10, offset=0)
    latest = next(r for r in records if r.kind == "due_soon")
    assert latest.language == "sw"
    assert "KES 520" in latest.body


def test_a_repaid_loan_gets_no_reminders(world: World) -> None:
    borrower, loan_id = _active_loan(world, term_days=2)
    fund(world, borrower, 2_000)
    loans.repay_loan(
        world,
        borrower_id=borrower.id,
        loan_id=loan_id,
        amount_cents=52_000,
        pin="2724",
        idempotency_key="pay-all",
    )
    assert (
        reminders.send_due_reminders(
            world,
        )
        == 0
    )
