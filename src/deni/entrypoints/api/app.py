"""The FastAPI application: routers under /api/v1, errors as JSON with stable codes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from deni.bootstrap import Background, Deni, render_metrics
from deni.domain.errors import DomainError, ErrorKind, TooManyRequests
from deni.domain.ledger import EntryCode
from deni.domain.loans import LoanState
from deni.entrypoints.api import business_metrics
from deni.entrypoints.api.contract import document_errors
from deni.entrypoints.api.limits import (
    CLIENT_CLOSED_REQUEST,
    BodyLimitMiddleware,
    ClientDisconnected,
)
from deni.entrypoints.api.middleware import MetricsMiddleware, route_template
from deni.entrypoints.api.ops import OpsGate, carries_ops_token
from deni.entrypoints.api.routes import (
    auth,
    book,
    hooks,
    loans,
    mpesa,
    notifications,
    privacy,
    push,
    sync,
    wallet,
)
from deni.entrypoints.api.schemas import CheckOut, HealthOut, LiveOut
from deni.entrypoints.errors import error_response
from deni.entrypoints.ops.app import create_ops_app
from deni.entrypoints.ussd import router as ussd
from deni.entrypoints.web import mount as mount_web_app
from deni.services.ports import StorageBusy

API_PREFIX = "/api/v1"
# Bodies beyond the default (limits.BODY_BYTES_MAX) or below it, by path prefix. /ussd reads
# its form under its own, smaller limit (ussd.router.BODY_BYTES_MAX) and answers END past it.
ROUTE_BODY_BYTES_MAX = (
    (f"{API_PREFIX}/auth/", 4 * 1024),  # a phone, a name, a PIN, a code: nobody signed in yet
    (f"{API_PREFIX}/sync/push", sync.PUSH_BODY_BYTES_MAX),
    (f"{API_PREFIX}/me/push/", push.BODY_BYTES_MAX),  # a browser's Web Push subscription
    ("/hooks/", hooks.BODY_BYTES_MAX),
)
STATUS_BY_KIND = {
    ErrorKind.INVALID: 422,
    ErrorKind.UNAUTHORIZED: 401,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.LOCKED: 423,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.TOO_MANY: 429,
}
# Errors Starlette raises as HTTPException, and the limits' own (limits.py), by status.
HTTP_ERROR_CODES = {
    400: "malformed_json",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    CLIENT_CLOSED_REQUEST: "client_disconnected",
}
log = structlog.get_logger(__name__)


def create_app(deni: Deni) -> FastAPI:
    """The API, with the USSD channel's routes and the web app mounted on it (the one place
    channels meet); its lifespan starts and stops the background work bootstrap built."""
    background = deni.background()
    app = FastAPI(
        title="Deni",
        version="0.1.0",
        description="Peer-to-peer lending over M-PESA. Amounts are integer cents (KES 1 = 100).",
        lifespan=_running(background),
    )
    app.state.deni = deni
    app.state.background = background
    # Routes are matched in order: the two busiest paths, a USSD hop and a Daraja callback,
    # go first instead of being tried after every /api/v1 route.
    ussd.add_routes(app, deni, background.hops)  # POST /ussd, Africa's Talking USSD
    hooks.add_routes(app)  # Daraja callbacks, handed to the inbox writer
    routers = (
        auth.router,
        wallet.router,
        loans.router,
        notifications.router,
        push.router,  # Web Push to the web app (docs/notifications.md)
        mpesa.router,
        sync.router,  # offline sync (docs/sync.md)
        book.router,  # the member's own book: GET /me/book, /me/history
        # A person's rights over their data (Data Protection Act 2019): export, closing.
        privacy.router,
    )
    for router in routers:
        app.include_router(router, prefix=API_PREFIX)
    _add_operations(app, deni)
    mount_web_app(app)  # the installable offline web app under /app (deni.entrypoints.web)
    app.mount("/ops", create_ops_app(deni))  # the staff console (deni.entrypoints.ops)
    # Metrics and logs label requests with the full path template, prefix included.
    api_routes = [
        (API_PREFIX + route.path, route)
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute)
    ]
    full_paths = {id(route): path for path, route in api_routes}
    _add_error_handlers(app, full_paths)
    own_routes = [(route.path, route) for route in app.routes if isinstance(route, APIRoute)]
    document_errors(app, own_routes + api_routes)
    # Added innermost first: metrics see every answer, the gate's and the limit's included.
    app.add_middleware(BodyLimitMiddleware, route_body_bytes_max=ROUTE_BODY_BYTES_MAX)
    if deni.settings.environment == "production":
        app.add_middleware(OpsGate, ops_token=deni.settings.ops_token)
    app.add_middleware(MetricsMiddleware, metrics=deni.metrics, full_paths=full_paths)
    return app


def _running(background: Background) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The background work runs while the app serves (bootstrap/background.py says what)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        background.start()
        try:
            yield
        finally:
            background.stop()

    return lifespan


def _add_operations(app: FastAPI, deni: Deni) -> None:
    not_ready = {"model": HealthOut, "description": "Not ready: the checks say which failed."}

    @app.get("/health/live", response_model=LiveOut, tags=["operations"])
    def live() -> LiveOut:
        """Liveness: the process answers. No I/O: restart the process only if this fails."""
        return LiveOut(status="ok")

    def ready(request: Request) -> JSONResponse:
        """Readiness: the database reached and at this code's schema, Redis reached (when
        sessions live there), and with M-PESA on a worker's heartbeat fresh. 503 otherwise.
        In production the details behind each state are for operators (the ops token)."""
        readiness = deni.readiness()
        detailed = deni.settings.environment != "production" or carries_ops_token(
            request.scope["headers"], deni.settings.ops_token
        )
        body = HealthOut(
            status="ok" if readiness.ready else "degraded",
            checks={
                c.name: CheckOut(state=c.state, **(c.details if detailed else {}))
                for c in readiness.checks
            },
        )
        content = body.model_dump(exclude_none=True)
        return JSONResponse(content, status_code=200 if readiness.ready else 503)

    for path in ("/health/ready", "/health"):  # /health: the same readiness, for older callers
        app.add_api_route(
            path, ready, response_model=HealthOut, tags=["operations"], responses={503: not_ready}
        )

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        waits = deni.metrics.payment_confirmation_seconds
        with deni.uow.read_only() as uow:
            loan_counts = uow.loans.count_by_state()
            entry_counts = uow.ledger.count_entries_by_code()
            counts, count, sum_ms = uow.claims.confirmation_waits(
                [round(bound_s * 1000) for bound_s in waits.buckets_s]
            )
        waits.set(counts, count, sum_ms / 1000)
        for state in LoanState:
            count = loan_counts.get(state.value, 0)
            deni.metrics.loans_by_state.labels(state=state.value).set(count)
        for code in EntryCode:
            count = entry_counts.get(code.value, 0)
            deni.metrics.ledger_entries.labels(kind=code.value).set(count)
        business_metrics.refresh(deni)
        body, content_type = render_metrics(deni.metrics)
        return Response(body, media_type=content_type)


def _add_error_handlers(app: FastAPI, full_paths: Mapping[int, str]) -> None:
    @app.exception_handler(DomainError)
    def domain_error(request: Request, error: DomainError) -> JSONResponse:
        response = error_response(STATUS_BY_KIND[error.kind], error.code, error.message)
        if isinstance(error, TooManyRequests) and error.retry_after_s is not None:
            response.headers["Retry-After"] = str(error.retry_after_s)
        return response

    @app.exception_handler(RequestValidationError)
    def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return error_response(400, "malformed_json", "The body is not valid JSON.")
        first = problems[0] if problems else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        message = f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg"))
        return error_response(422, "validation_failed", message)

    @app.exception_handler(StarletteHTTPException)
    def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        # FastAPI answers 400 when it cannot parse a body at all (nested too deep to decode,
        # say): for the client that is malformed JSON like any other.
        code = HTTP_ERROR_CODES.get(error.status_code, "http_error")
        response = error_response(error.status_code, code, str(error.detail))
        response.headers.update(error.headers or {})  # e.g. Allow on a 405
        return response

    @app.exception_handler(ClientDisconnect)
    def client_gone(request: Request, error: ClientDisconnect) -> JSONResponse:
        # Nobody is there to read this answer; the access log records it, no error is logged.
        return http_error(request, ClientDisconnected())

    @app.exception_handler(StorageBusy)
    def busy(request: Request, error: StorageBusy) -> JSONResponse:
        response = error_response(503, "busy", str(error))
        response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(Exception)
    def unexpected(request: Request, error: Exception) -> JSONResponse:
        # The route's template, never the path: a hook's path carries its secret token.
        log.exception("unhandled_error", route=route_template(request.scope, full_paths))
        return error_response(500, "internal_error", "Something went wrong on our side.")
