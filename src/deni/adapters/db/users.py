"""SQL for members: read once per transaction, locked when a PIN or its attempts matter."""

from __future__ import annotations

import functools
import math
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    Select,
    and_,
    bindparam,
    func,
    or_,
    select,
    update,
)

from deni.adapters.db import tables as t
from deni.adapters.db.erasure import erase_person, release_phone
from deni.adapters.db.sync.tables import log_changes, sync_profile_fields
from deni.domain.security import REMOTE_WRONG_PINS_PER_DAY_MAX
from deni.domain.users import User, shown_contact

PROFILE_FIELDS = ("name", "language")  # what a user's sync record shows and may edit


# Built once: a statement built per call costs SQLAlchemy more than the round trip it makes.
_USER_BY_ID = select(t.users).where(t.users.c.id == bindparam("id"))
_USER_BY_PHONE = select(t.users).where(t.users.c.phone == bindparam("phone"))
_USER_LOCK = _USER_BY_ID.with_for_update(key_share=True)
USERS_SHAPES_BUILT_MAX = 8  # up to this many ids and phones: a statement built once per shape
_USERS_BY_IDS_OR_PHONES_MANY = select(t.users).where(
    or_(
        t.users.c.id.in_(bindparam("ids", expanding=True)),
        t.users.c.phone.in_(bindparam("phones", expanding=True)),
    )
)


@functools.cache
def _users_by_ids_or_phones(ids: int, phones: int) -> Select[Any]:
    """Users with any of `ids` ids (:id0, ...) or `phones` phones (:phone0, ...). One statement
    per shape, built once: an expanding IN is rebuilt on every call."""
    assert 0 < ids + phones <= USERS_SHAPES_BUILT_MAX
    matches = [t.users.c.id == bindparam(f"id{i}") for i in range(ids)]
    matches += [t.users.c.phone == bindparam(f"phone{i}") for i in range(phones)]
    return select(t.users).where(or_(*matches))


