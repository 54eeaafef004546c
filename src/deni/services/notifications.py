"""A member's notifications: marking them read (the read side is in queries.py)."""

from __future__ import annotations

from collections.abc import Sequence

from deni.services.ports import Deps

IDS_PER_MARK_MAX = 100  # what one API call or one sync mutation may name


def mark_read(deps: Deps, *, user_id: str, notification_ids: Sequence[str]) -> int:
    """Mark these of the member's notifications read; ids that are not theirs are ignored.
    Says how many changed."""
    assert len(notification_ids) <= IDS_PER_MARK_MAX
    with deps.uow() as uow:
        marked = uow.notifications.mark_read(user_id, list(notification_ids), deps.clock.now())
        uow.commit()
    return marked
