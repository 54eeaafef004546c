"""Loan use cases: quote, request, approve, decline, cancel, repay, write off, expire."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from deni.domain.errors import (
    Conflict,
    Forbidden,
    IdempotencyConflict,
    InsufficientFunds,
    NotFound,
    SelfLending,
)
from deni.domain.ledger import EntryCode, wallet_account_id
from deni.domain.loans import (
    FUNDING_TTL,
    REQUEST_COUNT_WINDOW,
    REQUEST_TTL,
    REQUESTS_READ_MAX,
    Allocation,
    Loan,
    LoanEvent,
    LoanState,
    Quote,
    allocate,
    lapse_at,
    make_terms,
    quote,
    require_may_request,
    require_repayment_amount,
    resolve_due_date,
)
from deni.domain.passkeys import MoneyAction
from deni.domain.phone import normalise_msisdn
from deni.domain.users import User, nairobi_today
from deni.ids import new_id
from deni.services import ledger
from deni.services.common import SYSTEM_ACTOR, audit, notify, require_user, require_users
from deni.services.passkeys import PasskeyProof, money_binding, prove_member
from deni.services.ports import (
    Clock,
    Deps,
    PinDeps,
    PinHasher,
    RepaymentRecord,
    UnitOfWork,
)

LOAN_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud on USSD
LOAN_CODE_CHARS = 6
LOAN_CODE_TRIES_MAX = 8
SWEEP_BATCH_MAX = 500
LOANS_PER_WALLET_EVENT_MAX = 20
# Channels through which Deni acts on its own (no member asks, so no PIN is asked).
SYSTEM_CHANNELS = ("system", "mpesa")
# Repayments whose money the borrower just paid in by M-PESA (an STK push): it never sat in the
# wallet, so a PIN reset's hold does not stop it.
MONEY_FROM_MPESA_CHANNELS = ("mpesa",)


@dataclass(frozen=True, slots=True)
class Repayment:
    loan: Loan
    allocation: Allocation
    entry_id: str


def quote_loan(
    *,
    clock: Clock,
    principal_cents: object,
    fee_cents: object = 0,
    penalty_daily_cents: object = 0,
    due_date: date | None = None,
    term_days: int | None = None,
) -> Quote:
    """What the borrower would repay and when, before anything is submitted."""
    today = nairobi_today(clock.now())
    due = resolve_due_date(due_date=due_date, term_days=term_days, today=today)
    terms = make_terms(
        principal_cents=principal_cents,
        fee_cents=fee_cents,
        penalty_daily_cents=penalty_daily_cents,
        due_date=due,
    )
    return quote(terms, today)


def request_loan(
    deps: Deps,
    *,
    borrower_id: str,
    lender_phone: str,
    principal_cents: object,
    fee_cents: object = 0,
    penalty_daily_cents: object = 0,
    due_date: date | None = None,
    term_days: int | None = None,
    loan_id: str | None = None,
    channel: str = "api",
) -> Loan:
    """Ask a named lender for money. `loan_id` may come from an offline client (its UUID)."""
    offer = quote_loan(
        clock=deps.clock,
        principal_cents=principal_cents,
        fee_cents=fee_cents,
        penalty_daily_cents=penalty_daily_cents,
        due_date=due_date,
        term_days=term_days,
    )
    now = deps.clock.now()
    with deps.uow() as uow:
        borrower, lender = _borrower_and_lender(uow, borrower_id, lender_phone)
        if loan_id is not None and (existing := uow.loans.get(loan_id)) is not None:
            if existing.borrower_id != borrower.id:
                raise Conflict("That loan id is taken.", code="loan_id_taken")
            return existing  # the same request sent again: not a new one to count
        _require_may_request(uow, borrower.id, lender.id, now)
        terms = make_terms(
            principal_cents=offer.principal_cents,
            fee_cents=offer.fee_cents,
            penalty_daily_cents=offer.penalty_daily_cents,
            due_date=offer.due_date,
        )
        loan = Loan(
            id=loan_id or new_id(),
            code=_new_loan_code(),
            borrower_id=borrower.id,
            lender_id=lender.id,
            terms=terms,
            state=LoanState.REQUESTED,
            requested_at=now,
            expires_at=lapse_at(now=now, ttl=REQUEST_TTL, due_date=terms.due_date),
        )
        if (existing := _insert_with_free_code(uow, loan)) is not None:
            if existing.borrower_id != borrower.id:
                raise Conflict("That loan id is taken.", code="loan_id_taken")
            return existing  # the same request sent again
        notify(
            uow,
            user=lender,
            kind="loan_requested",
            params={
                "borrower_name": borrower.name,
                "amount_cents": terms.principal_cents,
                "total_cents": terms.total_cents,
                "due_date": terms.due_date,
                "loan_code": loan.code,
            },
            now=now,
            loan_id=loan.id,
        )
        _audit_loan(
            uow, loan, actor_id=borrower.id, channel=channel, command="request_loan", now=now
        )
        uow.commit()
    return loan


def _borrower_and_lender(uow: UnitOfWork, borrower_id: str, lender_phone: str) -> tuple[User, User]:
    """Both parties of a new request, read together."""
    phone = normalise_msisdn(lender_phone)
    found = uow.users.find(ids=[borrower_id], phones=[phone])
    borrower = next((u for u in found if u.id == borrower_id), None)
    lender = next((u for u in found if u.phone == phone), None)
    if borrower is None or borrower.is_closed:
        raise NotFound("No such user.", code="user_not_found")
    if lender is None:
        raise NotFound("Nobody with that phone number uses Deni.", code="user_not_found")
    if lender.id == borrower.id:
        raise SelfLending("You cannot lend to yourself.")
    borrower.require_phone_proven()
    lender.require_phone_proven(mine=False)
    return borrower, lender


def _require_may_request(uow: UnitOfWork, borrower_id: str, lender_id: str, now: datetime) -> None:
    """The borrower's row is locked first, so requests racing from two devices are counted
    one after the other."""
    uow.users.lock(borrower_id)
    since = now - REQUEST_COUNT_WINDOW
    past = uow.loans.requests_since(borrower_id, since=since, limit=REQUESTS_READ_MAX)
    require_may_request(past, lender_id=lender_id, now=now)


def _new_loan_code() -> str:
    return "DN" + "".join(secrets.choice(LOAN_CODE_ALPHABET) for _ in range(LOAN_CODE_CHARS))


def _insert_with_free_code(uow: UnitOfWork, loan: Loan) -> Loan | None:
    """Inserts `loan`, drawing new codes while its code is taken. If its id is taken instead,
    nothing is written and the loan holding the id comes back (a request sent again)."""
    for _ in range(LOAN_CODE_TRIES_MAX):
        if uow.loans.add(loan):
            return None
        if (existing := uow.loans.get(loan.id)) is not None:
            return existing
        loan.code = _new_loan_code()
    raise AssertionError("loan codes exhausted: widen LOAN_CODE_CHARS")


def approve_loan(
    deps: PinDeps,
    *,
    lender_id: str,
    loan_id: str,
    pin: str | None = None,
    passkey: PasskeyProof | None = None,
    channel: str = "api",
    base_version: int | None = None,
) -> Loan:
    """The lender says yes. Money moves now if the lender's wallet holds it, else when it does.

    `base_version`: the loan's version the lender saw when deciding. The borrower may edit a
    request until it is approved, so a PIN typed for one set of terms must not approve
    another: a request changed since is refused, before the PIN is checked. A passkey
    approves the principal its challenge named (services/passkeys.py)."""
    now = deps.clock.now()
    with deps.uow() as uow:
        loan = loan_for(uow, loan_id, user_id=lender_id, role="lender")
        _require_unchanged(loan, base_version)
        lender = require_user(uow, lender_id, lock=True)
        binding = money_binding(
            MoneyAction.APPROVE_LOAN, loan_id=loan.id, amount_cents=loan.terms.principal_cents
        )
        prove_member(
            uow,
            hasher=deps.hasher,
            user=lender,
            pin=pin,
            passkey=passkey,
            binding=binding,
            now=now,
            channel=channel,
        )
        lender.require_money_may_leave(now)
        lender.require_phone_proven()
        require_user(uow, loan.borrower_id).require_phone_proven(mine=False)
        if _expire_if_due(uow, loan, now=now):
            uow.commit()
            raise Conflict("This request has expired.", code="loan_expired")
        loan.apply(LoanEvent.APPROVE)
        loan.expires_at = lapse_at(now=now, ttl=FUNDING_TTL, due_date=loan.terms.due_date)
        if not _fund_if_possible(uow, loan, now=now):
            borrower = require_user(uow, loan.borrower_id)
            notify(
                uow,
                user=borrower,
                kind="loan_awaiting_funds",
                params={
                    "lender_name": lender.name,
                    "amount_cents": loan.terms.principal_cents,
                    "loan_code": loan.code,
                },
                now=now,
                loan_id=loan.id,
            )
        uow.loans.save(loan, now)
        _audit_loan(uow, loan, actor_id=lender_id, channel=channel, command="approve_loan", now=now)
        uow.commit()
    return loan


def _require_unchanged(loan: Loan, base_version: int | None) -> None:
    """The locked request is still the version the lender saw."""
    if base_version is None or loan.state is not LoanState.REQUESTED:
        return  # a loan no longer requested is refused for its state, whatever the version
    if loan.version != base_version:
        raise Conflict(
            "The borrower changed this request after you saw it; look at it again.",
            code="loan_changed",
        )


def _fund_if_possible(uow: UnitOfWork, loan: Loan, *, now: datetime) -> bool:
    """Move the principal lender → borrower in one entry, if the lender's wallet holds it."""
    assert loan.state is LoanState.APPROVED
    lender_wallet = wallet_account_id(loan.lender_id)
    accounts = uow.ledger.lock_accounts([lender_wallet, wallet_account_id(loan.borrower_id)])
    if accounts[lender_wallet].balance_cents < loan.terms.principal_cents:
        return False
    ledger.transfer(
        uow,
        source_account_id=lender_wallet,
        target_account_id=wallet_account_id(loan.borrower_id),
        amount_cents=loan.terms.principal_cents,
        code=EntryCode.LOAN_DISBURSEMENT,
        idempotency_key=f"disburse:{loan.id}",
        cause_type="loan",
        cause_id=loan.id,
        now=now,
        memo=loan.code,
        locked=accounts,
    )
    loan.apply(LoanEvent.FUND)
    # Until M-PESA payouts exist, the money reaching the borrower's wallet settles the loan.
    loan.apply(LoanEvent.SETTLE)
    loan.disbursed_at = now
    borrower = require_user(uow, loan.borrower_id)
    # Where the money ends up: a borrower who wants loans on M-PESA (the default) is told it is
    # on its way there (the payout follows from the M-PESA worker), not that it sits in the
    # wallet it is about to leave.
    to_mpesa = uow.mpesa_preferences.get(loan.borrower_id).disburse_to_mpesa
    notify(
        uow,
        user=borrower,
        kind="loan_disbursed_mpesa" if to_mpesa else "loan_disbursed",
        params={
            "amount_cents": loan.terms.principal_cents,
            "loan_code": loan.code,
            "total_cents": loan.terms.total_cents,
            "due_date": loan.terms.due_date,
        },
        now=now,
        loan_id=loan.id,
    )
    return True


