"""The hook's group commit (bootstrap/inbox_writer.py): callbacks that arrive together
are stored in one transaction, each hook answers only once its body is committed, and a
failed transaction fails every callback in it, leaving none half-stored."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select

from deni.adapters.db.mpesa import tables
from deni.bootstrap import database_engine, inbox_writer
from deni.bootstrap.inbox_writer import InboxWriter
from deni.entrypoints.api.app import create_app
from deni.services.mpesa.callbacks import Received, Stored
from deni.services.ports import StorageBusy
from tests.support.mpesa import CALLBACK_TOKEN, World, stk_success_body

TOGETHER = 40


def _callback(checkout_id: str | None = None) -> Received:
    checkout_id = checkout_id or f"ws_CO_{uuid.uuid4().hex[:20]}"
    body = stk_success_body(checkout_id, f"R{uuid.uuid4().hex[:9].upper()}", 100)
    return Received("stk", json.dumps(body).encode(), "127.0.0.1")


def _inbox_rows(world: World) -> int:
    with database_engine(world.deni).connect() as connection:
        query = select(func.count()).select_from(tables.callback_inbox)
        return int(connection.execute(query).scalar_one())


async def _store_together(writer: InboxWriter, callbacks: list[Received]) -> list[Any]:
    """Queue every callback before the writer starts, so they meet in one batch."""
    tasks = [asyncio.create_task(writer.store(callback)) for callback in callbacks]
    await asyncio.sleep(0)  # each task runs up to its wait: all are queued now
    writer.start()
    try:
        return await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        writer.stop()


def test_callbacks_arriving_together_are_committed_once_and_each_answered(world: World) -> None:
    commits: list[object] = []

    def on_commit(connection: object) -> None:
        commits.append(connection)

    event.listen(database_engine(world.deni), "commit", on_commit)
    try:
        stored = asyncio.run(
            _store_together(InboxWriter(world.deps), [_callback() for _ in range(TOGETHER)])
        )
    finally:
        event.remove(database_engine(world.deni), "commit", on_commit)
    assert all(isinstance(row, Stored) and row.inbox_id is not None for row in stored)
    assert len({row.inbox_id for row in stored}) == TOGETHER
    assert len(commits) == 1
    assert _inbox_rows(world) == TOGETHER


def test_the_same_callback_twice_in_one_batch_is_stored_once(world: World) -> None:
    twice = _callback("ws_CO_same_checkout")
    stored = asyncio.run(_store_together(InboxWriter(world.deps), [twice, twice]))
    assert [row.inbox_id is None for row in stored] == [False, True]
    assert _inbox_rows(world) == 1


def test_a_failed_transaction_fails_every_callback_in_it_and_the_writer_goes_on(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = inbox_writer.store_callbacks
    calls: list[int] = []

    def busy_once(deps: Any, received: list[Received]) -> list[Stored]:
        calls.append(len(received))
        if len(calls) == 1:
            raise StorageBusy("The database is busy; try again.")
        return real(deps, received)

    monkeypatch.setattr(inbox_writer, "store_callbacks", busy_once)

    async def scenario() -> tuple[list[Any], Stored]:
        writer = InboxWriter(world.deps)
        tasks = [asyncio.create_task(writer.store(_callback())) for _ in range(3)]
        await asyncio.sleep(0)
        writer.start()
        try:
            failed = await asyncio.gather(*tasks, return_exceptions=True)
            return failed, await writer.store(_callback())
        finally:
            writer.stop()

    failed, later = asyncio.run(scenario())
    assert [type(error) for error in failed] == [StorageBusy] * 3
    assert later.inbox_id is not None
    assert _inbox_rows(world) == 1  # nothing of the failed batch


def test_a_full_queue_refuses_at_once(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inbox_writer, "QUEUED_MAX", 2)

    async def scenario() -> None:
        writer = InboxWriter(world.deps)  # never started: the queue only fills
        waiting = [asyncio.create_task(writer.store(_callback())) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(StorageBusy):
            await writer.store(_callback())
        for task in waiting:
            task.cancel()

    asyncio.run(scenario())


def test_the_hook_stores_through_the_writer_when_the_app_runs(world: World) -> None:
    with TestClient(create_app(world.deni)) as client:  # the lifespan starts the writer
        assert isinstance(client.app.state.background.inbox_writer, InboxWriter)  # type: ignore[attr-defined]
        body = json.loads(_callback().body)
        answer = client.post(f"/hooks/{CALLBACK_TOKEN}/stk", json=body)
        assert answer.status_code == 200
        assert answer.json() == {"ResultCode": 0, "ResultDesc": "Accepted"}
        assert _inbox_rows(world) == 1  # committed before the answer
