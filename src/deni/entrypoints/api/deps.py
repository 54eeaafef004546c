"""FastAPI dependencies: they only read what bootstrap put on app.state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from deni.bootstrap import Deni
from deni.domain.errors import Unauthorized, ValidationFailed
from deni.entrypoints.gate import client_address
from deni.services import users

IDEMPOTENCY_KEY_CHARS_MAX = 128
_bearer = HTTPBearer(auto_error=False, description="A JWT from /api/v1/auth/login.")


def get_deni(request: Request) -> Deni:
    deni = request.app.state.deni
    assert isinstance(deni, Deni)
    return deni


DeniDep = Annotated[Deni, Depends(get_deni)]


def source_address(request: Request) -> str:
    """Who sent the request, for limits: the peer, or behind a trusted proxy its client."""
    return client_address(request)


SourceAddress = Annotated[str, Depends(source_address)]


def current_user_id(
    deni: DeniDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("Log in first: send 'Authorization: Bearer <token>'.")
    user_id, epoch = deni.tokens.verify_session(credentials.credentials, now=deni.clock.now())
    users.require_live_session(gate=deni.session_gate, user_id=user_id, session_epoch=epoch)
    return user_id


UserId = Annotated[str, Depends(current_user_id)]


def idempotency_key(
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Unique per intended action; a retry with the same key and body "
            "gets the first answer, the same key with another body gets 409.",
        ),
    ] = None,
) -> str:
    if key is None or not key.strip():
        raise ValidationFailed(
            "Send an Idempotency-Key header (a fresh UUID per action).",
            code="idempotency_key_missing",
        )
    if len(key) > IDEMPOTENCY_KEY_CHARS_MAX or not key.isprintable() or not key.isascii():
        raise ValidationFailed(
            f"An Idempotency-Key is at most {IDEMPOTENCY_KEY_CHARS_MAX} printable ASCII chars.",
            code="idempotency_key_invalid",
        )
    return key.strip()


IdempotencyKey = Annotated[str, Depends(idempotency_key)]
