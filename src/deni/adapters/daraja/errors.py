"""Daraja's synchronous errors as typed exceptions.

Daraja answers a refused call with `{"requestId", "errorCode", "errorMessage"}` and an HTTP status.
`error_from_response` turns any non-success answer into one `DarajaError` subclass, so callers
branch on types (and on `retryable` / `outcome_unknown`), never on message text.

`outcome_unknown` is what a money-moving caller must look at: when it is True (a transport failure
after the request may have left, a 5xx, a garbled 200), Daraja may have accepted the request and a
blind re-send of a B2C payment can pay someone twice. Ask Transaction Status first.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import httpx

# Bounds what an exception (and so a log line) carries from a response body.
ERROR_MESSAGE_CHARS_MAX = 300


class DarajaError(Exception):
    """Base of every error the Daraja client raises (other than ValueError for bad arguments)."""

    # Worth trying again later with the same request (the worker decides when and how often).
    retryable: ClassVar[bool] = False
    _outcome_unknown: ClassVar[bool] = False

    def __init__(
        self,
        error_message: str,
        *,
        error_code: str | None = None,
        request_id: str | None = None,
        http_status: int | None = None,
    ) -> None:
        self.error_message = error_message[:ERROR_MESSAGE_CHARS_MAX]
        self.error_code = error_code
        self.request_id = request_id
        self.http_status = http_status
        super().__init__(self._describe())

    @property
    def outcome_unknown(self) -> bool:
        """Daraja may have acted on the request: check before re-sending anything that moves
        money (Transaction Status for B2C and reversals, STK query for a push)."""
        return self._outcome_unknown

    def _describe(self) -> str:
        parts = [self.error_message]
        if self.error_code is not None:
            parts.append(f"errorCode={self.error_code}")
        if self.http_status is not None:
            parts.append(f"http_status={self.http_status}")
        if self.request_id is not None:
            parts.append(f"requestId={self.request_id}")
        return " ".join(parts)


class InvalidAccessToken(DarajaError):
    """The bearer token was refused (expired, replaced by a newer one, or another environment's).

    The client refreshes the token and retries once; seeing this means the retry failed too.
    """

    retryable = True


class ApiProductNotEnabled(DarajaError):
    """401.003.01: the Daraja app lacks the API product (or the endpoint version is wrong).

    Its message says "Invalid Access Token" but a new token cannot fix it: configuration can.
    """


class OAuthFailed(DarajaError):
    """The consumer key/secret were refused (Daraja: HTTP 400, often with an empty body)."""


class BadRequest(DarajaError):
    """400.002.xx and other 4xx: the request is wrong; sending it again will not help."""


class RateLimited(DarajaError):
    """HTTP 429, 500.003.02 spike arrest, 500.003.03 quota: refused at the gateway; back off."""

    retryable = True


class DuplicateOriginatorConversationId(DarajaError):
    """500.002.1001 "Duplicate OriginatorConversationID.": Daraja already has a request with
    this id. This request was refused; the original's outcome comes from its own callback or
    from Transaction Status."""


class TransactionInProgress(DarajaError):
    """500.001.1001 "The transaction is being processed" on STK query: pending, not failed."""

    retryable = True


class SubscriberBusy(DarajaError):
    """500.001.1001 "Unable to lock subscriber": the customer has another M-PESA session open.
    The push was not started; try again in a minute or more."""

    retryable = True


class MerchantRejected(DarajaError):
    """500.001.1001 "Wrong credentials" / "Merchant does not exist": shortcode, passkey or
    password/timestamp mismatch. Configuration, not chance: do not retry."""


class UrlsAlreadyRegistered(DarajaError):
    """500.003.1001 on C2B register: URLs exist; change them in the Daraja portal first."""


class ServerError(DarajaError):
    """Any other 5xx: Daraja failed and may or may not have acted on the request."""

    retryable = True
    _outcome_unknown = True


class DarajaUnavailable(DarajaError):
    """No answer: connection failure or timeout.

    `maybe_sent` is False only when the request certainly never reached Daraja (no connection,
    or the token fetch before it failed). When True, a B2C or reversal outcome is unknown.
    """

    retryable = True

    def __init__(self, error_message: str, *, maybe_sent: bool) -> None:
        self.maybe_sent = maybe_sent
        super().__init__(error_message)

    @property
    def outcome_unknown(self) -> bool:
        return self.maybe_sent


class TokenUnavailable(DarajaUnavailable):
    """No OAuth token could be had (no answer, 5xx, garbage, rate limit on the token endpoint).

    The call that needed it was never sent, so `maybe_sent` is False; the cause is chained.
    """

    def __init__(self, error_message: str) -> None:
        super().__init__(error_message, maybe_sent=False)


class NotAccepted(DarajaError):
    """A well-formed answer whose ResponseCode is not "0": Daraja declined to start the work."""


class GarbageResponse(DarajaError):
    """A success status with a body that is not JSON or not the expected shape.

    Daraja did answer, so it may well have accepted the request: the outcome is unknown.
    """

    retryable = True
    _outcome_unknown = True


# errorCode -> exception, for codes whose meaning does not depend on the message.
_BY_CODE: dict[str, type[DarajaError]] = {
    "400.003.01": InvalidAccessToken,
    "401.002.01": InvalidAccessToken,
    "404.001.03": InvalidAccessToken,
    "401.003.01": ApiProductNotEnabled,
    "400.008.01": OAuthFailed,
    "400.008.02": OAuthFailed,
    "500.003.02": RateLimited,
    "500.003.03": RateLimited,
}


def _classify(code: str | None, message: str, http_status: int) -> type[DarajaError]:
    lowered = message.lower()
    if code is not None:
        if code in _BY_CODE:
            return _BY_CODE[code]
        if code.startswith("429."):
            return RateLimited
        if code == "500.002.1001" and "duplicate" in lowered:
            return DuplicateOriginatorConversationId
        if code == "500.001.1001":
            if "being processed" in lowered:
                return TransactionInProgress
            if "unable to lock subscriber" in lowered:
                return SubscriberBusy
            if "wrong credentials" in lowered or "merchant does not exist" in lowered:
                return MerchantRejected
        if code == "500.003.1001" and "already registered" in lowered:
            return UrlsAlreadyRegistered
    if http_status == 429:
        return RateLimited
    if 400 <= http_status < 500:
        return BadRequest
    if http_status >= 500:
        return ServerError
    # An error-shaped body with a success (or odd) status: trust the body, not the status.
    return BadRequest if code is not None and code.startswith("4") else ServerError


def _decode_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        decoded = json.loads(response.content)
    except (ValueError, RecursionError):
        return None
    return decoded if isinstance(decoded, dict) else None


def _text_or_none(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def is_error_body(body: dict[str, Any]) -> bool:
    return "errorCode" in body or "errorMessage" in body


def error_from_response(response: httpx.Response, *, oauth: bool = False) -> DarajaError:
    """The exception for a response that is not a success. `oauth`: it answered a token fetch."""
    status = response.status_code
    body = _decode_object(response)
    if body is not None and is_error_body(body):
        code = _text_or_none(body.get("errorCode"))
        message = _text_or_none(body.get("errorMessage")) or "Daraja refused the request"
        request_id = _text_or_none(body.get("requestId"))
        kind = _classify(code, message, status)
        if oauth and kind is BadRequest:
            kind = OAuthFailed
        return kind(message, error_code=code, request_id=request_id, http_status=status)
    # No error body: an empty 400 (wrong consumer key/secret), an HTML page from a proxy, a SOAP
    # fault from C2B register. Classify by status alone; keep a short excerpt for the operator.
    excerpt = response.content[:ERROR_MESSAGE_CHARS_MAX].decode("utf-8", errors="replace")
    message = f"HTTP {status} without a Daraja error body: {excerpt!r}"
    if oauth and 400 <= status < 500 and status != 429:
        return OAuthFailed(message, http_status=status)
    if status == 429:
        return RateLimited(message, http_status=status)
    if 400 <= status < 500:
        return BadRequest(message, http_status=status)
    if status >= 500:
        return ServerError(message, http_status=status)
    return GarbageResponse(message, http_status=status)
