"""Web Push for the signed-in member: the server's public VAPID key, subscribing a browser,
unsubscribing it, and choosing which events reach the phone (docs/notifications.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field, StrictInt, StrictStr

from deni.domain import push as rules
from deni.entrypoints.api.deps import DeniDep, UserId
from deni.entrypoints.api.json_body import TextJsonRoute
from deni.entrypoints.api.schemas import Strict
from deni.services import push
from deni.services.push_ports import PushSettings

router = APIRouter(tags=["notifications"], route_class=TextJsonRoute)
# A subscription is an endpoint (at most 1,024 characters) and two short keys.
BODY_BYTES_MAX = 4 * 1024

Key = Annotated[StrictStr, Field(min_length=1, max_length=rules.KEY_CHARS_MAX)]
Endpoint = Annotated[StrictStr, Field(min_length=1, max_length=rules.ENDPOINT_CHARS_MAX)]


class PushKeyOut(BaseModel):
    public_key: str = Field(description="VAPID public key, base64url: the applicationServerKey.")


class SubscriptionKeysIn(Strict):
    p256dh: Key
    auth: Key


class SubscriptionIn(Strict):
    """What the browser's `PushSubscription.toJSON()` gives."""

    endpoint: Endpoint
    expirationTime: StrictInt | None = None  # noqa: N815 (the browser's own name)
    keys: SubscriptionKeysIn


class UnsubscribeIn(Strict):
    endpoint: Endpoint


class PushKindsIn(Strict):
    kinds: list[Annotated[StrictStr, Field(max_length=40)]] = Field(
        max_length=2 * len(rules.PUSH_KINDS)
    )


class PushGroupOut(BaseModel):
    group: str
    kinds: list[str]


class PushSettingsOut(BaseModel):
    kinds: list[str] = Field(description="The events pushed to this member's browsers.")
    subscriptions: int = Field(description="How many browsers receive them.")
    groups: list[PushGroupOut] = Field(description="Every event that can be pushed, grouped.")

    @classmethod
    def of(cls, found: PushSettings) -> PushSettingsOut:
        return cls(
            kinds=list(found.kinds),
            subscriptions=found.subscriptions,
            groups=[PushGroupOut(group=g, kinds=list(k)) for g, k in rules.PUSH_KIND_GROUPS],
        )


@router.get("/push/key", response_model=PushKeyOut)
def public_key(deni: DeniDep) -> PushKeyOut:
    """The key a browser subscribes with (`PushManager.subscribe`'s applicationServerKey)."""
    return PushKeyOut(public_key=push.public_key(deni.push))


@router.get("/me/push", response_model=PushSettingsOut)
def settings(user_id: UserId, deni: DeniDep) -> PushSettingsOut:
    """Which events reach your phones, and how many browsers are subscribed."""
    return PushSettingsOut.of(push.settings_of(deni.push, user_id=user_id))


@router.put("/me/push/subscription", response_model=PushSettingsOut)
def subscribe(body: SubscriptionIn, user_id: UserId, deni: DeniDep) -> PushSettingsOut:
    """Send your notifications to this browser too. The same endpoint again replaces its keys;
    beyond five browsers the oldest stops receiving."""
    found = push.subscribe(
        deni.push,
        user_id=user_id,
        endpoint=body.endpoint,
        p256dh=body.keys.p256dh,
        auth=body.keys.auth,
        expiration_time_ms=body.expirationTime,
    )
    return PushSettingsOut.of(found)


@router.post("/me/push/unsubscribe", response_model=PushSettingsOut)
def unsubscribe(body: UnsubscribeIn, user_id: UserId, deni: DeniDep) -> PushSettingsOut:
    """Stop sending to this browser. Safe to repeat; another member's browser is left alone."""
    return PushSettingsOut.of(push.unsubscribe(deni.push, user_id=user_id, endpoint=body.endpoint))


@router.put("/me/push/kinds", response_model=PushSettingsOut)
def choose_kinds(body: PushKindsIn, user_id: UserId, deni: DeniDep) -> PushSettingsOut:
    """The events that reach your phones (the rest still arrive by SMS and in the app)."""
    return PushSettingsOut.of(push.choose_kinds(deni.push, user_id=user_id, kinds=body.kinds))
