"""HTTP client for the Deni server: login, refresh, and the sync endpoints. Explicit timeouts.

Errors come back as two kinds:
- `Transient`: the network failed, or the server said try later (5xx, 429, 503). Retry with
  backoff; nothing is known to have failed for good.
- `ApiError`: the server answered with a definite error (`{"error": {"code", "message"}}`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import httpx

API_PREFIX: Final = "/api/v1"
CONNECT_TIMEOUT_S: Final = 3.0
READ_TIMEOUT_S: Final = 15.0
WRITE_TIMEOUT_S: Final = 15.0
POOL_TIMEOUT_S: Final = 3.0
RETRY_AFTER_S_MAX: Final = 60.0
TRANSIENT_STATUSES: Final = frozenset({429, 500, 502, 503, 504})


class OfflineError(Exception):
    """Base of the client's errors; `message` is for people."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Transient(OfflineError):
    """Could not reach the server, or it asked to be tried again later."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ApiError(OfflineError):
    """A definite answer: the request was understood and refused."""

    def __init__(
        self, message: str, *, status: int, code: str, body: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.body = body or {}


@dataclass(frozen=True, slots=True)
class Session:
    user_id: str
    access_token: str
    refresh_token: str
    expires_in_s: int


def _timeout() -> httpx.Timeout:
    return httpx.Timeout(
        connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S, write=WRITE_TIMEOUT_S, pool=POOL_TIMEOUT_S
    )


class Api:
    """One server. `transport` lets tests put a fault (a lost response) on the wire."""

    def __init__(
        self,
        base_url: str,
        *,
        access_token: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        assert base_url.startswith(("http://", "https://")), "a server URL"
        self.base_url = base_url.rstrip("/")
        self.access_token = access_token
        self._http = httpx.Client(
            base_url=self.base_url + API_PREFIX, timeout=_timeout(), transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- auth ---------------------------------------------------------------------------------

    def login(self, *, phone: str, pin: str) -> Session:
        body = self._call("POST", "/auth/login", json={"phone": phone, "pin": pin}, auth=False)
        return _session(body)

    def refresh(self, *, refresh_token: str) -> Session:
        body = self._call(
            "POST", "/auth/refresh", json={"refresh_token": refresh_token}, auth=False
        )
        return _session(body)

    def me(self) -> dict[str, Any]:
        return self._call("GET", "/me")

    def ask_registration_code(self, *, phone: str, language: str) -> str:
        """Deni sends the number a code by SMS; the server's answer says the same for any
        number. Returns that answer."""
        body = self._call(
            "POST",
            "/auth/register/code",
            json={"phone": phone, "language": language},
            auth=False,
        )
        return str(body.get("message", ""))

    def register(
        self, *, phone: str, code: str, name: str, pin: str, language: str
    ) -> dict[str, Any]:
        body = {"phone": phone, "code": code, "name": name, "pin": pin, "language": language}
        return self._call("POST", "/auth/register", json=body, auth=False)

    def ask_phone_code(self) -> dict[str, Any]:
        return self._call("POST", "/me/phone/code")

    def confirm_phone(self, *, code: str) -> dict[str, Any]:
        return self._call("POST", "/me/phone/confirm", json={"code": code})

    # -- sync ---------------------------------------------------------------------------------

    def push(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/sync/push", json=body)

    def pull(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._call("GET", "/sync/pull", params=params)

    def dead_letters(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._call("GET", "/sync/dead-letters", params=params)

    def call(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return self._call(method, path, json=json, params=params)

    # -- plumbing -----------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        auth: bool = True,
    ) -> dict[str, Any]:
        headers = {}
        if auth:
            if self.access_token is None:
                raise ApiError(
                    "Not logged in: run `deni offline login` while online.",
                    status=401,
                    code="not_logged_in",
                )
            headers["Authorization"] = f"Bearer {self.access_token}"
        try:
            response = self._http.request(method, path, json=json, params=params, headers=headers)
        except httpx.TimeoutException as error:
            raise Transient(
                f"The server did not answer in time ({type(error).__name__})."
            ) from error
        except httpx.TransportError as error:
            raise Transient(f"Cannot reach {self.base_url} ({type(error).__name__}).") from error
        return _answer(response)


def _answer(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success:
        if not isinstance(body, dict):
            raise Transient(f"The server answered {response.status_code} without a JSON object.")
        return body
    error = body.get("error") if isinstance(body, dict) else None
    code = str(error.get("code", "error")) if isinstance(error, dict) else "error"
    message = (
        str(error.get("message", "")) if isinstance(error, dict) else response.text[:200]
    ) or f"HTTP {response.status_code}"
    if response.status_code in TRANSIENT_STATUSES:
        raise Transient(
            f"The server is busy ({response.status_code} {code}): {message}",
            retry_after_s=_retry_after_s(response),
        )
    raise ApiError(
        message,
        status=response.status_code,
        code=code,
        body=body if isinstance(body, dict) else None,
    )


def _retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_S_MAX)


def _session(body: dict[str, Any]) -> Session:
    return Session(
        user_id=str(body["user_id"]),
        access_token=str(body["access_token"]),
        refresh_token=str(body["refresh_token"]),
        expires_in_s=int(body.get("expires_in", 0)),
    )
