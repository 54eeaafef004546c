"""Web Push to the web app: which notifications may reach a phone, what a subscription must look
like, and what a push carries (the notification's text, never a secret).

Pure rules: the services validate with these, the adapters encrypt and send.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from deni.domain.errors import ValidationFailed

# The events a member may have pushed: the kinds notifications are stored with (the same ones
# SMS carries), grouped as the Settings screen shows them. Codes (a PIN reset code, a number's
# proof) are sent by SMS at once and never stored, and they are never pushed either.
PUSH_KIND_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "requests",
        (
            "loan_requested",
            "loan_request_changed",
            "loan_approved",
            "loan_awaiting_funds",
            "loan_declined",
            "loan_cancelled",
            "loan_expired",
        ),
    ),
    (
        "money",
        (
            "loan_disbursed",
            "loan_disbursed_mpesa",
            "repayment_received",
            "repayment_made",
            "loan_repaid",
            "loan_written_off",
            "wallet_credited",
            "payout_failed",
        ),
    ),
    ("reminders", ("due_soon", "due_today", "overdue", "lender_reminder")),
    ("security", ("pin_locked", "pin_locked_remote", "pin_reset")),
    ("sync", ("sync_rejected", "sync_conflict")),
)
PUSH_KINDS: tuple[str, ...] = tuple(kind for _, kinds in PUSH_KIND_GROUPS for kind in kinds)
NEVER_PUSHED: frozenset[str] = frozenset({"pin_reset_code", "phone_code", "phone_code_taken"})
assert not NEVER_PUSHED & set(PUSH_KINDS)
assert len(set(PUSH_KINDS)) == len(PUSH_KINDS)

SUBSCRIPTIONS_PER_MEMBER_MAX = 5  # phones and browsers; a sixth replaces the oldest
ENDPOINT_CHARS_MAX = 1_024  # push services' endpoints are a few hundred characters
P256DH_BYTES = 65  # an uncompressed P-256 point: 0x04, x, y
AUTH_SECRET_BYTES = 16
KEY_CHARS_MAX = 128  # base64url of the above, with room for padding
# The encrypted record must fit 4,096 bytes (RFC 8291: one record); the JSON stays well under.
PAYLOAD_BYTES_MAX = 3_000
BODY_CHARS_MAX = 918  # an SMS body's own bound (six parts); ours aim at one
PUSH_TTL_S = 24 * 3_600  # a push not delivered within a day is not worth showing
TOPIC_CHARS_MAX = 32  # RFC 8030: at most 32 characters of the URL-safe base64 alphabet
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# The push services browsers subscribe with (Chrome and Android, Firefox, Edge, Safari), by the
# end of their host names. The worker posts to whatever endpoint a member gave, so any other
# host is refused: no member can make Deni's servers call an address of their choosing.
PUSH_SERVICE_HOSTS: tuple[str, ...] = (
    "fcm.googleapis.com",
    "android.googleapis.com",
    "push.services.mozilla.com",
    "notify.windows.com",
    "push.apple.com",
)
APP_PATH = "/app/"


@dataclass(frozen=True, slots=True)
class SubscriptionKeys:
    """A browser's subscription, as checked: where to send, and the keys to encrypt with."""

    endpoint: str
    p256dh: str  # base64url, no padding
    auth: str  # base64url, no padding


def _b64url_bytes(value: str, field: str) -> bytes:
    if not value or len(value) > KEY_CHARS_MAX or not value.isascii():
        raise ValidationFailed(f"keys.{field} is not a key.", code="invalid_push_subscription")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as error:
        raise ValidationFailed(
            f"keys.{field} is not base64url.", code="invalid_push_subscription"
        ) from error


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def check_endpoint(endpoint: str, *, allow_loopback_http: bool) -> str:
    """The endpoint as given, if it is a browser's push service: https to a known push
    service's host (PUSH_SERVICE_HOSTS), no user name, port or fragment; plain http only to
    this machine's loopback, and only when allowed (the test environment's local push
    service)."""
    if not endpoint or len(endpoint) > ENDPOINT_CHARS_MAX or not endpoint.isascii():
        raise ValidationFailed("endpoint is not a push service URL.", code="invalid_push_endpoint")
    if any(c.isspace() or not c.isprintable() for c in endpoint):
        raise ValidationFailed("endpoint is not a push service URL.", code="invalid_push_endpoint")
    try:
        parts = urlsplit(endpoint)
        port = parts.port  # ValueError when it is not a number
    except ValueError as error:
        raise ValidationFailed(
            "endpoint is not a push service URL.", code="invalid_push_endpoint"
        ) from error
    host = (parts.hostname or "").lower()
    if not host or parts.username or parts.password or parts.fragment:
        raise ValidationFailed("endpoint is not a push service URL.", code="invalid_push_endpoint")
    if parts.scheme == "http" and allow_loopback_http and host in LOOPBACK_HOSTS and port:
        return endpoint
    if parts.scheme != "https":
        raise ValidationFailed("endpoint must be an https:// URL.", code="invalid_push_endpoint")
    if port not in (None, 443) or not is_push_service(host):
        raise ValidationFailed(
            "endpoint is not a browser's push service.", code="invalid_push_endpoint"
        )
    return endpoint


