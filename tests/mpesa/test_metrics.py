"""The business metrics after a scripted journey against the Daraja sandbox: members register,
a lender tops up by STK push, lends three times (paid out by B2C), a loan is repaid by STK push,
a payment lands in suspense, a callback waits, M-PESA reports its balance; then /metrics says
exactly what happened, on SQLite and PostgreSQL. docs/metrics.md describes each metric."""

from __future__ import annotations

import math
from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, insert, select

from deni.adapters.db import tables as t
from deni.adapters.db.mpesa import tables as m
from deni.adapters.db.sync import tables as s
from deni.bootstrap import database_engine
from deni.domain.loans import Loan
from deni.domain.users import User
from deni.ids import new_id
from deni.services import loans
from deni.services.mpesa import reconcile
from deni.services.sms import send_pending_sms
from tests.support.mpesa import PIN, World

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
CHANNELS = ("api", "ussd", "callback", "sync")


def _scrape(world: World) -> Samples:
    response = world.http.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def _business(samples: Samples) -> dict[str, float]:
    """Every business gauge, by name and label (one flat dict to compare at once)."""
    figures = {}
    for (name, labels), value in samples.items():
        if name.startswith("deni_") and not name.startswith("deni_channel_"):
            label = ",".join(f"{k}={v}" for k, v in labels)
            figures[f"{name}{{{label}}}" if label else name] = value
    return figures


def _loan(world: World, borrower: User, lender: User, principal_cents: int, days: int) -> Loan:
    loan = loans.request_loan(
        world.deni,
        borrower_id=borrower.id,
        lender_phone=lender.phone,
        principal_cents=principal_cents,
        term_days=days,
    )
    return loans.approve_loan(world.deni, lender_id=lender.id, loan_id=loan.id, pin=PIN)


def _top_up(world: World, user: User, amount_cents: int) -> None:
    answer = world.post(user, "/mpesa/top-ups", {"amount_cents": amount_cents})
    assert answer.status_code == 202, answer.text


def _b2c_paid_cents(world: World) -> int:
    """M-PESA's own record of the payouts it made (the sandbox's transactions)."""
    return sum(int(x["amount_cents"]) for x in world.admin.transactions() if x["kind"] == "b2c")


def _mpesa_cents(world: World) -> int:
    org = world.admin.organisation()
    return int(org["working_account_cents"]) + int(org["utility_account_cents"])


def _wallets_cents(world: World, *users: User) -> int:
    return sum(world.balance(user) for user in users)


