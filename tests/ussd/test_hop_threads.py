"""Where a hop runs: on the USSD routes' own threads (not the event loop, not anyio's shared
pool), which end with the app; and how it is counted in /metrics (the route template, never
the secret in the path)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import datetime

from fastapi.testclient import TestClient
from tests.support.builders import next_phone
from tests.support.ussd import TOKEN, Phone, client_with

from deni.bootstrap import HOP_THREADS, Deni
from deni.config import Settings
from deni.entrypoints.api.app import create_app
from deni.services.ports import SessionStore


class ThreadNotingStore:
    """The wired store; notes the thread of every call."""

    def __init__(self, inner: SessionStore) -> None:
        self.inner = inner
        self.threads: set[threading.Thread] = set()

    def get_many(self, keys: Sequence[str], *, now: datetime) -> list[str | None]:
        self.threads.add(threading.current_thread())
        return self.inner.get_many(keys, now=now)

    def write(self, changes: Mapping[str, tuple[str, int] | None], *, now: datetime) -> None:
        self.threads.add(threading.current_thread())
        self.inner.write(changes, now=now)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_hops_run_on_the_ussd_threads_which_end_with_the_app(deni: Deni) -> None:
    store = ThreadNotingStore(deni.sessions)
    deni.sessions = store
    with TestClient(create_app(deni)) as client:
        phones = [Phone(client, next_phone()) for _ in range(3)]
        for phone in phones * 3:
            assert phone.dial().startswith("CON ")
        threads = set(store.threads)
        assert threads
        assert threading.main_thread() not in threads
        assert all(t.name.startswith("ussd-hop") for t in threads), [t.name for t in threads]
        assert len(threads) <= HOP_THREADS
    assert not any(t.is_alive() for t in threads)


def test_metrics_count_hops_by_route_template_not_by_the_secret_path(settings: Settings) -> None:
    with client_with(settings, ussd_token=TOKEN) as client:
        form = {"sessionId": "s1", "serviceCode": "*383#", "phoneNumber": "+254700000001"}
        assert client.post(f"/ussd/{TOKEN}", data={**form, "text": ""}).status_code == 200
        metrics = client.get("/metrics").text
    assert TOKEN not in metrics
    assert 'route="/ussd/{token}"' in metrics
