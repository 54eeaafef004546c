"""The daily balance report compares like with like: M-PESA's change between two reports
against the ledger's, with the money in flight named on both sides, so a busy moment shows no
difference that is not there, and a payment M-PESA has and the ledger never will shows as a
difference of exactly its amount."""

from __future__ import annotations

from datetime import timedelta

from typer.testing import CliRunner

from deni.entrypoints.cli import app
from deni.services import reports
from deni.services.mpesa import paybills, reconcile
from deni.services.mpesa.ports import BalanceReport, PaybillCheck
from tests.support.mpesa import PIN, World

TOP_UP_CENTS = 400_00
WITHDRAWAL_CENTS = 300_00


def _report(world: World, report_id: str) -> BalanceReport:
    with world.deni.uow.read_only() as uow:
        found = [r for r in uow.balance_reports.latest(limit=20) if r.id == report_id]
    assert found, report_id
    return found[0]


def _ask(world: World) -> str:
    world.clock.advance(timedelta(hours=1))
    return reconcile.request_balance_report(world.deps).id


def _answered(world: World, report_id: str) -> BalanceReport:
    world.admin.flush()
    world.work()
    report = _report(world, report_id)
    assert report.state == "received", report.result_desc
    return report


def test_payments_in_flight_while_the_balance_is_asked_show_no_difference(world: World) -> None:
    lender = world.user("Akinyi")
    world.fund(lender, 1_000_00)
    baseline = _answered(world, _ask(world))
    assert baseline.working_difference_cents is None  # nothing to compare with yet
    assert baseline.before is not None
    assert baseline.after is not None

    # A busy moment: pushes paid and a payout made at M-PESA, their callbacks not yet back.
    members = [world.user(f"Member {i}") for i in range(3)]
    for member in members:
        answer = world.post(member, "/mpesa/top-ups", {"amount_cents": TOP_UP_CENTS})
        assert answer.status_code == 202, answer.text
    withdrawal = world.post(
        lender, "/mpesa/withdrawals", {"amount_cents": WITHDRAWAL_CENTS, "pin": PIN}
    )
    assert withdrawal.status_code == 202, withdrawal.text
    world.drain()  # sent: the sandbox moved the money and holds every callback
    busy_id = _ask(world)
    asked = _report(world, busy_id)
    assert asked.before is not None
    assert asked.before.pushes_open_cents == 3 * TOP_UP_CENTS
    assert asked.before.payouts_open_cents == WITHDRAWAL_CENTS

    busy = _answered(world, busy_id)

    assert busy.working_cents is not None
    assert baseline.working_cents is not None
    assert busy.working_cents - baseline.working_cents == 3 * TOP_UP_CENTS
    # What the report used to compare: the ledger when asked, before any callback came back.
    assert busy.ledger_paybill_cents - baseline.ledger_paybill_cents == 0
    assert busy.working_difference_cents == 0
    assert busy.utility_difference_cents == 0
    assert busy.struck_at is not None
    world.assert_conserved()


def test_a_payment_the_ledger_never_saw_is_a_difference_of_exactly_its_amount(
    world: World,
) -> None:
    payer = world.user("Otieno")
    baseline = _answered(world, _ask(world))
    board = reports.dashboard(world.deni, now=world.clock.now())
    assert board.mpesa_float.unexplained_cents is None  # one report: nothing to compare with
    # In flight as well when asked: a push paid, its callback held.
    pushed = world.post(payer, "/mpesa/top-ups", {"amount_cents": TOP_UP_CENTS})
    assert pushed.status_code == 202, pushed.text
    world.drain()
    # Paid into the paybill, validated by Deni, and its confirmation lost.
    world.admin.add_fault(kind="c2b", phone=payer.phone, action="drop")
    paid = world.admin.pay_paybill(payer.phone, 75, payer.phone)
    world.admin.clear_faults()

    busy = _answered(world, _ask(world))
    # Deni still knows of it (validated, being asked about): in flight, no difference.
    assert busy.after is not None
    assert busy.after.paybills_validated_cents == 75_00
    assert busy.working_difference_cents == 0
    assert baseline.working_cents is not None
    assert busy.working_cents == baseline.working_cents + TOP_UP_CENTS + 75_00

    # The checks ran out: nothing in Deni accounts for it any more. Money M-PESA has and the
    # ledger does not: a difference of exactly its amount, once.
    paybills.settle(world.deps, str(paid["TransID"]), PaybillCheck.UNRESOLVED, "checks ran out")
    missing = _answered(world, _ask(world))
    assert missing.working_difference_cents == 75_00
    assert missing.utility_difference_cents == 0
    board = reports.dashboard(world.deni, now=world.clock.now())
    assert board.mpesa_float.unexplained_cents == 75_00  # the console's tile says so
    later = _answered(world, _ask(world))
    assert later.working_difference_cents == 0  # held to the new level from then on
    board = reports.dashboard(world.deni, now=world.clock.now())
    assert board.mpesa_float.unexplained_cents == 0


def test_deni_reconcile_names_each_component(world: World) -> None:
    payer = world.user("Chebet")
    _answered(world, _ask(world))
    pushed = world.post(payer, "/mpesa/top-ups", {"amount_cents": TOP_UP_CENTS})
    assert pushed.status_code == 202, pushed.text
    world.drain()
    _answered(world, _ask(world))
    settings = world.deni.settings
    env = {
        "DENI_ENVIRONMENT": settings.environment,
        "DENI_DATABASE_URL": settings.database_url,
        "DENI_JWT_SECRET": settings.jwt_secret,
        "DENI_PIN_PEPPER": settings.pin_pepper,
        "DENI_MPESA": "on",
        "DENI_DARAJA_BASE_URL": str(settings.daraja_base_url),
        "DENI_DARAJA_CERTIFICATE_PEM": str(settings.daraja_certificate_pem),
        "DENI_CALLBACK_BASE_URL": world.url,
        "DENI_CALLBACK_TOKEN": settings.callback_token,
        "DENI_LOG_LEVEL": "WARNING",
        "COLUMNS": "250",
    }
    result = CliRunner().invoke(app, ["reconcile"], env=env)
    assert result.exit_code == 0, result.output
    for heading in ("M-PESA", "ledger", "arriving", "maybe in flight", "outside the ledger"):
        assert heading in result.output
    assert "- (first report)" in result.output
    assert "+KES 400 /" in result.output  # the push in flight when the second was asked
