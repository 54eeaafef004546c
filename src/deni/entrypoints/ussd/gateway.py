"""USSD gateway formats. Each turns its own request into a `UssdRequest` and a `Reply` back into
its own response; the engine never sees a gateway's field names.

Africa's Talking (docs/reference-ussd.md): form-encoded POST with sessionId, serviceCode,
phoneNumber, networkCode and text (every input so far, joined by "*"); the answer is
text/plain starting "CON " (wait for input) or "END " (close).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from deni.entrypoints.ussd.render import Reply

SESSION_ID = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
FIELD_CHARS_MAX = 40
TEXT_CHARS_MAX = 2_000  # ~30 hops of long entries; anything longer is not a person typing


@dataclass(frozen=True, slots=True)
class UssdRequest:
    session_id: str
    phone: str  # as the gateway sent it; the engine normalises it
    service_code: str
    network_code: str
    text: str  # every entry of the session so far, joined by "*" ("" on the first hop)


class BadRequest(Exception):
    """The request is not one a gateway would send. Still answered with END, never an error."""


class Gateway(Protocol):
    name: str
    content_type: str

    def parse(self, form: Mapping[str, str]) -> UssdRequest: ...

    def render(self, reply: Reply) -> str: ...


class AfricasTalkingGateway:
    name = "africastalking"
    content_type = "text/plain; charset=utf-8"

    def parse(self, form: Mapping[str, str]) -> UssdRequest:
        session_id = form.get("sessionId", "")
        if not SESSION_ID.fullmatch(session_id):
            raise BadRequest("sessionId")
        fields = {}
        for name in ("phoneNumber", "serviceCode", "networkCode"):
            value = form.get(name, "")
            if len(value) > FIELD_CHARS_MAX or "\x00" in value:
                raise BadRequest(name)
            fields[name] = value.strip()
        text = form.get("text", "")
        if len(text) > TEXT_CHARS_MAX:
            raise BadRequest("text")
        return UssdRequest(
            session_id=session_id,
            phone=fields["phoneNumber"],
            service_code=fields["serviceCode"],
            network_code=fields["networkCode"],
            text=text,
        )

    def render(self, reply: Reply) -> str:
        return reply.wire
