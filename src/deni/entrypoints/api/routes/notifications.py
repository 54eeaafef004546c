"""Notifications: what happened that you should know about, in your language."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from deni.entrypoints.api.deps import DeniDep, IdempotencyKey, UserId
from deni.entrypoints.api.idempotency import run_idempotent
from deni.entrypoints.api.json_body import TextJsonRoute
from deni.entrypoints.api.schemas import (
    EmptyIn,
    MarkAllReadOut,
    MarkReadIn,
    MarkReadOut,
    NotificationListOut,
    NotificationOut,
)
from deni.services import notifications, queries
from deni.services.ports import LIST_PAGE_MAX, UnitOfWorkFactory

router = APIRouter(tags=["notifications"], route_class=TextJsonRoute)


@router.get("/notifications", response_model=NotificationListOut)
def list_notifications(
    user_id: UserId,
    deni: DeniDep,
    unread_only: bool = False,
    limit: Annotated[int, Query(ge=1, le=LIST_PAGE_MAX)] = 20,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> NotificationListOut:
    """Newest first, a page at a time: `next_offset` asks for the next page (null on the last);
    `unread_count` counts all your unread notifications."""
    page = queries.notification_page(
        deni, user_id=user_id, unread_only=unread_only, limit=limit, offset=offset
    )
    return NotificationListOut(
        notifications=[NotificationOut.of(r) for r in page.notifications],
        unread_count=page.unread_count,
        next_offset=page.next_offset,
    )


@router.post("/notifications/read", response_model=MarkReadOut)
def mark_read(body: MarkReadIn, user_id: UserId, deni: DeniDep, key: IdempotencyKey) -> object:
    """Mark your notifications read. Ids that are not yours are ignored."""

    def action(uows: UnitOfWorkFactory) -> tuple[int, MarkReadOut]:
        marked = notifications.mark_read(
            deni.within(uows), user_id=user_id, notification_ids=body.ids
        )
        return 200, MarkReadOut(marked=marked)

    return run_idempotent(deni, scope=user_id, key=key, route="mark_read", body=body, action=action)


@router.post("/notifications/read-all", response_model=MarkAllReadOut)
def mark_all_read(
    user_id: UserId, deni: DeniDep, key: IdempotencyKey, body: EmptyIn | None = None
) -> object:
    """Mark all your notifications read (only yours: there is nothing to name)."""

    def action(uows: UnitOfWorkFactory) -> tuple[int, MarkAllReadOut]:
        marked, left = notifications.mark_all_read(deni.within(uows), user_id=user_id)
        return 200, MarkAllReadOut(marked=marked, unread_count=left)

    # No body and an empty object are the same request (the same Idempotency-Key replays).
    return run_idempotent(
        deni,
        scope=user_id,
        key=key,
        route="mark_all_read",
        body=body or EmptyIn(),
        action=action,
    )
