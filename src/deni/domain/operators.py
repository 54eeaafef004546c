"""The back office's rules: who operators are, what each role may do, and four-eyes.

Money moved by staff needs two people: one proposes, another approves, and the approval is
what acts. Everything else an operator does acts at once and is audited with their name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from deni.domain.errors import DomainError, ErrorKind, ValidationFailed


class Role(StrEnum):
    SUPPORT = "support"  # members: look up, lock, propose an unlock
    FINANCE = "finance"  # money: suspense, payouts, reversals, write-offs, reports
    ADMIN = "admin"  # everything either may do


class Permission(StrEnum):
    VIEW = "view"  # dashboard, search, member and loan pages
    LOCK_MEMBER = "lock_member"
    UNLOCK_MEMBER = "unlock_member"  # propose or approve
    MONEY = "money"  # propose or approve any of the money proposals
    RETRY_DEAD_LETTER = "retry_dead_letter"
    REPORTS = "reports"
    AUDIT = "audit"  # read the whole audit chain


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.SUPPORT: frozenset({Permission.VIEW, Permission.LOCK_MEMBER, Permission.UNLOCK_MEMBER}),
    Role.FINANCE: frozenset(
        {Permission.VIEW, Permission.MONEY, Permission.RETRY_DEAD_LETTER, Permission.REPORTS}
    ),
    Role.ADMIN: frozenset(Permission),
}


class ProposalKind(StrEnum):
    ASSIGN_SUSPENSE = "assign_suspense"  # target: receipt; params: user_id
    REVERSE_PAYMENT = "reverse_payment"  # target: receipt
    RESEND_PAYOUT = "resend_payout"  # target: M-PESA request id
    FAIL_PAYOUT = "fail_payout"  # target: request id; the held money back to the wallet
    PAYOUT_SUCCEEDED = "payout_succeeded"  # target: request id; params: receipt
    ACCEPT_CLAIM = "accept_claim"  # target: receipt of a disputed payment; credit it
    REJECT_CLAIM = "reject_claim"  # target: receipt; credit nothing
    WRITE_OFF = "write_off"  # target: loan id, on the lender's behalf
    UNLOCK_MEMBER = "unlock_member"  # target: user id, locked by support


KIND_PERMISSION: dict[ProposalKind, Permission] = {
    kind: Permission.UNLOCK_MEMBER if kind is ProposalKind.UNLOCK_MEMBER else Permission.MONEY
    for kind in ProposalKind
}


class ProposalState(StrEnum):
    OPEN = "open"
    APPROVING = "approving"  # approved; its action is running (or stopped mid-way: look)
    DONE = "done"
    FAILED = "failed"  # approved, but the action was refused; nothing moved
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


USERNAME = re.compile(r"^[a-z][a-z0-9_.-]{2,31}$")
PASSWORD_CHARS_MIN = 12
PASSWORD_CHARS_MAX = 128
NAME_CHARS_MAX = 80
REASON_CHARS_MIN = 5
REASON_CHARS_MAX = 500
SIGN_IN_FAILURES_MAX = 5  # then the operator is locked for SIGN_IN_LOCK
SIGN_IN_LOCK = timedelta(minutes=15)
SESSION_IDLE = timedelta(minutes=15)  # short: a console left open closes itself
SESSION_LIFETIME = timedelta(hours=8)  # one shift, whatever the activity
STUCK_AFTER = timedelta(minutes=10)  # far past any action's own time bounds


class NotPermitted(DomainError):
    code = "not_permitted"
    kind = ErrorKind.FORBIDDEN


class FourEyes(DomainError):
    """The operator who proposed cannot approve: money moved by staff needs two people."""

    code = "four_eyes"
    kind = ErrorKind.FORBIDDEN


class SignInFailed(DomainError):
    """One message for a wrong name, password or code, so none of them can be found apart."""

    code = "sign_in_failed"
    kind = ErrorKind.UNAUTHORIZED


class ProposalNotOpen(DomainError):
    code = "proposal_not_open"
    kind = ErrorKind.CONFLICT


@dataclass(frozen=True, slots=True)
class Operator:
    id: str
    username: str
    name: str
    role: Role
    password_hash: str
    totp_sealed: bytes
    totp_last_step: int
    failed_sign_ins: int
    locked_until: datetime | None
    disabled_at: datetime | None
    created_at: datetime

    def may(self, permission: Permission) -> bool:
        return self.disabled_at is None and permission in ROLE_PERMISSIONS[self.role]

    def require(self, permission: Permission) -> None:
        if not self.may(permission):
            raise NotPermitted(f"A {self.role.value} operator may not do this.")

    def is_locked(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until

    def after_failed_sign_in(self, now: datetime) -> Operator:
        failures = self.failed_sign_ins + 1
        if failures < SIGN_IN_FAILURES_MAX:
            return replace(self, failed_sign_ins=failures)
        return replace(self, failed_sign_ins=0, locked_until=now + SIGN_IN_LOCK)

    def after_sign_in(self, totp_step: int) -> Operator:
        assert totp_step > self.totp_last_step, "a code works once"
        return replace(self, failed_sign_ins=0, locked_until=None, totp_last_step=totp_step)


@dataclass(frozen=True, slots=True)
class Proposal:
    id: str
    kind: ProposalKind
    target: str
    params: dict[str, str]
    reason: str
    state: ProposalState
    proposed_by: str
    proposed_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    outcome: str = ""

    @property
    def open_key(self) -> str:
        return f"{self.kind.value}:{self.target}"

    def approve(self, approver: Operator, now: datetime) -> Proposal:
        self._require_open()
        approver.require(KIND_PERMISSION[self.kind])
        if approver.id == self.proposed_by:
            raise FourEyes("You proposed this; another operator must approve it.")
        return replace(self, state=ProposalState.APPROVING, decided_by=approver.id, decided_at=now)

    def reject(self, decider: Operator, now: datetime, *, outcome: str) -> Proposal:
        """The proposer withdraws their own; another operator with the right rejects it."""
        self._require_open()
        if decider.id == self.proposed_by:
            state = ProposalState.WITHDRAWN
        else:
            decider.require(KIND_PERMISSION[self.kind])
            state = ProposalState.REJECTED
        return replace(self, state=state, decided_by=decider.id, decided_at=now, outcome=outcome)

    def finish(self, *, succeeded: bool, outcome: str) -> Proposal:
        assert self.state is ProposalState.APPROVING
        state = ProposalState.DONE if succeeded else ProposalState.FAILED
        return replace(self, state=state, outcome=outcome[:REASON_CHARS_MAX])

    def settle_stuck(self, admin: Operator, now: datetime, *, outcome: str) -> Proposal:
        """An approval whose action never reported back (the process died, the database
        went away) stays `approving` and blocks the same action on the same thing. After
        STUCK_AFTER an admin who looked at the thing itself (did the payout go, is the
        suspense payment assigned?) records what happened, and the block lifts."""
        admin.require(Permission.AUDIT)
        if self.state is not ProposalState.APPROVING:
            raise ProposalNotOpen(f"This proposal is {self.state.value}, not stuck.")
        assert self.decided_at is not None
        if now - self.decided_at < STUCK_AFTER:
            raise ProposalNotOpen("Its action may still be running; look again in a few minutes.")
        return replace(self, state=ProposalState.FAILED, outcome=outcome[:REASON_CHARS_MAX])

    def _require_open(self) -> None:
        if self.state is not ProposalState.OPEN:
            raise ProposalNotOpen(f"This proposal is {self.state.value} already.")


# Who decides, as money decisions record it: a staff console operator (`ops:amina`) or the
# name an operator gives on the server's command line.
ACTOR = re.compile(r"[A-Za-z][A-Za-z0-9._@:-]{0,63}")


def require_actor(name: str) -> str:
    if not ACTOR.fullmatch(name):
        raise ValidationFailed(
            "Say who decides: a name of letters, digits, '.', '_', '@', ':' or '-' (64 at most).",
            code="invalid_operator",
        )
    return name


def require_username(username: str) -> str:
    cleaned = username.strip().lower()
    if not USERNAME.match(cleaned):
        raise ValidationFailed(
            "A username is 3 to 32 characters: a letter, then letters, digits, . _ or -.",
            code="invalid_username",
        )
    return cleaned


def require_password(password: str) -> str:
    if not PASSWORD_CHARS_MIN <= len(password) <= PASSWORD_CHARS_MAX:
        raise ValidationFailed(
            f"A password is {PASSWORD_CHARS_MIN} to {PASSWORD_CHARS_MAX} characters.",
            code="invalid_password",
        )
    return password


def require_reason(reason: str) -> str:
    cleaned = " ".join(reason.split())
    if not REASON_CHARS_MIN <= len(cleaned) <= REASON_CHARS_MAX:
        raise ValidationFailed(
            f"Say why, in {REASON_CHARS_MIN} to {REASON_CHARS_MAX} characters.",
            code="invalid_reason",
        )
    return cleaned


def require_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not 1 <= len(cleaned) <= NAME_CHARS_MAX:
        raise ValidationFailed(f"A name is 1 to {NAME_CHARS_MAX} characters.", code="invalid_name")
    return cleaned
