"""ASGI middleware for the HTTP API."""

from __future__ import annotations

import time
from collections.abc import Mapping

import structlog
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deni.bootstrap import Metrics

# Label for requests no route matched (404s, scanners probing random paths). Using the raw
# path instead would give every probe its own time series and blow up Prometheus' memory.
UNMATCHED_ROUTE = "unmatched"
# Same reason for methods: a client can send any token as the method.
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
access_log = structlog.get_logger("deni.access")
# deni_channel_latency_seconds' channels, by route template. A USSD hop is /ussd or
# /ussd/{token} (not the end-of-session notices); a callback is any Daraja hook; sync is an
# offline client's push or pull; api is every other route of the member API. Nothing else
# (/health, /metrics, the web app's files, the staff console, unmatched paths) is a channel.
USSD_HOP_ROUTES = frozenset({"/ussd", "/ussd/{token}"})
SYNC_ROUTES = frozenset({"/api/v1/sync/push", "/api/v1/sync/pull"})
CALLBACK_PREFIX = "/hooks/"
API_PREFIX = "/api/"


def channel_of(route: str) -> str | None:
    """The channel a request on this route template answers for, or None."""
    if route in USSD_HOP_ROUTES:
        return "ussd"
    if route.startswith(CALLBACK_PREFIX):
        return "callback"
    if route in SYNC_ROUTES:
        return "sync"
    if route.startswith(API_PREFIX):
        return "api"
    return None


def route_template(scope: Scope, full_paths: Mapping[int, str]) -> str:
    """The matched route's path template ("/api/v1/loans/{loan_id}"), known only after routing.

    FastAPI may put the router's own route in the scope, whose path lacks the prefix the router
    was included under; `full_paths` (route id → full template) puts the prefix back. A mount
    (the web app's files under /app) counts as one route, "/app/{path}", never one per file.
    """
    route = scope.get("route")
    if route is None:
        return UNMATCHED_ROUTE
    if isinstance(route, Mount):
        return route.path_format
    full = full_paths.get(id(route))
    if full is not None:
        return full
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


class MetricsMiddleware:
    """Count and time HTTP requests by method, route template and status code.

    A pure ASGI middleware (not BaseHTTPMiddleware) so streaming responses are not buffered.
    """

    def __init__(
        self, app: ASGIApp, metrics: Metrics, full_paths: Mapping[int, str] | None = None
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.full_paths: Mapping[int, str] = full_paths or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        # If the app raises before starting a response, the server answers 500.
        status_code = 500

        async def send_and_note_status(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        started_s = time.perf_counter()
        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            duration_s = time.perf_counter() - started_s
            self._record(scope, status_code, duration_s)

    def _record(self, scope: Scope, status_code: int, duration_s: float) -> None:
        method = scope["method"] if scope["method"] in _KNOWN_METHODS else "OTHER"
        route = route_template(scope, self.full_paths)
        self.metrics.http_requests_total.labels(
            method=method, route=route, status=str(status_code)
        ).inc()
        self.metrics.http_request_duration_seconds.labels(method=method, route=route).observe(
            duration_s
        )
        channel = channel_of(route)
        if channel is not None:
            self.metrics.channel_latency_seconds.labels(channel=channel).observe(duration_s)
        # The route template, never the raw path or query: those can carry ids and numbers.
        access_log.info(
            "request",
            method=method,
            route=route,
            status=status_code,
            duration_ms=round(duration_s * 1000, 2),
        )
