"""What the loan service writes besides the loan itself, read back from the database: the
entries' cause and memo, which loan each notification is about, the audit details, a system
repayment, and the code and message of every refusal."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from tests.fakes import ManualClock
from tests.support.builders import fund, register, wallet_cents

from deni.adapters.db import tables as t
from deni.bootstrap import Deni, database_engine
from deni.domain.errors import (
    Conflict,
    DomainError,
    Forbidden,
    IdempotencyConflict,
    InsufficientFunds,
    MoneyOnHold,
    NotFound,
    PhoneNotProven,
    SelfLending,
    TooManyRequests,
    WrongPin,
)
from deni.domain.ledger import EntryCode, wallet_account_id
from deni.domain.loans import (
    FUNDING_TTL,
    OPEN_REQUESTS_TO_ONE_LENDER_MAX,
    REQUEST_TTL,
    REQUESTS_TO_ONE_LENDER_PER_DAY_MAX,
    Loan,
    LoanState,
)
from deni.domain.security import MONEY_HOLD_AFTER_RESET
from deni.domain.users import User
from deni.services import ledger, loans
from deni.services.mpesa import payments

PIN = "3591"


def request(deni: Deni, borrower: User, lender: User, **extra: Any) -> Loan:
    return loans.request_loan(
        deni,
        borrower_id=borrower.id,
        lender_phone=lender.phone,
        principal_cents=extra.pop("principal_cents", 10_000),
        term_days=extra.pop("term_days", 7),
        **extra,
    )


def approve(deni: Deni, lender: User, loan: Loan, **extra: Any) -> Loan:
    return loans.approve_loan(
        deni,
        lender_id=lender.id,
        loan_id=loan.id,
        pin=PIN,
        **extra,
    )


def repay(deni: Deni, borrower: User, loan: Loan, cents: int, key: str) -> loans.Repayment:
    return loans.repay_loan(
        deni,
        borrower_id=borrower.id,
        loan_id=loan.id,
        amount_cents=cents,
        pin=PIN,
        idempotency_key=key,
    )


def active(deni: Deni, *, fee_cents: int = 500) -> tuple[User, User, Loan]:
    lender, borrower = register(deni, name="Wanjiku"), register(deni, name="Otieno")
    fund(deni, lender, 10_000)
    loan = approve(deni, lender, request(deni, borrower, lender, fee_cents=fee_cents))
    assert loan.state is LoanState.ACTIVE
    return lender, borrower, loan


def rows(deni: Deni, query: Any) -> list[Any]:
    with database_engine(deni).connect() as connection:
        return list(connection.execute(query))


def entries_of(deni: Deni, loan: Loan) -> list[Any]:
    e = t.journal_entries
    return rows(deni, select(e).where(e.c.cause_id == loan.id).order_by(e.c.created_at, e.c.code))


def notifications(deni: Deni, user: User) -> list[Any]:
    n = t.notifications
    return rows(deni, select(n.c.kind, n.c.loan_id).where(n.c.user_id == user.id))


def audits(deni: Deni, command: str) -> list[dict[str, Any]]:
    a = t.audit_log
    found = rows(deni, select(a.c.actor_id, a.c.details).where(a.c.command == command))
    return [{"actor_id": row.actor_id, **json.loads(row.details)} for row in found]


# --- what is written ---------------------------------------------------------------------------


def test_a_request_has_no_fee_and_no_penalty_unless_given(deni: Deni) -> None:
    lender, borrower = register(deni), register(deni)
    loan = request(deni, borrower, lender)
    assert (loan.terms.fee_cents, loan.terms.penalty_daily_cents) == (0, 0)


def test_a_loans_entries_name_the_loan_and_carry_its_code(deni: Deni) -> None:
    _, borrower, loan = active(deni)
    repay(deni, borrower, loan, 600, "r-1")
    found = [(row.code, row.cause_type, row.cause_id, row.memo) for row in entries_of(deni, loan)]
    assert sorted(found) == sorted(
        [
            (EntryCode.LOAN_DISBURSEMENT.value, "loan", loan.id, loan.code),
            (EntryCode.LOAN_REPAYMENT.value, "loan", loan.id, loan.code),
        ]
    )


def test_every_notification_of_a_loan_names_it(deni: Deni) -> None:
    lender, borrower = register(deni), register(deni)
    asked = request(deni, borrower, lender)
    approve(deni, lender, asked)  # the lender's wallet is empty: the borrower waits
    declined = request(deni, borrower, lender)
    loans.decline_loan(deni, lender_id=lender.id, loan_id=declined.id)
    fund(deni, lender, 10_000)
    repay(deni, borrower, asked, 10_000, "r-1")
    kinds_lender = {(row.kind, row.loan_id) for row in notifications(deni, lender)}
    kinds_borrower = {(row.kind, row.loan_id) for row in notifications(deni, borrower)}
    assert {("loan_requested", asked.id), ("loan_requested", declined.id)} <= kinds_lender
    assert ("loan_repaid", asked.id) in kinds_lender
    assert {
        ("loan_awaiting_funds", asked.id),
        ("loan_declined", declined.id),
        ("loan_repaid", asked.id),
    } <= kinds_borrower


def test_a_part_repayment_tells_both_sides_about_that_loan(deni: Deni) -> None:
    lender, borrower, loan = active(deni)
    repay(deni, borrower, loan, 600, "r-1")
    assert ("repayment_received", loan.id) in notifications(deni, lender)
    assert ("repayment_made", loan.id) in notifications(deni, borrower)


def test_a_written_off_loan_tells_the_borrower_about_that_loan(deni: Deni) -> None:
    lender, borrower, loan = active(deni)
    loans.write_off_loan(
        deni,
        lender_id=lender.id,
        loan_id=loan.id,
        pin=PIN,
    )
    assert ("loan_written_off", loan.id) in notifications(deni, borrower)
    (written_off,) = audits(deni, "write_off_loan")
    assert written_off == {
        "actor_id": lender.id,
        "loan_id": loan.id,
        "state": "written_off",
        "amount_cents": 10_500,
    }


def test_the_audit_names_the_loan_its_state_and_what_was_paid(deni: Deni) -> None:
    _, borrower, loan = active(deni)
    repay(deni, borrower, loan, 600, "r-1")
    (requested,) = audits(deni, "request_loan")
    assert requested == {"actor_id": borrower.id, "loan_id": loan.id, "state": "requested"}
    (repaid,) = audits(deni, "repay_loan")
    assert repaid == {
        "actor_id": borrower.id,
        "loan_id": loan.id,
        "state": "active",
        "amount_cents": 600,
    }


def test_a_repeated_repayment_gives_back_the_first_one(deni: Deni) -> None:
    _, borrower, loan = active(deni)
    first = repay(deni, borrower, loan, 600, "r-1")
    again = repay(deni, borrower, loan, 600, "r-1")
    assert again.entry_id == first.entry_id
    assert again.allocation == first.allocation
    assert again.loan.id == loan.id
    assert (first.allocation.fee_cents, first.allocation.principal_cents) == (500, 100)


def test_deni_repays_from_the_wallet_without_a_pin_as_the_system(deni: Deni) -> None:
    _, borrower, loan = active(deni)
    repayment = loans.repay_loan_by_system(
        deni,
        borrower_id=borrower.id,
        loan_id=loan.id,
        amount_cents=600,
        idempotency_key="auto-1",
        channel="system",
    )
    assert repayment.allocation.applied_cents == 600
    assert repayment.loan.principal_paid_cents == 100
    r = t.repayments
    (row,) = rows(deni, select(r.c.entry_id, r.c.channel, r.c.amount_cents))
    assert (row.entry_id, row.channel, row.amount_cents) == (repayment.entry_id, "system", 600)
    (repaid,) = audits(deni, "repay_loan")
    assert repaid["actor_id"] == "system"


# --- refusals: the code clients read and the message people read -------------------------------


def closed_borrower(deni: Deni) -> None:
    lender, borrower = register(deni), register(deni)
    with database_engine(deni).begin() as connection:
        connection.execute(
            t.users.update().where(t.users.c.id == borrower.id).values(closed_at=deni.clock.now())
        )
    request(deni, borrower, lender)


def unknown_lender(deni: Deni) -> None:
    borrower = register(deni)
    loans.request_loan(
        deni,
        borrower_id=borrower.id,
        lender_phone="0799999999",
        principal_cents=10_000,
        term_days=7,
    )


def self_lending(deni: Deni) -> None:
    user = register(deni)
    request(deni, user, user)


def lender_not_proven(deni: Deni) -> None:
    request(deni, register(deni), register(deni, phone_proven=False))


def loan_id_taken(deni: Deni) -> None:
    lender = register(deni)
    loan = request(deni, register(deni), lender)
    request(deni, register(deni), lender, loan_id=loan.id)


def no_such_loan(deni: Deni) -> None:
    loans.approve_loan(
        deni,
        lender_id=register(deni).id,
        loan_id=str(uuid.uuid4()),
        pin=PIN,
    )


def not_the_lender(deni: Deni) -> None:
    borrower = register(deni)
    approve(deni, borrower, request(deni, borrower, register(deni)))


def changed_since_seen(deni: Deni) -> None:
    lender = register(deni)
    loan = request(deni, register(deni), lender)
    approve(deni, lender, loan, base_version=loan.version + 1)


def expired_request(deni: Deni) -> None:
    lender = register(deni)
    loan = request(deni, register(deni), lender)
    clock = deni.clock
    assert isinstance(clock, ManualClock)
    clock.advance(REQUEST_TTL)
    approve(deni, lender, loan)


def not_enough_to_repay(deni: Deni) -> None:
    _, borrower, loan = active(deni)
    shop = register(deni)
    with deni.uow() as uow:  # the borrower spends all but 599 of the 10,000 received
        ledger.transfer(
            uow,
            source_account_id=wallet_account_id(borrower.id),
            target_account_id=wallet_account_id(shop.id),
            amount_cents=10_000 - 599,
            code=EntryCode.TRANSFER,
            idempotency_key="spend-1",
            cause_type="test",
            cause_id="spend-1",
            now=deni.clock.now(),
        )
        uow.commit()
    repay(deni, borrower, loan, 600, "r-1")


def key_used_for_another_payment(deni: Deni) -> None:
    lender, borrower, loan = active(deni)
    fund(deni, borrower, 10_000)
    other = approve(deni, lender, request(deni, borrower, lender))
    repay(deni, borrower, loan, 600, "r-1")
    repay(deni, borrower, other, 600, "r-1")


@pytest.mark.parametrize(
    ("cause", "error", "code", "message"),
    [
        (closed_borrower, NotFound, "user_not_found", "No such user."),
        (unknown_lender, NotFound, "user_not_found", "Nobody with that phone number uses Deni."),
        (self_lending, SelfLending, "self_lending", "You cannot lend to yourself."),
        (lender_not_proven, PhoneNotProven, "other_party_not_proven", None),
        (loan_id_taken, Conflict, "loan_id_taken", "That loan id is taken."),
        (no_such_loan, NotFound, "loan_not_found", "No such loan."),
        (not_the_lender, Forbidden, "not_the_lender", "Only the lender can do this."),
        (
            changed_since_seen,
            Conflict,
            "loan_changed",
            "The borrower changed this request after you saw it; look at it again.",
        ),
        (expired_request, Conflict, "loan_expired", "This request has expired."),
        (
            not_enough_to_repay,
            InsufficientFunds,
            "insufficient_funds",
            "Your wallet does not hold that much. Top it up first.",
        ),
        (
            key_used_for_another_payment,
            IdempotencyConflict,
            "idempotency_conflict",
            "This idempotency key was already used for another payment.",
        ),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_every_refusal_has_its_code_and_message(
    deni: Deni,
    cause: Callable[[Deni], None],
    error: type[DomainError],
    code: str,
    message: str | None,
) -> None:
    with pytest.raises(error) as caught:
        cause(deni)
    assert caught.value.code == code
    assert caught.value.message
    if message is not None:
        assert caught.value.message == message


# --- loan codes and sweeps ---------------------------------------------------------------------


def test_a_loan_code_is_dn_and_six_unambiguous_characters(deni: Deni) -> None:
    loan = request(deni, register(deni), register(deni))
    assert re.fullmatch(r"DN[ABCDEFGHJKLMNPQRSTUVWXYZ23456789]{6}", loan.code)


def test_a_taken_code_is_drawn_again(deni: Deni, monkeypatch: pytest.MonkeyPatch) -> None:
    lender, borrower = register(deni), register(deni)
    first = request(deni, borrower, lender)
    codes = iter([first.code, first.code, "DNFREE22"])
    monkeypatch.setattr(loans, "_new_loan_code", lambda: next(codes))
    second = request(deni, borrower, lender)
    assert second.code == "DNFREE22"
    with deni.uow.read_only() as uow:
        stored = uow.loans.get(second.id)
    assert stored is not None
    assert stored.code == "DNFREE22"


def test_running_out_of_codes_is_a_programmer_error(
    deni: Deni, monkeypatch: pytest.MonkeyPatch
) -> None:
    lender, borrower = register(deni), register(deni)
    taken = request(deni, borrower, lender).code
    monkeypatch.setattr(loans, "_new_loan_code", lambda: taken)
    with pytest.raises(AssertionError, match=r"^loan codes exhausted: widen LOAN_CODE_CHARS$"):
        request(deni, borrower, lender)


def test_the_funding_sweep_counts_each_lender_funded_and_nothing_else(deni: Deni) -> None:
    borrower = register(deni)
    lenders = [register(deni), register(deni), register(deni)]
    waiting = [approve(deni, lender, request(deni, borrower, lender)) for lender in lenders]
    assert all(loan.state is LoanState.APPROVED for loan in waiting)
    for i, lender in enumerate(lenders[:2]):
        with deni.uow() as uow:  # money credited by the ledger alone: it funds nothing at once
            ledger.credit_from_mpesa(
                uow,
                wallet_id=wallet_account_id(lender.id),
                amount_cents=10_000,
                receipt=f"SWEEP{i}",
                now=deni.clock.now(),
            )
            uow.commit()
    assert (
        loans.fund_approved_loans(
            deni,
        )
        == 2
    )
    clock = deni.clock
    assert isinstance(clock, ManualClock)
    clock.advance(FUNDING_TTL)
    # The third lender's approval lapsed unfunded: the sweep funds nothing.
    assert (
        loans.fund_approved_loans(
            deni,
        )
        == 0
    )


def test_each_sweep_takes_at_most_its_batch(deni: Deni, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loans, "SWEEP_BATCH_MAX", 1)
    borrower = register(deni)
    for lender in (register(deni), register(deni)):
        request(deni, borrower, lender)
    clock = deni.clock
    assert isinstance(clock, ManualClock)
    clock.advance(REQUEST_TTL)
    assert (
        loans.expire_stale_loans(
            deni,
        )
        == 1
    )
    assert (
        loans.expire_stale_loans(
            deni,
        )
        == 1
    )
    assert (
        loans.expire_stale_loans(
            deni,
        )
        == 0
    )


def test_a_repayment_needs_the_borrowers_pin(deni: Deni) -> None:
    _, borrower, loan = active(deni)
    with pytest.raises(WrongPin):
        loans.repay_loan(
            deni,
            borrower_id=borrower.id,
            loan_id=loan.id,
            amount_cents=600,
            pin="9999",
            idempotency_key="r-1",
        )
    assert entries_of(deni, loan)[-1].code == EntryCode.LOAN_DISBURSEMENT.value


# --- a PIN reset holds money that would leave a wallet -----------------------------------------


def pin_reset_now(deni: Deni, user: User) -> None:
    with database_engine(deni).begin() as connection:
        connection.execute(
            t.users.update().where(t.users.c.id == user.id).values(pin_reset_at=deni.clock.now())
        )


def approving(deni: Deni, lender: User, borrower: User, loan: Loan) -> None:
    approve(deni, lender, request(deni, borrower, lender))


def repaying(deni: Deni, lender: User, borrower: User, loan: Loan) -> None:
    repay(deni, borrower, loan, 600, "r-1")


def repaying_by_system(deni: Deni, lender: User, borrower: User, loan: Loan) -> None:
    loans.repay_loan_by_system(
        deni,
        borrower_id=borrower.id,
        loan_id=loan.id,
        amount_cents=600,
        idempotency_key="auto-1",
        channel="system",
    )


def writing_off(deni: Deni, lender: User, borrower: User, loan: Loan) -> None:
    loans.write_off_loan(
        deni,
        lender_id=lender.id,
        loan_id=loan.id,
        pin=PIN,
    )


@pytest.mark.parametrize(
    ("command", "whose"),
    [
        (approving, "lender"),
        (repaying, "borrower"),
        (repaying_by_system, "borrower"),
        (writing_off, "lender"),
    ],
    ids=lambda value: getattr(value, "__name__", value),
)
def test_money_that_would_leave_waits_a_day_after_a_pin_reset(
    deni: Deni, command: Callable[[Deni, User, User, Loan], None], whose: str
) -> None:
    lender, borrower, loan = active(deni)
    pin_reset_now(deni, lender if whose == "lender" else borrower)
    with pytest.raises(MoneyOnHold) as caught:
        command(deni, lender, borrower, loan)
    assert caught.value.until == deni.clock.now() + MONEY_HOLD_AFTER_RESET


def test_mpesa_money_repays_a_loan_even_after_a_pin_reset(deni: Deni) -> None:
    _, borrower, loan = active(deni)
    pin_reset_now(deni, borrower)
    repayment = loans.repay_loan_by_system(
        deni,
        borrower_id=borrower.id,
        loan_id=loan.id,
        amount_cents=600,
        idempotency_key="stk-1",
        channel="mpesa",
    )
    assert repayment.allocation.applied_cents == 600


def test_a_borrower_who_lost_their_proof_cannot_be_approved(deni: Deni) -> None:
    lender, borrower = register(deni), register(deni)
    loan = request(deni, borrower, lender)
    with database_engine(deni).begin() as connection:
        connection.execute(
            t.users.update().where(t.users.c.id == borrower.id).values(phone_proven_at=None)
        )
    with pytest.raises(PhoneNotProven) as caught:
        approve(deni, lender, loan)
    assert caught.value.code == "other_party_not_proven"


# --- requests, repayments and sweeps: what each step leaves behind -----------------------------


def test_a_quote_and_a_request_take_a_due_date_as_well_as_days(deni: Deni) -> None:
    due = date(2026, 12, 24)
    offer = loans.quote_loan(clock=deni.clock, principal_cents=10_000, due_date=due)
    assert (offer.due_date, offer.fee_cents, offer.penalty_daily_cents) == (due, 0, 0)
    loan = loans.request_loan(
        deni,
        borrower_id=register(deni).id,
        lender_phone=register(deni).phone,
        principal_cents=10_000,
        due_date=due,
    )
    assert loan.terms.due_date == due


def test_a_request_from_an_unknown_member_is_refused(deni: Deni) -> None:
    with pytest.raises(NotFound) as caught:
        loans.request_loan(
            deni,
            borrower_id=str(uuid.uuid4()),
            lender_phone=register(deni).phone,
            principal_cents=10_000,
            term_days=7,
        )
    assert (caught.value.code, caught.value.message) == ("user_not_found", "No such user.")


@pytest.mark.usefixtures("real_limits")
def test_a_request_sent_again_is_the_first_one_and_not_counted_again(deni: Deni) -> None:
    lender, borrower = register(deni), register(deni)
    ids = [str(uuid.uuid4()) for _ in range(OPEN_REQUESTS_TO_ONE_LENDER_MAX)]
    first = [request(deni, borrower, lender, loan_id=loan_id) for loan_id in ids]
    again = request(deni, borrower, lender, loan_id=ids[-1])
    assert (again.id, again.code) == (first[-1].id, first[-1].code)
    kinds = [row.kind for row in notifications(deni, lender)]
    assert kinds.count("loan_requested") == OPEN_REQUESTS_TO_ONE_LENDER_MAX


@pytest.mark.usefixtures("real_limits")
def test_requests_answered_today_still_count_against_the_daily_bound(deni: Deni) -> None:
    lender, borrower = register(deni), register(deni)
    for _ in range(REQUESTS_TO_ONE_LENDER_PER_DAY_MAX):
        loan = request(deni, borrower, lender)
        loans.decline_loan(deni, lender_id=lender.id, loan_id=loan.id)
    with pytest.raises(TooManyRequests):
        request(deni, borrower, lender)
    request(deni, borrower, register(deni))  # another lender: only the daily total counts


def test_the_borrower_hears_which_loan_was_paid_out(deni: Deni) -> None:
    _, borrower, loan = active(deni)
    # Loans go on to the borrower's M-PESA unless they chose to keep them in the wallet.
    assert ("loan_disbursed_mpesa", loan.id) in notifications(deni, borrower)


def test_system_repayments_with_their_own_keys_are_each_applied(deni: Deni) -> None:
    _, borrower, loan = active(deni)
    for key in ("auto-1", "auto-2"):
        loans.repay_loan_by_system(
            deni,
            borrower_id=borrower.id,
            loan_id=loan.id,
            amount_cents=300,
            idempotency_key=key,
            channel="system",
        )
    with deni.uow.read_only() as uow:
        stored = uow.loans.get(loan.id)
    assert stored is not None
    assert stored.fee_paid_cents == 500
    assert stored.principal_paid_cents == 100


def test_a_loan_paid_off_is_closed_then_and_has_nothing_to_repay(deni: Deni) -> None:
    _, borrower, loan = active(deni)
    fund(deni, borrower, 500)  # the fee, on top of the principal received
    clock = deni.clock
    assert isinstance(clock, ManualClock)
    clock.advance(timedelta(hours=1))
    repayment = repay(deni, borrower, loan, 10_500, "r-1")
    assert repayment.loan.state is LoanState.REPAID
    assert repayment.loan.closed_at == clock.now()
    with pytest.raises(Conflict) as caught:
        repay(deni, borrower, loan, 100, "r-2")
    assert caught.value.code == "loan_not_active"
    assert caught.value.message == "This loan is repaid; there is nothing to repay."


def test_a_lenders_waiting_approvals_are_all_counted_when_funded(deni: Deni) -> None:
    lender, borrower = register(deni), register(deni)
    for _ in range(2):
        approve(deni, lender, request(deni, borrower, lender))
    with deni.uow() as uow:
        ledger.credit_from_mpesa(
            uow,
            wallet_id=wallet_account_id(lender.id),
            amount_cents=20_000,
            receipt="TWOLOANS",
            now=deni.clock.now(),
        )
        uow.commit()
    assert (
        loans.fund_approved_loans(
            deni,
        )
        == 2
    )


def test_the_funding_sweep_takes_at_most_its_batch(
    deni: Deni, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loans, "SWEEP_BATCH_MAX", 1)
    borrower = register(deni)
    for i, lender in enumerate((register(deni), register(deni))):
        approve(deni, lender, request(deni, borrower, lender))
        with deni.uow() as uow:
            ledger.credit_from_mpesa(
                uow,
                wallet_id=wallet_account_id(lender.id),
                amount_cents=10_000,
                receipt=f"BATCH{i}",
                now=deni.clock.now(),
            )
            uow.commit()
    assert (
        loans.fund_approved_loans(
            deni,
        )
        == 1
    )
    assert (
        loans.fund_approved_loans(
            deni,
        )
        == 1
    )


def test_the_expiry_sweeps_batch_holds_only_lapsed_loans(
    deni: Deni, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loans, "SWEEP_BATCH_MAX", 1)
    clock = deni.clock
    assert isinstance(clock, ManualClock)
    lender, other_lender, borrower = register(deni), register(deni), register(deni)
    early = request(deni, borrower, lender, term_days=30)
    clock.advance(timedelta(days=1))
    late = request(deni, borrower, other_lender, term_days=30)
    clock.advance(timedelta(days=5))
    approve(deni, lender, early)  # unfunded: it now lapses a week from here
    clock.advance(timedelta(days=2, minutes=1))
    # `early` was asked first but lapses later; `late` lapsed a minute ago.
    assert (
        loans.expire_stale_loans(
            deni,
        )
        == 1
    )
    with deni.uow.read_only() as uow:
        states = {loan_id: uow.loans.get(loan_id).state for loan_id in (early.id, late.id)}  # type: ignore[union-attr]
    assert states == {early.id: LoanState.APPROVED, late.id: LoanState.EXPIRED}


# --- money reaching a wallet with overdue debts -------------------------------------------------


def overdue(deni: Deni) -> tuple[User, User, Loan]:
    """An active loan of 10,000 (no fee, no penalty) a day past its due date, its borrower's
    wallet empty."""
    lender, borrower = register(deni), register(deni)
    fund(deni, lender, 10_000)
    loan = approve(deni, lender, request(deni, borrower, lender, fee_cents=0))
    shop = register(deni)
    with deni.uow() as uow:
        ledger.transfer(
            uow,
            source_account_id=wallet_account_id(borrower.id),
            target_account_id=wallet_account_id(shop.id),
            amount_cents=10_000,
            code=EntryCode.TRANSFER,
            idempotency_key=f"spend:{loan.id}",
            cause_type="test",
            cause_id=loan.id,
            now=deni.clock.now(),
        )
        uow.commit()
    clock = deni.clock
    assert isinstance(clock, ManualClock)
    clock.advance(timedelta(days=8))
    return lender, borrower, loan


def deposit(deni: Deni, user: User, cents: int, receipt: str) -> payments.Deposit:
    return payments.record_mpesa_payment(deni, user_id=user.id, amount_cents=cents, receipt=receipt)


def test_a_deposit_that_repays_an_overdue_loan_reports_what_is_left(deni: Deni) -> None:
    lender, borrower, loan = overdue(deni)
    first = deposit(deni, borrower, 1, "ONECENT")
    assert first.balance_cents == 0
    assert wallet_cents(deni, lender) == 1
    assert deposit(deni, borrower, 700, "MORE").balance_cents == 0
    assert wallet_cents(deni, lender) == 701
    with deni.uow.read_only() as uow:
        stored = uow.loans.get(loan.id)
    assert stored is not None
    assert stored.principal_paid_cents == 701


def test_after_a_pin_reset_overdue_debts_wait_for_the_hold_to_end(deni: Deni) -> None:
    lender, borrower, _ = overdue(deni)
    pin_reset_now(deni, borrower)
    assert deposit(deni, borrower, 500, "HELD").balance_cents == 500
    assert wallet_cents(deni, lender) == 0


def test_each_repayment_passed_on_to_an_overdue_lender_is_applied(deni: Deni) -> None:
    # The middle member lent, then borrowed and is overdue: what their own borrower repays
    # goes on to their debt, once per repayment.
    top, middle, borrower = register(deni), register(deni), register(deni)
    fund(deni, middle, 5_000)
    lent_on = approve(deni, middle, request(deni, borrower, middle, principal_cents=5_000))
    fund(deni, top, 10_000)
    debt = approve(deni, top, request(deni, middle, top, fee_cents=0))
    spend_all(deni, middle)
    clock = deni.clock
    assert isinstance(clock, ManualClock)
    clock.advance(timedelta(days=8))
    top_before = wallet_cents(deni, top)
    repay(deni, borrower, lent_on, 600, "r-1")
    repay(deni, borrower, lent_on, 400, "r-2")
    assert wallet_cents(deni, middle) == 0
    assert wallet_cents(deni, top) == top_before + 1_000
    with deni.uow.read_only() as uow:
        stored = uow.loans.get(debt.id)
    assert stored is not None
    assert stored.principal_paid_cents == 1_000


def spend_all(deni: Deni, user: User) -> None:
    cents = wallet_cents(deni, user)
    shop = register(deni)
    with deni.uow() as uow:
        ledger.transfer(
            uow,
            source_account_id=wallet_account_id(user.id),
            target_account_id=wallet_account_id(shop.id),
            amount_cents=cents,
            code=EntryCode.TRANSFER,
            idempotency_key=f"spend-all:{user.id}:{cents}",
            cause_type="test",
            cause_id=user.id,
            now=deni.clock.now(),
        )
        uow.commit()