def decline_loan(
    deps: Deps,
    *,
    lender_id: str,
    loan_id: str,
    channel: str = "api",
) -> Loan:
    """The lender says no."""
    return _close_request(
        deps.uow(), deps.clock, loan_id, actor_id=lender_id, role="lender", event=LoanEvent.DECLINE,
        notice="loan_declined", command="decline_loan", channel=channel,
    )  # fmt: skip


def cancel_loan(
    deps: Deps,
    *,
    borrower_id: str,
    loan_id: str,
    channel: str = "api",
) -> Loan:
    """The borrower withdraws a request that no money has moved for yet."""
    return _close_request(
        deps.uow(), deps.clock, loan_id, actor_id=borrower_id, role="borrower",
        event=LoanEvent.CANCEL, notice="loan_cancelled", command="cancel_loan", channel=channel,
    )  # fmt: skip


def _close_request(
    uow: UnitOfWork,
    clock: Clock,
    loan_id: str,
    *,
    actor_id: str,
    role: str,
    event: LoanEvent,
    notice: str,
    command: str,
    channel: str,
) -> Loan:
    """End a request before money moved; the other party hears who ended it."""
    now = clock.now()
    with uow:
        loan = loan_for(uow, loan_id, user_id=actor_id, role=role)
        loan.apply(event)
        loan.closed_at = now
        uow.loans.save(loan, now)
        other_id = loan.borrower_id if role == "lender" else loan.lender_id
        actor, other = require_users(uow, actor_id, other_id)
        params = {
            f"{role}_name": actor.name,
            "amount_cents": loan.terms.principal_cents,
            "loan_code": loan.code,
        }
        notify(uow, user=other, kind=notice, params=params, now=now, loan_id=loan.id)
        _audit_loan(uow, loan, actor_id=actor_id, channel=channel, command=command, now=now)
        uow.commit()
    return loan


