"""POST /ussd: the Africa's Talking callback. Always 200 with CON/END text, whatever arrives."""

from __future__ import annotations

from urllib.parse import parse_qsl

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from deni.bootstrap import Deni
from deni.entrypoints.gate import secret_matches, source_allowed
from deni.entrypoints.ussd.engine import UssdEngine
from deni.entrypoints.ussd.gateway import AfricasTalkingGateway, BadRequest, Gateway, UssdRequest
from deni.entrypoints.ussd.render import Reply, compose, say

BODY_BYTES_MAX = 8_192
FIELDS_MAX = 20
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


@router.post("/ussd/{token}", response_class=PlainTextResponse, include_in_schema=False)
async def ussd_with_token(request: Request, token: str) -> Response:
    return await _answer(request, token=token)


async def _answer(request: Request, *, token: str) -> Response:
    engine = engine_for(request)
    settings = engine.deni.settings
    # Africa's Talking signs nothing and the phone number is just a form field: whoever can
    # post here can speak for any phone, so the path carries a secret once one is set.
    if (token or settings.ussd_token) and not secret_matches(token, settings.ussd_token):
        log.warning("ussd_bad_token")
        return _refused_with(404, "not_found", "Not found")
    if not source_allowed(request, settings.ussd_allowed_ips):
        log.warning("ussd_source_refused")
        return _refused_with(403, "forbidden", "Forbidden")
    try:
        parsed = await _read(request)
    except BadRequest:
        reply = _refused()
    else:
        reply = await run_in_threadpool(engine.handle, parsed)
    return PlainTextResponse(_gateway.render(reply), media_type=_gateway.content_type)


def _refused_with(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


async def _read(request: Request) -> UssdRequest:
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
    return _gateway.parse(dict(pairs))


def _refused() -> Reply:
    return compose(end=True, head=(), body=say("ussd.err_request", "en"), tail=())
