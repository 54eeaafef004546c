"""A row changed since it was read: the optimistic version check of members and loans."""

from __future__ import annotations

from deni.domain.errors import Conflict


class ConcurrentUpdate(Conflict):
    code = "concurrent_update"
