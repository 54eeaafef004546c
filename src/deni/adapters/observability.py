"""Logs and metrics: structured JSON logs with secrets redacted, and Prometheus metrics.

The Data Protection Act 2019 and our own rules (docs/design.md, "Security posture") say no PIN,
token or full phone number may reach a log line, so redaction is a processor every log record
passes through, including records from the standard library (uvicorn, SQLAlchemy, httpx).
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from wsgiref.simple_server import WSGIServer

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = [
    "CHANNELS",
    "REDACTED",
    "Metrics",
    "MetricsListener",
    "WorkerMetrics",
    "configure_logging",
    "mask_phone",
    "redact_secrets",
    "render_metrics",
]

REDACTED = "[redacted]"
UVICORN_ACCESS_LOGGER = "uvicorn.access"

# Keys whose values are secrets, compared after lower-casing and turning "-" into "_" (so HTTP
# header names such as "Authorization" match too).
_SECRET_KEYS = frozenset(
    {
        "pin",
        "new_pin",
        "old_pin",
        "password",
        "passkey",
        "token",
        "access_token",
        "refresh_token",
        "authorization",
        "secret",
        "pepper",
        "api_key",
        "security_credential",
    }
)
# "consumer_secret", "jwt_secret", "initiator_password", "idempotency_token", ... are secrets too.
_SECRET_KEY_SUFFIXES = ("_pin", "_password", "_token", "_secret", "_pepper")
_PHONE_KEYS = frozenset({"phone", "msisdn", "phone_number"})
# structlog's own bookkeeping (the LogRecord and a flag) while a record is being formatted.
_STRUCTLOG_META_KEYS = frozenset({"_record", "_from_structlog"})

# Kenyan mobile numbers as they appear in payloads and messages: 2547XXXXXXXX / 2541XXXXXXXX,
# with or without "+", and the national 07XXXXXXXX / 01XXXXXXXX form. The digit look-arounds stop
# us masking the middle of a longer number (a receipt id, an amount in cents).
_KENYAN_PHONE = re.compile(r"(?<!\d)(?:\+?254|0)[17]\d{8}(?!\d)")
_NON_DIGITS = re.compile(r"\D")
# The gateways' callback paths carry a secret: /hooks/{token}/{kind} (Daraja) and /ussd/{token}
# (Africa's Talking; /ussd/events is no token). Deni logs route templates, but a server's own
# access log (uvicorn's, a proxy's) may print the raw path.
_SECRET_PATH = re.compile(r"(/hooks/|/ussd/(?!events(?![^/\s?#\"'])))(?!\{token\})[^/\s?#\"']+")
# A gateway path's whole query string (the USSD token may ride in `?t=`), and elsewhere any query
# parameter named like a secret: should any log line carry a raw path, neither reaches it.
_GATEWAY_QUERY = re.compile(r"((?:/hooks|/ussd)(?:/[^\s?#\"']*)?)\?[^\s#\"']*")
_QUERY_PARAM = re.compile(r"([?&])([A-Za-z0-9_.\-]{1,64})=([^\s&#\"']*)")
_SECRET_QUERY_NAMES = frozenset({"t", "key", "code", "otp", "sig", "signature"})
# Fewer digits than this and "first 4 + last 2" would reveal most of the value.
_MASKABLE_DIGITS_MIN = 8


def mask_phone(msisdn: str) -> str:
    """Mask a phone number to "2547******78": keep the first 4 and last 2 digits.

    National numbers ("0712...") are first rewritten to 254 form so every number hides the same
    six digits. Values with too few digits to mask safely are redacted outright.
    """
    digits = _NON_DIGITS.sub("", msisdn)
    if len(digits) == 10 and digits.startswith("0"):
        digits = "254" + digits[1:]
    if len(digits) < _MASKABLE_DIGITS_MIN:
        return REDACTED
    return digits[:4] + "*" * (len(digits) - 6) + digits[-2:]


def _mask_phones_in_text(text: str) -> str:
    return _KENYAN_PHONE.sub(lambda match: mask_phone(match.group()), text)


def _hide_secret_paths(text: str) -> str:
    if "/hooks" not in text and "/ussd" not in text and "?" not in text:
        return text
    text = _SECRET_PATH.sub(lambda match: match.group(1) + REDACTED, text)
    text = _GATEWAY_QUERY.sub(lambda match: match.group(1) + "?" + REDACTED, text)
    return _QUERY_PARAM.sub(_hide_secret_param, text)


def _hide_secret_param(match: re.Match[str]) -> str:
    name = match.group(2)
    secret = _normalise_key(name) in _SECRET_QUERY_NAMES or _is_secret_key(_normalise_key(name))
    return match.group(1) + name + "=" + (REDACTED if secret else match.group(3))


def _normalise_key(key: object) -> str:
    return str(key).lower().replace("-", "_")


def _is_secret_key(key: str) -> bool:
    return key in _SECRET_KEYS or key.endswith(_SECRET_KEY_SUFFIXES)


def _redact_value(key: str | None, value: Any) -> Any:
    """Return a redacted copy of value; key is the (normalised) mapping key it sits under."""
    if key is not None and _is_secret_key(key):
        return REDACTED
    if key in _PHONE_KEYS and isinstance(value, str | int):
        return mask_phone(str(value))
    # Build new containers rather than editing in place: nested dicts and lists belong to the
    # caller (a request body, a domain object's dict) and must not change because we logged them.
    if isinstance(value, Mapping):
        return {k: _redact_value(_normalise_key(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_redact_value(None, item) for item in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, str):
        return _mask_phones_in_text(_hide_secret_paths(value))
    return value


def redact_secrets(_logger: WrappedLogger, _method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: hide secrets and phone numbers anywhere in the event dict."""
    return {
        key: value if key in _STRUCTLOG_META_KEYS else _redact_value(_normalise_key(key), value)
        for key, value in event_dict.items()
    }


