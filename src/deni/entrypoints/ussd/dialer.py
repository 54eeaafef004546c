"""A feature phone in the terminal: dial *383# against a running server or in-process."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from deni.bootstrap import Deni
from deni.entrypoints.ussd.engine import UssdEngine
from deni.entrypoints.ussd.gateway import UssdRequest
from deni.entrypoints.ussd.render import CON, END, Reply

HOPS_MAX = 50  # a real network ends a session long before this
HTTP_TIMEOUT_S = 10.0
NETWORK_CODE = "63902"  # Safaricom

Transport = Callable[[UssdRequest], Reply]


def http_transport(
    base_url: str, *, token: str = "", client: httpx.Client | None = None
) -> Transport:
    """POST each hop to `base_url`/ussd (or /ussd/`token`), as Africa's Talking would."""
    http = client or httpx.Client(timeout=HTTP_TIMEOUT_S)
    endpoint = base_url.rstrip("/") + ("/ussd/" + token if token else "/ussd")

    def send(request: UssdRequest) -> Reply:
        form = {
            "sessionId": request.session_id,
            "serviceCode": request.service_code,
            "phoneNumber": request.phone,
            "networkCode": request.network_code,
            "text": request.text,
        }
        response = http.post(endpoint, data=form)
        body = response.text
        if response.status_code != 200 or not body.startswith((CON, END)):
            return Reply(True, f"(the server answered {response.status_code}: {body[:120]})")
        return Reply.from_wire(body)

    return send


def engine_transport(engine: UssdEngine) -> Transport:
    return engine.handle


def in_process_transport(deni: Deni) -> Transport:
    """Each hop straight to a USSD engine on `deni`, in this process: no server needed."""
    return engine_transport(UssdEngine(deni))


@dataclass
class Dialer:
    """One USSD session: keeps the text history the way the gateway does."""

    transport: Transport
    phone: str
    service_code: str
    session_id: str = field(default_factory=lambda: "DIAL_" + secrets.token_hex(8))
    entries: list[str] = field(default_factory=list)

    def start(self) -> Reply:
        assert not self.entries
        return self._send()

    def reply(self, entry: str) -> Reply:
        self.entries.append(entry)
        return self._send()

    def _send(self) -> Reply:
        request = UssdRequest(
            session_id=self.session_id,
            phone=self.phone,
            service_code=self.service_code,
            network_code=NETWORK_CODE,
            text="*".join(self.entries),
        )
        return self.transport(request)


def run(dialer: Dialer, *, ask: Callable[[str], str], show: Callable[[str], None]) -> Reply:
    """Show each screen and ask for the next entry until the session ends (or input does)."""
    reply = dialer.start()
    for _ in range(HOPS_MAX):
        show(reply.text)
        if reply.end:
            return reply
        try:
            entry = ask("> ")
        except EOFError:
            show("(hung up)")
            return reply
        reply = dialer.reply(entry)
    show("(session too long: hanging up)")
    return reply
