"""Settings for bench runs: production's costs (real argon2 cost unless told), local databases.

The environment is `test`, not `production`: production refuses to start with the fake SMS
gateway, and a bench must not send real SMS. At run time the two differ only in production's
gate on the operations paths (/docs, /openapi.json, /metrics), which no bench calls.
"""

from __future__ import annotations

from deni.config import Settings

# Bench-only secrets: they would pass production's checks; useless anywhere else.
JWT_SECRET = "bench-only-jwt-secret-0123456789abcdef0123"  # noqa: S105
PIN_PEPPER = "bench-only-pin-pepper-0123456789abcdef0123"
USSD_TOKEN = "benchonlyussdtoken0123456789abcdef"  # noqa: S105


# An API process as docs/deploy.md runs it: the loan sweep and SMS delivery are the workers'.
API_PROCESS_ENV = {"DENI_SWEEP_INTERVAL_S": "0", "DENI_SMS_INTERVAL_S": "0"}


def bench_settings(
    database_url: str,
    *,
    pool_size: int = 10,
    pin_hash_memory_kib: int | None = None,
    pin_hash_time_cost: int | None = None,
) -> Settings:
    defaults = Settings.model_fields
    return Settings(
        environment="test",
        database_url=database_url,
        database_pool_size=pool_size,
        jwt_secret=JWT_SECRET,
        pin_pepper=PIN_PEPPER,
        ussd_token=USSD_TOKEN,
        pin_hash_memory_kib=pin_hash_memory_kib or defaults["pin_hash_memory_kib"].default,
        pin_hash_time_cost=pin_hash_time_cost or defaults["pin_hash_time_cost"].default,
        log_level="WARNING",
    )


def bench_env(
    database_url: str, *, pin_hash_memory_kib: int, pin_hash_time_cost: int
) -> dict[str, str]:
    """The DENI_* variables the ASGI entry point reads, for a server subprocess."""
    return {
        "DENI_ENVIRONMENT": "test",
        "DENI_DATABASE_URL": database_url,
        "DENI_JWT_SECRET": JWT_SECRET,
        "DENI_PIN_PEPPER": PIN_PEPPER,
        "DENI_USSD_TOKEN": USSD_TOKEN,
        "DENI_PIN_HASH_MEMORY_KIB": str(pin_hash_memory_kib),
        "DENI_PIN_HASH_TIME_COST": str(pin_hash_time_cost),
        "DENI_LOG_LEVEL": "WARNING",
    }
