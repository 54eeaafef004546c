"""A PostgreSQL backend ended under a request (a failover, an operator's pg_terminate_backend,
a restart) is the database being unavailable for a moment: the caller gets StorageBusy (the
API: 503 with Retry-After, and the same Idempotency-Key is safe to send again), never a 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from tests.support.builders import api_user

from deni.bootstrap import Deni, database_engine
from deni.services.ports import StorageBusy


def _end_every_other_backend(deni: Deni) -> int:
    with database_engine(deni).connect() as connection:
        ended = connection.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
        connection.commit()
    return int(ended)


@pytest.fixture
def on_postgres(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("ending a backend is PostgreSQL's (SQLite has none)")


@pytest.mark.usefixtures("on_postgres")
def test_a_backend_ended_mid_transaction_is_busy(deni: Deni, client: TestClient) -> None:
    member = api_user(client, deni, name="Wanjiku")

    def read_after_the_backend_ended() -> None:
        with deni.uow() as uow:
            assert uow.users.get(member.user.id) is not None
            assert _end_every_other_backend(deni) >= 1
            uow.users.get(member.user.id)

    with pytest.raises(StorageBusy):
        read_after_the_backend_ended()
    with deni.uow.read_only() as uow:  # the pool hands out a live connection after
        assert uow.users.get(member.user.id) is not None


@pytest.mark.usefixtures("on_postgres")
def test_the_api_answers_a_lost_backend_with_503_and_then_serves(
    deni: Deni, client: TestClient
) -> None:
    member = api_user(client, deni, name="Wanjiku")
    assert client.get("/api/v1/wallet", headers=member.headers).status_code == 200
    _end_every_other_backend(deni)  # every pooled connection, idle ones included
    answers = [client.get("/api/v1/wallet", headers=member.headers) for _ in range(3)]
    assert all(a.status_code in (200, 503) for a in answers), [a.text for a in answers]
    assert answers[-1].status_code == 200
