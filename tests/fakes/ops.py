"""In-memory operators, console sessions and proposals: the SQL repositories' behaviour,
unique usernames and one open proposal per kind and target included."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from deni.domain.operators import Operator, Proposal, ProposalState
from deni.services.ops.ports import OpsSession
from tests.fakes.tables import Tables

_STILL_OPEN = (ProposalState.OPEN, ProposalState.APPROVING)


class FakeOperatorRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def add(self, operator: Operator, now: datetime) -> bool:
        taken = any(o.username == operator.username for o in self._t.operators.values())
        if taken or operator.id in self._t.operators:
            return False
        self._t.operators[operator.id] = replace(operator, created_at=now)
        return True

    def get(self, operator_id: str) -> Operator | None:
        return self._t.operators.get(operator_id)

    def get_by_username(self, username: str) -> Operator | None:
        return next((o for o in self._t.operators.values() if o.username == username), None)

    def lock_by_username(self, username: str) -> Operator | None:
        return self.get_by_username(username)  # writers queue on one lock already

    def save(self, operator: Operator, now: datetime) -> None:
        stored = self._t.operators[operator.id]
        self._t.operators[operator.id] = replace(
            operator, username=stored.username, created_at=stored.created_at
        )

    def list(self, *, limit: int) -> list[Operator]:
        return sorted(self._t.operators.values(), key=lambda o: o.username)[:limit]


class FakeOpsSessionRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def add(self, session: OpsSession) -> None:
        assert session.token_hash not in self._t.ops_sessions, "primary key"
        self._t.ops_sessions[session.token_hash] = session

    def get(self, token_hash: str) -> OpsSession | None:
        return self._t.ops_sessions.get(token_hash)

    def touch(self, token_hash: str, now: datetime) -> None:
        session = self._t.ops_sessions.get(token_hash)
        if session is not None and session.ended_at is None and session.last_seen_at < now:
            self._t.ops_sessions[token_hash] = replace(session, last_seen_at=now)

    def end(self, token_hash: str, now: datetime) -> None:
        session = self._t.ops_sessions.get(token_hash)
        if session is not None and session.ended_at is None:
            self._t.ops_sessions[token_hash] = replace(session, ended_at=now)

    def end_all(self, operator_id: str, now: datetime) -> int:
        ended = 0
        for token_hash, session in list(self._t.ops_sessions.items()):
            if session.operator_id == operator_id and session.ended_at is None:
                self._t.ops_sessions[token_hash] = replace(session, ended_at=now)
                ended += 1
        return ended


class FakeProposalRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def add(self, proposal: Proposal) -> bool:
        assert proposal.state is ProposalState.OPEN
        clash = any(
            p.open_key == proposal.open_key and p.state in _STILL_OPEN
            for p in self._t.proposals.values()
        )
        if clash or proposal.id in self._t.proposals:
            return False
        self._t.proposals[proposal.id] = proposal
        return True

    def lock(self, proposal_id: str) -> Proposal | None:
        return self._t.proposals.get(proposal_id)

    def get(self, proposal_id: str) -> Proposal | None:
        return self._t.proposals.get(proposal_id)

    def save(self, proposal: Proposal) -> None:
        assert proposal.id in self._t.proposals
        self._t.proposals[proposal.id] = proposal

    def in_states(self, states: Sequence[ProposalState], *, limit: int) -> list[Proposal]:
        found = [p for p in self._t.proposals.values() if p.state in states]
        found.sort(key=lambda p: (-p.proposed_at.timestamp(), p.id))
        return found[:limit]
