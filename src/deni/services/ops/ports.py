"""What the back office's use cases need: its repositories, the sealer that keeps TOTP seeds
unreadable at rest, and `OpsDeps`, what they run on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from deni.domain.operators import Operator, Proposal, ProposalState
from deni.services.mpesa.ports import MpesaDeps
from deni.services.ports import PinDeps

OPERATORS_LIST_MAX = 200
PROPOSALS_LIST_MAX = 200


@dataclass(frozen=True, slots=True)
class OpsSession:
    token_hash: str
    operator_id: str
    created_at: datetime
    last_seen_at: datetime
    ended_at: datetime | None = None


class OperatorRepository(Protocol):
    def add(self, operator: Operator, now: datetime) -> bool:
        """False when the username is taken."""
        ...

    def get(self, operator_id: str) -> Operator | None: ...

    def get_by_username(self, username: str) -> Operator | None: ...

    def lock_by_username(self, username: str) -> Operator | None:
        """The operator, their row locked until the transaction ends: two sign-ins for one
        operator run one after the other, so each sees the other's failure count and code."""
        ...

    def save(self, operator: Operator, now: datetime) -> None: ...

    def list(self, *, limit: int) -> list[Operator]: ...


class OpsSessionRepository(Protocol):
    def add(self, session: OpsSession) -> None: ...

    def get(self, token_hash: str) -> OpsSession | None: ...

    def touch(self, token_hash: str, now: datetime) -> None: ...

    def end(self, token_hash: str, now: datetime) -> None: ...

    def end_all(self, operator_id: str, now: datetime) -> int: ...


class ProposalRepository(Protocol):
    def add(self, proposal: Proposal) -> bool:
        """False when the same kind and target already has an open proposal."""
        ...

    def lock(self, proposal_id: str) -> Proposal | None: ...

    def get(self, proposal_id: str) -> Proposal | None: ...

    def save(self, proposal: Proposal) -> None:
        """Stores the new state; a proposal no longer open frees its kind and target."""
        ...

    def in_states(self, states: Sequence[ProposalState], *, limit: int) -> list[Proposal]: ...


class SeedSealer(Protocol):
    """Seals a TOTP seed with a key the database does not hold, and opens it again."""

    def seal(self, seed: bytes, *, operator_id: str) -> bytes: ...

    def open(self, sealed: bytes, *, operator_id: str) -> bytes: ...


class OpsDeps(PinDeps, Protocol):
    """What the back office runs on: the password hasher (the PIN hasher, argon2), the seed
    sealer, and M-PESA's dependencies for the proposals that move money through it (None
    when M-PESA is off: those proposals are then refused)."""

    @property
    def sealer(self) -> SeedSealer: ...

    @property
    def mpesa(self) -> MpesaDeps | None: ...
