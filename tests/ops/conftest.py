"""The console over HTTP: operators of each role, signed in through the real sign-in form."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from deni.bootstrap import Deni
from deni.domain import totp
from deni.domain.operators import Role
from deni.entrypoints.api.app import create_app
from deni.services.ops import operators
from tests.fakes import ManualClock

PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


@dataclass
class Staff:
    """An operator signed in on a client of their own (cookies are per client)."""

    username: str
    role: Role
    client: TestClient

    def csrf(self, path: str = "/ops/proposals") -> str:
        found = _CSRF.search(self.client.get(path).text)
        assert found is not None, f"no CSRF token on {path}"
        return found.group(1)

    def post(self, path: str, data: dict[str, str] | None = None, **kwargs: object) -> object:
        fields = {"csrf": self.csrf(), **(data or {})}
        return self.client.post(path, data=fields, follow_redirects=False, **kwargs)  # type: ignore[arg-type]


def add_operator(deni: Deni, username: str, role: Role) -> operators.NewOperator:
    return operators.add_operator(
        deni, username=username, name=username.title(), role=role, password=PASSWORD
    )


def sign_in(client: TestClient, new: operators.NewOperator, clock: ManualClock) -> None:
    clock.advance(timedelta(seconds=totp.STEP_S))  # a code of its own step each time
    form = client.get("/ops/login").text
    found = _CSRF.search(form)
    assert found is not None
    answer = client.post(
        "/ops/login",
        data={
            "csrf": found.group(1),
            "username": new.operator.username,
            "password": PASSWORD,
            "code": totp.code_at(new.totp_seed, clock.now()),
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/ops/"


@pytest.fixture
def staff(deni: Deni, clock: ManualClock) -> object:
    """`staff("amina", Role.SUPPORT)`: a new operator, signed in on a client of their own."""
    opened: list[TestClient] = []

    def make(username: str, role: Role) -> Staff:
        new = add_operator(deni, username, role)
        client = TestClient(create_app(deni), raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        sign_in(client, new, clock)
        return Staff(username, role, client)

    yield make
    for client in opened:
        client.__exit__(None, None, None)
