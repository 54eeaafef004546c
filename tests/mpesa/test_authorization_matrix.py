"""The authorization matrix: every API route, three members, each other's things.

Amina borrows from Baraka; Chebet knows neither. Each has a wallet with money, notifications, an
M-PESA request, a sync device, and Amina has a dead letter and a manual sync conflict. For every
route the server has, the table below says how a member could reach someone else's things
through it, and the test tries exactly that over real HTTP (M-PESA on, against the sandbox):

- a route with someone else's id in its path answers 403 or 404 and writes nothing;
- a route that reads "my" things shows Chebet nothing of Amina's or Baraka's;
- a route that writes "my" things cannot be pointed at another member (no field names one);
- a route that names things in its body (notification ids, sync mutations) ignores or refuses
  the ones that are not the caller's, and writes nothing of theirs.

A route missing from the table fails the test, so a new route must say how it is protected.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from deni.domain.users import User
from deni.entrypoints.api.app import API_PREFIX, create_app
from tests.support.api import assert_nothing_written, db_state
from tests.support.authenticator import SoftAuthenticator
from tests.support.mpesa import World

PIN = "3591"
SYNC_SCHEMA = 1
# Tables a refused request may legitimately write: none. Reads and refusals leave every row.
IGNORED_TABLES: tuple[str, ...] = ()


@dataclass
class Member:
    user: User
    client_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class Town:
    world: World
    amina: Member  # borrower
    baraka: Member  # lender
    chebet: Member  # a stranger to both
    active_loan: str
    requested_loan: str
    mpesa_request: str
    dead_letter: str
    conflict: str
    amina_notifications: list[str]

    def call(
        self, who: Member, method: str, path: str, body: Any = None, params: Any = None
    ) -> httpx.Response:
        headers = self.world.headers(who.user)  # a bearer token and a fresh Idempotency-Key
        return self.world.http.request(
            method, API_PREFIX + path, json=body, params=params, headers=headers
        )

    def secrets_of_others(self) -> list[str]:
        """Strings that must never reach Chebet: Amina's and Baraka's ids, numbers, names."""
        found = [self.active_loan, self.requested_loan, self.mpesa_request]
        found += [self.dead_letter, self.conflict, *self.amina_notifications]
        for member in (self.amina, self.baraka):
            found += [member.user.id, member.user.phone, member.user.name, member.client_id]
        return found


def _push(town: Town, who: Member, mutations: list[dict[str, Any]]) -> dict[str, Any]:
    body = {"client_id": who.client_id, "schema_version": SYNC_SCHEMA, "mutations": mutations}
    response = town.call(who, "POST", "/sync/push", body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _loan(town: Town, who: Member, lender: Member) -> str:
    body = {"lender_phone": lender.user.phone, "principal_cents": 100_000, "term_days": 7}
    response = town.call(who, "POST", "/loans", body)
    assert response.status_code == 201, response.text
    loan_id: str = response.json()["id"]
    return loan_id


@pytest.fixture
def town(world: World) -> Town:
    amina = Member(world.user("Amina Otieno", pin=PIN))
    baraka = Member(world.user("Baraka Mwangi", pin=PIN))
    chebet = Member(world.user("Chebet Kiprop", pin=PIN))
    for member in (amina, baraka, chebet):
        world.fund(member.user, 500_000)
    town = Town(world, amina, baraka, chebet, "", "", "", "", "", [])
    town.active_loan = _loan(town, amina, baraka)
    approved = town.call(baraka, "POST", f"/loans/{town.active_loan}/approve", {"pin": PIN})
    assert approved.status_code == 200, approved.text
    town.requested_loan = _loan(town, amina, baraka)
    top_up = town.call(amina, "POST", "/mpesa/top-ups", {"amount_cents": 10_000})
    assert top_up.status_code == 202, top_up.text
    town.mpesa_request = top_up.json()["id"]
    town.dead_letter = _dead_letter(town)
    town.conflict = _conflict(town)
    listed = town.call(amina, "GET", "/notifications")
    town.amina_notifications = [n["id"] for n in listed.json()["notifications"]]
    assert town.amina_notifications
    return town


def _dead_letter(town: Town) -> str:
    answer = _push(town, town.amina, [{"id": 1, "name": "no_such_mutation", "args": {}}])
    dead_letter_id: str = answer["results"][0]["dead_letter_id"]
    assert dead_letter_id
    return dead_letter_id


def _conflict(town: Town) -> str:
    """Two of Amina's devices edit the same request from the same version."""
    tablet = Member(town.amina.user)
    pulled = town.call(
        tablet, "GET", "/sync/pull", params={"client_id": tablet.client_id, "schema_version": 1}
    ).json()
    seen = [c["data"] for c in pulled["changes"] if c["id"] == town.requested_loan]
    edit = {"loan_id": town.requested_loan, "base_version": seen[0]["version"]}
    first = [{"id": 2, "name": "edit_loan_request", "args": {**edit, "principal_cents": 120_000}}]
    assert _push(town, town.amina, first)["results"][0]["status"] == "applied"
    second = [{"id": 1, "name": "edit_loan_request", "args": {**edit, "principal_cents": 90_000}}]
    result = _push(town, tablet, second)["results"][0]
    assert result["resolution"] == "manual", result
    conflict_id: str = result["conflict_id"]
    return conflict_id


