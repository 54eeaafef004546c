"""A person's rights over their data (Data Protection Act 2019, s.26): access, everything Deni
holds about them, read on one consistent snapshot, for them to keep or take elsewhere; and
erasure where the law allows, by closing the account.

What is in it: the profile (never the PIN hash), the wallet with every statement line, every
loan they borrowed or lent with its repayments (the other party's name and phone are part of
the loan they agreed to), their notifications, their M-PESA requests and preferences, their
passkeys (names and dates), and the audit rows of the commands they made. What is not: other
people's data beyond that, and secrets (PIN hash, tokens).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from deni.domain.errors import Conflict, NotFound, ValidationFailed
from deni.domain.ledger import wallet_account_id
from deni.domain.loans import Loan, LoanState
from deni.domain.mpesa import OPEN_STATES, MpesaRequest
from deni.domain.passkeys import Passkey
from deni.domain.users import User, nairobi_today
from deni.services import ledger
from deni.services.common import audit, require_user
from deni.services.mpesa.ports import MpesaPreferences
from deni.services.passkey_ports import PASSKEYS_LIST_MAX
from deni.services.ports import (
    LIST_PAGE_MAX,
    STATEMENT_PAGE_MAX,
    AuditRecord,
    Clock,
    NotificationRecord,
    PinDeps,
    StatementLine,
    UnitOfWork,
)
from deni.services.queries import LoanDetail, loan_details
from deni.services.users import check_pin

# Far beyond what a person makes on Deni; an export past it fails with a clear error rather
# than leave anything out silently.
SECTION_ITEMS_MAX = 50_000
ROLES = ("borrower", "lender")
T = TypeVar("T")


class SnapshotReads(Protocol):
    def snapshot(self) -> UnitOfWork:
        """A read-only transaction on one consistent snapshot."""
        ...


class SnapshotDeps(Protocol):
    """What the export runs on: a factory of snapshot reads (it reads many tables and they
    must agree), and the clock."""

    @property
    def uow(self) -> SnapshotReads: ...

    @property
    def clock(self) -> Clock: ...


@dataclass(frozen=True, slots=True)
class PersonalData:
    exported_at: datetime
    user: User
    balance_cents: int
    statement: list[StatementLine]  # newest first
    loans: list[LoanDetail]  # newest first, both roles
    notifications: list[NotificationRecord]  # newest first
    mpesa_requests: list[MpesaRequest]  # newest first
    mpesa_preferences: MpesaPreferences
    audit: list[AuditRecord]  # oldest first
    passkeys: list[Passkey]  # oldest first


class ExportTooLarge(ValidationFailed):
    def __init__(self, section: str) -> None:
        super().__init__(
            f"More than {SECTION_ITEMS_MAX:,} {section}: ask support for a bulk export.",
            code="export_too_large",
        )


def personal_data(
    deps: SnapshotDeps,
    *,
    user_id: str,
) -> PersonalData:
    now = deps.clock.now()
    with deps.uow.snapshot() as uow:
        user = require_user(uow, user_id)
        account = uow.ledger.get_account(wallet_account_id(user_id))
        assert account is not None, "every user has a wallet"
        return PersonalData(
            exported_at=now,
            user=user,
            balance_cents=account.balance_cents,
            statement=_statement(uow, user_id),
            loans=_loans(uow, user_id, now),
            notifications=_notifications(uow, user_id),
            mpesa_requests=_bounded(
                "M-PESA requests",
                uow.mpesa_requests.in_states(
                    states=[], limit=SECTION_ITEMS_MAX + 1, user_id=user_id
                ),
            ),
            mpesa_preferences=uow.mpesa_preferences.get(user_id),
            audit=_audit(uow, user_id),
            passkeys=uow.passkeys.for_user(user_id, limit=PASSKEYS_LIST_MAX),
        )


def _bounded(section: str, items: list[T]) -> list[T]:
    if len(items) > SECTION_ITEMS_MAX:
        raise ExportTooLarge(section)
    return items


def _every_page(section: str, page_items: int, fetch: Callable[[Sequence[T]], list[T]]) -> list[T]:
    """Pages from `fetch(items so far)` until a short one: all of a section, or a refusal
    past the bound (never a silently shortened export)."""
    items: list[T] = []
    for _ in range(SECTION_ITEMS_MAX // page_items + 1):
        page = fetch(items)
        items.extend(page)
        if len(page) < page_items:
            return _bounded(section, items)
    raise ExportTooLarge(section)


def _statement(uow: UnitOfWork, user_id: str) -> list[StatementLine]:
    wallet = wallet_account_id(user_id)
    return _every_page(
        "statement lines",
        STATEMENT_PAGE_MAX,
        lambda got: uow.ledger.statement(
            wallet,
            before_posting_id=got[-1].posting_id if got else None,
            limit=STATEMENT_PAGE_MAX,
        ),
    )


def _loans(uow: UnitOfWork, user_id: str, now: datetime) -> list[LoanDetail]:
    def role_pages(role: str) -> list[Loan]:
        return _every_page(
            "loans",
            LIST_PAGE_MAX,
            lambda got: uow.loans.list_for(
                user_id=user_id, role=role, states=[], limit=LIST_PAGE_MAX, offset=len(got)
            ),
        )

    loans = _bounded("loans", [loan for role in ROLES for loan in role_pages(role)])
    loans.sort(key=lambda loan: (loan.requested_at, loan.id), reverse=True)
    return loan_details(uow, loans, today=nairobi_today(now))


def _notifications(uow: UnitOfWork, user_id: str) -> list[NotificationRecord]:
    return _every_page(
        "notifications",
        LIST_PAGE_MAX,
        lambda got: uow.notifications.list_for(
            user_id, unread_only=False, limit=LIST_PAGE_MAX, offset=len(got)
        ),
    )


def _audit(uow: UnitOfWork, user_id: str) -> list[AuditRecord]:
    return _every_page(
        "audit rows",
        LIST_PAGE_MAX,
        lambda got: uow.audit.by_actor(
            user_id, after_seq=got[-1].seq if got else 0, limit=LIST_PAGE_MAX
        ),
    )


# A loan in one of these states still binds someone: an account in it cannot close.
OPEN_LOAN_STATES = (LoanState.REQUESTED, LoanState.APPROVED, LoanState.DISBURSING, LoanState.ACTIVE)


def close_account(
    deps: PinDeps,
    *,
    user_id: str,
    pin: str,
    channel: str,
) -> None:
    """Close the account and erase what the law does not make Deni keep
    (adapters/db/erasure.py), once nothing is left in it: no money, no open loan either way,
    no M-PESA movement under way. Asked again for a closed account, it does nothing."""
    now = deps.clock.now()
    with deps.uow() as uow:
        user = uow.users.lock(user_id)
        if user is None:
            raise NotFound("No such user.", code="user_not_found")
        if user.is_closed:
            return
        check_pin(uow, hasher=deps.hasher, user=user, pin=pin, now=now, channel=channel)
        _require_nothing_open(uow, user_id)
        user.end_sessions()
        uow.users.save(user, now)
        uow.users.close(user_id, now=now)
        audit(uow, actor_id=user_id, channel=channel, command="close_account", details={}, now=now)
        uow.commit()


def _require_nothing_open(uow: UnitOfWork, user_id: str) -> None:
    if ledger.wallet_balance_cents(uow, user_id=user_id) != 0:
        raise Conflict("Withdraw what your wallet holds first.", code="wallet_not_empty")
    for role in ROLES:
        if uow.loans.list_for(
            user_id=user_id, role=role, states=OPEN_LOAN_STATES, limit=1, offset=0
        ):
            raise Conflict(
                "A loan you borrowed or lent is still open: repay, decline, cancel or write it "
                "off first.",
                code="open_loans",
            )
    if uow.mpesa_requests.in_states(states=sorted(OPEN_STATES), limit=1, user_id=user_id):
        raise Conflict(
            "An M-PESA payment is still on its way; try again later.", code="mpesa_pending"
        )
