"""The `deni` command."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from deni.bootstrap import Deni, bootstrap, configure_logging
from deni.config import Settings
from deni.domain.errors import DomainError
from deni.domain.money import format_kes
from deni.entrypoints import cli_backup, cli_mpesa, cli_offline, cli_ops, cli_report, cli_ussd, demo
from deni.entrypoints.api.routes.privacy import PersonalDataOut, export_file_name
from deni.services import audit, ledger, privacy, push, reminders, users
from deni.services.mpesa import payments

# An error that escapes a command prints its traceback without local values: they hold
# settings, secrets and people's data.
app = typer.Typer(
    help="Deni: peer-to-peer lending over M-PESA.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="The database.", no_args_is_help=True)
user_app = typer.Typer(help="Users.", no_args_is_help=True)
ledger_app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
wallet_app = typer.Typer(help="Wallets.", no_args_is_help=True)
loans_app = typer.Typer(help="Loans.", no_args_is_help=True)
for sub, name in (
    (db_app, "db"),
    (user_app, "user"),
    (ledger_app, "ledger"),
    (audit_app, "audit"),
    (wallet_app, "wallet"),
    (loans_app, "loans"),
):
    app.add_typer(sub, name=name)
cli_ussd.register(app)  # deni dial, deni sms
cli_mpesa.register(app)  # deni worker, sandbox, reconcile, outbox, payments
cli_offline.register(app)  # deni offline: the offline client
cli_ops.register(app)  # deni ops: operators of the staff console
cli_report.register(app)  # deni report: the money reports as CSV
cli_backup.register(app)  # deni backup, deni restore: the SQLite database
app.command()(demo.demo)  # a whole loan against a running Deni, for newcomers
console = Console()
errors = Console(stderr=True)


@contextmanager
def _wired() -> Iterator[Deni]:
    deni = bootstrap(Settings())
    try:
        yield deni
    finally:
        deni.close()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Default: DENI_HOST or 127.0.0.1.")] = None,
    port: Annotated[int | None, typer.Option(help="Default: DENI_PORT or 8000.")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="API processes.")] = 1,
) -> None:
    """Run the HTTP API and the web app."""
    import uvicorn

    settings = Settings()
    host, port = host or settings.host, port or settings.port
    # The app reads its settings from the environment (entrypoints/api/asgi.py, in this process
    # or in uvicorn's worker processes): hand it the address served, so that M-PESA is told to
    # call back where this process listens (DENI_CALLBACK_BASE_URL, when set, still wins).
    os.environ["DENI_HOST"], os.environ["DENI_PORT"] = host, str(port)
    settings = Settings()
    configure_logging(level=settings.log_level, json=settings.log_json)
    console.print(f"Deni is starting on [bold]http://{host}:{port}[/bold]")
    console.print(f"  Web app:   http://{host}:{port}/app/")
    ops_only = (
        " (with DENI_OPS_TOKEN as a bearer token)" if settings.environment == "production" else ""
    )
    console.print(f"  API docs:  http://{host}:{port}/docs{ops_only}")
    console.print(f"  Health:    http://{host}:{port}/health")
    console.print(f"  Database:  {settings.database_url}")
    base = f"http://{host}:{port}"
    console.print(f"  USSD:      .venv/bin/deni dial '*383#' --phone 0712345678 --url {base}")
    console.print(f"  A loan:    .venv/bin/deni demo --url {base}")
    if settings.mpesa or settings.sandbox:
        console.print(f"  Callbacks: {settings.callback_base}/hooks/<token>/...")
    if settings.sandbox:
        sandbox = f"http://127.0.0.1:{settings.sandbox_port}"
        console.print(f"  M-PESA:    local Daraja sandbox, {sandbox}/sandbox/balances")
        console.print("             (top-ups, payouts and repayments go through it: README.md)")
    uvicorn.run(
        "deni.entrypoints.api.asgi:app",
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        # uvicorn's access line carries the raw path, and a hook's path its secret token;
        # Deni writes its own (deni.access: the route template, never the path).
        access_log=False,
        # uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1 (its default
        # forwarded_allow_ips) and rewrite the client address: Deni reads the header itself,
        # only from DENI_TRUSTED_PROXIES (entrypoints/gate.client_address).
        proxy_headers=False,
        forwarded_allow_ips="",
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the newest version (SQLite or PostgreSQL)."""
    with _wired() as deni:
        url = deni.upgrade_schema()
    console.print(f"Database is up to date: {url}")


@user_app.command("create")
def user_create(
    phone: Annotated[str, typer.Option(help="Kenyan mobile number, e.g. 0712345678.")],
    name: Annotated[str, typer.Option()],
    pin: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
    language: Annotated[str, typer.Option(help="en or sw.")] = "en",
) -> None:
    """Register a user from the command line. The number is not proven: the account may not
    lend or borrow until its owner proves it (a code by SMS, or USSD with the PIN)."""
    with _wired() as deni:
        try:
            user = users.register_user(
                deni,
                phone=phone,
                name=name,
                pin=pin,
                language=language,
                channel="cli",
            )
        except DomainError as error:
            _fail(error)
        console.print(f"Created {user.name} ({user.phone}), id {user.id}")


