"""What only operators may read in production: the API's description and the metrics.

/docs, /redoc and /openapi.json map every route and field, and /metrics counts requests,
loans and ledger entries; none of it is for the public. In production these paths answer 404,
as an unknown path does, unless the request carries `Authorization: Bearer <DENI_OPS_TOKEN>`
(Prometheus sends it with `authorization: {credentials: ...}`). Without DENI_OPS_TOKEN they are
closed to everyone. Development and test keep them open (create_app adds this gate only in
production). Readiness stays public for load balancers, but in production only the operators
see its details (schema revisions, the worker's heartbeat age).
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from deni.entrypoints.errors import error_response
from deni.entrypoints.gate import secret_matches

OPS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/metrics"})
_BEARER = "bearer "


class OpsGate:
    """A pure ASGI middleware: the operations paths need the ops token, everything else passes."""

    def __init__(self, app: ASGIApp, *, ops_token: str) -> None:
        self.app = app
        self.ops_token = ops_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in OPS_PATHS or self._admitted(scope):
            await self.app(scope, receive, send)
            return
        response = error_response(404, "not_found", "Not Found")
        await response(scope, receive, send)

    def _admitted(self, scope: Scope) -> bool:
        return carries_ops_token(scope["headers"], self.ops_token)


def carries_ops_token(headers: Iterable[tuple[bytes, bytes]], ops_token: str) -> bool:
    """Whether the request's `Authorization: Bearer` is the ops token (never, without one)."""
    for name, value in headers:
        if name == b"authorization":
            text = value.decode("latin-1")
            if text[: len(_BEARER)].lower() != _BEARER:
                return False
            return secret_matches(text[len(_BEARER) :].strip(), ops_token)
    return False
