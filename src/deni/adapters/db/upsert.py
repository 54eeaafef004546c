"""INSERT ... ON CONFLICT DO NOTHING on both dialects: one statement, no savepoint."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def insert_or_nothing(
    connection: Connection,
    table: Table,
    values: Mapping[str, Any],
    *,
    conflict_columns: Sequence[str],
) -> Any:
    """The insert, doing nothing when a row with the same `conflict_columns` exists.

    Add `.returning(...)` to learn whether it inserted: a conflict returns no row.
    """
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(**values)
    return statement.on_conflict_do_nothing(index_elements=list(conflict_columns))
