"""Daraja's callbacks: POST /hooks/{token}/{kind}. No words Safaricom refuses in the path.

Each request: the secret path token (else 404, like any unknown path), the optional source-IP
allowlist (else 403), the raw body stored before anything else, then applied once, and 200
`{"ResultCode": 0, "ResultDesc": "Accepted"}` whatever the body held: a bad body is kept as
malformed for the operator, because Daraja would retry or blacklist a URL that answers errors.
The router's lifespan runs the in-process M-PESA worker when the settings ask for one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from deni.bootstrap import Deni
from deni.entrypoints.api.errors import error_response
from deni.entrypoints.api.inbox_writer import InboxWriter
from deni.entrypoints.gate import client_address, secret_matches, source_allowed
from deni.entrypoints.worker import MpesaWorker
from deni.services.mpesa.callbacks import Received, store_callback, validate_c2b
from deni.services.mpesa.ports import CallbackKind, MpesaDeps
from deni.services.ports import StorageBusy

log = structlog.get_logger(__name__)
ACCEPTED = {"ResultCode": 0, "ResultDesc": "Accepted"}
# Far above any Daraja callback (the parser refuses past 64 KiB); the app's body limit refuses
# a longer body with 413 while it arrives (limits.py), so reading it here is bounded.
BODY_MAX_BYTES = 256 * 1024
_KINDS = frozenset(kind.value for kind in CallbackKind)


@asynccontextmanager
async def _worker(app: FastAPI) -> AsyncIterator[None]:
    deni = app.state.deni
    assert isinstance(deni, Deni)
    settings = deni.settings
    worker = None
    if deni.mpesa is not None and settings.worker_interval_s > 0:
        worker = MpesaWorker(
            deni.mpesa,
            interval_s=settings.worker_interval_s,
            reconcile_interval_s=settings.reconcile_interval_s,
        )
        worker.start()
    app.state.mpesa_worker = worker
    writer = InboxWriter(deni.mpesa) if deni.mpesa is not None else None
    if writer is not None:
        writer.start()
    app.state.inbox_writer = writer
    if deni.mpesa is not None and settings.sandbox:
        _register_c2b(deni.mpesa)
    try:
        yield
    finally:
        if writer is not None:
            writer.stop()
        if worker is not None:
            worker.stop()


router = APIRouter(include_in_schema=False, lifespan=_worker)


def _register_c2b(deps: MpesaDeps) -> None:
    """The local sandbox forgets registrations when it restarts: tell it where to call, and
    that the reconciler will read the Pull API."""
    try:
        deps.gateway.register_c2b_urls()
    except Exception:
        log.exception("mpesa.c2b_register_failed")
    try:
        deps.gateway.register_pull()
    except Exception:
        log.exception("mpesa.pull_register_failed")


async def hook(request: Request) -> JSONResponse:
    """A plain Starlette endpoint: nothing here needs FastAPI's parameter solving, which cost
    about a tenth of the hook's CPU per callback."""
    token, kind = request.path_params["token"], request.path_params["kind"]
    deni = request.app.state.deni
    assert isinstance(deni, Deni)
    if deni.mpesa is None or not secret_matches(token, deni.settings.callback_token):
        log.warning("mpesa.hook_bad_token", kind=kind[:40])
        return error_response(404, "not_found", "Not Found")
    if kind not in _KINDS:
        return error_response(404, "not_found", "Not Found")
    if not source_allowed(request, deni.settings.callback_allowed_ips):
        log.warning("mpesa.hook_source_refused", kind=kind)
        return error_response(403, "forbidden", "Forbidden")
    source_ip = client_address(request)
    raw = await request.body()
    writer = getattr(request.app.state, "inbox_writer", None)
    try:
        if kind == CallbackKind.C2B_VALIDATION or not isinstance(writer, InboxWriter):
            answer = await run_in_threadpool(_handle, deni, deni.mpesa, kind, raw, source_ip)
        else:  # stored with the others that arrived meanwhile, in one transaction
            await writer.store(Received(kind, raw, source_ip))
            answer = ACCEPTED
    except StorageBusy:
        # Not stored: say so, rather than 200 for a body we would lose.
        return JSONResponse({"ResultCode": 1, "ResultDesc": "Busy"}, status_code=503)
    worker = getattr(request.app.state, "mpesa_worker", None)
    if isinstance(worker, MpesaWorker):
        worker.wake()  # apply it now, not at the next poll
    return JSONResponse(answer)


router.add_route("/hooks/{token}/{kind:path}", hook, methods=["POST"], include_in_schema=False)


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
