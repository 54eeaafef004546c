"""Deni's own thin Daraja client: typed requests and answers over one sync httpx.Client.

Behaviour worth knowing before calling it:
- Amounts go in as integer cents and leave as whole shillings (refused otherwise: ValueError).
- Every call has explicit connect and read timeouts from `DarajaConfig`.
- The only retry inside is one: when Daraja refuses the bearer token, the client gets a new one
  and sends the same request once more. A refused token is checked at Daraja's gateway before
  anything is processed, so that repeat cannot double a payment. Every other retry is the
  caller's (the worker's), because only it knows whether the outcome of a B2C is settled.
- Failures are `DarajaError` subclasses (errors.py); check `outcome_unknown` before re-sending
  anything that moves money.
- Nothing secret is logged: no token, credential, password, phone number or request body.
"""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Literal, Self, TypeVar

import httpx
import structlog
from pydantic import ValidationError

from deni.adapters.daraja.credentials import (
    NAIROBI,
    encrypt_security_credential,
    stk_password,
    stk_timestamp,
)
from deni.adapters.daraja.errors import (
    DarajaError,
    DarajaUnavailable,
    GarbageResponse,
    InvalidAccessToken,
    NotAccepted,
    OAuthFailed,
    TokenUnavailable,
    error_from_response,
    is_error_body,
)
from deni.adapters.daraja.models import (
    AcceptedResponse,
    AccountBalanceRequest,
    AccountBalanceResponse,
    B2CPaymentRequest,
    B2CPaymentResponse,
    C2BRegisterUrlRequest,
    C2BRegisterUrlResponse,
    DarajaRequest,
    DarajaResponse,
    OAuthTokenResponse,
    PullQueryRequest,
    PullQueryResponse,
    PullRegisterRequest,
    PullRegisterResponse,
    ReversalRequest,
    ReversalResponse,
    StkPushRequest,
    StkPushResponse,
    StkQueryRequest,
    StkQueryResponse,
    TransactionStatusRequest,
    TransactionStatusResponse,
)
from deni.adapters.daraja.money import cents_to_shillings
from deni.adapters.daraja.tokens import (
    DEFAULT_REFRESH_MARGIN_S,
    AccessTokens,
    Clock,
    InMemoryTokenStore,
    TokenStore,
)

log = structlog.get_logger(__name__)

Environment = Literal["sandbox", "production"]
BASE_URLS: dict[str, str] = {
    "sandbox": "https://sandbox.safaricom.co.ke",
    "production": "https://api.safaricom.co.ke",
}

OAUTH_PATH = "/oauth/v1/generate"
STK_PUSH_PATH = "/mpesa/stkpush/v1/processrequest"
STK_QUERY_PATH = "/mpesa/stkpushquery/v1/query"
B2C_PATH = "/mpesa/b2c/v3/paymentrequest"
C2B_REGISTER_PATHS: dict[str, str] = {
    "v1": "/mpesa/c2b/v1/registerurl",
    "v2": "/mpesa/c2b/v2/registerurl",
}
ACCOUNT_BALANCE_PATH = "/mpesa/accountbalance/v1/query"
TRANSACTION_STATUS_PATH = "/mpesa/transactionstatus/v1/query"
REVERSAL_PATH = "/mpesa/reversal/v1/request"
PULL_REGISTER_PATH = "/pulltransactions/v1/register"
PULL_QUERY_PATH = "/pulltransactions/v1/query"

# Daraja's per-transaction limits in whole shillings (official FAQ).
STK_AMOUNT_SHILLINGS_MIN = 1
B2C_AMOUNT_SHILLINGS_MIN = 10
TRANSACTION_AMOUNT_SHILLINGS_MAX = 250_000
ACCOUNT_REFERENCE_CHARS_MAX = 12
TRANSACTION_DESC_CHARS_MAX = 13

