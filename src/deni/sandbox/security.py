"""The sandbox's own M-PESA certificate, the SecurityCredential check and the STK password."""

from __future__ import annotations

import base64
import binascii
import hmac
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

_KEY_SIZE_BITS = 2048
_CERT_VALIDITY = timedelta(days=365)


class InitiatorVault:
    """Holds the key pair whose certificate clients encrypt the initiator password with.

    A fresh pair per sandbox start, like a fresh environment: a client must fetch the
    certificate (GET /sandbox/certificate) instead of baking one in.
    """

    def __init__(self, *, password: str, now: datetime, organisation: str) -> None:
        self._password = password
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=_KEY_SIZE_BITS)
        self.certificate_pem = _self_signed_certificate(self._key, now, organisation)

    def credential_is_valid(self, security_credential: object) -> bool:
        """base64(RSA-PKCS#1-v1.5(initiator password)), as Daraja expects."""
        if not isinstance(security_credential, str):
            return False
        try:
            ciphertext = base64.b64decode(security_credential, validate=True)
            plaintext = self._key.decrypt(ciphertext, padding.PKCS1v15())
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(plaintext, self._password.encode())


def _self_signed_certificate(key: rsa.RSAPrivateKey, now: datetime, organisation: str) -> bytes:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "KE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, "sandbox.local M-PESA"),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + _CERT_VALIDITY)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


def encrypt_credential(certificate_pem: bytes, password: str) -> str:
    """What a Daraja client does with the initiator password (tests use it too)."""
    certificate = x509.load_pem_x509_certificate(certificate_pem)
    public_key = certificate.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    ciphertext = public_key.encrypt(password.encode(), padding.PKCS1v15())
    return base64.b64encode(ciphertext).decode()


def stk_password(shortcode: str, passkey: str, timestamp: str) -> str:
    """base64(BusinessShortCode + Passkey + Timestamp), plain concatenation."""
    return base64.b64encode(f"{shortcode}{passkey}{timestamp}".encode()).decode()
