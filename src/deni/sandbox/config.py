"""Settings of the sandbox: credentials it accepts, shortcodes it owns, money it starts with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

# The public Daraja sandbox passkey for Lipa Na M-PESA Online shortcode 174379.
PUBLIC_SANDBOX_PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"

Clock = Callable[[], datetime]
MsisdnStyle = Literal["masked", "hashed", "plain"]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SandboxConfig:
    consumer_key: str = "sandbox-key"
    consumer_secret: str = "sandbox-secret"  # noqa: S105 (a local fake's well-known default)
    token_lifetime_s: int = 3599
    # Daraja's FAQ: "each request invalidates the previous token". Off only for odd local setups.
    single_active_token: bool = True

    # One organisation owning a paybill (C2B, B2C, balance, status, reversal) and an STK shortcode.
    shortcode: str = "600000"
    stk_shortcode: str = "174379"
    stk_passkey: str = PUBLIC_SANDBOX_PASSKEY
    initiator_name: str = "testapi"
    initiator_password: str = "Sandbox#2026"  # noqa: S105 (a local fake's well-known default)
    organisation_name: str = "Deni Sandbox"

    # Collections (STK, C2B) land in the Working Account; B2C pays out of the Utility Account.
    working_account_cents: int = 0
    utility_account_cents: int = 1_000_000_00
    default_customer_balance_cents: int = 100_000_00
    customer_balance_cents_max: int = 500_000_00

    # Time from a request to its result (the customer typing the PIN, M-PESA doing the work).
    callback_delay_s: float = 0.5
    callback_timeout_s: float = 10.0
    # Daraja never repeats a callback; we only retry when the connection itself failed.
    callback_connect_attempts: int = 3
    pending_callbacks_max: int = 1_000
    callback_records_max: int = 10_000
    transactions_max: int = 100_000
    faults_max: int = 1_000

    c2b_msisdn_style: MsisdnStyle = "masked"
    # Safaricom applies the registered ResponseType when validation takes longer than this.
    c2b_validation_timeout_s: float = 8.0
    # Daraja rejects callback URLs containing words like "mpesa" or "query".
    reject_blocked_url_words: bool = True

    clock: Clock = field(default=system_clock, compare=False)

    def __post_init__(self) -> None:
        assert self.token_lifetime_s > 0
        assert self.callback_delay_s >= 0
        assert self.callback_timeout_s > 0
        assert 1 <= self.callback_connect_attempts <= 5
        assert self.pending_callbacks_max > 0
        assert self.callback_records_max > 0
        assert self.working_account_cents >= 0
        assert self.utility_account_cents >= 0
        assert self.default_customer_balance_cents >= 0
        assert self.shortcode.isdigit()
        assert self.stk_shortcode.isdigit()