def _shared_processors() -> list[Processor]:
    """Processors for both structlog calls and foreign (stdlib) records."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _final_processors(*, json: bool) -> list[Processor]:
    """Run last, on every record, so redaction also sees rendered tracebacks."""
    if json:
        return [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_secrets,
            structlog.processors.JSONRenderer(),
        ]
    # The console renderer prints exceptions itself (and warns if they were pre-formatted).
    return [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        redact_secrets,
        structlog.dev.ConsoleRenderer(),
    ]


def _route_stdlib_logging(formatter: logging.Formatter, level: str) -> None:
    # stderr keeps stdout free for CLI output that people pipe (deni ledger check, ...).
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    handler.addFilter(_drop_uvicorn_access)
    # uvicorn installs its own handlers when it configures logging; send its records through
    # ours instead so they are JSON and redacted too.
    for name in ("uvicorn", "uvicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers = []
        uvicorn_logger.propagate = True
    _silence_uvicorn_access()


def _silence_uvicorn_access() -> None:
    """uvicorn's access line carries the raw path and query (a gateway's token, a PIN someone
    put in a URL) and the client's address; Deni writes its own (deni.access, the route
    template). Off however the server was started: without handlers uvicorn does not even
    format it, and the root handler's filter drops it should anything turn it back on."""
    access = logging.getLogger(UVICORN_ACCESS_LOGGER)
    access.handlers = []
    access.propagate = False
    access.disabled = True


def _drop_uvicorn_access(record: logging.LogRecord) -> bool:
    return record.name != UVICORN_ACCESS_LOGGER


def configure_logging(*, level: str = "INFO", json: bool = True) -> None:
    """Send structlog and stdlib logging through one redacting pipeline to stderr.

    Call once at process start (CLI, API, worker). When running uvicorn, pass
    ``log_config=None`` so it does not replace this setup with its own.
    """
    level = level.upper()
    shared = _shared_processors()
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached, so calling configure_logging again (tests, CLI flags) takes effect for
        # loggers that modules created at import time.
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=_final_processors(json=json),
    )
    _route_stdlib_logging(formatter, level)
    # httpx logs every request's full URL at INFO; a callback URL carries its secret path
    # token. Deni logs its own Daraja calls (without secrets) instead.
    logging.getLogger("httpx").setLevel(logging.WARNING)


# Callback to M-PESA's confirmation: a worker pass and a Transaction Status round trip when all
# is well; check_backoff_s (5 min) steps when M-PESA is slow to answer.
CONFIRMATION_BUCKETS_S = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14_400.0)


