"""Members' passkeys (public keys only) and the challenges of their ceremonies (migration 0022).

A challenge row lives from the options Deni hands out to the one answer that takes it
(`DELETE … RETURNING`: two answers racing for it cannot both have it), or until it lapses and
is pruned.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    and_,
    delete,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from deni.adapters.db.tables import ID, UtcDateTime, metadata
from deni.domain.passkeys import Challenge, ChallengePurpose, Passkey

passkeys = Table(
    "passkeys",
    metadata,
    Column("id", ID, primary_key=True),
    Column("user_id", ID, ForeignKey("users.id"), nullable=False, index=True),
    # The authenticator's id for the key pair, and its public half (COSE): no secret.
    Column("credential_id", LargeBinary, nullable=False, unique=True),
    Column("public_key", LargeBinary, nullable=False),
    Column("sign_count", Integer, nullable=False, default=0),
    Column("name", String(40), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_used_at", UtcDateTime, nullable=True),
)

passkey_challenges = Table(
    "passkey_challenges",
    metadata,
    Column("id", ID, primary_key=True),
    Column("purpose", String(16), nullable=False),
    Column("user_id", ID, nullable=True),
    # The action a money-out challenge approves (domain/passkeys.py action_binding); "" else.
    Column("binding", String(200), nullable=False, default=""),
    Column("challenge", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Index("ix_passkey_challenges_expires_at", "expires_at"),
)


def _passkey(row: Any) -> Passkey:
    return Passkey(
        id=row.id,
        user_id=row.user_id,
        credential_id=bytes(row.credential_id),
        public_key=bytes(row.public_key),
        sign_count=row.sign_count,
        name=row.name,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
    )


def _challenge(row: Any) -> Challenge:
    return Challenge(
        id=row.id,
        purpose=ChallengePurpose(row.purpose),
        user_id=row.user_id,
        binding=row.binding,
        challenge=bytes(row.challenge),
        created_at=row.created_at,
        expires_at=row.expires_at,
    )


class SqlPasskeyRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, passkey: Passkey) -> bool:
        values = {
            "id": passkey.id,
            "user_id": passkey.user_id,
            "credential_id": passkey.credential_id,
            "public_key": passkey.public_key,
            "sign_count": passkey.sign_count,
            "name": passkey.name,
            "created_at": passkey.created_at,
            "last_used_at": passkey.last_used_at,
        }
        insert = pg_insert if self._connection.dialect.name == "postgresql" else sqlite_insert
        statement = insert(passkeys).values(values).on_conflict_do_nothing()
        # A conflict returns no row (rowcount is not to be trusted with ON CONFLICT).
        return self._connection.execute(statement.returning(passkeys.c.id)).first() is not None

    def owner_of(self, credential_id: bytes) -> str | None:
        query = select(passkeys.c.user_id).where(passkeys.c.credential_id == credential_id)
        found = self._connection.execute(query).scalar_one_or_none()
        return None if found is None else str(found)

    def lock_by_credential(self, credential_id: bytes) -> Passkey | None:
        query = select(passkeys).where(passkeys.c.credential_id == credential_id)
        row = self._connection.execute(query.with_for_update()).first()
        return None if row is None else _passkey(row)

    def for_user(self, user_id: str, *, limit: int) -> list[Passkey]:
        query = (
            select(passkeys)
            .where(passkeys.c.user_id == user_id)
            .order_by(passkeys.c.created_at, passkeys.c.id)
            .limit(limit)
        )
        return [_passkey(row) for row in self._connection.execute(query)]

    def record_use(self, passkey_id: str, *, sign_count: int, now: datetime) -> None:
        self._connection.execute(
            update(passkeys)
            .where(passkeys.c.id == passkey_id)
            .values(sign_count=sign_count, last_used_at=now)
        )

    def remove(self, *, user_id: str, passkey_id: str) -> bool:
        statement = delete(passkeys).where(
            and_(passkeys.c.id == passkey_id, passkeys.c.user_id == user_id)
        )
        return self._connection.execute(statement).rowcount == 1

    def add_challenge(self, challenge: Challenge) -> None:
        self._connection.execute(
            passkey_challenges.insert().values(
                id=challenge.id,
                purpose=challenge.purpose.value,
                user_id=challenge.user_id,
                binding=challenge.binding,
                challenge=challenge.challenge,
                created_at=challenge.created_at,
                expires_at=challenge.expires_at,
            )
        )

    def take_challenge(self, challenge_id: str) -> Challenge | None:
        c = passkey_challenges
        statement = delete(c).where(c.c.id == challenge_id).returning(*c.c)
        row = self._connection.execute(statement).first()
        return None if row is None else _challenge(row)

    def prune_challenges(self, *, now: datetime, limit: int) -> int:
        c = passkey_challenges
        lapsed = select(c.c.id).where(c.c.expires_at <= now).limit(limit).scalar_subquery()
        return self._connection.execute(delete(c).where(c.c.id.in_(lapsed))).rowcount
