"""The admin API under /sandbox/: what tests use to set the stage and to watch (see app.py)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from deni.sandbox import c2b, validation
from deni.sandbox.core import Sandbox
from deni.sandbox.formats import CENTS_PER_SHILLING
from deni.sandbox.validation import DarajaError

AdminHandler = Callable[[Sandbox, Request], Awaitable[Response]]
_FLUSH_TIMEOUT_S_MAX = 120.0
_CENTS_MAX = 10**15
_CLOCK_STEP_S_MAX = 10 * 365 * 24 * 3600


class AdminError(Exception):
    pass


def _problem(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise AdminError("the body must be JSON") from None
    if not isinstance(body, dict):
        raise AdminError("the body must be a JSON object")
    return body


def _phone(value: object) -> str:
    try:
        return validation.msisdn({"phone": value}, "phone")
    except DarajaError:
        raise AdminError("phone must look like 254712345678") from None


def _cents(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _CENTS_MAX:
        raise AdminError(f"{name} must be a whole number of cents from 0 to {_CENTS_MAX}")
    return value


# State -------------------------------------------------------------------------------------


async def balances(sandbox: Sandbox, request: Request) -> Response:
    return JSONResponse(
        {
            "organisation": sandbox.world.organisation.as_json(),
            "customers": [c.as_json() for c in sandbox.world.customers.values()],
        }
    )


async def customer(sandbox: Sandbox, request: Request) -> Response:
    """GET reads (an unknown number has the default balance); PUT changes given fields."""
    person = sandbox.world.customer(_phone(request.path_params["phone"]))
    if request.method == "PUT":
        body = await _json(request)
        balance_cents = _cents(body, "balance_cents")
        if balance_cents is not None:
            person.balance_cents = balance_cents
        for name in ("first_name", "middle_name", "last_name"):
            if name in body:
                value = body[name]
                if not isinstance(value, str) or len(value) > 50:
                    raise AdminError(f"{name} must be a string of at most 50 characters")
                setattr(person, name, value)
        if "registered" in body:
            person.registered = bool(body["registered"])
    return JSONResponse(person.as_json())


async def organisation(sandbox: Sandbox, request: Request) -> Response:
    org = sandbox.world.organisation
    if request.method == "PUT":
        body = await _json(request)
        working = _cents(body, "working_account_cents")
        utility = _cents(body, "utility_account_cents")
        org.working_cents = org.working_cents if working is None else working
        org.utility_cents = org.utility_cents if utility is None else utility
    return JSONResponse(org.as_json())


async def transactions(sandbox: Sandbox, request: Request) -> Response:
    phone = request.query_params.get("phone")
    found = [
        t.as_json()
        for t in sandbox.world.transactions.values()
        if phone is None or t.phone == phone
    ]
    return JSONResponse({"transactions": found})


async def registrations(sandbox: Sandbox, request: Request) -> Response:
    return JSONResponse(
        {
            code: {
                "ResponseType": r.response_type,
                "ConfirmationURL": r.confirmation_url,
                "ValidationURL": r.validation_url,
            }
            for code, r in sandbox.world.registrations.items()
        }
    )


# Faults ------------------------------------------------------------------------------------


async def faults(sandbox: Sandbox, request: Request) -> Response:
    if request.method == "POST":
        try:
            fault = sandbox.faults.add(await _json(request))
        except ValueError as error:
            raise AdminError(str(error)) from None
        return JSONResponse(fault.as_json(), status_code=201)
    if request.method == "DELETE":
        sandbox.faults.clear()
    return JSONResponse({"faults": [f.as_json() for f in sandbox.faults.pending()]})


# Callbacks ---------------------------------------------------------------------------------


async def callbacks(sandbox: Sandbox, request: Request) -> Response:
    kind = request.query_params.get("kind")
    found = [r.as_json() for r in sandbox.dispatcher.records() if kind in (None, r.kind)]
    return JSONResponse({"callbacks": found, "waiting": sandbox.dispatcher.waiting})


async def flush(sandbox: Sandbox, request: Request) -> Response:
    """Settle everything and deliver every callback now, then answer (408 if time ran out)."""
    body = await _json(request)
    timeout_s = body.get("timeout_s", 10.0)
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):
        raise AdminError("timeout_s must be a number")
    if not 0 < timeout_s <= _FLUSH_TIMEOUT_S_MAX:
        raise AdminError(f"timeout_s must be above 0 and at most {_FLUSH_TIMEOUT_S_MAX}")
    done = await sandbox.dispatcher.flush(float(timeout_s))
    summary = {"done": done, "waiting": sandbox.dispatcher.waiting}
    return JSONResponse(summary, status_code=200 if done else 408)


# Customers paying, time, reset -------------------------------------------------------------


async def pay_paybill(sandbox: Sandbox, request: Request) -> Response:
    """A customer pays the paybill from their phone: {phone, amount (KES), account}."""
    body = await _json(request)
    phone = _phone(body.get("phone"))
    amount = body.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= 250_000:
        raise AdminError("amount must be whole shillings from 1 to 250000")
    account = body.get("account", "")
    if not isinstance(account, str) or len(account) > 20:
        raise AdminError("account (the BillRefNumber) must be a string of at most 20 characters")
    # Only the confirmation's journey can be faulted here: the customer has no HTTP answer.
    policy = sandbox.faults.take_delivery("c2b", phone)
    outcome = await c2b.pay(sandbox, phone, amount * CENTS_PER_SHILLING, account, policy)
    return JSONResponse(outcome)


async def advance_clock(sandbox: Sandbox, request: Request) -> Response:
    """Move the sandbox's time forward (token expiry, timestamps)."""
    seconds = (await _json(request)).get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise AdminError("seconds must be a number")
    if not 0 <= seconds <= _CLOCK_STEP_S_MAX:
        raise AdminError("seconds must be from 0 to ten years")
    sandbox.clock_offset += timedelta(seconds=seconds)
    return JSONResponse({"now": sandbox.now().isoformat()})


async def reset(sandbox: Sandbox, request: Request) -> Response:
    await sandbox.reset()
    return JSONResponse({"reset": True})


async def certificate(sandbox: Sandbox, request: Request) -> Response:
    return Response(sandbox.vault.certificate_pem, media_type="application/x-pem-file")


async def _guarded(sandbox: Sandbox, handler: AdminHandler, request: Request) -> Response:
    try:
        return await handler(sandbox, request)
    except AdminError as error:
        return _problem(str(error))


def routes(sandbox: Sandbox) -> list[Route]:
    def route(path: str, handler: AdminHandler, methods: list[str]) -> Route:
        return Route(path, partial(_guarded, sandbox, handler), methods=methods)

    return [
        route("/sandbox/certificate", certificate, ["GET"]),
        route("/sandbox/balances", balances, ["GET"]),
        route("/sandbox/customers/{phone}", customer, ["GET", "PUT"]),
        route("/sandbox/organisation", organisation, ["GET", "PUT"]),
        route("/sandbox/transactions", transactions, ["GET"]),
        route("/sandbox/registrations", registrations, ["GET"]),
        route("/sandbox/faults", faults, ["GET", "POST", "DELETE"]),
        route("/sandbox/callbacks", callbacks, ["GET"]),
        route("/sandbox/callbacks/flush", flush, ["POST"]),
        route("/sandbox/c2b/pay", pay_paybill, ["POST"]),
        route("/sandbox/clock/advance", advance_clock, ["POST"]),
        route("/sandbox/reset", reset, ["POST"]),
    ]
