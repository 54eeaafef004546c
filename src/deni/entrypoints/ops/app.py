"""The console as its own small application, mounted at /ops by the API (api/app.py).

Server-rendered pages (Jinja2, autoescaped) that work without JavaScript or a build step. A
page that fails renders a page saying why with the error's code; nothing answers 500 for bad
input, and every answer carries headers that keep it out of frames, caches and referrers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from deni.bootstrap import Deni
from deni.domain.errors import DomainError, ErrorKind
from deni.entrypoints.ops.render import page
from deni.entrypoints.ops.security import COOKIE_PATH, LOGIN_COOKIE, SESSION_COOKIE
from deni.services.ports import StorageBusy

HERE = Path(__file__).parent
log = structlog.get_logger(__name__)

STATUS_BY_KIND = {
    ErrorKind.INVALID: 400,
    ErrorKind.UNAUTHORIZED: 401,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.LOCKED: 423,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.TOO_MANY: 429,
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: under no-referrer Chromium sends `Origin: null` with the
    # console's own forms, and the CSRF check refuses what names no origin it knows.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def create_ops_app(deni: Deni) -> FastAPI:
    from deni.entrypoints.ops import pages  # the routes, registered on import

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.state.deni = deni
    app.include_router(pages.router)
    _add_error_pages(app)

    @app.middleware("http")
    async def headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        ops_host = deni.settings.ops_host
        if ops_host and request.url.hostname != ops_host.lower():
            return PlainTextResponse("Not Found", status_code=404)
        if _holds_nul(request):
            response = error_page(request, 400, "invalid_characters", NUL_REFUSED)
        else:
            response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    return app


NUL_REFUSED = "Addresses and forms may not hold NUL characters."


def _holds_nul(request: Request) -> bool:
    """A NUL in a path or query value would reach PostgreSQL, which refuses it (a 500); the
    console's forms refuse it field by field (`pages.form_of`)."""
    query = request.query_params.multi_items()
    return "\x00" in request.url.path or any("\x00" in k + v for k, v in query)


def error_page(request: Request, status: int, code: str, message: str) -> Response:
    if status == 401:  # no session, or it ended: the sign-in page, then back here
        response = RedirectResponse(f"{COOKIE_PATH}/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
        return response
    return page(request, "error.html", status, code=code, message=message)


def _add_error_pages(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    def domain_error(request: Request, error: DomainError) -> Response:
        return error_page(request, STATUS_BY_KIND[error.kind], error.code, error.message)

    @app.exception_handler(RequestValidationError)
    def invalid(request: Request, error: RequestValidationError) -> Response:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_page(request, 400, "validation_failed", f"{where}: {first.get('msg', '')}")

    @app.exception_handler(StorageBusy)
    def busy(request: Request, error: StorageBusy) -> Response:
        return error_page(request, 503, "busy", "The database is busy; try again in a moment.")

    @app.exception_handler(Exception)
    def unexpected(request: Request, error: Exception) -> Response:
        log.exception("ops_unhandled_error", path=request.url.path[:200])
        return error_page(
            request,
            500,
            "internal_error",
            "Something went wrong and was logged. Look at what you acted on before trying again.",
        )

    @app.exception_handler(StarletteHTTPException)
    def http_error(request: Request, error: StarletteHTTPException) -> Response:
        return error_page(request, error.status_code, "http_error", str(error.detail))


def clear_login_cookie(response: Response) -> None:
    response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)


HTML = HTMLResponse
