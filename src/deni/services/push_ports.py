"""Ports of Web Push: where subscriptions and deliveries are kept, and the sender that
encrypts and posts a push to a browser's push service."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from deni.services.ports import Clock


@dataclass(frozen=True, slots=True)
class PushSubscription:
    id: str
    user_id: str
    endpoint: str
    p256dh: str  # base64url
    auth: str  # base64url
    created_at: datetime
    expires_at: datetime | None  # the browser's expirationTime, when it gave one


@dataclass(frozen=True, slots=True)
class PendingPush:
    """One notification for one subscription, claimed for sending."""

    notification_id: str
    subscription: PushSubscription
    kind: str
    language: str
    body: str
    loan_id: str | None
    attempts: int  # earlier attempts, before this one


@dataclass(frozen=True, slots=True)
class PushSettings:
    kinds: tuple[str, ...]  # the events this member wants on their phones
    subscriptions: int  # how many browsers receive them


class PushStore(Protocol):
    """Subscriptions, each member's chosen events, and one delivery row per (notification,
    subscription). Every method is its own transaction."""

    def save_subscription(
        self, subscription: PushSubscription, *, keep_max: int, now: datetime
    ) -> None:
        """Insert; or, for an endpoint already kept, update its keys (the same member) or take
        it over (another member signed in on that browser); then drop this member's oldest
        beyond `keep_max`."""
        ...

    def delete_subscription(self, *, user_id: str, endpoint: str) -> bool:
        """Only the member's own; False when there was none."""
        ...

    def forget_subscription(self, subscription_id: str) -> None:
        """The push service said it is gone (404, 410) or it expired: drop it, and its
        deliveries still waiting."""
        ...

    def subscriptions_of(self, user_id: str) -> list[PushSubscription]: ...

    def kinds_of(self, user_id: str) -> tuple[str, ...] | None:
        """The member's choice, or None when they never chose (every kind)."""
        ...

    def set_kinds(self, user_id: str, kinds: Sequence[str], *, now: datetime) -> None: ...

    def enqueue_new(self, *, now: datetime, since: datetime, default_kinds: Sequence[str]) -> int:
        """Record a delivery for each notification made since `since` to each subscription its
        member had when it was made, of the kinds the member chose; returns how many. Safe to
        run again and from several processes (one row per pair, unique)."""
        ...

    def claim_due(self, *, now: datetime, limit: int, lease_s: int) -> list[PendingPush]: ...

    def mark_sent(self, notification_id: str, subscription_id: str, *, now: datetime) -> None: ...

    def mark_failed(
        self,
        notification_id: str,
        subscription_id: str,
        *,
        now: datetime,
        error: str,
        retry_at: datetime | None,
    ) -> None:
        """`retry_at` None: give up on this delivery for good."""
        ...


class PushNotSent(Exception):
    """The push service refused or could not be reached. `gone`: the subscription no longer
    exists (404, 410) and must be dropped; `permanent`: retrying this message cannot help."""

    def __init__(self, message: str, *, gone: bool = False, permanent: bool = False) -> None:
        super().__init__(message)
        self.gone = gone
        self.permanent = permanent or gone


class PushSender(Protocol):
    """Encrypts `payload` for the subscription (RFC 8291, aes128gcm), signs a VAPID token
    (RFC 8292) and posts it to the subscription's endpoint with `topic` (RFC 8030) as the
    message's identity: a retry of the same notification replaces, not adds."""

    @property
    def public_key(self) -> str:
        """The VAPID public key, base64url: what the browser subscribes with."""
        ...

    def send(
        self, subscription: PushSubscription, payload: bytes, *, topic: str, ttl_s: int
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class PushDeps:
    store: PushStore
    sender: PushSender
    clock: Clock
    allow_loopback_http: bool  # the test environment's local push endpoint
