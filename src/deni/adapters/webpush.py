"""Web Push through pywebpush: the payload encrypted for the browser (RFC 8291, aes128gcm), a
VAPID token signed with Deni's key (RFC 8292), posted to the subscription's push service
(RFC 8030) with the message's Topic, TTL and urgency.

The VAPID key pair comes from the settings (DENI_VAPID_PRIVATE_KEY, DENI_VAPID_PUBLIC_KEY,
DENI_VAPID_SUBJECT); production refuses to start without them (config_checks.py). Development
and test derive a stable pair from the PIN pepper, so every process of one installation signs
with the same key and subscriptions outlive restarts.
"""

from __future__ import annotations

import base64
import binascii

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid
from pywebpush import WebPushException, webpush

from deni.domain.secrecy import derive_key
from deni.services.push_ports import PushNotSent, PushSubscription

CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 10.0
VAPID_KEY_LABEL = "web-push-vapid"
DEVELOPMENT_SUBJECT = "mailto:push@deni.invalid"
# 404 and 410: the subscription is gone (the browser unsubscribed, or its push service dropped
# it). 400, 403 (our VAPID key is not the one it was made with), 413: this message can never
# be delivered. The rest (429, 5xx) may succeed later.
GONE_STATUSES = frozenset({404, 410})
PERMANENT_STATUSES = frozenset({400, 401, 403, 413})
_P256_ORDER = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64url(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def private_key_from_setting(value: str) -> ec.EllipticCurvePrivateKey:
    """DENI_VAPID_PRIVATE_KEY: the raw 32-byte scalar as base64url (what `vapid` and most
    Web Push tools print), a base64url DER key, or a PEM. ValueError if it is none of them."""
    text = value.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
        else:
            raw = _unb64url(text.replace("\n", ""))
            if len(raw) == 32:
                key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
            else:
                key = serialization.load_der_private_key(raw, password=None)
    except (ValueError, TypeError, binascii.Error):
        raise ValueError("not a P-256 private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError("not a P-256 private key")
    return key


def public_key_text(key: ec.EllipticCurvePrivateKey) -> str:
    """The public half, as the browser's applicationServerKey wants it: base64url of the
    uncompressed point (65 bytes)."""
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return _b64url(point)


def development_key(pepper: str) -> ec.EllipticCurvePrivateKey:
    """A stable key pair for development and test, derived from the pepper (never used in
    production, which must set its own)."""
    scalar = int.from_bytes(derive_key(pepper, VAPID_KEY_LABEL), "big") % (_P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


class PyWebPushSender:
    """The real sender. One HTTP session (connection reuse), bounded timeouts."""

    def __init__(self, *, private_key: ec.EllipticCurvePrivateKey, subject: str) -> None:
        assert subject.startswith(("mailto:", "https://")), "RFC 8292: a contact URI"
        self._vapid = Vapid(private_key)
        self._public_key = public_key_text(private_key)
        self._subject = subject
        self._session = requests.Session()
        self._session.max_redirects = 0  # a push service answers; it never sends us elsewhere

    @property
    def public_key(self) -> str:
        return self._public_key

    def send(
        self, subscription: PushSubscription, payload: bytes, *, topic: str, ttl_s: int
    ) -> None:
        assert payload
        assert 0 <= ttl_s <= 28 * 24 * 3_600
        info = {
            "endpoint": subscription.endpoint,
            "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
        }
        try:
            webpush(
                info,
                data=payload,  # bytes, sent as they are
                vapid_private_key=self._vapid,
                vapid_claims={"sub": self._subject},  # aud and exp added per message
                content_encoding="aes128gcm",
                headers={"Topic": topic, "Urgency": "normal"},
                ttl=ttl_s,
                timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
                requests_session=self._session,
            )
        except WebPushException as error:
            status = error.response.status_code if error.response is not None else None
            message = f"push service answered {status}"
            raise PushNotSent(
                message,
                gone=status in GONE_STATUSES,
                permanent=status in PERMANENT_STATUSES,
            ) from None
        except requests.RequestException as error:
            raise PushNotSent(
                f"push service unreachable: {type(error).__name__}", permanent=False
            ) from None

    def close(self) -> None:
        self._session.close()
