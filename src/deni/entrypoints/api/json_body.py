"""Request bodies as JSON that is text: a string with a lone UTF-16 surrogate is refused.

JSON lets a string escape half of a surrogate pair ("\\ud800"), and Python's decoder (which also
lets raw bytes through with "surrogatepass") returns it as a str that cannot be encoded again:
the first database write, hash or log line of such a name or PIN fails. I-JSON (RFC 7493 §2.1)
forbids them; Deni answers them like any other body that is not JSON (400 `malformed_json`), at
the one place bodies are decoded, so no field of any route has to think of it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


def loads_text(body: bytes) -> Any:
    """json.loads, refusing any string (a key or a value, however deep) that is not Unicode
    text. The bytes are bounded by the route's body limit (limits.py)."""
    value = json.loads(body)
    if body.isascii() and b"\\u" not in body:
        return value  # most bodies: no escape and no byte that could carry a surrogate
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as error:
        raise json.JSONDecodeError(
            "a string holds a lone surrogate", body.decode("utf-8", "replace"), 0
        ) from error
    return value


class TextJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads_text(await self.body())
        return self._json


class TextJsonRoute(APIRoute):
    """The API's routes: their JSON bodies are decoded by loads_text."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def text_json_handler(request: Request) -> Response:
            return await handler(TextJsonRequest(request.scope, request.receive))

        return text_json_handler
