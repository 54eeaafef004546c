"""`deni offline ...`: the offline client in a terminal (docs/offline.md).

Log in once while online; then loans, balance, notifications, profile, conflicts and every
intent work without a network, and `deni offline sync` sends what you queued and brings the
server's news.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from deni.domain.errors import DomainError
from deni.domain.money import CENTS_PER_SHILLING, format_kes
from deni.domain.phone import normalise_msisdn
from deni.domain.security import require_new_pin
from deni.offline import queue
from deni.offline.api import Api, ApiError, OfflineError
from deni.offline.client import (
    CURRENT_FILE,
    ConflictView,
    OfflineClient,
    Refused,
    home_dir,
    open_store,
)
from deni.offline.store import LocalSchemaTooNew, Store
from deni.offline.sync import Syncer, SyncReport
from deni.offline.watch import State, Status, Watch, WatchPolicy

offline_app = typer.Typer(
    help="The offline client: its own SQLite database, a queue, and sync.", no_args_is_help=True
)
console = Console()
errors = Console(stderr=True)
QUEUE_SHOWN_MAX = 200

HomeOpt = Annotated[
    Path | None,
    typer.Option(
        "--home", help="Where device databases live (default DENI_OFFLINE_HOME or ~/.deni-offline)."
    ),
]
PhoneOpt = Annotated[
    str | None,
    typer.Option("--phone", help="Whose database (default: whoever logged in last)."),
]


def register(app: typer.Typer) -> None:
    app.add_typer(offline_app, name="offline")


def _fail(message: str, code: int = 2) -> NoReturn:
    errors.print(f"[red]{escape(message)}[/red]")
    raise typer.Exit(code)


@contextmanager
def _client(home: Path | None, phone: str | None) -> Iterator[OfflineClient]:
    try:
        store = open_store(home_dir(home), phone)
    except (OfflineError, DomainError, LocalSchemaTooNew) as error:
        _fail(str(error))
    try:
        yield OfflineClient(store)
    except Refused as error:
        _fail(f"{error.message} (code: {error.code})")
    except ApiError as error:
        _fail(f"{error.message} (code: {error.code})")
    except OfflineError as error:
        _fail(error.message)
    except queue.QueueFull as error:
        _fail(str(error))
    finally:
        store.close()


def _api(client: OfflineClient) -> Api:
    url = client.store.get("server_url")
    if url is None:
        _fail("Not logged in on this device: run `deni offline login`.")
    return Api(url, access_token=client.store.get("access_token"))


def _shillings(amount: float) -> int:
    cents = round(amount * CENTS_PER_SHILLING)
    if abs(cents - amount * CENTS_PER_SHILLING) > 1e-6:
        _fail("Give shillings with at most two decimals.")
    return int(cents)


@offline_app.command()
def login(
    url: Annotated[str, typer.Option(help="The Deni server, e.g. http://127.0.0.1:8000.")],
    phone: Annotated[str, typer.Option(help="Your phone number.")],
    pin: Annotated[str, typer.Option(prompt=True, hide_input=True, help="Asked, never stored.")],
    home: HomeOpt = None,
    sync: Annotated[bool, typer.Option(help="Pull your loans and wallet now.")] = True,
) -> None:
    """Log in once while online; the PIN is used for this call only and never stored."""
    root = home_dir(home)
    try:
        msisdn = normalise_msisdn(phone)
    except DomainError as error:
        _fail(error.message)
    with _client(root, msisdn) as client:
        api = Api(url)
        try:
            client.login(url=url, phone=msisdn, pin=pin, api=api)
            (root / CURRENT_FILE).write_text(msisdn)
            console.print(f"Logged in as {msisdn}; device database {client.store.path}")
            if sync:
                _run_sync(client, api, pin=None)
        finally:
            api.close()


@offline_app.command("register")
def register_account(
    url: Annotated[str, typer.Option(help="The Deni server, e.g. http://127.0.0.1:8000.")],
    phone: Annotated[str, typer.Option(help="Your phone number: Deni sends it a code by SMS.")],
    name: Annotated[str, typer.Option(help="Your full name.")],
    language: Annotated[str, typer.Option(help="en or sw.")] = "en",
    home: HomeOpt = None,
    sync: Annotated[bool, typer.Option(help="Pull your new wallet now.")] = True,
) -> None:
    """Open an account while online, in two steps: Deni texts the number a code, which proves
    it is yours; type the code and choose a PIN (used for this call only, never stored).
    Then this device is logged in, as after `deni offline login`."""
    root = home_dir(home)
    try:
        msisdn = normalise_msisdn(phone)
    except DomainError as error:
        _fail(error.message)
    with _client(root, msisdn) as client:
        api = Api(url)
        try:
            console.print(api.ask_registration_code(phone=msisdn, language=language))
            code = typer.prompt("The code from the SMS").strip()
            pin = typer.prompt(
                "Choose a 4-digit PIN",
                hide_input=True,
                confirmation_prompt=True,
                value_proc=_new_pin,
            )
            client.register(
                url=url, phone=msisdn, code=code, name=name, pin=pin, language=language, api=api
            )
            (root / CURRENT_FILE).write_text(msisdn)
            console.print(
                f"Registered and logged in as {msisdn}; device database {client.store.path}"
            )
            if sync:
                _run_sync(client, api, pin=None)
        finally:
            api.close()


def _new_pin(raw: str) -> str:
    """A PIN typed at the prompt: a weak one is asked again at once (domain/security.py)."""
    try:
        return require_new_pin(raw)
    except DomainError as error:
        raise typer.BadParameter(error.message) from error


@offline_app.command("prove-phone")
def prove_phone(home: HomeOpt = None, phone: PhoneOpt = None) -> None:
    """An account made before numbers were proven may not lend or borrow until it proves its
    number: online, Deni texts it a code; type it here."""
    with _client(home, phone) as client, _api(client) as api:
        syncer = Syncer(client.store, api)
        syncer.ask_phone_code()
        code = typer.prompt("The code from the SMS").strip()
        syncer.confirm_phone(code)
        console.print("Your number is confirmed: you may lend and borrow.")
        _run_sync(client, api, pin=None)


@offline_app.command()
def status(home: HomeOpt = None, phone: PhoneOpt = None) -> None:
    """This device: who, which server, the last sync, and the queue."""
    with _client(home, phone) as client:
        meta = client.store.metadata()
        table = Table(title="deni offline", show_header=False)
        for key in (
            "phone",
            "server_url",
            "client_id",
            "schema_version",
            "last_pull_at",
            "last_sync_finished_at",
            "confirmed_mutation_id",
            "next_mutation_id",
        ):
            table.add_row(key, meta.get(key, "-"))
        counts = queue.counts(client.store.db)
        table.add_row("queue", ", ".join(f"{k} {v}" for k, v in counts.items() if v) or "empty")
        table.add_row("unread notifications", str(len(client.notifications(unread_only=True))))
        table.add_row("open conflicts", str(sum(1 for c in client.conflicts() if not c.resolving)))
        table.add_row("database", str(client.store.path))
        console.print(table)


@offline_app.command()
def loans(
    home: HomeOpt = None,
    phone: PhoneOpt = None,
    role: Annotated[str, typer.Option(help="any, borrower or lender.")] = "any",
) -> None:
    """Your loans as this device knows them (* = a change of yours is waiting to sync)."""
    if role not in ("any", "borrower", "lender"):
        _fail("--role is any, borrower or lender.")
    with _client(home, phone) as client:
        lines = client.loans(role=role)
        table = Table(title=f"Loans (as of {client.store.get('last_pull_at') or 'never synced'})")
        for column in ("id", "code", "you are", "with", "state", "principal", "owed", "due"):
            table.add_column(column)
        for line in lines:
            state = line.state + (" *" if line.pending else "")
            table.add_row(
                line.id[:13],
                line.code or "(not synced)",
                line.role,
                line.counterpart,
                state,
                format_kes(line.principal_cents),
                format_kes(line.owed_cents),
                line.due_date or "-",
            )
        console.print(table)


@offline_app.command()
def balance(home: HomeOpt = None, phone: PhoneOpt = None) -> None:
    """Your wallet: the server's balance minus what your pending changes will take out."""
    with _client(home, phone) as client:
        found = client.balance()
        console.print(f"Server balance:   {format_kes(found.server_cents)} (as of {found.as_of})")
        console.print(f"Pending out:      {format_kes(found.pending_outgoing_cents)}")
        if found.pending_incoming_cents:
            console.print(f"Pending top-ups:  {format_kes(found.pending_incoming_cents)}")
        console.print(f"[bold]Available:        {format_kes(found.available_cents)}[/bold]")