def test_metric_names_and_values_after_a_journey(world: World) -> None:
    deni, clock = world.deni, world.clock
    engine = database_engine(deni)

    # Nothing yet: no balance report (NaN), no worker ever beat (+Inf), every queue empty.
    before = _business(_scrape(world))
    assert math.isnan(before.pop("deni_mpesa_float_cents"))
    assert math.isnan(before.pop("deni_reconciliation_drift_cents"))
    assert before.pop("deni_worker_heartbeat_age_seconds") == math.inf
    assert before == {
        "deni_outbox_messages{state=pending}": 0,
        "deni_outbox_messages{state=sending}": 0,
        "deni_outbox_messages{state=dead}": 0,
        "deni_outbox_oldest_pending_age_seconds": 0,
        "deni_dead_letters{queue=outbox}": 0,
        "deni_dead_letters{queue=sync}": 0,
        "deni_suspense_payments": 0,
        "deni_suspense_oldest_age_seconds": 0,
        "deni_payouts_awaiting_decision": 0,
        "deni_callback_inbox_pending": 0,
        "deni_callback_inbox_lag_seconds": 0,
        "deni_ledger_mpesa_cents": 0,
        "deni_wallet_liabilities_cents": 0,
        "deni_portfolio_at_risk_ratio{days=1}": 0,
        "deni_portfolio_at_risk_ratio{days=7}": 0,
        "deni_portfolio_at_risk_ratio{days=30}": 0,
        "deni_payouts_today_cents": 0,
        "deni_sms_queue_pending": 0,
    }

    # Register, fund by STK push (API), lend three times (paid out by B2C), repay one loan by
    # STK push (API), and one USSD hop.
    lender, borrower, other = world.user("Baraka"), world.user("Amina"), world.user("Otieno")
    _top_up(world, lender, 5_000_00)
    world.settle()
    assert world.balance(lender) == 5_000_00
    repaid = _loan(world, borrower, lender, 1_000_00, 14)
    overdue = _loan(world, borrower, lender, 1_000_00, 7)
    _loan(world, borrower, lender, 3_000_00, 30)
    world.work(reconcile=True)  # the sweep queues the payouts (and asks for today's balance)
    world.settle()
    answer = world.post(
        borrower, f"/loans/{repaid.id}/mpesa-repayments", {"amount_cents": 1_000_00}
    )
    assert answer.status_code == 202, answer.text
    world.settle()
    hop = world.http.post(
        "/ussd",
        data={
            "sessionId": "ATUid_metrics",
            "serviceCode": "*383#",
            "phoneNumber": "+254722999001",
            "networkCode": "63902",
            "text": "",
        },
    )
    assert hop.status_code == 200
    world.assert_conserved()

    day_one = _scrape(world)
    paid_out_cents = _b2c_paid_cents(world)
    assert paid_out_cents == 5_000_00  # the three disbursements
    assert _value(day_one, "deni_payouts_today_cents") == paid_out_cents
    paybill_cents, float_cents = world.ledger_mpesa()
    assert _value(day_one, "deni_ledger_mpesa_cents") == paybill_cents + float_cents == 1_000_00
    assert _value(day_one, "deni_wallet_liabilities_cents") == _wallets_cents(
        world, lender, borrower, other
    )
    assert _value(day_one, "deni_wallet_liabilities_cents") == 1_000_00  # the repayment, lent
    assert _value(day_one, "loans_by_state", state="active") == 2
    assert _value(day_one, "loans_by_state", state="repaid") == 1
    for days in ("1", "7", "30"):
        assert _value(day_one, "deni_portfolio_at_risk_ratio", days=days) == 0
    # The channels: two API requests (the STK pushes asked for; /metrics is no channel), one
    # USSD hop, no sync; a callback for every one Daraja delivered.
    counts = {c: _value(day_one, "deni_channel_latency_seconds_count", channel=c) for c in CHANNELS}
    assert counts["api"] == 2
    assert counts["ussd"] == 1
    assert counts["sync"] == 0
    delivered = [c for c in world.admin.callbacks() if c["state"] == "delivered"]
    assert counts["callback"] == len(delivered) >= 5  # 2 STK, 3 B2C results, a balance

    # Ten days on: the 7-day loan is 3 days overdue, the 30-day one is not due.
    clock.advance(timedelta(days=10))
    reconcile.request_balance_report(world.deps)
    world.admin.flush()
    world.work()
    reported_cents = _mpesa_cents(world)
    ledger_at_report_cents = sum(world.ledger_mpesa())
    # The sandbox's float was funded before Deni kept books: that, and only that, is the drift.
    opening_cents = world.start_working_cents + world.start_utility_cents
    assert reported_cents - ledger_at_report_cents == opening_cents == 1_000_000_00

    # Then money moves after the report: a paybill payment for no known account (suspense),
    # another STK top-up whose callback is stored but not applied yet.
    deni.settings.__dict__["c2b_validation"] = False
    assert world.admin.pay_paybill(other.phone, 80, "WHO-KNOWS")["status"] == "completed"
    world.confirm()
    world.confirm()
    _top_up(world, other, 250_00)
    world.work()  # the push is sent
    world.admin.flush()  # its callback delivered and stored; the worker has not applied it
    # An outbox message waiting, one dead, an offline client's dead letter, a payout for an
    # operator to decide, and a worker that beat once.
    now = clock.now()
    with engine.begin() as connection:
        outbox = {"payload": "{}", "attempts": 0, "last_error": "", "updated_at": now}
        connection.execute(
            insert(m.outbox),
            [
                {**outbox, "id": new_id(), "topic": "metrics.test", "unique_key": "metrics:1",
                 "state": "pending", "next_attempt_at": now + timedelta(days=1), "created_at": now},
                {**outbox, "id": new_id(), "topic": "metrics.test", "unique_key": "metrics:2",
                 "state": "dead", "next_attempt_at": now, "created_at": now},
            ],
        )  # fmt: skip
        connection.execute(
            insert(s.sync_dead_letters).values(
                id=new_id(), user_id=other.id, client_id=new_id(), mutation_id=1, name="x",
                args="{}", code="refused", message="", state="open", created_at=now,
            )
        )  # fmt: skip
        request = m.mpesa_requests.c
        [payout_id] = connection.execute(
            select(request.id).where(request.kind == "b2c").order_by(request.id).limit(1)
        ).scalars()
        connection.execute(
            m.mpesa_requests.update().where(request.id == payout_id).values(awaiting_decision=True)
        )
        notifications = connection.execute(select(func.count()).select_from(t.notifications))
        sms_queued = notifications.scalar_one()  # nothing delivered: every one still queued
    deni.heartbeats.start(now)
    clock.advance(timedelta(seconds=90))

    later = _business(_scrape(world))
    paybill_cents, float_cents = world.ledger_mpesa()
    # The opening float is money outside the ledger, carried from report to report, not a
    # difference: every cent of this journey is accounted for.
    assert later.pop("deni_reconciliation_drift_cents") == 0
    assert later == {
        "deni_outbox_messages{state=pending}": 1,
        "deni_outbox_messages{state=sending}": 0,
        "deni_outbox_messages{state=dead}": 1,
        "deni_outbox_oldest_pending_age_seconds": 90,
        "deni_dead_letters{queue=outbox}": 1,
        "deni_dead_letters{queue=sync}": 1,
        "deni_suspense_payments": 1,
        "deni_suspense_oldest_age_seconds": 90,
        "deni_payouts_awaiting_decision": 1,
        "deni_callback_inbox_pending": 1,
        "deni_callback_inbox_lag_seconds": 90,
        "deni_mpesa_float_cents": reported_cents,
        # The ledger now holds the suspense payment too; the drift still compares the report
        # with the ledger when it was asked for.
        "deni_ledger_mpesa_cents": paybill_cents + float_cents,
        "deni_wallet_liabilities_cents": _wallets_cents(world, lender, borrower, other),
        "deni_portfolio_at_risk_ratio{days=1}": 0.25,  # 1,000 overdue of 4,000 owed
        "deni_portfolio_at_risk_ratio{days=7}": 0,
        "deni_portfolio_at_risk_ratio{days=30}": 0,
        "deni_payouts_today_cents": 0,  # a new day: nothing paid out yet
        "deni_sms_queue_pending": sms_queued,
        "deni_worker_heartbeat_age_seconds": 90,
    }
    assert paybill_cents + float_cents == ledger_at_report_cents + 80_00
    assert sms_queued > 0
    assert overdue.terms.due_date < clock.now().date()

    # Once the callback is applied and the SMS go out (its own too), those queues are empty.
    world.work()
    send_pending_sms(queue=deni.sms_queue, sender=deni.sms, clock=clock)
    emptied = _business(_scrape(world))
    assert emptied["deni_sms_queue_pending"] == 0
    assert emptied["deni_callback_inbox_pending"] == 0
    assert emptied["deni_callback_inbox_lag_seconds"] == 0
    assert world.balance(other) == 250_00
