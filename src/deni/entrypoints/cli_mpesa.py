"""`deni worker`, `deni sandbox`, `deni reconcile`, `deni outbox ...`, `deni payments ...`."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import structlog
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from deni.bootstrap import Deni, bootstrap, configure_logging
from deni.config import Settings
from deni.domain.errors import DomainError
from deni.domain.money import format_kes
from deni.domain.mpesa import OPEN_STATES
from deni.entrypoints.dev_sandbox import with_sandbox
from deni.services import outbox
from deni.services.mpesa import claims, decisions, paybills, reconcile
from deni.services.mpesa.ports import (
    BalanceReport,
    GatewayError,
    InboxState,
    MpesaDeps,
    PaybillCheck,
    SuspenseState,
)
from deni.services.users import find_by_phone

outbox_app = typer.Typer(help="The outbox of M-PESA work to send.", no_args_is_help=True)
payments_app = typer.Typer(help="M-PESA payments an operator looks after.", no_args_is_help=True)
console = Console()
errors = Console(stderr=True)
LIST_MAX = 100
log = structlog.get_logger(__name__)


def register(app: typer.Typer) -> None:
    app.command()(worker)
    app.command()(sandbox)
    app.command("reconcile")(reconcile_command)
    app.add_typer(outbox_app, name="outbox")
    app.add_typer(payments_app, name="payments")


@contextmanager
def _mpesa() -> Iterator[tuple[Deni, MpesaDeps]]:
    deni = bootstrap(with_sandbox(Settings()))
    try:
        if deni.mpesa is None:
            errors.print("[red]M-PESA is off[/red]: set DENI_MPESA=on (and the DENI_DARAJA_*).")
            raise typer.Exit(2)
        yield deni, deni.mpesa
    finally:
        deni.close()


def _fail(error: DomainError) -> NoReturn:
    errors.print(f"[red]{error.code}[/red]: {error.message}")
    raise typer.Exit(2)


def worker(
    interval_s: Annotated[float, typer.Option(min=0.05, max=3600)] = 1.0,
    reconcile_interval_s: Annotated[float, typer.Option(min=1, max=86_400)] = 60.0,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="Metrics on 127.0.0.1 at this port (0: none). Default: "
            "DENI_WORKER_METRICS_PORT or 0.",
        ),
    ] = None,
) -> None:
    """Send the outbox, apply stored callbacks and reconcile; deliver SMS and run the loan
    sweep (DENI_SMS_INTERVAL_S, DENI_SWEEP_INTERVAL_S); until interrupted (Ctrl-C, SIGTERM)."""
    settings = Settings()
    # The same JSON, redacted, as the API's lines (no console tracebacks with local values).
    configure_logging(level=settings.log_level, json=settings.log_json)
    # SIGTERM (systemd, `make stack-down`) stops it as Ctrl-C does: housekeeping stopped, the
    # database and Daraja clients closed. Every step is idempotent, so a pass cut short is
    # done again by the next worker.
    signal.signal(signal.SIGTERM, _interrupt)
    port = settings.worker_metrics_port if metrics_port is None else metrics_port
    try:
        with _mpesa() as (deni, _), deni.housekeeping():
            console.print("Deni worker running (Ctrl-C to stop)")
            try:
                deni.run_mpesa_worker(
                    interval_s=interval_s,
                    reconcile_interval_s=reconcile_interval_s,
                    metrics_port=port,
                )
            except KeyboardInterrupt:
                console.print("stopped")
    except typer.Exit:
        raise
    except Exception:
        # What stops the worker (its settings, the metrics port taken) is a log line like any.
        log.exception("worker_stopped_by_error")
        raise typer.Exit(1) from None


def _interrupt(_signal: int, _frame: object) -> None:
    raise KeyboardInterrupt


def sandbox(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8100,
) -> None:
    """Run the local Daraja sandbox (a fake Safaricom) on its own."""
    from deni.sandbox.app import serve

    settings = Settings()
    configure_logging(level=settings.log_level, json=settings.log_json)
    console.print(f"Daraja sandbox on http://{host}:{port} (admin API under /sandbox/)")
    serve(host, port, own_logging=False)


def reconcile_command() -> None:
    """One reconciliation pass now, then the balance report: Daraja beside the ledger."""
    with _mpesa() as (_, deps):
        steps = [
            ("ask Daraja about open requests", reconcile.check_due),
            ("ask about payments callbacks claimed", claims.check_due),
            ("ask about unconfirmed paybill payments", paybills.check_due),
            ("queue disbursements", reconcile.sweep_disbursements),
            ("queue lenders' payouts", reconcile.sweep_auto_payouts),
            ("auto-repay due loans", reconcile.auto_repay),
            ("finish suspense assignments", reconcile.resume_assignments),
        ]
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("Reconciling", total=len(steps) + 1)
            for name, step in steps:
                progress.update(task, description=name)
                step(deps)
                progress.advance(task)
            progress.update(task, description="ask for the account balance")
            reconcile.request_balance_report(deps)
            progress.advance(task)
        _balance_table(deps)


def _balance_table(deps: MpesaDeps) -> None:
    with deps.uow.read_only() as uow:
        reports = uow.balance_reports.latest(limit=10)
    table = Table(title="M-PESA balances against the ledger (newest first)")
    for column in (
        "asked",
        "struck",
        "account",
        "M-PESA",
        "ledger",
        "arriving",
        "maybe in flight",
        "outside the ledger",
        "difference",
    ):
        table.add_column(column)
    for report in reports:
        asked = report.requested_at.isoformat(timespec="seconds")
        struck = report.struck_at.isoformat(timespec="seconds") if report.struck_at else "-"
        if report.state != "received" or report.after is None:
            table.add_row(
                asked, struck, report.state, _kes(report.working_cents), "", "", "", "", ""
            )
            continue
        for row in _balance_rows(report):
            table.add_row(asked, struck, *row)
    console.print(table)
    console.print(
        "Working: collections (ledger paybill). Utility: the B2C float. Arriving: paid callbacks "
        "not applied yet and payments awaiting M-PESA's confirmation (payouts: results not "
        "applied). Maybe: pushes, validated paybill payments, payouts and reversals sent and "
        "unanswered. Outside: M-PESA's money the ledger never held (an opening balance, "
        "transfers). A difference is M-PESA moving outside all of these since the last report."
    )


def _balance_rows(report: BalanceReport) -> list[tuple[str, ...]]:
    before, after = report.before, report.after
    assert after is not None
    positions = [p for p in (before, after) if p is not None]
    rows: list[tuple[str, ...]] = []
    for account, mpesa, ledger_cents, arriving, maybe, outside, difference in (
        (
            "working",
            report.working_cents,
            after.ledger_paybill_cents,
            after.callbacks_unapplied_cents + after.claims_waiting_cents,
            "+"
            + format_kes(max(p.pushes_open_cents + p.paybills_validated_cents for p in positions))
            + " / -"
            + format_kes(max(p.reversals_open_cents for p in positions)),
            report.working_outside,
            report.working_difference_cents,
        ),
        (
            "utility",
            report.utility_cents,
            after.ledger_float_cents,
            -after.payouts_unapplied_cents,
            "-" + format_kes(max(p.payouts_open_cents for p in positions)),
            report.utility_outside,
            report.utility_difference_cents,
        ),
    ):
        rows.append(
            (
                account,
                _kes(mpesa),
                format_kes(ledger_cents),
                format_kes(arriving),
                maybe,
                _range(outside),
                "- (first report)" if difference is None else format_kes(difference),
            )
        )
    return rows


def _range(pair: tuple[int, int] | None) -> str:
    if pair is None:
        return "-"
    low, high = pair
    return format_kes(low) if low == high else f"{format_kes(low)} to {format_kes(high)}"


def _kes(amount_cents: int | None) -> str:
    return "-" if amount_cents is None else format_kes(amount_cents)


@outbox_app.command("dead")
def outbox_dead() -> None:
    """Messages that exhausted their retries (retry one with `deni outbox retry ID`)."""
    with _mpesa() as (deni, _):
        dead = outbox.dead_letters(deni, limit=LIST_MAX)
    table = Table(title=f"Dead letters ({len(dead)})")
    for column in ("id", "topic", "attempts", "last error", "payload"):
        table.add_column(column)
    for message in dead:
        table.add_row(
            message.id, message.topic, str(message.attempts), message.last_error, message.payload
        )
    console.print(table)


@outbox_app.command("retry")
def outbox_retry(message_id: Annotated[str, typer.Argument()]) -> None:
    """Put a dead message back in the queue (its request row decides whether to send)."""
    with _mpesa() as (deni, _):
        if not outbox.retry_dead(deni, message_id=message_id):
            errors.print("[red]not_dead[/red]: no dead message with that id")
            raise typer.Exit(2)
    console.print(f"Message {message_id} is queued again.")


@payments_app.command("suspense")
def payments_suspense() -> None:
    """Money received that matches nothing yet."""
    with _mpesa() as (deni, _), deni.uow.read_only() as uow:
        waiting = uow.suspense.in_states(
            states=[SuspenseState.UNASSIGNED, SuspenseState.ASSIGNING], limit=LIST_MAX
        )
    table = Table(title=f"Suspense ({len(waiting)})")
    for column in ("receipt", "amount", "source", "account", "phone", "reason", "state"):
        table.add_column(column)
    for p in waiting:
        table.add_row(
            p.receipt,
            format_kes(p.amount_cents),
            p.source,
            p.account_reference,
            p.phone,
            p.reason,
            p.state.value,
        )
    console.print(table)


@payments_app.command("assign")
def payments_assign(
    receipt: Annotated[str, typer.Argument(help="The M-PESA receipt in suspense.")],
    phone: Annotated[str, typer.Option(help="Whose wallet it goes to.")],
) -> None:
    """Move a suspense payment into a user's wallet (as if it had come in with their phone)."""
    with _mpesa() as (deni, deps):
        try:
            with deni.uow.read_only() as uow:
                user = find_by_phone(uow, phone)
            reconcile.assign_suspense(deps, receipt=receipt, user_id=user.id)
        except DomainError as error:
            _fail(error)
    console.print(f"{receipt} assigned to {user.name}.")


