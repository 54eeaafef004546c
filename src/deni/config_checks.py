"""What production refuses to start with: weak or shared secrets, plain HTTP, sandbox values.

`production_problems` lists every unsafe setting at once, so one start-up names all of them.
Development and test are not checked here (config.py keeps their lighter checks).

A secret is judged by what it looks like, since nobody can measure how it was made:
- at least SECRET_CHARS_MIN characters;
- at least SECRET_BITS_MIN bits by the Shannon estimate (length times the entropy per character
  of the value's own character counts): 32 zeros carry 0 bits, "abab…" 1 bit a character,
  while a random 32-hex-digit token carries about 115 (never below 90 in 200,000 draws);
- not one short block repeated ("0123456789abcdef0123456789abcdef" carries 128 bits by the
  estimate above, and is still a placeholder).
`python3 -c 'import secrets; print(secrets.token_hex(32))'` makes one that passes. No secret
may contain a public development placeholder anywhere (PLACEHOLDER_SECRET, the placeholder
callback token), whatever else surrounds it.

Beyond secrets: trusted proxies no wider than a /8 (IPv4) or a /32 (IPv6) each, a shared session
store (not memory), and a source allowlist for Africa's Talking as for Daraja.
"""

from __future__ import annotations

import base64
import ipaddress
import math
import re
from collections import Counter
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from deni.domain.secrecy import derived_key_id

if TYPE_CHECKING:
    from deni.config import Settings

# Public in this repository, so no secret of production's may contain them.
PLACEHOLDER_SECRET = "change-me-in-production-development-only"  # noqa: S105
PLACEHOLDER_CALLBACK_TOKEN = "0123456789abcdef0123456789abcdef"  # noqa: S105 (dev only)
PLACEHOLDERS = (PLACEHOLDER_SECRET, PLACEHOLDER_CALLBACK_TOKEN)
SECRET_CHARS_MIN = 32
AT_API_KEY_CHARS_MIN = 16
# A trusted proxy entry wider than this lets nearly anyone name their own address.
PROXY_IPV4_PREFIX_MIN = 8
PROXY_IPV6_PREFIX_MIN = 32
_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
# Every setting that holds a secret, for the placeholder rule (empty ones are not in use).
SECRET_FIELDS = (
    "jwt_secret",
    "pin_pepper",
    "ussd_token",
    "callback_token",
    "ops_token",
    "at_api_key",
    "daraja_consumer_secret",
    "daraja_stk_passkey",
    "daraja_initiator_password",
    "daraja_security_credential",
    "vapid_private_key",
)
SECRET_BITS_MIN = 64
# Daraja settings whose defaults are Safaricom's public sandbox values (shortcodes 174379 and
# 600000, the sandbox passkey, the test initiator and nominated number): never production's.
DARAJA_SANDBOX_DEFAULTS = (
    "daraja_consumer_key",
    "daraja_consumer_secret",
    "daraja_stk_shortcode",
    "daraja_stk_passkey",
    "daraja_b2c_shortcode",
    "daraja_paybill_shortcode",
    "daraja_initiator_name",
    "daraja_initiator_password",
    "daraja_pull_nominated_number",
)
AT_SANDBOX_USERNAME = "sandbox"


# A JWT key id: short, printable, safe in a header and in a log line.
KID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,40}")


