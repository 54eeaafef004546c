"""Daraja test helpers: recorded payloads, a configuration, a throwaway certificate."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from deni.adapters.daraja.client import DarajaConfig

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "daraja"
BASE_URL = "https://sandbox.safaricom.co.ke"
# 09:00 in Nairobi (06:00 UTC).
START = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
SANDBOX_PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"
PATH_TOKEN = "0123456789abcdef0123456789abcdef"
TOKEN = "c9SQxWWhmdVRlyh0zh8gZDTkubVF"


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


def fixture_json(name: str) -> Any:
    return json.loads(fixture_text(name))


def recorded(name: str, status: int = 200) -> httpx.Response:
    """A response carrying a recorded body byte for byte."""
    return httpx.Response(
        status, content=fixture_text(name).encode(), headers={"content-type": "application/json"}
    )


def make_config(**overrides: Any) -> DarajaConfig:
    config = DarajaConfig(
        environment="sandbox",
        consumer_key="consumer-key",
        consumer_secret="consumer-secret",
        stk_shortcode="174379",
        stk_passkey=SANDBOX_PASSKEY,
        b2c_shortcode="600992",
        initiator_name="testapi",
        callback_base_url="https://deni.example",
        callback_path_token=PATH_TOKEN,
        security_credential="c2VjdXJpdHktY3JlZGVudGlhbA==",
        paybill_shortcode="600984",
    )
    return replace(config, **overrides)


def make_certificate(key: rsa.RSAPrivateKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "apicrypt.safaricom.test")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(START - timedelta(days=1))
        .not_valid_after(START + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()