@payments_app.command("open")
def payments_open() -> None:
    """M-PESA requests not settled yet (those with no next check wait for an operator)."""
    with _mpesa() as (deni, _), deni.uow.read_only() as uow:
        found = uow.mpesa_requests.in_states(states=sorted(OPEN_STATES), limit=LIST_MAX)
    table = Table(title=f"Open M-PESA requests ({len(found)})")
    for column in ("id", "purpose", "state", "amount", "checks", "next check", "note"):
        table.add_column(column)
    for r in found:
        table.add_row(
            r.id,
            r.purpose.value,
            r.state.value,
            format_kes(r.amount_cents),
            str(r.status_checks),
            r.next_check_at.isoformat(timespec="seconds") if r.next_check_at else "operator",
            r.result_desc,
        )
    console.print(table)


@payments_app.command("waiting")
def payments_waiting() -> None:
    """Payouts whose outcome nobody can tell, waiting for an operator's decision, each with its
    evidence: every attempt (its OriginatorConversationID, time and outcome) and every answer
    M-PESA gave. Their money stays held until someone decides (`deni payments decide`)."""
    with _mpesa() as (_, deps):
        waiting = decisions.waiting_payouts(deps)
    console.print(f"Payouts waiting for a decision ({len(waiting)})")
    for item in waiting:
        _print_evidence(item)


