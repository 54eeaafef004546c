"""Request bodies are counted while they arrive, never read whole first.

A pure ASGI middleware (no buffering): a declared Content-Length over the route's limit is
refused before a byte of the body is read, and a body that arrives without one (chunked) is
refused as soon as the bytes received pass the limit. Either way the answer is 413
`body_too_large` in the API's error envelope, with `Connection: close`, so the server stops
reading the rest. A client that goes away in the middle of its body is no server error: the
request ends as 499 `client_disconnected` (nobody receives it; the access log shows it).
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deni.entrypoints.errors import error_response

# Every JSON command of the API is far below this; the routes that need more say so.
BODY_BYTES_MAX = 64 * 1024
# No status of HTTP's own says "the client went away"; 499 is the one proxies log for it.
CLIENT_CLOSED_REQUEST = 499
_CONTENT_LENGTH_DIGITS_MAX = 19  # anything longer is far past every limit anyway


class BodyTooLarge(HTTPException):
    """Raised from `receive` when the bytes received pass the limit. An HTTPException, so
    FastAPI's body parsing lets it through to the app's handler (it wraps other errors)."""

    def __init__(self, body_bytes_max: int) -> None:
        super().__init__(
            413,
            detail=f"The request body is over {body_bytes_max} bytes.",
            headers={"Connection": "close"},
        )


class ClientDisconnected(HTTPException):
    """Raised from `receive` when the client leaves before its body is complete."""

    def __init__(self) -> None:
        super().__init__(CLIENT_CLOSED_REQUEST, detail="The client closed the request.")


class BodyLimitMiddleware:
    """Per-route body limits by path prefix (the longest prefix wins), a default elsewhere."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        body_bytes_max: int = BODY_BYTES_MAX,
        route_body_bytes_max: Sequence[tuple[str, int]] = (),
    ) -> None:
        assert body_bytes_max > 0
        assert all(prefix.startswith("/") and limit > 0 for prefix, limit in route_body_bytes_max)
        self.app = app
        self.body_bytes_max = body_bytes_max
        self.route_body_bytes_max = sorted(route_body_bytes_max, key=lambda p: -len(p[0]))

    def bytes_max_for(self, path: str) -> int:
        for prefix, limit in self.route_body_bytes_max:
            if path.startswith(prefix):
                return limit
        return self.body_bytes_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_bytes_max = self.bytes_max_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > body_bytes_max:
            await _answer(BodyTooLarge(body_bytes_max), scope, receive, send)
            return
        received_bytes = 0
        body_complete = False
        response_started = False

        async def counted_receive() -> Message:
            nonlocal received_bytes, body_complete
            message = await receive()
            if body_complete:
                return message
            if message["type"] == "http.request":
                received_bytes += len(message.get("body", b""))
                if received_bytes > body_bytes_max:
                    raise BodyTooLarge(body_bytes_max)
                body_complete = not message.get("more_body", False)
            elif message["type"] == "http.disconnect":
                raise ClientDisconnected
            return message

        async def noted_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, noted_send)
        except (BodyTooLarge, ClientDisconnected) as error:
            # The app's own handler answers these; this is for code outside its reach.
            if not response_started:
                await _answer(error, scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            text = value.strip()
            if text.isdigit() and len(text) <= _CONTENT_LENGTH_DIGITS_MAX:
                return int(text)
            return None  # the server itself refuses a malformed one
    return None


async def _answer(error: HTTPException, scope: Scope, receive: Receive, send: Send) -> None:
    code = "body_too_large" if error.status_code == 413 else "client_disconnected"
    response = error_response(error.status_code, code, error.detail)
    response.headers.update(error.headers or {})
    await response(scope, receive, send)