def _queued(mutation: queue.Mutation) -> None:
    console.print(
        f"Queued #{mutation.mutation_id} {mutation.name}: it happens when you `deni offline sync`."
    )


@offline_app.command()
def request(
    lender: Annotated[str, typer.Option(help="The lender's phone number.")],
    amount: Annotated[float, typer.Option(help="Shillings to borrow.")],
    days: Annotated[int | None, typer.Option(help="Term in days.")] = None,
    due: Annotated[str | None, typer.Option(help="Due date YYYY-MM-DD (or --days).")] = None,
    fee: Annotated[float, typer.Option(help="Agreed flat fee, shillings.")] = 0.0,
    penalty: Annotated[float, typer.Option(help="Late penalty per day, shillings.")] = 0.0,
    home: HomeOpt = None,
    phone: PhoneOpt = None,
) -> None:
    """Ask a lender for a loan (queued; the loan gets its id on this device)."""
    with _client(home, phone) as client:
        try:
            due_date = None if due is None else date.fromisoformat(due)
        except ValueError:
            _fail("--due is a date, YYYY-MM-DD.")
        mutation = client.request_loan(
            lender_phone=lender,
            principal_cents=_shillings(amount),
            fee_cents=_shillings(fee),
            penalty_daily_cents=_shillings(penalty),
            term_days=days,
            due_date=due_date,
        )
        console.print(f"Loan {mutation.args['loan_id']}")
        _queued(mutation)


