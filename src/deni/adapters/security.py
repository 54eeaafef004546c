"""PIN hashing (argon2id over an HMAC with a server-side pepper) and JWT access tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pwdlib import PasswordHash
from pwdlib.exceptions import UnknownHashError
from pwdlib.hashers.argon2 import Argon2Hasher

from deni.domain.errors import Unauthorized
from deni.domain.secrecy import derived_key_id

JWT_ALGORITHM = "HS256"
JWT_ISSUER = "deni"
# API processes on different machines may disagree on the time by this much.
CLOCK_SKEW_S = 60
# The user's session epoch when the token was issued (the API compares it with the stored one).
SESSION_EPOCH_CLAIM = "sep"


class PepperedArgon2PinHasher:
    """argon2id of HMAC-SHA256(pepper, pin).

    A 4-digit PIN has 10,000 values: argon2 alone would fall in minutes to anyone holding the
    database. The pepper lives only in the settings, so a leaked database is not enough.
    """

    def __init__(self, *, pepper: str, memory_cost_kib: int, time_cost: int) -> None:
        assert len(pepper) >= 8, "the pepper is the real secret; keep it long"
        self._pepper = pepper.encode()
        hasher = Argon2Hasher(memory_cost=memory_cost_kib, time_cost=time_cost, parallelism=1)
        self._hash = PasswordHash((hasher,))

    def _peppered(self, pin: str) -> str:
        return hmac.new(self._pepper, pin.encode(), hashlib.sha256).hexdigest()

    def hash(self, pin: str) -> str:
        return self._hash.hash(self._peppered(pin))

    def verify(self, pin: str, pin_hash: str) -> bool:
        try:
            return self._hash.verify(self._peppered(pin), pin_hash)
        except UnknownHashError:
            return False  # a closed account's erased hash matches no PIN

    def needs_rehash(self, pin_hash: str) -> bool:
        """True for a hash made at another argon2 cost than the one configured now."""
        return self._hash.current_hasher.check_needs_rehash(pin_hash)


class JwtAccessTokens:
    """HS256 access tokens whose header names their key (`kid`): the current key signs, every
    key held verifies, so a rotation signs nobody out. A token naming a key not held (unknown,
    or removed after its overlap) is refused; a token with no `kid` (issued before key ids
    existed) is verified against each key held."""

    def __init__(
        self,
        *,
        ttl_s: int,
        secret: str | None = None,
        keys: Mapping[str, str] | None = None,
        current_kid: str | None = None,
    ) -> None:
        assert ttl_s > 0
        if secret is not None:  # one key, under its derived id
            assert keys is None
            assert current_kid is None
            current_kid = derived_key_id(secret)
            keys = {current_kid: secret}
        assert keys
        assert current_kid is not None
        assert current_kid in keys, "the signing key is one of the keys held"
        self._keys = dict(keys)
        self._current_kid: str = current_kid
        self._ttl_s = ttl_s

    @property
    def current_kid(self) -> str:
        return self._current_kid

    def issue(self, *, user_id: str, now: datetime, session_epoch: int = 0) -> tuple[str, int]:
        assert session_epoch >= 0
        claims = {
            "sub": user_id,
            "iss": JWT_ISSUER,
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(seconds=self._ttl_s)).timestamp()),
            SESSION_EPOCH_CLAIM: session_epoch,
        }
        secret = self._keys[self._current_kid]
        headers = {"kid": self._current_kid}
        token = jwt.encode(claims, secret, algorithm=JWT_ALGORITHM, headers=headers)
        return token, self._ttl_s

    def verify(self, token: str, *, now: datetime) -> str:
        return self.verify_session(token, now=now)[0]

    def verify_session(self, token: str, *, now: datetime) -> tuple[str, int]:
        claims = self._decode(token)
        now_s = int(now.timestamp())
        if int(claims["exp"]) <= now_s:
            raise Unauthorized("The access token has expired.", code="token_expired")
        if int(claims["iat"]) > now_s + CLOCK_SKEW_S:
            raise Unauthorized("The access token is from the future.", code="invalid_token")
        # A token from before epochs existed is of epoch 0: good only while nothing has ended
        # the user's sessions since, so nobody is signed out by the upgrade itself.
        subject, epoch = claims["sub"], claims.get(SESSION_EPOCH_CLAIM, 0)
        if not isinstance(subject, str) or type(epoch) is not int or epoch < 0:
            raise Unauthorized("The access token is not valid.", code="invalid_token")
        return subject, epoch

    def _decode(self, token: str) -> dict[str, Any]:
        invalid = Unauthorized("The access token is not valid.", code="invalid_token")
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as error:
            raise invalid from error
        if kid is None:
            candidates = list(self._keys.values())
        elif isinstance(kid, str) and kid in self._keys:
            candidates = [self._keys[kid]]
        else:
            raise Unauthorized("The access token's key is not known.", code="invalid_token")
        for secret in candidates:
            try:
                return jwt.decode(
                    token,
                    secret,
                    algorithms=[JWT_ALGORITHM],
                    issuer=JWT_ISSUER,
                    # Times are checked by the caller against the injected clock, not PyJWT's
                    # wall clock, so every process and every test agrees on "now".
                    options={
                        "require": ["sub", "exp", "iat", "iss"],
                        "verify_exp": False,
                        "verify_iat": False,
                        "verify_nbf": False,
                    },
                )
            except jwt.InvalidSignatureError:
                continue  # a kid-less token: perhaps the next key
            except jwt.PyJWTError as error:
                raise invalid from error
        raise invalid


class PlainPinHasher:
    """For unit tests only: fast and obviously insecure, so it is never wired in production."""

    def hash(self, pin: str) -> str:
        return "plain$" + hashlib.sha256(pin.encode()).hexdigest()

    def verify(self, pin: str, pin_hash: str) -> bool:
        return hmac.compare_digest(self.hash(pin), pin_hash)

    def needs_rehash(self, pin_hash: str) -> bool:
        return False


class AesGcmSeedSealer:
    """TOTP seeds sealed with AES-256-GCM under a key derived from the pepper, bound to the
    operator they belong to: a copy of the database shows no seed, and a sealed seed moved to
    another operator's row does not open."""

    NONCE_BYTES = 12
    KEY_LABEL = b"deni/ops/totp-seed/v1"

    def __init__(self, *, pepper: str) -> None:
        assert len(pepper) >= 8, "the pepper is the real secret; keep it long"
        key = hmac.new(pepper.encode(), self.KEY_LABEL, hashlib.sha256).digest()
        self._aead = AESGCM(key)

    def seal(self, seed: bytes, *, operator_id: str) -> bytes:
        nonce = secrets.token_bytes(self.NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, seed, operator_id.encode())

    def open(self, sealed: bytes, *, operator_id: str) -> bytes:
        nonce, box = sealed[: self.NONCE_BYTES], sealed[self.NONCE_BYTES :]
        return self._aead.decrypt(nonce, box, operator_id.encode())
