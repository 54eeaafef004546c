"""A person's rights over their data (Data Protection Act 2019): GET /api/v1/me/export,
everything Deni holds about them as one JSON file; POST /api/v1/me/close, erasure where the
law allows, by closing the account."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel

from deni.domain.money import format_kes
from deni.entrypoints.api.contract import refusals
from deni.entrypoints.api.deps import DeniDep, UserId
from deni.entrypoints.api.json_body import TextJsonRoute
from deni.entrypoints.api.routes.mpesa import MpesaRequestOut, PreferencesOut
from deni.entrypoints.api.schemas import (
    EmptyOut,
    LoanDetailOut,
    NotificationOut,
    PinIn,
    StatementLineOut,
    UserOut,
)
from deni.services import privacy, push
from deni.services.ports import AuditRecord
from deni.services.push_ports import PushSettings, PushSubscription

router = APIRouter(tags=["auth"], route_class=TextJsonRoute)


class WalletExportOut(BaseModel):
    balance_cents: int
    balance: str
    statement: list[StatementLineOut]


class AuditRowOut(BaseModel):
    seq: int
    at: datetime
    channel: str
    command: str
    details: dict[str, Any]
    hash: str

    @classmethod
    def of(cls, row: AuditRecord) -> AuditRowOut:
        return cls(
            seq=row.seq,
            at=row.at,
            channel=row.channel,
            command=row.command,
            details=json.loads(row.details),
            hash=row.hash,
        )


class PushBrowserOut(BaseModel):
    endpoint: str
    subscribed_at: datetime
    expires_at: datetime | None


class WebPushExportOut(BaseModel):
    kinds: list[str]
    browsers: list[PushBrowserOut]

    @classmethod
    def of(cls, found: tuple[PushSettings, list[PushSubscription]]) -> WebPushExportOut:
        settings, subscriptions = found
        return cls(
            kinds=list(settings.kinds),
            browsers=[
                PushBrowserOut(
                    endpoint=s.endpoint, subscribed_at=s.created_at, expires_at=s.expires_at
                )
                for s in subscriptions
            ],
        )


class PersonalDataOut(BaseModel):
    exported_at: datetime
    user: UserOut
    wallet: WalletExportOut
    loans: list[LoanDetailOut]
    notifications: list[NotificationOut]
    mpesa_requests: list[MpesaRequestOut]
    mpesa_preferences: PreferencesOut
    web_push: WebPushExportOut
    audit: list[AuditRowOut]

    @classmethod
    def of(
        cls,
        data: privacy.PersonalData,
        web_push: tuple[PushSettings, list[PushSubscription]],
    ) -> PersonalDataOut:
        preferences = data.mpesa_preferences
        return cls(
            exported_at=data.exported_at,
            user=UserOut.of(data.user),
            wallet=WalletExportOut(
                balance_cents=data.balance_cents,
                balance=format_kes(data.balance_cents),
                statement=[StatementLineOut.of(line) for line in data.statement],
            ),
            loans=[LoanDetailOut.of_detail(detail) for detail in data.loans],
            notifications=[NotificationOut.of(n) for n in data.notifications],
            mpesa_requests=[MpesaRequestOut.of(r) for r in data.mpesa_requests],
            mpesa_preferences=PreferencesOut(
                disburse_to_mpesa=preferences.disburse_to_mpesa,
                auto_payout=preferences.auto_payout,
            ),
            web_push=WebPushExportOut.of(web_push),
            audit=[AuditRowOut.of(row) for row in data.audit],
        )


def export_file_name(data: privacy.PersonalData) -> str:
    return f"deni-data-{data.exported_at.date().isoformat()}.json"


@router.post("/me/close", response_model=EmptyOut, responses=refusals(409))
def close(body: PinIn, user_id: UserId, deni: DeniDep) -> EmptyOut:
    """Close your account, with your PIN, once it holds nothing: no money, no open loan either
    way, no M-PESA payment under way. Your name, number, PIN and notifications are erased and
    the number is free to register again; loans, payments and the audit log are kept, as the
    law requires of financial records. Export your data first if you want it. Asking again
    changes nothing."""
    privacy.close_account(
        deni,
        user_id=user_id,
        pin=body.pin,
        channel="api",
    )
    return EmptyOut()


@router.get("/me/export", response_model=PersonalDataOut, responses=refusals(422))
def export(user_id: UserId, deni: DeniDep, response: Response) -> PersonalDataOut:
    """Everything Deni holds about you: profile, wallet statement, loans you borrowed or lent
    with their repayments, notifications, M-PESA requests and preferences, the browsers that
    receive your notifications by Web Push and the events you chose, and the record of
    the commands you made. Never your PIN. Read on one consistent snapshot."""
    data = privacy.personal_data(deni, user_id=user_id)
    web_push = push.export_of(deni.push, user_id=user_id)
    response.headers["Content-Disposition"] = f'attachment; filename="{export_file_name(data)}"'
    response.headers["Cache-Control"] = "no-store"
    return PersonalDataOut.of(data, web_push)
