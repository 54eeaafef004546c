"""Rendering a console page: the template, and what every page shows (who is signed in,
what they may do, the form token)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates

from deni.domain.operators import Permission, ProposalKind
from deni.entrypoints.ops.security import session_csrf

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")

KIND_LABELS = {
    ProposalKind.ASSIGN_SUSPENSE: "Assign a suspense payment",
    ProposalKind.REVERSE_PAYMENT: "Reverse an M-PESA payment",
    ProposalKind.RESEND_PAYOUT: "Re-send a payout",
    ProposalKind.FAIL_PAYOUT: "Abandon a payout (money back to the wallet)",
    ProposalKind.PAYOUT_SUCCEEDED: "Mark a payout as paid",
    ProposalKind.ACCEPT_CLAIM: "Credit a disputed payment",
    ProposalKind.REJECT_CLAIM: "Reject a disputed payment",
    ProposalKind.WRITE_OFF: "Write a loan off for its lender",
    ProposalKind.UNLOCK_MEMBER: "Unlock a member locked by support",
}


def page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    operator = getattr(request.state, "operator", None)
    context.update(
        operator=operator,
        csrf=session_csrf(request) if operator is not None else "",
        may={p.value: operator is not None and operator.may(p) for p in Permission},
        kind_labels=KIND_LABELS,
        kes=_kes,
    )
    return templates.TemplateResponse(request, template, context, status_code=status)


def _kes(amount_cents: int | None) -> str:
    if amount_cents is None:
        return "-"
    sign = "-" if amount_cents < 0 else ""
    whole, cents = divmod(abs(amount_cents), 100)
    return f"{sign}KES {whole:,}.{cents:02d}"
