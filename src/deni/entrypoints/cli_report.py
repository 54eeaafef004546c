"""`deni report trial-balance|loan-book|arrears|mpesa-recon`: the money reports as CSV
(entrypoints/reports_csv.py), to standard output or a file. What each shows: docs/reports.md."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from deni.bootstrap import Deni, bootstrap
from deni.config import Settings
from deni.domain.errors import DomainError
from deni.domain.users import nairobi_today
from deni.entrypoints import reports_csv
from deni.services import reports

report_app = typer.Typer(
    help="Money reports as CSV: trial balance, loan book, arrears, the M-PESA day.",
    no_args_is_help=True,
)
errors = Console(stderr=True)

DayOption = Annotated[
    str | None,
    typer.Option(
        "--day",
        help="A Nairobi calendar day, YYYY-MM-DD (default: today). Reports as of its end.",
    ),
]
OutOption = Annotated[
    Path | None,
    typer.Option("--out", help="Write the CSV to this file instead of standard output."),
]


def register(app: typer.Typer) -> None:
    app.add_typer(report_app, name="report")


def _fail(message: str) -> NoReturn:
    errors.print(f"[red]error[/red]: {message}")
    raise typer.Exit(2)


def _day(value: str | None, deni: Deni) -> date:
    try:
        return reports.report_day(value, today=nairobi_today(deni.clock.now()))
    except DomainError as error:
        _fail(f"--day: {error.message} (got {value!r})")


@contextmanager
def _wired() -> Iterator[Deni]:
    deni = bootstrap(Settings())
    try:
        yield deni
    finally:
        deni.close()


def _write(lines: Iterable[str], out: Path | None) -> None:
    if out is None:
        for line in lines:
            sys.stdout.write(line)
        sys.stdout.flush()
        return
    try:
        with out.open("w", encoding="utf-8", newline="") as file:
            for line in lines:
                file.write(line)
    except OSError as error:
        _fail(f"cannot write {out}: {error.strerror or error}")
    errors.print(f"Wrote {out}")


def _check_out(out: Path | None) -> None:
    """Refuse a file that cannot be written before any report is read."""
    if out is not None and (out.is_dir() or not out.parent.is_dir()):
        _fail(f"cannot write {out}: not a file in an existing folder.")


@report_app.command("trial-balance")
def trial_balance(day: DayOption = None, out: OutOption = None) -> None:
    """Debits and credits of every account group, from the postings up to the day's end."""
    _check_out(out)
    with _wired() as deni:
        as_of = reports.end_of_day(_day(day, deni))
        balance = reports.trial_balance(deni, as_of=as_of)
        _write(reports_csv.trial_balance_csv(balance), out)
    if not balance.balanced:
        errors.print("[red]The trial balance does not balance[/red]: run `deni ledger check`.")
        raise typer.Exit(1)


@report_app.command("loan-book")
def loan_book(day: DayOption = None, out: OutOption = None) -> None:
    """Every loan on the book, with what is owed on the day (streamed a page at a time)."""
    _check_out(out)
    with _wired() as deni:
        as_of_day = _day(day, deni)
        _write(reports_csv.loan_book_csv(reports.iter_loan_book(deni, as_of_day=as_of_day)), out)


@report_app.command("arrears")
def arrears(day: DayOption = None, out: OutOption = None) -> None:
    """What active loans owe on the day by days overdue, and PAR 1/7/30."""
    _check_out(out)
    with _wired() as deni:
        ageing = reports.arrears_ageing(deni, as_of_day=_day(day, deni))
        _write(reports_csv.arrears_csv(ageing), out)


@report_app.command("mpesa-recon")
def mpesa_recon(day: DayOption = None, out: OutOption = None) -> None:
    """One Nairobi day's M-PESA money in and out against the ledger's M-PESA accounts."""
    _check_out(out)
    with _wired() as deni:
        recon = reports.mpesa_reconciliation(deni, day=_day(day, deni))
        _write(reports_csv.mpesa_reconciliation_csv(recon), out)
