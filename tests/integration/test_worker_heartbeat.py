"""`deni worker` beats its heartbeat: an API process that runs no worker of its own (M-PESA on,
DENI_WORKER_INTERVAL_S=0, as in production) is not ready until a separate worker process has
beaten, and is then, even with every Daraja call failing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.support.waiting import wait_until

from deni.bootstrap import Deni, bootstrap
from deni.config import Settings
from deni.entrypoints.api.app import create_app

pytestmark = pytest.mark.slow

DENI = [sys.executable, "-m", "deni.entrypoints.cli"]
STOP_TIMEOUT_S = 20.0


@pytest.fixture
def environment(tmp_path: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "DENI_ENVIRONMENT": "development",
        "DENI_DATABASE_URL": f"sqlite:///{tmp_path / 'deni.sqlite3'}",
        "DENI_MPESA": "on",
        "DENI_DARAJA_BASE_URL": "http://127.0.0.1:1",  # nobody: every Daraja call fails
        "DENI_DARAJA_TIMEOUT_S": "1",
        "DENI_DARAJA_SECURITY_CREDENTIAL": "test-unused",
        "DENI_SWEEP_INTERVAL_S": "0",
        "DENI_SMS_INTERVAL_S": "0",
        "DENI_LOG_LEVEL": "WARNING",
    }
    migrate = [*DENI, "db", "upgrade"]
    subprocess.run(migrate, env=env, check=True, capture_output=True, timeout=60)  # noqa: S603
    return env


@pytest.fixture
def api(environment: dict[str, str]) -> Iterator[Deni]:
    settings = Settings(
        environment="development",
        database_url=environment["DENI_DATABASE_URL"],
        mpesa=True,
        worker_interval_s=0,
        sweep_interval_s=0,
        sms_interval_s=0,
        daraja_base_url=environment["DENI_DARAJA_BASE_URL"],
        daraja_security_credential="test-unused",
    )
    deni = bootstrap(settings)
    yield deni
    deni.close()


def test_an_api_process_is_ready_while_a_deni_worker_beats(
    environment: dict[str, str], api: Deni, tmp_path: Path
) -> None:
    with TestClient(create_app(api), raise_server_exceptions=False) as client:
        missing = client.get("/health/ready")
        assert missing.status_code == 503
        assert missing.json()["checks"]["worker"]["state"] == "missing"

        with (tmp_path / "worker.log").open("w") as log:
            worker = subprocess.Popen(  # noqa: S603 (our own interpreter, fixed arguments)
                [*DENI, "worker", "--interval-s", "0.2"],
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                wait_until(
                    lambda: client.get("/health/ready").status_code == 200,
                    what="the worker's first beat",
                    timeout_s=30,
                )
            finally:
                worker.terminate()
                worker.wait(timeout=STOP_TIMEOUT_S)
        ready = client.get("/health/ready").json()["checks"]["worker"]
        assert ready["state"] == "ok"
        assert ready["age_s"] < api.settings.worker_heartbeat_stale_s
