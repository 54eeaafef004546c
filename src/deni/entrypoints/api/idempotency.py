"""Idempotency-Key handling: the same key and body get the stored answer, another body 409.

The key is claimed in its own short transaction before the command runs. Only successful
answers are stored: a failed command wrote nothing, so a retry with the same key may try again.
A claim left by a process that died mid-command goes stale after CLAIM_STALE_AFTER.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta

from fastapi.responses import Response
from pydantic import BaseModel

from deni.bootstrap import Deni
from deni.domain.errors import Conflict, IdempotencyConflict
from deni.services.ports import IdempotentResponse

REPLAY_HEADER = "Idempotent-Replayed"
# A claim this old without an answer belongs to a process that died mid-command: the same
# request may run again (the ledger's own keys stop money moving twice). Far above any
# command's run time, so a live command is never taken over.
CLAIM_STALE_AFTER = timedelta(minutes=2)


def run_idempotent(
    deni: Deni,
    *,
    scope: str,
    key: str,
    route: str,
    body: BaseModel | None,
    action: Callable[[], tuple[int, BaseModel]],
) -> Response:
    request_hash = _request_hash(route, body)
    now = deni.clock.now()
    with deni.uow() as uow:
        stored_hash = uow.idempotency.claim(
            scope=scope,
            key=key,
            request_hash=request_hash,
            now=now,
            stale_before=now - CLAIM_STALE_AFTER,
        )
        stored = uow.idempotency.get_response(scope=scope, key=key) if stored_hash else None
        uow.commit()
    if stored_hash is not None:
        return _replay(stored_hash, request_hash, stored)
    try:
        status, model = action()
    except BaseException:
        with deni.uow() as uow:
            uow.idempotency.release(scope=scope, key=key)
            uow.commit()
        raise
    content = model.model_dump_json()
    with deni.uow() as uow:
        uow.idempotency.complete(
            scope=scope,
            key=key,
            response=IdempotentResponse(status, content),
            now=deni.clock.now(),
        )
        uow.commit()
    return Response(content=content, status_code=status, media_type="application/json")


def _replay(stored_hash: str, request_hash: str, stored: IdempotentResponse | None) -> Response:
    if stored_hash != request_hash:
        raise IdempotencyConflict("This Idempotency-Key was used with a different request.")
    if stored is None:
        raise Conflict(
            "A request with this Idempotency-Key is still being processed.",
            code="request_in_progress",
        )
    return Response(
        content=stored.body,
        status_code=stored.status,
        media_type="application/json",
        headers={REPLAY_HEADER: "true"},
    )


def _request_hash(route: str, body: BaseModel | None) -> str:
    payload = route + "\n" + (body.model_dump_json() if body is not None else "")
    return hashlib.sha256(payload.encode()).hexdigest()