def is_push_service(host: str) -> bool:
    """One of the known push services' hosts, or a host under one of them."""
    return any(host == known or host.endswith("." + known) for known in PUSH_SERVICE_HOSTS)


def check_subscription(
    endpoint: str, p256dh: str, auth: str, *, allow_loopback_http: bool
) -> SubscriptionKeys:
    """A subscription whose endpoint may be reached and whose keys can encrypt, or a refusal."""
    checked = check_endpoint(endpoint, allow_loopback_http=allow_loopback_http)
    point = _b64url_bytes(p256dh, "p256dh")
    if len(point) != P256DH_BYTES or point[0] != 0x04:
        raise ValidationFailed(
            "keys.p256dh is not a P-256 public key.", code="invalid_push_subscription"
        )
    secret = _b64url_bytes(auth, "auth")
    if len(secret) != AUTH_SECRET_BYTES:
        raise ValidationFailed(
            "keys.auth is not a 16-byte secret.", code="invalid_push_subscription"
        )
    return SubscriptionKeys(endpoint=checked, p256dh=_b64url(point), auth=_b64url(secret))


def check_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    """The chosen kinds, in the Settings screen's order, or a refusal naming an unknown one."""
    chosen = list(kinds)
    if len(chosen) > len(PUSH_KINDS) * 2:
        raise ValidationFailed("Too many kinds.", code="invalid_push_kind")
    unknown = [kind for kind in chosen if kind not in PUSH_KINDS]
    if unknown:
        raise ValidationFailed(
            f"{unknown[0][:40]!r} is not a notification that can be pushed.",
            code="invalid_push_kind",
        )
    wanted = set(chosen)
    return tuple(kind for kind in PUSH_KINDS if kind in wanted)


def screen_for(kind: str, loan_id: str | None) -> str:
    """Where a tap on the notification opens the app: the loan it is about, or the screen the
    event belongs to (the web app's hash routes, js/app.js)."""
    if loan_id is not None:
        return f"{APP_PATH}#/loan/{loan_id}"
    if kind in ("wallet_credited", "payout_failed"):
        return f"{APP_PATH}#/statement"
    if kind in ("pin_locked", "pin_locked_remote", "pin_reset", "sync_rejected", "sync_conflict"):
        return f"{APP_PATH}#/settings"
    return f"{APP_PATH}#/"


def topic_for(notification_id: str) -> str:
    """The push's Topic header: the notification's id without its dashes (32 hex characters),
    so a resend of the same notification replaces the one the push service still holds."""
    topic = notification_id.replace("-", "")[:TOPIC_CHARS_MAX]
    assert topic
    assert all(c.isalnum() for c in topic)
    return topic


def payload(
    *, notification_id: str, kind: str, language: str, body: str, loan_id: str | None
) -> bytes:
    """The JSON a push carries, before encryption: the notification's own text in the member's
    language (already rendered when the event happened), where a tap opens the app, and the
    notification's id (the service worker tags the notification with it, so a repeat replaces
    rather than adds). No secret: codes are never stored as notifications, let alone pushed."""
    assert kind in PUSH_KINDS, kind
    assert kind not in NEVER_PUSHED
    text = body if len(body) <= BODY_CHARS_MAX else body[: BODY_CHARS_MAX - 1] + "…"
    message = {
        "id": notification_id,
        "kind": kind,
        "lang": language,
        "title": "Deni",
        "body": text,
        "url": screen_for(kind, loan_id),
    }
    encoded = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
    assert len(encoded) <= PAYLOAD_BYTES_MAX, len(encoded)
    return encoded
