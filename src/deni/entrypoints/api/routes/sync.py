"""Offline sync: push queued mutations, pull changes, status, dead letters, conflicts.

The protocol is docs/sync.md; the use cases are in services/sync/ (push.py, pull.py).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, JsonValue, StrictInt, StrictStr

from deni.bootstrap import Deni
from deni.entrypoints.api.contract import refusals
from deni.entrypoints.api.deps import DeniDep, UserId
from deni.entrypoints.api.json_body import TextJsonRoute
from deni.entrypoints.api.schemas import Id, Strict
from deni.services.sync import pull as sync_pull
from deni.services.sync import push as sync_push
from deni.services.sync.ports import DeadLetter, MutationResult, SyncDeps
from deni.services.sync.protocol import (
    CLIENT_SCHEMA_VERSION_MIN,
    SERVER_SCHEMA_VERSION,
    ClientUpgradeRequired,
)
from deni.services.sync.push import ARGS_BYTES_MAX, MUTATIONS_PER_PUSH_MAX, PushedMutation

router = APIRouter(prefix="/sync", tags=["sync"], route_class=TextJsonRoute)
# A full push: every mutation with args at their largest, plus its id, name and JSON around them.
MUTATION_BYTES_MAX = ARGS_BYTES_MAX + 256
PUSH_BODY_BYTES_MAX = MUTATIONS_PER_PUSH_MAX * MUTATION_BYTES_MAX + 1024

UUID_FORMAT = {"format": "uuid"}
CLIENT_ID_HELP = "A UUID the client makes once per install; anything else is 422."
SCHEMA_VERSION_HELP = (
    f"The sync protocol the client speaks; below {CLIENT_SCHEMA_VERSION_MIN} it is 426 "
    "client_upgrade_required."
)
ClientId = Annotated[
    StrictStr, Field(max_length=64, description=CLIENT_ID_HELP, json_schema_extra=UUID_FORMAT)
]
ClientIdQuery = Annotated[
    str, Query(max_length=64, description=CLIENT_ID_HELP, json_schema_extra=UUID_FORMAT)
]
SchemaVersion = Annotated[StrictInt, Field(ge=0, le=1_000_000, description=SCHEMA_VERSION_HELP)]
RowId = Annotated[Id, Field(json_schema_extra=UUID_FORMAT)]


def deps_of(deni: Deni) -> SyncDeps:
    secret = hashlib.sha256(b"deni-sync-v1\n" + deni.settings.jwt_secret.encode()).digest()
    return SyncDeps(
        uow=deni.uow,
        clock=deni.clock,
        hasher=deni.hasher,
        secret=secret,
        mpesa_on=deni.mpesa is not None,
        limit_counters=deni.limit_counters,
    )


class MutationIn(Strict):
    id: StrictInt = Field(ge=1, le=2**62)
    name: StrictStr = Field(min_length=1, max_length=64)
    args: JsonValue = None


class PushIn(Strict):
    client_id: ClientId
    schema_version: SchemaVersion
    mutations: list[MutationIn] = Field(min_length=1, max_length=MUTATIONS_PER_PUSH_MAX)


class ResultOut(BaseModel):
    mutation_id: int
    status: Literal["applied", "rejected", "conflict", "dead_letter", "forgotten"]
    code: str | None
    message: str | None
    resolution: str | None
    entity_id: str | None
    conflict_id: str | None
    dead_letter_id: str | None
    replayed: bool

    @classmethod
    def of(cls, result: MutationResult) -> ResultOut:
        return cls.model_validate(result, from_attributes=True)


class StoppedOut(BaseModel):
    code: str
    message: str
    mutation_id: int
    expected_mutation_id: int


class PushOut(BaseModel):
    client_id: str
    last_mutation_id: int
    results: list[ResultOut]
    stopped: StoppedOut | None


class ChangeOut(BaseModel):
    entity: str
    id: str
    op: Literal["put", "delete"]
    data: dict[str, Any] | None


class PullOut(BaseModel):
    changes: list[ChangeOut]
    cursor: str
    has_more: bool
    reset: bool
    last_mutation_id: int
    server_time: datetime


class StatusOut(BaseModel):
    client_id: str
    registered: bool
    last_mutation_id: int
    pending_dead_letters: int
    open_conflicts: int
    head_cursor: str
    server_schema_version: int
    min_client_schema_version: int
    server_time: datetime


class DeadLetterOut(BaseModel):
    id: str
    client_id: str
    mutation_id: int
    name: str
    args: JsonValue
    code: str
    message: str
    state: str
    created_at: datetime
    retried_at: datetime | None
    result: dict[str, Any] | None

    @classmethod
    def of(cls, found: DeadLetter) -> DeadLetterOut:
        return cls(
            id=found.id,
            client_id=found.client_id,
            mutation_id=found.mutation_id,
            name=found.name,
            args=json.loads(found.args_json),
            code=found.code,
            message=found.message,
            state=found.state,
            created_at=found.created_at,
            retried_at=found.retried_at,
            result=json.loads(found.result_json) if found.result_json else None,
        )


class DeadLetterListOut(BaseModel):
    dead_letters: list[DeadLetterOut]


class RetryIn(Strict):
    name: StrictStr | None = Field(default=None, min_length=1, max_length=64)
    args: JsonValue = None


class RetryOut(BaseModel):
    dead_letter: DeadLetterOut
    result: ResultOut


class DiscardOut(BaseModel):
    dead_letter: DeadLetterOut


class ResolveIn(Strict):
    choice: Literal["server", "client"]


class ResolveOut(BaseModel):
    result: ResultOut


def _upgrade_required(error: ClientUpgradeRequired) -> JSONResponse:
    body = {
        "error": {
            "code": error.code,
            "message": error.message,
            "min_client_schema_version": CLIENT_SCHEMA_VERSION_MIN,
            "server_schema_version": SERVER_SCHEMA_VERSION,
        }
    }
    return JSONResponse(body, status_code=426)


@router.post("/push", response_model=PushOut, responses=refusals(403, 426))
def push(body: PushIn, user_id: UserId, deni: DeniDep) -> object:
    """Apply queued mutations in id order, each once; one result per processed mutation."""
    try:
        outcome = sync_push.push(
            deps_of(deni),
            user_id=user_id,
            client_id=body.client_id,
            schema_version=body.schema_version,
            mutations=[PushedMutation(m.id, m.name, m.args) for m in body.mutations],
        )
    except ClientUpgradeRequired as error:
        return _upgrade_required(error)
    stopped = outcome.stopped
    return PushOut(
        client_id=outcome.client_id,
        last_mutation_id=outcome.last_mutation_id,
        results=[ResultOut.of(r) for r in outcome.results],
        stopped=StoppedOut.model_validate(stopped, from_attributes=True) if stopped else None,
    )


@router.get("/pull", response_model=PullOut, responses=refusals(403, 426))
def pull(
    user_id: UserId,
    deni: DeniDep,
    client_id: ClientIdQuery,
    schema_version: Annotated[int, Query(ge=0, le=1_000_000, description=SCHEMA_VERSION_HELP)],
    cursor: Annotated[str | None, Query(max_length=sync_pull.CURSOR_CHARS_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=sync_pull.PULL_PAGE_MAX)] = sync_pull.PULL_PAGE_DEFAULT,
) -> object:
    """Changes since the cursor, in bounded pages from one consistent snapshot."""
    try:
        page = sync_pull.pull(
            deps_of(deni),
            user_id=user_id,
            client_id=client_id,
            schema_version=schema_version,
            cursor=cursor or None,
            limit=limit,
        )
    except ClientUpgradeRequired as error:
        return _upgrade_required(error)
    return PullOut(
        changes=[ChangeOut(entity=c.entity, id=c.id, op=c.op, data=c.data) for c in page.changes],
        cursor=page.cursor,
        has_more=page.has_more,
        reset=page.reset,
        last_mutation_id=page.last_mutation_id,
        server_time=page.server_time,
    )


@router.get("/status", response_model=StatusOut, responses=refusals(403))
def status(user_id: UserId, deni: DeniDep, client_id: ClientIdQuery) -> StatusOut:
    """A client's sync state: last processed mutation, open dead letters, the head."""
    found = sync_pull.status(deps_of(deni), user_id=user_id, client_id=client_id)
    return StatusOut.model_validate(found, from_attributes=True)


