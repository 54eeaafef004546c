"""Daraja's HTTP surface: OAuth, then every POST endpoint behind the bearer-token gate."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from deni.sandbox import b2c, c2b, payloads, pull, queries, stk
from deni.sandbox.core import Call, Interrupted, Sandbox
from deni.sandbox.faults import Action, Fault
from deni.sandbox.validation import DarajaError

Handler = Callable[[Sandbox, dict[str, Any], Call], Awaitable[dict[str, Any]]]
_BODY_BYTES_MAX = 64 * 1024
_GARBAGE = b"<html><body><h1>502 Bad Gateway</h1>upstream connect error</body></html>"


def error_response(sandbox: Sandbox, error: DarajaError) -> JSONResponse:
    body = payloads.error(sandbox.mint.request_id(), error.code, error.message)
    return JSONResponse(body, status_code=error.status)


def invalid_token() -> DarajaError:
    return DarajaError(401, "404.001.03", "Invalid Access Token")


# OAuth -------------------------------------------------------------------------------------


async def generate_token(sandbox: Sandbox, request: Request) -> Response:
    """Wrong key or secret: HTTP 400 with an empty body, as Daraja answers."""
    fault = sandbox.faults.take("oauth", None).sync
    if fault is not None and fault.action is not Action.SLOW:
        return _fault_response(sandbox, fault)
    if request.query_params.get("grant_type") != "client_credentials":
        return error_response(sandbox, DarajaError(400, "400.008.02", "Invalid grant type passed"))
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return error_response(
            sandbox, DarajaError(400, "400.008.01", "Invalid authentication type passed")
        )
    if not _credentials_match(sandbox, encoded.strip()):
        return Response(status_code=400)
    token = sandbox.tokens.issue(sandbox.now())
    # Real responses carry expires_in as a string.
    body = {"access_token": token.value, "expires_in": str(sandbox.config.token_lifetime_s)}
    if fault is not None:
        await asyncio.sleep(fault.delay_s)
    return JSONResponse(body)


def _credentials_match(sandbox: Sandbox, encoded: str) -> bool:
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    expected = f"{sandbox.config.consumer_key}:{sandbox.config.consumer_secret}"
    return hmac.compare_digest(decoded.encode(), expected.encode())


# The gate ----------------------------------------------------------------------------------


async def endpoint(sandbox: Sandbox, handler: Handler, request: Request) -> Response:
    """Token, then JSON, then the handler; synchronous faults bend the answer at the end."""
    call = Call(sandbox)
    try:
        _check_bearer(sandbox, request)
        body = await _json_body(request, first_field_quirk=handler is stk.push)
        response: Response = JSONResponse(await handler(sandbox, body, call))
    except DarajaError as error:
        response = error_response(sandbox, error)
    except Interrupted:
        assert call.faults.sync is not None
        return _fault_response(sandbox, call.faults.sync)
    fault = call.faults.sync
    if fault is not None and fault.action is Action.SLOW:
        await asyncio.sleep(fault.delay_s)
    elif fault is not None and fault.processed:
        # M-PESA did the work, but the answer never made it back intact: the "unknown" case.
        return _fault_response(sandbox, fault)
    return response


def _check_bearer(sandbox: Sandbox, request: Request) -> None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise DarajaError(401, "404.001.04", "Invalid Authentication Header")
    if not sandbox.tokens.is_valid(token.strip(), sandbox.now()):
        raise invalid_token()


async def _json_body(request: Request, *, first_field_quirk: bool) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "")
    raw = await request.body()
    if "json" not in content_type.lower() and first_field_quirk:
        # Daraja's FAQ: a form-encoded STK push reads as a bad BusinessShortCode.
        raise DarajaError(400, "400.002.02", "Bad Request - Invalid BusinessShortCode")
    if len(raw) > _BODY_BYTES_MAX:
        raise DarajaError(400, "400.002.05", "Invalid Request Payload")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise DarajaError(400, "400.002.05", "Invalid Request Payload") from None
    if not isinstance(body, dict):
        raise DarajaError(400, "400.002.05", "Invalid Request Payload")
    return body


def _fault_response(sandbox: Sandbox, fault: Fault) -> Response:
    if fault.action is Action.INVALID_TOKEN:
        return error_response(sandbox, invalid_token())
    if fault.action is Action.HTTP_429:
        body = payloads.error(sandbox.mint.request_id(), "429.001.01", "Spike arrest")
        return JSONResponse(body, status_code=429)
    if fault.action is Action.GARBAGE:
        return Response(_GARBAGE, status_code=fault.http_status, media_type="text/html")
    assert fault.action is Action.HTTP_500
    return error_response(sandbox, DarajaError(500, "500.003.1001", "Internal Server Error"))


def routes(sandbox: Sandbox) -> list[Route]:
    def post(path: str, handler: Handler) -> Route:
        return Route(path, partial(endpoint, sandbox, handler), methods=["POST"])

    return [
        Route("/oauth/v1/generate", partial(generate_token, sandbox), methods=["GET"]),
        post("/mpesa/stkpush/v1/processrequest", stk.push),
        post("/mpesa/stkpushquery/v1/query", stk.query),
        post("/mpesa/b2c/v3/paymentrequest", partial(b2c.payment_request, version=3)),
        post("/mpesa/b2c/v1/paymentrequest", partial(b2c.payment_request, version=1)),
        post("/mpesa/c2b/v2/registerurl", c2b.register_url),
        post("/mpesa/c2b/v1/registerurl", c2b.register_url),
        post("/mpesa/c2b/v2/simulate", c2b.simulate),
        post("/mpesa/c2b/v1/simulate", c2b.simulate),
        post("/mpesa/accountbalance/v1/query", queries.account_balance),
        post("/mpesa/transactionstatus/v1/query", queries.transaction_status),
        post("/mpesa/reversal/v1/request", queries.reversal),
        post("/pulltransactions/v1/register", pull.register),
        post("/pulltransactions/v1/query", pull.query),
    ]
