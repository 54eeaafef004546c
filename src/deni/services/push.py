"""Web Push: a member subscribes a browser, chooses which events reach the phone, and the worker
sends each new notification of those events to each of the member's browsers.

Nothing is sent in a request. A command stores its notification as always (common.notify);
the housekeeping tick records a delivery per (notification, subscription) and sends the due
ones, each under the notification's id as its Topic, with bounded retries and backoff. A push
service that answers 404 or 410 has dropped the subscription, and so does Deni; one past the
browser's expirationTime is dropped without sending.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from deni.domain import push as rules
from deni.domain.errors import ValidationFailed
from deni.ids import new_id
from deni.services.push_ports import PushDeps, PushNotSent, PushSettings, PushSubscription

BATCH_MAX = 100
ATTEMPTS_MAX = 5
LEASE_S = 120
BACKOFF_FIRST_S = 30
BACKOFF_S_MAX = 3_600
# How far back each tick looks for notifications to fan out: far longer than a transaction can
# take to commit after its notification was stamped (a later commit of an earlier stamp is
# still found), short enough that each tick reads little. A worker down for longer than this
# pushes nothing of what happened meanwhile; the notifications and their SMS are still there.
LOOKBACK_S = 600
EXPIRATION_MS_MAX = 10**13  # epoch milliseconds: the year 2286; past it, not a time


@dataclass(frozen=True, slots=True)
class PushReport:
    enqueued: int
    sent: int
    retrying: int
    failed: int
    gone: int


def backoff_s(attempts: int) -> int:
    """Wait before the next attempt: 30 s, 60 s, 120 s, ... up to an hour."""
    assert attempts >= 1
    return int(min(BACKOFF_FIRST_S * (1 << min(attempts - 1, 16)), BACKOFF_S_MAX))


def public_key(deps: PushDeps) -> str:
    return deps.sender.public_key


def subscribe(
    deps: PushDeps,
    *,
    user_id: str,
    endpoint: str,
    p256dh: str,
    auth: str,
    expiration_time_ms: int | None,
) -> PushSettings:
    """Keep this browser's subscription for the member (a seventh browser replaces their
    oldest). A subscription that has already expired is refused."""
    keys = rules.check_subscription(
        endpoint, p256dh, auth, allow_loopback_http=deps.allow_loopback_http
    )
    now = deps.clock.now()
    expires_at = None
    if expiration_time_ms is not None:
        if not 0 < expiration_time_ms <= EXPIRATION_MS_MAX:
            raise ValidationFailed(
                "expirationTime is not a time.", code="invalid_push_subscription"
            )
        expires_at = datetime.fromtimestamp(expiration_time_ms / 1000, tz=UTC)
        if expires_at <= now:
            raise ValidationFailed(
                "This subscription has expired.", code="invalid_push_subscription"
            )
    subscription = PushSubscription(
        id=new_id(),
        user_id=user_id,
        endpoint=keys.endpoint,
        p256dh=keys.p256dh,
        auth=keys.auth,
        created_at=now,
        expires_at=expires_at,
    )
    deps.store.save_subscription(subscription, keep_max=rules.SUBSCRIPTIONS_PER_MEMBER_MAX, now=now)
    return settings_of(deps, user_id=user_id)


def unsubscribe(deps: PushDeps, *, user_id: str, endpoint: str) -> PushSettings:
    """Stop pushing to this browser. Another member's endpoint, or one never subscribed,
    changes nothing."""
    if 0 < len(endpoint) <= rules.ENDPOINT_CHARS_MAX:
        deps.store.delete_subscription(user_id=user_id, endpoint=endpoint)
    return settings_of(deps, user_id=user_id)


def choose_kinds(deps: PushDeps, *, user_id: str, kinds: Sequence[str]) -> PushSettings:
    """The events the member wants on their phones (none is a choice too)."""
    chosen = rules.check_kinds(kinds)
    deps.store.set_kinds(user_id, chosen, now=deps.clock.now())
    return settings_of(deps, user_id=user_id)


def settings_of(deps: PushDeps, *, user_id: str) -> PushSettings:
    kinds = deps.store.kinds_of(user_id)
    count = len(deps.store.subscriptions_of(user_id))
    return PushSettings(kinds=rules.PUSH_KINDS if kinds is None else kinds, subscriptions=count)


def export_of(deps: PushDeps, *, user_id: str) -> tuple[PushSettings, list[PushSubscription]]:
    """What Deni keeps of a member's Web Push, for their data export: the chosen events and
    their browsers' subscriptions."""
    return settings_of(deps, user_id=user_id), deps.store.subscriptions_of(user_id)


def deliver(
    deps: PushDeps, *, batch: int = BATCH_MAX, attempts_max: int = ATTEMPTS_MAX
) -> PushReport:
    """Record what is new, then send up to `batch` due pushes. Safe from several workers."""
    assert 1 <= batch <= BATCH_MAX
    assert 1 <= attempts_max <= 20
    now = deps.clock.now()
    enqueued = deps.store.enqueue_new(
        now=now, since=now - timedelta(seconds=LOOKBACK_S), default_kinds=rules.PUSH_KINDS
    )
    sent = retrying = failed = gone = 0
    for pending in deps.store.claim_due(now=now, limit=batch, lease_s=LEASE_S):
        subscription = pending.subscription
        attempt = pending.attempts + 1
        if subscription.expires_at is not None and subscription.expires_at <= deps.clock.now():
            deps.store.forget_subscription(subscription.id)
            gone += 1
            continue
        if pending.kind in rules.NEVER_PUSHED or pending.kind not in rules.PUSH_KINDS:
            deps.store.mark_failed(
                pending.notification_id,
                subscription.id,
                now=deps.clock.now(),
                error="never pushed",
                retry_at=None,
            )
            failed += 1
            continue
        message = rules.payload(
            notification_id=pending.notification_id,
            kind=pending.kind,
            language=pending.language,
            body=pending.body,
            loan_id=pending.loan_id,
        )
        try:
            deps.sender.send(
                subscription,
                message,
                topic=rules.topic_for(pending.notification_id),
                ttl_s=rules.PUSH_TTL_S,
            )
        except PushNotSent as error:
            at = deps.clock.now()
            if error.gone:
                deps.store.forget_subscription(subscription.id)
                gone += 1
            elif error.permanent or attempt >= attempts_max:
                deps.store.mark_failed(
                    pending.notification_id,
                    subscription.id,
                    now=at,
                    error=str(error),
                    retry_at=None,
                )
                failed += 1
            else:
                retry_at = at + timedelta(seconds=backoff_s(attempt))
                deps.store.mark_failed(
                    pending.notification_id,
                    subscription.id,
                    now=at,
                    error=str(error),
                    retry_at=retry_at,
                )
                retrying += 1
            continue
        deps.store.mark_sent(pending.notification_id, subscription.id, now=deps.clock.now())
        sent += 1
    return PushReport(enqueued, sent, retrying, failed, gone)
