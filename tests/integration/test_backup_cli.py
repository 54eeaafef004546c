"""`deni backup` and `deni restore` on the embedded SQLite database: a copy taken while writes
go on is whole (its ledger and audit chain check out), a restore puts the books back as they
were at the backup, and what must not happen is refused with a reason (PostgreSQL, a database
in use, a damaged or foreign backup, a backup file already there)."""

from __future__ import annotations

import re
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from tests.conftest import settings_for
from tests.support.builders import fund, lend, register
from tests.support.waiting import wait_until
from typer.testing import CliRunner

from deni.adapters.db import tables
from deni.adapters.security import PepperedArgon2PinHasher
from deni.bootstrap import Deni, bootstrap, database_engine
from deni.entrypoints.cli import app
from deni.services import audit, ledger, loans

runner = CliRunner()
PIN = "3591"


@pytest.fixture
def database(sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A migrated SQLite file, and the environment `deni` reads pointing at it."""
    path = tmp_path / "live" / "deni.sqlite3"
    path.parent.mkdir()
    shutil.copy(sqlite_template, path)
    monkeypatch.setenv("DENI_DATABASE_URL", f"sqlite:///{path}")
    monkeypatch.setenv("DENI_ENVIRONMENT", "development")
    return path


@pytest.fixture
def open_deni(hasher: PepperedArgon2PinHasher) -> Iterator[list[Deni]]:
    """Deni instances a test opens with `_open`, closed at the end."""
    opened: list[Deni] = []
    yield opened
    for deni in opened:
        deni.close()


def _open(opened: list[Deni], path: Path, hasher: PepperedArgon2PinHasher) -> Deni:
    deni = bootstrap(settings_for(f"sqlite:///{path}"), hasher=hasher)
    opened.append(deni)
    return deni


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def _entries(deni: Deni) -> int:
    with database_engine(deni).connect() as connection:
        return int(
            connection.execute(
                select(func.count()).select_from(tables.journal_entries)
            ).scalar_one()
        )


def _assert_books_whole(deni: Deni) -> None:
    with deni.uow.read_only() as uow:
        totals = ledger.check(uow)
    assert totals.postings_sum_cents == 0
    assert not totals.unbalanced_entry_ids
    assert not totals.mismatched_accounts
    assert not totals.negative_wallets
    report = audit.verify_audit_log(deni)
    assert report.ok, report.problems[:3]


def _a_loan_repaid(deni: Deni) -> None:
    """Four entries: a deposit to each side, the principal lent, the loan repaid."""
    lender = register(deni, name="Wanjiku Kamau", pin=PIN)
    borrower = register(deni, name="Otieno Odhiambo", pin=PIN)
    fund(deni, lender, 10_000)
    fund(deni, borrower, 500)
    loan = lend(
        deni,
        lender=lender,
        borrower=borrower,
        approve_with_pin=PIN,
        principal_cents=10_000,
        fee_cents=500,
    )
    loans.repay_loan(
        deni,
        borrower_id=borrower.id,
        loan_id=loan.id,
        amount_cents=10_500,
        pin=PIN,
        idempotency_key=str(uuid.uuid4()),
    )


def test_a_backup_taken_while_loans_are_written_is_whole(
    database: Path,
    tmp_path: Path,
    hasher: PepperedArgon2PinHasher,
    open_deni: list[Deni],
) -> None:
    serving = _open(open_deni, database, hasher)
    stop = threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        try:
            while not stop.is_set():
                _a_loan_repaid(serving)
        except BaseException as error:  # shown by the assertion below
            failures.append(error)

    writer = threading.Thread(target=write, name="writer")
    writer.start()
    copies: list[int] = []
    try:
        for n in range(3):
            wanted = (copies[-1] if copies else 0) + 8
            wait_until(lambda: _entries(serving) >= wanted, what="more loans written")  # noqa: B023
            code, output = _run("backup", str(tmp_path / f"copy-{n}.sqlite3"))
            assert code == 0, output
            copy = _open(open_deni, tmp_path / f"copy-{n}.sqlite3", hasher)
            _assert_books_whole(copy)
            copies.append(_entries(copy))
    finally:
        stop.set()
        writer.join()
    assert not failures, failures
    assert copies[0] < copies[1] < copies[2], copies  # each copy saw more
    _assert_books_whole(serving)


def test_restore_puts_the_books_back_as_they_were_at_the_backup(
    database: Path, tmp_path: Path, hasher: PepperedArgon2PinHasher, open_deni: list[Deni]
) -> None:
    deni = bootstrap(settings_for(f"sqlite:///{database}"), hasher=hasher)
    _a_loan_repaid(deni)
    at_backup = _entries(deni)
    code, output = _run("backup", str(tmp_path / "backup.sqlite3"))
    assert code == 0, output
    assert "schema revision" in output
    _a_loan_repaid(deni)
    assert _entries(deni) == at_backup + 4
    deni.close()  # the server stopped, as a restore wants

    code, output = _run("restore", str(tmp_path / "backup.sqlite3"))
    assert code == 0, output
    assert "kept at" in output
    restored = _open(open_deni, database, hasher)
    assert _entries(restored) == at_backup
    _assert_books_whole(restored)
    kept = list(database.parent.glob("deni.sqlite3.before-restore-*"))
    assert len(kept) == 1
    assert _entries(_open(open_deni, kept[0], hasher)) == at_backup + 4


def test_restore_refuses_a_database_in_use_unless_forced(
    database: Path, tmp_path: Path, hasher: PepperedArgon2PinHasher, open_deni: list[Deni]
) -> None:
    serving = _open(open_deni, database, hasher)
    _a_loan_repaid(serving)
    code, output = _run("backup", str(tmp_path / "backup.sqlite3"))
    assert code == 0, output
    _a_loan_repaid(serving)  # the serving process keeps its connections open

    code, output = _run("restore", str(tmp_path / "backup.sqlite3"))
    assert code == 2
    assert "in use" in output
    assert "--force" in output
    assert _entries(serving) == 8
    assert not list(database.parent.glob("*before-restore*"))

    code, output = _run("restore", "--force", str(tmp_path / "backup.sqlite3"))
    assert code == 0, output
    assert "restart every `deni` process" in output
    serving.close()
    assert _entries(_open(open_deni, database, hasher)) == 4


def _damaged(backup: Path, target: Path) -> Path:
    shutil.copy(backup, target)
    with target.open("r+b") as file:
        file.seek(4096 * 3)
        file.write(b"\xff" * 4096 * 4)
    return target


def _with_revision(backup: Path, target: Path, revision: str | None) -> Path:
    shutil.copy(backup, target)
    connection = sqlite3.connect(target)
    with connection:
        if revision is None:
            connection.execute("DROP TABLE alembic_version")
        else:
            connection.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    connection.close()
    return target


def _not_sqlite(backup: Path, target: Path) -> Path:
    target.write_bytes(b"not a database at all " * 100)
    return target


def _from_the_future(backup: Path, target: Path) -> Path:
    return _with_revision(backup, target, "9999_from_the_future")


def _foreign(backup: Path, target: Path) -> Path:
    return _with_revision(backup, target, None)


def _missing(backup: Path, target: Path) -> Path:
    return target.with_name("missing.sqlite3")


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (_damaged, "damaged|not a usable SQLite database"),
        (_not_sqlite, "not a usable SQLite"),
        (_from_the_future, "does not know"),
        (_foreign, "not a Deni database"),
        (_missing, "no such file"),
    ],
    ids=["damaged", "not-sqlite", "unknown-revision", "no-revision", "missing"],
)
def test_restore_refuses_a_backup_that_does_not_check_out(
    database: Path,
    tmp_path: Path,
    hasher: PepperedArgon2PinHasher,
    open_deni: list[Deni],
    make: Callable[[Path, Path], Path],
    says: str,
) -> None:
    deni = bootstrap(settings_for(f"sqlite:///{database}"), hasher=hasher)
    _a_loan_repaid(deni)
    deni.close()
    code, output = _run("backup", str(tmp_path / "backup.sqlite3"))
    assert code == 0, output
    bad = make(tmp_path / "backup.sqlite3", tmp_path / "bad.sqlite3")

    code, output = _run("restore", str(bad))
    assert code == 2, output
    assert re.search(says, " ".join(output.split())), output
    assert _entries(_open(open_deni, database, hasher)) == 4
    assert sorted(
        p.name for p in database.parent.iterdir() if not p.name.endswith(("-wal", "-shm"))
    ) == ["deni.sqlite3"]


def test_restoring_an_older_schema_says_to_upgrade(database: Path, tmp_path: Path) -> None:
    code, output = _run("backup", str(tmp_path / "backup.sqlite3"))
    assert code == 0, output
    connection = sqlite3.connect(tmp_path / "backup.sqlite3")
    with connection:
        (previous,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        older = f"{int(previous) - 1:04d}"
        connection.execute("UPDATE alembic_version SET version_num = ?", (older,))
    connection.close()
    code, output = _run("restore", str(tmp_path / "backup.sqlite3"))
    assert code == 0, output
    assert f"schema revision {older}" in output
    assert "deni db upgrade" in output


def test_backup_will_not_overwrite_a_file_unless_forced(database: Path, tmp_path: Path) -> None:
    target = tmp_path / "backup.sqlite3"
    target.write_text("an older backup")
    code, output = _run("backup", str(target))
    assert code == 2
    assert "exists" in output
    assert "--force" in output
    assert target.read_text() == "an older backup"
    code, output = _run("backup", "--force", str(target))
    assert code == 0, output
    assert target.read_bytes().startswith(b"SQLite format 3\x00")


@pytest.mark.parametrize("command", ["backup", "restore"])
def test_postgresql_is_sent_to_pgbackrest(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DENI_DATABASE_URL", "postgresql+psycopg://deni@127.0.0.1:1/deni")
    code, output = _run(command, str(tmp_path / "file.sqlite3"))
    assert code == 2
    said = " ".join(output.split())
    assert "pgBackRest" in said
    assert "docs/backups.md" in said
    assert not (tmp_path / "file.sqlite3").exists()


def test_restore_onto_a_machine_with_no_database_yet(
    database: Path,
    tmp_path: Path,
    hasher: PepperedArgon2PinHasher,
    open_deni: list[Deni],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deni = bootstrap(settings_for(f"sqlite:///{database}"), hasher=hasher)
    _a_loan_repaid(deni)
    deni.close()
    code, output = _run("backup", str(tmp_path / "backup.sqlite3"))
    assert code == 0, output
    fresh = tmp_path / "new-machine" / "var" / "deni.sqlite3"
    monkeypatch.setenv("DENI_DATABASE_URL", f"sqlite:///{fresh}")

    code, output = _run("restore", str(tmp_path / "backup.sqlite3"))
    assert code == 0, output
    assert "kept at" not in output
    restored = _open(open_deni, fresh, hasher)
    assert _entries(restored) == 4
    _assert_books_whole(restored)