TIMEOUT_S_MAX = 120.0
# Safaricom refuses callback URLs containing these, in any case ("or any of their variants").
CALLBACK_FORBIDDEN_WORDS = ("m-pesa", "mpesa", "safaricom", "exe", "cmd", "sql", "query")
_PATH_TOKEN = re.compile(r"[A-Za-z0-9_\-]{16,128}")
_MSISDN = re.compile(r"254[17]\d{8}")
_SHORTCODE = re.compile(r"\d{5,7}")
_ORIGINATOR_CONVERSATION_ID = re.compile(r"[A-Za-z0-9_\-]{1,64}")
REMARKS_CHARS_MIN = 2
REMARKS_CHARS_MAX = 100

# Transport failures after which the request certainly never reached Daraja.
_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

ResponseT = TypeVar("ResponseT", bound=AcceptedResponse)
ModelT = TypeVar("ModelT", bound=DarajaResponse)


class Callback:
    """Path suffixes of Deni's callback URLs: {callback_base_url}/hooks/{token}/{suffix}."""

    STK = "stk"
    B2C_RESULT = "b2c/result"
    B2C_TIMEOUT = "b2c/timeout"
    C2B_VALIDATION = "c2b/validation"
    C2B_CONFIRMATION = "c2b/confirmation"
    BALANCE_RESULT = "balance/result"
    BALANCE_TIMEOUT = "balance/timeout"
    STATUS_RESULT = "status/result"
    STATUS_TIMEOUT = "status/timeout"
    REVERSAL_RESULT = "reversal/result"
    REVERSAL_TIMEOUT = "reversal/timeout"
    # Registration asks for one; Deni reads the Pull API by query and takes no pull callbacks.
    PULL = "pull"


def check_callback_url(url: str, *, environment: Environment) -> str:
    """Refuse a URL Daraja would refuse: whitespace (the "Invalid CallBackURL" of stray spaces),
    a forbidden word anywhere, plain HTTP in production."""
    if not url or url != url.strip() or any(char.isspace() for char in url):
        raise ValueError("a callback URL must not be empty or contain whitespace")
    lowered = url.lower()
    for word in CALLBACK_FORBIDDEN_WORDS:
        if word in lowered:
            raise ValueError(f"Safaricom refuses callback URLs containing {word!r}")
    scheme = "https://" if environment == "production" else ("https://", "http://")
    if not lowered.startswith(scheme):
        raise ValueError(
            f"callback URLs must be {'HTTPS' if environment == 'production' else 'HTTP(S)'}"
        )
    return url