def jwt_key_ring(settings: Settings) -> tuple[str, dict[str, str]]:
    """(the key id that signs, every key that verifies by id) from DENI_JWT_KEYS and
    DENI_JWT_CURRENT_KID, or DENI_JWT_SECRET alone under its derived id. ValueError for a
    malformed list, naming the setting and never a secret."""
    if not settings.jwt_keys.strip():
        kid = derived_key_id(settings.jwt_secret)
        if settings.jwt_current_kid and settings.jwt_current_kid != kid:
            raise ValueError("DENI_JWT_CURRENT_KID names a key DENI_JWT_KEYS does not hold")
        return kid, {kid: settings.jwt_secret}
    keys: dict[str, str] = {}
    for number, entry in enumerate(settings.jwt_keys.split(","), start=1):
        kid, colon, secret = entry.strip().partition(":")
        if not colon or not KID_PATTERN.fullmatch(kid) or not secret:
            raise ValueError(
                f"DENI_JWT_KEYS entry {number} must be kid:secret (kid: letters, digits, . _ -)"
            )
        if kid in keys:
            raise ValueError(f"DENI_JWT_KEYS names the key id {kid!r} twice")
        keys[kid] = secret
    current = settings.jwt_current_kid or (next(iter(keys)) if len(keys) == 1 else "")
    if not current:
        raise ValueError("DENI_JWT_CURRENT_KID must name the key that signs among DENI_JWT_KEYS")
    if current not in keys:
        raise ValueError("DENI_JWT_CURRENT_KID names a key DENI_JWT_KEYS does not hold")
    return current, keys


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def shannon_bits(value: str) -> float:
    """Length times the Shannon entropy per character of the value's own character counts."""
    if not value:
        return 0.0
    counts = Counter(value).values()
    length = len(value)
    per_char = -sum(count / length * math.log2(count / length) for count in counts)
    return length * per_char


