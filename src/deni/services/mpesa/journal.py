"""What every change to a request leaves behind: a line of its evidence for the operator who
may have to decide it, its audit row, and the outbox message that sends a payout.
"""

from __future__ import annotations

from datetime import datetime

from deni.domain.mpesa import (
    EventKind,
    MpesaRequest,
    RequestEvent,
    RequestKind,
)
from deni.services.common import SYSTEM_ACTOR, audit
from deni.services.outbox import enqueue
from deni.services.ports import UnitOfWork

TOPIC_STK_PUSH = "stk_push"
TOPIC_B2C_SEND = "b2c_send"
TOPIC_REVERSAL_SEND = "reversal_send"
DESC_CHARS_MAX = 200
# The requests that keep evidence: money going out, which an operator may have to decide.
EVIDENCED = frozenset({RequestKind.B2C, RequestKind.REVERSAL})


def enqueue_send(uow: UnitOfWork, request: MpesaRequest, *, now: datetime) -> None:
    """The outbox message that sends a payout's (or a reversal's) next attempt."""
    assert request.kind in EVIDENCED
    reversal = request.kind is RequestKind.REVERSAL
    enqueue(
        uow,
        topic=TOPIC_REVERSAL_SEND if reversal else TOPIC_B2C_SEND,
        payload={"request_id": request.id},
        unique_key=f"{request.kind.value}:{request.id}:{request.attempt + 1}",
        now=now,
    )


def record_event(
    uow: UnitOfWork,
    request: MpesaRequest,
    kind: EventKind,
    detail: str,
    *,
    now: datetime,
    actor: str = "",
) -> None:
    """One line of a payout's evidence (what was sent, what came back), for the operator who
    may have to decide it. Payouts and reversals only: pushes settle themselves."""
    if request.kind in EVIDENCED:
        event = RequestEvent(request.id, request.attempt, kind, detail, now, actor)
        uow.mpesa_requests.add_events([event])


def audit_request(uow: UnitOfWork, request: MpesaRequest, command: str, now: datetime) -> None:
    audit(
        uow,
        actor_id=SYSTEM_ACTOR,
        channel="mpesa",
        command=command,
        details={
            "request_id": request.id,
            "purpose": request.purpose.value,
            "user_id": request.user_id,
            "amount_cents": request.amount_cents,
            "state": request.state.value,
            "receipt": request.receipt,
            **({"original_receipt": request.original_receipt} if request.original_receipt else {}),
        },
        now=now,
    )
