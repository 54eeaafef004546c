"""Cents <-> shillings, the SecurityCredential and the STK password."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from hypothesis import given
from hypothesis import strategies as st
from tests.unit.daraja.support import SANDBOX_PASSKEY

from deni.adapters.daraja.credentials import (
    encrypt_security_credential,
    stk_password,
    stk_timestamp,
)
from deni.adapters.daraja.money import AmountError, cents_to_shillings, shillings_to_cents


class TestCentsToShillings:
    def test_whole_shillings(self) -> None:
        assert cents_to_shillings(100) == 1
        assert cents_to_shillings(25_000_000) == 250_000

    @pytest.mark.parametrize("amount_cents", [1, 150, 99, 1_001])
    def test_refuses_fractions_of_a_shilling(self, amount_cents: int) -> None:
        with pytest.raises(AmountError, match="whole shillings"):
            cents_to_shillings(amount_cents)

    @pytest.mark.parametrize("amount_cents", [0, -100])
    def test_refuses_non_positive(self, amount_cents: int) -> None:
        with pytest.raises(AmountError, match="positive"):
            cents_to_shillings(amount_cents)

    @pytest.mark.parametrize("amount_cents", [True, 100.0, "100", None])
    def test_refuses_non_int(self, amount_cents: object) -> None:
        with pytest.raises(AmountError, match="must be an int"):
            cents_to_shillings(amount_cents)  # type: ignore[arg-type]

    def test_amount_error_is_a_value_error(self) -> None:
        assert issubclass(AmountError, ValueError)


class TestShillingsToCents:
    @pytest.mark.parametrize(
        ("value", "cents"),
        [
            ("100.00", 10_000),
            ("5", 500),
            (" 5.5 ", 550),
            ("0.01", 1),
            (1, 100),
            (1.0, 100),
            (10, 1_000),
            (8959269.60, 895_926_960),
            (1199371.00, 119_937_100),
            ("7722179.62", 772_217_962),
            ("1.000", 100),
            (0, 0),
        ],
    )
    def test_exact(self, value: object, cents: int) -> None:
        assert shillings_to_cents(value) == cents

    @pytest.mark.parametrize("value", ["1.005", 0.001, "0.5001", 1.999])
    def test_refuses_fractions_of_a_cent(self, value: object) -> None:
        with pytest.raises(AmountError, match="fraction of a cent"):
            shillings_to_cents(value)

    @pytest.mark.parametrize("value", ["-1.00", -1980.00, -1])
    def test_refuses_negatives_unless_allowed(self, value: object) -> None:
        with pytest.raises(AmountError, match="negative"):
            shillings_to_cents(value)
        assert shillings_to_cents(value, allow_negative=True) < 0

    @pytest.mark.parametrize(
        "value",
        [
            "",
            "abc",
            "1,000.00",
            "1e3",
            "NaN",
            "Infinity",
            float("nan"),
            float("inf"),
            1e300,
            True,
            None,
            [1],
            {"Amount": 1},
            10**400,
            "9" * 20,
        ],
    )
    def test_refuses_what_is_not_a_plain_amount(self, value: object) -> None:
        with pytest.raises(AmountError):
            shillings_to_cents(value)

    @given(st.integers(min_value=0, max_value=10**11 * 100))
    def test_round_trips_through_text(self, cents: int) -> None:
        assert shillings_to_cents(f"{cents // 100}.{cents % 100:02d}") == cents

    @given(st.integers(min_value=1, max_value=10**9))
    def test_whole_shillings_round_trip(self, shillings: int) -> None:
        assert cents_to_shillings(shillings_to_cents(shillings)) == shillings


class TestSecurityCredential:
    def test_decrypts_with_the_private_key(
        self, rsa_key: rsa.RSAPrivateKey, certificate_pem: str
    ) -> None:
        credential = encrypt_security_credential("Safaricom999!*!", certificate_pem)
        ciphertext = base64.b64decode(credential, validate=True)
        assert len(ciphertext) == 256  # 2048-bit key
        assert rsa_key.decrypt(ciphertext, padding.PKCS1v15()) == b"Safaricom999!*!"

    def test_accepts_bytes_and_differs_each_time(self, certificate_pem: str) -> None:
        first = encrypt_security_credential("secret", certificate_pem.encode())
        second = encrypt_security_credential("secret", certificate_pem)
        # PKCS#1 v1.5 padding is random: equal inputs, different (equally valid) credentials.
        assert first != second

    def test_refuses_a_certificate_without_an_rsa_key(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ec.test")])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(datetime(2026, 1, 1, tzinfo=UTC))
            .not_valid_after(datetime(2027, 1, 1, tzinfo=UTC))
            .sign(key, hashes.SHA256())
        )
        pem = certificate.public_bytes(serialization.Encoding.PEM)
        with pytest.raises(ValueError, match="RSA"):
            encrypt_security_credential("secret", pem)

    def test_refuses_what_is_not_a_certificate(self) -> None:
        with pytest.raises(ValueError):  # noqa: PT011 (cryptography's own message)
            encrypt_security_credential("secret", "not a certificate")


class TestStkPassword:
    def test_matches_safaricoms_sample(self) -> None:
        # The official STK push sample: shortcode 174379, the sandbox passkey, 20210628092408.
        assert stk_password("174379", SANDBOX_PASSKEY, "20210628092408") == (
            "MTc0Mzc5YmZiMjc5ZjlhYTliZGJjZjE1OGU5N2RkNzFhNDY3Y2QyZTBjODkzMDU5YjEwZjc4ZTZiNzJh"
            "ZGExZWQyYzkxOTIwMjEwNjI4MDkyNDA4"
        )

    def test_is_base64_of_the_concatenation(self) -> None:
        password = stk_password("600000", "passkey", "20260101000000")
        assert base64.b64decode(password) == b"600000passkey20260101000000"

    def test_timestamp_is_nairobi_time(self) -> None:
        # 21:30 UTC on 31 December is 00:30 on 1 January in Nairobi (UTC+3).
        assert stk_timestamp(datetime(2025, 12, 31, 21, 30, 5, tzinfo=UTC)) == "20260101003005"

    def test_timestamp_needs_an_aware_time(self) -> None:
        with pytest.raises(AssertionError):
            stk_timestamp(datetime(2026, 1, 1))
