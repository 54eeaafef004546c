"""SMS: the delivery service over the queue, the fake outbox, the Africa's Talking client, CLI."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update
from tests.fakes import ManualClock
from tests.support.builders import fund, register
from typer.testing import CliRunner

from deni.adapters.db import tables, ussd_tables
from deni.adapters.sms import (
    AT_SANDBOX_URL,
    SECRET_READABLE_FOR,
    AfricasTalkingSms,
    DatabaseSmsOutbox,
    SqlSmsQueue,
)
from deni.bootstrap import Deni, database_engine
from deni.entrypoints.cli import app
from deni.services.ports import SmsNotSent
from deni.services.sms import ATTEMPTS_MAX, backoff_s, send_pending_sms

runner = CliRunner()


def _states(deni: Deni) -> list[str]:
    n = tables.notifications
    with database_engine(deni).connect() as connection:
        return list(connection.execute(select(n.c.sms_state).order_by(n.c.created_at)).scalars())


def _outbox(deni: Deni) -> DatabaseSmsOutbox:
    assert isinstance(deni.sms, DatabaseSmsOutbox)
    return deni.sms


def test_pending_notifications_go_out_once_in_the_users_language(deni: Deni) -> None:
    english = register(deni, name="Amina", language="en")
    swahili = register(deni, name="Baraka", language="sw")
    fund(deni, english, 150_000)
    fund(deni, swahili, 50_000)
    report = send_pending_sms(queue=deni.sms_queue, sender=deni.sms, clock=deni.clock)
    assert (report.sent, report.retrying, report.failed) == (2, 0, 0)
    assert _states(deni) == ["sent", "sent"]
    messages = {m.phone: m.body for m in _outbox(deni).messages()}
    assert "added to your Deni wallet" in messages[english.phone]
    assert "KES 1,500" in messages[english.phone]
    assert "akaunti yako ya Deni" in messages[swahili.phone]
    assert all(len(body) <= 160 for body in messages.values())
    again = send_pending_sms(queue=deni.sms_queue, sender=deni.sms, clock=deni.clock)
    assert again.sent == 0
    assert len(_outbox(deni).messages()) == 2


class FlakySender:
    def __init__(self, *, permanent: bool = False) -> None:
        self.permanent = permanent
        self.calls = 0

    def send(
        self, *, phone: str, body: str, idempotency_key: str, secret: str | None = None
    ) -> None:
        self.calls += 1
        raise SmsNotSent("gateway down", permanent=self.permanent)


def test_failures_retry_with_backoff_then_give_up(deni: Deni, clock: ManualClock) -> None:
    user = register(deni)
    fund(deni, user, 10_000)
    flaky = FlakySender()
    for attempt in range(1, ATTEMPTS_MAX + 1):
        report = send_pending_sms(queue=deni.sms_queue, sender=flaky, clock=clock)
        assert flaky.calls == attempt
        if attempt < ATTEMPTS_MAX:
            assert report.retrying == 1
            assert _states(deni) == ["pending"]
            # Not before its time.
            assert send_pending_sms(queue=deni.sms_queue, sender=flaky, clock=clock).retrying == 0
            clock.advance(timedelta(seconds=backoff_s(attempt)))
        else:
            assert report.failed == 1
    assert _states(deni) == ["failed"]
    clock.advance(timedelta(days=1))
    send_pending_sms(queue=deni.sms_queue, sender=flaky, clock=clock)
    assert flaky.calls == ATTEMPTS_MAX


def test_a_permanent_failure_gives_up_at_once(deni: Deni) -> None:
    fund(deni, register(deni), 10_000)
    report = send_pending_sms(
        queue=deni.sms_queue, sender=FlakySender(permanent=True), clock=deni.clock
    )
    assert report.failed == 1
    assert _states(deni) == ["failed"]


def test_a_claim_is_a_lease(deni: Deni, clock: ManualClock) -> None:
    fund(deni, register(deni), 10_000)
    queue = SqlSmsQueue(database_engine(deni))
    (claimed,) = queue.claim_due(now=clock.now(), limit=10, lease_s=60)
    assert claimed.attempts == 0
    assert queue.claim_due(now=clock.now(), limit=10, lease_s=60) == []  # another sender
    clock.advance(timedelta(seconds=61))  # the first sender died
    (again,) = queue.claim_due(now=clock.now(), limit=10, lease_s=60)
    assert again.notification_id == claimed.notification_id
    assert again.attempts == 1


def test_backoff_is_bounded() -> None:
    assert [backoff_s(n) for n in (1, 2, 3)] == [30, 60, 120]
    assert backoff_s(100) == 3_600


# --- Africa's Talking -----------------------------------------------------------------------


def _at(handler: object) -> AfricasTalkingSms:
    transport = httpx.MockTransport(handler)  # type: ignore[arg-type]
    return AfricasTalkingSms(
        username="sandbox",
        api_key="k" * 32,
        sender_id="DENI",
        client=httpx.Client(transport=transport),
    )


def _recipient(code: int, status: str) -> dict[str, object]:
    return {
        "SMSMessageData": {
            "Message": "Sent to 1/1 Total Cost: KES 0.8000",
            "Recipients": [
                {
                    "statusCode": code,
                    "number": "+254711000111",
                    "status": status,
                    "cost": "KES 0.8000",
                    "messageId": "ATXid_1",
                }
            ],
        }
    }


def test_africastalking_sends_the_documented_request() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=_recipient(101, "Success"))

    _at(handler).send(phone="254711000111", body="Habari", idempotency_key="n1")
    (request,) = seen
    assert str(request.url) == AT_SANDBOX_URL
    assert request.headers["apiKey"] == "k" * 32
    assert request.headers["Accept"] == "application/json"
    form = dict(httpx.QueryParams(request.content.decode()))
    assert form == {
        "username": "sandbox",
        "to": "+254711000111",
        "message": "Habari",
        "from": "DENI",
    }


@pytest.mark.parametrize(
    ("response", "permanent"),
    [
        (httpx.Response(201, json=_recipient(403, "InvalidPhoneNumber")), True),
        (httpx.Response(201, json=_recipient(406, "UserInBlacklist")), True),
        (httpx.Response(201, json=_recipient(405, "InsufficientBalance")), False),
        (httpx.Response(201, json=_recipient(500, "InternalServerError")), False),
        (
            httpx.Response(
                201, json={"SMSMessageData": {"Message": "InvalidSenderId", "Recipients": []}}
            ),
            True,
        ),
        (httpx.Response(500, text="oops"), False),
        (httpx.Response(401, text="The supplied authentication is invalid"), False),
        (httpx.Response(201, text="<html>not json</html>"), False),
    ],
)
def test_africastalking_failures(response: httpx.Response, permanent: bool) -> None:
    with pytest.raises(SmsNotSent) as raised:
        _at(lambda request: response).send(phone="254711000111", body="x", idempotency_key="n")
    assert raised.value.permanent is permanent


def test_africastalking_timeouts_are_retryable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(SmsNotSent) as raised:
        _at(handler).send(phone="254711000111", body="x", idempotency_key="n")
    assert raised.value.permanent is False


# --- the CLI --------------------------------------------------------------------------------


def test_cli_sends_pending_and_lists_the_outbox(
    deni: Deni, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DENI_DATABASE_URL", database_url)
    monkeypatch.setenv("DENI_ENVIRONMENT", "development")
    user = register(deni, name="Cli Person")
    fund(deni, user, 123_400)
    result = runner.invoke(app, ["sms", "send-pending"])
    assert result.exit_code == 0, result.output
    assert "Sent 1" in result.output
    result = runner.invoke(app, ["sms", "outbox", "--phone", "0" + user.phone[3:]])
    assert result.exit_code == 0, result.output
    assert "KES 1,234" in result.output
    result = runner.invoke(app, ["sms", "outbox", "--phone", "12"])
    assert result.exit_code == 2


def test_only_pending_rows_are_claimed(deni: Deni) -> None:
    fund(deni, register(deni), 10_000)
    with database_engine(deni).begin() as connection:
        connection.execute(update(tables.notifications).values(sms_state="sent"))
    assert (
        SqlSmsQueue(database_engine(deni)).claim_due(now=deni.clock.now(), limit=5, lease_s=60)
        == []
    )


def test_the_fake_keeps_a_secret_masked_and_lets_the_handset_read_it_for_a_while(
    deni: Deni, clock: ManualClock
) -> None:
    outbox = _outbox(deni)
    body = "Deni: your PIN reset code is 613572. It expires in 10 minutes."
    for n in range(3):
        outbox.send(phone=f"25470000000{n}", body=body, idempotency_key=f"k{n}", secret="613572")
    outbox.send(phone="254700000009", body="Nothing secret here.", idempotency_key="plain")
    o = ussd_tables.sms_outbox
    with database_engine(deni).connect() as connection:
        rows = connection.execute(select(o).order_by(o.c.idempotency_key)).all()
    assert [r.body for r in rows[:3]] == [body.replace("613572", "******")] * 3
    assert all(r.holds_secret and "613572" not in r.sealed_body for r in rows[:3])
    assert (rows[3].body, rows[3].holds_secret, rows[3].sealed_body) == (
        "Nothing secret here.",
        False,
        None,
    )
    assert outbox.messages(phone="254700000000")[0].body == body  # the handset reads it

    clock.advance(SECRET_READABLE_FOR)
    assert "******" in outbox.messages(phone="254700000000")[0].body  # not past its window
    assert outbox.forget_secrets(now=clock.now(), limit=2) == 2
    assert outbox.forget_secrets(now=clock.now(), limit=2) == 1
    assert outbox.forget_secrets(now=clock.now(), limit=2) == 0
    with database_engine(deni).connect() as connection:
        assert (
            connection.execute(select(o.c.sealed_body).where(o.c.sealed_body.is_not(None))).all()
            == []
        )


def test_a_secret_must_be_in_the_text_it_is_said_to_be_in(deni: Deni) -> None:
    with pytest.raises(AssertionError):
        _outbox(deni).send(phone="254700000001", body="No code", idempotency_key="k", secret="1")
