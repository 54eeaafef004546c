"""`deni ops`: adding, listing and disabling operators against a real database."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from deni.domain import totp
from deni.entrypoints.cli import app

runner = CliRunner()
PASSWORD = "a long password here"


@pytest.fixture
def cli_env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DENI_DATABASE_URL", database_url)
    monkeypatch.setenv("DENI_ENVIRONMENT", "development")
    monkeypatch.setenv("DENI_PIN_HASH_MEMORY_KIB", "1024")
    monkeypatch.setenv("DENI_PIN_HASH_TIME_COST", "1")
    return database_url


def test_an_operator_is_added_with_a_seed_shown_once_then_listed_and_disabled(
    cli_env: str,
) -> None:
    added = runner.invoke(
        app,
        [
            "ops",
            "add",
            "--username",
            "amina",
            "--name",
            "Amina W",
            "--role",
            "finance",
            "--password-stdin",
        ],
        input=PASSWORD + "\n",
    )
    assert added.exit_code == 0, added.output
    key = re.search(r"type the key: ([A-Z2-7]+)", added.output)
    assert key is not None
    uri = re.search(r"otpauth://totp/\S+", added.output)
    assert uri is not None
    assert f"secret={key.group(1)}" in uri.group(0)
    seed = base64.b32decode(key.group(1) + "=" * (-len(key.group(1)) % 8))
    assert len(totp.code_at(seed, datetime.now(UTC))) == totp.DIGITS

    listed = runner.invoke(app, ["ops", "list"])
    assert "amina" in listed.output
    assert "active" in listed.output
    assert key.group(1) not in listed.output

    taken = runner.invoke(
        app,
        [
            "ops",
            "add",
            "--username",
            "amina",
            "--name",
            "Other",
            "--role",
            "admin",
            "--password-stdin",
        ],
        input=PASSWORD + "\n",
    )
    assert taken.exit_code == 2
    assert "username_taken" in taken.output

    short = runner.invoke(
        app,
        [
            "ops",
            "add",
            "--username",
            "baraka",
            "--name",
            "B",
            "--role",
            "admin",
            "--password-stdin",
        ],
        input="short\n",
    )
    assert short.exit_code == 2
    assert "invalid_password" in short.output

    assert runner.invoke(app, ["ops", "disable", "amina"]).exit_code == 0
    assert "disabled" in runner.invoke(app, ["ops", "list"]).output
    assert runner.invoke(app, ["ops", "disable", "nobody"]).exit_code == 2
