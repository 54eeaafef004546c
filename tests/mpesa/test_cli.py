"""The operator's M-PESA commands, run as an operator would: `deni ...` against the same
database and the same Daraja sandbox as the running service."""

from __future__ import annotations

import httpx
import pytest
from typer.testing import CliRunner

from deni.entrypoints.cli import app
from deni.services.mpesa.ports import SuspenseState
from tests.support.mpesa import CALLBACK_TOKEN, PIN, World

runner = CliRunner()


@pytest.fixture
def operator_env(world: World) -> dict[str, str]:
    settings = world.deni.settings
    return {
        "DENI_ENVIRONMENT": settings.environment,
        "DENI_DATABASE_URL": settings.database_url,
        "DENI_JWT_SECRET": settings.jwt_secret,
        "DENI_PIN_PEPPER": settings.pin_pepper,
        "DENI_MPESA": "on",
        "DENI_DARAJA_BASE_URL": str(settings.daraja_base_url),
        "DENI_DARAJA_CERTIFICATE_PEM": str(settings.daraja_certificate_pem),
        "DENI_CALLBACK_BASE_URL": world.url,
        "DENI_CALLBACK_TOKEN": CALLBACK_TOKEN,
        "DENI_LOG_LEVEL": "WARNING",
        "COLUMNS": "200",  # rich tables at full width, not wrapped
    }


def deni(env: dict[str, str], *args: str) -> str:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_register_urls_tells_daraja_where_paybill_payments_go(
    world: World, operator_env: dict[str, str]
) -> None:
    world.admin.reset()  # a sandbox that has never heard of Deni
    assert _registrations(world) == {}
    deni(operator_env, "payments", "register-urls")
    [registered] = _registrations(world).values()
    assert registered["ConfirmationURL"] == f"{world.url}/hooks/{CALLBACK_TOKEN}/c2b/confirmation"
    assert registered["ValidationURL"] == f"{world.url}/hooks/{CALLBACK_TOKEN}/c2b/validation"


def test_an_operator_assigns_suspense_money_once(
    world: World, operator_env: dict[str, str]
) -> None:
    world.deni.settings.__dict__["c2b_validation"] = False  # accept every account number
    user = world.user()
    world.admin.pay_paybill(user.phone, 120, "NOT-A-LOAN")
    world.admin.flush()
    world.work()
    world.confirm()
    with world.deni.uow.read_only() as uow:
        [waiting] = uow.suspense.in_states(states=[SuspenseState.UNASSIGNED], limit=5)

    listed = deni(operator_env, "payments", "suspense")
    assert waiting.receipt in listed
    assert "KES 120" in listed
    assert "assigned to" in deni(
        operator_env, "payments", "assign", waiting.receipt, "--phone", user.phone
    )
    deni(operator_env, "payments", "assign", waiting.receipt, "--phone", user.phone)  # again

    assert world.balance(user) == 120_00
    assert waiting.receipt not in deni(operator_env, "payments", "suspense")
    world.assert_conserved()


def test_assigning_to_an_unknown_person_is_a_clear_error(
    world: World, operator_env: dict[str, str]
) -> None:
    result = runner.invoke(
        app, ["payments", "assign", "NOSUCH0001", "--phone", "0722999999"], env=operator_env
    )
    assert result.exit_code == 2
    assert "not_found" in result.output


def test_reconcile_and_the_operator_lists_run_on_a_quiet_system(
    world: World, operator_env: dict[str, str]
) -> None:
    user = world.user()
    world.fund(user, 1_000_00)
    report = deni(operator_env, "reconcile")
    assert "ledger" in report.lower()
    assert "Open M-PESA requests (0)" in deni(operator_env, "payments", "open")
    assert "(0)" in deni(operator_env, "payments", "callbacks")
    deni(operator_env, "outbox", "dead")


def _registrations(world: World) -> dict[str, dict[str, str]]:
    answer = httpx.get(f"{world.deni.settings.daraja_base_url}/sandbox/registrations", timeout=5)
    assert answer.status_code == 200
    found: dict[str, dict[str, str]] = answer.json()
    return found


def test_an_operator_sees_paybill_payments_whose_confirmation_is_lost(
    world: World, operator_env: dict[str, str]
) -> None:
    user = world.user()
    world.admin.add_fault(kind="c2b", phone=user.phone, action="drop")
    paid = world.admin.pay_paybill(user.phone, 75, user.phone)
    world.admin.flush()
    world.admin.clear_faults()

    listed = deni(operator_env, "payments", "paybill")
    assert "Unconfirmed paybill payments (1)" in listed
    assert str(paid["TransID"]) in listed
    assert "KES 75" in listed

    # The command runs on the real clock, long after the tests' START: the check is due.
    deni(operator_env, "reconcile")  # the operator's pass asks Transaction Status too
    world.admin.flush()
    world.work()
    assert world.balance(user) == 75_00
    assert "Unconfirmed paybill payments (0)" in deni(operator_env, "payments", "paybill")


def test_an_operator_decides_a_payout_nobody_can_settle_once(
    world: World, operator_env: dict[str, str]
) -> None:
    """Daraja failed the send without acting on it, and Transaction Status keeps saying "not
    found": the payout waits, held, with its evidence, until an operator decides, once."""
    user = world.user()
    world.fund(user, 1_000_00)
    world.admin.add_fault(kind="b2c", action="http_500", processed=False)
    answer = world.post(user, "/mpesa/withdrawals", {"amount_cents": 300_00, "pin": PIN})
    request_id = answer.json()["id"]
    world.settle()
    world.reconcile(rounds=world.deps.policy.not_found_answers_min + 1)
    assert world.balance(user) == 700_00

    listed = deni(operator_env, "payments", "waiting")
    assert "Payouts waiting for a decision (1)" in listed
    assert request_id in listed
    assert "send_error" in listed
    assert "not found" in listed

    decided = deni(
        operator_env, "payments", "decide", request_id, "fail",
        "--operator", "wanjiru", "--reason", "Safaricom has no such payment",
    )  # fmt: skip
    assert "decided by wanjiru; now failed" in decided
    again = runner.invoke(
        app,
        ["payments", "decide", request_id, "resend", "--operator", "otieno", "--reason", "again"],
        env=operator_env,
    )
    assert again.exit_code == 2
    assert "not_awaiting_decision" in again.output

    assert world.balance(user) == 1_000_00
    assert "(0)" in deni(operator_env, "payments", "waiting")
    with world.deni.uow.read_only() as uow:
        [row] = uow.audit.by_actor("wanjiru", after_seq=0, limit=5)
    assert row.command == "payout_decision"
    assert '"decision":"fail"' in row.details
    world.assert_conserved()
