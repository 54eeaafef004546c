"""Every kind of bad input the issue lists gets a clear 4xx with a stable code, and writes nothing.

No input at all may produce a 500: the last tests throw garbage at every POST endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from tests.support.api import (
    DbState,
    approve,
    assert_error,
    assert_nothing_written,
    db_state,
    loan_body,
    request_loan,
)
from tests.support.builders import ApiUser, api_user, fund, key

from deni.bootstrap import Deni

LOANS = "/api/v1/loans"
UNKNOWN_LOAN = "6f1d9a52-2b8e-4c1e-9a57-1c0f7e1b2d3a"


@dataclass
class World:
    lender: ApiUser
    borrower: ApiUser
    stranger: ApiUser
    requested: str  # a loan id, state requested
    active: str  # a loan id, state active
    before: DbState


@pytest.fixture
def world(client: TestClient, deni: Deni) -> World:
    lender = api_user(client, deni, name="Lender")
    borrower = api_user(client, deni, name="Borrower")
    stranger = api_user(client, deni, name="Stranger")
    fund(deni, lender.user, 500_000)
    fund(deni, borrower.user, 50_000)
    fund(deni, stranger.user, 50_000)
    active = request_loan(client, borrower, lender)["id"]
    approve(client, lender, active)
    requested = request_loan(client, borrower, lender)["id"]
    return World(lender, borrower, stranger, requested, active, db_state(deni))


# --- amounts ----------------------------------------------------------------------------------

AMOUNT_CASES: list[tuple[object, str]] = [
    (0, "invalid_amount"),
    (-100_000, "invalid_amount"),
    (999, "invalid_amount"),
    (25_000_001, "invalid_amount"),
    (10**20, "invalid_amount"),
    (10**400, "invalid_amount"),
    (10.5, "validation_failed"),
    (100_000.0, "validation_failed"),
    ("100000", "validation_failed"),
    (True, "validation_failed"),
    (None, "validation_failed"),
    ([100_000], "validation_failed"),
]


def test_a_bad_principal_is_refused(
    client: TestClient, deni: Deni, world: World, subtests: pytest.Subtests
) -> None:
    for amount, code in AMOUNT_CASES:
        with subtests.test(principal_cents=amount):
            body = loan_body(world.lender, principal_cents=amount)
            requested = client.post(LOANS, json=body, headers=world.borrower.with_key())
            assert_error(requested, 422, code)
            del body["lender_phone"]
            quoted = client.post(f"{LOANS}/quote", json=body, headers=world.borrower.headers)
            assert_error(quoted, 422, code)
            assert_nothing_written(deni, world.before)


def test_a_bad_fee_or_penalty_is_refused(
    client: TestClient, deni: Deni, world: World, subtests: pytest.Subtests
) -> None:
    cases: list[tuple[dict[str, object], str]] = [
        ({"fee_cents": -1}, "invalid_amount"),
        ({"fee_cents": 100_001}, "invalid_amount"),  # a fee above the principal
        ({"fee_cents": 0.5}, "validation_failed"),
        ({"fee_cents": "5"}, "validation_failed"),
        ({"penalty_daily_cents": -1}, "invalid_amount"),
        ({"penalty_daily_cents": 100_001}, "invalid_amount"),
        ({"penalty_daily_cents": 10**20}, "invalid_amount"),
        ({"penalty_daily_cents": 1.5}, "validation_failed"),
    ]
    for overrides, code in cases:
        with subtests.test(**overrides):
            body = loan_body(world.lender, **overrides)
            response = client.post(LOANS, json=body, headers=world.borrower.with_key())
            assert_error(response, 422, code)
            assert_nothing_written(deni, world.before)


def test_a_bad_repayment_amount_is_refused(
    client: TestClient, deni: Deni, world: World, subtests: pytest.Subtests
) -> None:
    cases: list[tuple[object, str]] = [
        (0, "invalid_amount"),
        (-5_000, "invalid_amount"),
        (10**20, "invalid_amount"),
        (10.5, "validation_failed"),
        ("100", "validation_failed"),
        (None, "validation_failed"),
        (False, "validation_failed"),
        ({"cents": 100}, "validation_failed"),
    ]
    for amount, code in cases:
        with subtests.test(amount_cents=amount):
            response = client.post(
                f"{LOANS}/{world.active}/repay",
                json={"amount_cents": amount, "pin": world.borrower.pin},
                headers=world.borrower.with_key(),
            )
            assert_error(response, 422, code)
            assert_nothing_written(deni, world.before)


# --- due dates --------------------------------------------------------------------------------


def test_a_bad_due_date_is_refused(
    client: TestClient, deni: Deni, world: World, subtests: pytest.Subtests
) -> None:
    cases: list[tuple[dict[str, object], str]] = [
        ({"due_date": "2026-11-25"}, "invalid_due_date"),  # yesterday
        ({"due_date": "2020-01-01"}, "invalid_due_date"),
        ({"due_date": "2026-11-26"}, "invalid_due_date"),  # today
        ({"due_date": "2027-11-27"}, "invalid_due_date"),  # 366 days on
        ({"due_date": "9999-12-31"}, "invalid_due_date"),
        ({"due_date": "2026-12-03", "term_days": 7}, "invalid_due_date"),  # both
        ({}, "invalid_due_date"),  # neither
        ({"term_days": 0}, "invalid_due_date"),
        ({"term_days": -7}, "invalid_due_date"),
        ({"term_days": 366}, "invalid_due_date"),
        ({"term_days": 10**20}, "invalid_due_date"),
        ({"term_days": 7.5}, "validation_failed"),
        ({"term_days": "7"}, "validation_failed"),
        ({"due_date": "2026-02-30"}, "validation_failed"),
        ({"due_date": "tomorrow"}, "validation_failed"),
    ]
    for dates, code in cases:
        with subtests.test(**dates):
            body = loan_body(world.lender)
            del body["term_days"]
            body.update(dates)
            requested = client.post(LOANS, json=body, headers=world.borrower.with_key())
            assert_error(requested, 422, code)
            del body["lender_phone"]
            quoted = client.post(f"{LOANS}/quote", json=body, headers=world.borrower.headers)
            assert_error(quoted, 422, code)
            assert_nothing_written(deni, world.before)


def test_the_limits_are_inclusive(client: TestClient, world: World) -> None:
    limits: list[dict[str, object]] = [
        {"due_date": "2026-11-27"},
        {"due_date": "2027-11-26"},
        {"term_days": 1},
        {"term_days": 365},
        {"principal_cents": 1_000},  # KES 10
        {"principal_cents": 25_000_000},  # KES 250,000
        {"fee_cents": 100_000, "penalty_daily_cents": 100_000},  # both as large as the principal
    ]
    for limit in limits:
        body = {"principal_cents": 100_000, "term_days": 7, **limit}
        if "due_date" in limit:
            del body["term_days"]
        quoted = client.post(f"{LOANS}/quote", json=body, headers=world.borrower.headers)
        assert quoted.status_code == 200, (limit, quoted.text)


# --- who lends --------------------------------------------------------------------------------


def test_lending_to_yourself_is_refused_in_any_number_format(
    client: TestClient, deni: Deni, world: World
) -> None:
    phone = world.borrower.user.phone  # 2547XXXXXXXX
    for written in (phone, "+" + phone, "0" + phone[3:], f"0{phone[3:6]} {phone[6:9]} {phone[9:]}"):
        body = loan_body(world.borrower, lender_phone=written)
        response = client.post(LOANS, json=body, headers=world.borrower.with_key())
        assert_error(response, 422, "self_lending")
    assert_nothing_written(deni, world.before)


def test_an_unknown_lender_is_refused(client: TestClient, deni: Deni, world: World) -> None:
    body = loan_body(world.lender, lender_phone="0799 999 999")
    response = client.post(LOANS, json=body, headers=world.borrower.with_key())
    assert_error(response, 404, "user_not_found")
    assert_nothing_written(deni, world.before)


def test_a_malformed_or_foreign_lender_number_is_refused(
    client: TestClient, deni: Deni, world: World, subtests: pytest.Subtests
) -> None:
    for phone in ("+255712345678", "+447911123456", "0202345678", "12345", "call me", "", "0" * 40):
        with subtests.test(lender_phone=phone):
            body = loan_body(world.lender, lender_phone=phone)
            response = client.post(LOANS, json=body, headers=world.borrower.with_key())
            assert_error(response, 422, "invalid_phone_number")
            assert_nothing_written(deni, world.before)


# --- someone else's loan ----------------------------------------------------------------------

LoanAction = tuple[str, str, dict[str, Any] | None]  # (method, path suffix, body)


def _actions(pin: str) -> list[LoanAction]:
    return [
        ("GET", "", None),
        ("POST", "/approve", {"pin": pin}),
        ("POST", "/decline", None),
        ("POST", "/cancel", None),
        ("POST", "/repay", {"amount_cents": 1_000, "pin": pin}),
        ("POST", "/write-off", {"pin": pin}),
        ("POST", "/remind", None),
    ]


def _act(client: TestClient, who: ApiUser, loan_id: str, action: LoanAction) -> httpx.Response:
    method, suffix, body = action
    url = f"{LOANS}/{loan_id}{suffix}"
    if method == "GET":
        return client.get(url, headers=who.headers)
    return client.post(url, json=body, headers=who.with_key())


def test_a_stranger_cannot_see_or_touch_a_loan(
    client: TestClient, deni: Deni, world: World, subtests: pytest.Subtests
) -> None:
    # The stranger even gives their own right PIN: still nothing, and no attempt is counted.
    for loan_id in (world.requested, world.active):
        for action in _actions(world.stranger.pin):
            with subtests.test(loan=loan_id, action=action[1]):
                response = _act(client, world.stranger, loan_id, action)
                assert_error(response, 404, "loan_not_found")
    assert_nothing_written(deni, world.before)
    assert client.get(LOANS, headers=world.stranger.headers).json()["loans"] == []


def test_an_unknown_loan_id_is_not_found(
    client: TestClient, deni: Deni, world: World, subtests: pytest.Subtests
) -> None:
    for loan_id in (UNKNOWN_LOAN, "nope", "x" * 300, "DN" + "A" * 6, "%00"):
        for action in _actions(world.lender.pin):
            with subtests.test(loan=loan_id[:20], action=action[1]):
                response = _act(client, world.lender, loan_id, action)
                assert_error(response, 404, "loan_not_found")
    assert_nothing_written(deni, world.before)


def test_an_unknown_loan_id_still_needs_a_login_first(client: TestClient, world: World) -> None:
    for loan_id in (UNKNOWN_LOAN, "%00", world.active):
        assert_error(client.get(f"{LOANS}/{loan_id}"), 401, "unauthorized")
        assert_error(client.post(f"{LOANS}/{loan_id}/cancel", headers=key()), 401, "unauthorized")


def test_the_wrong_party_is_forbidden(
    client: TestClient, deni: Deni, world: World, subtests: pytest.Subtests
) -> None:
    cases: list[tuple[ApiUser, str, dict[str, Any] | None, str]] = [
        (world.borrower, "/approve", {"pin": world.borrower.pin}, "not_the_lender"),
        (world.borrower, "/decline", None, "not_the_lender"),
        (world.borrower, "/write-off", {"pin": world.borrower.pin}, "not_the_lender"),
        (world.borrower, "/remind", None, "not_the_lender"),
        (world.lender, "/cancel", None, "not_the_borrower"),
        (
            world.lender,
            "/repay",
            {"amount_cents": 1_000, "pin": world.lender.pin},
            "not_the_borrower",
        ),
    ]
    for loan_id in (world.requested, world.active):
        for who, suffix, body, code in cases:
            with subtests.test(loan=loan_id, action=suffix):
                assert_error(_act(client, who, loan_id, ("POST", suffix, body)), 403, code)
                assert_nothing_written(deni, world.before)


# --- malformed requests -----------------------------------------------------------------------


def _post_endpoints(world: World) -> list[tuple[str, str, dict[str, Any], ApiUser | None]]:
    """Every POST endpoint, a valid body for it, and who may call it."""
    terms = {"principal_cents": 100_000, "term_days": 7}
    return [
        (
            "register",
            "/api/v1/auth/register",
            {"phone": "0733000111", "name": "N", "pin": "1"},
            None,
        ),
        ("login", "/api/v1/auth/login", {"phone": world.lender.user.phone, "pin": "3591"}, None),
        ("refresh", "/api/v1/auth/refresh", {"refresh_token": "abc"}, None),
        ("pin", "/api/v1/me/pin", {"old_pin": "3591", "new_pin": "4381"}, world.lender),
        ("quote", f"{LOANS}/quote", terms, world.borrower),
        ("request", LOANS, loan_body(world.lender), world.borrower),
        ("approve", f"{LOANS}/{world.requested}/approve", {"pin": "3591"}, world.lender),
        ("decline", f"{LOANS}/{world.requested}/decline", {}, world.lender),
        ("cancel", f"{LOANS}/{world.requested}/cancel", {}, world.borrower),
        (
            "repay",
            f"{LOANS}/{world.active}/repay",
            {"amount_cents": 1_000, "pin": "3591"},
            world.borrower,
        ),
        ("write-off", f"{LOANS}/{world.active}/write-off", {"pin": "3591"}, world.lender),
        ("remind", f"{LOANS}/{world.active}/remind", {}, world.lender),
        ("read", "/api/v1/notifications/read", {"ids": [UNKNOWN_LOAN]}, world.lender),
    ]


def _headers(who: ApiUser | None) -> dict[str, str]:
    """Auth where the endpoint needs it, and a fresh Idempotency-Key."""
    return who.with_key() if who is not None else key()


MALFORMED = [
    b'{"pin": ',
    b"{'pin': '1234'}",
    b'{"a": 1,}',
    b"\xff\xfe{}",
    b"nul\x00l",
    b"[" * 2_000 + b"]" * 2_000,  # too deep to decode, and within every route's body limit
]


def test_malformed_json_is_refused(
    client: TestClient, deni: Deni, world: World, subtests: pytest.Subtests
) -> None:
    for name, path, _, who in _post_endpoints(world):
        for raw in MALFORMED:
            with subtests.test(endpoint=name, body=raw):
                headers = {**_headers(who), "Content-Type": "application/json"}
                response = client.post(path, content=raw, headers=headers)
                assert_error(response, 400, "malformed_json")
    assert_nothing_written(deni, world.before)


def test_unknown_fields_are_refused(
    client: TestClient, deni: Deni, world: World, subtests: pytest.Subtests
) -> None:
    for name, path, body, who in _post_endpoints(world):
        with subtests.test(endpoint=name):
            response = client.post(path, json={**body, "is_admin": True}, headers=_headers(who))
            error = assert_error(response, 422, "validation_failed")
            assert "is_admin" in error["message"]
            assert_nothing_written(deni, world.before)


# --- nothing produces a 500 -------------------------------------------------------------------

LONG = "9" * 100_000
GARBAGE_VALUES: list[object] = [
    None, True, 0, -1, 1.5, 10**30, -(10**30), 1e308, "", " ", LONG, "😀" * 40, "\u0000",
    "0712345678\u0000", "'; DROP TABLE users; --", "%s%s%n", "\ud7ff\ue000", [], [None],
    ["0712345678"], {}, {"$gt": ""}, {"a": {"b": {"c": [1, 2, {"d": None}]}}},
]  # fmt: skip
GARBAGE_BODIES: list[object] = [
    None, [], [1, 2, 3], [{}], "string", 42, 1.5, True, {"": None}, {LONG: LONG},
    {"😀": "😀"}, {"a": [[[[[[[[[[]]]]]]]]]]},
]  # fmt: skip
GARBAGE_RAW: list[tuple[bytes, str]] = [
    (b"", "application/json"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json"),
    (b'{"a": ' * 50_000 + b"1" + b"}" * 50_000, "application/json"),
    (b"phone=0712345678&pin=1234", "application/x-www-form-urlencoded"),
    (b"<xml/>", "text/xml"),
    (b"\x00\x01\x02", "application/octet-stream"),
]


def _assert_handled(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text[:300]
    if response.status_code >= 400:
        assert set(response.json()) == {"error"}, response.text[:300]


def test_garbage_never_produces_a_500(
    client: TestClient, world: World, subtests: pytest.Subtests
) -> None:
    for name, path, body, who in _post_endpoints(world):
        with subtests.test(endpoint=name, part="whole body"):
            for garbage in GARBAGE_BODIES:
                _assert_handled(client.post(path, json=garbage, headers=_headers(who)))
        for field in body:
            with subtests.test(endpoint=name, field=field):
                for value in GARBAGE_VALUES:
                    garbled = {**body, field: value}
                    _assert_handled(client.post(path, json=garbled, headers=_headers(who)))
        with subtests.test(endpoint=name, part="raw bytes"):
            for raw, content_type in GARBAGE_RAW:
                headers = {**_headers(who), "Content-Type": content_type}
                _assert_handled(client.post(path, content=raw, headers=headers))


GARBAGE_IDS = ["%00", "a%00b", "x" * 5_000, "😀", "..%2F..%2Fetc", "1 OR 1=1", "%FF%FE", " "]


def test_garbage_loan_ids_never_produce_a_500(
    client: TestClient, deni: Deni, world: World, subtests: pytest.Subtests
) -> None:
    for loan_id in GARBAGE_IDS:
        with subtests.test(loan=loan_id[:20]):
            for action in _actions(world.lender.pin):
                _assert_handled(_act(client, world.lender, loan_id, action))
    assert_nothing_written(deni, world.before)


def test_garbage_ids_in_bodies_never_produce_a_500(
    client: TestClient, world: World, subtests: pytest.Subtests
) -> None:
    for value in [*GARBAGE_IDS, "\u0000", "a\u0000b"]:
        with subtests.test(value=value[:20]):
            read = client.post(
                "/api/v1/notifications/read",
                json={"ids": [value]},
                headers=world.lender.with_key(),
            )
            _assert_handled(read)
            body = loan_body(world.lender, loan_id=value)
            _assert_handled(client.post(LOANS, json=body, headers=world.borrower.with_key()))


def test_garbage_query_strings_never_produce_a_500(
    client: TestClient, world: World, subtests: pytest.Subtests
) -> None:
    cases: list[tuple[str, dict[str, object]]] = [
        ("/api/v1/loans", {"role": "\u0000", "state": "\u0000", "limit": "1e9"}),
        ("/api/v1/loans", {"offset": "-0", "overdue": "😀", "state": "x" * 10_000}),
        ("/api/v1/loans", {"limit": 10**20, "offset": "0x10"}),
        ("/api/v1/wallet/statement", {"cursor": "\u0000", "limit": "NaN"}),
        ("/api/v1/wallet/statement", {"cursor": "9" * 400}),
        ("/api/v1/wallet/statement", {"cursor": 2**63}),
        ("/api/v1/notifications", {"unread_only": "\u0000", "limit": "inf"}),
        ("/api/v1/notifications", {"offset": 10**20}),
    ]
    for path, params in cases:
        with subtests.test(path=path, params=str(params)[:60]):
            _assert_handled(client.get(path, params=params, headers=world.lender.headers))


def test_garbage_headers_never_produce_a_500(
    client: TestClient, deni: Deni, world: World, subtests: pytest.Subtests
) -> None:
    auth = world.lender.headers
    cases: list[dict[str, str | bytes]] = [
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer " + "a" * 10_000},
        {"Authorization": "Bearer a.b.c"},
        {"Authorization": "Bearer \u00e9".encode("latin-1")},
        {"Authorization": "Bearer \u00e9".encode()},
        {**auth, "Idempotency-Key": "k" * 10_000},
        {**auth, "Idempotency-Key": "caf\u00e9".encode("latin-1")},
        {**auth, "Idempotency-Key": "caf\u00e9".encode()},
        {**auth, "Idempotency-Key": "\t"},
    ]
    for headers in cases:
        with subtests.test(headers=str(headers)[:60]):
            response = client.post(f"{LOANS}/{world.requested}/decline", json={}, headers=headers)
            assert 400 <= response.status_code < 500, response.text
            assert_nothing_written(deni, world.before)
