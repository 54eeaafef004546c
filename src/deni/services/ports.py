"""Ports: what the use cases need from the outside world, as Protocols.

Adapters implement them; bootstrap picks real or fake ones. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self

from deni.domain.audit import ChainRow
from deni.domain.ledger import Account, EntryDraft, Hold, HoldState, StoredEntry
from deni.domain.loans import Loan, LoanState, PastRequest
from deni.domain.security import PhoneCode, PinResetCode
from deni.domain.users import User

if TYPE_CHECKING:  # these use the unit of work too; only type checking needs both
    from deni.services.limits import LimitCounters
    from deni.services.lookup_ports import LookupQueries
    from deni.services.mpesa.ports import (
        BalanceReportRepository,
        CallbackInboxRepository,
        ExpectedPaybillRepository,
        MpesaRequestRepository,
        OutboxRepository,
        PaybillPullRepository,
        PaymentClaimRepository,
        PayoutCandidateRepository,
        PreferencesRepository,
        SuspenseRepository,
    )
    from deni.services.ops.ports import (
        OperatorRepository,
        OpsSessionRepository,
        ProposalRepository,
    )
    from deni.services.passkey_ports import PasskeyRepository
    from deni.services.report_ports import ReportQueries

STATEMENT_PAGE_MAX = 100
LIST_PAGE_MAX = 100


class Clock(Protocol):
    def now(self) -> datetime: ...


class PinHasher(Protocol):
    def hash(self, pin: str) -> str: ...

    def verify(self, pin: str, pin_hash: str) -> bool: ...

    def needs_rehash(self, pin_hash: str) -> bool:
        """True when `pin_hash` was made at another cost than today's settings ask for."""
        ...


class AccessTokens(Protocol):
    """Short-lived bearer tokens (JWT in production). Each carries the user's session epoch
    when it was issued; a token from an older epoch is a session that has ended."""

    def issue(self, *, user_id: str, now: datetime, session_epoch: int = 0) -> tuple[str, int]:
        """Returns the token and its lifetime in seconds."""
        ...

    def verify(self, token: str, *, now: datetime) -> str:
        """Returns the user id; raises Unauthorized if the token is bad or expired."""
        ...

    def verify_session(self, token: str, *, now: datetime) -> tuple[str, int]:
        """Returns the user id and the session epoch the token was issued in."""
        ...


@dataclass(frozen=True, slots=True)
class SessionStanding:
    """What a request needs to know of its user: one primary-key read."""

    session_epoch: int
    closed: bool
    support_locked: bool


class SessionGate(Protocol):
    """Read on every authenticated request, outside any unit of work, so it stays cheap."""

    def standing(self, user_id: str) -> SessionStanding | None: ...


class SmsSender(Protocol):
    """Delivers a text to a phone."""

    def send(
        self, *, phone: str, body: str, idempotency_key: str, secret: str | None = None
    ) -> None:
        """`secret`: the part of `body` that is a secret (a code), so whatever keeps the
        message keeps it masked; None for a text with nothing secret in it."""
        ...


@dataclass(frozen=True, slots=True)
class StatementLine:
    posting_id: int
    entry_id: str
    code: str
    cause_type: str
    cause_id: str
    amount_cents: int  # signed from the wallet owner's side: + money in, - money out
    balance_after_cents: int
    memo: str
    created_at: datetime
    # The M-PESA receipt behind the line: a deposit's own, or the B2C receipt that settled a
    # payout hold (that line is the hold; the receipt arrives later on the post entry).
    mpesa_receipt: str | None = None


@dataclass(frozen=True, slots=True)
class RepaymentRecord:
    id: str
    loan_id: str
    entry_id: str
    amount_cents: int
    penalty_cents: int
    fee_cents: int
    principal_cents: int
    channel: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class LoanFigures:
    """What a member's loans in one role add up to, in cents; only loans whose principal moved
    (disbursing, active, repaid, written off) count. Penalties are accrued to the day asked
    for, as the borrower would pay them then; nothing is saved."""

    loans_count: int
    principal_cents: int  # lent (as lender) or borrowed (as borrower)
    repaid_cents: int  # every repayment: principal, fee and penalty
    fees_paid_cents: int  # the part of repaid_cents that was fee or penalty
    outstanding_cents: int  # still owed on open loans (written-off ones are not)
    fees_due_cents: int  # the part of outstanding_cents that is fee or accrued penalty
    overdue_count: int
    overdue_cents: int  # outstanding on the loans past their due date
    written_off_count: int
    written_off_cents: int  # what was still owed when the loans were written off
    counterparties_count: int  # distinct borrowers (as lender) or lenders (as borrower)


