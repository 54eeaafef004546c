"""The installable offline web app (PWA): the files in static/, served under /app by the API.

The service worker caches the app for offline use, so the server itself answers `no-cache`:
the browser revalidates every file (StaticFiles answers 304 to a matching ETag or
If-Modified-Since), and a release reaches the service worker at its next update check. A
longer max-age would be worse, not better: the file names carry no version, and the service
worker's background refresh goes through the HTTP cache, so it would keep getting the old file.
Text files go gzipped (about a quarter of their size) to a browser that accepts it.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.datastructures import MutableHeaders
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import FileResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PREFIX = "/app"
STATIC_DIR = Path(__file__).parent / "static"
# The app loads nothing from elsewhere and runs no inline script or style, so an injected tag
# can neither run nor send anything out; frame-ancestors stops clickjacking of the PIN screens.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; manifest-src 'self'; worker-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
GZIP_BYTES_MIN = 500  # smaller answers gain less than gzip's own overhead
HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# Python's mimetypes table varies with the Python version and the machine's /etc/mime.types
# (3.11 says application/javascript, and may not know .webmanifest at all): fix these two.
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".webmanifest": "application/manifest+json",
}


def mount(app: FastAPI) -> None:
    """Serve static/ at /app/ (index.html for /app/); / and /app redirect to /app/."""
    for path in ("/", PREFIX):
        app.add_api_route(path, _to_app, include_in_schema=False)
    # check_dir=False: were static/ missing (a broken install), /app answers 500 and logs it,
    # rather than the whole process, M-PESA callbacks and USSD included, refusing to start.
    files = _AppFiles(directory=STATIC_DIR, html=True, check_dir=False)
    gzipped = GZipMiddleware(files, minimum_size=GZIP_BYTES_MIN)
    app.router.routes.append(_NamedMount(PREFIX, app=gzipped, name="web"))
    app.add_middleware(AppHeaders)


def _to_app() -> RedirectResponse:
    return RedirectResponse(PREFIX + "/")


class _NamedMount(Mount):
    """A mount that names itself in scope["route"], as Starlette's router does and FastAPI's
    does not: the metrics middleware labels requests by it ("/app/{path}"), and without it
    every file would count as "unmatched", with the scanners' 404s."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self
        await super().handle(scope, receive, send)


class _AppFiles(StaticFiles):
    def file_response(
        self,
        full_path: PathLike,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        media_type = MEDIA_TYPES.get(Path(full_path).suffix)
        if media_type is not None and isinstance(response, FileResponse):  # not on a 304
            response.headers["Content-Type"] = media_type
        return response


class AppHeaders:
    """Add HEADERS to every response under /app.

    App-wide middleware rather than a wrapper around the mount: a missing file's 404 is raised
    inside the mount but rendered (in the API's error envelope) outside it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
