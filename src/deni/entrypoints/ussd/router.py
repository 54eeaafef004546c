"""POST /ussd: the Africa's Talking callback. Always 200 with CON/END text, whatever arrives."""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from deni.bootstrap import Deni
from deni.entrypoints.ussd.engine import UssdEngine
from deni.entrypoints.ussd.gateway import AfricasTalkingGateway, BadRequest, Gateway, UssdRequest
from deni.entrypoints.ussd.render import Reply, compose, say

BODY_BYTES_MAX = 8_192
FIELDS_MAX = 20
router = APIRouter(tags=["ussd"])
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
async def ussd(request: Request) -> PlainTextResponse:
    """Africa's Talking USSD: form fields sessionId, serviceCode, phoneNumber, networkCode,
    text. Answers `CON ...` (more to come) or `END ...`, at most 182 characters."""
    engine = engine_for(request)
    try:
        parsed = await _read(request)
    except BadRequest:
        reply = _refused()
    else:
        reply = await run_in_threadpool(engine.handle, parsed)
    return PlainTextResponse(_gateway.render(reply), media_type=_gateway.content_type)


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
