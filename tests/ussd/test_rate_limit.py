"""One phone may not hammer *383#: past the per-minute limit of hops that do work, the gateway
gets a clear END and nothing else happens, whichever session the hops come from; the next
minute it dials again. The production default (30) is in force here."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from tests.fakes import ManualClock
from tests.support.builders import next_phone
from tests.support.ussd import Phone, register

from deni.config import Settings

TOO_MANY = "END Too many tries from this phone."


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "ussd_hops_per_minute_max": Settings.model_fields["ussd_hops_per_minute_max"].default
        }
    )


def test_a_phone_past_the_limit_is_refused_until_the_next_minute(
    client: TestClient, clock: ManualClock, settings: Settings
) -> None:
    limit = settings.ussd_hops_per_minute_max
    assert limit == 30
    clock.advance(timedelta(seconds=60 - clock.now().timestamp() % 60))  # a minute's start
    phone = Phone(client, next_phone())
    register(phone, name="Hasty Hana", pin="3591")  # 5 hops
    used = 5
    while used < limit:
        phone.dial()  # a new session each time: the count is the phone's, not the session's
        used += 1
        if used < limit:
            phone.send("5")  # the balance
            used += 1
    assert not phone.last.startswith(TOO_MANY)
    assert phone.resend() == phone.last  # the gateway re-sending the last hop: its answer
    assert phone.dial().startswith(TOO_MANY)
    assert phone.send("5").startswith(TOO_MANY)
    other = Phone(client, next_phone())
    assert other.dial().startswith("CON ")  # another phone is not held back
    clock.advance(timedelta(seconds=60))
    assert phone.dial().startswith("CON ")


def test_repeating_the_same_hop_costs_nothing(client: TestClient, clock: ManualClock) -> None:
    """The gateway re-sends a hop it got no answer to: the stored screen, not a new hop."""
    clock.advance(timedelta(seconds=60 - clock.now().timestamp() % 60))
    phone = Phone(client, next_phone())
    first = phone.dial()
    for _ in range(100):
        assert phone.resend() == first
