"""A software passkey authenticator for API tests: real ES256 keys, real CBOR, real
`clientDataJSON` and signatures, as a phone's platform authenticator makes them ("none"
attestation, user present and verified). What it answers goes through py_webauthn unchanged,
so the real adapter is what these tests exercise."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import struct
from dataclasses import dataclass, field

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

FLAG_USER_PRESENT = 0x01
FLAG_USER_VERIFIED = 0x04
FLAG_ATTESTED_DATA = 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class SoftKey:
    credential_id: bytes
    private_key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes
    sign_count: int = 0

    def cose_public_key(self) -> bytes:
        numbers = self.private_key.public_key().public_numbers()
        return cbor2.dumps(
            {
                1: 2,  # kty: EC2
                3: -7,  # alg: ES256
                -1: 1,  # crv: P-256
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )


@dataclass
class SoftAuthenticator:
    """`origin`: where the browser says the page is; a phishing page's origin is another."""

    origin: str
    verifies_user: bool = True
    keys: list[SoftKey] = field(default_factory=list)

    def create(self, options: dict[str, object]) -> dict[str, object]:
        rp = options["rp"]
        user = options["user"]
        assert isinstance(rp, dict)
        assert isinstance(user, dict)
        key = SoftKey(
            credential_id=secrets.token_bytes(16),
            private_key=ec.generate_private_key(ec.SECP256R1()),
            rp_id=str(rp["id"]),
            user_handle=unb64url(str(user["id"])),
        )
        self.keys.append(key)
        attested = (
            bytes(16)  # AAGUID: none
            + struct.pack(">H", len(key.credential_id))
            + key.credential_id
            + key.cose_public_key()
        )
        auth_data = self._auth_data(key, FLAG_ATTESTED_DATA) + attested
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data("webauthn.create", str(options["challenge"]))
        return {
            "id": b64url(key.credential_id),
            "rawId": b64url(key.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def get(self, options: dict[str, object], *, key: SoftKey | None = None) -> dict[str, object]:
        key = key or self.keys[-1]
        key.sign_count += 1
        auth_data = self._auth_data(key, 0)
        client_data = self._client_data("webauthn.get", str(options["challenge"]))
        signed = auth_data + hashlib.sha256(client_data).digest()
        signature = key.private_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return {
            "id": b64url(key.credential_id),
            "rawId": b64url(key.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(key.user_handle),
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def _auth_data(self, key: SoftKey, extra_flags: int) -> bytes:
        flags = FLAG_USER_PRESENT | extra_flags
        if self.verifies_user:
            flags |= FLAG_USER_VERIFIED
        rp_hash = hashlib.sha256(key.rp_id.encode()).digest()
        return rp_hash + bytes([flags]) + struct.pack(">I", key.sign_count)

    def _client_data(self, kind: str, challenge: str) -> bytes:
        data = {"type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": False}
        return json.dumps(data).encode()