@dataclass(frozen=True, slots=True)
class DarajaConfig:
    """Everything the client needs. Secrets are kept out of repr()."""

    environment: Environment
    consumer_key: str = field(repr=False)
    consumer_secret: str = field(repr=False)
    # Lipa na M-PESA Online (STK): the shortcode and passkey from Go-Live.
    stk_shortcode: str
    stk_passkey: str = field(repr=False)
    # The B2C ("one account") shortcode: payouts, balance and status queries.
    b2c_shortcode: str
    initiator_name: str
    # Where Daraja reaches Deni: {callback_base_url}/hooks/{callback_path_token}/{kind}.
    callback_base_url: str
    callback_path_token: str = field(repr=False)
    # Either the initiator password and Safaricom's certificate (sandbox and production differ),
    # or a SecurityCredential computed beforehand (e.g. on the Daraja portal).
    initiator_password: str | None = field(default=None, repr=False)
    certificate_pem: str | None = field(default=None, repr=False)
    security_credential: str | None = field(default=None, repr=False)
    # The paybill customers pay into (C2B, reversals); by default the STK shortcode.
    paybill_shortcode: str | None = None
    stk_transaction_type: Literal["CustomerPayBillOnline", "CustomerBuyGoodsOnline"] = (
        "CustomerPayBillOnline"
    )
    # PartyB of an STK push: the till number for Buy Goods; by default the STK shortcode.
    stk_party_b: str | None = None
    # The Pull API's nominated number (2547XXXXXXXX, from Go-Live); None: Deni does not register.
    pull_nominated_number: str | None = None
    # Must match the C2B product on the Daraja app (v1 sends hashed MSISDNs, v2 masked ones).
    c2b_api_version: Literal["v1", "v2"] = "v2"
    # Overrides the environment's URL (the local Daraja sandbox, a recording proxy).
    base_url: str | None = None
    connect_timeout_s: float = 5.0
    # Read/write timeout. Daraja's B2C can take several seconds to acknowledge.
    timeout_s: float = 30.0
    token_refresh_margin_s: int = DEFAULT_REFRESH_MARGIN_S

    def __post_init__(self) -> None:
        if self.environment not in BASE_URLS:
            raise ValueError("environment is 'sandbox' or 'production'")
        for name in ("consumer_key", "consumer_secret", "stk_passkey", "initiator_name"):
            if not getattr(self, name):
                raise ValueError(f"{name} is required")
        for name in ("stk_shortcode", "b2c_shortcode", "paybill_shortcode", "stk_party_b"):
            value = getattr(self, name)
            if value is not None and not _SHORTCODE.fullmatch(value):
                raise ValueError(f"{name} must be a 5 to 7 digit shortcode")
        if self.security_credential is None and not (
            self.initiator_password and self.certificate_pem
        ):
            raise ValueError("give security_credential, or initiator_password and certificate_pem")
        if not _PATH_TOKEN.fullmatch(self.callback_path_token):
            raise ValueError("callback_path_token must be 16 to 128 URL-safe characters")
        check_callback_url(self.callback_url(Callback.STK), environment=self.environment)
        if not 0 < self.connect_timeout_s <= TIMEOUT_S_MAX:
            raise ValueError(f"connect_timeout_s must be in (0, {TIMEOUT_S_MAX}]")
        if not 0 < self.timeout_s <= TIMEOUT_S_MAX:
            raise ValueError(f"timeout_s must be in (0, {TIMEOUT_S_MAX}]")
        if not 0 <= self.token_refresh_margin_s <= 30 * 60:
            raise ValueError("token_refresh_margin_s must be between 0 and 1800")

    @property
    def resolved_base_url(self) -> str:
        return (self.base_url or BASE_URLS[self.environment]).rstrip("/")

    @property
    def paybill(self) -> str:
        return self.paybill_shortcode or self.stk_shortcode

    def callback_url(self, kind: str) -> str:
        base = self.callback_base_url.rstrip("/")
        return f"{base}/hooks/{self.callback_path_token}/{kind}"


def _nairobi_text(moment: datetime) -> str:
    assert moment.tzinfo is not None, "an aware datetime is needed to know the Nairobi time"
    return moment.astimezone(NAIROBI).strftime("%Y-%m-%d %H:%M:%S")


def _require_msisdn(phone: str) -> str:
    if not isinstance(phone, str) or not _MSISDN.fullmatch(phone):
        raise ValueError("phone must be 2547XXXXXXXX or 2541XXXXXXXX (12 digits, no '+')")
    return phone


def _require_originator_conversation_id(value: str) -> str:
    if not isinstance(value, str) or not _ORIGINATOR_CONVERSATION_ID.fullmatch(value):
        raise ValueError("originator_conversation_id must be 1 to 64 letters, digits, '_' or '-'")
    return value


def _require_text(name: str, value: str, *, chars_min: int, chars_max: int) -> str:
    if not isinstance(value, str) or not chars_min <= len(value) <= chars_max:
        raise ValueError(f"{name} must be {chars_min} to {chars_max} characters")
    return value


def _remarks(remarks: str) -> str:
    return _require_text(
        "remarks", remarks, chars_min=REMARKS_CHARS_MIN, chars_max=REMARKS_CHARS_MAX
    )


def _shillings(amount_cents: int, *, minimum: int, maximum: int, api: str) -> int:
    shillings = cents_to_shillings(amount_cents)  # the one cents -> shillings conversion
    if not minimum <= shillings <= maximum:
        raise ValueError(f"{api} amounts are KES {minimum} to KES {maximum:,}; got {shillings}")
    return shillings


