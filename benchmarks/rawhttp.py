"""A load generator's HTTP/1.1 client: one keep-alive connection, one request at a time.

Raw asyncio streams rather than httpx: the generator shares two cores with the server it
measures, and httpx's per-request work would be charged to the client side of every figure.
"""

from __future__ import annotations

import asyncio

HOST = "127.0.0.1"
REQUEST_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0
HEAD_BYTES_MAX = 16_384
BODY_BYTES_MAX = 65_536
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


class HttpError(Exception):
    pass


class Connection:
    def __init__(self, port: int) -> None:
        self._port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, *, content_type: str) -> tuple[int, bytes]:
        """The status and body of the answer; HttpError if the connection failed."""
        try:
            return await asyncio.wait_for(self._post(path, body, content_type), REQUEST_TIMEOUT_S)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            self.close()
            raise HttpError("transport") from None

    async def _post(self, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
        reader, writer = self._reader, self._writer
        if reader is None or writer is None:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(HOST, self._port, limit=HEAD_BYTES_MAX),
                CONNECT_TIMEOUT_S,
            )
            self._reader, self._writer = reader, writer
        assert reader is not None
        assert writer is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {HOST}:{self._port}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        writer.write(head + body)
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        if not 0 <= length <= BODY_BYTES_MAX:
            raise HttpError("body too long")
        answer = await reader.readexactly(length)
        if close:
            self.close()
        return status, answer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
