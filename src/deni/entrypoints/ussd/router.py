"""POST /ussd: the Africa's Talking callback, always 200 with CON/END text for a caller past
the gate, whatever arrives; POST /ussd/events: its end-of-session notification."""

from __future__ import annotations

from urllib.parse import parse_qsl

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from deni.bootstrap import Deni
from deni.entrypoints.api.errors import error_response
from deni.entrypoints.gate import secret_matches, source_allowed
from deni.entrypoints.ussd.engine import UssdEngine
from deni.entrypoints.ussd.gateway import AfricasTalkingGateway, BadRequest, Gateway, UssdRequest
from deni.entrypoints.ussd.render import Reply, compose, say

BODY_BYTES_MAX = 8_192
FIELDS_MAX = 20
SESSION_ID_CHARS_MAX = 128
ERROR_CHARS_LOGGED = 200
SESSION_END_STATUSES = frozenset({"Success", "Incomplete", "Failed"})
router = APIRouter(tags=["ussd"])
log = structlog.get_logger(__name__)
_gateway: Gateway = AfricasTalkingGateway()


def engine_for(request: Request) -> UssdEngine:
    """One engine per app, built on first use from the app's wired Deni."""
    engine = getattr(request.app.state, "ussd_engine", None)
    if engine is None:
        deni: Deni = request.app.state.deni
        engine = UssdEngine(deni)
        request.app.state.ussd_engine = engine
    assert isinstance(engine, UssdEngine)
    return engine


@router.post("/ussd", response_class=PlainTextResponse)
async def ussd(request: Request) -> Response:
    """Africa's Talking USSD: form fields sessionId, serviceCode, phoneNumber, networkCode,
    text. Answers `CON ...` (more to come) or `END ...`, at most 182 characters. With
    DENI_USSD_TOKEN set (production), the gateway posts to /ussd/{token} instead."""
    return await _answer(request, token="")


@router.post("/ussd/events", include_in_schema=False)
async def session_ended(request: Request) -> Response:
    """Africa's Talking's end-of-session notification (reference B.4): form fields sessionId,
    status (Success, Incomplete, Failed), durationInMillis, hopsCount, errorMessage, ..."""
    return await _event(request, token="")


@router.post("/ussd/{token}/events", include_in_schema=False)
async def session_ended_with_token(request: Request, token: str) -> Response:
    return await _event(request, token=token)


@router.post("/ussd/{token}", response_class=PlainTextResponse, include_in_schema=False)
async def ussd_with_token(request: Request, token: str) -> Response:
    return await _answer(request, token=token)


async def _answer(request: Request, *, token: str) -> Response:
    engine = engine_for(request)
    refused = _gate(request, engine, token)
    if refused is not None:
        return refused
    try:
        parsed = await _read(request)
    except BadRequest:
        reply = _refused()
    else:
        reply = await run_in_threadpool(engine.handle, parsed)
    return PlainTextResponse(_gateway.render(reply), media_type=_gateway.content_type)


async def _event(request: Request, *, token: str) -> Response:
    engine = engine_for(request)
    refused = _gate(request, engine, token)
    if refused is not None:
        return refused
    try:
        fields = await _form(request)
    except BadRequest:
        return error_response(400, "invalid_form", "Expected a form-encoded notification.")
    session_id = fields.get("sessionId", "")
    if not session_id or len(session_id) > SESSION_ID_CHARS_MAX:
        return error_response(400, "invalid_session_id", "sessionId is missing or too long.")
    status = fields.get("status", "")
    known = status if status in SESSION_END_STATUSES else "other"
    engine.deni.metrics.ussd_sessions_ended_total.labels(status=known).inc()
    log.info(
        "ussd_session_ended",
        status=known,
        duration_ms=_digits(fields.get("durationInMillis")),
        hops=_digits(fields.get("hopsCount")),
        error=fields.get("errorMessage", "")[:ERROR_CHARS_LOGGED] or None,
    )
    await run_in_threadpool(engine.forget_session, session_id, now=engine.deni.clock.now())
    return PlainTextResponse("OK")


def _gate(request: Request, engine: UssdEngine, token: str) -> JSONResponse | None:
    settings = engine.deni.settings
    # Africa's Talking signs nothing and the phone number is just a form field: whoever can
    # post here can speak for any phone, so the path carries a secret once one is set.
    if (token or settings.ussd_token) and not secret_matches(token, settings.ussd_token):
        log.warning("ussd_bad_token")
        return error_response(404, "not_found", "Not found")
    if not source_allowed(request, settings.ussd_allowed_ips):
        log.warning("ussd_source_refused")
        return error_response(403, "forbidden", "Forbidden")
    return None


def _digits(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() and len(value) <= 12 else None


async def _read(request: Request) -> UssdRequest:
    return _gateway.parse(await _form(request))


async def _form(request: Request) -> dict[str, str]:
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > BODY_BYTES_MAX:
            raise BadRequest("body too large")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=FIELDS_MAX,
            strict_parsing=False,
        )
    except (UnicodeDecodeError, ValueError) as error:
        raise BadRequest("form") from error
    return dict(pairs)


def _refused() -> Reply:
    return compose(end=True, head=(), body=say("ussd.err_request", "en"), tail=())