def repay_loan(
    deps: PinDeps,
    *,
    borrower_id: str,
    loan_id: str,
    amount_cents: object,
    pin: str | None = None,
    idempotency_key: str,
    channel: str = "api",
    passkey: PasskeyProof | None = None,
) -> Repayment:
    """The borrower pays from the wallet, proved with the PIN or a passkey. More than is owed:
    only what is owed leaves the wallet."""
    assert channel not in SYSTEM_CHANNELS, channel
    return _repay(
        deps.uow(),
        deps.clock,
        borrower_id=borrower_id,
        loan_id=loan_id,
        amount_cents=amount_cents,
        idempotency_key=idempotency_key,
        channel=channel,
        proof=(deps.hasher, pin, passkey),
    )


def repay_loan_by_system(
    deps: Deps,
    *,
    borrower_id: str,
    loan_id: str,
    amount_cents: object,
    idempotency_key: str,
    channel: str,
) -> Repayment:
    """Deni itself applies wallet money to a loan, as agreed when it was taken: the due date's
    automatic repayment, or an STK push the borrower paid with the M-PESA PIN. No member asks
    for this, so no PIN: a member's repayment is `repay_loan`."""
    assert channel in SYSTEM_CHANNELS, channel
    return _repay(
        deps.uow(),
        deps.clock,
        borrower_id=borrower_id,
        loan_id=loan_id,
        amount_cents=amount_cents,
        idempotency_key=idempotency_key,
        channel=channel,
        proof=None,
    )


