"""Register, log in, refresh, and the signed-in user's own profile and PIN."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Header

from deni.bootstrap import Deni
from deni.domain.errors import ValidationFailed
from deni.domain.money import format_kes
from deni.entrypoints.api.contract import refusals
from deni.entrypoints.api.deps import (
    DeniDep,
    IdempotencyKey,
    SourceAddress,
    UserId,
    idempotency_key,
)
from deni.entrypoints.api.idempotency import run_idempotent
from deni.entrypoints.api.json_body import TextJsonRoute
from deni.entrypoints.api.schemas import (
    ChangePinIn,
    EmptyOut,
    LoginIn,
    MeOut,
    MessageOut,
    PhoneConfirmIn,
    PinResetConfirmIn,
    PinResetIn,
    ProfileIn,
    RefreshIn,
    RegisterCodeIn,
    RegisterIn,
    SessionOut,
    UserOut,
)
from deni.services import ledger, limits, phone_proof, pin_reset, users
from deni.services.mpesa import claims
from deni.services.ports import UnitOfWorkFactory
from deni.services.users import Session

router = APIRouter(tags=["auth"], route_class=TextJsonRoute)


def _session_out(session: Session) -> SessionOut:
    return SessionOut(
        user_id=session.user_id,
        access_token=session.access_token,
        expires_in=session.access_expires_in_s,
        refresh_token=session.refresh_token,
    )


def _after_answer(deni: Deni, after: BackgroundTasks) -> phone_proof.DeliverCode:
    """A code's SMS, sent once the answer is (Starlette runs the task after the body): asked
    by someone who may be a stranger, the answer must take as long for a number that gets
    no SMS, and must not fail when only the SMS does (docs/security.md)."""

    def deliver(message: phone_proof.CodeSms) -> None:
        after.add_task(phone_proof.send_code_after_answer, deni.sms, message)

    return deliver


@router.post("/auth/register/code", status_code=202, response_model=MessageOut)
def ask_register_code(
    body: RegisterCodeIn, source: SourceAddress, deni: DeniDep, after: BackgroundTasks
) -> MessageOut:
    """Step one of opening an account: a 6-digit code goes by SMS to the number, which proves
    the number is yours. The answer is the same whether or not the number is on Deni (a number
    with a confirmed account gets no SMS). At most 3 codes an hour per number, each good for 10
    minutes, and at most 10 asks an hour from one address (`429 too_many_requests`)."""
    phone_proof.ask_registration_code(
        deni,
        phone=body.phone,
        source=source,
        language=body.language,
        deliver=_after_answer(deni, after),
    )
    return MessageOut(
        message="If this number can open a Deni account, a code is on its way by SMS "
        "(at most 3 codes an hour). Already on Deni? Sign in instead."
    )


@router.post("/auth/register", status_code=201, response_model=UserOut, responses=refusals(409))
def register(
    body: RegisterIn,
    deni: DeniDep,
    source: SourceAddress,
    key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> object:
    """Step two: the code from the SMS, a name, a 4-digit PIN and a language. Without a code,
    `422 phone_code_required`; a wrong, late or used one is `401 phone_code_invalid` (3 wrong
    tries void it). A number held by an account that never proved it is taken from it.
    At most 20 an hour from one address (`429`)."""
    limits.limit_registration(deni.limit_counters, source=source, now=deni.clock.now())

    def action(uows: UnitOfWorkFactory) -> tuple[int, UserOut]:
        user = phone_proof.register_with_code(
            deni.within(uows),
            phone=body.phone,
            code=body.code,
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
def login(body: LoginIn, deni: DeniDep, source: SourceAddress) -> SessionOut:
    """Exchange phone and PIN for a short-lived access token and a refresh token. At most 100
    tries an hour from one address and 20 for one number (`429`); wrong PINs here lock only
    sign-in from the app and the API, never USSD, and at most 6 fit in any 24 hours."""
    limits.limit_login(deni.limit_counters, source=source, phone=body.phone, now=deni.clock.now())
    session = users.login(
        deni,
        phone=body.phone,
        pin=body.pin,
        stranger_guesses=deni.limit_counters,
    )
    return _session_out(session)


@router.post("/auth/refresh", response_model=SessionOut, responses=refusals(401))
def refresh(body: RefreshIn, deni: DeniDep) -> SessionOut:
    """Swap a refresh token for a new access token and a new refresh token (one use each)."""
    session = users.refresh_session(
        deni,
        refresh_token=body.refresh_token,
    )
    return _session_out(session)


@router.post("/auth/pin-reset", status_code=202, response_model=MessageOut)
def ask_pin_reset(
    body: PinResetIn, deni: DeniDep, source: SourceAddress, after: BackgroundTasks
) -> MessageOut:
    """Forgot your PIN? A 6-digit code goes by SMS to the number, if it is on Deni. The answer
    is the same either way; at most 3 codes an hour, each good for 10 minutes, and at most 10
    asks an hour from one address (`429 too_many_requests`)."""
    pin_reset.start_pin_reset(
        deni,
        phone=body.phone,
        source=source,
        deliver=_after_answer(deni, after),
    )
    return MessageOut(
        message="If this number is on Deni, a reset code is on its way by SMS "
        "(at most 3 codes an hour)."
    )


@router.post("/auth/pin-reset/confirm", response_model=EmptyOut)
def confirm_pin_reset(body: PinResetConfirmIn, deni: DeniDep, source: SourceAddress) -> EmptyOut:
    """The code from the SMS and a new PIN. Every session ends (log in again), and for your
    safety no money can leave the wallet for 24 hours (`423 money_on_hold` until then). At
    most 30 tries an hour from one address and 10 for one number (`429`)."""
    limits.limit_code_check(
        deni.limit_counters, source=source, phone=body.phone, now=deni.clock.now()
    )
    pin_reset.finish_pin_reset(
        deni,
        phone=body.phone,
        code=body.code,
        new_pin=body.new_pin,
    )
    return EmptyOut()


@router.get("/me", response_model=MeOut)
def me(user_id: UserId, deni: DeniDep) -> MeOut:
    """Who you are, and what your wallet holds."""
    user = users.get_user(deni, user_id=user_id)
    with deni.uow.read_only() as uow:
        balance_cents = ledger.wallet_balance_cents(uow, user_id=user_id)
        arriving = claims.arriving(uow, user_id=user_id)
    return MeOut(
        **UserOut.of(user).model_dump(),
        balance_cents=balance_cents,
        balance=format_kes(balance_cents),
        arriving_cents=sum(claim.amount_cents for claim in arriving),
    )


@router.patch("/me", response_model=UserOut)
def update_me(body: ProfileIn, user_id: UserId, deni: DeniDep, key: IdempotencyKey) -> object:
    """Change your name, your language, or both; what you leave out stays. Notifications and
    USSD screens follow the language from the next one."""
    if body.name is None and body.language is None:
        raise ValidationFailed("Send a name, a language or both.")

    def action(uows: UnitOfWorkFactory) -> tuple[int, UserOut]:
        user = users.update_profile(
            deni.within(uows), user_id=user_id, name=body.name, language=body.language
        )
        return 200, UserOut.of(user)

    return run_idempotent(
        deni, scope=user_id, key=key, route="update_profile", body=body, action=action
    )


@router.post("/me/pin", response_model=EmptyOut)
def change_pin(body: ChangePinIn, user_id: UserId, deni: DeniDep, key: IdempotencyKey) -> object:
    """Change your PIN; the old one must be right (wrong ones count towards the lock). Every
    session ends, this one too (`401 session_ended`): sign in again with the new PIN."""

    def action(uows: UnitOfWorkFactory) -> tuple[int, EmptyOut]:
        users.change_pin(
            deni.within(uows),
            user_id=user_id,
            old_pin=body.old_pin,
            new_pin=body.new_pin,
        )
        return 200, EmptyOut()

    return run_idempotent(
        deni, scope=user_id, key=key, route="change_pin", body=body, action=action
    )


@router.post("/auth/logout", response_model=EmptyOut)
def logout(body: RefreshIn, deni: DeniDep) -> EmptyOut:
    """End this sign-in: its refresh token, and every one swapped from it, stop working. The
    access token in hand lapses within 15 minutes; forget it. The answer is the same for a
    token that was never valid. To end every session at once: `/me/sign-out-everywhere`."""
    users.log_out(deni, refresh_token=body.refresh_token)
    return EmptyOut()


@router.post("/me/sign-out-everywhere", response_model=EmptyOut)
def sign_out_everywhere(user_id: UserId, deni: DeniDep) -> EmptyOut:
    """End every session of yours, on every device, this one included: every access token
    and refresh token stops working at once (`401 session_ended`). Sign in again after."""
    users.sign_out_everywhere(deni, user_id=user_id, channel="api")
    return EmptyOut()


@router.post("/me/phone/code", status_code=202, response_model=MessageOut)
def ask_phone_code(user_id: UserId, source: SourceAddress, deni: DeniDep) -> MessageOut:
    """An account made before numbers were proven (`phone_proven: false`) asks for a code by
    SMS to its number. `409 phone_already_proven` once proven; the limits of
    `/auth/register/code` apply."""
    phone_proof.ask_own_code(
        deni,
        user_id=user_id,
        source=source,
    )
    return MessageOut(message="A code is on its way to your number by SMS.")


@router.post("/me/phone/confirm", response_model=UserOut)
def confirm_phone(body: PhoneConfirmIn, user_id: UserId, deni: DeniDep) -> UserOut:
    """The code from the SMS proves your number: you may lend and borrow. A wrong, late or used
    code is `401 phone_code_invalid` (3 wrong tries void it). Confirming again changes nothing."""
    user = phone_proof.prove_own_phone(
        deni,
        user_id=user_id,
        code=body.code,
    )
    return UserOut.of(user)
