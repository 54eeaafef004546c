"""Who may open a console page and post a console form.

- The session is a cookie scoped to /ops, HttpOnly and SameSite=Strict (Secure outside
  development and test); a member's bearer token is never read here, and the member API
  never reads this cookie, so neither opens the other.
- Every form carries a CSRF token: an HMAC of the session token (of a pre-session nonce on
  the sign-in form) under a key derived from the pepper, compared in constant time. A POST
  whose Origin names another site is refused as well.
- Each route declares the permission it needs (`guarded`); `ROUTE_PERMISSIONS` lists them
  all, so a test walks every route with every role.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from fastapi import Request

from deni.bootstrap import Deni
from deni.domain.errors import DomainError, ErrorKind, Unauthorized
from deni.domain.operators import Operator, Permission
from deni.services.ops import operators

SESSION_COOKIE = "deni_ops"
LOGIN_COOKIE = "deni_ops_login"
COOKIE_PATH = "/ops"
CSRF_FIELD = "csrf"
_CSRF_LABEL = b"deni/ops/csrf/v1"

# (method, path template) -> the permission it needs; None: any signed-in operator.
ROUTE_PERMISSIONS: dict[tuple[str, str], Permission | None] = {}
PUBLIC_ROUTES = {("GET", "/login"), ("POST", "/login"), ("GET", "/static/ops.css")}

F = TypeVar("F", bound=Callable[..., Any])


class CsrfFailed(DomainError):
    code = "csrf_failed"
    kind = ErrorKind.FORBIDDEN


def guarded(method: str, path: str, permission: Permission | None) -> Callable[[F], F]:
    """Records what `path` needs; the handler itself calls `operator_for(request, ...)`."""

    def record(handler: F) -> F:
        assert (method, path) not in ROUTE_PERMISSIONS, (method, path)
        ROUTE_PERMISSIONS[(method, path)] = permission
        return handler

    return record


def deni_of(request: Request) -> Deni:
    deni = request.app.state.deni
    assert isinstance(deni, Deni)
    return deni


def operator_for(request: Request, permission: Permission | None) -> Operator:
    token = request.cookies.get(SESSION_COOKIE, "")
    if not token or len(token) > 200:
        raise Unauthorized("Sign in to the console.", code="not_signed_in")
    operator = operators.session_operator(deni_of(request), token=token)
    if permission is not None:
        operator.require(permission)
    request.state.operator = operator
    return operator


def csrf_token(deni: Deni, secret_value: str) -> str:
    key = hmac.new(deni.pepper.encode(), _CSRF_LABEL, hashlib.sha256).digest()
    return hmac.new(key, secret_value.encode(), hashlib.sha256).hexdigest()


def session_csrf(request: Request) -> str:
    return csrf_token(deni_of(request), request.cookies.get(SESSION_COOKIE, ""))


def new_login_nonce() -> str:
    return secrets.token_urlsafe(24)


def check_form(request: Request, sent: str, *, against: str) -> None:
    """Refuses a POST from another site: a wrong or missing token, or a foreign Origin."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise CsrfFailed("This form came from another site.")
    expected = csrf_token(deni_of(request), against)
    if not against or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfFailed("This form has expired or did not come from the console; reload it.")


def check_session_form(request: Request, sent: str) -> None:
    check_form(request, sent, against=request.cookies.get(SESSION_COOKIE, ""))


def secure_cookies(request: Request) -> bool:
    return deni_of(request).settings.environment == "production"
