"""What an operator's look-up reads, as a port: bounded reads across the tables, never a write.

The use cases are services/lookup.py; the adapter is adapters/db/lookup.py, reachable from the
unit of work as `uow.lookup` (tests/fakes/lookup.py is its fake). Every method takes a limit;
what it answers never holds a secret: an SMS is read as the gateway kept it (a code masked),
never its sealed text, and no PIN hash or code hash is ever selected.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from deni.domain.audit import ChainRow
from deni.domain.ledger import Hold
from deni.domain.mpesa import MpesaRequest
from deni.domain.users import User

if TYPE_CHECKING:
    from deni.services.mpesa.ports import InboxRow, PaymentClaim, SuspensePayment

LOOKUP_ROWS_MAX = 200  # no single read answers more rows than this
LIKE_ESCAPE = "\\"


def like_fragment(text: str) -> str:
    """`text` for a LIKE pattern, its wildcards (`%`, `_`) and the escape character escaped,
    so they match only themselves (with `ESCAPE '\\'`)."""
    return (
        text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
        .replace("%", LIKE_ESCAPE + "%")
        .replace("_", LIKE_ESCAPE + "_")
    )


@dataclass(frozen=True, slots=True)
class PostingLine:
    posting_id: int
    account_id: str
    amount_cents: int  # + debit, - credit
    balance_after_cents: int  # the account's natural balance right after it


@dataclass(frozen=True, slots=True)
class EntryLine:
    """A journal entry with all its postings, as stored."""

    entry_id: str
    code: str
    cause_type: str
    cause_id: str
    memo: str
    reverses_entry_id: str | None
    created_at: datetime
    postings: tuple[PostingLine, ...]


@dataclass(frozen=True, slots=True)
class NotificationLine:
    id: str
    kind: str
    body: str
    loan_id: str | None
    created_at: datetime
    read_at: datetime | None
    sms_state: str  # pending, sending, sent, failed
    sms_attempts: int
    sms_last_error: str


@dataclass(frozen=True, slots=True)
class SmsLine:
    """A text the (fake, database-backed) SMS gateway kept, as kept: a secret in it masked."""

    id: str
    phone: str
    body: str
    holds_secret: bool
    created_at: datetime


class LookupQueries(Protocol):
    """Read-only, each method bounded by its `limit` (at most LOOKUP_ROWS_MAX)."""

    def users_named(self, fragment: str, *, limit: int) -> list[User]:
        """Users whose name holds `fragment`, ignoring case (ASCII letters; SQLite's lower()
        folds no other), oldest account first."""
        ...

    def requests_of(
        self, *, user_id: str | None = None, loan_id: str | None = None, limit: int
    ) -> list[MpesaRequest]:
        """M-PESA requests of this user, or of this loan; newest first."""
        ...

    def requests_with_receipt(self, receipt: str, *, limit: int) -> list[MpesaRequest]:
        """Requests that M-PESA settled with this receipt; newest first."""
        ...

    def callbacks(self, *, key_prefixes: Sequence[str], limit: int) -> list[InboxRow]:
        """Stored callbacks whose dedupe key begins with one of `key_prefixes`, in the order
        they arrived."""
        ...

    def suspense_payment(self, receipt: str) -> SuspensePayment | None: ...

    def claims_of(self, user_id: str, *, limit: int) -> list[PaymentClaim]:
        """Payment claims whose money would be this user's; newest first."""
        ...

    def entries(
        self,
        *,
        causes: Collection[tuple[str, str]] = (),
        entry_ids: Collection[str] = (),
        limit: int,
    ) -> list[EntryLine]:
        """Entries with one of these (cause type, cause id) pairs or ids, oldest first."""
        ...

    def holds(
        self, *, account_id: str | None = None, hold_ids: Collection[str] = (), limit: int
    ) -> list[Hold]:
        """Holds on this account, or with these ids; newest first."""
        ...

    def notifications_of(self, user_id: str, *, limit: int) -> list[NotificationLine]:
        """Newest first, each with how its SMS went."""
        ...

    def sms_to(self, phone: str, *, limit: int) -> list[SmsLine]:
        """What the database-backed SMS gateway kept for this number, newest first (nothing
        with a real gateway, which keeps no text here)."""
        ...

    def audit_rows(
        self, *, actor_id: str | None = None, mentioning: str | None = None, limit: int
    ) -> list[ChainRow]:
        """Rows this actor made, or whose details hold `mentioning` (an id); newest first."""
        ...
