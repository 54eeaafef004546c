"""A JSON body whose strings are not Unicode text (a lone UTF-16 surrogate, escaped or as raw
bytes) is refused as malformed, on every route that takes a body, and writes nothing; a real
pair (an emoji) is text and passes."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from fastapi.testclient import TestClient
from tests.support.api import assert_error, assert_nothing_written, db_state
from tests.support.builders import api_user

from deni.bootstrap import Deni
from deni.entrypoints.api import routes as api_routes
from deni.entrypoints.api.json_body import TextJsonRoute

LONE = b'"ab\\ud800"'  # half of a pair, escaped
RAW_LONE = b'"ab\xed\xa0\x80"'  # the same half as (surrogatepass) UTF-8 bytes

BODIES = [
    ("PATCH", "/api/v1/me", b'{"name":%s}'),
    ("PUT", "/api/v1/mpesa/preferences", b'{"pin":%s,"disburse_to_mpesa":false}'),
    ("POST", "/api/v1/auth/login", b'{"phone":%s,"pin":"3591"}'),
    ("POST", "/api/v1/auth/login", b'{"phone":"0712345678","pin":%s}'),
    ("POST", "/api/v1/loans", b'{"lender_phone":%s,"principal_cents":100000,"term_days":7}'),
    ("POST", "/api/v1/notifications/read", b'{"ids":[%s]}'),
    ("POST", "/api/v1/me/pin", b'{"old_pin":"3591","new_pin":%s}'),
    ("POST", "/api/v1/me/close", b'{"pin":%s}'),
]


@pytest.mark.parametrize("string", [LONE, RAW_LONE], ids=["escaped", "raw"])
@pytest.mark.parametrize(("method", "path", "template"), BODIES)
def test_a_lone_surrogate_is_malformed_json_and_writes_nothing(
    client: TestClient, deni: Deni, method: str, path: str, template: bytes, string: bytes
) -> None:
    member = api_user(client, deni, name="Surrogate Tester")
    before = db_state(deni)
    headers = {**member.with_key(), "content-type": "application/json"}
    response = client.request(method, path, content=template % string, headers=headers)
    assert_error(response, 400, "malformed_json")
    assert_nothing_written(deni, before)


def test_a_nested_key_with_a_lone_surrogate_is_malformed_too(
    client: TestClient, deni: Deni
) -> None:
    member = api_user(client, deni, name="Surrogate Tester")
    headers = {**member.with_key(), "content-type": "application/json"}
    body = b'{"name":"Fine Name","x":{"\\udfff":1}}'
    assert_error(client.patch("/api/v1/me", content=body, headers=headers), 400, "malformed_json")


def test_a_whole_pair_is_text_and_passes(client: TestClient, deni: Deni) -> None:
    member = api_user(client, deni, name="Surrogate Tester")
    headers = {**member.with_key(), "content-type": "application/json"}
    body = b'{"name":"Amani \\ud83c\\udf3b"}'
    renamed = client.patch("/api/v1/me", content=body, headers=headers)
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Amani \U0001f33b"


def test_every_api_route_decodes_its_body_as_text() -> None:
    checked = 0
    for module_info in pkgutil.iter_modules(api_routes.__path__):
        module = importlib.import_module(f"{api_routes.__name__}.{module_info.name}")
        router = getattr(module, "router", None)
        if router is None:
            continue  # Daraja's callbacks: their own reading (routes/hooks.py)
        for route in router.routes:
            assert isinstance(route, TextJsonRoute), (module_info.name, route)
            checked += 1
    assert checked > 40


def test_a_utf16_body_with_a_lone_surrogate_is_malformed_too(
    client: TestClient, deni: Deni
) -> None:
    member = api_user(client, deni, name="Surrogate Tester")
    headers = {**member.with_key(), "content-type": "application/json"}
    body = '{"name":"ab'.encode("utf-16-le") + b"\x00\xd8" + '"}'.encode("utf-16-le")
    assert_error(client.patch("/api/v1/me", content=body, headers=headers), 400, "malformed_json")
