"""Everything the sandbox remembers: M-PESA balances, requests in flight, completed transactions.

All of it lives in one event loop, so plain objects suffice; nothing here awaits.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from deni.sandbox.config import SandboxConfig

_TOKEN_ALPHABET = string.ascii_letters + string.digits
_TOKEN_LENGTH = 28
_LIVE_TOKENS_MAX = 99


class Kind(Enum):
    STK = "stk"
    C2B = "c2b"
    B2C = "b2c"
    REVERSAL = "reversal"


@dataclass
class Customer:
    phone: str
    balance_cents: int
    first_name: str = "JOHN"
    middle_name: str = ""
    last_name: str = "DOE"
    # False makes B2C answer 2040: the number has no M-PESA account.
    registered: bool = True

    @property
    def full_name(self) -> str:
        return " ".join(n for n in (self.first_name, self.middle_name, self.last_name) if n)

    @property
    def public_name(self) -> str:
        """ "254705912645 - NICHOLAS JOHN SONGOK", as in B2C results."""
        return f"{self.phone} - {self.full_name}"

    def as_json(self) -> dict[str, Any]:
        return {
            "phone": self.phone,
            "balance_cents": self.balance_cents,
            "first_name": self.first_name,
            "middle_name": self.middle_name,
            "last_name": self.last_name,
            "registered": self.registered,
        }


@dataclass
class Organisation:
    shortcode: str
    name: str
    working_cents: int  # collections: STK and C2B payments land here
    utility_cents: int  # the B2C float

    @property
    def public_name(self) -> str:
        return f"{self.shortcode} - {self.name}"

    def as_json(self) -> dict[str, Any]:
        return {
            "shortcode": self.shortcode,
            "name": self.name,
            "working_account_cents": self.working_cents,
            "utility_account_cents": self.utility_cents,
        }


@dataclass
class Transaction:
    """A completed M-PESA transaction: what Transaction Status and Reversal look up."""

    transaction_id: str
    kind: Kind
    amount_cents: int
    phone: str
    debit_party: str
    credit_party: str
    initiated_at: datetime
    completed_at: datetime
    conversation_id: str
    originator_conversation_id: str
    reference: str = ""
    reversed_by: str | None = None
    original_transaction_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "transaction_id": self.transaction_id,
            "kind": self.kind.value,
            "amount_cents": self.amount_cents,
            "phone": self.phone,
            "debit_party": self.debit_party,
            "credit_party": self.credit_party,
            "initiated_at": self.initiated_at.isoformat(),
            "completed_at": self.completed_at.isoformat(),
            "conversation_id": self.conversation_id,
            "originator_conversation_id": self.originator_conversation_id,
            "reference": self.reference,
            "reversed_by": self.reversed_by,
            "original_transaction_id": self.original_transaction_id,
        }


@dataclass
class StkAttempt:
    """One STK push, from request to result; STK Query reads it."""

    merchant_request_id: str
    checkout_request_id: str
    phone: str
    amount_cents: int
    account_reference: str
    result_code: int | str | None = None  # None while the customer is still on the prompt
    result_desc: str = ""
    receipt: str | None = None


@dataclass
class C2bRegistration:
    response_type: str  # "Completed" or "Cancelled": what to do when validation fails to answer
    confirmation_url: str
    validation_url: str


@dataclass
class PullRegistration:
    """A shortcode signed up for Pull Transactions (kept as given: the sandbox never calls it)."""

    nominated_number: str
    callback_url: str


@dataclass
class Token:
    value: str
    expires_at: datetime


@dataclass
class World:
    """The state one reset wipes (tokens and keys survive a reset: see app.py)."""

    config: SandboxConfig
    organisation: Organisation = field(init=False)
    customers: dict[str, Customer] = field(default_factory=dict)
    transactions: dict[str, Transaction] = field(default_factory=dict)
    by_originator_id: dict[str, str] = field(default_factory=dict)
    stk_attempts: dict[str, StkAttempt] = field(default_factory=dict)
    b2c_originator_ids: set[str] = field(default_factory=set)
    registrations: dict[str, C2bRegistration] = field(default_factory=dict)
    pull_registrations: dict[str, PullRegistration] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.organisation = Organisation(
            shortcode=self.config.shortcode,
            name=self.config.organisation_name,
            working_cents=self.config.working_account_cents,
            utility_cents=self.config.utility_account_cents,
        )

    def customer(self, phone: str) -> Customer:
        """Every well-formed number has an M-PESA account, funded with the default balance."""
        found = self.customers.get(phone)
        if found is None:
            found = Customer(phone=phone, balance_cents=self.config.default_customer_balance_cents)
            self.customers[phone] = found
        return found

    def pay_organisation(self, phone: str, amount_cents: int) -> bool:
        """Customer to Working Account (STK, C2B). False when the customer is short."""
        assert amount_cents > 0
        payer = self.customer(phone)
        if payer.balance_cents < amount_cents:
            return False
        payer.balance_cents -= amount_cents
        self.organisation.working_cents += amount_cents
        return True

    def pay_customer_from_utility(self, phone: str, amount_cents: int) -> int:
        """Utility Account to customer (B2C). Returns the M-PESA result code."""
        assert amount_cents > 0
        payee = self.customer(phone)
        if self.organisation.utility_cents < amount_cents:
            return 1
        if payee.balance_cents + amount_cents > self.config.customer_balance_cents_max:
            return 8
        self.organisation.utility_cents -= amount_cents
        payee.balance_cents += amount_cents
        return 0

    def refund_customer_from_working(self, phone: str, amount_cents: int) -> bool:
        """Working Account back to the customer (Reversal). False when collections are short."""
        assert amount_cents > 0
        if self.organisation.working_cents < amount_cents:
            return False
        self.organisation.working_cents -= amount_cents
        self.customer(phone).balance_cents += amount_cents
        return True

    def record(self, transaction: Transaction) -> None:
        assert transaction.transaction_id not in self.transactions
        assert len(self.transactions) < self.config.transactions_max, "transaction log full"
        self.transactions[transaction.transaction_id] = transaction
        self.by_originator_id[transaction.originator_conversation_id] = transaction.transaction_id

    def find(self, transaction_id: str, originator_id: str) -> Transaction | None:
        """By receipt first, then by the OriginatorConversationID the client chose."""
        if transaction_id in self.transactions:
            return self.transactions[transaction_id]
        receipt = self.by_originator_id.get(originator_id)
        return self.transactions.get(receipt) if receipt else None


class TokenDesk:
    """OAuth tokens. Each new token retires the ones before it, as Daraja's FAQ says."""

    def __init__(self, config: SandboxConfig) -> None:
        self._config = config
        self._live: list[Token] = []

    def issue(self, now: datetime) -> Token:
        value = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(_TOKEN_LENGTH))
        token = Token(value, now + timedelta(seconds=self._config.token_lifetime_s))
        if self._config.single_active_token:
            self._live = [token]
        else:
            unexpired = [t for t in self._live if t.expires_at > now]
            self._live = [*unexpired[-_LIVE_TOKENS_MAX:], token]
        return token

    def is_valid(self, value: str, now: datetime) -> bool:
        return any(
            secrets.compare_digest(t.value, value) and now < t.expires_at for t in self._live
        )
