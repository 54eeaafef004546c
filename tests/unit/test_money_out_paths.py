"""Deni's own ways of moving wallet money take no PIN, so no channel may reach them.

A member's command goes through the use case that proves the PIN (loans.repay_loan,
requests.withdraw, preferences.set_preferences). The system's paths (the due date's
auto-repay, a paid STK repayment, a loan's disbursement, an automatic payout) have names of
their own, and no entry point, nor the sync mutations a device sends, names them. USSD
records a withdrawal through the MpesaRequests port once its hop has proved the PIN
(ussd.confirm_pin).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import deni
from deni.services import loans

SRC = Path(deni.__file__).parent
SYSTEM_ONLY = frozenset({"repay_loan_by_system", "request_payout"})
CHANNEL_CODE = [
    *sorted((SRC / "entrypoints").rglob("*.py")),
    SRC / "services" / "sync" / "mutations.py",
    SRC / "offline" / "sync.py",
]


def _names_used(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.alias):
            found.add(node.name)
    return found


@pytest.mark.parametrize("path", CHANNEL_CODE, ids=lambda p: str(p.relative_to(SRC)))
def test_no_channel_names_a_money_path_without_a_pin(path: Path) -> None:
    assert not _names_used(path) & SYSTEM_ONLY


def test_the_system_repayment_refuses_a_members_channel() -> None:
    for channel in ("api", "sync", "ussd"):
        with pytest.raises(AssertionError):
            loans.repay_loan_by_system(
                None,  # type: ignore[arg-type]  # refused before any use
                borrower_id="b",
                loan_id="l",
                amount_cents=100,
                idempotency_key="k",
                channel=channel,
            )