def _repay(
    uow: UnitOfWork,
    clock: Clock,
    *,
    borrower_id: str,
    loan_id: str,
    amount_cents: object,
    idempotency_key: str,
    channel: str,
    proof: tuple[PinHasher, str | None, PasskeyProof | None] | None,
) -> Repayment:
    amount = require_repayment_amount(amount_cents)
    now = clock.now()
    with uow:
        seen = loan_for(uow, loan_id, user_id=borrower_id, role="borrower", lock=False)
        # The repayment reaches the lender's wallet and may settle the lender's own loans too:
        # lock all of them first, in id order, as every command does before touching wallets.
        lender_locks = lock_loans_a_credit_may_settle(
            uow, user_id=seen.lender_id, now=now, also=[seen.id]
        )
        loan = loan_for(uow, loan_id, user_id=borrower_id, role="borrower")
        if proof is not None:
            hasher, pin, passkey = proof
            borrower = require_user(uow, borrower_id, lock=True)
            prove_member(
                uow,
                hasher=hasher,
                user=borrower,
                pin=pin,
                passkey=passkey,
                binding=money_binding(MoneyAction.REPAY_LOAN, loan_id=loan.id, amount_cents=amount),
                now=now,
                channel=channel,
            )
            borrower.require_money_may_leave(now)
        elif channel not in MONEY_FROM_MPESA_CHANNELS:
            # Deni's own repayment from the wallet waits for a PIN reset's hold like a
            # member's: a loan taken in the hold must not drain the wallet on its due date.
            require_user(uow, borrower_id).require_money_may_leave(now)
        entry_key = f"repay:{borrower_id}:{idempotency_key}"
        replay = _find_repayment(uow, loan, entry_key)
        if replay is not None:
            return replay
        if loan.state is not LoanState.ACTIVE:
            raise Conflict(
                f"This loan is {loan.state.value}; there is nothing to repay.",
                code="loan_not_active",
            )
        loan.accrue_penalty(nairobi_today(now))
        balance_cents = ledger.wallet_balance_cents(uow, user_id=borrower_id)
        owed_cents = loan.owed().total_cents
        if balance_cents < min(amount, owed_cents):
            raise InsufficientFunds("Your wallet does not hold that much. Top it up first.")
        repayment = _apply_repayment(
            uow, loan, amount, entry_key=entry_key, channel=channel, now=now
        )
        settle_after_credit(uow, lender_locks, trigger=repayment.entry_id, now=now)
        uow.commit()
    return repayment


