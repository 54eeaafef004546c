"""Money arriving in a wallet, and what it sets off: waiting loans funded, overdue loans paid."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from deni.domain.errors import ValidationFailed
from deni.domain.ledger import wallet_account_id
from deni.domain.money import MOVEMENT_CENTS_MAX, require_cents
from deni.domain.users import User
from deni.services import ledger, loans
from deni.services.common import SYSTEM_ACTOR, audit, notify, require_users
from deni.services.ports import Deps, UnitOfWork

RECEIPT_CHARS_MAX = 40


@dataclass(frozen=True, slots=True)
class Deposit:
    entry_id: str
    replayed: bool
    balance_cents: int


@dataclass(frozen=True, slots=True)
class Credit:
    """One M-PESA payment for a wallet, as `credit_wallets` takes it."""

    user_id: str
    amount_cents: int
    receipt: str


def record_mpesa_payment(
    deps: Deps,
    *,
    user_id: str,
    amount_cents: object,
    receipt: str,
    channel: str = "mpesa",
) -> Deposit:
    """Credit a wallet with money M-PESA confirmed. The receipt number makes it happen once:
    a second time answers the first credit, as a replay. One credit through `credit_wallets`,
    the one path by which money enters Deni."""
    credit = Credit(user_id, _checked(amount_cents, receipt), receipt)
    with deps.uow() as uow:
        [deposit] = credit_wallets(uow, [credit], now=deps.clock.now(), channel=channel)
        uow.commit()
    return deposit


def credit_wallets(
    uow: UnitOfWork, credits: Sequence[Credit], *, now: datetime, channel: str = "mpesa"
) -> list[Deposit]:
    """Credit wallets with M-PESA payments inside the caller's transaction (which commits):
    the keys (`mpesa:<receipt>`), the owner's notification, the audit row, loans settled.
    Every loan the credits may settle is locked before any wallet, and the wallets in id
    order. One credit whose receipt was seen before is a replay (nothing happens again); in a
    batch of several, a receipt seen before raises KeysTaken and the caller's transaction
    must be rolled back, to be retried one credit at a time. Deposits come back in the order
    of `credits`."""
    assert credits
    checked = [(c, _checked(c.amount_cents, c.receipt)) for c in credits]
    user_ids = sorted({c.user_id for c in credits})
    users = dict(zip(user_ids, require_users(uow, *user_ids), strict=True))
    locks = loans.lock_loans_credits_may_settle(uow, user_ids=user_ids, now=now)
    in_wallet_order = sorted(range(len(checked)), key=lambda i: checked[i][0].user_id)
    drafts = [
        ledger.mpesa_deposit(wallet_account_id(credit.user_id), amount, credit.receipt)
        for credit, amount in (checked[i] for i in in_wallet_order)
    ]
    posted = (
        ledger.post_entries(uow, drafts, now=now)  # a receipt seen before: KeysTaken
        if len(drafts) > 1
        else [ledger.post_entry(uow, drafts[0], now=now)]  # seen before: a replay
    )
    deposits: dict[int, Deposit] = {}
    moved = False  # once settling moved money, balances from the posting may be stale
    for i, result in zip(in_wallet_order, posted, strict=True):
        credit, amount = checked[i]
        user = users[credit.user_id]
        if result.balances_after is None:  # a replay of one credit
            balance_cents = ledger.wallet_balance_cents(uow, user_id=user.id)
            deposits[i] = Deposit(result.entry_id, True, balance_cents)
            continue
        balance_cents = (  # an earlier credit may have settled a debt with this wallet
            ledger.wallet_balance_cents(uow, user_id=user.id)
            if moved
            else result.balances_after[wallet_account_id(user.id)]
        )
        deposits[i], settled = _credited(
            uow, user, locks[user.id], amount, credit.receipt, result.entry_id, balance_cents,
            channel=channel, now=now,
        )  # fmt: skip
        moved = moved or settled
    loans.fund_late_approvals(uow, list(locks.values()), now=now)
    return [deposits[i] for i in range(len(checked))]


def _checked(amount_cents: object, receipt: str) -> int:
    amount = require_cents(amount_cents, amount_cents_min=1, amount_cents_max=MOVEMENT_CENTS_MAX)
    if not receipt or len(receipt) > RECEIPT_CHARS_MAX or not receipt.isalnum():
        raise ValidationFailed("An M-PESA receipt is letters and digits.", code="invalid_receipt")
    return amount


def _credited(
    uow: UnitOfWork,
    user: User,
    locks: loans.CreditLocks,
    amount_cents: int,
    receipt: str,
    entry_id: str,
    balance_cents: int,
    *,
    channel: str,
    now: datetime,
) -> tuple[Deposit, bool]:
    """What follows a new credit (`entry_id`, leaving the wallet at `balance_cents`): the owner
    hears of it, the audit row, debts settled. Also says whether settling moved money."""
    notify(
        uow,
        user=user,
        kind="wallet_credited",
        params={"amount_cents": amount_cents, "balance_cents": balance_cents, "receipt": receipt},
        now=now,
    )
    audit(
        uow,
        actor_id=SYSTEM_ACTOR,
        channel=channel,
        command="record_mpesa_payment",
        details={"user_id": user.id, "amount_cents": amount_cents, "receipt": receipt},
        now=now,
    )
    settled = loans.settle_after_credit(uow, locks, trigger=entry_id, now=now, late_approvals=False)
    if settled:
        balance_cents = ledger.wallet_balance_cents(uow, user_id=user.id)
    return Deposit(entry_id, False, balance_cents), settled
