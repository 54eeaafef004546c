"""Operators: added from the server's shell, signed in with a password and a TOTP code, kept
in short console sessions that end on their own.

A console session is a random token in a cookie; the database keeps only its SHA-256, so a
copy of the table opens nothing. It ends after `SESSION_IDLE` without a request, after
`SESSION_LIFETIME` whatever happens, on sign-out, and when the operator is disabled.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from deni.domain import totp
from deni.domain.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from deni.domain.operators import (
    SESSION_IDLE,
    SESSION_LIFETIME,
    Operator,
    ProposalState,
    Role,
    SignInFailed,
    require_name,
    require_password,
    require_username,
)
from deni.ids import new_id
from deni.services.common import SYSTEM_ACTOR, audit
from deni.services.ops.ports import OPERATORS_LIST_MAX, PROPOSALS_LIST_MAX, OpsDeps, OpsSession
from deni.services.ports import UnitOfWork

TOUCH_EVERY_S = 30  # a session's last-seen time is written at most this often
TOTP_ISSUER = "Deni ops"
SIGN_IN_FAILED = "Wrong username, password or code."
PROPOSER_DISABLED = "Withdrawn: the operator who proposed it was disabled."
# What an operator can read that the audit chain records: members' data, not the dashboard.
READINGS = frozenset({"ops_read_member", "ops_read_loan", "ops_download_report"})


@dataclass(frozen=True, slots=True)
class NewOperator:
    operator: Operator
    totp_seed: bytes  # shown once, to be put in the operator's authenticator app

    @property
    def provisioning_uri(self) -> str:
        return totp.provisioning_uri(
            self.totp_seed, account=self.operator.username, issuer=TOTP_ISSUER
        )


def actor(operator: Operator) -> str:
    """How the audit chain names an operator: their username, which is never reused."""
    return f"ops:{operator.username}"


def add_operator(
    deps: OpsDeps, *, username: str, name: str, role: Role, password: str
) -> NewOperator:
    username = require_username(username)
    name = require_name(name)
    password = require_password(password)
    now = deps.clock.now()
    operator_id = new_id()
    seed = totp.new_seed()
    operator = Operator(
        id=operator_id,
        username=username,
        name=name,
        role=role,
        password_hash=deps.hasher.hash(password),
        totp_sealed=deps.sealer.seal(seed, operator_id=operator_id),
        totp_last_step=0,
        failed_sign_ins=0,
        locked_until=None,
        disabled_at=None,
        created_at=now,
    )
    with deps.uow() as uow:
        if not uow.operators.add(operator, now):
            raise Conflict("That username is taken.", code="username_taken")
        audit(
            uow,
            actor_id=SYSTEM_ACTOR,
            channel="cli",
            command="ops_add_operator",
            details={"operator": username, "role": role.value},
            now=now,
        )
        uow.commit()
    return NewOperator(operator, seed)


def disable_operator(deps: OpsDeps, *, username: str) -> Operator:
    """Off at once: their sessions end, they cannot sign in again, and what they proposed and
    nobody approved yet is withdrawn (nobody is left to answer for it)."""
    now = deps.clock.now()
    with deps.uow() as uow:
        operator = uow.operators.get_by_username(require_username(username))
        if operator is None:
            raise NotFound("No operator has that username.", code="operator_not_found")
        operator = replace(operator, disabled_at=operator.disabled_at or now)
        uow.operators.save(operator, now)
        uow.ops_sessions.end_all(operator.id, now)
        withdrawn = _withdraw_proposals_of(uow, operator, now)
        audit(
            uow,
            actor_id=SYSTEM_ACTOR,
            channel="cli",
            command="ops_disable_operator",
            details={"operator": operator.username, "withdrawn": ",".join(withdrawn)},
            now=now,
        )
        uow.commit()
    return operator


def _withdraw_proposals_of(uow: UnitOfWork, operator: Operator, now: datetime) -> list[str]:
    withdrawn = []
    for open_one in uow.proposals.in_states((ProposalState.OPEN,), limit=PROPOSALS_LIST_MAX):
        proposal = uow.proposals.lock(open_one.id)
        if proposal is None or proposal.proposed_by != operator.id:
            continue
        if proposal.state is ProposalState.OPEN:
            uow.proposals.save(proposal.reject(operator, now, outcome=PROPOSER_DISABLED))
            withdrawn.append(proposal.id)
    return withdrawn


def list_operators(deps: OpsDeps) -> list[Operator]:
    with deps.uow.read_only() as uow:
        return uow.operators.list(limit=OPERATORS_LIST_MAX)


def sign_in(deps: OpsDeps, *, username: str, password: str, code: str) -> tuple[Operator, str]:
    """The operator and a new session's token, or `SignInFailed` whatever was wrong. Wrong
    tries count; `SIGN_IN_FAILURES_MAX` in a row lock the operator for `SIGN_IN_LOCK`. Every
    refusal checks one password hash (a dummy one for an unknown name), so a locked,
    disabled or unknown operator answers no faster than a wrong password."""
    now = deps.clock.now()
    with deps.uow() as uow:
        operator = _operator_named(uow, username)
        if operator is None:
            deps.hasher.verify(password, _DUMMY_HASH.get(deps))  # the same time as a real one
            raise SignInFailed(SIGN_IN_FAILED)
        password_ok = deps.hasher.verify(password, operator.password_hash)  # always: timing
        if operator.disabled_at is not None or operator.is_locked(now):
            raise SignInFailed(SIGN_IN_FAILED)
        seed = deps.sealer.open(operator.totp_sealed, operator_id=operator.id)
        step = totp.matching_step(seed, code.strip(), at=now, last_step=operator.totp_last_step)
        if not password_ok or step is None:
            failed = operator.after_failed_sign_in(now)
            uow.operators.save(failed, now)
            audit(
                uow,
                actor_id=actor(operator),
                channel="ops",
                command="ops_sign_in_failed",
                details={"locked": failed.is_locked(now)},
                now=now,
            )
            uow.commit()
            raise SignInFailed(SIGN_IN_FAILED)
        operator = operator.after_sign_in(step)
        uow.operators.save(operator, now)
        token = secrets.token_urlsafe(32)
        uow.ops_sessions.add(
            OpsSession(
                token_hash=session_hash(token),
                operator_id=operator.id,
                created_at=now,
                last_seen_at=now,
            )
        )
        audit(
            uow, actor_id=actor(operator), channel="ops", command="ops_sign_in", details={}, now=now
        )
        uow.commit()
    return operator, token


def record_reading(
    deps: OpsDeps, operator: Operator, *, command: str, details: Mapping[str, str]
) -> None:
    """An operator read members' data (a member's page, a report): the audit chain says who
    read what and when, as it does for every change."""
    assert command in READINGS, command
    now = deps.clock.now()
    with deps.uow() as uow:
        audit(
            uow, actor_id=actor(operator), channel="ops", command=command, details=details, now=now
        )
        uow.commit()


def session_operator(deps: OpsDeps, *, token: str) -> Operator:
    """The operator a console session belongs to, if it is still alive; `Unauthorized` else."""
    now = deps.clock.now()
    token_hash = session_hash(token)
    with deps.uow.read_only() as uow:
        session = uow.ops_sessions.get(token_hash)
        operator = uow.operators.get(session.operator_id) if session is not None else None
    if session is None or operator is None or not _alive(session, operator, now):
        raise Unauthorized("Your console session has ended; sign in again.", code="session_ended")
    if (now - session.last_seen_at).total_seconds() >= TOUCH_EVERY_S:
        with deps.uow() as uow:
            uow.ops_sessions.touch(token_hash, now)
            uow.commit()
    return operator


def sign_out(deps: OpsDeps, *, token: str) -> None:
    now = deps.clock.now()
    with deps.uow() as uow:
        uow.ops_sessions.end(session_hash(token), now)
        uow.commit()


def session_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _alive(session: OpsSession, operator: Operator, now: datetime) -> bool:
    return (
        session.ended_at is None
        and operator.disabled_at is None
        and now - session.last_seen_at < SESSION_IDLE
        and now - session.created_at < SESSION_LIFETIME
    )


def _operator_named(uow: UnitOfWork, username: str) -> Operator | None:
    """Locked: concurrent sign-ins as one operator queue, so none of them reads a failure
    count or a last code step that another is about to change."""
    try:
        return uow.operators.lock_by_username(require_username(username))
    except ValidationFailed:  # a malformed name is simply nobody
        return None


class _DummyHash:
    """A hash of nothing, made once per hasher, checked when no operator has the name."""

    def __init__(self) -> None:
        self._by_hasher: dict[int, str] = {}

    def get(self, deps: OpsDeps) -> str:
        key = id(deps.hasher)
        if key not in self._by_hasher:
            self._by_hasher[key] = deps.hasher.hash(secrets.token_hex(16))
        return self._by_hasher[key]


_DUMMY_HASH = _DummyHash()
