"""SMS gateways that keep what they were asked to send: in a list, or as the database-backed
fake gateway keeps it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from deni.ids import new_id
from deni.services.ports import Clock
from tests.fakes.tables import SmsOutboxRow

if TYPE_CHECKING:
    from tests.fakes.uow import FakeDatabase

# How adapters/sms.py's gateway shows a secret (adapters are not the fakes' to import).
SECRET_MASK = "******"


@dataclass(frozen=True, slots=True)
class SentSms:
    phone: str
    body: str
    idempotency_key: str


@dataclass
class RecordingSmsSender:
    """The `SmsSender` port: sends nothing, keeps every message, oldest first."""

    sent: list[SentSms] = field(default_factory=list)

    def send(
        self, *, phone: str, body: str, idempotency_key: str, secret: str | None = None
    ) -> None:
        self.sent.append(SentSms(phone, body, idempotency_key))

    def last_code(self, phone: str) -> str:
        """The 6-digit code in the newest message to `phone`."""
        bodies = [m.body for m in self.sent if m.phone == phone]
        assert bodies, f"no SMS to {phone}"
        codes = re.findall(r"(?<!\d)\d{6}(?!\d)", bodies[-1])
        assert len(codes) == 1, bodies[-1]
        return str(codes[0])


class FakeSmsOutbox:
    """adapters/sms.py's DatabaseSmsOutbox on the fake database: each message kept once per
    idempotency key, a secret masked in the kept text (the whole text set aside, as the real
    one seals it), in a short transaction of its own."""

    def __init__(self, database: FakeDatabase, clock: Clock) -> None:
        self._database = database
        self._clock = clock

    def send(
        self, *, phone: str, body: str, idempotency_key: str, secret: str | None = None
    ) -> None:
        assert secret is None or (secret and secret in body), "the secret is in the text"
        key = idempotency_key[:200]
        row = SmsOutboxRow(
            id=new_id(),
            idempotency_key=key,
            phone=phone,
            body=body.replace(secret, SECRET_MASK) if secret is not None else body,
            holds_secret=secret is not None,
            created_at=self._clock.now(),
            sealed_body=body if secret is not None else None,
        )
        self._database.begin_writing()
        try:
            tables = self._database.tables.copy()
            if any(kept.idempotency_key == key for kept in tables.sms_outbox):
                return  # sent before under this key
            tables.sms_outbox.append(row)
            self._database.publish(tables)
        finally:
            self._database.end_writing()
