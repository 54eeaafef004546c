"""`deni dial` (a USSD session in the terminal) and `deni sms ...` (the SMS outbox)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from deni.bootstrap import bootstrap, read_sms_outbox
from deni.config import Settings
from deni.domain.errors import InvalidPhoneNumber
from deni.domain.phone import mask_msisdn, normalise_msisdn
from deni.entrypoints.ussd.dialer import Dialer, http_transport, in_process_transport, run
from deni.services.sms import BATCH_MAX, send_pending_sms

sms_app = typer.Typer(help="SMS notifications.", no_args_is_help=True)
console = Console()


def dial(
    code: Annotated[str, typer.Argument(help="The USSD code, e.g. *383#.")],
    phone: Annotated[str, typer.Option(help="Your phone number, e.g. 0712345678.")],
    url: Annotated[
        str | None,
        typer.Option(help="A running Deni, e.g. http://127.0.0.1:8000. Default: in-process."),
    ] = None,
    token: Annotated[
        str,
        typer.Option(
            envvar="DENI_USSD_TOKEN",
            help="The server's USSD path secret, if it has one (production does).",
            show_default=False,
        ),
    ] = "",
) -> None:
    """Dial Deni's USSD menu from a terminal, like a feature phone would."""
    try:
        msisdn = normalise_msisdn(phone)
    except InvalidPhoneNumber as error:
        console.print(f"[red]{error.message}[/red]")
        raise typer.Exit(2) from error
    gateway_phone = "+" + msisdn  # what Africa's Talking sends
    if url is not None:
        transport = http_transport(url, token=token)
        _session(Dialer(transport, gateway_phone, code))
        return
    deni = bootstrap(Settings())
    try:
        _session(Dialer(in_process_transport(deni), gateway_phone, code))
    finally:
        deni.close()


def _session(dialer: Dialer) -> None:
    console.print(f"Dialling {dialer.service_code} from {mask_msisdn(dialer.phone[1:])}...")

    def show(text: str) -> None:
        console.print(Panel(text, width=34))

    def ask(prompt: str) -> str:
        return console.input(prompt)

    try:
        run(dialer, ask=ask, show=show)
    except KeyboardInterrupt:
        console.print("(hung up)")


@sms_app.command("outbox")
def sms_outbox(
    phone: Annotated[str | None, typer.Option(help="Only messages to this number.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
) -> None:
    """Messages the fake SMS gateway has "sent" (DENI_SMS_BACKEND=fake), newest first."""
    try:
        with read_sms_outbox(Settings()) as outbox:
            msisdn = normalise_msisdn(phone) if phone else None
            messages = outbox.messages(phone=msisdn, limit=limit)
    except InvalidPhoneNumber as error:
        console.print(f"[red]{error.message}[/red]")
        raise typer.Exit(2) from error
    table = Table(title=f"SMS outbox ({len(messages)})")
    for column in ("sent at", "to", "chars", "message"):
        table.add_column(column)
    for message in messages:
        table.add_row(
            message.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            message.phone,
            str(len(message.body)),
            message.body,
        )
    console.print(table)


@sms_app.command("send-pending")
def sms_send_pending(
    batch: Annotated[int, typer.Option(min=1, max=BATCH_MAX)] = BATCH_MAX,
) -> None:
    """Send notifications that wait for their SMS (the worker does this on a schedule)."""
    deni = bootstrap(Settings())
    try:
        report = send_pending_sms(
            queue=deni.sms_queue, sender=deni.sms, clock=deni.clock, batch=batch
        )
    finally:
        deni.close()
    console.print(f"Sent {report.sent}, will retry {report.retrying}, gave up on {report.failed}.")


def register(app: typer.Typer) -> None:
    """Attach these commands to the main `deni` app."""
    app.command("dial")(dial)
    app.add_typer(sms_app, name="sms")