@router.get("/dead-letters", response_model=DeadLetterListOut, responses=refusals(403))
def dead_letters(
    user_id: UserId,
    deni: DeniDep,
    client_id: ClientIdQuery,
    state: Literal["open", "all"] = "open",
) -> DeadLetterListOut:
    """Malformed mutations of this client, oldest first (at most 100)."""
    found = sync_push.list_dead_letters(
        deps_of(deni), user_id=user_id, client_id=client_id, open_only=state == "open"
    )
    return DeadLetterListOut(dead_letters=[DeadLetterOut.of(d) for d in found])


@router.post(
    "/dead-letters/{dead_letter_id}/retry", response_model=RetryOut, responses=refusals(409)
)
def retry(dead_letter_id: RowId, body: RetryIn, user_id: UserId, deni: DeniDep) -> RetryOut:
    """Run a dead letter again, as stored or corrected."""
    found, result = sync_push.retry_dead_letter(
        deps_of(deni),
        user_id=user_id,
        dead_letter_id=dead_letter_id,
        name=body.name,
        args=body.args,
        args_given="args" in body.model_fields_set,
    )
    return RetryOut(dead_letter=DeadLetterOut.of(found), result=ResultOut.of(result))


@router.post(
    "/dead-letters/{dead_letter_id}/discard", response_model=DiscardOut, responses=refusals(409)
)
def discard(dead_letter_id: RowId, user_id: UserId, deni: DeniDep) -> DiscardOut:
    found = sync_push.discard_dead_letter(
        deps_of(deni), user_id=user_id, dead_letter_id=dead_letter_id
    )
    return DiscardOut(dead_letter=DeadLetterOut.of(found))


@router.post("/conflicts/{conflict_id}/resolve", response_model=ResolveOut, responses=refusals(409))
def resolve(conflict_id: RowId, body: ResolveIn, user_id: UserId, deni: DeniDep) -> ResolveOut:
    """Keep the server's or the client's version of a manual conflict."""
    result = sync_push.resolve_conflict(
        deps_of(deni), user_id=user_id, conflict_id=conflict_id, choice=body.choice
    )
    return ResolveOut(result=ResultOut.of(result))