def _apply_repayment(
    uow: UnitOfWork, loan: Loan, amount_cents: int, *, entry_key: str, channel: str, now: datetime
) -> Repayment:
    assert loan.state is LoanState.ACTIVE
    owed = loan.owed()
    allocation = allocate(owed, amount_cents)
    result = ledger.transfer(
        uow,
        source_account_id=wallet_account_id(loan.borrower_id),
        target_account_id=wallet_account_id(loan.lender_id),
        amount_cents=allocation.applied_cents,
        code=EntryCode.LOAN_REPAYMENT,
        idempotency_key=entry_key,
        cause_type="loan",
        cause_id=loan.id,
        now=now,
        memo=loan.code,
    )
    loan.record_repayment(allocation, now)
    uow.loans.save(loan, now)
    uow.loans.add_repayment(
        RepaymentRecord(
            new_id(),
            loan.id,
            result.entry_id,
            allocation.applied_cents,
            allocation.penalty_cents,
            allocation.fee_cents,
            allocation.principal_cents,
            channel,
            now,
        )
    )
    _notify_repayment(uow, loan, allocation.applied_cents, now=now)
    actor = loan.borrower_id if channel != "system" else SYSTEM_ACTOR
    _audit_loan(
        uow,
        loan,
        actor_id=actor,
        channel=channel,
        command="repay_loan",
        now=now,
        amount_cents=allocation.applied_cents,
    )
    return Repayment(loan, allocation, result.entry_id)


def _find_repayment(uow: UnitOfWork, loan: Loan, entry_key: str) -> Repayment | None:
    entry = uow.ledger.find_entry(entry_key)
    if entry is None:
        return None
    record = next((r for r in uow.loans.repayments(loan.id) if r.entry_id == entry.id), None)
    if record is None:
        raise IdempotencyConflict("This idempotency key was already used for another payment.")
    allocation = Allocation(record.penalty_cents, record.fee_cents, record.principal_cents, 0)
    return Repayment(loan, allocation, entry.id)


def _notify_repayment(uow: UnitOfWork, loan: Loan, amount_cents: int, *, now: datetime) -> None:
    borrower, lender = require_users(uow, loan.borrower_id, loan.lender_id)
    balance_cents = loan.owed().total_cents
    if loan.state is LoanState.REPAID:
        for user, other in ((borrower, lender), (lender, borrower)):
            params = {"other_name": other.name, "loan_code": loan.code}
            notify(uow, user=user, kind="loan_repaid", params=params, now=now, loan_id=loan.id)
        return
    notify(
        uow,
        user=lender,
        kind="repayment_received",
        params={
            "borrower_name": borrower.name,
            "amount_cents": amount_cents,
            "balance_cents": balance_cents,
            "loan_code": loan.code,
        },
        now=now,
        loan_id=loan.id,
    )
    notify(
        uow,
        user=borrower,
        kind="repayment_made",
        params={
            "amount_cents": amount_cents,
            "balance_cents": balance_cents,
            "loan_code": loan.code,
        },
        now=now,
        loan_id=loan.id,
    )


