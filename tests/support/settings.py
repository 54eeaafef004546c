"""Settings as a careful operator starts production with them."""

from __future__ import annotations

from typing import Any

from deni.config import Settings

# Random values, as `secrets.token_hex` makes them: each one different.
JWT_SECRET = "8c1d52e4f0a97b36e2d5c8a1f4b7e0d3a6c9f2e5b8d1a4c7"
PIN_PEPPER = "f3a8d1c6b9e2f5a0d7c4b1e8a5f2c9d6b3e0a7f4c1d8b5e2"
CALLBACK_TOKEN = "2b9e4f7a1c6d3e8f5a0b7c2d9e4f1a6b"
USSD_TOKEN = "Qm7RkT2vXw9ZpL4nHs8JdF3gBc6YtA1e"
OPS_TOKEN = "e7b2c9f4a1d8e3b6c5f0a7d2e9b4c1f8"
# A P-256 key pair for Web Push, as `vapid --gen` and Web Push tools print them (base64url).
VAPID_PRIVATE_KEY = "IAeI7pxkrP6qN22dcJcRIi6a3U5QO2MyWOgr1_4bY4w"
VAPID_PUBLIC_KEY = (
    "BFzb7O5pHma-HUX40sLezTKzWo5Arl23yZWr6ofJKskmG5sp-TTIWEbNWmMiyBYEP3oTV9RDjLjATLLagkM3kp0"
)


def production(**changes: Any) -> Settings:
    """Settings a careful operator starts production with, and then `changes`."""
    values: dict[str, Any] = {
        "environment": "production",
        "jwt_secret": JWT_SECRET,
        "pin_pepper": PIN_PEPPER,
        "ussd_token": USSD_TOKEN,
        "ops_token": OPS_TOKEN,
        "sms_backend": "africastalking",
        "at_username": "deni",
        "at_api_key": "atsk_5f2c9e6b3a0d7c4f1e8b5a2c9d6e3b0a",
        "mpesa": True,
        "callback_base_url": "https://deni.example.co.ke",
        "callback_token": CALLBACK_TOKEN,
        "callback_allowed_ips": "196.201.214.200,196.201.214.206",
        "daraja_environment": "production",
        "daraja_consumer_key": "live-consumer-key-from-safaricom",
        "daraja_consumer_secret": "live-consumer-secret-from-safaricom",
        "daraja_stk_shortcode": "4012345",
        "daraja_stk_passkey": "live-passkey-from-safaricom-at-go-live",
        "daraja_b2c_shortcode": "3012345",
        "daraja_paybill_shortcode": "4012345",
        "daraja_initiator_name": "deni_api",
        "daraja_initiator_password": "live-initiator-password",
        "daraja_pull_nominated_number": "254722000111",
        "session_store": "redis",
        "ussd_allowed_ips": "196.201.214.200, 196.201.214.206",
        "trusted_proxies": "10.20.0.0/16",
        "vapid_private_key": VAPID_PRIVATE_KEY,
        "vapid_public_key": VAPID_PUBLIC_KEY,
        "vapid_subject": "mailto:operations@deni.example.co.ke",
    }
    values.update(changes)
    return Settings(**values)