NO_FIGURES = LoanFigures(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    id: str
    user_id: str
    kind: str
    language: str
    body: str
    loan_id: str | None
    created_at: datetime
    read_at: datetime | None
    dedupe_key: str | None = None


# The audit repository hands back the domain's own chain rows.
AuditRecord = ChainRow


@dataclass(frozen=True, slots=True)
class IdempotentResponse:
    status: int
    body: str


@dataclass(frozen=True, slots=True)
class RefreshToken:
    id: str
    user_id: str
    family_id: str
    expires_at: datetime
    revoked_at: datetime | None
    replaced_by: str | None = None  # the token a refresh swapped this one for


@dataclass(frozen=True, slots=True)
class LedgerTotals:
    """What `deni ledger check` compares: stored caches against sums of postings."""

    postings_sum_cents: int
    unbalanced_entry_ids: tuple[str, ...]
    mismatched_accounts: tuple[tuple[str, int, int], ...]  # (account, cached, recomputed)
    negative_wallets: tuple[str, ...]
    accounts_checked: int
    entries_checked: int


class UserRepository(Protocol):
    def add(self, user: User) -> None: ...

    def get(self, user_id: str) -> User | None: ...

    def get_by_phone(self, phone: str) -> User | None: ...

    def find(self, *, ids: Collection[str] = (), phones: Collection[str] = ()) -> list[User]:
        """The users with any of these ids or phone numbers, in one read (in no order)."""
        ...

    def contacts(self, user_ids: Collection[str]) -> dict[str, tuple[str, str]]:
        """Name and phone of each of these users, in one read."""
        ...

    def lock(self, user_id: str) -> User | None: ...

    def save(self, user: User, now: datetime) -> None: ...

    def close(self, user_id: str, *, now: datetime) -> None:
        """Erase the person's data beyond the financial records, and close the account (the
        caller locked the user)."""
        ...

    def release_phone(self, user_id: str, *, now: datetime) -> None:
        """The account gives its number up, for the number's proven owner to register it (the
        caller locked the user); everything else of the account stays."""
        ...


@dataclass(frozen=True, slots=True)
class NewEntry:
    """An entry to write, with its accounts' balances right after it."""

    entry_id: str
    draft: EntryDraft
    balances_after: Mapping[str, int]


class LedgerRepository(Protocol):
    def add_account(self, account: Account, now: datetime) -> None: ...

    def get_account(self, account_id: str) -> Account | None: ...

    def lock_accounts(self, account_ids: Sequence[str]) -> dict[str, Account]: ...

    def find_entry(self, idempotency_key: str) -> StoredEntry | None: ...

    def get_entry(self, entry_id: str) -> StoredEntry | None: ...

    def find_reversal(self, entry_id: str) -> StoredEntry | None: ...

    def insert_entries(self, entries: Sequence[NewEntry], *, now: datetime) -> bool:
        """Writes the entries, in order, with their postings and the new balances. False when
        a key is already taken: for a single entry nothing was written; for several, some may
        have been, and the caller must roll back."""
        ...

    def statement(
        self, account_id: str, *, before_posting_id: int | None, limit: int
    ) -> list[StatementLine]: ...

    def add_hold(self, hold: Hold, now: datetime) -> None: ...

    def find_hold(self, idempotency_key: str) -> Hold | None: ...

    def lock_hold(self, hold_id: str) -> Hold | None: ...

    def resolve_hold(
        self, hold_id: str, *, state: HoldState, resolve_entry_id: str, now: datetime
    ) -> None: ...

    def totals(self) -> LedgerTotals: ...

    def count_entries_by_code(self) -> dict[str, int]: ...


class LoanRepository(Protocol):
    def add(self, loan: Loan) -> bool:
        """Inserts the loan; False (nothing written) when its id or its code is taken."""
        ...

    def get(self, loan_id: str) -> Loan | None: ...

    def get_by_code(self, code: str) -> Loan | None: ...

    def lock(self, loan_id: str, *, skip_locked: bool = False) -> Loan | None:
        """The loan, locked. With `skip_locked`, None at once if another transaction holds it."""
        ...

    def settleable_by_credits(
        self, user_ids: Collection[str], *, due_before: date, per_user: int
    ) -> list[tuple[str, str, str]]:
        """(loan id, user id, "overdue" | "waiting") for each of these users: active loans
        they borrowed that fell due before `due_before`, approved loans they lent; at most
        `per_user` of each kind per user, oldest request first."""
        ...

    def save(self, loan: Loan, now: datetime) -> None: ...

    def requests_since(self, borrower_id: str, *, since: datetime, limit: int) -> list[PastRequest]:
        """The borrower's requests made at or after `since`, and any still waiting for an
        answer however old; newest first, at most `limit`."""
        ...

    def list_for(
        self,
        *,
        user_id: str,
        role: str,
        states: Sequence[LoanState],
        limit: int,
        offset: int,
        overdue_on: date | None = None,
        overdue: bool = True,
    ) -> list[Loan]:
        """With `overdue_on` (a date): only loans that are (or, overdue=False, are not) overdue."""
        ...

    def ids_in_state(
        self,
        *,
        states: Sequence[LoanState],
        lender_id: str | None = None,
        borrower_id: str | None = None,
        expires_before: datetime | None = None,
        due_before: date | None = None,
        limit: int,
    ) -> list[str]: ...

    def active_due_before(self, due_before: date, *, after_id: str, limit: int) -> list[str]:
        """Ids of active loans due before `due_before`, in id order after `after_id`."""
        ...

    def count_by_state(self) -> dict[str, int]: ...

    def figures(self, *, user_id: str, role: str, today: date) -> LoanFigures:
        """The totals of the user's loans as `role` ("lender" or "borrower"), summed by the
        database in one statement however many loans there are."""
        ...

    def figures_by_counterparty(
        self, *, user_id: str, role: str, today: date, limit: int, offset: int
    ) -> list[tuple[str, LoanFigures]]:
        """The same, one row per other party (counterparties_count 1), most outstanding first,
        then the largest principal, then by id; a page of at most `limit` rows."""
        ...

    def add_repayment(self, repayment: RepaymentRecord) -> None: ...

    def repayments(self, loan_id: str) -> list[RepaymentRecord]: ...


class NotificationRepository(Protocol):
    def add(self, notification: NotificationRecord) -> None: ...

    def exists(self, dedupe_key: str) -> bool: ...

    def list_for(
        self, user_id: str, *, unread_only: bool, limit: int, offset: int
    ) -> list[NotificationRecord]: ...

    def mark_read(self, user_id: str, notification_ids: Sequence[str], now: datetime) -> int: ...

    def count_unread(self, user_id: str) -> int: ...


class AuditRepository(Protocol):
    def append(
        self, *, at: datetime, actor_id: str, channel: str, command: str, details: str
    ) -> None:
        """Queue a row; it is chained and written when the transaction commits."""
        ...

    def scan(self, *, after_seq: int, limit: int) -> list[AuditRecord]: ...

    def by_actor(self, actor_id: str, *, after_seq: int, limit: int) -> list[AuditRecord]:
        """The rows of the commands this actor made, in chain order."""
        ...

    def head(self) -> tuple[int, str]: ...


class IdempotencyRepository(Protocol):
    def claim(
        self, *, scope: str, key: str, request_hash: str, now: datetime, stale_before: datetime
    ) -> str | None:
        """Reserve a key. None if it was free, or if it was claimed for this same request
        before `stale_before` and never completed (its process died); else the stored hash."""
        ...

    def get_response(self, *, scope: str, key: str) -> IdempotentResponse | None: ...

    def complete(
        self, *, scope: str, key: str, response: IdempotentResponse, now: datetime
    ) -> None: ...

    def release(self, *, scope: str, key: str) -> None: ...

    def prune(self, *, created_before: datetime, limit: int) -> int:
        """Delete up to `limit` keys claimed before `created_before`; how many went."""
        ...


class RefreshTokenRepository(Protocol):
    def add(self, token: RefreshToken, token_hash: str, now: datetime) -> None: ...

    def lock_by_hash(self, token_hash: str) -> RefreshToken | None: ...

    def lock(self, token_id: str) -> RefreshToken | None: ...

    def revoke(self, token_id: str, now: datetime, *, replaced_by: str | None = None) -> None: ...

    def replace(self, token_id: str, *, replaced_by: str) -> None:
        """Point an already spent token at a newer successor."""
        ...

    def revoke_family(self, family_id: str, now: datetime) -> None: ...

    def revoke_all(self, user_id: str, now: datetime) -> None:
        """Every live refresh token of this user: all their sessions end."""
        ...


class PinResetRepository(Protocol):
    def lock(self, user_id: str) -> PinResetCode | None: ...

    def save(self, code: PinResetCode, now: datetime) -> None:
        """Insert or update this user's row."""
        ...

    def forget_expired(self, *, now: datetime, limit: int) -> int:
        """Clear the hash of up to `limit` codes that expired unused; how many."""
        ...


class PhoneCodeRepository(Protocol):
    def lock(self, phone: str) -> PhoneCode | None: ...

    def lock_or_add(self, phone: str, now: datetime) -> PhoneCode:
        """This number's row, made (with no code) if there was none, and locked."""
        ...

    def save(self, code: PhoneCode, now: datetime) -> None:
        """Update this number's row (locked by one of the above)."""
        ...

    def prune(self, *, windows_started_by: datetime, now: datetime, limit: int) -> int:
        """Forget up to `limit` numbers whose hour is over and whose code is spent or late."""
        ...


class UnitOfWork(Protocol):
    """One database transaction. Leaving the block without commit() rolls back."""

    @property
    def users(self) -> UserRepository: ...

    @property
    def ledger(self) -> LedgerRepository: ...

    @property
    def loans(self) -> LoanRepository: ...

    @property
    def notifications(self) -> NotificationRepository: ...

    @property
    def audit(self) -> AuditRepository: ...

    @property
    def idempotency(self) -> IdempotencyRepository: ...

    @property
    def tokens(self) -> RefreshTokenRepository: ...

    @property
    def mpesa_requests(self) -> MpesaRequestRepository: ...

    @property
    def mpesa_inbox(self) -> CallbackInboxRepository: ...

    @property
    def suspense(self) -> SuspenseRepository: ...

    @property
    def paybills(self) -> ExpectedPaybillRepository: ...

    @property
    def claims(self) -> PaymentClaimRepository: ...

    @property
    def pulls(self) -> PaybillPullRepository: ...

    @property
    def mpesa_preferences(self) -> PreferencesRepository: ...

    @property
    def payouts_due(self) -> PayoutCandidateRepository: ...

    @property
    def balance_reports(self) -> BalanceReportRepository: ...

    @property
    def pin_resets(self) -> PinResetRepository: ...

    @property
    def phone_codes(self) -> PhoneCodeRepository: ...

    @property
    def outbox(self) -> OutboxRepository: ...

    @property
    def reports(self) -> ReportQueries: ...

    @property
    def operators(self) -> OperatorRepository: ...

    @property
    def ops_sessions(self) -> OpsSessionRepository: ...

    @property
    def proposals(self) -> ProposalRepository: ...

    @property
    def passkeys(self) -> PasskeyRepository:
        """Members' passkeys and the challenges their ceremonies answer (passkey_ports.py)."""
        ...

    @property
    def lookup(self) -> LookupQueries:
        """An operator's bounded reads across the tables (services/lookup.py)."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...

    def read_only(self) -> UnitOfWork:
        """A transaction that only reads: it never waits for writers on SQLite."""
        ...


class Deps(Protocol):
    """What a use case runs on, its one positional argument: the factory it opens its units of
    work from, and the clock. Bootstrap's `Deni` is one (and `Deni.within(...)` the same over
    the savepoints of one API command); so are `MpesaDeps` and the tests' worlds."""

    @property
    def uow(self) -> UnitOfWorkFactory: ...

    @property
    def clock(self) -> Clock: ...


