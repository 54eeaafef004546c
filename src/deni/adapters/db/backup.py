"""Backing up and restoring the embedded SQLite database (`deni backup`, `deni restore`).

A backup is SQLite's online backup API copying every page in one step: that step reads one
snapshot of the database, and in WAL mode (engine.py) writers carry on beside it, so a copy
taken while the server serves is consistent and costs the server nothing but I/O. The copy is
written beside the target, switched to a rollback journal (one self-contained file), checked
(`PRAGMA integrity_check`, an Alembic revision Deni knows) and only then renamed into place.

A restore checks the backup the same way, refuses while any connection has the database open
(a serving `deni`: its pool keeps connections open) unless forced, keeps the database it
replaces beside it (`<name>.before-restore-<time>`), and renames a checked copy into place
with the old WAL files moved away, so nothing of the old database is replayed onto the new.

PostgreSQL is backed up by pgBackRest instead (docs/backups.md); bootstrap refuses it here.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from deni.adapters.db.migrate import code_revisions

# A WAL-mode database keeps these beside its main file; they belong to that file alone.
SIDE_FILES = ("-wal", "-shm", "-journal")


class BackupRefused(Exception):
    """A backup or restore that was not done, and why, in words for the operator."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class BackupFile:
    """A checked backup: where, how big, its schema revision, and how long it took."""

    path: Path
    size_bytes: int
    revision: str
    is_newest_revision: bool
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class Restored:
    database: Path
    backup: BackupFile
    # Where the replaced database was moved (None when there was none).
    kept_aside: Path | None
    forced: bool


def check_backup(path: Path) -> BackupFile:
    """A backup file Deni can restore: a SQLite database that passes `integrity_check`, whose
    schema is at a revision of Deni's migrations. Raises BackupRefused saying what is wrong."""
    started = time.monotonic()
    if not path.is_file():
        raise BackupRefused(f"{path}: no such file.")
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as error:
        raise BackupRefused(f"{path}: cannot be opened as SQLite ({error}).") from error
    try:
        problems = [row[0] for row in connection.execute("PRAGMA integrity_check(20)")]
        if problems != ["ok"]:
            listed = "; ".join(str(problem) for problem in problems)
            raise BackupRefused(f"{path} is damaged: integrity_check says {listed}")
        try:
            rows = connection.execute("SELECT version_num FROM alembic_version").fetchall()
        except sqlite3.OperationalError as error:
            raise BackupRefused(
                f"{path} is not a Deni database: it has no schema revision (alembic_version)."
            ) from error
    except sqlite3.DatabaseError as error:  # "file is not a database", and kin
        raise BackupRefused(f"{path} is not a usable SQLite database ({error}).") from error
    finally:
        connection.close()
    head, known = code_revisions()
    if len(rows) != 1 or rows[0][0] not in known:
        found = ", ".join(str(row[0]) for row in rows) or "none"
        raise BackupRefused(
            f"{path} is at schema revision {found}, which this Deni does not know "
            f"(its newest is {head}): a backup of another database, or of a newer Deni."
        )
    return BackupFile(
        path=path,
        size_bytes=path.stat().st_size,
        revision=rows[0][0],
        is_newest_revision=rows[0][0] == head,
        elapsed_s=time.monotonic() - started,
    )


def backup_sqlite(database: Path, target: Path, *, overwrite: bool = False) -> BackupFile:
    """Copy the live database at `database` to `target`, consistent while others write."""
    started = time.monotonic()
    if not database.is_file():
        raise BackupRefused(f"There is no database at {database} to back up.")
    if target.exists() and not overwrite:
        raise BackupRefused(f"{target} exists: choose another name, or pass --force to replace it.")
    if target.resolve() == database.resolve():
        raise BackupRefused("The backup cannot be the database itself.")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = _beside(target, "partial")
    source = sqlite3.connect(database, timeout=30)
    try:
        copy = sqlite3.connect(partial)
        try:
            # pages=-1: every page in one step, from one read snapshot (a stepwise copy
            # restarts whenever another connection writes, and a busy server always does).
            source.backup(copy, pages=-1)
            # One self-contained file: a rollback journal instead of WAL, nothing beside it.
            copy.execute("PRAGMA journal_mode=DELETE")
        finally:
            copy.close()
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        source.close()
    try:
        _fsync(partial)
        checked = check_backup(partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)
    _fsync(target.parent)
    return BackupFile(
        path=target,
        size_bytes=checked.size_bytes,
        revision=checked.revision,
        is_newest_revision=checked.is_newest_revision,
        elapsed_s=time.monotonic() - started,
    )


def in_use(database: Path) -> bool:
    """Whether any connection, of any process, has `database` open. A WAL-mode connection
    holds a shared lock on the file for as long as it is open, so an exclusive lock taken
    without waiting fails while one is."""
    if not database.exists():
        return False
    probe = sqlite3.connect(database, timeout=0, isolation_level=None)
    try:
        probe.execute("PRAGMA locking_mode=EXCLUSIVE")
        probe.execute("BEGIN EXCLUSIVE")
        probe.execute("ROLLBACK")
    except sqlite3.OperationalError as error:
        if "locked" in str(error) or "busy" in str(error):
            return True
        raise
    finally:
        probe.close()
    return False


def restore_sqlite(backup: Path, database: Path, *, force: bool = False) -> Restored:
    """Put the backup at `backup` in the place of the database at `database`."""
    checked = check_backup(backup)
    if backup.resolve() == database.resolve():
        raise BackupRefused("The backup is the database itself: nothing to restore.")
    database.parent.mkdir(parents=True, exist_ok=True)
    incoming = _beside(database, "restoring")
    try:
        _copy(backup, incoming)
        check_backup(incoming)  # the copy as written, not only the file it came from
        busy = in_use(database)
        if busy and not force:
            raise BackupRefused(
                f"{database} is in use (a `deni serve` or `deni worker` has it open): stop "
                "every process that uses it and run the restore again, or pass --force to "
                "replace it under them (they must be restarted at once after)."
            )
        kept_aside = _set_aside(database)
        os.replace(incoming, database)
        _fsync(database.parent)
    except BaseException:
        incoming.unlink(missing_ok=True)
        raise
    return Restored(database=database, backup=checked, kept_aside=kept_aside, forced=busy)


def _set_aside(database: Path) -> Path | None:
    """Move the database and its WAL files to `<name>.before-restore-<time>[-wal...]`."""
    if not database.exists():
        for suffix in SIDE_FILES:
            Path(f"{database}{suffix}").unlink(missing_ok=True)
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    aside = database.with_name(f"{database.name}.before-restore-{stamp}")
    for suffix in SIDE_FILES:
        side = Path(f"{database}{suffix}")
        if side.exists():
            os.replace(side, Path(f"{aside}{suffix}"))
    os.replace(database, aside)
    return aside


def _beside(path: Path, what: str) -> Path:
    return path.with_name(f".{path.name}.{what}-{os.getpid()}-{time.monotonic_ns()}")


def _copy(source: Path, target: Path) -> None:
    with source.open("rb") as reading, target.open("xb") as writing:
        while chunk := reading.read(1 << 20):
            writing.write(chunk)
        writing.flush()
        os.fsync(writing.fileno())


def _fsync(path: Path) -> None:
    """A file's content, or a folder's names (after a rename), on disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