# The channels deni_channel_latency_seconds is labelled with, and its buckets: a USSD hop must
# answer within Africa's Talking's few seconds, a Daraja callback's acknowledgement likewise.
CHANNELS = ("api", "ussd", "callback", "sync")
CHANNEL_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)


class DatabaseHistogram(Collector):
    """A histogram whose counts are read from the database at scrape time (every API process
    then reports the same, complete figure, whichever worker process observed the event)."""

    def __init__(self, name: str, documentation: str, buckets_s: Sequence[float]) -> None:
        assert list(buckets_s) == sorted(buckets_s)
        self.name, self.documentation = name, documentation
        self.buckets_s = tuple(buckets_s)
        self._counts = [0] * len(self.buckets_s)
        self._count = 0
        self._sum_s = 0.0

    def set(self, cumulative_counts: Sequence[int], count: int, sum_s: float) -> None:
        assert len(cumulative_counts) == len(self.buckets_s)
        assert list(cumulative_counts) == sorted(cumulative_counts)
        assert not cumulative_counts or cumulative_counts[-1] <= count
        self._counts, self._count, self._sum_s = list(cumulative_counts), count, sum_s

    def collect(self) -> Iterator[Metric]:
        pairs = zip(self.buckets_s, self._counts, strict=True)
        buckets = [(str(bound), float(n)) for bound, n in pairs]
        buckets.append(("+Inf", float(self._count)))
        yield HistogramMetricFamily(
            self.name, self.documentation, buckets=buckets, sum_value=self._sum_s
        )


