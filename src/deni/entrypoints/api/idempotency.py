"""Idempotency-Key handling: the same key and body get the stored answer, another body 409.

The key is claimed, the command run and its answer stored in one transaction: a request whose
process dies mid-command leaves nothing, and a second request with the same key waits for the
first to finish, then gets its answer. Only successful answers are stored: a refused command
releases the key, so a retry may try again. (A claim without an answer, written by an older
version that claimed in its own transaction, goes stale after CLAIM_STALE_AFTER.)

The body's fingerprint leaves secret fields out (a PIN, a code; domain/secrecy.py) and is an
HMAC under a key derived from the PIN pepper, so a copy of the database says nothing about a
PIN (docs/adr/0002-idempotency.md). Rows are kept for services/idempotency.ANSWER_RETENTION,
then housekeeping prunes them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta

from fastapi.responses import Response
from pydantic import BaseModel

from deni.bootstrap import Deni, savepoints
from deni.domain.errors import Conflict, DomainError, IdempotencyConflict
from deni.domain.secrecy import canonical_json, derive_key, keyed_digest, without_secrets
from deni.services.ports import IdempotentResponse, UnitOfWorkFactory

REPLAY_HEADER = "Idempotent-Replayed"
# A claim this old without an answer belongs to a process that died mid-command: the same
# request may run again (the ledger's own keys stop money moving twice). Far above any
# command's run time, so a live command is never taken over.
CLAIM_STALE_AFTER = timedelta(minutes=2)
FINGERPRINT_KEY_LABEL = "idempotency-fingerprint"


def run_idempotent(
    deni: Deni,
    *,
    scope: str,
    key: str,
    route: str,
    body: BaseModel | None,
    action: Callable[[UnitOfWorkFactory], tuple[int, BaseModel]],
) -> Response:
    """Run `action` once per key, in one transaction with the key and the stored answer.

    `action` gets the units of work to use: savepoints and reads inside that transaction.
    """
    request_hash = request_fingerprint(deni.settings.pin_pepper, route, body)
    now = deni.clock.now()
    with deni.uow() as uow:
        stored_hash = uow.idempotency.claim(
            scope=scope,
            key=key,
            request_hash=request_hash,
            now=now,
            stale_before=now - CLAIM_STALE_AFTER,
        )
        if stored_hash is not None:
            return _replay(
                stored_hash, request_hash, uow.idempotency.get_response(scope=scope, key=key)
            )
        refusal: DomainError | None = None
        try:
            status, model = action(savepoints(uow))
        except DomainError as error:
            refusal = error
        if refusal is not None:
            # What the command committed before refusing stays (a wrong PIN counts); the key
            # does not, so a retry may try again.
            uow.idempotency.release(scope=scope, key=key)
            uow.commit()
            raise refusal
        content = model.model_dump_json()
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


def request_fingerprint(pepper: str, route: str, body: BaseModel | None) -> str:
    """What tells one request from another under the same key: the route and the body without
    its secret fields, as an HMAC. A retry that differs only in its PIN replays the first
    answer: nothing new happens, and the answer does not depend on the PIN, so it tells the
    caller nothing about it."""
    data = without_secrets(body.model_dump(mode="json")) if body is not None else None
    return keyed_digest(_fingerprint_key(pepper), route, canonical_json(data))


@functools.lru_cache(maxsize=4)
def _fingerprint_key(pepper: str) -> bytes:
    return derive_key(pepper, FINGERPRINT_KEY_LABEL)