@dataclass(frozen=True, slots=True)
class CreditLocks:
    """The loans a credit to one wallet may settle, locked before the wallet was."""

    user_id: str
    overdue_ids: tuple[str, ...]  # the user's overdue loans, as borrower, oldest due first
    waiting_ids: tuple[str, ...]  # approvals waiting for the user's money, as lender


def lock_loans_a_credit_may_settle(
    uow: UnitOfWork, *, user_id: str, now: datetime, also: Sequence[str] = ()
) -> CreditLocks:
    """Lock, in id order, the loans that money reaching `user_id`'s wallet may pay (overdue,
    as borrower) or fund (approved, as lender), together with `also`.

    Commands lock loans before wallets and loans in id order; a credit that locked the wallet
    first and the loans after could deadlock with an approval or a repayment. Loans approved
    after this snapshot fund themselves: their approval waits for our wallet lock, then sees
    the money.
    """
    return lock_loans_credits_may_settle(uow, user_ids=[user_id], now=now, also=also)[user_id]


def lock_loans_credits_may_settle(
    uow: UnitOfWork, *, user_ids: Sequence[str], now: datetime, also: Sequence[str] = ()
) -> dict[str, CreditLocks]:
    """`lock_loans_a_credit_may_settle` for credits to several wallets in one transaction:
    one read finds the loans of them all, then every loan is locked in id order."""
    assert user_ids
    found = uow.loans.settleable_by_credits(
        user_ids, due_before=nairobi_today(now), per_user=LOANS_PER_WALLET_EVENT_MAX
    )
    overdue: dict[str, list[str]] = {user_id: [] for user_id in user_ids}
    waiting: dict[str, list[str]] = {user_id: [] for user_id in user_ids}
    for loan_id, user_id, role in found:
        (overdue if role == "overdue" else waiting)[user_id].append(loan_id)
    for loan_id in sorted({loan_id for loan_id, _, _ in found} | set(also)):
        uow.loans.lock(loan_id)
    return {u: CreditLocks(u, tuple(overdue[u]), tuple(waiting[u])) for u in user_ids}


def settle_after_credit(
    uow: UnitOfWork,
    locks: CreditLocks,
    *,
    trigger: str,
    now: datetime,
    late_approvals: bool = True,
) -> bool:
    """Money reached the wallet: overdue debts first, then loans waiting for funds. True if
    any money left the wallet for them. A batch of credits passes `late_approvals=False` and
    calls fund_late_approvals once, for all its wallets, at the end.

    Only the loans in `locks` are touched. One level only: a repayment this makes does not in
    turn settle the receiving lender's loans (the sweep's fund_approved_loans catches those).
    """
    repaid_cents = _apply_to_overdue_loans(uow, locks, trigger=trigger, now=now)
    funded = _fund_waiting_loans(uow, locks, now=now)
    if late_approvals:
        funded += fund_late_approvals(uow, [locks], now=now)
    return repaid_cents > 0 or funded > 0


def _fund_waiting_loans(uow: UnitOfWork, locks: CreditLocks, *, now: datetime) -> int:
    """Fund locked approvals, oldest first, while the lender's wallet holds the principal."""
    funded = 0
    for loan_id in locks.waiting_ids:
        loan = uow.loans.lock(loan_id)
        assert loan is not None
        funded += _fund_waiting_loan(uow, loan, lender_id=locks.user_id, now=now)
    return funded


def fund_late_approvals(uow: UnitOfWork, locks: Sequence[CreditLocks], *, now: datetime) -> int:
    """Approvals that found these wallets short before we locked them committed while we
    waited for the wallets: they are not in `locks`. Take one only if nobody holds it
    (waiting for a loan while holding the wallet could deadlock with the sweep); whoever
    holds it waits for the wallet and then sees the money. Call with the wallets locked."""
    known = {loan_id for lock in locks for loan_id in lock.waiting_ids}
    lenders = [lock.user_id for lock in locks]
    found = uow.loans.settleable_by_credits(
        lenders, due_before=nairobi_today(now), per_user=LOANS_PER_WALLET_EVENT_MAX
    )
    funded = 0
    for loan_id, lender_id, role in found:
        if role != "waiting" or loan_id in known:
            continue
        late = uow.loans.lock(loan_id, skip_locked=True)
        if late is not None:
            funded += _fund_waiting_loan(uow, late, lender_id=lender_id, now=now)
    return funded


