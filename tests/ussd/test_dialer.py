"""`deni dial`: a USSD session in the terminal, in-process or against a running server."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient
from tests.support.builders import next_phone
from typer.testing import CliRunner

from deni.bootstrap import Deni
from deni.entrypoints.cli import app
from deni.entrypoints.ussd.dialer import Dialer, engine_transport, http_transport, run
from deni.entrypoints.ussd.engine import UssdEngine

runner = CliRunner()


def test_a_scripted_session_in_process(deni: Deni) -> None:
    typed = iter(["1", "Terminal Tess", "1357", "1357"])
    screens: list[str] = []

    def ask(prompt: str) -> str:
        entry = next(typed, None)
        if entry is None:
            raise EOFError
        return entry

    dialer = Dialer(engine_transport(UssdEngine(deni)), "+254711222333", "*383#")
    last = run(dialer, ask=ask, show=screens.append)
    assert "Welcome to Deni" in screens[0]
    assert "you are registered" in last.text
    assert screens[-1] == "(hung up)"


def test_the_http_transport_speaks_the_gateway_format(client: TestClient) -> None:
    transport = http_transport("http://testserver", client=client)  # type: ignore[arg-type]
    dialer = Dialer(transport, "+254711222444", "*383#")
    assert "Welcome to Deni" in dialer.start().text
    assert "full name" in dialer.reply("1").text


def test_the_http_transport_reports_a_broken_server() -> None:
    broken = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(502, text="no")))
    reply = Dialer(http_transport("http://x", client=broken), "+254711222555", "*383#").start()
    assert reply.end
    assert "502" in reply.text


def test_deni_dial_in_process(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DENI_DATABASE_URL", database_url)
    monkeypatch.setenv("DENI_ENVIRONMENT", "development")
    monkeypatch.setenv("DENI_PIN_HASH_MEMORY_KIB", "8192")
    monkeypatch.setenv("DENI_PIN_HASH_TIME_COST", "1")
    result = runner.invoke(
        app, ["dial", "*383#", "--phone", next_phone()], input="2\nJuma Hamisi\n2468\n2468\n"
    )
    assert result.exit_code == 0, result.output
    assert "Karibu Deni" in result.output
    assert "umesajiliwa" in result.output
    result = runner.invoke(app, ["dial", "*383#", "--phone", "12345"])
    assert result.exit_code == 2
