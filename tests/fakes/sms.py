"""An SMS gateway that keeps what it was asked to send."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


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
