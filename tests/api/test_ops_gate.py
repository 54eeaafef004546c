"""In production the API's map and its metrics are for operators only: /docs, /redoc,
/openapi.json and /metrics answer 404, like an unknown path, unless the request carries
DENI_OPS_TOKEN as a bearer token. Development and test keep them open."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from tests.fakes import ManualClock
from tests.support.api import assert_error
from tests.support.settings import VAPID_PRIVATE_KEY, VAPID_PUBLIC_KEY

from deni.adapters.security import PepperedArgon2PinHasher
from deni.bootstrap import bootstrap
from deni.config import Settings
from deni.entrypoints.api.app import create_app

OPS_TOKEN = "e7b2c9f4a1d8e3b6c5f0a7d2e9b4c1f8"
OPS_PATHS = ["/docs", "/redoc", "/openapi.json", "/metrics"]


def _production(database_url: str, **changes: str) -> Settings:
    values = {
        "environment": "production",
        "database_url": database_url,
        "jwt_secret": "8c1d52e4f0a97b36e2d5c8a1f4b7e0d3a6c9f2e5b8d1a4c7",
        "pin_pepper": "f3a8d1c6b9e2f5a0d7c4b1e8a5f2c9d6b3e0a7f4c1d8b5e2",
        "ussd_token": "Qm7RkT2vXw9ZpL4nHs8JdF3gBc6YtA1e",
        "ops_token": OPS_TOKEN,
        "sms_backend": "africastalking",
        "at_username": "deni",
        "at_api_key": "atsk_5f2c9e6b3a0d7c4f1e8b5a2c9d6e3b0a",
        "sweep_interval_s": "0",
        "sms_interval_s": "0",
        "session_store": "sql",
        "ussd_allowed_ips": "196.201.214.200",
        "vapid_private_key": VAPID_PRIVATE_KEY,
        "vapid_public_key": VAPID_PUBLIC_KEY,
        "vapid_subject": "mailto:operations@deni.example.co.ke",
        **changes,
    }
    return Settings(**values)  # type: ignore[arg-type]


def _client(
    settings: Settings, clock: ManualClock, hasher: PepperedArgon2PinHasher
) -> Iterator[TestClient]:
    deni = bootstrap(settings, clock=clock, hasher=hasher)
    try:
        with TestClient(create_app(deni), raise_server_exceptions=False) as client:
            yield client
    finally:
        deni.close()


@pytest.fixture
def production_client(
    database_url: str, clock: ManualClock, hasher: PepperedArgon2PinHasher
) -> Iterator[TestClient]:
    yield from _client(_production(database_url), clock, hasher)


@pytest.mark.parametrize("path", OPS_PATHS)
def test_production_hides_the_operations_paths_from_the_public(
    production_client: TestClient, path: str
) -> None:
    assert_error(production_client.get(path), 404, "not_found")
    wrong = {"Authorization": "Bearer " + OPS_TOKEN[:-1] + "0"}
    assert_error(production_client.get(path, headers=wrong), 404, "not_found")
    as_basic = {"Authorization": "Basic " + OPS_TOKEN}
    assert_error(production_client.get(path, headers=as_basic), 404, "not_found")


@pytest.mark.parametrize("path", OPS_PATHS)
def test_the_ops_token_opens_them(production_client: TestClient, path: str) -> None:
    response = production_client.get(path, headers={"Authorization": f"Bearer {OPS_TOKEN}"})
    assert response.status_code == 200, response.text


def test_without_an_ops_token_they_are_closed_to_everyone(
    database_url: str, clock: ManualClock, hasher: PepperedArgon2PinHasher
) -> None:
    for client in _client(_production(database_url, ops_token=""), clock, hasher):
        for path in OPS_PATHS:
            assert_error(client.get(path, headers={"Authorization": "Bearer "}), 404, "not_found")


def test_the_public_paths_are_unchanged_in_production(production_client: TestClient) -> None:
    assert production_client.get("/health").status_code == 200
    assert_error(production_client.get("/api/v1/wallet"), 401, "unauthorized")


@pytest.mark.parametrize("path", ["/health/ready", "/health"])
def test_readiness_details_are_for_operators_in_production(
    production_client: TestClient, path: str
) -> None:
    """A load balancer reads the status; the schema's revisions and the worker's heartbeat
    age are for the operators."""
    public = production_client.get(path).json()
    assert public["status"] == "ok"
    assert public["checks"]["schema"] == {"state": "ok"}
    assert all(set(check) == {"state"} for check in public["checks"].values())
    bearer = {"Authorization": f"Bearer {OPS_TOKEN}"}
    detailed = production_client.get(path, headers=bearer).json()
    assert detailed["checks"]["schema"]["revision"] == detailed["checks"]["schema"]["head"]
    wrong = {"Authorization": "Bearer " + OPS_TOKEN[:-1] + "0"}
    assert production_client.get(path, headers=wrong).json() == public


@pytest.mark.parametrize("path", OPS_PATHS)
def test_development_and_test_keep_them_open(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 200
