"""The OpenAPI document is the contract: what the server does, it says, and nothing else.

Schemathesis reads /openapi.json from Deni in uvicorn on a loopback port and sends every
operation generated requests, valid and invalid, as a signed-in member with money and loans.
Every answer must be no server error, a documented status, the documented content type and
headers, and a body matching the documented schema. Bounded: a fixed number of examples per
operation, derandomized, so a run is the same every time and takes seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import APIOperation, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from tests.support.builders import fund, lend, register

from deni.bootstrap import Deni
from deni.entrypoints.api.app import create_app
from deni.entrypoints.api.contract import document_errors
from deni.entrypoints.api.deps import IdempotencyKey, UserId
from deni.entrypoints.api.schemas import EmptyOut, Strict
from deni.sandbox.server import BackgroundServer

# About 40 operations: a few hundred requests in all, each way.
EXAMPLES_PER_OPERATION = {GenerationMode.POSITIVE: 5, GenerationMode.NEGATIVE: 3}
OPERATIONS_MIN = 37
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# No generated PIN (nor the schema's example, 4821) opens this member's account, so the run
# cannot close it or change its PIN; wrong PINs may lock it, which is documented (423).
MEMBER_PIN = "8093"


@dataclass
class Member:
    headers: dict[str, str]
    loan_ids: list[str]  # borrowed and active, lent and active, asked for and waiting


def signed_in(deni: Deni) -> Member:
    """A member with money and loans both ways, and the headers that speak for them.

    Made through the services, not the register route, so this keeps working whatever the
    route asks of a new member (a code sent by SMS, say).
    """
    member = register(deni, name="Contract Member", pin=MEMBER_PIN)
    friend = register(deni, name="Contract Friend", pin="5170")
    fund(deni, member, 500_000)
    fund(deni, friend, 500_000)
    loans = [
        lend(deni, lender=friend, borrower=member, approve_with_pin="5170"),
        lend(deni, lender=member, borrower=friend, approve_with_pin=MEMBER_PIN),
        lend(deni, lender=friend, borrower=member, approve_with_pin=None),
    ]
    token, _ = deni.tokens.issue(user_id=member.id, now=deni.clock.now())
    return Member({"Authorization": f"Bearer {token}"}, [loan.id for loan in loans])


class ServerErrors(logging.Handler):
    """What uvicorn logs when the app raises, even after an answer went out."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.getMessage()} {record.exc_info!r}")


@pytest.fixture
def live_api(deni: Deni) -> Iterator[tuple[str, Member, ServerErrors]]:
    member = signed_in(deni)
    errors = ServerErrors()
    uvicorn_errors = logging.getLogger("uvicorn.error")
    uvicorn_errors.addHandler(errors)
    try:
        with BackgroundServer(create_app(deni)) as server:
            yield server.url, member, errors
    finally:
        uvicorn_errors.removeHandler(errors)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_server_does_what_its_openapi_document_says(
    live_api: tuple[str, Member, ServerErrors], mode: GenerationMode
) -> None:
    url, member, server_errors = live_api
    document = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in document.get_all_operations()]
    assert len(operations) >= OPERATIONS_MIN
    # Every operation runs, and every one that fails is reported. (Not with pytest's subtests:
    # Hypothesis runs nested in them crash this interpreter.)
    failures = []
    for operation, path_parameters in _runs(operations, member, mode):
        try:
            _exercise(operation, mode, member.headers, path_parameters)
        except Exception as failure:
            failures.append(f"{operation.label} {path_parameters}: {failure}")
    assert not failures, "\n\n".join(failures)
    assert not server_errors.messages


def _runs(
    operations: list[APIOperation], member: Member, mode: GenerationMode
) -> Iterator[tuple[APIOperation, dict[str, str]]]:
    """Each operation with generated ids; those about one loan also with the member's own,
    so they answer as they do for real loans (200, 403, 409), not only 404."""
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not _takes_input(operation):
            continue  # nothing to make invalid
        yield operation, {}
        if mode is GenerationMode.POSITIVE and "{loan_id}" in operation.path:
            for loan_id in member.loan_ids:
                yield operation, {"loan_id": loan_id}


