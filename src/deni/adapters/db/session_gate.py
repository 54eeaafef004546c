"""The read every authenticated request makes (services/ports.SessionGate): one SELECT by
primary key, outside any unit of work. No cache: a session ended in one process must be ended
in every other at once, and the read costs a fraction of a millisecond
(benchmarks/session_gate.py)."""

from __future__ import annotations

from sqlalchemy import Engine, bindparam, select

from deni.adapters.db import tables as t
from deni.adapters.db.engine import reading
from deni.services.ports import SessionStanding

_STANDING = select(t.users.c.session_epoch, t.users.c.closed_at, t.users.c.support_locked_at).where(
    t.users.c.id == bindparam("id")
)


class SqlSessionGate:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def standing(self, user_id: str) -> SessionStanding | None:
        with reading(self._engine, one_statement=True) as connection:
            row = connection.execute(_STANDING, {"id": user_id}).first()
        if row is None:
            return None
        return SessionStanding(
            session_epoch=row.session_epoch,
            closed=row.closed_at is not None,
            support_locked=row.support_locked_at is not None,
        )
