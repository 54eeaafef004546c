"""POST /ussd: the Africa's Talking callback, always 200 with CON/END text for a caller past
the gate, whatever arrives; POST /ussd/events: its end-of-session notification."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar
from urllib.parse import parse_qsl

import structlog
from fastapi import Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from deni.bootstrap import Deni, HopThreads
from deni.entrypoints.errors import error_response
from deni.entrypoints.gate import secret_among, source_allowed
from deni.entrypoints.ussd.engine import UssdEngine
from deni.entrypoints.ussd.gateway import AfricasTalkingGateway, BadRequest, Gateway, UssdRequest
from deni.entrypoints.ussd.render import Reply, compose, say

BODY_BYTES_MAX = 8_192
FIELDS_MAX = 20
SESSION_ID_CHARS_MAX = 128
ERROR_CHARS_LOGGED = 200
SESSION_END_STATUSES = frozenset({"Success", "Incomplete", "Failed"})
T = TypeVar("T")
log = structlog.get_logger(__name__)
_gateway: Gateway = AfricasTalkingGateway()


@dataclass(frozen=True, slots=True)
class _Channel:
    """What the USSD routes of one app share: the engine, and the threads hops run on (built,
    started and stopped by bootstrap with the app's other background work)."""

    engine: UssdEngine
    hops: HopThreads

    async def run(self, call: Callable[[], T]) -> T:
        """`call` on a hop thread: it blocks (the session store, the database, a PIN hash)."""
        return await self.hops.run(call)


def _admitted(request: Request) -> _Channel | JSONResponse:
    """The app's channel for a caller past the gate, or the refusal."""
    channel = _channel(request)
    refused = _gate(request, channel.engine, request.path_params.get("token", ""))
    return channel if refused is None else refused


def _channel(request: Request) -> _Channel:
    channel = request.app.state.ussd
    assert isinstance(channel, _Channel)
    return channel


async def ussd(request: Request) -> Response:
    """Africa's Talking USSD: form fields sessionId, serviceCode, phoneNumber, networkCode,
    text. Answers `CON ...` (more to come) or `END ...`, at most 182 characters. With
    DENI_USSD_TOKEN set (production), the gateway posts to /ussd/{token} instead."""
    channel = _admitted(request)
    if isinstance(channel, JSONResponse):
        return channel
    try:
        parsed = await _read(request)
    except BadRequest:
        reply = _refused()
    else:
        reply = await channel.run(partial(channel.engine.handle, parsed))
    return PlainTextResponse(_gateway.render(reply), media_type=_gateway.content_type)


async def session_ended(request: Request) -> Response:
    """Africa's Talking's end-of-session notification (docs/reference-ussd.md): sessionId,
    status (Success, Incomplete, Failed), durationInMillis, hopsCount, errorMessage, ..."""
    channel = _admitted(request)
    if isinstance(channel, JSONResponse):
        return channel
    engine = channel.engine
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
    await channel.run(partial(engine.forget_session, session_id, now=engine.deni.clock.now()))
    return PlainTextResponse("OK")


class PlainRoute(Route):
    """A Starlette route that names itself in the scope, as FastAPI's own routes do, so
    /metrics counts its requests by template ("/ussd/{token}"), never by the secret path."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self
        await super().handle(scope, receive, send)


def add_routes(app: Starlette, deni: Deni, hops: HopThreads) -> None:
    """Plain routes, not FastAPI's: FastAPI's per-request parameter solving showed as about 5%
    of a hop's CPU in profiles, and these routes read their form by hand anyway. First in the
    table, as the busiest paths; /ussd/events before /ussd/{token}, which would take "events"
    for a token. Before any request: FastAPI builds its route tables on the first one."""
    app.state.ussd = _Channel(UssdEngine(deni), hops)
    routes = [
        PlainRoute(path, endpoint, methods=["POST"], include_in_schema=False)
        for path, endpoint in (
            ("/ussd", ussd),
            ("/ussd/events", session_ended),
            ("/ussd/{token}/events", session_ended),
            ("/ussd/{token}", ussd),
        )
    ]
    app.router.routes[0:0] = routes


def _gate(request: Request, engine: UssdEngine, token: str) -> JSONResponse | None:
    settings = engine.deni.settings
    # Africa's Talking signs nothing and the phone number is just a form field: whoever can
    # post here can speak for any phone, so the path carries a secret once one is set.
    accepted = settings.accepted_ussd_tokens  # the current token and those being retired
    if (token or accepted) and not secret_among(token, accepted):
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