# --- the kinds of probe ------------------------------------------------------------------------

Probe = Callable[[Town, str, str], None]


def foreign_path(make_path: Callable[[Town], list[str]], body: Any = None) -> Probe:
    """The path names another member's thing: Chebet (and, for a loan, nobody but its parties)
    gets 403 or 404, and nothing is written."""

    def probe(town: Town, method: str, _template: str) -> None:
        before = db_state(town.world.deni, ignore=IGNORED_TABLES)
        for path in make_path(town):
            response = town.call(town.chebet, method, path, body)
            assert response.status_code in (403, 404), (path, response.text)
            _shows_nothing_of_others(town, response)
        assert_nothing_written(town.world.deni, before, ignore=IGNORED_TABLES)

    return probe


def own_read(params: dict[str, Any] | None = None) -> Probe:
    """A read of "my" things: Chebet sees nothing of Amina's or Baraka's."""

    def probe(town: Town, method: str, template: str) -> None:
        query = {"client_id": town.chebet.client_id, **(params or {})}
        response = town.call(town.chebet, method, template, params=query)
        assert response.status_code == 200, (template, response.text)
        _shows_nothing_of_others(town, response)

    return probe


def own_write(body: Callable[[Town], dict[str, Any]]) -> Probe:
    """A command on "my" things: a valid body that also tries to name another member is refused
    whole for that field (the schemas forbid unknown fields), so the subject can only be the
    signed-in member."""

    def probe(town: Town, method: str, template: str) -> None:
        before = db_state(town.world.deni, ignore=IGNORED_TABLES)
        for smuggled in ("user_id", "borrower_id", "lender_id", "owner_id", "phone"):
            attempt = {**body(town), smuggled: town.amina.user.id}
            response = town.call(town.chebet, method, template, attempt)
            assert response.status_code == 422, (template, smuggled, response.text)
            error = response.json()["error"]
            assert error["code"] == "validation_failed"
            assert error["message"].startswith(f"{smuggled}:"), error
        assert_nothing_written(town.world.deni, before, ignore=IGNORED_TABLES)

    return probe


def own_action(reason: str) -> Probe:
    """A command with no body and no id in its path: there is nothing with which to point it
    at another member. The document shows as much, and Chebet's call leaves the others be."""
    assert reason

    def probe(town: Town, method: str, template: str) -> None:
        operation = _openapi(town)["paths"][API_PREFIX + template][method.lower()]
        assert "requestBody" not in operation, template
        assert all(p["in"] == "header" for p in operation.get("parameters", [])), template
        response = town.call(town.chebet, method, template)
        assert response.status_code < 500, response.text
        _shows_nothing_of_others(town, response)
        for member in (town.amina, town.baraka):
            assert town.call(member, "GET", "/me").status_code == 200

    return probe


