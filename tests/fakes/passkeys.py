"""Fakes of the passkey ports: the stored passkeys and challenges, and a WebAuthn that checks
answers made by `FakeAuthenticator` (an HMAC stands in for the signature) the way the real one
checks a browser's: the challenge, the origin, the relying party, user verification, the key,
and the sign count."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from deni.domain.passkeys import Challenge, Passkey
from deni.services.passkey_ports import (
    CeremonyRefused,
    NewCredential,
    RelyingParty,
    VerifiedAssertion,
)
from tests.fakes.tables import Tables


class FakePasskeyRepository:
    def __init__(self, tables: Tables) -> None:
        self._tables = tables

    def add(self, passkey: Passkey) -> bool:
        if any(p.credential_id == passkey.credential_id for p in self._tables.passkeys.values()):
            return False
        self._tables.passkeys[passkey.id] = passkey
        return True

    def owner_of(self, credential_id: bytes) -> str | None:
        found = self.lock_by_credential(credential_id)
        return None if found is None else found.user_id

    def lock_by_credential(self, credential_id: bytes) -> Passkey | None:
        found = [p for p in self._tables.passkeys.values() if p.credential_id == credential_id]
        return found[0] if found else None

    def for_user(self, user_id: str, *, limit: int) -> list[Passkey]:
        mine = [p for p in self._tables.passkeys.values() if p.user_id == user_id]
        return sorted(mine, key=lambda p: (p.created_at, p.id))[:limit]

    def record_use(self, passkey_id: str, *, sign_count: int, now: datetime) -> None:
        stored = self._tables.passkeys[passkey_id]
        self._tables.passkeys[passkey_id] = replace(stored, sign_count=sign_count, last_used_at=now)

    def remove(self, *, user_id: str, passkey_id: str) -> bool:
        stored = self._tables.passkeys.get(passkey_id)
        if stored is None or stored.user_id != user_id:
            return False
        del self._tables.passkeys[passkey_id]
        return True

    def add_challenge(self, challenge: Challenge) -> None:
        assert challenge.id not in self._tables.passkey_challenges
        self._tables.passkey_challenges[challenge.id] = challenge

    def take_challenge(self, challenge_id: str) -> Challenge | None:
        return self._tables.passkey_challenges.pop(challenge_id, None)

    def prune_challenges(self, *, now: datetime, limit: int) -> int:
        lapsed = [c.id for c in self._tables.passkey_challenges.values() if c.expires_at <= now]
        for challenge_id in lapsed[:limit]:
            del self._tables.passkey_challenges[challenge_id]
        return len(lapsed[:limit])


@dataclass
class FakeKey:
    credential_id: bytes
    secret: bytes
    user_handle: bytes
    sign_count: int = 0


@dataclass
class FakeAuthenticator:
    """A phone's authenticator: makes keys, answers challenges. `counts` False: it sends sign
    count 0 every time, as synced passkeys do."""

    counts: bool = True
    verifies_user: bool = True
    keys: list[FakeKey] = field(default_factory=list)

    def create(self, options: Mapping[str, object], *, origin: str) -> dict[str, object]:
        user = options["user"]
        assert isinstance(user, dict)
        key = FakeKey(secrets.token_bytes(16), secrets.token_bytes(32), bytes.fromhex(user["id"]))
        self.keys.append(key)
        return {
            "id": key.credential_id.hex(),
            "public_key": key.secret.hex(),  # the fake's "public key" is what checks the HMAC
            "challenge": options["challenge"],
            "rp_id": _rp_of(options),
            "origin": origin,
            "uv": self.verifies_user,
        }

    def get(
        self, options: Mapping[str, object], *, origin: str, key: FakeKey | None = None
    ) -> dict[str, object]:
        key = key or self.keys[-1]
        if self.counts:
            key.sign_count += 1
        challenge = options["challenge"]
        assert isinstance(challenge, str)
        return {
            "id": key.credential_id.hex(),
            "user_handle": key.user_handle.hex(),
            "challenge": challenge,
            "rp_id": options["rpId"],
            "origin": origin,
            "uv": self.verifies_user,
            "sign_count": key.sign_count,
            "signature": _sign(key.secret, challenge, origin, key.sign_count),
        }


def _rp_of(options: Mapping[str, object]) -> str:
    rp = options["rp"]
    assert isinstance(rp, dict)
    return str(rp["id"])


def _sign(secret: bytes, challenge: str, origin: str, sign_count: int) -> str:
    message = json.dumps([challenge, origin, sign_count]).encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


class FakeWebAuthn:
    """`WebAuthn` (services/passkey_ports.py) for service tests: options carry the challenge
    in hex, answers come from FakeAuthenticator."""

    def registration_options(
        self,
        *,
        rp: RelyingParty,
        user_handle: bytes,
        user_name: str,
        display_name: str,
        challenge: bytes,
        exclude: Sequence[bytes],
    ) -> dict[str, object]:
        return {
            "rp": {"id": rp.id, "name": rp.name},
            "user": {"id": user_handle.hex(), "name": user_name, "displayName": display_name},
            "challenge": challenge.hex(),
            "excludeCredentials": [cid.hex() for cid in exclude],
        }

    def verify_registration(
        self, *, rp: RelyingParty, response: Mapping[str, object], challenge: bytes
    ) -> NewCredential:
        self._common(rp, response, challenge)
        return NewCredential(
            credential_id=bytes.fromhex(str(response["id"])),
            public_key=bytes.fromhex(str(response["public_key"])),
            sign_count=0,
        )

    def authentication_options(
        self, *, rp: RelyingParty, challenge: bytes, allow: Sequence[bytes]
    ) -> dict[str, object]:
        return {
            "rpId": rp.id,
            "challenge": challenge.hex(),
            "allowCredentials": [cid.hex() for cid in allow],
        }

    def credential_of(self, response: Mapping[str, object]) -> tuple[bytes, bytes | None]:
        try:
            handle = response.get("user_handle")
            return bytes.fromhex(str(response["id"])), (
                None if handle is None else bytes.fromhex(str(handle))
            )
        except (KeyError, ValueError) as error:
            raise CeremonyRefused(str(error)) from None

    def verify_authentication(
        self,
        *,
        rp: RelyingParty,
        response: Mapping[str, object],
        challenge: bytes,
        public_key: bytes,
        sign_count: int,
    ) -> VerifiedAssertion:
        self._common(rp, response, challenge)
        received = response.get("sign_count")
        assert isinstance(received, int)
        signature = _sign(public_key, challenge.hex(), str(response["origin"]), received)
        if not hmac.compare_digest(signature, str(response.get("signature"))):
            raise CeremonyRefused("bad signature")
        return VerifiedAssertion(sign_count=received)

    @staticmethod
    def _common(rp: RelyingParty, response: Mapping[str, object], challenge: bytes) -> None:
        if response.get("challenge") != challenge.hex():
            raise CeremonyRefused("another challenge")
        if response.get("origin") != rp.origin:
            raise CeremonyRefused("another origin")
        if response.get("rp_id") != rp.id:
            raise CeremonyRefused("another relying party")
        if response.get("uv") is not True:
            raise CeremonyRefused("user not verified")
