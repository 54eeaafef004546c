"""Users in memory, with the SQL repository's unique phone and its erasure on closing."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from deni.domain.security import REMOTE_WRONG_PINS_PER_DAY_MAX
from deni.domain.users import CLOSED_NAME, User, closed_phone, shown_contact
from tests.fakes.tables import ConstraintViolated, Tables


class FakeUserRepository:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def add(self, user: User) -> None:
        if user.id in self._t.users:
            raise ConstraintViolated(f"users.id {user.id} is taken")
        self._store(user)

    def get(self, user_id: str) -> User | None:
        user = self._t.users.get(user_id)
        return replace(user) if user is not None else None

    def get_by_phone(self, phone: str) -> User | None:
        return next((replace(u) for u in self._t.users.values() if u.phone == phone), None)

    def find(self, *, ids: Collection[str] = (), phones: Collection[str] = ()) -> list[User]:
        wanted_ids, wanted_phones = set(ids), set(phones)
        return [
            replace(u)
            for u in self._t.users.values()
            if u.id in wanted_ids or u.phone in wanted_phones
        ]

    def contacts(self, user_ids: Collection[str]) -> dict[str, tuple[str, str]]:
        found = self.find(ids=list(user_ids))
        return {u.id: shown_contact(u.name, u.phone, closed=u.is_closed) for u in found}

    def lock(self, user_id: str) -> User | None:
        return self.get(user_id)

    def save(self, user: User, now: datetime) -> None:
        assert user.id in self._t.users, "save() updates a user that was added"
        self._store(user)

    def close(self, user_id: str, *, now: datetime) -> None:
        """What adapters/db/erasure.py erases, of the tables this fake keeps."""
        user = self._t.users[user_id]
        t = self._t
        t.notifications = {k: n for k, n in t.notifications.items() if n.user_id != user_id}
        t.tokens = {k: row for k, row in t.tokens.items() if row.token.user_id != user_id}
        t.pin_resets.pop(user_id, None)
        t.phone_codes.pop(user.phone, None)
        t.idempotency = {k: row for k, row in t.idempotency.items() if k[0] != user_id}
        t.mpesa_preferences.pop(user_id, None)
        t.sms_outbox = [row for row in t.sms_outbox if row.phone != user.phone]
        self._store(
            replace(
                user,
                name=CLOSED_NAME,
                phone=closed_phone(user_id),
                pin_hash="",
                failed_pin_attempts=0,
                locked_until=None,
                closed_at=now,
            )
        )

    def release_phone(self, user_id: str, *, now: datetime) -> None:
        # SMS not yet sent are not modelled here: the SMS queue is a port of its own.
        self._t.pin_resets.pop(user_id, None)
        self._store(replace(self._t.users[user_id], phone=closed_phone(user_id)))

    def _store(self, user: User) -> None:
        holder = self.get_by_phone(user.phone)
        if holder is not None and holder.id != user.id:
            raise ConstraintViolated(f"users.phone {user.phone} is taken")
        # Stored as the SQL columns keep them: wrong-PIN times in whole seconds, rounded up.
        self._t.users[user.id] = replace(
            user,
            remote_wrong_pins_at=_whole_seconds(user.remote_wrong_pins_at),
            session_wrong_pins_at=_whole_seconds(user.session_wrong_pins_at),
        )


def _whole_seconds(times: Sequence[datetime]) -> tuple[datetime, ...]:
    assert len(times) <= REMOTE_WRONG_PINS_PER_DAY_MAX
    return tuple(datetime.fromtimestamp(math.ceil(at.timestamp()), UTC) for at in times)