def is_repeated_block(value: str) -> bool:
    """`value` is some shorter block written out again and again ("abcabcabc", "0101")."""
    length = len(value)
    return any(
        length % size == 0 and value == value[:size] * (length // size)
        for size in range(1, length // 2 + 1)
    )


def secret_problem(variable: str, value: str) -> str | None:
    """Why `value` is no secret, or None when it looks like one."""
    if len(value) < SECRET_CHARS_MIN:
        return f"{variable} must be at least {SECRET_CHARS_MIN} characters"
    if shannon_bits(value) < SECRET_BITS_MIN or is_repeated_block(value):
        return (
            f"{variable} looks guessable (too few distinct characters, or a repeated block): "
            "use a random value, e.g. secrets.token_hex(32)"
        )
    return None


def _secrets(settings: Settings) -> dict[str, str]:
    """The server's own secrets that are in use, by variable name (a key of a list by its
    place or its key id: `DENI_JWT_KEYS[k2]`, `DENI_CALLBACK_TOKENS_PREVIOUS[1]`)."""
    found = {
        "DENI_JWT_SECRET": settings.jwt_secret,
        "DENI_PIN_PEPPER": settings.pin_pepper,
        "DENI_USSD_TOKEN": settings.ussd_token,
    }
    if settings.jwt_keys.strip():
        for kid, secret in jwt_key_ring(settings)[1].items():
            found[f"DENI_JWT_KEYS[{kid}]"] = secret
    for number, token in enumerate(_csv(settings.ussd_tokens_previous), start=1):
        found[f"DENI_USSD_TOKENS_PREVIOUS[{number}]"] = token
    if settings.mpesa:
        found["DENI_CALLBACK_TOKEN"] = settings.callback_token
        for number, token in enumerate(_csv(settings.callback_tokens_previous), start=1):
            found[f"DENI_CALLBACK_TOKENS_PREVIOUS[{number}]"] = token
    if settings.ops_token:
        found["DENI_OPS_TOKEN"] = settings.ops_token
    return found


def _may_share(first: str, second: str) -> bool:
    """DENI_JWT_SECRET carried over into DENI_JWT_KEYS is the same key kept, not a second use
    (it keys the sync cursors under a label of their own, as it always did)."""
    pair = {first.split("[")[0], second.split("[")[0]}
    return pair == {"DENI_JWT_SECRET", "DENI_JWT_KEYS"}


def _secret_problems(settings: Settings) -> list[str]:
    in_use = _secrets(settings)
    problems = [
        problem
        for variable, value in in_use.items()
        if (problem := secret_problem(variable, value)) is not None
    ]
    seen: dict[str, str] = {}
    for variable, value in in_use.items():
        if value and value in seen and not _may_share(variable, seen[value]):
            problems.append(f"{variable} must differ from {seen[value]}: one secret, one use")
        seen.setdefault(value, variable)
    return problems


def _placeholder_problems(settings: Settings) -> list[str]:
    problems = []
    named = {
        f"DENI_{name.upper()}": getattr(settings, name) or ""
        for name in SECRET_FIELDS
        if _secret_in_use(settings, name)
    }
    # and every key of a list: the JWT keys, the previous gateway tokens
    named |= {variable: value for variable, value in _secrets(settings).items() if "[" in variable}
    for variable, value in named.items():
        if any(placeholder.lower() in value.lower() for placeholder in PLACEHOLDERS):
            problems.append(f"{variable} contains a public development placeholder")
    return problems


def _secret_in_use(settings: Settings, name: str) -> bool:
    if name == "callback_token" or name.startswith("daraja_"):
        return settings.mpesa
    if name == "at_api_key":
        return settings.sms_backend == "africastalking"
    return True


def _token_shape_problems(settings: Settings) -> list[str]:
    """What the gateways need of their tokens, and a real SMS key."""
    problems = []
    callbacks = [("DENI_CALLBACK_TOKEN", settings.callback_token)] + [
        (f"DENI_CALLBACK_TOKENS_PREVIOUS[{number}]", token)
        for number, token in enumerate(_csv(settings.callback_tokens_previous), start=1)
    ]
    for variable, token in callbacks if settings.mpesa else []:
        if not all(c in "0123456789abcdef" for c in token.lower()):
            problems.append(
                f"{variable} must be hexadecimal (Safaricom refuses some words in URLs)"
            )
    ussd = [("DENI_USSD_TOKEN", settings.ussd_token)] + [
        (f"DENI_USSD_TOKENS_PREVIOUS[{number}]", token)
        for number, token in enumerate(_csv(settings.ussd_tokens_previous), start=1)
    ]
    for variable, token in ussd:
        if token and not token.isalnum():
            problems.append(f"{variable} must be letters and digits only (it is a URL path)")
    key = settings.at_api_key
    real_key = key != PLACEHOLDER_SECRET and len(key) >= AT_API_KEY_CHARS_MIN
    if settings.sms_backend == "africastalking" and not real_key:
        problems.append("DENI_AT_API_KEY must be a real Africa's Talking API key")
    return problems


def too_wide_proxy(entry: str) -> bool:
    """A trusted proxy entry that covers far more than an operator's own proxies."""
    network = ipaddress.ip_network(entry.strip(), strict=False)
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_IPV4_MAPPED):
        return network.prefixlen - _IPV4_MAPPED.prefixlen < PROXY_IPV4_PREFIX_MIN
    if isinstance(network, ipaddress.IPv4Network):
        return network.prefixlen < PROXY_IPV4_PREFIX_MIN
    return network.prefixlen < PROXY_IPV6_PREFIX_MIN


def _network_problems(settings: Settings) -> list[str]:
    problems = []
    entries = [part for part in settings.trusted_proxies.split(",") if part.strip()]
    if any(too_wide_proxy(entry) for entry in entries):
        problems.append(
            f"DENI_TRUSTED_PROXIES must name your proxies, no network wider than "
            f"/{PROXY_IPV4_PREFIX_MIN} (IPv4) or /{PROXY_IPV6_PREFIX_MIN} (IPv6): anyone inside "
            "one could name any address in X-Forwarded-For"
        )
    if settings.session_store == "memory":
        problems.append(
            "DENI_SESSION_STORE=memory counts abuse limits and keeps USSD sessions per process: "
            "use redis or sql"
        )
    if not [part for part in settings.ussd_allowed_ips.split(",") if part.strip()]:
        problems.append(
            "DENI_USSD_ALLOWED_IPS must list Africa's Talking's source addresses (otherwise the "
            "USSD token alone stands between anyone and acting as any SIM)"
        )
    if settings.mpesa:
        problems += _callback_source_problems(settings.callback_allowed_ips)
    if settings.sandbox:
        problems.append("DENI_SANDBOX=on is for development, never production")
    if settings.clock_offset_file:
        problems.append("DENI_CLOCK_OFFSET_FILE moves Deni's clock: for the soak, never production")
    return problems


def _callback_source_problems(allowed_csv: str) -> list[str]:
    """Daraja signs no callback: its source addresses are the one check beside the token."""
    entries = [part.strip() for part in allowed_csv.split(",") if part.strip()]
    if not entries:
        return ["DENI_CALLBACK_ALLOWED_IPS must list the addresses Daraja calls from"]
    problems = []
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            problems.append(f"DENI_CALLBACK_ALLOWED_IPS: {entry[:45]!r} is not an address or block")
    return problems


def _url_problems(settings: Settings) -> list[str]:
    problems = []
    if settings.mpesa and urlsplit(settings.callback_base_url).scheme != "https":
        problems.append(
            "DENI_CALLBACK_BASE_URL must be this service's public https:// address "
            "(Daraja's callbacks carry payment results and the path's secret token)"
        )
    base_url = settings.daraja_base_url
    if settings.mpesa and base_url is not None and urlsplit(base_url).scheme != "https":
        problems.append("DENI_DARAJA_BASE_URL must be https://")
    return problems


def _gateway_problems(settings: Settings) -> list[str]:
    problems = []
    if settings.mpesa and settings.daraja_environment != "production":
        problems.append(
            "DENI_DARAJA_ENVIRONMENT must be production: the sandbox's payments are not money"
        )
    if settings.mpesa and settings.daraja_environment == "production":
        defaults = type(settings).model_fields
        problems += [
            f"DENI_{name.upper()} is Safaricom's sandbox value, not production's"
            for name in DARAJA_SANDBOX_DEFAULTS
            if getattr(settings, name) is not None
            and getattr(settings, name) == defaults[name].default
        ]
    if settings.sms_backend == "fake":
        problems.append(
            "DENI_SMS_BACKEND=fake sends nothing (PIN reset codes never arrive): use africastalking"
        )
    elif settings.at_username == AT_SANDBOX_USERNAME:
        problems.append("DENI_AT_USERNAME=sandbox reaches Africa's Talking's sandbox, no phone")
    return problems


def vapid_public_key_of(private_key: str) -> str | None:
    """The base64url public key (uncompressed point) of a DENI_VAPID_PRIVATE_KEY given as the
    raw 32-byte scalar in base64url, base64url DER or PEM; None when it is none of them."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    text = private_key.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
        else:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            if len(raw) == 32:
                key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
            else:
                key = serialization.load_der_private_key(raw, password=None)
    except (ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        return None
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return base64.urlsafe_b64encode(point).decode().rstrip("=")


def _push_problems(settings: Settings) -> list[str]:
    """Web Push signs every message with the VAPID key: production brings its own, and says
    who runs it (RFC 8292's contact), since push services write to that address."""
    problems = []
    if not settings.vapid_private_key:
        problems.append(
            "DENI_VAPID_PRIVATE_KEY must be set (Web Push; `vapid --gen` or docs/notifications.md)"
        )
    else:
        public = vapid_public_key_of(settings.vapid_private_key)
        if public is None:
            problems.append("DENI_VAPID_PRIVATE_KEY is not a P-256 private key")
        elif settings.vapid_public_key.strip().rstrip("=") != public:
            problems.append(
                "DENI_VAPID_PUBLIC_KEY must be the public half of DENI_VAPID_PRIVATE_KEY"
            )
    subject = settings.vapid_subject
    if not subject.startswith(("mailto:", "https://")) or subject.endswith(".invalid"):
        problems.append(
            "DENI_VAPID_SUBJECT must be a mailto: or https:// contact for push services"
        )
    return problems


def production_problems(settings: Settings) -> list[str]:
    """Every reason these settings are unsafe for production (empty when they are not)."""
    return (
        _secret_problems(settings)
        + _push_problems(settings)
        + _placeholder_problems(settings)
        + _token_shape_problems(settings)
        + _url_problems(settings)
        + _gateway_problems(settings)
        + _network_problems(settings)
    )