class SqlUserRepository:
    """Users, remembered for the rest of the transaction once read.

    A sync push group or a callback batch reads the same few people again and again. A
    remembered user may be older than a concurrent commit; what a command relies on being
    current (the PIN, its attempts, the lock) is read with lock(), which always goes to the
    database. Nothing else about a user is money: a name in a notification may be a moment
    old. Callers get copies (services change users in place before saving them), and a
    rolled-back savepoint makes the repository forget everything (forget()).
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._known: dict[str, User] = {}  # by id
        self._ids_by_phone: dict[str, str] = {}

    def _remember(self, user: User) -> User:
        self._known[user.id] = user
        self._ids_by_phone[user.phone] = user.id
        return replace(user)

    def _known_copy(self, user_id: str) -> User | None:
        user = self._known.get(user_id)
        return replace(user) if user is not None else None

    def forget(self) -> None:
        """Writes to users were rolled back: what was remembered may be wrong now."""
        self._known.clear()
        self._ids_by_phone.clear()

    def close(self, user_id: str, *, now: datetime) -> None:
        erase_person(self._connection, user_id, now=now)
        self.forget()

    def release_phone(self, user_id: str, *, now: datetime) -> None:
        release_phone(self._connection, user_id, now=now)
        self.forget()

    def add(self, user: User) -> None:
        self._connection.execute(
            t.users.insert().values(**_user_values(user), updated_at=user.created_at)
        )
        self._remember(user)
        # Profile edits log their own change (services/sync_profile); PIN attempts are private.
        log_changes(self._connection, [(user.id, "user", user.id, "put")], user.created_at)

    def get(self, user_id: str) -> User | None:
        if (known := self._known_copy(user_id)) is not None:
            return known
        row = self._connection.execute(_USER_BY_ID, {"id": user_id}).first()
        return self._remember(user_from_row(row)) if row else None

    def get_by_phone(self, phone: str) -> User | None:
        if (user_id := self._ids_by_phone.get(phone)) is not None:
            return self._known_copy(user_id)
        row = self._connection.execute(_USER_BY_PHONE, {"phone": phone}).first()
        return self._remember(user_from_row(row)) if row else None

    def find(self, *, ids: Collection[str] = (), phones: Collection[str] = ()) -> list[User]:
        if (known := self._all_known(ids, phones)) is not None:
            return known
        if len(ids) + len(phones) > USERS_SHAPES_BUILT_MAX:  # a batch: rebuilding is amortised
            params: dict[str, Any] = {"ids": list(ids), "phones": list(phones)}
            rows = self._connection.execute(_USERS_BY_IDS_OR_PHONES_MANY, params)
            return [self._remember(user_from_row(row)) for row in rows]
        query = _users_by_ids_or_phones(len(ids), len(phones))
        params = {f"id{i}": user_id for i, user_id in enumerate(ids)}
        params.update({f"phone{i}": phone for i, phone in enumerate(phones)})
        return [
            self._remember(user_from_row(row)) for row in self._connection.execute(query, params)
        ]

    def _all_known(self, ids: Collection[str], phones: Collection[str]) -> list[User] | None:
        """Copies of the users asked for if every one of them is remembered, else None."""
        wanted = set(ids)
        for phone in phones:
            if (user_id := self._ids_by_phone.get(phone)) is None:
                return None
            wanted.add(user_id)
        if not wanted <= self._known.keys():
            return None
        return [replace(self._known[user_id]) for user_id in wanted]

    def contacts(self, user_ids: Collection[str]) -> dict[str, tuple[str, str]]:
        found = self.find(ids=list(user_ids))
        return {u.id: shown_contact(u.name, u.phone, closed=u.is_closed) for u in found}

    def lock(self, user_id: str) -> User | None:
        # FOR NO KEY UPDATE: rows that merely point at this user (a notification, a posting)
        # can still be written by others meanwhile; FOR UPDATE would make those inserts wait
        # and could close a deadlock cycle with a deposit.
        row = self._connection.execute(_USER_LOCK, {"id": user_id}).first()
        return self._remember(user_from_row(row)) if row else None

    def save(self, user: User, now: datetime) -> None:
        values = _user_values(user)
        del values["id"], values["created_at"]
        u = t.users.c
        before = self._connection.execute(
            select(u.name, u.language, u.phone_proven_at).where(u.id == user.id)
        ).one()
        self._connection.execute(
            update(t.users).where(t.users.c.id == user.id).values(**values, updated_at=now)
        )
        self._remember(replace(user))
        changed = [f for f in PROFILE_FIELDS if getattr(before, f) != getattr(user, f)]
        if changed:
            self._bump_profile_versions(user.id, changed, now)
        if changed or (before.phone_proven_at is None) != (user.phone_proven_at is None):
            # The user's sync record shows whether the number is proven, but nobody edits it.
            log_changes(self._connection, [(user.id, "user", user.id, "put")], now)

    def _bump_profile_versions(self, user_id: str, fields: Sequence[str], now: datetime) -> None:
        """Per-field server versions for last-writer-wins (sync); the caller locked the user."""
        p = sync_profile_fields
        current = self._connection.execute(
            select(func.coalesce(func.max(p.c.version), 0)).where(p.c.user_id == user_id)
        ).scalar_one()
        version = int(current) + 1
        for field in fields:
            where = and_(p.c.user_id == user_id, p.c.field == field)
            result = self._connection.execute(
                update(p).where(where).values(version=version, updated_at=now)
            )
            if result.rowcount == 0:
                self._connection.execute(
                    p.insert().values(user_id=user_id, field=field, version=version, updated_at=now)
                )


def _user_values(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "phone": user.phone,
        "name": user.name,
        "language": user.language,
        "pin_hash": user.pin_hash,
        "failed_pin_attempts": user.failed_pin_attempts,
        "lock_count": user.lock_count,
        "locked_until": user.locked_until,
        "pin_reset_at": user.pin_reset_at,
        "closed_at": user.closed_at,
        "support_locked_at": user.support_locked_at,
        "session_epoch": user.session_epoch,
        "remote_failed_pin_attempts": user.remote_failed_pin_attempts,
        "remote_lock_count": user.remote_lock_count,
        "remote_locked_until": user.remote_locked_until,
        "remote_wrong_pins_at": _unix_seconds_csv(user.remote_wrong_pins_at),
        "session_failed_pin_attempts": user.session_failed_pin_attempts,
        "session_lock_count": user.session_lock_count,
        "session_locked_until": user.session_locked_until,
        "session_wrong_pins_at": _unix_seconds_csv(user.session_wrong_pins_at),
        "phone_proven_at": user.phone_proven_at,
        "created_at": user.created_at,
    }


def _unix_seconds_csv(times: Sequence[datetime]) -> str:
    assert len(times) <= REMOTE_WRONG_PINS_PER_DAY_MAX
    # Rounded up: a guess then stays in the window a fraction longer, never shorter.
    return ",".join(str(math.ceil(at.timestamp())) for at in times)


def _times_of_csv(text: str) -> tuple[datetime, ...]:
    parts = [part for part in text.split(",") if part.isdigit()][-REMOTE_WRONG_PINS_PER_DAY_MAX:]
    return tuple(datetime.fromtimestamp(int(part), UTC) for part in parts)


def user_from_row(row: Row[Any]) -> User:
    return User(
        id=row.id,
        phone=row.phone,
        name=row.name,
        language=row.language,
        pin_hash=row.pin_hash,
        created_at=row.created_at,
        failed_pin_attempts=row.failed_pin_attempts,
        lock_count=row.lock_count,
        locked_until=row.locked_until,
        pin_reset_at=row.pin_reset_at,
        closed_at=row.closed_at,
        support_locked_at=row.support_locked_at,
        session_epoch=row.session_epoch,
        remote_failed_pin_attempts=row.remote_failed_pin_attempts,
        remote_lock_count=row.remote_lock_count,
        remote_locked_until=row.remote_locked_until,
        remote_wrong_pins_at=_times_of_csv(row.remote_wrong_pins_at),
        session_failed_pin_attempts=row.session_failed_pin_attempts,
        session_lock_count=row.session_lock_count,
        session_locked_until=row.session_locked_until,
        session_wrong_pins_at=_times_of_csv(row.session_wrong_pins_at),
        phone_proven_at=row.phone_proven_at,
    )