def _print_evidence(item: decisions.WaitingPayout) -> None:
    r = item.request
    table = Table(
        title=(
            f"{r.id}: {r.purpose.value} of {format_kes(r.amount_cents)} to {r.phone}, "
            f"attempt {r.attempt}, {r.state.value}"
        ),
        title_justify="left",
    )
    for column in ("at", "attempt", "what", "detail", "who"):
        table.add_column(column)
    for event in item.evidence:
        table.add_row(
            event.at.isoformat(timespec="seconds"),
            str(event.attempt),
            event.kind.value,
            event.detail,
            event.actor or "system",
        )
    console.print(table)


@payments_app.command("decide")
def payments_decide(
    request_id: Annotated[str, typer.Argument(help="The payout (see `deni payments waiting`).")],
    decision: Annotated[
        decisions.Decision,
        typer.Argument(
            help="resend: send again with a new id; fail: give the money back to the wallet; "
            "succeeded: the money reached the customer (give --receipt)."
        ),
    ],
    operator: Annotated[str, typer.Option(help="Who decides (recorded in the audit log).")],
    reason: Annotated[str, typer.Option(help="Why (recorded with the decision).")],
    receipt: Annotated[
        str | None, typer.Option(help="The M-PESA receipt of a payout that succeeded.")
    ] = None,
) -> None:
    """Decide a payout waiting for a decision, once. Audited with the operator's name."""
    with _mpesa() as (_, deps):
        try:
            request = decisions.decide_payout(
                deps,
                request_id=request_id,
                decision=decision,
                operator=operator,
                reason=reason,
                receipt=receipt,
            )
        except DomainError as error:
            _fail(error)
    console.print(
        f"Payout {request.id}: {decision.value}, decided by {operator}; now {request.state.value}."
    )


