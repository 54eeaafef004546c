"""Small helpers every use case shares: ids, the audit trail and notifications."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime

from deni.domain.errors import NotFound
from deni.domain.users import User
from deni.i18n import render_notification
from deni.ids import new_id
from deni.services.ports import NotificationRecord, UnitOfWork

SYSTEM_ACTOR = "system"
CHANNELS = ("api", "ussd", "sync", "cli", "system", "mpesa", "ops")


def require_user(uow: UnitOfWork, user_id: str, *, lock: bool = False) -> User:
    """The user (locked, if asked), or a `user_not_found` refusal."""
    user = uow.users.lock(user_id) if lock else uow.users.get(user_id)
    if user is None or user.is_closed:
        raise NotFound("No such user.", code="user_not_found")
    return user


def lock_member(uow: UnitOfWork, msisdn: str) -> User | None:
    """The member with this (normalised) number, locked for the caller's transaction; None
    when nobody on Deni has it (a closed account has given its number up)."""
    found = uow.users.get_by_phone(msisdn)
    return uow.users.lock(found.id) if found is not None else None


def require_users(uow: UnitOfWork, *user_ids: str) -> tuple[User, ...]:
    """These users, in the order asked, read together; `user_not_found` if one is missing."""
    found = {user.id: user for user in uow.users.find(ids=user_ids)}
    if len(found) != len(set(user_ids)):
        raise NotFound("No such user.", code="user_not_found")
    return tuple(found[user_id] for user_id in user_ids)


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