def _takes_input(operation: APIOperation) -> bool:
    return bool(operation.body) or any(True for _ in operation.iter_parameters())


def _exercise(
    operation: APIOperation,
    mode: GenerationMode,
    headers: dict[str, str],
    path_parameters: dict[str, str],
) -> None:
    @settings(
        max_examples=EXAMPLES_PER_OPERATION[mode],
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # a failure is reported as found, unshrunk
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    def call(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    call()


# --- the document itself, without a server ----------------------------------------------------

NEEDS_KEY = {
    ("post", "/api/v1/me/pin"),
    ("patch", "/api/v1/me"),
    ("post", "/api/v1/loans"),
    ("post", "/api/v1/loans/{loan_id}/approve"),
    ("post", "/api/v1/loans/{loan_id}/repay"),
    ("post", "/api/v1/notifications/read"),
    ("post", "/api/v1/mpesa/withdrawals"),
}


def _operations(client: TestClient) -> dict[tuple[str, str], dict[str, Any]]:
    document = client.get("/openapi.json").json()
    return {
        (method, path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }


def test_every_operation_documents_the_errors_any_request_can_meet(client: TestClient) -> None:
    for (method, path), operation in _operations(client).items():
        documented = set(operation["responses"])
        assert {"413", "429", "503"} <= documented, (method, path)
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")) and not path.startswith("/health"):
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (method, path)
        if any(scheme for scheme in operation.get("security", [])):
            assert "401" in documented, (method, path)
        if operation.get("requestBody"):
            assert {"400", "422"} <= documented, (method, path)
        if "{" in path:
            assert "404" in documented, (method, path)
    assert "HTTPValidationError" not in client.get("/openapi.json").text


def test_the_idempotency_key_is_required_exactly_where_the_server_requires_it(
    client: TestClient,
) -> None:
    operations = _operations(client)
    for (method, path), operation in operations.items():
        keys = [p for p in operation.get("parameters", []) if p["name"] == "Idempotency-Key"]
        if (method, path) in NEEDS_KEY:
            assert keys[0]["required"] is True, path
            assert {"409", "422"} <= set(operation["responses"]), path
    [optional] = [
        p
        for p in operations[("post", "/api/v1/auth/register")]["parameters"]
        if p["name"] == "Idempotency-Key"
    ]
    assert optional["required"] is False


def test_sync_ids_are_uuids_and_an_old_schema_is_a_documented_426(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    push = document["components"]["schemas"]["PushIn"]["properties"]
    assert push["client_id"]["format"] == "uuid"
    assert "426" in document["paths"]["/api/v1/sync/push"]["post"]["responses"]
    pull = document["paths"]["/api/v1/sync/pull"]["get"]
    [client_id] = [p for p in pull["parameters"] if p["name"] == "client_id"]
    assert client_id["schema"]["format"] == "uuid"
    assert "426" in pull["responses"]


class PinBody(Strict):
    pin: str


def test_a_new_route_is_documented_from_what_it_depends_on() -> None:
    """A route another part of Deni adds later needs nothing of its own for the common cases."""
    router = APIRouter()

    @router.post("/me/something-new", response_model=EmptyOut)
    def something_new(body: PinBody, user_id: UserId, key: IdempotencyKey) -> EmptyOut:
        return EmptyOut()

    app = FastAPI()
    app.include_router(router, prefix="/api/v1")
    document_errors(app, [("/api/v1" + r.path, r) for r in router.routes])  # type: ignore[attr-defined]
    operation = app.openapi()["paths"]["/api/v1/me/something-new"]["post"]
    assert set(operation["responses"]) == {
        "200",
        "400",
        "401",
        "404",
        "409",
        "413",
        "422",
        "423",
        "429",
        "503",
    }
    [key_parameter] = operation["parameters"]
    assert key_parameter["required"] is True