@payments_app.command("claims")
def payments_claims() -> None:
    """Money a callback said arrived that M-PESA has not confirmed: waiting ones are being
    asked about (their owner sees them arriving); disputed ones, where M-PESA says otherwise
    or nothing, credit nothing until an operator decides (`deni payments claim`)."""
    with _mpesa() as (_, deps):
        found = decisions.open_claims(deps)
    table = Table(title=f"Unconfirmed payments ({len(found)})")
    for column in ("receipt", "from", "amount", "account", "phone", "state", "asked", "note"):
        table.add_column(column)
    table.add_column("claimed")
    for c in found:
        table.add_row(
            c.receipt,
            c.source.value,
            format_kes(c.amount_cents),
            c.account_reference,
            c.phone_raw,
            c.state.value,
            f"{c.checks} ({c.not_found_answers} not found)",
            c.result_desc,
            c.claimed_at.isoformat(timespec="seconds"),
        )
    console.print(table)


@payments_app.command("claim")
def payments_claim(
    receipt: Annotated[str, typer.Argument(help="The claimed M-PESA receipt.")],
    decision: Annotated[
        decisions.ClaimDecision,
        typer.Argument(
            help="accept: Safaricom confirms it, apply it as its callback said; "
            "reject: it never happened, credit nothing."
        ),
    ],
    operator: Annotated[str, typer.Option(help="Who decides (recorded in the audit log).")],
    reason: Annotated[str, typer.Option(help="Why (recorded with the decision).")],
    account: Annotated[
        str | None,
        typer.Option(
            help="accept only: the account number Safaricom shows, if not the claimed one."
        ),
    ] = None,
) -> None:
    """Decide a payment a callback claimed and M-PESA did not confirm, once. Audited."""
    with _mpesa() as (_, deps):
        try:
            claim = decisions.decide_claim(
                deps,
                receipt=receipt,
                decision=decision,
                operator=operator,
                reason=reason,
                account_reference=account,
            )
        except DomainError as error:
            _fail(error)
    console.print(f"{claim.receipt}: {claim.state.value} by {claim.decided_by}.")


@payments_app.command("paybill")
def payments_paybill() -> None:
    """Paybill payments accepted at validation whose confirmation has not been seen: waiting
    ones are asked about by the reconciler; unresolved ones wait for an operator."""
    waiting = [PaybillCheck.WAITING, PaybillCheck.UNRESOLVED]
    with _mpesa() as (deni, _), deni.uow.read_only() as uow:
        found = uow.paybills.in_states(states=waiting, limit=LIST_MAX)
    table = Table(title=f"Unconfirmed paybill payments ({len(found)})")
    for column in ("receipt", "amount", "account", "state", "checks", "next check", "note"):
        table.add_column(column)
    for p in found:
        table.add_row(
            p.trans_id,
            format_kes(p.amount_cents),
            p.account_reference,
            p.state.value,
            str(p.checks),
            p.next_check_at.isoformat(timespec="seconds") if p.next_check_at else "operator",
            p.result_desc,
        )
    console.print(table)


@payments_app.command("callbacks")
def payments_callbacks() -> None:
    """Callbacks that were malformed or could not be applied: the trace an operator reads."""
    with _mpesa() as (deni, _), deni.uow.read_only() as uow:
        rows = uow.mpesa_inbox.rows(
            states=[InboxState.MALFORMED, InboxState.FAILED, InboxState.RECEIVED],
            limit=LIST_MAX,
        )
    table = Table(title=f"Callbacks needing attention ({len(rows)})")
    for column in ("id", "kind", "state", "attempts", "error", "received"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row.id),
            row.kind,
            row.state.value,
            str(row.attempts),
            row.error,
            row.received_at.isoformat(timespec="seconds"),
        )
    console.print(table)


@payments_app.command("register-urls")
def payments_register_urls() -> None:
    """Tell Daraja where to send paybill (C2B) validation and confirmation: once, when going
    live (Safaricom keeps the first registration; change it in the Daraja portal)."""
    with _mpesa() as (deni, deps):
        try:
            deps.gateway.register_c2b_urls()
            deps.gateway.register_pull()
        except GatewayError as error:
            errors.print(f"[red]Daraja refused[/red]: {error}")
            raise typer.Exit(1) from error
        base = deni.settings.callback_base
        console.print(f"Registered {base}/hooks/<token>/c2b/validation and …/c2b/confirmation")
        if deni.settings.daraja_pull_nominated_number:
            console.print("Registered the paybill for the Pull API (lost confirmations)")
