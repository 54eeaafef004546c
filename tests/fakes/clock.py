"""A clock tests move by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

# 09:00 in Nairobi on a Thursday: far from midnight, so "today" is the same in UTC and EAT.
START = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)


class ManualClock:
    def __init__(self, start: datetime) -> None:
        assert start.tzinfo is not None
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        assert delta >= timedelta(0), "time does not run backwards"
        self._now += delta
