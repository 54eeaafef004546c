"""Operations: /metrics, the OpenAPI document and the docs page, JSON 404/405 (/health:
test_health.py)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

import pytest
import structlog
from fastapi.testclient import TestClient
from tests.support.api import approve, assert_error, request_loan
from tests.support.builders import api_user, fund

from deni.adapters.observability import configure_logging
from deni.bootstrap import Deni
from deni.services import queries

API = "/api/v1"
ALL_OPERATIONS = {
    ("post", "/api/v1/auth/register"),
    ("post", "/api/v1/auth/login"),
    ("post", "/api/v1/auth/refresh"),
    ("get", "/api/v1/me"),
    ("patch", "/api/v1/me"),
    ("post", "/api/v1/me/pin"),
    ("get", "/api/v1/wallet"),
    ("get", "/api/v1/wallet/statement"),
    ("post", "/api/v1/loans/quote"),
    ("post", "/api/v1/loans"),
    ("get", "/api/v1/loans"),
    ("get", "/api/v1/loans/{loan_id}"),
    ("post", "/api/v1/loans/{loan_id}/approve"),
    ("post", "/api/v1/loans/{loan_id}/decline"),
    ("post", "/api/v1/loans/{loan_id}/cancel"),
    ("post", "/api/v1/loans/{loan_id}/repay"),
    ("post", "/api/v1/loans/{loan_id}/write-off"),
    ("get", "/api/v1/notifications"),
    ("post", "/api/v1/notifications/read"),
    ("get", "/health"),
    ("get", "/health/live"),
    ("get", "/health/ready"),
}
NEEDS_KEY = {
    "/api/v1/me/pin",
    "/api/v1/loans",
    "/api/v1/loans/{loan_id}/approve",
    "/api/v1/loans/{loan_id}/decline",
    "/api/v1/loans/{loan_id}/cancel",
    "/api/v1/loans/{loan_id}/repay",
    "/api/v1/loans/{loan_id}/write-off",
    "/api/v1/notifications/read",
}


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The test configures Deni's own logging (JSON on stderr); the test's is restored after."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers, root.level = saved
    structlog.reset_defaults()


def _sample(text: str, name: str, labels: dict[str, str]) -> float | None:
    """The value of one Prometheus sample, or None if the exposition has no such line."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match is None:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(2))
    return None


def test_metrics_count_requests_and_loans_by_state(client: TestClient, deni: Deni) -> None:
    lender = api_user(client, deni, name="Lender")
    borrower = api_user(client, deni, name="Borrower")
    fund(deni, lender.user, 500_000)
    active = request_loan(client, borrower, lender)["id"]
    approve(client, lender, active)
    request_loan(client, borrower, lender)
    request_loan(client, borrower, lender)
    client.get(f"{API}/loans/{active}", headers=borrower.headers)
    client.get(f"{API}/no-such-thing")

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    created = {"method": "POST", "route": "/api/v1/loans", "status": "201"}
    assert _sample(text, "http_requests_total", created) == 3.0
    detail = {"method": "GET", "route": "/api/v1/loans/{loan_id}", "status": "200"}
    assert _sample(text, "http_requests_total", detail) == 1.0  # a template, not the id
    assert active not in text
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    assert _sample(text, "http_requests_total", unmatched) == 1.0
    assert _sample(text, "loans_by_state", {"state": "active"}) == 1.0
    assert _sample(text, "loans_by_state", {"state": "requested"}) == 2.0
    assert _sample(text, "loans_by_state", {"state": "repaid"}) == 0.0
    assert _sample(text, "http_request_duration_seconds_count", {"route": "/api/v1/loans"})
    # Nothing personal in the metrics.
    assert lender.user.phone not in text
    assert lender.user.id not in text


def test_metrics_count_ledger_entries(client: TestClient, deni: Deni) -> None:
    lender = api_user(client, deni, name="Lender")
    borrower = api_user(client, deni, name="Borrower")
    fund(deni, lender.user, 500_000)
    approve(client, lender, request_loan(client, borrower, lender)["id"])
    text = client.get("/metrics").text
    total = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("ledger_entries{")
    )
    assert total == 2.0  # the deposit and the disbursement


def test_openapi_lists_every_endpoint(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    operations = {
        (method, path)
        for path, item in spec["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert operations >= ALL_OPERATIONS
    for path in NEEDS_KEY:
        parameters = spec["paths"][path]["post"].get("parameters", [])
        headers = {p["name"] for p in parameters if p["in"] == "header"}
        assert "Idempotency-Key" in headers, path
    assert "/metrics" not in spec["paths"]


def test_docs_page_is_served(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert "/openapi.json" in response.text


def test_unknown_routes_and_methods_answer_in_the_error_format(client: TestClient) -> None:
    assert_error(client.get(f"{API}/nothing-here"), 404, "not_found")
    not_allowed = client.delete(f"{API}/wallet")
    assert_error(not_allowed, 405, "method_not_allowed")
    assert not_allowed.headers["Allow"] == "GET"


@pytest.mark.usefixtures("restore_logging")
def test_an_unexpected_error_is_logged_with_the_route_template_not_the_path(
    client: TestClient,
    deni: Deni,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    who = api_user(client, deni)
    secret_looking_id = "5b7c9d1e-0f2a-4b3c-8d4e-5f6a7b8c9d0e"

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("the database said something odd")

    monkeypatch.setattr(queries, "loan_detail", broken)
    configure_logging(level="INFO", json=True)
    response = client.get(f"{API}/loans/{secret_looking_id}", headers=who.headers)

    assert_error(response, 500, "internal_error")
    _, err = capfd.readouterr()
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    server_side = [r for r in records if r["logger"] != "httpx2"]  # the test client's own
    assert secret_looking_id not in json.dumps(server_side)
    [failure] = [r for r in records if r["event"] == "unhandled_error"]
    assert failure["route"] == "/api/v1/loans/{loan_id}"
    assert "path" not in failure
