"""The OpenAPI document names every status a route can answer, with the error envelope.

One mechanism for every route, new ones included: a table of statuses any request can meet
(the body limit, rate limits, a busy database), statuses read off what the route depends on
(a bearer token: 401; an Idempotency-Key: 409 and 422; a body: 400, 413 and 422; a path id:
404; a PIN in the body: 401 and 423), and what a route adds itself with
`responses=refusals(...)` for reasons its signature cannot show (403 not the lender, 409 a
loan's state, 426 an old sync client). `document_errors` writes them into the generated
document, each with `ErrorOut` as its schema, and marks `Idempotency-Key` required wherever the
route refuses a request without one.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security.base import SecurityBase
from pydantic import BaseModel

from deni.entrypoints.api.deps import current_user_id, idempotency_key
from deni.entrypoints.api.schemas import ErrorOut

IDEMPOTENCY_HEADER = "Idempotency-Key"
ERROR_SCHEMA_REF = "#/components/schemas/ErrorOut"
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "The body is not JSON (`malformed_json`).",
    401: "Not signed in, or the token is expired or revoked (`unauthorized`, `token_expired`); "
    "a wrong PIN (`wrong_pin`) or credentials (`wrong_credentials`), or the last one before "
    "a lock (`wrong_pin_last_try`, `wrong_credentials_last_try`: 1 try left).",
    403: "Not yours to do (`not_the_lender`, `not_the_borrower`, `client_not_yours`, ...).",
    404: "Nothing here by that id (`loan_not_found`, ...), or the account behind the token is "
    "closed (`user_not_found`).",
    409: "The request clashes with the current state (`insufficient_funds`, "
    "`invalid_transition`, ...) or reuses an Idempotency-Key with another body "
    "(`idempotency_conflict`).",
    413: "The body is over this route's limit (`body_too_large`); refused while it arrives.",
    422: "Invalid input (`validation_failed`, `invalid_amount`, `idempotency_key_missing`, ...).",
    423: "The account is locked (`account_locked`, `locked_by_support`) or money may not leave "
    "it yet after a PIN reset (`money_on_hold`).",
    426: "The client speaks an older sync schema than the server accepts "
    "(`client_upgrade_required`; `error` also carries `min_client_schema_version`).",
    429: "Too many requests (`too_many_requests`): wait `Retry-After` seconds.",
    503: "Busy (`busy`: retry after `Retry-After` seconds), or a gateway Deni needs is down "
    "(`sms_unavailable`).",
}
RETRY_AFTER_STATUSES = frozenset({429, 503})
# Any request may meet these, whatever the route: the body limit (a body on a GET too), rate
# limits, and a database too busy to answer in time.
COMMON_STATUSES = frozenset({413, 429, 503})


def refusals(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route decorator: statuses the route's dependencies do not show."""
    assert all(status in ERROR_DESCRIPTIONS for status in statuses), statuses
    return {
        status: {"model": ErrorOut, "description": ERROR_DESCRIPTIONS[status]}
        for status in statuses
    }


def derived_statuses(route: APIRoute) -> set[int]:
    """The error statuses a route can answer by what it depends on and what it reads."""
    statuses = set(COMMON_STATUSES)
    calls = set(_calls(route.dependant))
    if current_user_id in calls or any(isinstance(call, SecurityBase) for call in calls):
        statuses.add(401)
        statuses.add(404)  # the account behind a valid token was closed
    dependants = list(_dependants(route.dependant))
    headers = {field.alias for d in dependants for field in d.header_params}
    if IDEMPOTENCY_HEADER in headers:
        statuses |= {409, 422}
    if any(d.path_params for d in dependants):
        statuses |= {404, 422}
    if any(d.query_params or d.header_params or d.cookie_params for d in dependants):
        statuses.add(422)
    if route.body_field is not None:
        statuses |= {400, 422}
        if _asks_for_a_pin(route.body_field.field_info.annotation):
            statuses |= {401, 423}
    return statuses


def requires_idempotency_key(route: APIRoute) -> bool:
    return idempotency_key in set(_calls(route.dependant))


def document_errors(app: FastAPI, routes: Iterable[tuple[str, APIRoute]]) -> None:
    """Make `app.openapi()` add the derived error statuses to FastAPI's own document.

    `routes` are (full path, route) pairs: FastAPI may keep included routers' routes behind
    its own wrappers, so the caller, who included them, says where each one lives.
    """
    documented = [(path, route) for path, route in routes if route.include_in_schema]
    generate = app.openapi
    amended: list[dict[str, Any]] = []  # the document last amended (FastAPI caches it)

    def openapi() -> dict[str, Any]:
        schema = generate()  # FastAPI's own, made again only when the routes change
        if not amended or amended[0] is not schema:
            _amend(schema, documented)
            amended[:] = [schema]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _amend(schema: dict[str, Any], routes: list[tuple[str, APIRoute]]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(error_schema.pop("$defs", {}))
    components["ErrorOut"] = error_schema
    for path, route in routes:
        for method in route.methods or ():
            operation = schema["paths"][path][method.lower()]
            _document_operation(operation, route)
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)


def _document_operation(operation: dict[str, Any], route: APIRoute) -> None:
    responses = operation.setdefault("responses", {})
    for status in sorted(derived_statuses(route) | _declared(route)):
        key = str(status)
        existing = responses.get(key)
        if existing is None or _is_fastapi_validation_error(existing):
            responses[key] = _error_response(status)
    if requires_idempotency_key(route):
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "header" and parameter["name"] == IDEMPOTENCY_HEADER:
                parameter["required"] = True


def _declared(route: APIRoute) -> set[int]:
    return {int(status) for status in route.responses if 400 <= int(status) < 600}


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": ERROR_DESCRIPTIONS[status],
        "content": {"application/json": {"schema": {"$ref": ERROR_SCHEMA_REF}}},
    }
    if status in RETRY_AFTER_STATUSES:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before trying again.",
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            }
        }
    return response


def _is_fastapi_validation_error(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependants(sub)


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for found in _dependants(dependant):
        if found.call is not None:
            yield found.call


def _asks_for_a_pin(annotation: object) -> bool:
    """The body model (or one of a union's) has a PIN field: pin, old_pin, new_pin, ..."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            names = candidate.model_fields
            if any(name == "pin" or name.endswith("_pin") for name in names):
                return True
    return False
