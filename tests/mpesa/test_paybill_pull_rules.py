"""The Pull API pass (services/paybill_pull.py) against a gateway that lists what each test
says M-PESA holds: which window it asks for, what it applies, what it leaves alone."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest

from deni.adapters.security import PepperedArgon2PinHasher
from deni.bootstrap import Deni, bootstrap
from deni.config import Settings
from deni.domain.mpesa import MpesaRequest, Purpose, RequestKind, RequestState
from deni.domain.users import User
from deni.services import users
from deni.services.mpesa import paybill_pull, payments, reconcile
from deni.services.mpesa.ports import (
    GatewayError,
    GatewayOutcome,
    MpesaDeps,
    PulledPayment,
    PullPage,
    SuspenseState,
)
from tests.fakes import ManualClock
from tests.support.builders import wallet_cents

PAGE_ROWS = 3


@dataclass
class ListingGateway:
    """Lists `payments` (those completed inside the asked window), PAGE_ROWS at a time; can
    fail, or slip in unreadable rows, as Daraja might."""

    payments: list[PulledPayment] = field(default_factory=list)
    asked: list[tuple[datetime, datetime, int]] = field(default_factory=list)
    failing: bool = False
    unreadable_rows: int = 0  # counted on the first page but not returned

    def pull_payments(self, *, start: datetime, end: datetime, offset: int) -> PullPage:
        self.asked.append((start, end, offset))
        if self.failing:
            raise GatewayError("Daraja is down", outcome=GatewayOutcome.NOT_SENT)
        listed = sorted(
            (p for p in self.payments if start <= p.paid_at <= end), key=lambda p: p.paid_at
        )
        unreadable = self.unreadable_rows if offset == 0 else 0
        readable_offset = max(0, offset - self.unreadable_rows)
        page = listed[readable_offset : readable_offset + PAGE_ROWS - unreadable]
        return PullPage(tuple(page), rows=len(page) + unreadable)

    def register_pull(self) -> None:
        return None

    def close(self) -> None:
        return None


@pytest.fixture
def gateway() -> ListingGateway:
    return ListingGateway()


@pytest.fixture
def pulling(
    settings: Settings, clock: ManualClock, hasher: PepperedArgon2PinHasher, gateway: ListingGateway
) -> Iterator[Deni]:
    wired = bootstrap(
        settings.model_copy(update={"mpesa": True, "callback_token": "a" * 32}),
        clock=clock,
        hasher=hasher,
        mpesa_gateway=gateway,  # type: ignore[arg-type]
    )
    yield wired
    wired.close()


def _deps(deni: Deni) -> MpesaDeps:
    assert deni.mpesa is not None
    return deni.mpesa


def _user(deni: Deni, phone: str) -> User:
    return users.register_user(
        deni,
        phone=phone,
        name="Atieno",
        pin="3591",
        phone_proven=True,
    )


def _paid(
    deni: Deni, receipt: str, amount_cents: int, reference: str, *, ago: timedelta
) -> PulledPayment:
    return PulledPayment(
        trans_id=receipt,
        paid_at=deni.clock.now() - ago,
        amount_cents=amount_cents,
        account_reference=reference,
        phone=None,
        phone_raw="2547 ***** 126",
    )


def test_a_payment_deni_never_heard_of_is_credited_once(
    pulling: Deni, gateway: ListingGateway, clock: ManualClock
) -> None:
    amina = _user(pulling, "0722555101")
    gateway.payments.append(
        _paid(pulling, "TKL1AB2CD3", 450_00, "0722555101", ago=timedelta(minutes=15))
    )

    first = paybill_pull.pull_missed_payments(_deps(pulling))
    clock.advance(timedelta(minutes=20))
    second = paybill_pull.pull_missed_payments(_deps(pulling))

    assert (first.state, first.rows, first.recovered) == ("done", 1, 1)
    assert wallet_cents(pulling, amina) == 450_00
    # The second window reaches back over the first: the payment is listed again, not applied.
    assert second.window_start < first.window_end
    assert (second.rows, second.recovered) == (1, 0)
    assert wallet_cents(pulling, amina) == 450_00


def test_a_payment_whose_confirmation_came_is_not_applied_again(
    pulling: Deni, gateway: ListingGateway
) -> None:
    baraka = _user(pulling, "0722555102")
    payments.record_mpesa_payment(pulling,
        user_id=baraka.id, amount_cents=300_00,
        receipt="TKL9ZZ8YY7",
    )  # fmt: skip
    gateway.payments.append(
        _paid(pulling, "TKL9ZZ8YY7", 300_00, "0722555102", ago=timedelta(hours=2))
    )

    report = paybill_pull.pull_missed_payments(_deps(pulling))

    assert (report.rows, report.recovered) == (1, 0)
    assert wallet_cents(pulling, baraka) == 300_00


def test_an_account_number_that_matches_nobody_goes_to_suspense(
    pulling: Deni, gateway: ListingGateway
) -> None:
    gateway.payments.append(_paid(pulling, "TKL5NOBODY", 75_00, "WRONG123", ago=timedelta(hours=1)))

    report = paybill_pull.pull_missed_payments(_deps(pulling))

    assert report.recovered == 1
    with pulling.uow.read_only() as uow:
        [held] = uow.suspense.in_states(states=list(SuspenseState), limit=10)
    assert (held.receipt, held.amount_cents) == ("TKL5NOBODY", 75_00)


def test_what_may_be_deni_s_own_stk_push_is_left_to_the_push_s_checks(
    pulling: Deni, gateway: ListingGateway, clock: ManualClock
) -> None:
    chebet = _user(pulling, "0722555103")
    pushed_at = clock.now() - timedelta(hours=1, minutes=5)
    _push(pulling, chebet, 200_00, created_at=pushed_at)
    reference = _deps(pulling).policy.stk_account_reference
    gateway.payments.append(_paid(pulling, "TKL7PUSH01", 200_00, reference, ago=timedelta(hours=1)))
    # The same amount and account number with no push in the hour before: a real paybill payment.
    gateway.payments.append(
        _paid(pulling, "TKL7PAYB02", 200_00, "0722555103", ago=timedelta(minutes=30))
    )

    report = paybill_pull.pull_missed_payments(_deps(pulling))

    assert (report.rows, report.left_to_stk, report.recovered) == (2, 1, 1)
    assert wallet_cents(pulling, chebet) == 200_00  # the paybill payment only


def _push(deni: Deni, user: User, amount_cents: int, *, created_at: datetime) -> None:
    request = MpesaRequest(
        id=f"req-{user.id[:8]}",
        kind=RequestKind.STK,
        purpose=Purpose.TOP_UP,
        user_id=user.id,
        loan_id=None,
        phone=user.phone,
        amount_cents=amount_cents,
        idempotency_key=f"test-push-{user.id}",
        state=RequestState.SENT,
        created_at=created_at,
        updated_at=created_at,
    )
    with deni.uow() as uow:
        uow.mpesa_requests.add(request)
        uow.commit()


def test_windows_start_where_the_last_finished_pass_ended(
    pulling: Deni, gateway: ListingGateway, clock: ManualClock
) -> None:
    policy = _deps(pulling).policy
    settle, overlap = (
        timedelta(seconds=policy.pull_settle_s),
        timedelta(seconds=policy.pull_overlap_s),
    )
    first = paybill_pull.pull_missed_payments(_deps(pulling))
    assert first.window_end == clock.now() - settle
    assert first.window_start == clock.now() - paybill_pull.PULL_WINDOW_MAX

    clock.advance(timedelta(minutes=15))
    gateway.failing = True
    failed = paybill_pull.pull_missed_payments(_deps(pulling))
    clock.advance(timedelta(minutes=15))
    gateway.failing = False
    after = paybill_pull.pull_missed_payments(_deps(pulling))

    assert failed.state == "failed"
    assert "Daraja is down" in failed.error
    # The failed pass does not move the window on: the next starts from the last good one.
    assert after.window_start == first.window_end - overlap
    assert after.window_end == clock.now() - settle


def test_a_long_outage_reaches_back_no_further_than_daraja_keeps(
    pulling: Deni, clock: ManualClock
) -> None:
    paybill_pull.pull_missed_payments(_deps(pulling))
    clock.advance(timedelta(days=3))

    late = paybill_pull.pull_missed_payments(_deps(pulling))

    assert late.window_start == clock.now() - paybill_pull.PULL_WINDOW_MAX


def test_pages_follow_each_other_and_unreadable_rows_still_count(
    pulling: Deni, gateway: ListingGateway
) -> None:
    people = [_user(pulling, f"07225552{i:02d}") for i in range(5)]
    gateway.payments += [
        _paid(
            pulling, f"TKLPAGE{i:03d}", 10_00 * (i + 1), p.phone, ago=timedelta(hours=3, minutes=i)
        )
        for i, p in enumerate(people)
    ]
    gateway.unreadable_rows = 1

    report = paybill_pull.pull_missed_payments(_deps(pulling))

    offsets = [offset for _, _, offset in gateway.asked]
    assert offsets == [0, 3, 6]  # 3 rows (1 unreadable), 3 rows, then none left
    assert (report.rows, report.recovered) == (6, 5)
    assert [wallet_cents(pulling, p) for p in people] == [10_00, 20_00, 30_00, 40_00, 50_00]


def test_the_reconciler_pulls_once_per_interval(
    pulling: Deni, gateway: ListingGateway, clock: ManualClock
) -> None:
    deps = _deps(pulling)
    reconcile.reconcile_once(deps)
    reconcile.reconcile_once(deps)
    assert len(gateway.asked) == 1

    clock.advance(timedelta(seconds=deps.policy.pull_interval_s))
    reconcile.reconcile_once(deps)

    assert len(gateway.asked) == 2


def test_an_interval_of_zero_turns_pulling_off(pulling: Deni, gateway: ListingGateway) -> None:
    deps = _deps(pulling)
    off = MpesaDeps(
        uow=deps.uow,
        clock=deps.clock,
        gateway=deps.gateway,
        policy=type(deps.policy)(pull_interval_s=0),
    )

    reconcile.reconcile_once(off)

    assert gateway.asked == []
