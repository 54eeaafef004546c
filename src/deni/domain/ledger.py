"""Double-entry ledger rules: balanced, immutable entries of signed postings.

A posting's `amount_cents` is positive for a debit and negative for a credit, so every entry
sums to zero. Each account has a normal side: a wallet (what Deni owes a user) is credit-normal,
M-PESA cash is debit-normal. The natural balance is what people call "the balance".
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import Enum

from deni.domain.errors import InsufficientFunds

POSTINGS_PER_ENTRY_MAX = 16


# The cause of every entry that records money M-PESA moved; its cause_id is the receipt.
MPESA_RECEIPT_CAUSE = "mpesa_receipt"


class NormalSide(Enum):
    DEBIT = "debit"
    CREDIT = "credit"


class AccountKind(Enum):
    WALLET = "wallet"
    PLATFORM = "platform"


class PlatformAccount(Enum):
    """Deni's own accounts. The value is the account's fixed id in the ledger."""

    MPESA_PAYBILL = "platform:mpesa_paybill"  # cash collected through the paybill / STK push
    MPESA_B2C_FLOAT = "platform:mpesa_b2c_float"  # cash paid out by B2C
    PAYOUTS_IN_FLIGHT = "platform:payouts_in_flight"  # held for payouts not yet confirmed
    SUSPENSE = "platform:suspense"  # received, matches nothing yet
    FEES = "platform:fees"  # Deni's own income

    @property
    def normal_side(self) -> NormalSide:
        if self in (PlatformAccount.MPESA_PAYBILL, PlatformAccount.MPESA_B2C_FLOAT):
            return NormalSide.DEBIT
        return NormalSide.CREDIT


class EntryCode(Enum):
    """Why money moved. Stored with every entry; reports group by it."""

    DEPOSIT = "deposit"
    TRANSFER = "transfer"
    LOAN_DISBURSEMENT = "loan_disbursement"
    LOAN_REPAYMENT = "loan_repayment"
    PAYOUT_HOLD = "payout_hold"
    PAYOUT_POST = "payout_post"
    PAYOUT_VOID = "payout_void"
    REVERSAL = "reversal"
    # A payment received, sent back to its payer by M-PESA (Daraja's Reversal): the money
    # leaves the paybill. Never reversed itself: M-PESA moved it, no correction can undo that.
    MPESA_REVERSAL = "mpesa_reversal"


def wallet_account_id(user_id: str) -> str:
    return f"wallet:{user_id}"


@dataclass(frozen=True, slots=True)
class Posting:
    account_id: str
    amount_cents: int  # > 0 debit, < 0 credit


@dataclass(frozen=True, slots=True)
class EntryDraft:
    """An entry before it is written; the ledger checks it, then stores it unchanged."""

    idempotency_key: str
    code: EntryCode
    postings: tuple[Posting, ...]
    cause_type: str
    cause_id: str
    reverses_entry_id: str | None = None
    memo: str = ""

    def __post_init__(self) -> None:
        assert self.idempotency_key, "every entry carries an idempotency key"
        assert 2 <= len(self.postings) <= POSTINGS_PER_ENTRY_MAX
        assert all(type(p.amount_cents) is int and p.amount_cents != 0 for p in self.postings)
        assert sum(p.amount_cents for p in self.postings) == 0, "an entry must balance"
        accounts = [p.account_id for p in self.postings]
        assert len(set(accounts)) == len(accounts), "one posting per account per entry"
        assert self.cause_type
        assert self.cause_id

    def content_hash(self) -> str:
        """A digest of everything but the key: same key + same hash is a replay."""
        content = {
            "code": self.code.value,
            "postings": sorted([p.account_id, p.amount_cents] for p in self.postings),
            "cause": [self.cause_type, self.cause_id],
            "reverses": self.reverses_entry_id,
        }
        encoded = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(encoded).hexdigest()


def movement(
    *,
    debit_account_id: str,
    credit_account_id: str,
    amount_cents: int,
) -> tuple[Posting, Posting]:
    """Two postings moving `amount_cents`: out of a wallet is a debit, into a wallet a credit."""
    assert amount_cents > 0
    assert debit_account_id != credit_account_id
    return (
        Posting(debit_account_id, amount_cents),
        Posting(credit_account_id, -amount_cents),
    )


def balance_delta(normal_side: NormalSide, amount_cents: int) -> int:
    """How a posting changes an account's natural balance."""
    return amount_cents if normal_side is NormalSide.DEBIT else -amount_cents


def reversal_postings(postings: tuple[Posting, ...]) -> tuple[Posting, ...]:
    return tuple(Posting(p.account_id, -p.amount_cents) for p in postings)


def require_non_negative(*, account_id: str, balance_cents: int, delta_cents: int) -> int:
    """Refuse a posting that would take a no-overdraft account below zero."""
    balance_after_cents = balance_cents + delta_cents
    if balance_after_cents < 0:
        raise InsufficientFunds(
            "There is not enough money in the wallet for this.",
        )
    assert balance_after_cents >= 0, account_id
    return balance_after_cents


class HoldState(Enum):
    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    kind: AccountKind
    normal_side: NormalSide
    owner_id: str | None
    no_overdraft: bool
    balance_cents: int


@dataclass(frozen=True, slots=True)
class StoredEntry:
    id: str
    idempotency_key: str
    content_hash: str
    code: EntryCode
    postings: tuple[Posting, ...]
    reverses_entry_id: str | None


@dataclass(frozen=True, slots=True)
class Hold:
    id: str
    account_id: str
    amount_cents: int
    state: HoldState
    idempotency_key: str
    hold_entry_id: str
    resolve_entry_id: str | None