class Metrics:
    """The service's Prometheus metrics, on a registry of their own.

    A dedicated registry (not prometheus_client's global one) lets tests and the app factory
    build as many apps as they like without "duplicated timeseries" errors.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.http_requests_total = Counter(
            "http_requests_total",
            "HTTP requests handled, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_request_duration_seconds = Histogram(
            "http_request_duration_seconds",
            "Time to handle an HTTP request, by method and route template.",
            ["method", "route"],
            registry=self.registry,
        )
        # Read from the database at scrape time, so every API and worker process reports the
        # same, complete figure (a per-process counter would only see its own writes).
        self.ledger_entries = Gauge(
            "ledger_entries",
            "Journal entries in the ledger, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.loans_by_state = Gauge(
            "loans_by_state",
            "Loans currently in each state.",
            ["state"],
            registry=self.registry,
        )
        self.payment_confirmation_seconds = DatabaseHistogram(
            "mpesa_payment_confirmation_seconds",
            "Seconds from a callback saying money arrived to M-PESA confirming it (Transaction "
            "Status or the Pull API), over every confirmed claim.",
            CONFIRMATION_BUCKETS_S,
        )
        self.registry.register(self.payment_confirmation_seconds)
        # How long each channel takes to answer (entrypoints/api/middleware.py says which
        # requests belong to which channel).
        self.channel_latency_seconds = Histogram(
            "deni_channel_latency_seconds",
            "Time to answer a request, by channel: api (the member API), ussd (a USSD hop), "
            "callback (acknowledging a Daraja callback), sync (an offline push or pull).",
            ["channel"],
            buckets=CHANNEL_BUCKETS_S,
            registry=self.registry,
        )
        for channel in CHANNELS:
            self.channel_latency_seconds.labels(channel=channel)
        self._business_gauges()
        self.ussd_sessions_ended_total = Counter(
            "ussd_sessions_ended_total",
            "USSD sessions Africa's Talking reported ended, by its status "
            "(Success, Incomplete, Failed, other).",
            ["status"],
            registry=self.registry,
        )

    def _business_gauges(self) -> None:
        """What the business looks like, read from the database at scrape time (services/
        monitoring.py; docs/metrics.md describes each)."""

        def gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
            return Gauge(name, documentation, list(labels), registry=self.registry)

        self.outbox_messages = gauge(
            "deni_outbox_messages", "Outbox messages by state (pending, sending, dead).", ["state"]
        )
        self.outbox_oldest_pending_age_seconds = gauge(
            "deni_outbox_oldest_pending_age_seconds",
            "Age of the oldest pending outbox message; 0 when none is pending.",
        )
        self.dead_letters = gauge(
            "deni_dead_letters",
            "Dead letters waiting for an operator: outbox messages that exhausted their "
            "retries, and open sync dead letters.",
            ["queue"],
        )
        self.suspense_payments = gauge(
            "deni_suspense_payments",
            "Payments held in suspense: received for no known member, not assigned nor sent back.",
        )
        self.suspense_oldest_age_seconds = gauge(
            "deni_suspense_oldest_age_seconds",
            "Age of the oldest payment held in suspense; 0 when none.",
        )
        self.payouts_awaiting_decision = gauge(
            "deni_payouts_awaiting_decision",
            "Payouts whose outcome M-PESA never told, waiting for an operator's decision.",
        )
        self.callback_inbox_pending = gauge(
            "deni_callback_inbox_pending", "Daraja callbacks stored and not applied yet."
        )
        self.callback_inbox_lag_seconds = gauge(
            "deni_callback_inbox_lag_seconds",
            "Age of the oldest callback stored and not applied yet; 0 when none.",
        )
        self.mpesa_float_cents = gauge(
            "deni_mpesa_float_cents",
            "M-PESA's working plus utility account balance in the last balance report it "
            "sent; NaN when none was received.",
        )
        self.ledger_mpesa_cents = gauge(
            "deni_ledger_mpesa_cents",
            "The ledger's M-PESA cash now: paybill plus B2C float accounts' balances.",
        )
        self.reconciliation_drift_cents = gauge(
            "deni_reconciliation_drift_cents",
            "The last balance report's M-PESA balance minus the ledger's M-PESA cash when the "
            "report was asked for; 0 when they agree, NaN without a report.",
        )
        self.wallet_liabilities_cents = gauge(
            "deni_wallet_liabilities_cents", "What Deni owes members: every wallet's balance."
        )
        self.portfolio_at_risk_ratio = gauge(
            "deni_portfolio_at_risk_ratio",
            "PAR: principal owed on active loans more than `days` days overdue, over the "
            "principal owed on every active loan (0 without active loans).",
            ["days"],
        )
        self.payouts_today_cents = gauge(
            "deni_payouts_today_cents",
            "B2C payouts that succeeded so far today (Nairobi's day).",
        )
        self.sms_queue_pending = gauge(
            "deni_sms_queue_pending",
            "Notifications whose SMS is not sent yet (pending or sending).",
        )
        self.worker_heartbeat_age_seconds = gauge(
            "deni_worker_heartbeat_age_seconds",
            "Seconds since any M-PESA worker process last beat its heartbeat; +Inf when none "
            "ever did.",
        )


def render_metrics(metrics: Metrics) -> tuple[bytes, str]:
    """Body and content type for a /metrics response in Prometheus text format."""
    return generate_latest(metrics.registry), CONTENT_TYPE_LATEST


class WorkerMetrics:
    """What `deni worker` tells Prometheus: that it is alive (Prometheus's own `up` for its
    job), its passes by outcome, when the last one ended, and its process figures. A registry
    of its own: the API's figures read from the database are the API processes' to report."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.passes_total = Counter(
            "mpesa_worker_passes_total",
            "Passes of the M-PESA worker (outbox, callbacks, reconciler), by outcome (ok, failed).",
            ["outcome"],
            registry=self.registry,
        )
        self.last_pass_seconds = Gauge(
            "mpesa_worker_last_pass_timestamp_seconds",
            "Unix time at which the M-PESA worker's last pass ended, whatever its outcome.",
            registry=self.registry,
        )

    def passed(self, *, ok: bool) -> None:
        self.passes_total.labels(outcome="ok" if ok else "failed").inc()
        self.last_pass_seconds.set_to_current_time()


# The one address a process's own metrics listener binds: scraped by a Prometheus on the same
# machine, never reachable from elsewhere (the public listener is the reverse proxy's).
METRICS_LISTEN_HOST = "127.0.0.1"


class MetricsListener:
    """A registry served in Prometheus text format on 127.0.0.1:`port`, in a thread."""

    def __init__(self, registry: CollectorRegistry, *, port: int) -> None:
        assert 0 < port <= 65535, "a port to listen on"
        self._server: WSGIServer
        self._thread: threading.Thread
        self._server, self._thread = start_http_server(
            port, addr=METRICS_LISTEN_HOST, registry=registry
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
