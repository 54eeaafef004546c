"""Daraja's callbacks: POST /hooks/{token}/{kind}. No words Safaricom refuses in the path.

Each request: the secret path token (else 404, like any unknown path), the optional source-IP
allowlist (else 403), the raw body stored before anything else, then applied once, and 200
`{"ResultCode": 0, "ResultDesc": "Accepted"}` whatever the body held: a bad body is kept as
malformed for the operator, because Daraja would retry or blacklist a URL that answers errors.
While the app runs, bootstrap's inbox writer stores the bodies and its M-PESA worker applies
them (bootstrap/background.py).
"""

from __future__ import annotations

import structlog
from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from deni.bootstrap import Background, Deni
from deni.entrypoints.errors import error_response
from deni.entrypoints.gate import client_address, secret_among, source_allowed
from deni.services.mpesa.callbacks import Received, store_callback, validate_c2b
from deni.services.mpesa.ports import CallbackKind, MpesaDeps
from deni.services.ports import StorageBusy

log = structlog.get_logger(__name__)
ACCEPTED = {"ResultCode": 0, "ResultDesc": "Accepted"}
# Far above any Daraja callback (the parser refuses past 64 KiB); the app's body limit refuses
# a longer body with 413 while it arrives (limits.py), so reading it here is bounded.
BODY_BYTES_MAX = 256 * 1024
_KINDS = frozenset(kind.value for kind in CallbackKind)


async def hook(request: Request) -> JSONResponse:
    """A plain Starlette endpoint: nothing here needs FastAPI's parameter solving, which cost
    about a tenth of the hook's CPU per callback."""
    token, kind = request.path_params["token"], request.path_params["kind"]
    deni = request.app.state.deni
    assert isinstance(deni, Deni)
    if deni.mpesa is None or not secret_among(token, deni.settings.accepted_callback_tokens):
        log.warning("mpesa.hook_bad_token", kind=kind[:40])
        return error_response(404, "not_found", "Not Found")
    if kind not in _KINDS:
        return error_response(404, "not_found", "Not Found")
    if not source_allowed(request, deni.settings.callback_allowed_ips):
        log.warning("mpesa.hook_source_refused", kind=kind)
        return error_response(403, "forbidden", "Forbidden")
    source_ip = client_address(request)
    raw = await request.body()
    background = request.app.state.background
    assert isinstance(background, Background)
    writer = background.inbox_writer
    try:
        if kind == CallbackKind.C2B_VALIDATION or writer is None:
            answer = await run_in_threadpool(_handle, deni, deni.mpesa, kind, raw, source_ip)
        else:  # stored with the others that arrived meanwhile, in one transaction
            await writer.store(Received(kind, raw, source_ip))
            answer = ACCEPTED
    except StorageBusy:
        # Not stored: say so, rather than 200 for a body we would lose.
        return JSONResponse({"ResultCode": 1, "ResultDesc": "Busy"}, status_code=503)
    background.wake_mpesa_worker()  # apply it now, not at the next poll
    return JSONResponse(answer)


class HookRoute(Route):
    """A plain Starlette route that names itself in the scope, as FastAPI's own routes do, so
    /metrics counts callbacks by template ("/hooks/{token}/{kind:path}"), never by the secret
    path. Added to the app's own table (`add_routes`): an included router would rebuild it as a
    plain Route, which names nothing, and every callback would count as "unmatched"."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self
        await super().handle(scope, receive, send)


def add_routes(app: Starlette) -> None:
    app.router.routes.append(
        HookRoute("/hooks/{token}/{kind:path}", hook, methods=["POST"], include_in_schema=False)
    )


def _handle(
    deni: Deni, deps: MpesaDeps, kind: str, body: bytes, source_ip: str
) -> dict[str, object]:
    if kind == CallbackKind.C2B_VALIDATION:
        answer = validate_c2b(
            deps, body=body, source_ip=source_ip, enabled=deni.settings.c2b_validation
        )
        return dict(answer)
    # Stored is what Daraja needs to hear about; the worker applies the row (apply_pending).
    store_callback(deps, kind=kind, body=body, source_ip=source_ip)
    return ACCEPTED