@offline_app.command()
def approve(
    loan: Annotated[str, typer.Argument(help="Loan id, code, or id prefix.")],
    home: HomeOpt = None,
    phone: PhoneOpt = None,
) -> None:
    """Lender: approve (queued; your PIN is asked when you sync, and never stored)."""
    with _client(home, phone) as client:
        _queued(client.approve(loan))


@offline_app.command()
def decline(
    loan: Annotated[str, typer.Argument()], home: HomeOpt = None, phone: PhoneOpt = None
) -> None:
    """Lender: say no (queued)."""
    with _client(home, phone) as client:
        _queued(client.decline(loan))


@offline_app.command()
def cancel(
    loan: Annotated[str, typer.Argument()], home: HomeOpt = None, phone: PhoneOpt = None
) -> None:
    """Borrower: withdraw your request (queued)."""
    with _client(home, phone) as client:
        _queued(client.cancel(loan))


@offline_app.command()
def repay(
    loan: Annotated[str, typer.Argument()],
    amount: Annotated[float, typer.Option(help="Shillings, from your wallet.")],
    home: HomeOpt = None,
    phone: PhoneOpt = None,
) -> None:
    """Borrower: repay from your wallet (queued; your PIN is asked when you sync, never stored)."""
    with _client(home, phone) as client:
        _queued(client.repay(loan, amount_cents=_shillings(amount)))


@offline_app.command("top-up")
def top_up(
    amount: Annotated[int, typer.Option(help="Whole shillings (an M-PESA STK push).", min=1)],
    home: HomeOpt = None,
    phone: PhoneOpt = None,
) -> None:
    """Top up your wallet by M-PESA (queued; the STK push comes after sync)."""
    with _client(home, phone) as client:
        _queued(client.top_up(amount_cents=amount * CENTS_PER_SHILLING))


