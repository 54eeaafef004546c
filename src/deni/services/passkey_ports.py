"""Ports of passkeys (services/passkeys.py): the WebAuthn ceremonies and the stored passkeys.

The WebAuthn library (py_webauthn) sits behind `WebAuthn` (adapters/webauthn.py); service
tests use a fake that signs nothing. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from deni.domain.passkeys import Challenge, Passkey
from deni.services.ports import SessionDeps

PASSKEYS_LIST_MAX = 20  # a member has at most PASSKEYS_PER_MEMBER_MAX; the bound says so again
CHALLENGE_PRUNE_MAX = 200


@dataclass(frozen=True, slots=True)
class RelyingParty:
    """Deni as WebAuthn sees it: the domain passkeys are made for (`id`, e.g. deni.example or
    localhost), the origin the web app is served from (`origin`, scheme and host and port)
    and the name a phone shows."""

    id: str
    origin: str
    name: str = "Deni"

    def __post_init__(self) -> None:
        assert self.id, "a relying party has a domain"
        assert "/" not in self.id, self.id
        assert ":" not in self.id, self.id
        assert self.origin.startswith(("https://", "http://")), self.origin


@dataclass(frozen=True, slots=True)
class NewCredential:
    """What a verified registration gives: the credential's id, its public key (COSE) and the
    authenticator's signature count so far."""

    credential_id: bytes
    public_key: bytes
    sign_count: int


@dataclass(frozen=True, slots=True)
class VerifiedAssertion:
    sign_count: int


class CeremonyRefused(Exception):
    """The browser's answer did not verify: a bad signature, another origin or relying party,
    another challenge, no user verification, a malformed answer. The message is for logs."""


class WebAuthn(Protocol):
    """The two WebAuthn ceremonies, as the library does them. Options come back as the JSON
    object the browser's `PublicKeyCredential.parse…OptionsFromJSON` takes; answers go in as
    the JSON object `PublicKeyCredential.toJSON()` gives. User verification is always
    required (the fingerprint or face, not just a touch)."""

    def registration_options(
        self,
        *,
        rp: RelyingParty,
        user_handle: bytes,
        user_name: str,
        display_name: str,
        challenge: bytes,
        exclude: Sequence[bytes],
    ) -> dict[str, object]: ...

    def verify_registration(
        self, *, rp: RelyingParty, response: Mapping[str, object], challenge: bytes
    ) -> NewCredential:
        """Raises CeremonyRefused."""
        ...

    def authentication_options(
        self, *, rp: RelyingParty, challenge: bytes, allow: Sequence[bytes]
    ) -> dict[str, object]:
        """`allow` empty: any passkey of this relying party (sign-in, the phone offers them)."""
        ...

    def credential_of(self, response: Mapping[str, object]) -> tuple[bytes, bytes | None]:
        """The credential id an authentication answer names, and its user handle if it
        carries one (a passkey's answer does), before any verification: which stored public
        key to verify it with. Raises CeremonyRefused if the answer is malformed."""
        ...

    def verify_authentication(
        self,
        *,
        rp: RelyingParty,
        response: Mapping[str, object],
        challenge: bytes,
        public_key: bytes,
        sign_count: int,
    ) -> VerifiedAssertion:
        """Raises CeremonyRefused (a sign count that did not move on included)."""
        ...


class PasskeyRepository(Protocol):
    def add(self, passkey: Passkey) -> bool:
        """False (nothing written) when the credential id is already stored."""
        ...

    def owner_of(self, credential_id: bytes) -> str | None:
        """The member whose passkey this is, unlocked (the member is locked first)."""
        ...

    def lock_by_credential(self, credential_id: bytes) -> Passkey | None: ...

    def for_user(self, user_id: str, *, limit: int) -> list[Passkey]:
        """Oldest first."""
        ...

    def record_use(self, passkey_id: str, *, sign_count: int, now: datetime) -> None: ...

    def remove(self, *, user_id: str, passkey_id: str) -> bool:
        """False when this member has no such passkey."""
        ...

    def add_challenge(self, challenge: Challenge) -> None: ...

    def take_challenge(self, challenge_id: str) -> Challenge | None:
        """The challenge, deleted in the same step: two answers to one challenge cannot both
        take it."""
        ...

    def prune_challenges(self, *, now: datetime, limit: int) -> int:
        """Delete up to `limit` lapsed challenges; how many went."""
        ...


class PasskeyDeps(SessionDeps, Protocol):
    """What the passkey use cases run on: signing in's, the WebAuthn port and Deni as the
    relying party."""

    @property
    def webauthn(self) -> WebAuthn: ...

    @property
    def relying_party(self) -> RelyingParty: ...
