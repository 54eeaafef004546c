"""Web Push in SQL: subscriptions, the events each member chose, and the deliveries the worker
claims with a lease (like SMS, adapters/sms.py), so two workers never both send one."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, delete, or_, select, update

from deni.adapters.db import tables as t
from deni.adapters.db.engine import reading
from deni.adapters.db.push_tables import push_deliveries, push_preferences, push_subscriptions
from deni.adapters.db.upsert import insert_or_nothing
from deni.services.push_ports import PendingPush, PushSubscription

ERROR_CHARS_MAX = 200
FAN_OUT_MAX = 500  # (notification, subscription) pairs recorded per tick; the next takes more
KINDS_SEPARATOR = ","


def _subscription(row: Any) -> PushSubscription:
    return PushSubscription(
        id=row.id,
        user_id=row.user_id,
        endpoint=row.endpoint,
        p256dh=row.p256dh,
        auth=row.auth,
        created_at=row.created_at,
        expires_at=row.expires_at,
    )


class SqlPushStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def save_subscription(
        self, subscription: PushSubscription, *, keep_max: int, now: datetime
    ) -> None:
        assert 1 <= keep_max <= 100
        s = push_subscriptions
        with self._engine.begin() as connection:
            found = connection.execute(
                select(s.c.id, s.c.user_id).where(s.c.endpoint == subscription.endpoint)
            ).first()
            if found is not None and found.user_id == subscription.user_id:
                # The same browser of the same member: its newest keys, the rest as it was.
                connection.execute(
                    update(s)
                    .where(s.c.id == found.id)
                    .values(
                        p256dh=subscription.p256dh,
                        auth=subscription.auth,
                        expires_at=subscription.expires_at,
                    )
                )
                return
            if found is not None:
                # The same browser, another member signed in: it belongs to whoever subscribed
                # it last; what was still waiting for the first member is not sent.
                self._drop(connection, [found.id])
            connection.execute(
                s.insert().values(
                    id=subscription.id,
                    user_id=subscription.user_id,
                    endpoint=subscription.endpoint,
                    p256dh=subscription.p256dh,
                    auth=subscription.auth,
                    created_at=subscription.created_at,
                    expires_at=subscription.expires_at,
                )
            )
            mine = connection.execute(
                select(s.c.id)
                .where(s.c.user_id == subscription.user_id)
                .order_by(s.c.created_at.desc(), s.c.id.desc())
            ).scalars()
            self._drop(connection, list(mine)[keep_max:])

    def _drop(self, connection: Any, ids: Sequence[str]) -> None:
        if not ids:
            return
        d, s = push_deliveries, push_subscriptions
        connection.execute(delete(d).where(d.c.subscription_id.in_(ids)))
        connection.execute(delete(s).where(s.c.id.in_(ids)))

    def delete_subscription(self, *, user_id: str, endpoint: str) -> bool:
        s = push_subscriptions
        with self._engine.begin() as connection:
            found = connection.execute(
                select(s.c.id).where(s.c.endpoint == endpoint, s.c.user_id == user_id)
            ).first()
            if found is None:
                return False
            self._drop(connection, [found.id])
        return True

    def forget_subscription(self, subscription_id: str) -> None:
        with self._engine.begin() as connection:
            self._drop(connection, [subscription_id])

    def subscriptions_of(self, user_id: str) -> list[PushSubscription]:
        s = push_subscriptions
        query = select(s).where(s.c.user_id == user_id).order_by(s.c.created_at, s.c.id)
        with reading(self._engine) as connection:
            return [_subscription(row) for row in connection.execute(query)]

    def kinds_of(self, user_id: str) -> tuple[str, ...] | None:
        p = push_preferences
        with reading(self._engine) as connection:
            kinds = connection.execute(select(p.c.kinds).where(p.c.user_id == user_id)).scalar()
        if kinds is None:
            return None
        return tuple(kind for kind in kinds.split(KINDS_SEPARATOR) if kind)

    def set_kinds(self, user_id: str, kinds: Sequence[str], *, now: datetime) -> None:
        assert all(KINDS_SEPARATOR not in kind for kind in kinds)
        p = push_preferences
        values = {"kinds": KINDS_SEPARATOR.join(kinds), "updated_at": now}
        with self._engine.begin() as connection:
            changed = connection.execute(
                update(p).where(p.c.user_id == user_id).values(**values)
            ).rowcount
            if changed == 0:
                connection.execute(p.insert().values(user_id=user_id, **values))

    def enqueue_new(self, *, now: datetime, since: datetime, default_kinds: Sequence[str]) -> int:
        n, s, d, p = t.notifications, push_subscriptions, push_deliveries, push_preferences
        pairs = (
            select(n.c.id, s.c.id.label("subscription_id"), n.c.kind, p.c.kinds)
            .select_from(
                n.join(s, and_(s.c.user_id == n.c.user_id, n.c.created_at >= s.c.created_at))
                .outerjoin(p, p.c.user_id == n.c.user_id)
                .outerjoin(d, and_(d.c.notification_id == n.c.id, d.c.subscription_id == s.c.id))
            )
            .where(n.c.created_at >= since, d.c.notification_id.is_(None))
            .order_by(n.c.created_at, n.c.id)
            .limit(FAN_OUT_MAX)
        )
        added = 0
        with self._engine.begin() as connection:
            for row in connection.execute(pairs).all():
                chosen = default_kinds if row.kinds is None else row.kinds.split(KINDS_SEPARATOR)
                state = "pending" if row.kind in chosen else "skipped"
                values = {
                    "notification_id": row.id,
                    "subscription_id": row.subscription_id,
                    "state": state,
                    "attempts": 0,
                    "last_error": "",
                    "created_at": now,
                    "updated_at": now,
                }
                statement = insert_or_nothing(
                    connection,
                    d,
                    values,
                    conflict_columns=("notification_id", "subscription_id"),
                )
                inserted = connection.execute(statement).rowcount
                added += int(inserted == 1 and state == "pending")
        return added

    def claim_due(self, *, now: datetime, limit: int, lease_s: int) -> list[PendingPush]:
        assert 1 <= limit <= 1_000
        assert 1 <= lease_s <= 3_600
        n, s, d = t.notifications, push_subscriptions, push_deliveries
        due = or_(
            and_(
                d.c.state == "pending",
                or_(d.c.next_attempt_at.is_(None), d.c.next_attempt_at <= now),
            ),
            and_(d.c.state == "sending", d.c.claimed_until <= now),  # a lapsed lease
        )
        query = (
            select(
                d.c.notification_id,
                d.c.subscription_id,
                d.c.state,
                d.c.attempts,
                d.c.claimed_until,
                n.c.kind,
                n.c.language,
                n.c.body,
                n.c.loan_id,
                s,
            )
            .select_from(
                d.join(n, n.c.id == d.c.notification_id).join(s, s.c.id == d.c.subscription_id)
            )
            .where(due)
            .order_by(d.c.created_at, d.c.notification_id)
            .limit(limit)
        )
        until = now + timedelta(seconds=lease_s)
        claimed: list[PendingPush] = []
        with self._engine.begin() as connection:
            for row in connection.execute(query).all():
                same = and_(
                    d.c.notification_id == row.notification_id,
                    d.c.subscription_id == row.subscription_id,
                    d.c.state == row.state,
                    d.c.attempts == row.attempts,
                )
                taken = connection.execute(
                    update(d)
                    .where(same)
                    .values(
                        state="sending",
                        attempts=d.c.attempts + 1,
                        claimed_until=until,
                        updated_at=now,
                    )
                ).rowcount
                if taken != 1:
                    continue  # another worker got there first
                claimed.append(
                    PendingPush(
                        notification_id=row.notification_id,
                        subscription=_subscription(row),
                        kind=row.kind,
                        language=row.language,
                        body=row.body,
                        loan_id=row.loan_id,
                        attempts=row.attempts,
                    )
                )
        return claimed

    def mark_sent(self, notification_id: str, subscription_id: str, *, now: datetime) -> None:
        self._finish(notification_id, subscription_id, state="sent", now=now, error="", retry=None)

    def mark_failed(
        self,
        notification_id: str,
        subscription_id: str,
        *,
        now: datetime,
        error: str,
        retry_at: datetime | None,
    ) -> None:
        state = "pending" if retry_at is not None else "failed"
        self._finish(
            notification_id, subscription_id, state=state, now=now, error=error, retry=retry_at
        )

    def _finish(
        self,
        notification_id: str,
        subscription_id: str,
        *,
        state: str,
        now: datetime,
        error: str,
        retry: datetime | None,
    ) -> None:
        d = push_deliveries
        with self._engine.begin() as connection:
            connection.execute(
                update(d)
                .where(
                    d.c.notification_id == notification_id, d.c.subscription_id == subscription_id
                )
                .values(
                    state=state,
                    claimed_until=None,
                    next_attempt_at=retry,
                    last_error=error[:ERROR_CHARS_MAX],
                    updated_at=now,
                )
            )
