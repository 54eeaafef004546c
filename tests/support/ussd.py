"""A phone dialling *383# through POST /ussd, the way Africa's Talking relays it."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from fastapi.testclient import TestClient

from deni.adapters.mpesa_off import MpesaOffRequests
from deni.bootstrap import Deni, bootstrap
from deni.config import Settings
from deni.domain.phone import normalise_msisdn
from deni.entrypoints.api.app import create_app

SCREEN_CHARS_MAX = 182
CODE = "*383#"
TOKEN = "ussdtoken0123456789abcdef0123456789"  # DENI_USSD_TOKEN, where a test sets one
_sessions = itertools.count(1)
# Session ids unique across runs: a Redis store keeps sessions of an earlier run (real TTL).
_RUN = uuid.uuid4().hex[:8]


def assert_screen(body: str) -> None:
    assert body.startswith(("CON ", "END ")), body
    assert len(body) <= SCREEN_CHARS_MAX, (len(body), body)
    assert body.isascii(), body


@dataclass
class Phone:
    client: TestClient
    number: str  # national, 07...
    session_id: str = ""
    entries: list[str] = field(default_factory=list)
    last: str = ""

    @property
    def msisdn(self) -> str:
        return normalise_msisdn(self.number)

    def dial(self, session_id: str | None = None) -> str:
        self.session_id = session_id or f"ATUid_test_{_RUN}_{next(_sessions)}"
        self.entries = []
        return self._post("")

    def send(self, *entries: str) -> str:
        """Type each entry in turn; returns the last screen."""
        for entry in entries:
            self.entries.append(entry)
            self._post("*".join(self.entries))
        return self.last

    def resend(self) -> str:
        """The gateway retries the same hop."""
        return self._post("*".join(self.entries))

    def _post(self, text: str) -> str:
        response = self.client.post(
            "/ussd",
            data={
                "sessionId": self.session_id,
                "serviceCode": CODE,
                "phoneNumber": "+" + self.msisdn,
                "networkCode": "63902",
                "text": text,
            },
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        assert_screen(response.text)
        self.last = response.text
        return response.text

    @property
    def ended(self) -> bool:
        return self.last.startswith("END ")


def register(phone: Phone, *, name: str, pin: str, language: str = "1") -> str:
    """language: "1" English, "2" Kiswahili."""
    phone.dial()
    return phone.send(language, name, pin, pin)


def mpesa(deni: Deni) -> MpesaOffRequests:
    assert isinstance(deni.mpesa_requests, MpesaOffRequests)
    return deni.mpesa_requests


@contextmanager
def client_with(settings: Settings, **changes: str) -> Iterator[TestClient]:
    """An app of its own on `settings` with `changes` (a gate setting, say), closed after."""
    deni = bootstrap(settings.model_copy(update=changes))
    try:
        with TestClient(create_app(deni)) as client:
            yield client
    finally:
        deni.close()
