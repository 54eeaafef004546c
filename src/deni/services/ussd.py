"""Use cases the USSD channel needs beyond the core ones. Any channel may call them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from deni.domain.errors import NotFound
from deni.domain.users import User, require_language
from deni.services.common import audit
from deni.services.phone_proof import prove_by_ussd_pin
from deni.services.ports import Deps, MpesaRequests, PinDeps, UnitOfWork
from deni.services.users import check_pin

MPESA_KINDS = ("top_up", "withdrawal", "stk_repayment")
QUEUED_PER_SESSION_MAX = 4


def confirm_pin(
    deps: PinDeps,
    *,
    user_id: str,
    pin: str,
    channel: str,
    money_leaves: bool = False,
) -> User:
    """Prove the PIN on its own (a wrong one counts towards the lock, as everywhere). With
    `money_leaves`, also refuse while a PIN reset holds the wallet's money."""
    now = deps.clock.now()
    with deps.uow() as uow:
        user = uow.users.lock(user_id)
        if user is None:
            raise NotFound("No such user.", code="user_not_found")
        check_pin(uow, hasher=deps.hasher, user=user, pin=pin, now=now, channel=channel)
        uow.commit()
    if money_leaves:
        user.require_money_may_leave(now)
    return user


def claim_number(
    deps: PinDeps,
    *,
    user_id: str,
    phone: str,
    pin: str,
    channel: str,
) -> User:
    """A dial from the number of an account that never proved it, with the account's PIN: the
    network says which SIM dialled and its holder knows the PIN, so the account is the SIM
    holder's; its number is proven. A wrong PIN counts towards the lock, as everywhere."""
    now = deps.clock.now()
    with deps.uow() as uow:
        user = uow.users.lock(user_id)
        if user is None or user.is_closed or user.phone != phone:
            raise NotFound("No such user.", code="user_not_found")
        check_pin(uow, hasher=deps.hasher, user=user, pin=pin, now=now, channel=channel)
        prove_by_ussd_pin(uow, user, now=now)
        uow.commit()
    return user


def set_language(
    deps: Deps,
    *,
    user_id: str,
    language: str,
    channel: str,
) -> User:
    clean = require_language(language)
    now = deps.clock.now()
    with deps.uow() as uow:
        user = uow.users.lock(user_id)
        if user is None:
            raise NotFound("No such user.", code="user_not_found")
        if user.language != clean:
            user.language = clean
            uow.users.save(user, now)
            audit(
                uow,
                actor_id=user.id,
                channel=channel,
                command="set_language",
                details={"language": clean},
                now=now,
            )
        uow.commit()
    return user


@dataclass(frozen=True, slots=True)
class QueuedMpesa:
    """An M-PESA movement a session asked for; recorded when the session ends."""

    kind: str
    amount_cents: int
    idempotency_key: str
    loan_id: str | None = None

    def __post_init__(self) -> None:
        assert self.kind in MPESA_KINDS, self.kind
        assert self.amount_cents > 0
        assert (self.loan_id is not None) == (self.kind == "stk_repayment")


def record_mpesa_requests(
    deps: Deps,
    *,
    mpesa: MpesaRequests,
    user_id: str,
    queued: Sequence[QueuedMpesa],
    channel: str,
) -> None:
    """Record every queued movement in one transaction: all of them or none."""
    assert 0 < len(queued) <= QUEUED_PER_SESSION_MAX
    now = deps.clock.now()
    with deps.uow() as uow:
        for item in queued:
            _record(uow, mpesa, item, user_id=user_id, now=now)
            details = {"kind": item.kind, "amount_cents": item.amount_cents}
            audit(
                uow,
                actor_id=user_id,
                channel=channel,
                command="request_mpesa",
                details=details,
                now=now,
            )
        uow.commit()


def _record(
    uow: UnitOfWork, mpesa: MpesaRequests, item: QueuedMpesa, *, user_id: str, now: datetime
) -> None:
    key, amount_cents = item.idempotency_key, item.amount_cents
    if item.kind == "top_up":
        mpesa.request_top_up(
            uow, user_id=user_id, amount_cents=amount_cents, idempotency_key=key, now=now
        )
    elif item.kind == "withdrawal":
        mpesa.request_withdrawal(
            uow, user_id=user_id, amount_cents=amount_cents, idempotency_key=key, now=now
        )
    else:
        assert item.loan_id is not None
        mpesa.request_stk_repayment(
            uow,
            user_id=user_id,
            loan_id=item.loan_id,
            amount_cents=amount_cents,
            idempotency_key=key,
            now=now,
        )