@offline_app.command()
def withdraw(
    amount: Annotated[int, typer.Option(help="Whole shillings, to your M-PESA.", min=1)],
    home: HomeOpt = None,
    phone: PhoneOpt = None,
) -> None:
    """Withdraw to M-PESA (queued; your PIN is asked when you sync, and never stored)."""
    with _client(home, phone) as client:
        _queued(client.withdraw(amount_cents=amount * CENTS_PER_SHILLING))


@offline_app.command()
def edit(
    loan: Annotated[str, typer.Argument(help="Loan id, code, or id prefix.")],
    amount: Annotated[float | None, typer.Option(help="New amount, shillings.")] = None,
    fee: Annotated[float | None, typer.Option(help="New flat fee, shillings.")] = None,
    penalty: Annotated[float | None, typer.Option(help="New daily penalty, shillings.")] = None,
    days: Annotated[int | None, typer.Option(help="New term in days from today.")] = None,
    due: Annotated[str | None, typer.Option(help="New due date YYYY-MM-DD (or --days).")] = None,
    home: HomeOpt = None,
    phone: PhoneOpt = None,
) -> None:
    """Borrower: change a request the lender has not answered (queued). If it was changed
    meanwhile (say from your other phone), both versions are kept: see `deni offline conflicts`."""
    with _client(home, phone) as client:
        try:
            due_date = None if due is None else date.fromisoformat(due)
        except ValueError:
            _fail("--due is a date, YYYY-MM-DD.")
        mutation = client.edit_request(
            loan,
            principal_cents=None if amount is None else _shillings(amount),
            fee_cents=None if fee is None else _shillings(fee),
            penalty_daily_cents=None if penalty is None else _shillings(penalty),
            term_days=days,
            due_date=due_date,
        )
        _queued(mutation)


@offline_app.command()
def notifications(
    home: HomeOpt = None,
    phone: PhoneOpt = None,
    unread: Annotated[bool, typer.Option("--unread", help="Only the unread ones.")] = False,
) -> None:
    """Your notifications, newest first (new = unread; * = marked read here, not synced yet)."""
    with _client(home, phone) as client:
        lines = client.notifications(unread_only=unread)
        table = Table(title=f"Notifications (as of {_as_of(client)})")
        for column in ("", "id", "when", "kind", "message"):
            table.add_column(column)
        for line in lines:
            mark = "[bold]new[/bold]" if not line.read else ("read *" if line.read_pending else "")
            table.add_row(
                mark,
                line.id,
                (line.created_at or "-")[:16].replace("T", " "),
                line.kind,
                escape(line.body),
            )
        console.print(table)
        unread_count = sum(1 for line in lines if not line.read)
        console.print(f"{unread_count} unread. Mark read: `deni offline read ID...` or `--all`.")