class PinDeps(Deps, Protocol):
    """What a use case that checks or sets a PIN runs on."""

    @property
    def hasher(self) -> PinHasher: ...


class SessionDeps(PinDeps, Protocol):
    """What signing in runs on: the access tokens it issues and how long a refresh token lives."""

    @property
    def tokens(self) -> AccessTokens: ...

    @property
    def refresh_ttl_s(self) -> int: ...


class CodeDeps(PinDeps, Protocol):
    """What sending a code by SMS runs on: the sender, the abuse limits' counters, and the
    pepper that keys the codes' digests."""

    @property
    def sms(self) -> SmsSender: ...

    @property
    def limit_counters(self) -> LimitCounters: ...

    @property
    def pepper(self) -> str: ...


class StorageBusy(Exception):
    """The database could not take the transaction now (lock wait, deadlock); retry later."""


# --- USSD sessions, M-PESA requests queued by channels, SMS delivery ---


class SessionStore(Protocol):
    """Short-lived text values (USSD sessions, resume snapshots) that lapse `ttl_s` after a put.

    `now` comes from the injected clock, so every store expires values the same way in tests.
    A USSD hop reads what it needs with one `get_many` and writes what changed with one
    `write` (each one round trip on Redis).
    """

    def get(self, key: str, *, now: datetime) -> str | None: ...

    def put(self, key: str, value: str, *, ttl_s: int, now: datetime) -> None: ...

    def delete(self, key: str) -> None: ...

    def get_many(self, keys: Sequence[str], *, now: datetime) -> list[str | None]:
        """The values of `keys` (at most 16), in order; None where missing or lapsed."""
        ...

    def write(self, changes: Mapping[str, tuple[str, int] | None], *, now: datetime) -> None:
        """Put each key's (value, ttl_s), or delete it where the change is None."""
        ...

    def increment(self, key: str, *, ttl_s: int, now: datetime) -> int:
        """Add one to the counter `key` and return its new value, in one atomic step (two
        processes counting at once both count). A counter that is missing or has lapsed
        starts at 1 and lapses `ttl_s` later; counting does not extend it. A counter key is
        only ever incremented, never read with `get`."""
        ...


