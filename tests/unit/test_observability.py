"""Logging redaction, JSON log output and HTTP metrics."""

from __future__ import annotations

import copy
import json
import logging
import sys
import warnings
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import structlog
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from tests.support.builders import shows_number

from deni.adapters.observability import (
    REDACTED,
    Metrics,
    configure_logging,
    mask_phone,
    redact_secrets,
    render_metrics,
)
from deni.entrypoints.api.middleware import MetricsMiddleware

# Starlette 1.x warns at import when its test client runs on httpx rather than httpx2. The warning
# is about the test tool, not our code, so it must not fail the run (filterwarnings=error).
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette\.testclient`")
    from starlette.testclient import TestClient


def _redact(event_dict: dict[str, Any]) -> dict[str, Any]:
    return dict(redact_secrets(None, "info", event_dict))


# --- redaction -------------------------------------------------------------------------------


def test_redaction_hides_secrets_nested_in_dicts_and_lists() -> None:
    body = {
        "new_pin": "5678",
        "items": [{"access_token": "eyJhbGciOi.abc.def"}, "plain"],
        "headers": ({"Authorization": "Bearer sk-123"},),
    }
    original_body = copy.deepcopy(body)

    out = _redact({"event": "pin_changed", "pin": "1234", "body": body, "amount_cents": 5000})

    assert out["pin"] == REDACTED
    assert out["body"]["new_pin"] == REDACTED
    assert out["body"]["items"] == [{"access_token": REDACTED}, "plain"]
    assert out["body"]["headers"] == ({"Authorization": REDACTED},)
    for secret in ("1234", "5678", "sk-123", "eyJhbGciOi"):
        assert secret not in repr(out)
    # Logging must never change the caller's data.
    assert body == original_body


def test_redaction_catches_secret_suffixes_but_not_lookalike_keys() -> None:
    out = _redact({"consumer_secret": "s3cr3t", "token_type": "bearer", "pin_attempts": 2})

    assert out == {"consumer_secret": REDACTED, "token_type": "bearer", "pin_attempts": 2}


def test_redaction_leaves_ordinary_values_alone() -> None:
    event = {
        "event": "loan_requested",
        "loan_id": "01J9Z6V3",
        "amount_cents": 150_000,
        "receipt": "RKT4ABCD12",
        "long_number": "25471234567890",  # 14 digits: not a phone number
        "state": None,
        "tags": ["chama", 3],
    }

    assert _redact(dict(event)) == event


def test_redaction_masks_phone_numbers_under_phone_keys() -> None:
    out = _redact(
        {"phone": "254712345678", "msisdn": 254112345678, "payer": {"phone_number": "0712345678"}}
    )

    assert out == {
        "phone": "2547******78",
        "msisdn": "2541******78",
        "payer": {"phone_number": "2547******78"},
    }


def test_redaction_masks_phone_numbers_inside_free_text() -> None:
    out = _redact(
        {
            "event": "stk push to +254712345678 failed",
            "lines": ["from 0110123456.", "ok"],
        }
    )

    assert out["event"] == "stk push to 2547******78 failed"
    assert out["lines"] == ["from 2541******56.", "ok"]


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("254712345678", "2547******78"),
        ("+254 712 345 678", "2547******78"),
        ("0712345678", "2547******78"),
        ("0110123456", "2541******56"),
        ("12345", REDACTED),
    ],
)
def test_mask_phone_keeps_first_four_and_last_two_digits(raw: str, masked: str) -> None:
    assert mask_phone(raw) == masked


# --- configure_logging -----------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Undo configure_logging, whose handler points at this test's captured stderr."""
    root, access = logging.getLogger(), logging.getLogger("uvicorn.access")
    saved_root = root.handlers[:], root.level
    saved_access = access.handlers[:], access.propagate, access.disabled
    yield
    root.handlers, root.level = saved_root
    access.handlers, access.propagate, access.disabled = saved_access
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_emits_redacted_json(capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging(level="INFO", json=True)
    structlog.contextvars.bind_contextvars(request_id="req-1")
    log = structlog.get_logger("deni.test")

    log.info("pin_changed", pin="4321", phone="254712345678", amount_cents=100)
    log.debug("below the configured level")

    out, err = capfd.readouterr()
    assert not shows_number("4321", out + err)
    assert "254712345678" not in out + err
    [record] = _json_lines(out + err)
    assert record["event"] == "pin_changed"
    assert record["level"] == "info"
    assert record["pin"] == REDACTED
    assert record["phone"] == "2547******78"
    assert record["amount_cents"] == 100
    assert record["request_id"] == "req-1"
    assert datetime.fromisoformat(record["timestamp"]).tzinfo is not None


@pytest.mark.usefixtures("restore_logging")
def test_stdlib_logging_goes_through_the_same_pipeline(capfd: pytest.CaptureFixture[str]) -> None:
    # As uvicorn leaves its error logger when it configured logging first: own plain handler.
    uvicorn_error = logging.getLogger("uvicorn.error")
    uvicorn_error.addHandler(logging.StreamHandler(sys.stderr))
    uvicorn_error.propagate = False
    configure_logging(level="INFO", json=True)

    logging.getLogger("uvicorn.error").info("Invalid HTTP request from %s", "/users/254712345678")
    try:
        raise ValueError("no wallet for 0712345678")
    except ValueError:
        logging.getLogger("deni.worker").exception("job failed")

    out, err = capfd.readouterr()
    assert "254712345678" not in out + err
    assert "0712345678" not in out + err
    served, failure = _json_lines(out + err)
    assert served["event"] == "Invalid HTTP request from /users/2547******78"
    assert served["logger"] == "uvicorn.error"
    assert failure["level"] == "error"
    assert "ValueError: no wallet for 2547******78" in failure["exception"]


@pytest.mark.usefixtures("restore_logging")
def test_uvicorns_access_line_is_never_written(capfd: pytest.CaptureFixture[str]) -> None:
    """It carries the raw path and query and the client's address. uvicorn set up first, with
    its access log on (its own handler), and anything that turns propagation back on later."""
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.addHandler(logging.StreamHandler(sys.stderr))
    uvicorn_access.propagate = False
    uvicorn_access.setLevel(logging.INFO)
    configure_logging(level="INFO", json=True)
    assert not uvicorn_access.hasHandlers()  # uvicorn then does not even format the line
    line = '%s - "GET %s HTTP/1.1" %d'
    uvicorn_access.info(line, "10.0.0.1:5555", "/ussd/events?t=Ussd0Secret0Token", 404)
    uvicorn_access.disabled, uvicorn_access.propagate = False, True
    uvicorn_access.info(line, "10.0.0.1:5555", "/metrics/Ops0Token0in0a0path", 404)

    out, err = capfd.readouterr()
    assert out + err == ""


@pytest.mark.usefixtures("restore_logging")
def test_a_gateways_secret_path_never_reaches_a_log_line(capfd: pytest.CaptureFixture[str]) -> None:
    configure_logging(level="INFO", json=True)
    hook_token, ussd_token = "9f8e7d6c5b4a39281706f5e4d3c2b1a0", "Ussd0Secret0Token0abcdefghij0123"
    logging.getLogger("deni.proxy").info(
        '%s - "POST %s HTTP/1.1" %d', "10.0.0.1", f"/hooks/{hook_token}/stk", 200
    )
    structlog.get_logger("deni.test").info("hop", url=f"https://deni.example/ussd/{ussd_token}")
    structlog.get_logger("deni.test").info("ended", path="/ussd/events", route="/ussd/{token}")

    out, err = capfd.readouterr()
    assert hook_token not in out + err
    assert ussd_token not in out + err
    access, hop, ended = _json_lines(out + err)
    assert access["event"] == '10.0.0.1 - "POST /hooks/[redacted]/stk HTTP/1.1" 200'
    assert hop["url"] == "https://deni.example/ussd/[redacted]"
    assert (ended["path"], ended["route"]) == ("/ussd/events", "/ussd/{token}")


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("GET /ussd/SECRETX/events?t=SECRETX", "GET /ussd/[redacted]/events?[redacted]"),
        ("GET /ussd/events?t=SECRETX HTTP/1.1", "GET /ussd/events?[redacted] HTTP/1.1"),
        ("GET /ussd?t=SECRETX", "GET /ussd?[redacted]"),
        ("/hooks/SECRETX/stk?x=SECRETX", "/hooks/[redacted]/stk?[redacted]"),
        ("/api/v1/me?pin=SECRETX&page=2", "/api/v1/me?pin=[redacted]&page=2"),
        ("/x?a=1&access_token=SECRETX&t=SECRETX", "/x?a=1&access_token=[redacted]&t=[redacted]"),
        ("Why? Because.", "Why? Because."),
    ],
)
def test_secrets_in_a_query_string_are_redacted(raw: str, shown: str) -> None:
    """Should any log line carry a raw path (a proxy's, a library's), its query is no leak."""
    [(key, value)] = redact_secrets(None, "info", {"event": raw}).items()
    assert (key, value) == ("event", shown)
    assert "SECRETX" not in value


# --- metrics ---------------------------------------------------------------------------------


async def _show_loan(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"loan {request.path_params['loan_id']}")


async def _boom(request: Request) -> PlainTextResponse:
    raise RuntimeError("handler bug")


def _app(metrics: Metrics) -> Starlette:
    return Starlette(
        routes=[Route("/loans/{loan_id}", _show_loan), Route("/boom", _boom)],
        middleware=[Middleware(MetricsMiddleware, metrics=metrics)],
    )


def _requests_total(metrics: Metrics, method: str, route: str, status: str) -> float | None:
    labels = {"method": method, "route": route, "status": status}
    return metrics.registry.get_sample_value("http_requests_total", labels)


def test_middleware_counts_requests_by_route_template() -> None:
    metrics = Metrics()
    client = TestClient(_app(metrics), raise_server_exceptions=False)

    assert client.get("/loans/42").status_code == 200
    assert client.get("/loans/43").status_code == 200
    assert client.get("/no/such/page").status_code == 404
    assert client.get("/boom").status_code == 500

    assert _requests_total(metrics, "GET", "/loans/{loan_id}", "200") == 2
    assert _requests_total(metrics, "GET", "unmatched", "404") == 1
    assert _requests_total(metrics, "GET", "/boom", "500") == 1
    duration_labels = {"method": "GET", "route": "/loans/{loan_id}"}
    sample_count = metrics.registry.get_sample_value(
        "http_request_duration_seconds_count", duration_labels
    )
    assert sample_count == 2
    # Raw paths would make one time series per loan id.
    body, _ = render_metrics(metrics)
    assert b"/loans/42" not in body
    assert b"/no/such/page" not in body


def test_render_metrics_exposes_all_metric_names() -> None:
    metrics = Metrics()
    Metrics()  # a second instance must not clash: each has its own registry
    metrics.ledger_entries.labels(kind="disbursement").set(1)
    metrics.loans_by_state.labels(state="active").set(3)

    body, content_type = render_metrics(metrics)

    assert content_type.startswith("text/plain")
    text = body.decode()
    for name in (
        "http_requests_total",
        "http_request_duration_seconds",
        "ledger_entries",
        "loans_by_state",
    ):
        assert f"# TYPE {name}" in text
    assert 'ledger_entries{kind="disbursement"} 1.0' in text
    assert 'loans_by_state{state="active"} 3.0' in text


def test_httpx_request_urls_stay_out_of_the_logs(capfd: pytest.CaptureFixture[str]) -> None:
    # A Daraja callback URL carries its secret path token; httpx logs URLs at INFO.
    configure_logging(level="INFO", json=True)
    logging.getLogger("httpx").info("HTTP Request: POST http://deni/hooks/5f0c7e1a9b3d/stk")
    logging.getLogger("deni.access").info("kept")
    out, err = capfd.readouterr()
    assert "5f0c7e1a9b3d" not in out + err
    assert "kept" in out + err
