"""`deni report ...` against a real database: CSV out, to standard output or a file, and a
clear refusal (no traceback) for a day that is not a date."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deni.entrypoints.cli import app
from deni.entrypoints.reports_csv import (
    ARREARS_HEADER,
    LOAN_BOOK_HEADER,
    MPESA_RECON_HEADER,
    TRIAL_BALANCE_HEADER,
)

runner = CliRunner()


@pytest.fixture
def cli_env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DENI_DATABASE_URL", database_url)
    monkeypatch.setenv("DENI_ENVIRONMENT", "development")
    monkeypatch.setenv("DENI_PIN_HASH_MEMORY_KIB", "1024")
    monkeypatch.setenv("DENI_PIN_HASH_TIME_COST", "1")
    return database_url


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def _deposit() -> None:
    code, output = _run(
        "user", "create", "--phone", "0712345678", "--name", "Wanjiku Kamau", "--pin", "3591"
    )
    assert code == 0, output
    code, output = _run(
        "wallet", "deposit", "--phone", "0712345678", "--amount", "1500", "--receipt", "QK1"
    )
    assert code == 0, output


def test_the_trial_balance_balances_after_a_deposit(cli_env: str) -> None:
    _deposit()
    code, output = _run("report", "trial-balance")
    assert code == 0, output
    rows = _rows(output)
    assert rows[0] == list(TRIAL_BALANCE_HEADER)
    total = dict(zip(rows[0], rows[-1], strict=True))
    assert total["account_group"] == "TOTAL"
    assert total["debit_kes"] == total["credit_kes"] == "1500.00"
    assert total["balance_debit_cents"] == total["balance_credit_cents"] == "150000"


def test_a_trial_balance_for_a_day_before_anything_happened_is_empty(cli_env: str) -> None:
    _deposit()
    code, output = _run("report", "trial-balance", "--day", "2020-01-01")
    assert code == 0, output
    total = dict(zip(*_rows(output)[:: len(_rows(output)) - 1], strict=True))
    assert total["debit_cents"] == "0"


def test_every_report_writes_its_header_to_a_file(cli_env: str, tmp_path: Path) -> None:
    _deposit()
    for command, header in (
        ("trial-balance", TRIAL_BALANCE_HEADER),
        ("loan-book", LOAN_BOOK_HEADER),
        ("arrears", ARREARS_HEADER),
        ("mpesa-recon", MPESA_RECON_HEADER),
    ):
        out = tmp_path / f"{command}.csv"
        code, output = _run("report", command, "--day", "2026-11-26", "--out", str(out))
        assert code == 0, output
        assert output == ""  # the CSV went to the file
        data = out.read_bytes().decode()
        assert data.endswith("\r\n")
        assert _rows(data)[0] == list(header)


def test_the_mpesa_day_shows_a_deposit_with_no_mpesa_record_as_a_difference(
    cli_env: str,
) -> None:
    _deposit()
    code, output = _run("report", "mpesa-recon")  # today, when the deposit was made
    assert code == 0, output
    [difference] = [r for r in _rows(output) if r[0] == "difference_in"]
    assert difference[-2:] == ["-1500.00", "-150000"]


@pytest.mark.parametrize(
    "day", ["2026-13-01", "yesterday", "26/11/2026", "2026-1-1", "", "9999-12-31", "0001-01-01"]
)
@pytest.mark.parametrize("command", ["trial-balance", "loan-book", "arrears", "mpesa-recon"])
def test_a_day_that_is_not_a_date_is_refused_clearly(cli_env: str, command: str, day: str) -> None:
    result = runner.invoke(app, ["report", command, "--day", day])
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)  # no traceback
    assert "YYYY-MM-DD" in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_an_out_file_in_a_missing_folder_is_refused(cli_env: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", "arrears", "--out", str(tmp_path / "no" / "such.csv")])
    assert result.exit_code == 2
    assert "cannot write" in result.stderr
