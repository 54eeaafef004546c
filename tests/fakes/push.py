"""A push sender that keeps what it was asked to send and fails as told, per endpoint."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from deni.services.push_ports import PushNotSent, PushSubscription


@dataclass(frozen=True)
class SentPush:
    endpoint: str
    message: dict[str, Any]
    topic: str
    ttl_s: int


@dataclass
class FakePushSender:
    public_key: str = "BFakeKeyForTests"
    sent: list[SentPush] = field(default_factory=list)
    # Errors to raise, in turn, for an endpoint; then it succeeds.
    failures: dict[str, list[PushNotSent]] = field(default_factory=dict)
    attempts: int = 0

    def send(
        self, subscription: PushSubscription, payload: bytes, *, topic: str, ttl_s: int
    ) -> None:
        self.attempts += 1
        queued = self.failures.get(subscription.endpoint) or []
        if queued:
            raise queued.pop(0)
        message = json.loads(payload)
        self.sent.append(SentPush(subscription.endpoint, message, topic, ttl_s))