class MpesaRequests(Protocol):
    """Money movements through M-PESA that a channel asks for. Recording only, inside the
    caller's unit of work (an outbox row); the STK push or B2C payout happens later, once.
    A repeated `idempotency_key` records nothing new."""

    def request_top_up(
        self,
        uow: UnitOfWork,
        *,
        user_id: str,
        amount_cents: int,
        idempotency_key: str,
        now: datetime,
    ) -> None: ...

    def request_withdrawal(
        self,
        uow: UnitOfWork,
        *,
        user_id: str,
        amount_cents: int,
        idempotency_key: str,
        now: datetime,
    ) -> None: ...

    def request_stk_repayment(
        self,
        uow: UnitOfWork,
        *,
        user_id: str,
        loan_id: str,
        amount_cents: int,
        idempotency_key: str,
        now: datetime,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class PendingSms:
    notification_id: str
    phone: str
    body: str
    attempts: int  # earlier attempts, before this one


class SmsQueue(Protocol):
    """Notifications waiting for their SMS. A claim is a lease: a crashed sender's claim lapses."""

    def claim_due(self, *, now: datetime, limit: int, lease_s: int) -> list[PendingSms]: ...

    def mark_sent(self, notification_id: str, *, now: datetime) -> None: ...

    def mark_failed(
        self, notification_id: str, *, now: datetime, error: str, retry_at: datetime | None
    ) -> None:
        """`retry_at` None: give up for good."""
        ...


class SmsNotSent(Exception):
    """The SMS gateway refused or could not be reached. `permanent`: retrying cannot help."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent
