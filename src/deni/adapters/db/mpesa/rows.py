"""What more than one M-PESA repository shares: row mappings, bounds and statements."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Connection,
)
from sqlalchemy.exc import IntegrityError

ERROR_CHARS_MAX = 300


def inserted(connection: Connection, statement: Any) -> bool:
    """Run an INSERT in a savepoint; False when a unique key was already taken."""
    try:
        with connection.begin_nested():
            connection.execute(statement)
    except IntegrityError:
        return False
    return True
