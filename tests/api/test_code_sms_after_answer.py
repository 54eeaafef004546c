"""Asking for a registration or PIN-reset code answers every number alike, in time too: the
SMS (an HTTP call to the gateway in production, hundreds of milliseconds) goes out after the
answer, so a stranger cannot time the answer to learn whether a number is a member's; and an
SMS that fails is logged, not answered with a 503 that only members' numbers (or only
strangers') could earn."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send
from tests.support.builders import api_user, next_phone, sms_texts

from deni.bootstrap import Deni
from deni.entrypoints.api.app import create_app
from deni.services.ports import SmsNotSent, SmsSender

RESET = "/api/v1/auth/pin-reset"
REGISTER_CODE = "/api/v1/auth/register/code"


class NotingSms:
    """The wired sender; notes in `events` when it is called, and fails if told to."""

    def __init__(self, inner: SmsSender, events: list[str], *, fail: bool = False) -> None:
        self.inner, self.events, self.fail = inner, events, fail

    def send(
        self, *, phone: str, body: str, idempotency_key: str, secret: str | None = None
    ) -> None:
        self.events.append("sms")
        if self.fail:
            raise SmsNotSent("the gateway is down", permanent=False)
        self.inner.send(phone=phone, body=body, idempotency_key=idempotency_key, secret=secret)


def _noting_answers(deni: Deni, events: list[str]) -> Callable[[Scope, Receive, Send], object]:
    app = create_app(deni)

    async def noting(scope: Scope, receive: Receive, send: Send) -> None:
        async def note(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                events.append("answered")

        await app(scope, receive, note)

    return noting


def test_the_code_sms_leaves_after_the_answer(client: TestClient, deni: Deni) -> None:
    member = api_user(client, deni, name="Known Member")
    events: list[str] = []
    outbox = deni.sms
    deni.sms = NotingSms(outbox, events)
    newcomer = next_phone()
    with TestClient(_noting_answers(deni, events)) as timed:
        assert timed.post(RESET, json={"phone": member.user.phone}).status_code == 202
        assert events == ["answered", "sms"]
        events.clear()
        assert timed.post(REGISTER_CODE, json={"phone": newcomer}).status_code == 202
        assert events == ["answered", "sms"]
    deni.sms = outbox
    assert sms_texts(deni, member.user.phone)  # the reset code
    assert sms_texts(deni, newcomer)  # the registration code


@pytest.mark.parametrize("path", [RESET, REGISTER_CODE])
def test_a_failing_sms_answers_as_a_number_that_gets_none(
    client: TestClient, deni: Deni, path: str
) -> None:
    member = api_user(client, deni, name="Known Member")
    events: list[str] = []
    deni.sms = NotingSms(deni.sms, events, fail=True)
    with TestClient(create_app(deni)) as failing:
        answers = {
            who: failing.post(path, json={"phone": phone})
            for who, phone in (("member", member.user.phone), ("stranger", next_phone()))
        }
    assert events == ["sms"]  # one of the two numbers earned an SMS; its failure is not told
    assert {r.status_code for r in answers.values()} == {202}
    assert answers["member"].json() == answers["stranger"].json()
