"""Which requests deni_channel_latency_seconds times, and under which channel."""

from __future__ import annotations

import pytest

from deni.entrypoints.api.middleware import channel_of


@pytest.mark.parametrize(
    ("route", "channel"),
    [
        ("/ussd", "ussd"),
        ("/ussd/{token}", "ussd"),
        ("/ussd/events", None),  # Africa's Talking's notice that a session ended: not a hop
        ("/ussd/{token}/events", None),
        ("/hooks/{token}/{kind:path}", "callback"),
        ("/api/v1/sync/push", "sync"),
        ("/api/v1/sync/pull", "sync"),
        ("/api/v1/sync/status", "api"),
        ("/api/v1/loans/{loan_id}/approve", "api"),
        ("/api/v1/mpesa/top-ups", "api"),
        ("/health", None),
        ("/health/ready", None),
        ("/metrics", None),
        ("/app/{path}", None),
        ("/ops", None),
        ("unmatched", None),
    ],
)
def test_channel_of_a_route(route: str, channel: str | None) -> None:
    assert channel_of(route) == channel
