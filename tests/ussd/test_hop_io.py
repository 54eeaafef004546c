"""What one hop does to the session store: one read of the session and the resume snapshot,
one write of what changed once the answer is ready, and nothing written when the hop fails."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from tests.fakes import ManualClock
from tests.support.builders import fund, register

from deni.bootstrap import Deni
from deni.entrypoints.ussd.engine import UssdEngine
from deni.entrypoints.ussd.gateway import UssdRequest
from deni.services.ports import SessionStore
from deni.services.ussd_ports import UssdReads

CODE = "*383#"
WENT_WRONG = "went wrong"


class CountingStore:
    """The wired store, with every call noted."""

    def __init__(self, inner: SessionStore) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def get(self, key: str, *, now: datetime) -> str | None:
        self.calls.append("get")
        return self.inner.get(key, now=now)

    def put(self, key: str, value: str, *, ttl_s: int, now: datetime) -> None:
        self.calls.append("put")
        self.inner.put(key, value, ttl_s=ttl_s, now=now)

    def delete(self, key: str) -> None:
        self.calls.append("delete")
        self.inner.delete(key)

    def get_many(self, keys: Sequence[str], *, now: datetime) -> list[str | None]:
        self.calls.append("get_many")
        return self.inner.get_many(keys, now=now)

    def write(self, changes: Mapping[str, tuple[str, int] | None], *, now: datetime) -> None:
        self.calls.append("write")
        self.inner.write(changes, now=now)

    def take(self) -> list[str]:
        calls, self.calls = self.calls, []
        return calls


class BreakableReads:
    """The wired reads; `broken` makes the balance fail, as a database gone away would."""

    def __init__(self, inner: UssdReads) -> None:
        self.inner = inner
        self.broken = False

    def balance_cents(self, user_id: str) -> int:
        if self.broken:
            raise RuntimeError("the database went away")
        return self.inner.balance_cents(user_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _wired(deni: Deni) -> tuple[UssdEngine, CountingStore, BreakableReads]:
    store, reads = CountingStore(deni.sessions), BreakableReads(deni.ussd_reads)
    deni.sessions, deni.ussd_reads = store, reads
    return UssdEngine(deni), store, reads


def test_each_hop_reads_once_and_writes_once(deni: Deni) -> None:
    user = register(deni, name="Wanjiru", pin="3591")
    fund(deni, user, 50_000)
    engine, store, _ = _wired(deni)

    def hop(text: str) -> str:
        return engine.handle(UssdRequest("ATUid_io_1", "+" + user.phone, CODE, "63902", text)).wire

    assert "Wanjiru" in hop("")
    assert store.take() == ["get_many", "write"]
    assert "500" in hop("5")  # the wallet: a database read, then the session written
    assert store.take() == ["get_many", "write"]
    assert hop("5") == hop("5")  # the gateway retries: answered from the session alone
    assert store.take() == ["get_many", "get_many"]
    hop("5*0")
    hop("5*0*6")  # the mini-statement
    assert store.take() == ["get_many", "write"] * 2


def test_a_hop_that_fails_writes_nothing(deni: Deni, clock: ManualClock) -> None:
    user = register(deni, name="Wanjiru", pin="3591")
    fund(deni, user, 50_000)
    engine, store, reads = _wired(deni)

    def hop(session: str, text: str) -> str:
        return engine.handle(UssdRequest(session, "+" + user.phone, CODE, "63902", text)).wire

    hop("ATUid_io_2", "")
    hop("ATUid_io_2", "5")
    hop("ATUid_io_2", "5*2")  # the amount to withdraw, beside the balance; the session drops
    clock.advance(timedelta(seconds=30))
    assert "Continue where" in hop("ATUid_io_3", "")
    store.take()
    reads.broken = True
    # Yes: the resume snapshot is spent, then reading the balance fails.
    assert WENT_WRONG in hop("ATUid_io_3", "1")
    assert store.take() == ["get_many"]
    reads.broken = False
    # Nothing was written: the session still waits at the prompt, the snapshot is still there.
    answer = hop("ATUid_io_3", "1")
    assert "500" in answer, answer
    assert store.take() == ["get_many", "write"]
