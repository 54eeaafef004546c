"""Which SQL statements one ledger transfer sends, counted with SQLAlchemy engine events."""

from __future__ import annotations

import random
import re
from collections import Counter
from typing import Any

from sqlalchemy import event

from benchmarks.transfers import transfer_once
from deni.bootstrap import Deni, database_engine

_FROM = re.compile(r"\bFROM\s+(\w+)", re.IGNORECASE)
_INTO = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)", re.IGNORECASE)
_UPDATE = re.compile(r"^\s*UPDATE\s+(\w+)", re.IGNORECASE)


def shape(statement: str, *, executemany: bool) -> str:
    """A short name for a statement: verb, table, and whether it locks rows."""
    verb = statement.split(None, 1)[0].upper()
    match = _INTO.match(statement) or _UPDATE.match(statement) or _FROM.search(statement)
    name = f"{verb} {match.group(1) if match else '?'}"
    if "FOR UPDATE" in statement.upper():
        name += " ... FOR UPDATE"
    if executemany:
        name += " (executemany)"
    return name


def statements_per_transfer(
    deni: Deni, wallet_ids: list[str], *, transfers: int
) -> tuple[list[tuple[str, float]], float]:
    """Run `transfers` transfers one after another; return (statement, count per transfer)
    pairs, most frequent first, and pool checkouts per transfer."""
    counts: Counter[str] = Counter()
    checkouts = 0

    def on_execute(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool
    ) -> None:
        counts[shape(statement, executemany=executemany)] += 1

    def on_checkout(*_: Any) -> None:
        nonlocal checkouts
        checkouts += 1

    rng = random.Random(7)  # noqa: S311 (picks wallets, not secrets)
    event.listen(database_engine(deni), "before_cursor_execute", on_execute)
    event.listen(database_engine(deni).pool, "checkout", on_checkout)
    try:
        for _ in range(transfers):
            source, target = rng.sample(wallet_ids, 2)
            transfer_once(deni, source, target, 1)
    finally:
        event.remove(database_engine(deni), "before_cursor_execute", on_execute)
        event.remove(database_engine(deni).pool, "checkout", on_checkout)
    return [(name, n / transfers) for name, n in counts.most_common()], checkouts / transfers