def public(reason: str) -> Probe:
    """No member's things behind it: signing up, signing in, a PIN reset by SMS."""
    assert reason

    def probe(town: Town, method: str, template: str) -> None:
        return None

    return probe


def _shows_nothing_of_others(town: Town, response: httpx.Response) -> None:
    text = response.text
    leaked = [secret for secret in town.secrets_of_others() if secret in text]
    assert not leaked, f"{response.request.url} showed {leaked}"


def _mark_others_read(town: Town, method: str, template: str) -> None:
    response = town.call(town.chebet, method, template, {"ids": town.amina_notifications})
    assert response.status_code == 200, response.text
    assert response.json()["marked"] == 0
    unread = town.call(town.amina, "GET", "/notifications", params={"unread_only": True})
    still = {n["id"] for n in unread.json()["notifications"]}
    assert set(town.amina_notifications) <= still


def _mark_all_read_leaves_others(town: Town, method: str, template: str) -> None:
    """ "Mark all read" names nothing: only the signed-in member's are marked."""
    response = town.call(town.chebet, method, template)
    assert response.status_code == 200, response.text
    unread = town.call(town.amina, "GET", "/notifications", params={"unread_only": True})
    still = {n["id"] for n in unread.json()["notifications"]}
    assert set(town.amina_notifications) <= still


def _push_on_others_things(town: Town, method: str, template: str) -> None:
    """Chebet's device pushes commands on Amina's and Baraka's loan and conflict."""
    deni = town.world.deni
    loan = town.active_loan
    mutations = [
        ("approve_loan", {"loan_id": town.requested_loan, "pin": PIN}),
        ("decline_loan", {"loan_id": town.requested_loan}),
        ("cancel_loan", {"loan_id": town.requested_loan}),
        ("repay_loan", {"loan_id": loan, "amount_cents": 1_000, "pin": PIN}),
        ("repay_by_mpesa", {"loan_id": loan, "amount_cents": 1_000}),
        ("edit_loan_request", {"loan_id": town.requested_loan, "principal_cents": 50_000}),
        ("resolve_conflict", {"conflict_id": town.conflict, "choice": "client"}),
        ("mark_notification_read", {"notification_ids": town.amina_notifications}),
    ]
    before = {
        name: rows
        for name, rows in db_state(deni).items()
        if name in ("loans", "postings", "entries", "sync_conflicts", "notifications")
    }
    for number, (name, args) in enumerate(mutations, start=1):
        answer = _push(town, town.chebet, [{"id": number, "name": name, "args": args}])
        result = answer["results"][0]
        assert result["status"] != "applied" or name == "mark_notification_read", result
        _shows_nothing_of_others(
            town,
            town.call(
                town.chebet, "GET", "/sync/status", params={"client_id": town.chebet.client_id}
            ),
        )
    after = db_state(deni)
    for name, rows in before.items():
        if name == "notifications":  # Chebet's own refusals are notified to Chebet
            theirs = [r for r in after[name] if town.chebet.user.id not in r]
            assert theirs == [r for r in rows if town.chebet.user.id not in r]
        else:
            assert after[name] == rows, name


def _remove_others_passkey(town: Town, method: str, template: str) -> None:
    """Amina adds a passkey; Chebet cannot remove it by its id."""
    phone = SoftAuthenticator(origin=town.world.deni.relying_party.origin)
    ceremony = town.call(town.amina, "POST", "/me/passkeys/options", {"pin": PIN}).json()
    answer = {
        "challenge_id": ceremony["challenge_id"],
        "credential": phone.create(ceremony["options"]),
    }
    added = town.call(town.amina, "POST", "/me/passkeys", answer)
    assert added.status_code == 201, added.text
    passkey_id = added.json()["id"]
    foreign_path(lambda _town: [template.replace("{passkey_id}", passkey_id)])(
        town, method, template
    )
    listed = town.call(town.amina, "GET", "/me/passkeys").json()["passkeys"]
    assert [p["id"] for p in listed] == [passkey_id]


