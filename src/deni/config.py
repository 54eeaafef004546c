"""One Settings class, read from DENI_* environment variables."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The placeholders are long enough that JWT libraries accept them for local development;
# refused outside it (config_checks.py).
from deni.config_checks import PLACEHOLDER_CALLBACK_TOKEN as PLACEHOLDER_CALLBACK_TOKEN
from deni.config_checks import PLACEHOLDER_SECRET as PLACEHOLDER_SECRET
from deni.config_checks import jwt_key_ring as jwt_key_ring
from deni.config_checks import production_problems

DEFAULT_DATABASE_URL = "sqlite:///./var/deni.sqlite3"


class Settings(BaseSettings):
    # A refusal names the setting, never echoes the input: that would print secrets.
    model_config = SettingsConfigDict(
        env_prefix="DENI_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = DEFAULT_DATABASE_URL
    database_pool_size: int = Field(default=10, ge=1, le=200)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    # Access tokens are signed with DENI_JWT_SECRET (one key, its key id derived from it), or,
    # once set, with DENI_JWT_KEYS: "kid:secret,kid:secret", the key named by
    # DENI_JWT_CURRENT_KID signing and every key listed verifying, so a rotation signs nobody
    # out (docs/operations.md, "Rotating keys"). DENI_JWT_SECRET also keys the sync cursors.
    jwt_secret: str = PLACEHOLDER_SECRET
    jwt_keys: str = ""
    jwt_current_kid: str = ""
    pin_pepper: str = PLACEHOLDER_SECRET
    access_token_ttl_s: int = Field(default=15 * 60, ge=30, le=24 * 3600)
    refresh_token_ttl_s: int = Field(default=30 * 24 * 3600, ge=60, le=365 * 24 * 3600)
    # argon2id cost (ADR 0006): 1 MiB, 1 pass, about 1 ms. A 4-digit PIN has 10,000 values, so
    # no hash cost protects it; the pepper and the lockout do. Hashes made at another cost are
    # re-made at this one on the next right PIN.
    pin_hash_memory_kib: int = Field(default=1_024, ge=1_024, le=1_048_576)
    pin_hash_time_cost: int = Field(default=1, ge=1, le=10)

    # How often `deni serve` and `deni worker` expire stale requests and store reminders, and
    # deliver pending SMS; 0 turns each off (e.g. on API processes when workers do it).
    sweep_interval_s: float = Field(default=60.0, ge=0, le=86_400)
    sms_interval_s: float = Field(default=2.0, ge=0, le=3_600)

    log_level: str = "INFO"
    log_json: bool = True
    # Production only: /docs, /redoc, /openapi.json and /metrics answer 404 unless a request
    # carries `Authorization: Bearer <ops_token>`; unset, they are closed to everyone.
    ops_token: str = ""
    # The host name the staff console (/ops) answers on, e.g. ops.deni.example; set, /ops
    # answers 404 on every other host, so a script on the members' web app (/app) shares no
    # origin with a signed-in operator's console. Empty: any host (development).
    ops_host: str = ""

    # Passkeys (WebAuthn, docs/passkeys.md): the domain passkeys are made for, and the origin
    # the web app is served from exactly as the browser shows it (scheme, host, port). A
    # passkey made for one domain works on no other; browsers allow passkeys on https:// and on
    # http://localhost only.
    webauthn_rp_id: str = Field(default="localhost", min_length=1, max_length=253)
    webauthn_origin: str = Field(default="http://localhost:8000", min_length=8, max_length=300)

    # USSD channel and SMS.
    ussd_service_code: str = Field(default="*383#", pattern=r"^\*[0-9*]{1,20}#$")
    # Africa's Talking ends a session after 180 s; state lasts as long, counted from the last hop.
    ussd_session_timeout_s: int = Field(default=180, ge=10, le=3_600)
    ussd_resume_window_s: int = Field(default=120, ge=0, le=3_600)  # 0: never offer to resume
    # Africa's Talking posts to {base}/ussd/{ussd_token}; empty: to /ussd (development, the
    # terminal dialer). Production refuses to start without one.
    ussd_token: str = ""
    # Tokens still accepted after a rotation (comma-separated), until the partner uses the new.
    ussd_tokens_previous: str = ""
    ussd_allowed_ips: str = ""  # comma-separated; empty: any source
    # Reverse proxies whose X-Forwarded-For is believed (addresses or CIDRs, comma-separated);
    # empty: none, every request's address is its TCP peer (entrypoints/gate.client_address).
    trusted_proxies: str = ""
    # Hops that do work (replays of the same hop are free) per phone per minute; past it, END.
    ussd_hops_per_minute_max: int = Field(default=30, ge=1, le=1_000_000)
    session_store: Literal["memory", "sql", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    sms_backend: Literal["fake", "africastalking"] = "fake"
    at_username: str = "sandbox"
    at_api_key: str = PLACEHOLDER_SECRET
    at_sender_id: str = ""

    # Web Push to the web app (docs/notifications.md): the VAPID key pair every push is signed
    # with (the private key as base64url of its 32 bytes, base64url DER or PEM; the public key
    # as base64url of the uncompressed point) and a contact for push services (mailto: or
    # https://). Production refuses to start without them; development and test derive a
    # stable pair from the PIN pepper when they are empty.
    vapid_private_key: str = ""
    vapid_public_key: str = ""
    vapid_subject: str = ""

    # M-PESA through Daraja. DENI_MPESA=on wires the real Daraja client, the outbox
    # and the worker; DENI_SANDBOX=on (development only) makes `deni serve` start the local
    # Daraja sandbox and point the client at it.
    mpesa: bool = False
    sandbox: bool = False
    sandbox_port: int = Field(default=8001, ge=1, le=65535)
    daraja_environment: Literal["sandbox", "production"] = "sandbox"
    daraja_base_url: str | None = None  # e.g. the local sandbox; default: Safaricom's
    daraja_consumer_key: str = "sandbox-key"
    daraja_consumer_secret: str = "sandbox-secret"  # noqa: S105 (the local sandbox's default)
    daraja_stk_shortcode: str = "174379"
    # Safaricom's public sandbox passkey for 174379; production has its own.
    daraja_stk_passkey: str = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"
    daraja_b2c_shortcode: str = "600000"
    daraja_paybill_shortcode: str = "600000"  # where C2B payments land
    daraja_initiator_name: str = "testapi"
    daraja_initiator_password: str = "Sandbox#2026"  # noqa: S105 (the local sandbox's default)
    daraja_certificate_pem: str | None = None  # the PEM itself, or a path to it
    daraja_security_credential: str | None = None
    daraja_timeout_s: float = Field(default=30.0, gt=0, le=120)
    # Where Daraja reaches Deni: {callback_base_url}/hooks/{callback_token}/{kind}. The token is
    # hex (Safaricom refuses URLs containing words like "exe" or "cmd").
    # Unset: this process's own address (DENI_HOST, DENI_PORT; `deni serve --host/--port` set
    # them), right for a local sandbox. Behind a reverse proxy (Caddy): its public https:// URL.
    callback_base_url: str = ""
    callback_token: str = PLACEHOLDER_CALLBACK_TOKEN
    # Tokens still accepted on /hooks after a rotation (comma-separated): callbacks of requests
    # sent with the old URL keep arriving there; Daraja is only ever given callback_token.
    callback_tokens_previous: str = ""
    # Comma-separated addresses Daraja calls from (docs/mpesa.md lists Safaricom's); empty: any
    # source. Production refuses to start without it: defence in depth, since Daraja signs
    # nothing; what a callback says about money is confirmed with M-PESA before it counts.
    callback_allowed_ips: str = ""
    c2b_validation: bool = False  # answer C2B validation by account number
    # The in-process worker of `deni serve` (0: off; run `deni worker` instead).
    worker_interval_s: float = Field(default=1.0, ge=0, le=3_600)
    # `deni worker`'s Prometheus metrics on 127.0.0.1 at this port (0: none). Never another
    # address: the worker serves nothing else, and nothing of it is for the public.
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    reconcile_interval_s: float = Field(default=60.0, gt=0, le=86_400)
    # With M-PESA on, GET /health/ready fails when no worker process has beaten its heartbeat
    # for this long (the loop beats before a pass, at most every 10 s; docs/deploy.md).
    worker_heartbeat_stale_s: float = Field(default=120.0, ge=30, le=86_400)
    mpesa_stk_query_after_s: float = Field(default=180.0, ge=0, le=86_400)
    mpesa_status_after_s: float = Field(default=120.0, ge=0, le=86_400)
    # Between two questions about the same request (STK Query, Transaction Status): an answer
    # that never came is asked for again after this. Shorter only where minutes matter more
    # than Daraja's quota (the soak, benchmarks/soak).
    mpesa_check_backoff_s: float = Field(default=300.0, ge=1, le=86_400)
    # A file holding seconds to add to the system clock, re-read as it changes: every process
    # given the same file lives in the same moved time, so the soak (benchmarks/soak) lets
    # loans fall due in minutes. Refused in production (config_checks.py).
    clock_offset_file: str = ""
    # A paybill payment accepted at validation and still unconfirmed after this: ask M-PESA.
    mpesa_paybill_confirm_after_s: float = Field(default=300.0, ge=0, le=86_400)
    # The Pull API (paybill payments of the last 48 h, to find lost confirmations): how often
    # the reconciler lists them (0: never), and the number nominated for it at Go-Live (unset:
    # Deni does not register; Safaricom's sandbox test number by default, for the local one).
    mpesa_pull_interval_s: float = Field(default=900.0, ge=0, le=86_400)
    daraja_pull_nominated_number: str | None = "254708374149"

    # The checks below hold for the test environment one at a time; production is judged by
    # config_checks.production_problems instead, which names every problem at once.

    @model_validator(mode="after")
    def _refuse_placeholder_callback_token(self) -> Settings:
        if self.environment == "production":
            return self
        if self.environment != "development" and self.mpesa:
            token = self.callback_token
            hexadecimal = all(c in "0123456789abcdef" for c in token.lower())
            if token == PLACEHOLDER_CALLBACK_TOKEN or len(token) < 32 or not hexadecimal:
                raise ValueError("DENI_CALLBACK_TOKEN must be a real hex secret of 32+ chars")
        if self.mpesa and self.daraja_environment == "production":
            defaults = Settings.model_fields
            for name in ("daraja_consumer_secret", "daraja_initiator_password"):
                if getattr(self, name) == defaults[name].default:
                    raise ValueError(f"DENI_{name.upper()} must be the real Daraja value")
        return self

    @model_validator(mode="after")
    def _refuse_placeholder_sms_key(self) -> Settings:
        real_key = self.at_api_key != PLACEHOLDER_SECRET and len(self.at_api_key) >= 16
        live = self.environment == "test" and self.sms_backend == "africastalking"
        if live and not real_key:
            raise ValueError("DENI_AT_API_KEY must be a real Africa's Talking API key")
        return self

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if self.environment == "test":
            for name in ("jwt_secret", "pin_pepper"):
                value = getattr(self, name)
                if value == PLACEHOLDER_SECRET or len(value) < 32:
                    raise ValueError(f"DENI_{name.upper()} must be a real secret of 32+ chars")
        return self

    @model_validator(mode="after")
    def _jwt_keys_are_well_formed(self) -> Settings:
        jwt_key_ring(self)  # ValueError names what is wrong, never a secret
        return self

    @model_validator(mode="after")
    def _passkeys_belong_to_the_origin(self) -> Settings:
        origin = urlsplit(self.webauthn_origin)
        host = (origin.hostname or "").lower()
        rp_id = self.webauthn_rp_id.lower()
        if origin.scheme not in ("https", "http") or origin.path not in ("", "/"):
            raise ValueError("DENI_WEBAUTHN_ORIGIN must be scheme://host[:port], nothing more")
        if host != rp_id and not host.endswith("." + rp_id):
            raise ValueError(
                "DENI_WEBAUTHN_RP_ID must be DENI_WEBAUTHN_ORIGIN's host or its parent"
            )
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, value: str) -> str:
        for part in (p.strip() for p in value.split(",")):
            if part:
                ipaddress.ip_network(part, strict=False)  # ValueError: refused at start
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        """Every unsafe production setting, named at once (config_checks.py has the rules)."""
        problems = production_problems(self) if self.environment == "production" else []
        if problems:
            listed = "".join(f"\n  - {problem}" for problem in problems)
            raise ValueError(f"unsafe production settings:{listed}")
        return self

    @property
    def callback_base(self) -> str:
        if self.callback_base_url:
            return self.callback_base_url.rstrip("/")
        # A server listening on every address is reached on loopback by a local sandbox.
        host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(self.host, self.host)  # noqa: S104
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def accepted_callback_tokens(self) -> tuple[str, ...]:
        """The current token first, then the previous ones still accepted."""
        return _token_list(self.callback_token, self.callback_tokens_previous)

    @property
    def accepted_ussd_tokens(self) -> tuple[str, ...]:
        return _token_list(self.ussd_token, self.ussd_tokens_previous)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def sqlite_path(self) -> Path | None:
        if not self.is_sqlite or ":memory:" in self.database_url:
            return None
        return Path(self.database_url.split("///", 1)[1])


def _token_list(current: str, previous_csv: str) -> tuple[str, ...]:
    previous = [part.strip() for part in previous_csv.split(",") if part.strip()]
    return tuple(token for token in (current, *previous) if token)
