"""Secrets Daraja wants derived, not sent as is: the SecurityCredential and the STK password."""

from __future__ import annotations

import base64
from datetime import datetime
from zoneinfo import ZoneInfo

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa

NAIROBI = ZoneInfo("Africa/Nairobi")
STK_TIMESTAMP_FORMAT = "%Y%m%d%H%M%S"  # Daraja's yyyyMMddHHmmss
STK_TIMESTAMP_CHARS = 14


def encrypt_security_credential(initiator_password: str, certificate_pem: str | bytes) -> str:
    """RSA-encrypt the initiator password with the public key of Safaricom's certificate.

    PKCS#1 v1.5 padding (Daraja refuses OAEP), base64 text. Sandbox and production certificates
    differ. The result is random each time (the padding is) and any of them is valid, so it can
    be computed once at start-up and reused for every request.
    """
    assert initiator_password, "the initiator password is empty"
    pem = certificate_pem.encode() if isinstance(certificate_pem, str) else certificate_pem
    certificate = x509.load_pem_x509_certificate(pem)
    public_key = certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise ValueError("the M-PESA certificate must carry an RSA public key")
    ciphertext = public_key.encrypt(initiator_password.encode(), padding.PKCS1v15())
    return base64.b64encode(ciphertext).decode("ascii")


def stk_timestamp(now: datetime) -> str:
    """yyyyMMddHHmmss in Nairobi time. Generate once per request: the same value goes into the
    body's Timestamp and into the Password, or Daraja answers "Wrong credentials"."""
    assert now.tzinfo is not None, "an aware datetime is needed to know the Nairobi time"
    return now.astimezone(NAIROBI).strftime(STK_TIMESTAMP_FORMAT)


def stk_password(shortcode: str, passkey: str, timestamp: str) -> str:
    """base64(BusinessShortCode + Passkey + Timestamp), plain string concatenation."""
    assert shortcode.isdigit(), "the STK shortcode is digits"
    assert passkey, "the STK passkey is empty"
    assert len(timestamp) == STK_TIMESTAMP_CHARS, timestamp
    assert timestamp.isdigit(), timestamp
    return base64.b64encode(f"{shortcode}{passkey}{timestamp}".encode()).decode("ascii")