def _fund_waiting_loan(uow: UnitOfWork, loan: Loan, *, lender_id: str, now: datetime) -> int:
    """1 if the locked `loan` was waiting for its lender's money and got it, else 0."""
    assert loan.lender_id == lender_id
    if loan.state is not LoanState.APPROVED or _expire_if_due(uow, loan, now=now):
        return 0
    if not _fund_if_possible(uow, loan, now=now):
        return 0
    uow.loans.save(loan, now)
    _audit_loan(uow, loan, actor_id=SYSTEM_ACTOR, channel="system", command="fund_loan", now=now)
    return 1


def _apply_to_overdue_loans(
    uow: UnitOfWork, locks: CreditLocks, *, trigger: str, now: datetime
) -> int:
    """Money reaching an overdue borrower's wallet goes to their loans first (agreed at request)."""
    applied_cents = 0
    today = nairobi_today(now)
    if locks.overdue_ids and not require_user(uow, locks.user_id).money_may_leave(now):
        return 0  # the wallet is held after a PIN reset: the debts wait for the hold to end
    for loan_id in locks.overdue_ids:
        balance_cents = ledger.wallet_balance_cents(uow, user_id=locks.user_id)
        loan = uow.loans.lock(loan_id)
        assert loan is not None
        assert loan.borrower_id == locks.user_id
        if balance_cents == 0 or loan.state is not LoanState.ACTIVE:
            continue
        loan.accrue_penalty(today)
        amount_cents = min(balance_cents, loan.owed().total_cents)
        key = f"auto:{loan.id}:{trigger}"
        _apply_repayment(uow, loan, amount_cents, entry_key=key, channel="system", now=now)
        applied_cents += amount_cents
    return applied_cents


def write_off_loan(
    deps: PinDeps,
    *,
    lender_id: str,
    loan_id: str,
    pin: str | None = None,
    passkey: PasskeyProof | None = None,
    channel: str = "api",
) -> Loan:
    """The lender forgives what is still owed. No money moves; the debt ends."""
    now = deps.clock.now()
    with deps.uow() as uow:
        loan = loan_for(uow, loan_id, user_id=lender_id, role="lender")
        lender = require_user(uow, lender_id, lock=True)
        prove_member(
            uow,
            hasher=deps.hasher,
            user=lender,
            pin=pin,
            passkey=passkey,
            binding=money_binding(MoneyAction.WRITE_OFF_LOAN, loan_id=loan.id),
            now=now,
            channel=channel,
        )
        # Forgiving a debt gives up money owed to the wallet: held after a PIN reset too.
        lender.require_money_may_leave(now)
        _write_off(uow, loan, lender, actor_id=lender_id, channel=channel, now=now)
        uow.commit()
    return loan


def write_off_for_lender(deps: Deps, *, loan_id: str, actor_id: str) -> Loan:
    """Staff write a loan off on its lender's behalf (a lender who asked customer care, or
    died), after a second operator approved it; audited with the approver as actor."""
    now = deps.clock.now()
    with deps.uow() as uow:
        loan = uow.loans.lock(loan_id)
        if loan is None:
            raise NotFound("No such loan.", code="loan_not_found")
        lender = require_user(uow, loan.lender_id, lock=True)
        _write_off(uow, loan, lender, actor_id=actor_id, channel="ops", now=now)
        uow.commit()
    return loan


