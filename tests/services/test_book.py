"""A member's own book: the lender's totals and borrowers, the borrower's history, checked
against the scripted book of tests/support/book.py on every backend."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, timedelta

import pytest

from deni.domain.loans import LoanState
from deni.domain.phone import mask_msisdn
from deni.services import book, loans
from deni.services.book import Punctuality
from deni.services.ports import LIST_PAGE_MAX, NO_FIGURES
from tests.fakes import ManualClock
from tests.services.world import World
from tests.support.book import (
    HISTORY,
    KAMAU_TOTALS,
    WANJIKU_BORROWERS,
    WANJIKU_TOTALS,
    Book,
    build_book,
)
from tests.support.builders import fund, register


def clock_of(world: World) -> ManualClock:
    assert isinstance(world.clock, ManualClock)
    return world.clock


@pytest.fixture
def scripted(world: World) -> Book:
    return build_book(world, clock_of(world))


def test_each_lenders_totals_match_the_script(world: World, scripted: Book) -> None:
    for lender, expected in ((scripted.wanjiku, WANJIKU_TOTALS), (scripted.kamau, KAMAU_TOTALS)):
        seen = book.lender_book(world, user_id=lender.id)
        assert asdict(seen.totals) == expected, lender.name
        assert seen.as_of == date(2026, 12, 6)
        assert seen.next_offset is None
        assert book.lender_totals(world, user_id=lender.id) == seen.totals


def test_the_book_by_borrower_most_outstanding_first(world: World, scripted: Book) -> None:
    seen = book.lender_book(world, user_id=scripted.wanjiku.id)
    assert seen.borrowers_count == 3
    rows = [
        (
            b.name,
            b.figures.loans_count,
            b.figures.lent_cents,
            b.figures.outstanding_cents,
            b.figures.repaid_cents,
            b.figures.overdue_cents,
        )
        for b in seen.borrowers
    ]
    assert rows == WANJIKU_BORROWERS
    # The rows add up to the totals, and the phone shown is masked.
    for field in WANJIKU_TOTALS:
        assert sum(getattr(b.figures, field) for b in seen.borrowers) == WANJIKU_TOTALS[field]
    akinyi = seen.borrowers[0]
    assert akinyi.borrower_id == scripted.akinyi.id
    assert akinyi.phone_masked == mask_msisdn(scripted.akinyi.phone)
    assert scripted.akinyi.phone not in akinyi.phone_masked
    assert akinyi.phone_masked.startswith("2547")
    assert "******" in akinyi.phone_masked


def test_each_borrowers_history_matches_the_script(world: World, scripted: Book) -> None:
    for who, ((borrowed, repaid, outstanding), lines) in HISTORY.items():
        member = getattr(scripted, who)
        seen = book.borrower_history(world, user_id=member.id)
        assert (seen.borrowed_cents, seen.repaid_cents, seen.outstanding_cents) == (
            borrowed,
            repaid,
            outstanding,
        ), who
        by_id = {loan.id: name for name, loan in scripted.loans.items()}
        assert [
            (
                by_id[line.loan.id],
                line.loan.state.value,
                line.punctuality.value,
                line.repaid_cents,
                line.outstanding_cents,
            )
            for line in seen.loans
        ] == lines, who
        assert seen.loans_count == sum(1 for line in lines if line[2] != "not_lent")
        assert seen.next_offset is None


def test_the_history_names_the_lender_masked_and_days_late(world: World, scripted: Book) -> None:
    seen = book.borrower_history(world, user_id=scripted.akinyi.id)
    late = seen.loans[1]  # B: 3 days overdue, penalty 100 a day accrued on the copy read
    assert late.lender_name == "Wanjiku Kamau"
    assert late.lender_phone_masked == mask_msisdn(scripted.wanjiku.phone)
    assert (late.overdue, late.days_overdue) == (True, 3)
    assert late.loan.penalty_charged_cents == 300
    assert seen.overdue_count == 1
    # Nothing read was saved: the stored loan has no penalty yet.
    with world.uow.read_only() as uow:
        stored = uow.loans.get(late.loan.id)
    assert stored is not None
    assert stored.penalty_charged_cents == 0


def test_a_borrower_has_no_lenders_book_and_a_lender_no_history(
    world: World, scripted: Book
) -> None:
    for member in (scripted.otieno, scripted.akinyi, scripted.njeri):
        seen = book.lender_book(world, user_id=member.id)
        assert (seen.borrowers, seen.borrowers_count, seen.next_offset) == ([], 0, None)
        assert asdict(seen.totals) == dict.fromkeys(WANJIKU_TOTALS, 0)
    history = book.borrower_history(world, user_id=scripted.wanjiku.id)
    assert (history.loans, history.borrowed_cents, history.next_offset) == ([], 0, None)
    with world.uow.read_only() as uow:
        nobody = uow.loans.figures(user_id="no-such-user", role="lender", today=date(2026, 1, 1))
    assert nobody == NO_FIGURES


def test_the_penalty_stops_at_the_principal_still_owed(world: World, scripted: Book) -> None:
    """In duplum, read the same way by the database as by the domain: C's penalty (50 a
    day on 5,000) grows to 5,000 and no further."""
    clock_of(world).advance(timedelta(days=200))
    seen = book.lender_book(world, user_id=scripted.wanjiku.id)
    njeri = next(b for b in seen.borrowers if b.name == "Njeri Wambui")
    assert njeri.figures.outstanding_cents == 10_000
    assert njeri.figures.fees_due_cents == 5_000
    akinyi = seen.borrowers[0]  # B: 15,000 principal left, so at most 15,000 of penalty
    assert akinyi.figures.outstanding_cents == 15_000 + 15_000


def test_pages_of_borrowers_and_of_history(world: World) -> None:
    clock = clock_of(world)
    lender = register(world, name="Wanjiku Kamau")
    borrower = register(world, name="Otieno Odhiambo")
    others = [register(world, name=f"Borrower {n}") for n in "ABCDE"]
    fund(world, lender, 1_000_000)

    for n, who in enumerate([*others, borrower, borrower, borrower]):
        clock.advance(timedelta(minutes=1))
        loan = loans.request_loan(
            world,
            borrower_id=who.id,
            lender_phone=lender.phone,
            principal_cents=10_000 + 1_000 * n,
            term_days=7,
        )
        loans.approve_loan(world, lender_id=lender.id, loan_id=loan.id, pin="3591")
    first = book.lender_book(world, user_id=lender.id, limit=2)
    assert first.borrowers_count == 6
    assert first.next_offset == 2
    assert first.borrowers[0].name == "Otieno Odhiambo"  # three loans, the most outstanding
    assert first.borrowers[0].figures.loans_count == 3
    names = [b.name for b in first.borrowers]
    offset: int | None = first.next_offset
    while offset is not None:
        page = book.lender_book(world, user_id=lender.id, limit=2, offset=offset)
        names += [b.name for b in page.borrowers]
        offset = page.next_offset
    assert names == ["Otieno Odhiambo", *(f"Borrower {n}" for n in "EDCBA")]
    history = book.borrower_history(world, user_id=borrower.id, limit=2)
    assert history.next_offset == 2
    assert len(history.loans) == 2
    assert history.loans_count == 3  # the totals count every loan, not the page
    rest = book.borrower_history(world, user_id=borrower.id, limit=2, offset=2)
    assert len(rest.loans) == 1
    assert rest.next_offset is None
    assert all(line.loan.state is LoanState.ACTIVE for line in history.loans + rest.loans)
    assert {line.punctuality for line in history.loans} == {Punctuality.OPEN}


def test_a_page_is_bounded(world: World) -> None:
    for limit in (0, LIST_PAGE_MAX + 1):
        with pytest.raises(AssertionError):
            book.lender_book(world, user_id="anyone", limit=limit)
        with pytest.raises(AssertionError):
            book.borrower_history(world, user_id="anyone", limit=limit)
