"""Money arriving in a wallet, and what it sets off: waiting loans funded, overdue loans paid."""

from __future__ import annotations

from dataclasses import dataclass

from deni.domain.errors import NotFound, ValidationFailed
from deni.domain.ledger import wallet_account_id
from deni.domain.money import MOVEMENT_MAX_CENTS, require_cents
from deni.services import ledger, loans
from deni.services.common import SYSTEM_ACTOR, audit, notify
from deni.services.ports import Clock, UnitOfWork

RECEIPT_CHARS_MAX = 40


@dataclass(frozen=True, slots=True)
class Deposit:
    entry_id: str
    replayed: bool
    balance_cents: int


def record_mpesa_payment(
    *,
    uow: UnitOfWork,
    clock: Clock,
    user_id: str,
    amount_cents: object,
    receipt: str,
    channel: str = "mpesa",
) -> Deposit:
    """Credit a wallet with money M-PESA confirmed. The receipt number makes it happen once.

    This is the one way money enters Deni; the Daraja callbacks call it.
    """
    amount = require_cents(amount_cents, minimum_cents=1, maximum_cents=MOVEMENT_MAX_CENTS)
    if not receipt or len(receipt) > RECEIPT_CHARS_MAX or not receipt.isalnum():
        raise ValidationFailed("An M-PESA receipt is letters and digits.", code="invalid_receipt")
    now = clock.now()
    with uow:
        user = uow.users.get(user_id)
        if user is None:
            raise NotFound("No such user.", code="user_not_found")
        locks = loans.lock_loans_a_credit_may_settle(uow, user_id=user.id, now=now)
        result = ledger.credit_from_mpesa(
            uow,
            wallet_id=wallet_account_id(user.id),
            amount_cents=amount,
            receipt=receipt,
            idempotency_key=f"mpesa:{receipt}",
            now=now,
        )
        if not result.replayed:
            balance_cents = ledger.wallet_balance_cents(uow, user_id=user.id)
            notify(
                uow,
                user=user,
                kind="wallet_credited",
                params={"amount_cents": amount, "balance_cents": balance_cents, "receipt": receipt},
                now=now,
            )
            audit(
                uow,
                actor_id=SYSTEM_ACTOR,
                channel=channel,
                command="record_mpesa_payment",
                details={"user_id": user.id, "amount_cents": amount, "receipt": receipt},
                now=now,
            )
            loans.settle_after_credit(uow, locks, trigger=result.entry_id, now=now)
        balance_cents = ledger.wallet_balance_cents(uow, user_id=user.id)
        uow.commit()
    return Deposit(result.entry_id, result.replayed, balance_cents)
