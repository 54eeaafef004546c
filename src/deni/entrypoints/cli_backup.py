"""`deni backup FILE` and `deni restore FILE`: the embedded SQLite database, copied while it
serves and put back after checks. PostgreSQL is refused with a pointer to pgBackRest
(docs/backups.md says how both are backed up and restored)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from deni.bootstrap import BackupFile, BackupRefused, backup_database, restore_database
from deni.config import Settings

console = Console()
errors = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command("backup")(backup)
    app.command("restore")(restore)


def _fail(refused: BackupRefused) -> NoReturn:
    errors.print(f"[red]refused[/red]: {refused.message}", soft_wrap=True)
    raise typer.Exit(2)


def _describe(file: BackupFile) -> str:
    size_kib = max(1, round(file.size_bytes / 1024))
    return f"{file.path} ({size_kib:,} KiB, schema revision {file.revision})"


def backup(
    file: Annotated[Path, typer.Argument(help="Where to write the copy.")],
    force: Annotated[bool, typer.Option(help="Replace FILE if it exists.")] = False,
) -> None:
    """Copy the SQLite database to FILE: consistent while `deni serve` keeps serving (SQLite's
    online backup API), then checked (integrity_check, schema revision). PostgreSQL: use
    pgBackRest (docs/backups.md)."""
    try:
        made = backup_database(Settings(), file, overwrite=force)
    except BackupRefused as refused:
        _fail(refused)
    console.print(f"Backed up to {_describe(made)} in {made.elapsed_s:.2f} s.", soft_wrap=True)


def restore(
    file: Annotated[Path, typer.Argument(help="A file `deni backup` wrote.")],
    force: Annotated[
        bool,
        typer.Option(
            help="Replace the database even while a process has it open (restart them after)."
        ),
    ] = False,
) -> None:
    """Put the backup FILE in the place of the SQLite database, after checking it
    (integrity_check, a schema revision this Deni knows). Refused while the database is in
    use unless --force; the replaced database is kept beside it. PostgreSQL: use pgBackRest."""
    try:
        restored = restore_database(Settings(), file, force=force)
    except BackupRefused as refused:
        _fail(refused)
    console.print(f"Restored {_describe(restored.backup)} to {restored.database}.", soft_wrap=True)
    if restored.kept_aside is not None:
        console.print(f"The database it replaced is kept at {restored.kept_aside}.", soft_wrap=True)
    if restored.forced:
        console.print(
            "[yellow]It was in use[/yellow]: restart every `deni` process that had it open now."
        )
    if not restored.backup.is_newest_revision:
        console.print(
            "The backup's schema is older than this Deni's: run `deni db upgrade` before serving."
        )
