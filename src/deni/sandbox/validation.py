"""Field checks with Daraja's answers: 400.002.02 "Bad Request - Invalid <Field>"."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from deni.sandbox.formats import CENTS_PER_SHILLING

# Daraja refuses callback URLs containing these, in any case (docs/reference-daraja.md).
BLOCKED_URL_WORDS = ("m-pesa", "mpesa", "safaricom", "exe", "exec", "cmd", "sql", "query")
_MSISDN = re.compile(r"^254(7|1)\d{8}$")
_WHOLE_SHILLINGS = re.compile(r"^\d{1,9}(\.0{1,2})?$")
_SHORTCODE = re.compile(r"^\d{5,7}$")
_URL_CHARS_MAX = 2_000
_TEXT_CHARS_MAX = 200


class DarajaError(Exception):
    """A synchronous Daraja error: HTTP status plus {requestId, errorCode, errorMessage}."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message


def invalid(field: str) -> DarajaError:
    return DarajaError(400, "400.002.02", f"Bad Request - Invalid {field}")


def busy() -> DarajaError:
    return DarajaError(500, "500.003.02", "System is busy. Please try again in few minutes.")


def text(
    body: dict[str, Any],
    field: str,
    *,
    chars_max: int = _TEXT_CHARS_MAX,
    chars_min: int = 1,
    required: bool = True,
) -> str:
    """A string field (numbers are accepted and read as their digits, as Daraja does)."""
    value = body.get(field)
    if value is None and not required:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise invalid(field)
    value = str(value)
    if not chars_min <= len(value) <= chars_max:
        raise invalid(field)
    return value


def one_of(body: dict[str, Any], field: str, allowed: frozenset[str]) -> str:
    value = text(body, field)
    if value not in allowed:
        raise invalid(field)
    return value


def shortcode(body: dict[str, Any], field: str) -> str:
    value = text(body, field)
    if not _SHORTCODE.match(value):
        raise invalid(field)
    return value


def msisdn(body: dict[str, Any], field: str) -> str:
    """2547XXXXXXXX or 2541XXXXXXXX, digits only, as a string or a JSON number."""
    value = text(body, field)
    if not _MSISDN.match(value):
        raise invalid(field)
    return value


def amount_cents(body: dict[str, Any], field: str = "Amount") -> int:
    """Whole shillings ("10", 10, 10.0, "10.00"), at least 1; returned in cents."""
    value = body.get(field)
    if isinstance(value, bool):
        raise invalid(field)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str) or not _WHOLE_SHILLINGS.match(value):
        raise invalid(field)
    whole = int(value.split(".")[0])
    if whole < 1:
        raise invalid(field)
    return whole * CENTS_PER_SHILLING


def timestamp(body: dict[str, Any], field: str = "Timestamp") -> str:
    value = text(body, field, chars_min=14, chars_max=14)
    try:
        datetime.strptime(value, "%Y%m%d%H%M%S")  # a format check only
    except ValueError:
        raise invalid(field) from None
    return value


def url(body: dict[str, Any], field: str, *, reject_blocked_words: bool) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value or len(value) > _URL_CHARS_MAX:
        raise invalid(field)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or value != value.strip():
        raise invalid(field)
    if any(c.isspace() for c in value):
        raise invalid(field)
    lowered = value.lower()
    if reject_blocked_words and any(word in lowered for word in BLOCKED_URL_WORDS):
        raise invalid(field)
    return value
