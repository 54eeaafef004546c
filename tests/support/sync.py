"""A tiny offline device for tests: a queue of mutations and a local view built from pulls.

It speaks docs/sync.md over the FastAPI test client, like the real offline client does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient

from tests.support.builders import ApiUser

PUSH = "/api/v1/sync/push"
PULL = "/api/v1/sync/pull"
STATUS = "/api/v1/sync/status"
SCHEMA = 1
PULL_PAGES_MAX = 100
MONEY_OUT = frozenset({"repay_loan", "withdraw", "set_preferences"})


@dataclass
class Device:
    client: TestClient
    who: ApiUser
    client_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    next_id: int = 1
    queue: list[dict[str, Any]] = field(default_factory=list)
    results: dict[int, dict[str, Any]] = field(default_factory=dict)
    cursor: str | None = None
    view: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    last_mutation_id: int = 0

    def queue_mutation(self, mutation_name: str, /, **args: Any) -> int:
        """Queue a mutation; money leaving the wallet carries the member's PIN unless given,
        as the apps add it from memory when they push."""
        if mutation_name in MONEY_OUT:
            args.setdefault("pin", self.who.pin)
        mutation: dict[str, Any] = {"id": self.next_id, "name": mutation_name, "args": args}
        self.queue.append(mutation)
        self.next_id += 1
        return int(mutation["id"])

    def push(self, *, drop_answer: bool = False) -> dict[str, Any]:
        """Push the whole queue; with drop_answer the server acts but the device never hears."""
        body = {"client_id": self.client_id, "schema_version": SCHEMA, "mutations": self.queue}
        response = self.client.post(PUSH, json=body, headers=self.who.headers)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        if drop_answer:
            return answer
        for result in answer["results"]:
            self.results[result["mutation_id"]] = result
        done = {r["mutation_id"] for r in answer["results"]}
        self.queue = [m for m in self.queue if m["id"] not in done]
        return answer

    def pull(self, *, limit: int = 500) -> list[dict[str, Any]]:
        """Pull until has_more is false; returns every change received."""
        received: list[dict[str, Any]] = []
        snapshot_puts: set[tuple[str, str]] | None = None
        for _ in range(PULL_PAGES_MAX):
            params: dict[str, Any] = {
                "client_id": self.client_id,
                "schema_version": SCHEMA,
                "limit": limit,
            }
            if self.cursor:
                params["cursor"] = self.cursor
            response = self.client.get(PULL, params=params, headers=self.who.headers)
            assert response.status_code == 200, response.text
            page = response.json()
            if page["reset"]:
                snapshot_puts = set()
            for change in page["changes"]:
                key = (change["entity"], change["id"])
                if change["op"] == "put":
                    self.view[key] = change["data"]
                    if snapshot_puts is not None:
                        snapshot_puts.add(key)
                else:
                    self.view.pop(key, None)
                received.append(change)
            self.cursor = page["cursor"]
            self.last_mutation_id = page["last_mutation_id"]
            if not page["has_more"]:
                break
        else:
            raise AssertionError("pull did not finish")
        if snapshot_puts is not None:  # replacement sync: drop what the snapshot did not put
            self.view = {k: v for k, v in self.view.items() if k in snapshot_puts}
        return received

    def sync(self) -> None:
        if self.queue:
            self.push()
        self.pull()

    def records(self, entity: str) -> dict[str, dict[str, Any]]:
        return {k[1]: v for k, v in self.view.items() if k[0] == entity}

    def loan(self, loan_id: str) -> dict[str, Any]:
        return self.records("loan")[loan_id]

    def balance(self) -> int:
        wallet = self.records("wallet")[self.who.user.id]
        value = wallet["balance_cents"]
        assert isinstance(value, int)
        return value


def push_raw(
    client: TestClient, who: ApiUser, client_id: str, mutations: list[dict[str, Any]]
) -> Any:
    body = {"client_id": client_id, "schema_version": SCHEMA, "mutations": mutations}
    return client.post(PUSH, json=body, headers=who.headers)


def server_view(client: TestClient, who: ApiUser) -> dict[tuple[str, str], dict[str, Any]]:
    """A fresh device's full pull: the server's state as this user sees it."""
    fresh = Device(client, who)
    fresh.pull()
    return fresh.view
