"""A member's notifications: marking them read (the read side is in queries.py)."""

from __future__ import annotations

from collections.abc import Sequence

from deni.services.ports import Deps

IDS_PER_MARK_MAX = 100  # what one API call or one sync mutation may name
MARK_ALL_ROUNDS_MAX = 100  # "mark all read" marks at most this many pages of IDS_PER_MARK_MAX


def mark_read(deps: Deps, *, user_id: str, notification_ids: Sequence[str]) -> int:
    """Mark these of the member's notifications read; ids that are not theirs are ignored.
    Says how many changed."""
    assert len(notification_ids) <= IDS_PER_MARK_MAX
    with deps.uow() as uow:
        marked = uow.notifications.mark_read(user_id, list(notification_ids), deps.clock.now())
        uow.commit()
    return marked


def mark_all_read(deps: Deps, *, user_id: str) -> tuple[int, int]:
    """Mark every unread notification of the member read, in pages of IDS_PER_MARK_MAX (at
    most MARK_ALL_ROUNDS_MAX of them). Says how many changed and how many are still unread
    (only past the bound, or ones that arrived meanwhile)."""
    marked = 0
    now = deps.clock.now()
    with deps.uow() as uow:
        for _ in range(MARK_ALL_ROUNDS_MAX):
            page = uow.notifications.list_for(
                user_id, unread_only=True, limit=IDS_PER_MARK_MAX, offset=0
            )
            if not page:
                break
            done = uow.notifications.mark_read(user_id, [n.id for n in page], now)
            assert done == len(page)  # one transaction: nobody marked them in between
            marked += done
        left = uow.notifications.count_unread(user_id)
        uow.commit()
    return marked, left
