"""M-PESA's balances against the ledger, like with like.

Daraja's balance report names two accounts: the shortcode's Working Account, where STK and
paybill (C2B) payments land, and its Utility Account, the B2C float payouts leave from. The
ledger mirrors them with `platform:mpesa_paybill` (debit-normal: rises with each payment
credited, falls with a reversal) and `platform:mpesa_b2c_float` (debit-normal: falls with each
payout posted). Suspense is inside the paybill account already: a payment for no account is
posted paybill → suspense.

The two never agree to the cent at one moment, for reasons that are no error:

- M-PESA had money before Deni's ledger began, and an operator moves money between the
  accounts and out to the bank: so only *changes* between two reports are compared.
- The ledger lags M-PESA by the money in flight, which is counted here by name:
  - certain: a paid callback stored but not applied yet, a payment claim waiting for M-PESA's
    confirmation (collections M-PESA has), a payout's success result not applied yet (money
    that left the float);
  - maybe: a push sent and unanswered, a paybill payment validated and unconfirmed (may have
    landed), a payout sent and unsettled (may have left), a reversal unanswered (may have gone
    back).
- The balance is struck at one moment between asking and the answer's arrival, while the
  ledger keeps moving: the position is taken before the ask and again when the answer is
  applied, and M-PESA's figure may lie anywhere within what either allows.

So each report holds, per account, the range the ledger and the money in flight allow, and so
the range of money outside the ledger (M-PESA's figure minus it). That money stays put unless
something unexplained moved: a report shows a difference only when its range no longer meets
the one the reports before it carried, and then by exactly how far it lies outside.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from deni.domain.ledger import PlatformAccount
from deni.domain.mpesa import OPEN_STATES, SUCCESS, RequestKind
from deni.services.mpesa.ports import (
    B2CResultEvent,
    BalanceReport,
    C2BEvent,
    CallbackKind,
    ClaimState,
    GatewayError,
    InboxState,
    MpesaDeps,
    MpesaPosition,
    PaybillCheck,
    StkResultEvent,
)
from deni.services.ports import UnitOfWork

# Rows read per kind of thing in flight: far more than a day's busiest moment holds.
IN_FLIGHT_ROWS_MAX = 10_000
_MONEY_CALLBACKS = (CallbackKind.STK, CallbackKind.C2B_CONFIRMATION, CallbackKind.B2C_RESULT)


@dataclass(frozen=True, slots=True)
class AccountComparison:
    """One M-PESA account in one report against the ledger.

    M-PESA's figure minus where the ledger and the money in flight put the account is the
    money outside the ledger (an opening balance, an operator's transfers): `outside_*`, a range
    while money is in flight. Absent any unexplained movement it stays where the reports before
    put it (`known_*`); a difference is how far outside that it now lies, and then the new level
    is the one later reports are held to."""

    account: str  # "working" (collections: ledger paybill) or "utility" (B2C float)
    mpesa_cents: int
    ledger_low_cents: int  # the ledger with the money in flight, when asked and when answered
    ledger_high_cents: int
    outside_low_cents: int
    outside_high_cents: int
    known_low_cents: int  # what the reports before allowed (this report's own when first)
    known_high_cents: int
    difference_cents: int | None  # None: the first report, nothing to compare with

    @property
    def carried(self) -> tuple[int, int]:
        """The range later reports are held to."""
        if self.difference_cents:
            return self.outside_low_cents, self.outside_high_cents
        low = max(self.outside_low_cents, self.known_low_cents)
        return low, min(self.outside_high_cents, self.known_high_cents)


def position(deps: MpesaDeps, uow: UnitOfWork, *, at: datetime) -> MpesaPosition:
    """The ledger's M-PESA accounts and everything in flight, read in one transaction."""
    paybill = uow.ledger.get_account(PlatformAccount.MPESA_PAYBILL.value)
    float_ = uow.ledger.get_account(PlatformAccount.MPESA_B2C_FLOAT.value)
    assert paybill is not None
    assert float_ is not None
    answered: set[str] = set()  # checkout ids, originator ids, receipts already counted
    unapplied = payouts_unapplied = 0
    rows = uow.mpesa_inbox.rows(states=[InboxState.RECEIVED], limit=IN_FLIGHT_ROWS_MAX)
    for row in rows:
        if row.kind not in _MONEY_CALLBACKS:
            continue
        try:
            event = deps.gateway.parse_callback(row.kind, row.body)
        except (GatewayError, ValueError):
            continue  # unreadable: no money anyone could count
        if isinstance(event, StkResultEvent) and event.result_code == SUCCESS:
            unapplied += event.amount_cents or 0
            answered.add(event.checkout_request_id)
        elif isinstance(event, C2BEvent):
            unapplied += event.amount_cents
            answered.add(event.trans_id)
        elif isinstance(event, B2CResultEvent) and event.result_code == SUCCESS:
            payouts_unapplied += event.amount_cents or 0
            answered.add(event.originator_conversation_id)
    claims = uow.claims.in_states(states=[ClaimState.WAITING], limit=IN_FLIGHT_ROWS_MAX)
    claims = [claim for claim in claims if claim.receipt not in answered]
    answered |= {claim.receipt for claim in claims}
    answered |= {claim.checkout_request_id for claim in claims if claim.checkout_request_id}
    validated = uow.paybills.in_states(states=[PaybillCheck.WAITING], limit=IN_FLIGHT_ROWS_MAX)
    open_requests = uow.mpesa_requests.in_states(
        states=sorted(OPEN_STATES), limit=IN_FLIGHT_ROWS_MAX
    )

    def open_of(kind: RequestKind) -> int:
        return sum(
            request.amount_cents
            for request in open_requests
            if request.kind is kind
            and request.checkout_request_id not in answered
            and request.originator_conversation_id not in answered
        )

    return MpesaPosition(
        at=at,
        ledger_paybill_cents=paybill.balance_cents,
        ledger_float_cents=float_.balance_cents,
        callbacks_unapplied_cents=unapplied,
        claims_waiting_cents=sum(claim.amount_cents for claim in claims),
        pushes_open_cents=open_of(RequestKind.STK),
        paybills_validated_cents=sum(
            expected.amount_cents for expected in validated if expected.trans_id not in answered
        ),
        reversals_open_cents=open_of(RequestKind.REVERSAL),
        payouts_unapplied_cents=payouts_unapplied,
        payouts_open_cents=open_of(RequestKind.B2C),
    )


def _hull(*ranges: tuple[int, int]) -> tuple[int, int]:
    return min(low for low, _ in ranges), max(high for _, high in ranges)


def _difference(now: tuple[int, int], known: tuple[int, int]) -> int:
    """How far the range `now` lies outside `known` (0 when they meet), signed: above is more
    money at M-PESA than the ledger explains."""
    if now[0] > known[1]:
        return now[0] - known[1]
    if now[1] < known[0]:
        return now[1] - known[0]
    return 0


def compare(report: BalanceReport, previous: BalanceReport | None) -> list[AccountComparison]:
    """Each account of a received report against the ledger, held to what `previous` (the
    last received before it) carried. Empty without figures or positions."""
    if report.before is None or report.after is None:
        return []
    compared = []
    for account, mpesa, ranges, carried in (
        (
            "working",
            report.working_cents,
            (report.before.working_range(), report.after.working_range()),
            previous.working_outside if previous else None,
        ),
        (
            "utility",
            report.utility_cents,
            (report.before.utility_range(), report.after.utility_range()),
            previous.utility_outside if previous else None,
        ),
    ):
        if mpesa is None:
            continue
        low, high = _hull(*ranges)
        outside = (mpesa - high, mpesa - low)
        known = carried if carried is not None else outside
        difference = _difference(outside, known) if carried is not None else None
        compared.append(
            AccountComparison(
                account, mpesa, low, high, *outside, *known, difference_cents=difference
            )
        )
    return compared


def previous_received(uow: UnitOfWork, report: BalanceReport) -> BalanceReport | None:
    """The newest report received before `report` was asked for: the one it is held to."""
    candidates = [
        candidate
        for candidate in uow.balance_reports.latest(limit=50)
        if candidate.id != report.id
        and candidate.state == "received"
        and candidate.requested_at <= report.requested_at
    ]
    return max(
        candidates, key=lambda c: (c.requested_at, c.received_at or c.requested_at), default=None
    )


def record(uow: UnitOfWork, report: BalanceReport) -> list[AccountComparison]:
    """Compare a report just received and keep the outcome on it (the caller saves it)."""
    compared = compare(report, previous_received(uow, report))
    for item in compared:
        if item.account == "working":
            report.working_difference_cents = item.difference_cents
            report.working_outside = item.carried
        else:
            report.utility_difference_cents = item.difference_cents
            report.utility_outside = item.carried
    return compared