@user_app.command("export")
def user_export(
    phone: Annotated[str, typer.Option(help="Whose data: their Kenyan mobile number.")],
    out: Annotated[
        Path | None, typer.Option(help="Write it here (default: deni-data-DATE.json).")
    ] = None,
) -> None:
    """Everything Deni holds about one person, as the JSON file GET /api/v1/me/export gives
    them: for a request made to support (a USSD-only member has no other way to ask)."""
    with _wired() as deni:
        try:
            with deni.uow.read_only() as uow:
                user = users.find_by_phone(uow, phone)
            data = privacy.personal_data(deni, user_id=user.id)
            web_push = push.export_of(deni.push, user_id=user.id)
        except DomainError as error:
            _fail(error)
    target = out or Path(export_file_name(data))
    exported = PersonalDataOut.of(data, web_push)
    target.write_text(exported.model_dump_json(indent=2), encoding="utf-8")
    console.print(
        f"Wrote {target} (loans: {len(data.loans)}, statement lines: {len(data.statement)}, "
        f"notifications: {len(data.notifications)}, audit rows: {len(data.audit)})"
    )


@user_app.command("lock")
def user_lock(phone: Annotated[str, typer.Option(help="The member's mobile number.")]) -> None:
    """Customer care: lock an account (a SIM swap reported, a lost phone). Nothing works on it,
    not even a PIN reset, until `deni user unlock`."""
    _support_lock(phone, locked=True)


@user_app.command("unlock")
def user_unlock(phone: Annotated[str, typer.Option(help="The member's mobile number.")]) -> None:
    """Customer care: undo `deni user lock`, once the member has proved who they are."""
    _support_lock(phone, locked=False)


def _support_lock(phone: str, *, locked: bool) -> None:
    with _wired() as deni:
        try:
            user = users.set_support_lock(deni, phone=phone, locked=locked)
        except DomainError as error:
            _fail(error)
    console.print(f"{user.name}'s account is {'locked' if locked else 'unlocked'}.")


@wallet_app.command("deposit")
def wallet_deposit(
    phone: Annotated[str, typer.Option()],
    amount: Annotated[int, typer.Option(help="Whole shillings.", min=1)],
    receipt: Annotated[str, typer.Option(help="M-PESA receipt, e.g. QK12ABC3DE.")],
) -> None:
    """Record an M-PESA payment into a wallet by hand (what the Daraja callback will do)."""
    with _wired() as deni:
        try:
            with deni.uow.read_only() as uow:
                user = users.find_by_phone(uow, phone)
            deposit = payments.record_mpesa_payment(
                deni,
                user_id=user.id,
                amount_cents=amount * 100,
                receipt=receipt,
                channel="cli",
            )
        except DomainError as error:
            _fail(error)
        note = " (already recorded)" if deposit.replayed else ""
        console.print(f"{user.name}'s wallet now holds {format_kes(deposit.balance_cents)}{note}")


@loans_app.command("sweep")
def loans_sweep() -> None:
    """Expire what nobody answered and store due-date reminders (safe to run any time)."""
    with _wired() as deni:
        report = reminders.sweep(
            deni,
        )
    console.print(f"Expired {report.expired} loan(s); stored {report.reminders} reminder(s).")


@ledger_app.command("check")
def ledger_check() -> None:
    """Recompute every balance from the postings and prove the ledger's invariants."""
    with _wired() as deni:
        with (
            console.status("Recomputing every balance from its postings..."),
            deni.uow.read_only() as uow,
        ):
            totals = ledger.check(uow)
        table = Table(title="Ledger check")
        table.add_column("invariant")
        table.add_column("result")
        checks = [
            (
                "Σ postings = 0",
                totals.postings_sum_cents == 0,
                f"{totals.postings_sum_cents} cents",
            ),
            (
                "every entry balances",
                not totals.unbalanced_entry_ids,
                f"{len(totals.unbalanced_entry_ids)} unbalanced",
            ),
            (
                "cached = recomputed",
                not totals.mismatched_accounts,
                f"{len(totals.mismatched_accounts)} differ",
            ),
            (
                "no wallet below zero",
                not totals.negative_wallets,
                f"{len(totals.negative_wallets)} negative",
            ),
        ]
        for name, ok, detail in checks:
            table.add_row(
                name, f"[green]ok[/green] ({detail})" if ok else f"[red]FAIL[/red] ({detail})"
            )
        console.print(table)
        console.print(
            f"{totals.accounts_checked} accounts, {totals.entries_checked} entries checked."
        )
        for account_id, cached, recomputed in totals.mismatched_accounts:
            console.print(f"  {account_id}: cached {cached}, postings say {recomputed}")
        if not all(ok for _, ok, _ in checks):
            raise typer.Exit(1)


@audit_app.command("verify")
def audit_verify() -> None:
    """Walk the hash chain; any edited, deleted or re-ordered row fails the check."""
    with _wired() as deni:
        columns = (TextColumn("Verifying audit chain"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("verify", total=None)

            def on_progress(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            report = audit.verify_audit_log(deni, on_progress=on_progress)
        for problem in report.problems[:50]:
            console.print(f"[red]row {problem.seq}[/red]: {problem.problem}")
        if not report.ok:
            console.print(f"[red]Audit log is NOT intact[/red]: {len(report.problems)} problem(s).")
            raise typer.Exit(1)
        console.print(
            f"[green]Audit log intact[/green]: {report.rows_checked} rows, chain unbroken."
        )


def _fail(error: DomainError) -> NoReturn:
    errors.print(f"[red]{error.code}[/red]: {error.message}")
    raise typer.Exit(2)


def main() -> None:
    app(sys.argv[1:])


if __name__ == "__main__":
    app()
