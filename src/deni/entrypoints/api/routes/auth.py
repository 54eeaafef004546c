"""Register, log in, refresh, and the signed-in user's own profile and PIN."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request

from deni.domain.money import format_kes
from deni.entrypoints.api.deps import DeniDep, IdempotencyKey, UserId, idempotency_key
from deni.entrypoints.api.idempotency import run_idempotent
from deni.entrypoints.api.schemas import (
    ChangePinIn,
    EmptyOut,
    LoginIn,
    MeOut,
    MessageOut,
    PinResetConfirmIn,
    PinResetIn,
    RefreshIn,
    RegisterIn,
    SessionOut,
    UserOut,
)
from deni.services import claims, ledger, pin_reset, users
from deni.services.ports import UnitOfWorkFactory
from deni.services.users import Session

router = APIRouter(tags=["auth"])


def _session_out(session: Session) -> SessionOut:
    return SessionOut(
        user_id=session.user_id,
        access_token=session.access_token,
        expires_in=session.access_expires_in_s,
        refresh_token=session.refresh_token,
    )


@router.post("/auth/register", status_code=201, response_model=UserOut)
def register(
    body: RegisterIn,
    deni: DeniDep,
    key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> object:
    """Create an account with a Kenyan mobile number, a name, a 4-digit PIN and a language."""

    def action(uows: UnitOfWorkFactory) -> tuple[int, UserOut]:
        user = users.register_user(
            uow=uows(),
            hasher=deni.hasher,
            clock=deni.clock,
            phone=body.phone,
            name=body.name,
            pin=body.pin,
            language=body.language,
        )
        return 201, UserOut.of(user)

    if key is None:
        return action(deni.uow)[1]
    key = idempotency_key(key)
    return run_idempotent(
        deni, scope="register", key=key, route="register", body=body, action=action
    )


@router.post("/auth/login", response_model=SessionOut)
def login(body: LoginIn, deni: DeniDep) -> SessionOut:
    """Exchange phone and PIN for a short-lived access token and a refresh token."""
    session = users.login(
        uow=deni.uow(),
        hasher=deni.hasher,
        tokens=deni.tokens,
        clock=deni.clock,
        phone=body.phone,
        pin=body.pin,
        refresh_ttl_s=deni.settings.refresh_token_ttl_s,
    )
    return _session_out(session)


@router.post("/auth/refresh", response_model=SessionOut)
def refresh(body: RefreshIn, deni: DeniDep) -> SessionOut:
    """Swap a refresh token for a new access token and a new refresh token (one use each)."""
    session = users.refresh_session(
        uow=deni.uow(),
        tokens=deni.tokens,
        clock=deni.clock,
        refresh_token=body.refresh_token,
        refresh_ttl_s=deni.settings.refresh_token_ttl_s,
    )
    return _session_out(session)


@router.post("/auth/pin-reset", status_code=202, response_model=MessageOut)
def ask_pin_reset(body: PinResetIn, request: Request, deni: DeniDep) -> MessageOut:
    """Forgot your PIN? A 6-digit code goes by SMS to the number, if it is on Deni. The answer
    is the same either way; at most 3 codes an hour, each good for 10 minutes, and at most 10
    asks an hour from one address (`429 too_many_requests`)."""
    pin_reset.start_pin_reset(
        uow=deni.uow(),
        sms=deni.sms,
        counters=deni.sessions,
        clock=deni.clock,
        pepper=deni.settings.pin_pepper,
        phone=body.phone,
        source=request.client.host if request.client else "",
    )
    return MessageOut(
        message="If this number is on Deni, a reset code is on its way by SMS "
        "(at most 3 codes an hour)."
    )


@router.post("/auth/pin-reset/confirm", response_model=EmptyOut)
def confirm_pin_reset(body: PinResetConfirmIn, deni: DeniDep) -> EmptyOut:
    """The code from the SMS and a new PIN. Every session ends (log in again), and for your
    safety no money can leave the wallet for 24 hours (`423 money_on_hold` until then)."""
    pin_reset.finish_pin_reset(
        uow=deni.uow(),
        hasher=deni.hasher,
        clock=deni.clock,
        pepper=deni.settings.pin_pepper,
        phone=body.phone,
        code=body.code,
        new_pin=body.new_pin,
    )
    return EmptyOut()


@router.get("/me", response_model=MeOut)
def me(user_id: UserId, deni: DeniDep) -> MeOut:
    """Who you are, and what your wallet holds."""
    user = users.get_user(uow_factory=deni.uow, user_id=user_id)
    with deni.uow.read_only() as uow:
        balance_cents = ledger.wallet_balance_cents(uow, user_id=user_id)
        arriving = claims.arriving(uow, user_id=user_id)
    return MeOut(
        **UserOut.of(user).model_dump(),
        balance_cents=balance_cents,
        balance=format_kes(balance_cents),
        arriving_cents=sum(claim.amount_cents for claim in arriving),
    )


@router.post("/me/pin", response_model=EmptyOut)
def change_pin(body: ChangePinIn, user_id: UserId, deni: DeniDep, key: IdempotencyKey) -> object:
    """Change your PIN; the old one must be right (wrong ones count towards the lock)."""

    def action(uows: UnitOfWorkFactory) -> tuple[int, EmptyOut]:
        users.change_pin(
            uow=uows(),
            hasher=deni.hasher,
            clock=deni.clock,
            user_id=user_id,
            old_pin=body.old_pin,
            new_pin=body.new_pin,
        )
        return 200, EmptyOut()

    return run_idempotent(
        deni, scope=user_id, key=key, route="change_pin", body=body, action=action
    )
