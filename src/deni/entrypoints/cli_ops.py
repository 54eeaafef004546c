"""`deni ops`: the staff console's operators, managed from the server's shell.

Adding an operator prints their TOTP seed once, as a QR code for an authenticator app and as
text: the database keeps it sealed, and no command shows it again (add the operator anew, under
another username, if the phone is lost; disable the old one).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import segno
import typer
from rich.console import Console
from rich.table import Table

from deni.bootstrap import Deni, bootstrap
from deni.config import Settings
from deni.domain import totp
from deni.domain.errors import DomainError
from deni.domain.operators import Role
from deni.services.ops import operators

ops_app = typer.Typer(help="Operators of the staff console (/ops).", no_args_is_help=True)
console = Console()
errors = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.add_typer(ops_app, name="ops")


@contextmanager
def _wired() -> Iterator[Deni]:
    deni = bootstrap(Settings())
    try:
        yield deni
    finally:
        deni.close()


def _fail(error: DomainError) -> NoReturn:
    errors.print(f"[red]{error.code}[/red]: {error.message}")
    raise typer.Exit(2)


@ops_app.command("add")
def add(
    username: Annotated[str, typer.Option(help="How they sign in: a-z, 0-9, . _ -")],
    name: Annotated[str, typer.Option(help="Their name, as the console and audit show it.")],
    role: Annotated[Role, typer.Option(help="support, finance or admin.")],
    password_stdin: Annotated[
        bool, typer.Option(help="Read the password from standard input (for scripts).")
    ] = False,
) -> None:
    """Add an operator: a password (12 characters at least) and a TOTP seed for their phone."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with _wired() as deni:
        try:
            new = operators.add_operator(
                deni, username=username, name=name, role=role, password=password
            )
        except DomainError as error:
            _fail(error)
    console.print(f"Operator [bold]{new.operator.username}[/bold] ({role.value}) added.")
    console.print("Scan this with their authenticator app, now; it is not shown again:")
    segno.make(new.provisioning_uri, error="m").terminal(compact=True)
    console.print(f"Or type the key: [bold]{totp.seed_text(new.totp_seed)}[/bold]")
    console.print(f"[dim]{new.provisioning_uri}[/dim]")


@ops_app.command("list")
def list_command() -> None:
    """Every operator, their role and whether they may sign in."""
    with _wired() as deni:
        found = operators.list_operators(deni)
    table = Table(title=f"Operators ({len(found)})")
    for column in ("username", "name", "role", "state", "added"):
        table.add_column(column)
    for o in found:
        state = "disabled" if o.disabled_at else ("locked" if o.locked_until else "active")
        table.add_row(o.username, o.name, o.role.value, state, o.created_at.date().isoformat())
    console.print(table)


@ops_app.command("disable")
def disable(username: Annotated[str, typer.Argument(help="The operator to turn off.")]) -> None:
    """Turn an operator off at once: their console sessions end; they cannot sign in."""
    with _wired() as deni:
        try:
            operator = operators.disable_operator(deni, username=username)
        except DomainError as error:
            _fail(error)
    console.print(f"Operator {operator.username} is disabled.")
