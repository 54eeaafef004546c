"""Small helpers every use case shares: ids, the audit trail and notifications."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime

from deni.domain.users import User
from deni.i18n import render_notification
from deni.services.ports import NotificationRecord, UnitOfWork

SYSTEM_ACTOR = "system"
CHANNELS = ("api", "ussd", "sync", "cli", "system", "mpesa")


def new_id() -> str:
    return str(uuid.uuid4())


def audit(
    uow: UnitOfWork,
    *,
    actor_id: str,
    channel: str,
    command: str,
    details: Mapping[str, object],
    now: datetime,
) -> None:
    """Append one row to the hash-chained audit log, in the command's own transaction."""
    assert channel in CHANNELS, channel
    encoded = json.dumps(details, sort_keys=True, separators=(",", ":"), default=str)
    uow.audit.append(at=now, actor_id=actor_id, channel=channel, command=command, details=encoded)


def notify(
    uow: UnitOfWork,
    *,
    user: User,
    kind: str,
    params: Mapping[str, object],
    now: datetime,
    loan_id: str | None = None,
    dedupe_key: str | None = None,
) -> None:
    """Store a notification for `user`, rendered in their language at the time of the event."""
    body = render_notification(kind, user.language, params)
    uow.notifications.add(
        NotificationRecord(
            id=new_id(),
            user_id=user.id,
            kind=kind,
            language=user.language,
            body=body,
            loan_id=loan_id,
            created_at=now,
            read_at=None,
            dedupe_key=dedupe_key,
        )
    )
