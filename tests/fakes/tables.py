"""The fake database's tables: plain containers of values nobody changes in place.

Every repository stores a copy and hands out copies (domain users, loans, codes, M-PESA
requests and claims are mutable dataclasses), so a snapshot of the tables only has to copy the
containers, not the rows.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from datetime import datetime

from deni.domain.audit import GENESIS_HASH, ChainRow
from deni.domain.ledger import Account, Hold, StoredEntry
from deni.domain.loans import Loan
from deni.domain.mpesa import MpesaRequest, RequestEvent
from deni.domain.operators import Operator, Proposal
from deni.domain.passkeys import Challenge, Passkey
from deni.domain.security import PhoneCode, PinResetCode
from deni.domain.users import User
from deni.services.mpesa.ports import (
    BalanceReport,
    ExpectedPaybill,
    InboxRow,
    MpesaPreferences,
    OutboxMessage,
    PaybillPull,
    PaymentClaim,
    SuspensePayment,
)
from deni.services.ops.ports import OpsSession
from deni.services.ports import (
    IdempotentResponse,
    NotificationRecord,
    RefreshToken,
    RepaymentRecord,
)


class ConstraintViolated(Exception):
    """What the database refuses whatever the code asks: a unique key taken, a CHECK broken.
    The SQL repositories raise the driver's IntegrityError there."""


@dataclass(frozen=True, slots=True)
class EntryRow:
    entry: StoredEntry
    cause_type: str
    cause_id: str
    memo: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PostingRow:
    id: int
    entry_id: str
    account_id: str
    amount_cents: int
    balance_after_cents: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class IdempotencyRow:
    request_hash: str
    state: str  # "in_progress" | "done"
    created_at: datetime
    updated_at: datetime
    response: IdempotentResponse | None = None


@dataclass(frozen=True, slots=True)
class TokenRow:
    token: RefreshToken
    token_hash: str


@dataclass(frozen=True, slots=True)
class OutboxRow:
    message: OutboxMessage
    claimed_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class PreferencesRow:
    preferences: MpesaPreferences
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SmsOutboxRow:
    """A text the fake SMS gateway kept, as adapters/sms.py's DatabaseSmsOutbox keeps it: a
    secret masked in `body`, the whole text sealed (here: kept aside) for the handset."""

    id: str
    idempotency_key: str
    phone: str
    body: str
    holds_secret: bool
    created_at: datetime
    sealed_body: str | None = None


@dataclass(slots=True)
class Tables:
    users: dict[str, User] = field(default_factory=dict)
    accounts: dict[str, Account] = field(default_factory=dict)
    postings_count: dict[str, int] = field(default_factory=dict)  # by account
    entries: dict[str, EntryRow] = field(default_factory=dict)  # by id, in insertion order
    postings: list[PostingRow] = field(default_factory=list)  # ids ascending
    holds: dict[str, Hold] = field(default_factory=dict)
    loans: dict[str, Loan] = field(default_factory=dict)
    repayments: dict[str, RepaymentRecord] = field(default_factory=dict)
    notifications: dict[str, NotificationRecord] = field(default_factory=dict)
    audit_log: list[ChainRow] = field(default_factory=list)
    audit_head: tuple[int, str] = (0, GENESIS_HASH)
    idempotency: dict[tuple[str, str], IdempotencyRow] = field(default_factory=dict)
    tokens: dict[str, TokenRow] = field(default_factory=dict)
    pin_resets: dict[str, PinResetCode] = field(default_factory=dict)
    phone_codes: dict[str, PhoneCode] = field(default_factory=dict)
    # M-PESA: requests by id and their evidence in insertion order, the rest by primary key.
    mpesa_requests: dict[str, MpesaRequest] = field(default_factory=dict)
    mpesa_events: list[RequestEvent] = field(default_factory=list)
    inbox: dict[int, InboxRow] = field(default_factory=dict)
    outbox: dict[str, OutboxRow] = field(default_factory=dict)
    suspense: dict[str, SuspensePayment] = field(default_factory=dict)
    paybills: dict[str, ExpectedPaybill] = field(default_factory=dict)
    claims: dict[str, PaymentClaim] = field(default_factory=dict)
    pulls: dict[str, PaybillPull] = field(default_factory=dict)
    mpesa_preferences: dict[str, PreferencesRow] = field(default_factory=dict)
    balance_reports: dict[str, BalanceReport] = field(default_factory=dict)
    # The back office: operators, console sessions by token hash, proposals by id.
    operators: dict[str, Operator] = field(default_factory=dict)
    ops_sessions: dict[str, OpsSession] = field(default_factory=dict)
    proposals: dict[str, Proposal] = field(default_factory=dict)
    sms_outbox: list[SmsOutboxRow] = field(default_factory=list)  # oldest first
    # Passkeys by id, and the open challenges of their ceremonies by id.
    passkeys: dict[str, Passkey] = field(default_factory=dict)
    passkey_challenges: dict[str, Challenge] = field(default_factory=dict)

    def copy(self) -> Tables:
        """The same rows in new containers: changing one copy's tables leaves the other's."""
        copied = Tables()
        for f in fields(self):
            setattr(copied, f.name, copy.copy(getattr(self, f.name)))
        return copied
