"""SQL for passes of the Pull API."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Connection,
    insert,
    select,
)
from sqlalchemy import update as sql_update

from deni.adapters.db.mpesa import tables as m
from deni.services.mpesa.ports import (
    PaybillPull,
)


class SqlPaybillPullRepository:
    """Passes of the Pull API over the paybill's recent payments."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, pull: PaybillPull) -> None:
        self._connection.execute(insert(m.paybill_pulls).values(**_pull_values(pull)))

    def save(self, pull: PaybillPull) -> None:
        values = _pull_values(pull)
        del values["id"]
        self._connection.execute(
            sql_update(m.paybill_pulls).where(m.paybill_pulls.c.id == pull.id).values(values)
        )

    def last(self, *, finished_only: bool) -> PaybillPull | None:
        c = m.paybill_pulls.c
        query = select(m.paybill_pulls)
        if finished_only:
            query = query.where(c.state == "done").order_by(c.window_end.desc())
        else:
            query = query.order_by(c.started_at.desc())
        row = self._connection.execute(query.limit(1)).first()
        return PaybillPull(**row._asdict()) if row else None


def _pull_values(pull: PaybillPull) -> dict[str, Any]:
    return {
        "id": pull.id,
        "window_start": pull.window_start,
        "window_end": pull.window_end,
        "state": pull.state,
        "rows": pull.rows,
        "recovered": pull.recovered,
        "left_to_stk": pull.left_to_stk,
        "error": pull.error[:200],
        "started_at": pull.started_at,
        "finished_at": pull.finished_at,
    }
