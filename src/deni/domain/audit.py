"""The audit log is a hash chain: each row's hash covers its content and the previous hash.

Editing a row breaks its hash; deleting one leaves a gap in the sequence or a chain that no
longer reaches the stored head.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

GENESIS_HASH = "0" * 64


def chain_hash(
    *,
    prev_hash: str,
    seq: int,
    at: datetime,
    actor_id: str,
    channel: str,
    command: str,
    details: str,
) -> str:
    assert len(prev_hash) == 64
    assert seq >= 1
    # A unit separator cannot occur in any field we store, so fields cannot be shifted.
    fields = [prev_hash, str(seq), at.isoformat(), actor_id, channel, command, details]
    return hashlib.sha256("\x1f".join(fields).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainRow:
    seq: int
    at: datetime
    actor_id: str
    channel: str
    command: str
    details: str
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class ChainProblem:
    seq: int
    problem: str


def verify_chain(
    rows: Iterable[ChainRow], *, start_seq: int = 0, start_hash: str = GENESIS_HASH
) -> tuple[list[ChainProblem], int, str]:
    """Check rows in order; returns the problems found and the last (seq, hash) reached."""
    problems: list[ChainProblem] = []
    expected_seq, expected_prev = start_seq + 1, start_hash
    for row in rows:
        if row.seq != expected_seq:
            problems.append(
                ChainProblem(expected_seq, f"rows {expected_seq}..{row.seq - 1} missing")
            )
        if row.prev_hash != expected_prev:
            problems.append(ChainProblem(row.seq, "does not link to the row before it"))
        recomputed = chain_hash(
            prev_hash=row.prev_hash,
            seq=row.seq,
            at=row.at,
            actor_id=row.actor_id,
            channel=row.channel,
            command=row.command,
            details=row.details,
        )
        if recomputed != row.hash:
            problems.append(ChainProblem(row.seq, "content was changed after it was written"))
        expected_seq, expected_prev = row.seq + 1, row.hash
    return problems, expected_seq - 1, expected_prev
