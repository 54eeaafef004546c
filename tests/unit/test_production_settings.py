"""Production refuses to start with what an operator might leave behind: weak or shared secrets,
plain HTTP, Safaricom's sandbox values, the fake SMS gateway. Each refusal names the setting.
Development and test keep starting as they always did."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from tests.support.settings import VAPID_PRIVATE_KEY, production

from deni.config import PLACEHOLDER_CALLBACK_TOKEN, PLACEHOLDER_SECRET, Settings
from deni.config_checks import DARAJA_SANDBOX_DEFAULTS, SECRET_BITS_MIN, shannon_bits

A_REAL_LOOKING_SECRET = "d4e1b8a5c2f9e6b3a0d7c4f1e8b5a2c9"


def refusal(**changes: Any) -> str:
    with pytest.raises(ValidationError) as refused:
        production(**changes)
    return str(refused.value)


def test_careful_production_settings_start() -> None:
    settings = production()
    assert settings.environment == "production"
    assert production(mpesa=False, callback_base_url="").mpesa is False
    assert production(ops_token="").ops_token == ""  # the operations paths stay closed


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"callback_base_url": "http://deni.example.co.ke"}, "DENI_CALLBACK_BASE_URL"),
        ({"callback_base_url": ""}, "DENI_CALLBACK_BASE_URL"),  # this process's own http://
        ({"daraja_base_url": "http://daraja.internal"}, "DENI_DARAJA_BASE_URL"),
    ],
)
def test_plain_http_is_refused(changes: dict[str, Any], named: str) -> None:
    assert named in refusal(**changes)


@pytest.mark.parametrize(
    ("variable", "field"),
    [
        ("DENI_JWT_SECRET", "jwt_secret"),
        ("DENI_PIN_PEPPER", "pin_pepper"),
        ("DENI_CALLBACK_TOKEN", "callback_token"),
        ("DENI_USSD_TOKEN", "ussd_token"),
        ("DENI_OPS_TOKEN", "ops_token"),
    ],
)
@pytest.mark.parametrize(
    "weak",
    [
        "0" * 32,  # the finding: a token of 32 zeros
        "0" * 64,
        "ab" * 20,  # two characters, 40 bits by the estimate
        PLACEHOLDER_CALLBACK_TOKEN,  # many distinct characters, but one block twice
        "deadbeef" * 4,
    ],
)
def test_a_guessable_secret_is_refused(variable: str, field: str, weak: str) -> None:
    message = refusal(**{field: weak})
    # Named either way: as guessable, or by an older rule that catches it first.
    assert variable in message
    assert "looks guessable" in message or "real hex secret" in message
    assert weak not in message  # the refusal names the setting, never echoes it


def test_a_short_secret_is_refused() -> None:
    assert "DENI_OPS_TOKEN must be at least 32 characters" in refusal(ops_token="e7b2c9f4a1d8")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("jwt_secret", "pin_pepper"),
        ("jwt_secret", "callback_token"),
        ("pin_pepper", "ussd_token"),
        ("callback_token", "ussd_token"),
        ("ops_token", "jwt_secret"),
    ],
)
def test_one_secret_for_two_uses_is_refused(first: str, second: str) -> None:
    message = refusal(**{first: A_REAL_LOOKING_SECRET, second: A_REAL_LOOKING_SECRET})
    assert "must differ from" in message
    assert f"DENI_{first.upper()}" in message
    assert f"DENI_{second.upper()}" in message


@pytest.mark.parametrize("field", DARAJA_SANDBOX_DEFAULTS)
def test_safaricoms_sandbox_values_are_refused_with_production_daraja(field: str) -> None:
    sandbox_value = Settings.model_fields[field].default
    assert f"DENI_{field.upper()}" in refusal(**{field: sandbox_value})


def test_production_payments_need_production_daraja() -> None:
    assert "DENI_DARAJA_ENVIRONMENT must be production" in refusal(daraja_environment="sandbox")


def test_the_fake_sms_gateway_is_refused() -> None:
    assert "DENI_SMS_BACKEND=fake" in refusal(sms_backend="fake")
    assert "DENI_AT_USERNAME=sandbox" in refusal(at_username="sandbox")


def test_every_problem_is_named_at_once() -> None:
    message = refusal(
        jwt_secret="0" * 32, callback_base_url="http://deni.example", sms_backend="fake"
    )
    assert "DENI_JWT_SECRET" in message
    assert "DENI_CALLBACK_BASE_URL" in message
    assert "DENI_SMS_BACKEND" in message


def test_random_tokens_of_the_shortest_kind_pass_the_entropy_rule() -> None:
    # secrets.token_hex(16): 32 hex digits; the estimate stays far above the bar.
    import secrets

    for _ in range(2_000):
        assert shannon_bits(secrets.token_hex(16)) >= SECRET_BITS_MIN


def test_development_and_test_start_as_before() -> None:
    assert Settings().environment == "development"  # placeholders, fake SMS, sandbox Daraja
    test = Settings(
        environment="test",
        jwt_secret="test-secret-0123456789abcdef0123456789",
        pin_pepper="test-pepper-0123456789abcdef-0123456789",
        mpesa=True,
        callback_token="a" * 32,
    )
    assert (test.sms_backend, test.daraja_environment) == ("fake", "sandbox")


# --- settings that undo protections ------------------------------------------------------------


@pytest.mark.parametrize(
    "proxies",
    ["0.0.0.0/0", "::/0", "10.0.0.1, 0.0.0.0/1", "2001:db8::/31", "::ffff:0:0/96", "8.0.0.0/7"],
)
def test_a_catch_all_trusted_proxy_is_refused(proxies: str) -> None:
    message = refusal(trusted_proxies=proxies)
    assert "DENI_TRUSTED_PROXIES" in message
    assert proxies not in message


@pytest.mark.parametrize(
    "proxies", ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7", "::ffff:10.0.0.0/104"]
)
def test_a_proxy_network_of_ones_own_is_accepted(proxies: str) -> None:
    assert production(trusted_proxies=proxies).trusted_proxies == proxies


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("jwt_secret", "Zq8" + PLACEHOLDER_SECRET + "Kd2Wp7"),
        ("pin_pepper", "Zq8" + PLACEHOLDER_SECRET.upper()),
        ("ops_token", PLACEHOLDER_SECRET + "Kd2Wp7x"),
        ("at_api_key", "atsk_" + PLACEHOLDER_SECRET),
        ("ussd_token", "Qm7RkT2v" + PLACEHOLDER_CALLBACK_TOKEN + "Hs8J"),
        ("callback_token", "9c4e" + PLACEHOLDER_CALLBACK_TOKEN + "b7d1"),
        ("jwt_secret", "Xw9ZpL4n" + PLACEHOLDER_CALLBACK_TOKEN),
    ],
)
def test_a_secret_holding_a_public_placeholder_anywhere_is_refused(field: str, value: str) -> None:
    """Long and varied enough to pass every other rule: still public."""
    message = refusal(**{field: value})
    assert f"DENI_{field.upper()} contains a public development placeholder" in message
    assert value not in message


def test_memory_sessions_are_refused() -> None:
    assert "DENI_SESSION_STORE=memory" in refusal(session_store="memory")
    assert production(session_store="sql").session_store == "sql"


def test_ussd_without_a_source_allowlist_is_refused() -> None:
    assert "DENI_USSD_ALLOWED_IPS" in refusal(ussd_allowed_ips="")
    assert "DENI_USSD_ALLOWED_IPS" in refusal(ussd_allowed_ips=" , ")


def test_one_start_names_the_older_rules_problems_too() -> None:
    """The callback token, the USSD token, the SMS key and the placeholder secrets used to be
    refused one at a time, before the rest was looked at."""
    message = refusal(
        callback_token="not-hex-" + "Qm7RkT2vXw9ZpL4nHs8JdF3gBc6YtA1e",
        ussd_token="",
        at_api_key=PLACEHOLDER_SECRET,
        jwt_secret=PLACEHOLDER_SECRET,
        pin_pepper="short",
        sandbox=True,
        session_store="memory",
        ussd_allowed_ips="",
        trusted_proxies="0.0.0.0/0",
    )
    for named in (
        "DENI_CALLBACK_TOKEN must be hexadecimal",
        "DENI_USSD_TOKEN must be at least",
        "DENI_AT_API_KEY must be a real",
        "DENI_JWT_SECRET contains a public development placeholder",
        "DENI_PIN_PEPPER must be at least",
        "DENI_SANDBOX=on",
        "DENI_SESSION_STORE=memory",
        "DENI_USSD_ALLOWED_IPS",
        "DENI_TRUSTED_PROXIES",
    ):
        assert named in message, named
    assert PLACEHOLDER_SECRET not in message
    assert "0.0.0.0/0" not in message


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"vapid_private_key": ""}, "DENI_VAPID_PRIVATE_KEY must be set"),
        ({"vapid_private_key": "bm90LWEta2V5"}, "DENI_VAPID_PRIVATE_KEY is not a P-256"),
        (
            {"vapid_public_key": A_REAL_LOOKING_SECRET},
            "DENI_VAPID_PUBLIC_KEY must be the public half",
        ),
        ({"vapid_subject": ""}, "DENI_VAPID_SUBJECT"),
        ({"vapid_subject": "ops@deni.example.co.ke"}, "DENI_VAPID_SUBJECT"),
    ],
)
def test_web_push_needs_its_own_vapid_keys_in_production(
    changes: dict[str, Any], named: str
) -> None:
    message = refusal(**changes)
    assert named in message
    assert VAPID_PRIVATE_KEY not in message  # named, never echoed


def test_a_pem_vapid_key_is_taken_too() -> None:
    from cryptography.hazmat.primitives import serialization

    from deni.adapters.webpush import private_key_from_setting

    pem = (
        private_key_from_setting(VAPID_PRIVATE_KEY)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    assert production(vapid_private_key=pem).vapid_private_key == pem


def test_a_moved_clock_is_refused() -> None:
    assert "DENI_CLOCK_OFFSET_FILE" in refusal(clock_offset_file="var/clock-offset")
