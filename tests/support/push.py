"""A browser's side of Web Push for tests: its key pair and auth secret, a local push service (a
real HTTP server on loopback) that keeps what it receives, and decryption of what arrived."""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

PORTS = range(18300, 18400)  # this project's tests' own range for local push services
BODY_BYTES_MAX = 8 * 1024


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Browser:
    """What a browser makes when it subscribes: an EC P-256 key pair and a 16-byte secret."""

    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth_secret: bytes = field(default_factory=lambda: secrets.token_bytes(16))

    @property
    def p256dh(self) -> str:
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return b64url(point)

    @property
    def auth(self) -> str:
        return b64url(self.auth_secret)

    def subscription(self, endpoint: str, expiration_ms: int | None = None) -> dict[str, Any]:
        """As `PushSubscription.toJSON()` gives it."""
        return {
            "endpoint": endpoint,
            "expirationTime": expiration_ms,
            "keys": {"p256dh": self.p256dh, "auth": self.auth},
        }

    def decrypt(self, body: bytes) -> dict[str, Any]:
        """What the browser's push service hands its service worker (RFC 8291, aes128gcm)."""
        plain = http_ece.decrypt(
            body, private_key=self.private_key, auth_secret=self.auth_secret, version="aes128gcm"
        )
        message: dict[str, Any] = json.loads(plain)
        return message


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes


def verify_vapid(authorization: str, *, public_key: str, audience: str) -> dict[str, Any]:
    """RFC 8292: `vapid t=<JWT>,k=<key>`, the key the server's, the JWT signed by it (ES256)
    for this push service's origin. Returns the claims."""
    scheme, _, params = authorization.partition(" ")
    assert scheme == "vapid", authorization[:20]
    parts = dict(part.strip().split("=", 1) for part in params.split(","))
    assert parts["k"] == public_key
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(parts["k"]))
    claims: dict[str, Any] = jwt.decode(
        parts["t"], key=key, algorithms=["ES256"], audience=audience
    )
    return claims


class LocalPushService:
    """A push service on 127.0.0.1: answers each POST with the status set for its path (201 by
    default) and keeps what arrived."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.status_by_path: dict[str, list[int]] = {}  # statuses to answer, in turn
        self._lock = threading.Lock()
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                assert 0 <= length <= BODY_BYTES_MAX
                body = self.rfile.read(length)
                headers = {name.lower(): value for name, value in self.headers.items()}
                with service._lock:
                    service.received.append(Received(self.path, headers, body))
                    queued = service.status_by_path.get(self.path) or []
                    status = queued.pop(0) if queued else 201
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = _bind(Handler)
        self.port = self._server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def endpoint(self, name: str | None = None) -> str:
        return f"{self.origin}/push/{name or secrets.token_urlsafe(16)}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _bind(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    start = (os.getpid() * 7) % len(PORTS)  # parallel runs start at different ports
    for offset in range(len(PORTS)):
        port = PORTS[(start + offset) % len(PORTS)]
        try:
            return ThreadingHTTPServer(("127.0.0.1", port), handler)
        except OSError:
            continue
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


@contextmanager
def local_push_service() -> Iterator[LocalPushService]:
    service = LocalPushService()
    service.start()
    try:
        yield service
    finally:
        service.stop()


def free_port_in_range() -> int:
    for port in PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")