@offline_app.command()
def read(
    ids: Annotated[
        list[str] | None, typer.Argument(help="Notification ids (or unique id prefixes).")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every unread notification.")] = False,
    home: HomeOpt = None,
    phone: PhoneOpt = None,
) -> None:
    """Mark notifications read: at once on this device, and on the server after sync."""
    if ids and all_:
        _fail("Give notification ids or --all, not both.")
    if not ids and not all_:
        _fail("Give notification ids, or --all.")
    with _client(home, phone) as client:
        mutations = client.mark_all_read() if all_ else client.mark_read(list(ids or []))
        if not mutations:
            console.print("Nothing unread there: nothing queued.")
            return
        marked = sum(len(m.args["notification_ids"]) for m in mutations)
        console.print(f"Marked {marked} notification(s) read.")
        for mutation in mutations:
            _queued(mutation)


@offline_app.command()
def profile(
    name: Annotated[str | None, typer.Option(help="Your new name.")] = None,
    language: Annotated[str | None, typer.Option(help="en or sw.")] = None,
    home: HomeOpt = None,
    phone: PhoneOpt = None,
) -> None:
    """Your profile; with --name and/or --language, change it (queued; shown here at once).
    If another device changed the same field, the change that reaches the server last wins."""
    with _client(home, phone) as client:
        if name is not None or language is not None:
            _queued(client.update_profile(name=name, language=language))
        found = client.profile()
        table = Table(title="Profile", show_header=False)
        table.add_row("phone", found.phone)
        if not found.phone_proven:
            table.add_row(
                "number", "not confirmed: run `deni offline prove-phone` to lend or borrow"
            )
        for label, value, server in (
            ("name", found.name, found.server_name),
            ("language", found.language, found.server_language),
        ):
            pending = f" * (server: {server})" if value != server else ""
            table.add_row(label, escape(value) + escape(pending))
        console.print(table)


@offline_app.command()
def preferences(
    payout: Annotated[
        bool | None,
        typer.Option(
            "--payout-to-mpesa/--keep-in-wallet",
            help="Where a loan you borrow is paid: your M-PESA, or your Deni wallet.",
        ),
    ] = None,
    auto_payout: Annotated[
        bool | None,
        typer.Option(
            "--auto-payout/--no-auto-payout",
            help="As a lender: send repayments you receive on to your M-PESA.",
        ),
    ] = None,
    home: HomeOpt = None,
    phone: PhoneOpt = None,
) -> None:
    """Your M-PESA preferences; with an option, change them (queued; shown here at once; your
    PIN is asked when you sync, and never stored)."""
    with _client(home, phone) as client:
        if payout is not None or auto_payout is not None:
            _queued(client.set_preferences(disburse_to_mpesa=payout, auto_payout=auto_payout))
        found = client.preferences()
        table = Table(title="M-PESA preferences", show_header=False)
        rows = (
            (
                "loan payouts",
                found.disburse_to_mpesa,
                found.server[0],
                "to M-PESA",
                "kept in the wallet",
            ),
            ("repayments on to M-PESA", found.auto_payout, found.server[1], "on", "off"),
        )
        for label, value, server, yes, no in rows:
            waiting = " * (waiting to sync)" if value != server else ""
            table.add_row(label, (yes if value else no) + waiting)
        console.print(table)


def _cell(field: str, value: object) -> str:
    if value is None:
        return "-"
    if field.endswith("_cents") and isinstance(value, int) and not isinstance(value, bool):
        return format_kes(value)
    return escape(str(value))


def _conflict_table(conflict: ConflictView) -> Table:
    title = escape(f"Conflict {conflict.id}: {conflict.entity} {conflict.label}")
    table = Table(title=title, caption=f"since {conflict.created_at or '?'}")
    for column in ("", "server (in force)", "client (your edit)"):
        table.add_column(column)
    fields = list(conflict.server_version)
    fields += [f for f in conflict.client_version if f not in conflict.server_version]
    for field in fields:
        server = conflict.server_version.get(field)
        yours = conflict.client_version.get(field)
        differs = field in conflict.server_version and field in conflict.client_version
        style = "bold" if differs and server != yours else None
        label = field.removesuffix("_cents").replace("_", " ")
        table.add_row(label, _cell(field, server), _cell(field, yours), style=style)
    return table


@offline_app.command()
def conflicts(home: HomeOpt = None, phone: PhoneOpt = None) -> None:
    """Open conflicts: two edits of the same thing; both versions kept until you choose."""
    with _client(home, phone) as client:
        found = client.conflicts()
        if not found:
            console.print(f"No open conflicts (as of {_as_of(client)}).")
            return
        for conflict in found:
            console.print(_conflict_table(conflict))
            if conflict.resolving:
                kept = "the server's version" if conflict.resolving == "server" else "yours"
                console.print(f"  You chose to keep {kept}; it lands when you sync.")
            else:
                console.print(
                    f"  Choose: `deni offline resolve {conflict.id} --keep server|client`"
                )


@offline_app.command()
def resolve(
    conflict: Annotated[str, typer.Argument(help="Conflict id (or a unique id prefix).")],
    keep: Annotated[str, typer.Option(help="server (its version) or client (yours).")],
    home: HomeOpt = None,
    phone: PhoneOpt = None,
) -> None:
    """Resolve a conflict by keeping one version (queued, so it works offline too)."""
    with _client(home, phone) as client:
        _queued(client.resolve_conflict(conflict, keep=keep))


def _as_of(client: OfflineClient) -> str:
    return client.store.get("last_pull_at") or "never synced"


def _open_needing_pin(store: Store) -> int:
    return sum(1 for m in queue.open_mutations(store.db) if m.name in queue.NEEDS_PIN)


def _run_sync(client: OfflineClient, api: Api, *, pin: str | None) -> SyncReport:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        push_task = progress.add_task("push", total=None)
        pull_task = progress.add_task("pull", total=None)

        def on_progress(phase: str, done: int, total: int | None) -> None:
            task = push_task if phase == "push" else pull_task
            progress.update(task, completed=done, total=total if total is not None else done)

        syncer = Syncer(client.store, api, on_progress=on_progress, pin=pin)
        report = syncer.sync()
    _show_report(report)
    waiting = sum(1 for c in client.conflicts() if not c.resolving)
    if waiting:
        console.print(
            f"  {waiting} conflict(s) wait for your choice: `deni offline conflicts`, then "
            "`deni offline resolve ID --keep server|client`."
        )
    return report


def _show_report(report: SyncReport) -> None:
    console.print(
        f"Pushed {report.pushed} ({report.applied} applied, {len(report.rejected)} rejected, "
        f"{report.conflicts} conflicts, {report.dead} dead letters); pulled {report.changes} "
        f"change(s) in {report.pages} page(s){' (full resync)' if report.reset else ''}."
    )
    for mutation_id, code, message in report.rejected:
        console.print(f"  [yellow]#{mutation_id} rejected[/yellow] {code}: {message}")
    if report.waiting_for_pin:
        console.print(
            f"  {report.waiting_for_pin} change(s) wait for your PIN (approvals, repayments, "
            "withdrawals, M-PESA preferences): sync again and give it."
        )
    for mutation_id in report.stale:
        console.print(f"  #{mutation_id} no longer fits the server's state; the server decides.")
    for note in report.notes:
        console.print(f"  {note}")


@offline_app.command()
def sync(
    home: HomeOpt = None,
    phone: PhoneOpt = None,
    pin: Annotated[
        str | None,
        typer.Option(
            envvar="DENI_OFFLINE_PIN",
            hide_input=True,
            help="Only if approvals, repayments, withdrawals or preference changes are "
            "queued; asked when needed. Held in memory only.",
        ),
    ] = None,
) -> None:
    """Push your queued changes, pull what changed, and rebase what is still pending."""
    with _client(home, phone) as client:
        if pin is None and _open_needing_pin(client.store):
            pin = (
                typer.prompt(
                    f"PIN for {_open_needing_pin(client.store)} queued change(s) that move "
                    "money (empty: later)",
                    default="",
                    hide_input=True,
                    show_default=False,
                )
                or None
            )
        with _api(client) as api:
            _run_sync(client, api, pin=pin)


@offline_app.command()
def watch(
    home: HomeOpt = None,
    phone: PhoneOpt = None,
    every: Annotated[
        float,
        typer.Option(
            "--every-s", min=5.0, max=86_400.0, help="Seconds between syncs while online."
        ),
    ] = 60.0,
    retry_max: Annotated[
        float,
        typer.Option(
            "--retry-max-s",
            min=1.0,
            max=3_600.0,
            help="The longest wait, in seconds, between tries while the server is unreachable.",
        ),
    ] = 60.0,
) -> None:
    """Stay on and sync by yourself: at once, again when something is queued or every
    --every-s seconds, and while the server cannot be reached, with waits that double up to
    --retry-max-s. Changes that need the PIN wait for `deni offline sync`. Ctrl-C or SIGTERM
    stops it."""
    policy = WatchPolicy(idle_every_s=every, retry_cap_s=retry_max)
    with _client(home, phone) as client, _api(client) as api:
        looping = Watch(client.store, api, _say_status, policy=policy)
        url = client.store.get("server_url")
        console.print(
            escape(f"{_clock()} watching {url} for {client.store.path.name}; Ctrl-C stops."),
            highlight=False,
            soft_wrap=True,
        )
        with _stopped_by_signals(looping.stop):
            final = looping.run()
    if final.state is State.ENDED:
        raise typer.Exit(1)


def _clock() -> str:
    return datetime.now(UTC).strftime("%H:%M:%SZ")


def _say_status(status: Status) -> None:
    said = status.message.rstrip(".")
    line = f"{_clock()} {status.state.value}: {said}; {status.queued} queued"
    if status.next_in_s is not None:
        what = "next sync" if status.state is State.SYNCED else "next try"
        line += f"; {what} in {status.next_in_s:.1f} s"
    console.print(escape(line), highlight=False, soft_wrap=True)
    if status.report is not None:
        for mutation_id, code, message in status.report.rejected:
            console.print(
                escape(f"  #{mutation_id} rejected {code}: {message}"),
                highlight=False,
                soft_wrap=True,
            )
    if status.waiting_for_pin:
        console.print(
            f"  {status.waiting_for_pin} change(s) wait for your PIN (and what was queued "
            "after them): run `deni offline sync` and give it.",
            highlight=False,
            soft_wrap=True,
        )


@contextmanager
def _stopped_by_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop` (the loop ends cleanly) instead of killing mid-write."""

    def handle(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        console.print(f"{_clock()} {name}: stopping", highlight=False, soft_wrap=True)
        # Set from another thread: Event.set takes the event's lock, which the interrupted
        # main thread may hold at that moment (inside Event.wait); setting it here would wait
        # for ourselves forever.
        threading.Thread(target=stop.set, name="watch-stop", daemon=True).start()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@offline_app.command("queue")
def show_queue(
    home: HomeOpt = None,
    phone: PhoneOpt = None,
    all_: Annotated[bool, typer.Option("--all", help="Done ones too.")] = True,
    limit: Annotated[int, typer.Option(min=1, max=QUEUE_SHOWN_MAX)] = 50,
) -> None:
    """Your changes: pending ones, and done ones with the server's answer."""
    with _client(home, phone) as client:
        statuses = queue.ALL_STATES if all_ else queue.OPEN_STATES
        table = Table(title="Queue (newest first)")
        for column in ("#", "intent", "status", "tries", "answer"):
            table.add_column(column)
        for mutation in queue.listing(client.store.db, statuses=statuses, limit=limit):
            answer = mutation.last_error or ""
            if mutation.result_code:
                answer = f"{mutation.result_code}: {mutation.result_reason or ''}"
            table.add_row(
                str(mutation.mutation_id),
                mutation.name,
                mutation.status,
                str(mutation.attempts),
                answer,
            )
        console.print(table)


@offline_app.command("dead-letters")
def dead_letters(home: HomeOpt = None, phone: PhoneOpt = None) -> None:
    """Malformed changes, parked here and on the server; `deni offline retry N` retries one."""
    with _client(home, phone) as client:
        table = Table(title="Dead letters on this device")
        for column in ("#", "intent", "code", "reason", "server id"):
            table.add_column(column)
        for mutation in queue.listing(client.store.db, statuses=("dead",), limit=100):
            table.add_row(
                str(mutation.mutation_id),
                mutation.name,
                mutation.result_code or "",
                mutation.result_reason or "",
                mutation.dead_letter_id or "(this device only)",
            )
        console.print(table)
        with _api(client) as api:
            try:
                letters = Syncer(client.store, api).remote_dead_letters()
            except OfflineError as error:
                console.print(f"(server list unavailable: {error.message})")
                return
        console.print(f"The server holds {len(letters)} open dead letter(s) for this device.")


@offline_app.command()
def retry(
    mutation_id: Annotated[int, typer.Argument(help="The # shown by `deni offline queue`.")],
    home: HomeOpt = None,
    phone: PhoneOpt = None,
) -> None:
    """Retry a dead letter: on the server if it was parked there, else queue it again."""
    with _client(home, phone) as client, _api(client) as api:
        found = queue.get(client.store.db, mutation_id)
        pin = None
        if found is not None and found.name in queue.NEEDS_PIN:
            pin = typer.prompt("PIN", hide_input=True)
        mutation = Syncer(client.store, api, pin=pin).retry_dead(mutation_id)
        console.print(f"#{mutation.mutation_id} {mutation.name}: {mutation.status}")