def _loan_paths(suffix: str) -> Callable[[Town], list[str]]:
    return lambda town: [
        f"/loans/{town.active_loan}{suffix}",
        f"/loans/{town.requested_loan}{suffix}",
    ]


# Every route of the API and how it keeps one member out of another's things.
MATRIX: dict[tuple[str, str], Probe] = {
    ("POST", "/auth/register/code"): public("the code goes by SMS to the number's holder"),
    ("POST", "/auth/register"): public("creates a new member, with the code from that SMS"),
    ("POST", "/auth/logout"): public("a refresh token is its own proof"),
    ("POST", "/auth/login"): public("proves a number and a PIN"),
    ("POST", "/auth/refresh"): public("a refresh token is its own proof"),
    ("POST", "/auth/pin-reset"): public("the code goes by SMS to the number's owner"),
    ("POST", "/auth/pin-reset/confirm"): public("needs the code from that SMS"),
    ("POST", "/auth/passkey/options"): public("a sign-in challenge, bound to nobody"),
    ("POST", "/auth/passkey"): public("a passkey's signature is its own proof"),
    ("GET", "/me/passkeys"): own_read(),
    ("POST", "/me/passkeys/options"): own_write(lambda _town: {"pin": PIN}),
    ("POST", "/me/passkeys"): own_write(lambda _town: {"challenge_id": "x", "credential": {}}),
    ("POST", "/me/passkeys/approval"): own_write(
        lambda _town: {"action": "withdraw", "amount_cents": 10_000}
    ),
    ("DELETE", "/me/passkeys/{passkey_id}"): _remove_others_passkey,
    ("GET", "/me"): own_read(),
    ("PATCH", "/me"): own_write(lambda _town: {"name": "Chebet Renamed"}),
    ("POST", "/me/phone/code"): own_action("a code to the signed-in member's own number"),
    ("POST", "/me/phone/confirm"): own_write(lambda _town: {"code": "123456"}),
    ("POST", "/me/sign-out-everywhere"): own_action("ends the signed-in member's sessions"),
    ("POST", "/me/pin"): own_write(lambda _town: {"old_pin": PIN, "new_pin": "4381"}),
    ("POST", "/me/close"): own_write(lambda _town: {"pin": PIN}),
    ("GET", "/me/export"): own_read(),
    ("GET", "/me/book"): own_read(),
    ("GET", "/me/history"): own_read(),
    ("GET", "/wallet"): own_read(),
    ("GET", "/wallet/statement"): own_read(),
    ("POST", "/loans/quote"): own_write(lambda _town: {"principal_cents": 100_000, "term_days": 7}),
    ("POST", "/loans"): own_write(
        lambda town: {
            "lender_phone": town.amina.user.phone,
            "principal_cents": 100_000,
            "term_days": 7,
        }
    ),
    ("GET", "/loans"): own_read(),
    ("GET", "/loans/{loan_id}"): foreign_path(_loan_paths("")),
    ("POST", "/loans/{loan_id}/approve"): foreign_path(_loan_paths("/approve"), {"pin": PIN}),
    ("POST", "/loans/{loan_id}/decline"): foreign_path(_loan_paths("/decline"), {}),
    ("POST", "/loans/{loan_id}/cancel"): foreign_path(_loan_paths("/cancel"), {}),
    ("POST", "/loans/{loan_id}/repay"): foreign_path(
        _loan_paths("/repay"), {"amount_cents": 1_000, "pin": PIN}
    ),
    ("POST", "/loans/{loan_id}/remind"): foreign_path(_loan_paths("/remind"), {}),
    ("POST", "/loans/{loan_id}/write-off"): foreign_path(_loan_paths("/write-off"), {"pin": PIN}),
    ("POST", "/loans/{loan_id}/mpesa-repayments"): foreign_path(
        _loan_paths("/mpesa-repayments"), {"amount_cents": 1_000}
    ),
    ("GET", "/push/key"): public("the VAPID public key, the same for every browser"),
    ("GET", "/me/push"): own_read(),
    ("PUT", "/me/push/subscription"): own_write(
        lambda _town: {
            "endpoint": "https://fcm.googleapis.com/fcm/send/chebet-browser",
            "keys": {
                "p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA",
                "auth": "tBHItJI5svbpez7KI4CCXg",
            },
        }
    ),
    ("POST", "/me/push/unsubscribe"): own_write(
        lambda _town: {"endpoint": "https://fcm.googleapis.com/fcm/send/chebet-browser"}
    ),
    ("PUT", "/me/push/kinds"): own_write(lambda _town: {"kinds": ["loan_requested"]}),
    ("GET", "/notifications"): own_read(),
    ("POST", "/notifications/read"): _mark_others_read,
    ("POST", "/notifications/read-all"): _mark_all_read_leaves_others,
    ("POST", "/mpesa/top-ups"): own_write(lambda _town: {"amount_cents": 10_000}),
    ("POST", "/mpesa/withdrawals"): own_write(lambda _town: {"amount_cents": 10_000, "pin": PIN}),
    ("GET", "/mpesa/requests"): own_read(),
    ("GET", "/mpesa/preferences"): own_read(),
    ("PUT", "/mpesa/preferences"): own_write(lambda _town: {"auto_payout": True, "pin": PIN}),
    ("POST", "/sync/push"): _push_on_others_things,
    ("GET", "/sync/pull"): own_read({"schema_version": SYNC_SCHEMA}),
    ("GET", "/sync/status"): own_read(),
    ("GET", "/sync/dead-letters"): own_read({"state": "all"}),
    ("POST", "/sync/dead-letters/{dead_letter_id}/retry"): foreign_path(
        lambda town: [f"/sync/dead-letters/{town.dead_letter}/retry"], {}
    ),
    ("POST", "/sync/dead-letters/{dead_letter_id}/discard"): foreign_path(
        lambda town: [f"/sync/dead-letters/{town.dead_letter}/discard"], {}
    ),
    ("POST", "/sync/conflicts/{conflict_id}/resolve"): foreign_path(
        lambda town: [f"/sync/conflicts/{town.conflict}/resolve"], {"choice": "client"}
    ),
}


def _openapi(town: Town) -> dict[str, Any]:
    document: dict[str, Any] = create_app(town.world.deni).openapi()
    return document


def _api_routes(town: Town) -> set[tuple[str, str]]:
    """Every (method, path) of the API, from the app's own route table (its OpenAPI paths)."""
    paths = _openapi(town)["paths"]
    return {
        (method.upper(), path.removeprefix(API_PREFIX))
        for path, operations in paths.items()
        if path.startswith(API_PREFIX)
        for method in operations
    }


def test_every_route_is_in_the_matrix(town: Town) -> None:
    routes = _api_routes(town)
    assert routes - MATRIX.keys() == set(), "routes nobody has said how they are protected"
    assert MATRIX.keys() - routes == set(), "the matrix names routes the server no longer has"


@pytest.mark.parametrize(("method", "template"), sorted(MATRIX))
def test_no_member_reaches_another_members_things(town: Town, method: str, template: str) -> None:
    MATRIX[(method, template)](town, method, template)
    # Amina and Baraka still see their own things: the probes changed nothing of theirs.
    loan = town.call(town.amina, "GET", f"/loans/{town.active_loan}")
    assert loan.status_code == 200
    assert loan.json()["state"] == "active"
    town.world.assert_conserved()
