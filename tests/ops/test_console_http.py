"""The console's gates over HTTP: sign-in, every route for every role, CSRF, and the wall
between the console and the member API."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from deni.bootstrap import Deni
from deni.domain import totp
from deni.domain.operators import ROLE_PERMISSIONS, Role
from deni.entrypoints.ops import pages
from deni.entrypoints.ops.security import PUBLIC_ROUTES, ROUTE_PERMISSIONS, SESSION_COOKIE
from deni.services import limits, users
from tests.fakes import ManualClock
from tests.ops.conftest import PASSWORD, Staff, add_operator
from tests.support.builders import register

MakeStaff = Callable[[str, Role], Staff]


def concrete(path: str) -> str:
    return re.sub(r"\{[a-z_]+\}", "00000000-0000-0000-0000-000000000000", path)


def test_every_console_route_states_its_permission() -> None:
    declared = {
        (method, route.path)
        for route in pages.router.routes
        for method in getattr(route, "methods", set()) - {"HEAD"}
    }
    assert declared == set(ROUTE_PERMISSIONS) | PUBLIC_ROUTES


@pytest.mark.parametrize("route", sorted(ROUTE_PERMISSIONS))
def test_no_session_no_console(client: TestClient, route: tuple[str, str]) -> None:
    method, path = route
    answer = client.request(method, "/ops" + concrete(path), follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ops/login"


def test_a_members_token_does_not_open_the_console_nor_an_operators_cookie_the_api(
    deni: Deni, client: TestClient, staff: MakeStaff
) -> None:
    member = register(deni, name="Akinyi")
    token, _ = deni.tokens.issue(user_id=member.id, now=deni.clock.now())
    answer = client.get(
        "/ops/", headers={"Authorization": f"Bearer {token}"}, follow_redirects=False
    )
    assert answer.status_code == 303
    operator = staff("amina", Role.ADMIN)
    cookie = operator.client.cookies.get(SESSION_COOKIE)
    assert cookie
    client.cookies.set(SESSION_COOKIE, cookie)  # sent everywhere by this client, whatever the path
    assert client.get("/api/v1/me").status_code == 401
    assert operator.client.get("/api/v1/me").status_code == 401


@pytest.mark.parametrize("role", list(Role))
def test_each_route_is_open_to_exactly_the_roles_that_hold_its_permission(
    staff: MakeStaff, role: Role
) -> None:
    operator = staff(f"op-{role.value}", role)
    csrf = operator.csrf("/ops/proposals")
    for (method, path), permission in sorted(ROUTE_PERMISSIONS.items()):
        if path == "/logout":
            continue
        data = {"csrf": csrf} if method == "POST" else None
        answer = operator.client.request(
            method, "/ops" + concrete(path), data=data, follow_redirects=False
        )
        allowed = permission is None or permission in ROLE_PERMISSIONS[role]
        assert answer.status_code < 500, (role, method, path, answer.text[:300])
        if allowed:
            assert answer.status_code != 403, (role, method, path, answer.text[:300])
        else:
            assert answer.status_code == 403, (role, method, path)
            assert "not_permitted" in answer.text


def test_sign_in_refuses_a_wrong_code_and_a_replayed_one(
    deni: Deni, client: TestClient, clock: ManualClock
) -> None:
    new = add_operator(deni, "amina", Role.SUPPORT)

    def attempt(code: str) -> int:
        form = client.get("/ops/login").text
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', form).group(1)  # type: ignore[union-attr]
        fields = {"csrf": csrf, "username": "amina", "password": PASSWORD, "code": code}
        return client.post("/ops/login", data=fields, follow_redirects=False).status_code

    clock.advance(timedelta(seconds=totp.STEP_S))
    good = totp.code_at(new.totp_seed, clock.now())
    assert attempt(str((int(good) + 1) % 1_000_000).zfill(6)) == 401
    assert attempt(good) == 303
    client.cookies.clear()
    assert attempt(good) == 401  # the same code again


def test_forms_without_the_sessions_csrf_token_are_refused(deni: Deni, staff: MakeStaff) -> None:
    member = register(deni, name="Akinyi")
    users.set_support_lock(deni, phone=member.phone, locked=True)
    amina, baraka = staff("amina", Role.SUPPORT), staff("baraka", Role.SUPPORT)
    fields = {"kind": "unlock_member", "target": member.id, "reason": "seen ID at the shop"}
    for csrf in ("", "0" * 64, baraka.csrf()):
        answer = amina.client.post(
            "/ops/proposals", data={**fields, "csrf": csrf}, follow_redirects=False
        )
        assert answer.status_code == 403
        assert "csrf_failed" in answer.text
    foreign = amina.client.post(
        "/ops/proposals",
        data={**fields, "csrf": amina.csrf()},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert foreign.status_code == 403
    assert amina.post("/ops/proposals", fields).status_code == 303  # type: ignore[attr-defined]


def test_four_eyes_over_http(deni: Deni, staff: MakeStaff) -> None:
    member = register(deni, name="Akinyi")
    users.set_support_lock(deni, phone=member.phone, locked=True)
    amina, baraka = staff("amina", Role.SUPPORT), staff("baraka", Role.SUPPORT)
    amina.post(
        "/ops/proposals",
        {"kind": "unlock_member", "target": member.id, "reason": "seen ID at the shop"},
    )
    page = amina.client.get("/ops/proposals").text
    proposal_id = re.search(r'id="proposal-([0-9a-f-]+)"', page).group(1)  # type: ignore[union-attr]
    assert f"/ops/proposals/{proposal_id}/approve" not in page  # no approve button for oneself
    own = amina.post(f"/ops/proposals/{proposal_id}/approve")
    assert own.status_code == 403  # type: ignore[attr-defined]
    assert "four_eyes" in own.text  # type: ignore[attr-defined]
    assert baraka.post(f"/ops/proposals/{proposal_id}/approve").status_code == 303  # type: ignore[attr-defined]
    with deni.uow.read_only() as uow:
        assert uow.users.get(member.id).support_locked_at is None  # type: ignore[union-attr]


def test_sign_out_ends_the_session(staff: MakeStaff) -> None:
    amina = staff("amina", Role.SUPPORT)
    assert amina.client.get("/ops/", follow_redirects=False).status_code == 200
    assert amina.post("/ops/logout").status_code == 303  # type: ignore[attr-defined]
    assert amina.client.get("/ops/", follow_redirects=False).status_code == 303


def test_console_pages_carry_headers_that_keep_them_private(staff: MakeStaff) -> None:
    answer = staff("amina", Role.SUPPORT).client.get("/ops/")
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]


def test_console_sign_ins_from_one_address_are_capped(
    deni: Deni, client: TestClient, real_limits: None
) -> None:
    add_operator(deni, "amina", Role.SUPPORT)
    statuses = []
    for _ in range(limits.OPS_SIGN_IN_PER_SOURCE_HOURLY.hits_max + 1):
        form = client.get("/ops/login").text
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', form).group(1)  # type: ignore[union-attr]
        fields = {
            "csrf": csrf,
            "username": "amina",
            "password": "wrong password!",
            "code": "123456",
        }
        statuses.append(client.post("/ops/login", data=fields, follow_redirects=False).status_code)
    assert set(statuses[:-1]) == {401}
    assert statuses[-1] == 429


def test_with_an_ops_host_the_console_answers_on_that_host_only(
    deni: Deni, client: TestClient
) -> None:
    deni.settings.__dict__["ops_host"] = "ops.deni.example"
    assert client.get("/ops/login").status_code == 404  # the members' host: testserver
    on_its_host = client.get("/ops/login", headers={"Host": "ops.deni.example"})
    assert on_its_host.status_code == 200
    assert client.get("/api/v1/me").status_code == 401  # the API itself is untouched
