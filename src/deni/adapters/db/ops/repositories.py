"""SQL for operators, their console sessions and four-eyes proposals."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from deni.adapters.db.mpesa.rows import inserted
from deni.adapters.db.ops import tables as o
from deni.domain.operators import Operator, Proposal, ProposalKind, ProposalState, Role
from deni.services.ops.ports import OpsSession


class SqlOperatorRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, operator: Operator, now: datetime) -> bool:
        return inserted(
            self._connection,
            insert(o.operators).values(
                **_operator_values(operator), created_at=now, updated_at=now
            ),
        )

    def get(self, operator_id: str) -> Operator | None:
        return self._one(o.operators.c.id == operator_id)

    def get_by_username(self, username: str) -> Operator | None:
        return self._one(o.operators.c.username == username)

    def lock_by_username(self, username: str) -> Operator | None:
        row = self._connection.execute(
            select(o.operators).where(o.operators.c.username == username).with_for_update()
        ).first()
        return _operator(row) if row is not None else None

    def save(self, operator: Operator, now: datetime) -> None:
        values = _operator_values(operator)
        del values["id"], values["username"]
        self._connection.execute(
            update(o.operators)
            .where(o.operators.c.id == operator.id)
            .values(**values, updated_at=now)
        )

    def list(self, *, limit: int) -> list[Operator]:
        rows = self._connection.execute(
            select(o.operators).order_by(o.operators.c.username).limit(limit)
        )
        return [_operator(row) for row in rows]

    def _one(self, where: Any) -> Operator | None:
        row = self._connection.execute(select(o.operators).where(where)).first()
        return _operator(row) if row is not None else None


def _operator_values(operator: Operator) -> dict[str, Any]:
    return {
        "id": operator.id,
        "username": operator.username,
        "name": operator.name,
        "role": operator.role.value,
        "password_hash": operator.password_hash,
        "totp_sealed": operator.totp_sealed,
        "totp_last_step": operator.totp_last_step,
        "failed_sign_ins": operator.failed_sign_ins,
        "locked_until": operator.locked_until,
        "disabled_at": operator.disabled_at,
    }


def _operator(row: Row[Any]) -> Operator:
    return Operator(
        id=row.id,
        username=row.username,
        name=row.name,
        role=Role(row.role),
        password_hash=row.password_hash,
        totp_sealed=bytes(row.totp_sealed),
        totp_last_step=row.totp_last_step,
        failed_sign_ins=row.failed_sign_ins,
        locked_until=row.locked_until,
        disabled_at=row.disabled_at,
        created_at=row.created_at,
    )


class SqlOpsSessionRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, session: OpsSession) -> None:
        self._connection.execute(
            insert(o.ops_sessions).values(
                token_hash=session.token_hash,
                operator_id=session.operator_id,
                created_at=session.created_at,
                last_seen_at=session.last_seen_at,
                ended_at=session.ended_at,
            )
        )

    def get(self, token_hash: str) -> OpsSession | None:
        row = self._connection.execute(
            select(o.ops_sessions).where(o.ops_sessions.c.token_hash == token_hash)
        ).first()
        if row is None:
            return None
        return OpsSession(
            token_hash=row.token_hash,
            operator_id=row.operator_id,
            created_at=row.created_at,
            last_seen_at=row.last_seen_at,
            ended_at=row.ended_at,
        )

    def touch(self, token_hash: str, now: datetime) -> None:
        self._connection.execute(
            update(o.ops_sessions)
            .where(
                o.ops_sessions.c.token_hash == token_hash,
                o.ops_sessions.c.ended_at.is_(None),
                o.ops_sessions.c.last_seen_at < now,
            )
            .values(last_seen_at=now)
        )

    def end(self, token_hash: str, now: datetime) -> None:
        self._connection.execute(
            update(o.ops_sessions)
            .where(o.ops_sessions.c.token_hash == token_hash, o.ops_sessions.c.ended_at.is_(None))
            .values(ended_at=now)
        )

    def end_all(self, operator_id: str, now: datetime) -> int:
        result = self._connection.execute(
            update(o.ops_sessions)
            .where(o.ops_sessions.c.operator_id == operator_id, o.ops_sessions.c.ended_at.is_(None))
            .values(ended_at=now)
        )
        return result.rowcount


class SqlProposalRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, proposal: Proposal) -> bool:
        assert proposal.state is ProposalState.OPEN
        return inserted(
            self._connection,
            insert(o.proposals).values(
                id=proposal.id,
                kind=proposal.kind.value,
                target=proposal.target,
                params=json.dumps(proposal.params, sort_keys=True),
                reason=proposal.reason,
                state=proposal.state.value,
                proposed_by=proposal.proposed_by,
                proposed_at=proposal.proposed_at,
                outcome=proposal.outcome,
                open_key=proposal.open_key,
            ),
        )

    def lock(self, proposal_id: str) -> Proposal | None:
        row = self._connection.execute(
            select(o.proposals).where(o.proposals.c.id == proposal_id).with_for_update()
        ).first()
        return _proposal(row) if row is not None else None

    def get(self, proposal_id: str) -> Proposal | None:
        row = self._connection.execute(
            select(o.proposals).where(o.proposals.c.id == proposal_id)
        ).first()
        return _proposal(row) if row is not None else None

    def save(self, proposal: Proposal) -> None:
        still_open = proposal.state in (ProposalState.OPEN, ProposalState.APPROVING)
        self._connection.execute(
            update(o.proposals)
            .where(o.proposals.c.id == proposal.id)
            .values(
                state=proposal.state.value,
                decided_by=proposal.decided_by,
                decided_at=proposal.decided_at,
                outcome=proposal.outcome,
                open_key=proposal.open_key if still_open else None,
            )
        )

    def in_states(self, states: Sequence[ProposalState], *, limit: int) -> list[Proposal]:
        rows = self._connection.execute(
            select(o.proposals)
            .where(o.proposals.c.state.in_([s.value for s in states]))
            .order_by(o.proposals.c.proposed_at.desc(), o.proposals.c.id)
            .limit(limit)
        )
        return [_proposal(row) for row in rows]


def _proposal(row: Row[Any]) -> Proposal:
    return Proposal(
        id=row.id,
        kind=ProposalKind(row.kind),
        target=row.target,
        params=json.loads(row.params),
        reason=row.reason,
        state=ProposalState(row.state),
        proposed_by=row.proposed_by,
        proposed_at=row.proposed_at,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        outcome=row.outcome,
    )
