"""Passkeys (docs/passkeys.md): add one with the PIN, list and remove them, sign in with one,
and ask for the challenge that approves one money-out action with one."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field, StrictBool, StrictStr

from deni.bootstrap import Deni
from deni.domain.errors import NotFound
from deni.domain.passkeys import PASSKEY_NAME_CHARS_MAX, MoneyAction, Passkey
from deni.entrypoints.api.contract import refusals
from deni.entrypoints.api.deps import DeniDep, SourceAddress, UserId
from deni.entrypoints.api.json_body import TextJsonRoute
from deni.entrypoints.api.schemas import (
    Cents,
    EmptyOut,
    Id,
    PasskeyAnswerIn,
    SessionOut,
    Strict,
)
from deni.services import limits, passkeys
from deni.services.passkeys import Ceremony, PasskeyProof

router = APIRouter(tags=["passkeys"], route_class=TextJsonRoute)
PASSKEY_ID_CHARS_MAX = 64


class CeremonyOut(BaseModel):
    challenge_id: str
    options: dict[str, Any] = Field(
        description="For the browser: PublicKeyCredential.parseCreationOptionsFromJSON (adding) "
        "or parseRequestOptionsFromJSON (signing in, approving). Good for 2 minutes, once."
    )

    @classmethod
    def of(cls, ceremony: Ceremony) -> CeremonyOut:
        return cls(challenge_id=ceremony.challenge_id, options=ceremony.options)


class PasskeyOut(BaseModel):
    id: str
    name: str
    created_at: datetime
    last_used_at: datetime | None

    @classmethod
    def of(cls, passkey: Passkey) -> PasskeyOut:
        return cls(
            id=passkey.id,
            name=passkey.name,
            created_at=passkey.created_at,
            last_used_at=passkey.last_used_at,
        )


class PasskeyListOut(BaseModel):
    passkeys: list[PasskeyOut]


class AddOptionsIn(Strict):
    pin: StrictStr = Field(
        description="Your PIN: a passkey approves money, so adding one takes it."
    )


class AddPasskeyIn(PasskeyAnswerIn):
    name: StrictStr | None = Field(
        default=None, max_length=100, description=f"At most {PASSKEY_NAME_CHARS_MAX} characters."
    )


class ApprovalIn(Strict):
    """The action a passkey is to approve, as the command will be sent."""

    action: Literal["approve_loan", "repay_loan", "write_off_loan", "withdraw", "set_preferences"]
    loan_id: Id | None = None
    amount_cents: Cents | None = Field(
        default=None,
        description="approve_loan: the principal shown; repay_loan and withdraw: the amount.",
    )
    disburse_to_mpesa: StrictBool | None = None
    auto_payout: StrictBool | None = None


def proof_of(deni: Deni, answer: PasskeyAnswerIn | None) -> PasskeyProof | None:
    """What a money-out command takes from a body's `passkey`."""
    if answer is None:
        return None
    return PasskeyProof(
        challenge_id=answer.challenge_id,
        response=answer.credential,
        webauthn=deni.webauthn,
        rp=deni.relying_party,
    )


def passkey_id_param(passkey_id: Annotated[str, Path()], user_id: UserId) -> str:
    if len(passkey_id) > PASSKEY_ID_CHARS_MAX or "\x00" in passkey_id:
        raise NotFound("You have no such passkey.", code="passkey_not_found")
    return passkey_id


PasskeyId = Annotated[str, Depends(passkey_id_param)]


@router.get("/me/passkeys", response_model=PasskeyListOut)
def list_passkeys(user_id: UserId, deni: DeniDep) -> PasskeyListOut:
    """Your passkeys, oldest first, with when each was added and last used."""
    found = passkeys.list_passkeys(deni, user_id=user_id)
    return PasskeyListOut(passkeys=[PasskeyOut.of(p) for p in found])


@router.post("/me/passkeys/options", response_model=CeremonyOut, responses=refusals(409))
def add_options(body: AddOptionsIn, user_id: UserId, deni: DeniDep) -> CeremonyOut:
    """Step one of adding this phone's fingerprint or face: your PIN (a wrong one counts as
    any wrong PIN does), then the options for the phone's prompt. At most 10 passkeys."""
    return CeremonyOut.of(passkeys.registration_options(deni, user_id=user_id, pin=body.pin))


@router.post(
    "/me/passkeys", status_code=201, response_model=PasskeyOut, responses=refusals(401, 409)
)
def add_passkey(body: AddPasskeyIn, user_id: UserId, deni: DeniDep) -> PasskeyOut:
    """Step two: the phone's answer. Checked (its origin, Deni as relying party, the
    challenge, user verification) and its public key kept; the challenge works once."""
    added = passkeys.add_passkey(
        deni,
        user_id=user_id,
        challenge_id=body.challenge_id,
        response=body.credential,
        name=body.name,
    )
    return PasskeyOut.of(added)


@router.delete("/me/passkeys/{passkey_id}", response_model=EmptyOut)
def remove_passkey(passkey_id: PasskeyId, user_id: UserId, deni: DeniDep) -> EmptyOut:
    """Remove one of your passkeys: it signs in and approves nothing from now on."""
    passkeys.remove_passkey(deni, user_id=user_id, passkey_id=passkey_id)
    return EmptyOut()


@router.post("/me/passkeys/approval", response_model=CeremonyOut, responses=refusals(409, 423))
def approval_options(body: ApprovalIn, user_id: UserId, deni: DeniDep) -> CeremonyOut:
    """A challenge for approving one money-out action with a passkey, bound to the action,
    the loan and the amount: send its answer as `passkey` with that very command, within 2
    minutes. `409 no_passkey` if you have none."""
    ceremony = passkeys.action_options(
        deni,
        user_id=user_id,
        action=MoneyAction(body.action),
        loan_id=body.loan_id,
        amount_cents=body.amount_cents,
        disburse_to_mpesa=body.disburse_to_mpesa,
        auto_payout=body.auto_payout,
    )
    return CeremonyOut.of(ceremony)


@router.post("/auth/passkey/options", response_model=CeremonyOut)
def sign_in_options(deni: DeniDep, source: SourceAddress) -> CeremonyOut:
    """Options for signing in with a passkey: the phone offers the ones it holds for Deni.
    Counts toward the sign-ins from one address (`429`)."""
    _limit(deni, source)
    return CeremonyOut.of(passkeys.sign_in_options(deni))


@router.post("/auth/passkey", response_model=SessionOut, responses=refusals(401, 423))
def sign_in(body: PasskeyAnswerIn, deni: DeniDep, source: SourceAddress) -> SessionOut:
    """Sign in with a passkey instead of the PIN: the same tokens. A passkey that does not
    verify counts as a wrong PIN at sign-in does."""
    _limit(deni, source)
    session = passkeys.sign_in(deni, challenge_id=body.challenge_id, response=body.credential)
    return SessionOut(
        user_id=session.user_id,
        access_token=session.access_token,
        expires_in=session.access_expires_in_s,
        refresh_token=session.refresh_token,
    )


def _limit(deni: Deni, source: str) -> None:
    limits.hit(
        deni.limit_counters,
        limits.LOGIN_PER_SOURCE_HOURLY,
        limits.source_subject(source),
        now=deni.clock.now(),
    )
