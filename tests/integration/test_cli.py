"""The `deni` command against a real database: users, deposits, ledger check, audit verify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from deni.adapters.db.engine import make_engine
from deni.entrypoints.cli import app

runner = CliRunner()


@pytest.fixture
def cli_env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DENI_DATABASE_URL", database_url)
    monkeypatch.setenv("DENI_ENVIRONMENT", "development")
    # The cheapest argon2 cost the settings allow keeps `user create` quick.
    monkeypatch.setenv("DENI_PIN_HASH_MEMORY_KIB", "1024")
    monkeypatch.setenv("DENI_PIN_HASH_TIME_COST", "1")
    return database_url


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def _create_and_fund(phone: str = "0712345678") -> None:
    code, output = _run("user", "create", "--phone", phone, "--name", "Amina", "--pin", "3591")
    assert code == 0, output
    code, output = _run(
        "wallet", "deposit", "--phone", phone, "--amount", "1500", "--receipt", "QK1"
    )
    assert code == 0, output
    assert "KES 1,500" in output


def test_db_upgrade_is_repeatable(cli_env: str) -> None:
    code, output = _run("db", "upgrade")
    assert code == 0, output
    assert "up to date" in output


def test_user_create_deposit_and_a_clean_ledger_check(cli_env: str) -> None:
    _create_and_fund()
    code, output = _run(
        "wallet", "deposit", "--phone", "0712345678", "--amount", "1500", "--receipt", "QK1"
    )
    assert code == 0
    assert "already recorded" in output
    code, output = _run("ledger", "check")
    assert code == 0, output
    assert "FAIL" not in output


def test_user_create_refuses_a_foreign_number(cli_env: str) -> None:
    code, output = _run(
        "user", "create", "--phone", "+15551234567", "--name", "Bob", "--pin", "3591"
    )
    assert code == 2
    assert "invalid_phone_number" in output


def test_ledger_check_fails_when_a_cached_balance_was_tampered_with(cli_env: str) -> None:
    _create_and_fund()
    engine = make_engine(cli_env)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE accounts SET balance_cents = balance_cents + 1 WHERE kind = 'wallet'")
        )
    engine.dispose()
    code, output = _run("ledger", "check")
    assert code == 1
    assert "FAIL" in output


def test_audit_verify_passes_then_detects_an_edited_row(cli_env: str) -> None:
    _create_and_fund()
    code, output = _run("audit", "verify")
    assert code == 0, output
    assert "intact" in output
    engine = make_engine(cli_env)
    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_log SET details = '{}' WHERE seq = 1"))
    engine.dispose()
    code, output = _run("audit", "verify")
    assert code == 1
    assert "changed after it was written" in output


def test_audit_verify_detects_a_deleted_last_row(cli_env: str) -> None:
    _create_and_fund()
    engine = make_engine(cli_env)
    with engine.begin() as connection:
        connection.execute(
            text("DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)")
        )
    engine.dispose()
    code, output = _run("audit", "verify")
    assert code == 1
    assert "head says" in output


def test_loans_sweep_reports_what_it_expired(cli_env: str) -> None:
    code, output = _run("loans", "sweep")
    assert code == 0, output
    assert "Expired 0 loan(s); stored 0 reminder(s)." in output


def test_user_export_writes_what_the_api_export_gives(cli_env: str, tmp_path: Path) -> None:
    _create_and_fund()
    target = tmp_path / "amina.json"
    code, output = _run("user", "export", "--phone", "0712345678", "--out", str(target))
    assert code == 0, output
    data = json.loads(target.read_text(encoding="utf-8"))
    assert data["user"]["name"] == "Amina"
    assert data["wallet"]["balance_cents"] == 150_000
    [deposit] = data["wallet"]["statement"]
    assert deposit["mpesa_receipt"] == "QK1"
    assert "statement lines: 1" in output


def test_user_export_of_an_unknown_number_is_a_clear_error(cli_env: str) -> None:
    code, output = _run("user", "export", "--phone", "0799999999")
    assert code == 2
    assert "user_not_found" in output


def test_customer_care_locks_and_unlocks_an_account(cli_env: str) -> None:
    _create_and_fund()
    code, output = _run("user", "lock", "--phone", "0712345678")
    assert code == 0, output
    assert "locked" in output
    assert _support_locked("0712345678", cli_env)
    code, output = _run(
        "wallet", "deposit", "--phone", "0712345678", "--amount", "10", "--receipt", "QK2"
    )
    assert code == 0, output  # money may still come in
    code, output = _run("user", "unlock", "--phone", "0712345678")
    assert code == 0, output
    assert "unlocked" in output
    assert not _support_locked("0712345678", cli_env)
    code, output = _run("user", "lock", "--phone", "0799999999")
    assert code == 2
    assert "user_not_found" in output


def _support_locked(national: str, database_url: str) -> bool:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            query = text("SELECT support_locked_at FROM users WHERE phone = :phone")
            locked_at = connection.execute(query, {"phone": "254" + national[1:]}).scalar_one()
    finally:
        engine.dispose()
    return locked_at is not None


def test_serve_turns_uvicorn_access_log_off(cli_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn's access log prints the raw path, and a hook's path carries its secret token;
    Deni's own access line (route template only) is the one that is written."""
    import uvicorn

    started: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: started.update(options))
    code, output = _run("serve", "--port", "8123")
    assert code == 0, output
    assert started["access_log"] is False
    assert started["log_config"] is None