def _write_off(
    uow: UnitOfWork, loan: Loan, lender: User, *, actor_id: str, channel: str, now: datetime
) -> None:
    loan.accrue_penalty(nairobi_today(now))
    forgiven_cents = loan.owed().total_cents
    loan.apply(LoanEvent.WRITE_OFF)
    loan.closed_at = now
    uow.loans.save(loan, now)
    borrower = require_user(uow, loan.borrower_id)
    params = {
        "lender_name": lender.name,
        "amount_cents": forgiven_cents,
        "loan_code": loan.code,
    }
    notify(uow, user=borrower, kind="loan_written_off", params=params, now=now, loan_id=loan.id)
    _audit_loan(
        uow,
        loan,
        actor_id=actor_id,
        channel=channel,
        command="write_off_loan",
        now=now,
        amount_cents=forgiven_cents,
    )


def expire_stale_loans(deps: Deps) -> int:
    """Requests nobody answered and approvals nobody funded lapse. Bounded per run."""
    now = deps.clock.now()
    with deps.uow.read_only() as uow:
        stale = uow.loans.ids_in_state(
            states=[LoanState.REQUESTED, LoanState.APPROVED],
            expires_before=now,
            limit=SWEEP_BATCH_MAX,
        )
    expired = 0
    for loan_id in stale:
        with deps.uow() as uow:
            loan = uow.loans.lock(loan_id)
            assert loan is not None
            if _expire_if_due(uow, loan, now=now):
                expired += 1
            uow.commit()
    return expired


def fund_approved_loans(deps: Deps) -> int:
    """Catch-all for approvals whose lender got the money some way that funds nothing at once
    (a repayment passed on by an automatic overdue payment, a voided payout). Bounded per run."""
    now = deps.clock.now()
    with deps.uow.read_only() as uow:
        waiting = uow.loans.ids_in_state(states=[LoanState.APPROVED], limit=SWEEP_BATCH_MAX)
        lenders = {loan.lender_id for loan in map(uow.loans.get, waiting) if loan is not None}
    funded = 0
    for lender_id in sorted(lenders):
        with deps.uow() as uow:
            locks = lock_loans_a_credit_may_settle(uow, user_id=lender_id, now=now)
            funded += _fund_waiting_loans(uow, locks, now=now)
            uow.commit()
    return funded


def _expire_if_due(uow: UnitOfWork, loan: Loan, *, now: datetime) -> bool:
    if loan.state not in (LoanState.REQUESTED, LoanState.APPROVED) or now < loan.expires_at:
        return False
    loan.apply(LoanEvent.EXPIRE)
    loan.closed_at = now
    uow.loans.save(loan, now)
    borrower, lender = require_users(uow, loan.borrower_id, loan.lender_id)
    for user, other in ((borrower, lender), (lender, borrower)):
        params = {
            "other_name": other.name,
            "amount_cents": loan.terms.principal_cents,
            "loan_code": loan.code,
        }
        notify(uow, user=user, kind="loan_expired", params=params, now=now, loan_id=loan.id)
    _audit_loan(uow, loan, actor_id=SYSTEM_ACTOR, channel="system", command="expire_loan", now=now)
    return True


def loan_for(uow: UnitOfWork, loan_id: str, *, user_id: str, role: str, lock: bool = True) -> Loan:
    """Lock (or just read) a loan the user takes part in, in the role the command needs."""
    loan = uow.loans.lock(loan_id) if lock else uow.loans.get(loan_id)
    if loan is None or user_id not in (loan.borrower_id, loan.lender_id):
        # Someone else's loan looks exactly like a missing one: ids reveal nothing.
        raise NotFound("No such loan.", code="loan_not_found")
    owner = loan.lender_id if role == "lender" else loan.borrower_id
    if owner != user_id:
        raise Forbidden(f"Only the {role} can do this.", code=f"not_the_{role}")
    return loan


def _audit_loan(
    uow: UnitOfWork,
    loan: Loan,
    *,
    actor_id: str,
    channel: str,
    command: str,
    now: datetime,
    amount_cents: int | None = None,
) -> None:
    details: dict[str, object] = {"loan_id": loan.id, "state": loan.state.value}
    if amount_cents is not None:
        details["amount_cents"] = amount_cents
    audit(uow, actor_id=actor_id, channel=channel, command=command, details=details, now=now)