class DarajaClient:
    """One instance per process; thread-safe (httpx.Client is, and token refresh is locked)."""

    def __init__(
        self,
        config: DarajaConfig,
        *,
        clock: Clock,
        token_store: TokenStore | None = None,
        http: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        assert http is None or transport is None, "pass an httpx.Client or a transport, not both"
        self._config = config
        self._clock = clock
        self._base_url = config.resolved_base_url
        self._timeout = httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s)
        self._owns_http = http is None
        self._http = http or httpx.Client(
            transport=transport, timeout=self._timeout, follow_redirects=False
        )
        self._tokens = AccessTokens(
            store=token_store if token_store is not None else InMemoryTokenStore(),
            fetch=self._fetch_token,
            clock=clock,
            refresh_margin_s=config.token_refresh_margin_s,
        )
        # RSA with random padding: compute once, reuse for every request (Daraja allows it).
        if config.security_credential is not None:
            self._security_credential = config.security_credential
        else:
            assert config.initiator_password is not None
            assert config.certificate_pem is not None
            self._security_credential = encrypt_security_credential(
                config.initiator_password, config.certificate_pem
            )

    @property
    def config(self) -> DarajaConfig:
        return self._config

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- API calls ----------------------------------------------------------------------------

    def stk_push(
        self,
        *,
        phone: str,
        amount_cents: int,
        account_reference: str,
        description: str,
        callback_url: str | None = None,
    ) -> StkPushResponse:
        """Ask the customer's phone for their PIN. "Accepted" is not "paid": wait for the
        callback (or stk_query) keyed by the CheckoutRequestID returned."""
        config = self._config
        msisdn = _require_msisdn(phone)
        # One timestamp for both the body and the password, or Daraja says "Wrong credentials".
        timestamp = stk_timestamp(self._clock())
        request = StkPushRequest(
            business_short_code=config.stk_shortcode,
            password=stk_password(config.stk_shortcode, config.stk_passkey, timestamp),
            timestamp=timestamp,
            transaction_type=config.stk_transaction_type,
            amount=_shillings(
                amount_cents,
                minimum=STK_AMOUNT_SHILLINGS_MIN,
                maximum=TRANSACTION_AMOUNT_SHILLINGS_MAX,
                api="STK push",
            ),
            party_a=msisdn,
            party_b=config.stk_party_b or config.stk_shortcode,
            phone_number=msisdn,
            callback_url=self._callback(callback_url, Callback.STK),
            account_reference=_require_text(
                "account_reference",
                account_reference,
                chars_min=1,
                chars_max=ACCOUNT_REFERENCE_CHARS_MAX,
            ),
            transaction_desc=_require_text(
                "description", description, chars_min=1, chars_max=TRANSACTION_DESC_CHARS_MAX
            ),
        )
        return self._post("stk_push", STK_PUSH_PATH, request, StkPushResponse)

    def stk_query(self, *, checkout_request_id: str) -> StkQueryResponse:
        """The outcome of a push. Raises TransactionInProgress while the customer has not
        finished: that is "pending", not a failure."""
        config = self._config
        timestamp = stk_timestamp(self._clock())
        request = StkQueryRequest(
            business_short_code=config.stk_shortcode,
            password=stk_password(config.stk_shortcode, config.stk_passkey, timestamp),
            timestamp=timestamp,
            checkout_request_id=_require_text(
                "checkout_request_id", checkout_request_id, chars_min=1, chars_max=100
            ),
        )
        return self._post("stk_query", STK_QUERY_PATH, request, StkQueryResponse)

    def b2c_payment(
        self,
        *,
        phone: str,
        amount_cents: int,
        originator_conversation_id: str,
        remarks: str,
        occasion: str | None = None,
        command_id: Literal["BusinessPayment", "SalaryPayment", "PromotionPayment"] = (
            "BusinessPayment"
        ),
        result_url: str | None = None,
        timeout_url: str | None = None,
    ) -> B2CPaymentResponse:
        """Pay out to a phone. `originator_conversation_id` is Deni's own id for this payout:
        derive it from the payout, never generate a fresh one for a re-send, so that Daraja
        refuses a duplicate (DuplicateOriginatorConversationId) instead of paying twice.
        On DarajaUnavailable(maybe_sent=True), ServerError or GarbageResponse the outcome is
        unknown: ask transaction_status(originator_conversation_id=...) before re-sending."""
        config = self._config
        request = B2CPaymentRequest(
            originator_conversation_id=_require_originator_conversation_id(
                originator_conversation_id
            ),
            initiator_name=config.initiator_name,
            security_credential=self._security_credential,
            command_id=command_id,
            amount=_shillings(
                amount_cents,
                minimum=B2C_AMOUNT_SHILLINGS_MIN,
                maximum=TRANSACTION_AMOUNT_SHILLINGS_MAX,
                api="B2C",
            ),
            party_a=config.b2c_shortcode,
            party_b=_require_msisdn(phone),
            remarks=_remarks(remarks),
            queue_timeout_url=self._callback(timeout_url, Callback.B2C_TIMEOUT),
            result_url=self._callback(result_url, Callback.B2C_RESULT),
            occasion=occasion,
        )
        response = self._post("b2c_payment", B2C_PATH, request, B2CPaymentResponse)
        if response.originator_conversation_id != originator_conversation_id:
            # Not an answer to this request as far as we can tell: treat the outcome as unknown.
            raise GarbageResponse(
                "B2C answer carries another OriginatorConversationID", http_status=200
            )
        return response

    def register_c2b_urls(
        self,
        *,
        response_type: Literal["Completed", "Cancelled"] = "Completed",
        confirmation_url: str | None = None,
        validation_url: str | None = None,
        shortcode: str | None = None,
    ) -> C2BRegisterUrlResponse:
        """Tell M-PESA where to send paybill payments. Production registers once; changing the
        URLs needs the Daraja portal (UrlsAlreadyRegistered otherwise)."""
        request = C2BRegisterUrlRequest(
            short_code=shortcode or self._config.paybill,
            response_type=response_type,
            confirmation_url=self._callback(confirmation_url, Callback.C2B_CONFIRMATION),
            validation_url=self._callback(validation_url, Callback.C2B_VALIDATION),
        )
        path = C2B_REGISTER_PATHS[self._config.c2b_api_version]
        return self._post("register_c2b_urls", path, request, C2BRegisterUrlResponse)

    def register_pull(
        self,
        *,
        nominated_number: str,
        callback_url: str | None = None,
        shortcode: str | None = None,
    ) -> PullRegisterResponse:
        """Ask for the Pull API on the paybill (production: once; "already registered" is an
        answer, not an error)."""
        request = PullRegisterRequest(
            short_code=shortcode or self._config.paybill,
            nominated_number=_require_msisdn(nominated_number),
            callback_url=self._callback(callback_url, Callback.PULL),
        )
        return self._post("register_pull", PULL_REGISTER_PATH, request, PullRegisterResponse)

    def pull_transactions(
        self, *, start: datetime, end: datetime, offset: int, shortcode: str | None = None
    ) -> PullQueryResponse:
        """The paybill's transactions completed in [start, end] (Daraja keeps 48 hours), one
        page from the `offset`-th row; ResponseCode 1001 when there are no more."""
        request = PullQueryRequest(
            short_code=shortcode or self._config.paybill,
            start_date=_nairobi_text(start),
            end_date=_nairobi_text(end),
            offset=offset,
        )
        return self._post("pull_transactions", PULL_QUERY_PATH, request, PullQueryResponse)

    def account_balance(
        self,
        *,
        remarks: str = "Balance check",
        shortcode: str | None = None,
        result_url: str | None = None,
        timeout_url: str | None = None,
    ) -> AccountBalanceResponse:
        """Ask for the shortcode's balances; they arrive at the result URL."""
        config = self._config
        request = AccountBalanceRequest(
            initiator=config.initiator_name,
            security_credential=self._security_credential,
            party_a=shortcode or config.b2c_shortcode,
            remarks=_remarks(remarks),
            queue_timeout_url=self._callback(timeout_url, Callback.BALANCE_TIMEOUT),
            result_url=self._callback(result_url, Callback.BALANCE_RESULT),
        )
        return self._post("account_balance", ACCOUNT_BALANCE_PATH, request, AccountBalanceResponse)

    def transaction_status(
        self,
        *,
        transaction_id: str | None = None,
        originator_conversation_id: str | None = None,
        remarks: str = "Status check",
        occasion: str | None = None,
        shortcode: str | None = None,
        result_url: str | None = None,
        timeout_url: str | None = None,
    ) -> TransactionStatusResponse:
        """Ask what became of a transaction, by M-PESA receipt or by the OriginatorConversationID
        Deni sent with a B2C (sent as OriginalConversationID). The answer arrives at the result
        URL. `shortcode` is the party that made the transaction (by default the B2C one)."""
        if transaction_id is None and originator_conversation_id is None:
            raise ValueError("give transaction_id or originator_conversation_id")
        config = self._config
        request = TransactionStatusRequest(
            initiator=config.initiator_name,
            security_credential=self._security_credential,
            transaction_id=transaction_id,
            original_conversation_id=originator_conversation_id,
            party_a=shortcode or config.b2c_shortcode,
            result_url=self._callback(result_url, Callback.STATUS_RESULT),
            queue_timeout_url=self._callback(timeout_url, Callback.STATUS_TIMEOUT),
            remarks=_remarks(remarks),
            occasion=occasion,
        )
        return self._post(
            "transaction_status", TRANSACTION_STATUS_PATH, request, TransactionStatusResponse
        )

    def reversal(
        self,
        *,
        transaction_id: str,
        amount_cents: int,
        remarks: str,
        occasion: str | None = None,
        receiver_party: str | None = None,
        result_url: str | None = None,
        timeout_url: str | None = None,
        originator_conversation_id: str | None = None,
    ) -> ReversalResponse:
        """Reverse a C2B/STK payment received on our paybill (B2C cannot be reversed by API).
        Money moves: the same unknown-outcome rules as B2C apply. `originator_conversation_id`
        is Deni's own id for it, as for B2C (Transaction Status finds it by that id)."""
        config = self._config
        originator = (
            None
            if originator_conversation_id is None
            else _require_originator_conversation_id(originator_conversation_id)
        )
        request = ReversalRequest(
            originator_conversation_id=originator,
            initiator=config.initiator_name,
            security_credential=self._security_credential,
            transaction_id=_require_text(
                "transaction_id", transaction_id, chars_min=1, chars_max=40
            ),
            amount=_shillings(
                amount_cents,
                minimum=STK_AMOUNT_SHILLINGS_MIN,
                maximum=TRANSACTION_AMOUNT_SHILLINGS_MAX,
                api="Reversal",
            ),
            receiver_party=receiver_party or config.paybill,
            result_url=self._callback(result_url, Callback.REVERSAL_RESULT),
            queue_timeout_url=self._callback(timeout_url, Callback.REVERSAL_TIMEOUT),
            remarks=_remarks(remarks),
            occasion=occasion,
        )
        return self._post("reversal", REVERSAL_PATH, request, ReversalResponse)

    # --- Plumbing -----------------------------------------------------------------------------

    def _callback(self, explicit: str | None, kind: str) -> str:
        url = explicit if explicit is not None else self._config.callback_url(kind)
        return check_callback_url(url, environment=self._config.environment)

    def _post(
        self, api: str, path: str, request: DarajaRequest, model: type[ResponseT]
    ) -> ResponseT:
        body = request.to_wire()
        token = self._tokens.current()
        try:
            return self._call(api, path, body, token, model)
        except InvalidAccessToken as error:
            # Another process may have fetched a newer token (each fetch kills the previous one)
            # or ours expired early. Once, and only once.
            log.info("daraja.token_refused", api=api, error_code=error.error_code)
        token = self._tokens.replace(rejected=token)
        return self._call(api, path, body, token, model)

    def _call(
        self, api: str, path: str, body: dict[str, object], token: str, model: type[ResponseT]
    ) -> ResponseT:
        response = self._send(
            api,
            "POST",
            path,
            headers={"Authorization": f"Bearer {token}"},
            json_body=body,
        )
        parsed = self._parse(api, response, model, oauth=False)
        if not parsed.accepted:
            raise NotAccepted(
                parsed.response_description or "Daraja did not accept the request",
                error_code=parsed.response_code,
                http_status=response.status_code,
            )
        return parsed

    def _fetch_token(self) -> tuple[str, int]:
        config = self._config
        basic = base64.b64encode(f"{config.consumer_key}:{config.consumer_secret}".encode()).decode(
            "ascii"
        )
        try:
            response = self._send(
                "oauth",
                "GET",
                OAUTH_PATH,
                headers={"Authorization": f"Basic {basic}"},
                params={"grant_type": "client_credentials"},
            )
            parsed = self._parse("oauth", response, OAuthTokenResponse, oauth=True)
        except OAuthFailed:
            raise
        except DarajaError as error:
            # Whatever went wrong fetching the token, the call that needed it was not sent.
            raise TokenUnavailable(f"no Daraja access token: {error}") from error
        return parsed.access_token, parsed.expires_in

    def _send(
        self,
        api: str,
        method: str,
        path: str,
        *,
        headers: dict[str, str],
        json_body: dict[str, object] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        started = time.monotonic()  # for the log line only
        try:
            response = self._http.request(
                method,
                self._base_url + path,
                headers=headers,
                json=json_body,
                params=params,
                timeout=self._timeout,
            )
        except httpx.RequestError as error:
            maybe_sent = not isinstance(error, _NOT_SENT_ERRORS)
            log.warning(
                "daraja.unavailable",
                api=api,
                error=type(error).__name__,
                maybe_sent=maybe_sent,
                duration_ms=round((time.monotonic() - started) * 1000),
            )
            raise DarajaUnavailable(
                f"Daraja {api}: {type(error).__name__}", maybe_sent=maybe_sent
            ) from error
        log.info(
            "daraja.response",
            api=api,
            http_status=response.status_code,
            duration_ms=round((time.monotonic() - started) * 1000),
        )
        return response

    def _parse(
        self, api: str, response: httpx.Response, model: type[ModelT], *, oauth: bool
    ) -> ModelT:
        status = response.status_code
        if not 200 <= status < 300:
            raise self._logged(api, error_from_response(response, oauth=oauth))
        try:
            decoded = json.loads(response.content)
        except (ValueError, RecursionError) as error:
            raise self._logged(
                api, GarbageResponse(f"Daraja {api}: body is not JSON", http_status=status)
            ) from error
        if not isinstance(decoded, dict):
            raise self._logged(
                api, GarbageResponse(f"Daraja {api}: body is not an object", http_status=status)
            )
        if is_error_body(decoded):
            raise self._logged(api, error_from_response(response, oauth=oauth))
        try:
            return model.model_validate(decoded)
        except ValidationError as error:
            # Field names only: the values may include the access token.
            fields = sorted(
                {".".join(str(part) for part in item["loc"]) for item in error.errors()}
            )
            raise self._logged(
                api,
                GarbageResponse(
                    f"Daraja {api}: unexpected answer (fields: {', '.join(fields)})",
                    http_status=status,
                ),
            ) from error

    @staticmethod
    def _logged(api: str, error: DarajaError) -> DarajaError:
        log.warning(
            "daraja.error",
            api=api,
            error=type(error).__name__,
            error_code=error.error_code,
            request_id=error.request_id,
            http_status=error.http_status,
        )
        return error
