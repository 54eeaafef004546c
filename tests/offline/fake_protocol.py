"""A small in-memory fake of the sync protocol (docs/sync.md), on an httpx transport.

Not Deni: just enough of push/pull/login to drive the client's sync engine through faults the
real server cannot be made to show on demand (a response lost after the server applied the
push, a run of 503s, a gap, an old schema). The end-to-end tests use the real server.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import httpx

PIN = "3591"


@dataclass
class Fake:
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> phone, balance
    loans: dict[str, dict[str, Any]] = field(default_factory=dict)
    clients: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> user, last
    log: dict[tuple[str, int], tuple[str, dict[str, Any]]] = field(default_factory=dict)
    changes: list[tuple[int, str, str, str]] = field(default_factory=list)  # v, user, ent, id
    version: int = 0
    schema_min: int = 1
    # Faults, consumed as they fire.
    lose_next_responses: int = 0  # apply the request, then drop the answer
    refuse_next: int = 0  # connection refused before the server sees anything
    busy_next: int = 0  # 503 with Retry-After
    applied_pushes: int = 0

    def add_user(self, user_id: str, phone: str, balance_cents: int) -> None:
        self.users[user_id] = {"phone": phone, "balance_cents": balance_cents}
        self._touch(user_id, "user", user_id)
        self._touch(user_id, "wallet", user_id)

    def add_loan(self, loan: dict[str, Any]) -> None:
        self.loans[loan["id"]] = {"version": 1, **loan}
        self._touch_loan(loan["id"])

    def _touch(self, user_id: str, entity: str, entity_id: str) -> None:
        self.version += 1
        self.changes.append((self.version, user_id, entity, entity_id))

    def _touch_loan(self, loan_id: str) -> None:
        loan = self.loans[loan_id]
        for who in {loan["borrower_id"], loan["lender_id"]}:
            self._touch(who, "loan", loan_id)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # -- HTTP ---------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.refuse_next:
            self.refuse_next -= 1
            raise httpx.ConnectError("connection refused", request=request)
        if self.busy_next:
            self.busy_next -= 1
            return _error(503, "busy", "Try again.", headers={"Retry-After": "0"})
        path = request.url.path.removeprefix("/api/v1")
        if path == "/auth/login":
            body = json.loads(request.content)
            for user_id, user in self.users.items():
                if user["phone"] == body["phone"] and body["pin"] == PIN:
                    return httpx.Response(
                        200,
                        json={
                            "user_id": user_id,
                            "access_token": f"tok-{user_id}",
                            "refresh_token": f"ref-{user_id}",
                            "expires_in": 900,
                        },
                    )
            return _error(401, "wrong_credentials", "No.")
        token = request.headers.get("Authorization", "").removeprefix("Bearer tok-")
        if token not in self.users:
            return _error(401, "unauthorized", "Log in.")
        if path == "/sync/push":
            response = self._push(token, json.loads(request.content))
        elif path == "/sync/pull":
            response = self._pull(token, dict(request.url.params))
        else:
            return _error(404, "not_found", path)
        if self.lose_next_responses:
            self.lose_next_responses -= 1
            raise httpx.ReadError("connection reset after the server answered", request=request)
        return response

    def _client(self, user_id: str, client_id: str) -> dict[str, Any] | httpx.Response:
        client = self.clients.setdefault(client_id, {"user": user_id, "last": 0})
        if client["user"] != user_id:
            return _error(403, "client_not_yours", "That client id belongs to someone else.")
        return client

    def _push(self, user_id: str, body: dict[str, Any]) -> httpx.Response:
        if body["schema_version"] < self.schema_min:
            return _error(426, "client_upgrade_required", "Upgrade.", min_client_schema_version=2)
        client = self._client(user_id, body["client_id"])
        if isinstance(client, httpx.Response):
            return client
        self.applied_pushes += 1
        results: list[dict[str, Any]] = []
        stopped = None
        for mutation in sorted(body["mutations"], key=lambda m: m["id"]):
            digest = hashlib.sha256(
                json.dumps([mutation["name"], mutation["args"]], sort_keys=True).encode()
            ).hexdigest()
            key = (body["client_id"], mutation["id"])
            if mutation["id"] <= client["last"]:
                stored = self.log[key]
                if stored[0] != digest:
                    stopped = {
                        "code": "mutation_id_reused",
                        "message": "reused",
                        "mutation_id": mutation["id"],
                        "expected_mutation_id": None,
                    }
                    break
                results.append({**stored[1], "replayed": True})
                continue
            if mutation["id"] > client["last"] + 1:
                stopped = {
                    "code": "mutation_gap",
                    "message": "gap",
                    "mutation_id": mutation["id"],
                    "expected_mutation_id": client["last"] + 1,
                }
                break
            result = self._apply(user_id, mutation)
            client["last"] = mutation["id"]
            self.log[key] = (digest, result)
            results.append(result)
        return httpx.Response(
            200,
            json={
                "client_id": body["client_id"],
                "last_mutation_id": client["last"],
                "results": results,
                "stopped": stopped,
            },
        )

    def _apply(self, user_id: str, mutation: dict[str, Any]) -> dict[str, Any]:
        name, args = mutation["name"], mutation["args"]
        result = {
            "mutation_id": mutation["id"],
            "status": "applied",
            "code": None,
            "message": None,
            "replayed": False,
            "dead_letter_id": None,
        }
        if name == "repay_loan":
            if args.get("pin") != PIN:
                return {**result, "status": "rejected", "code": "wrong_pin", "message": "PIN."}
            loan = self.loans.get(args["loan_id"])
            if loan is None or loan["state"] != "active":
                return {
                    **result,
                    "status": "rejected",
                    "code": "loan_not_active",
                    "message": "Nothing to repay.",
                }
            amount = min(args["amount_cents"], loan["owed_cents"])
            self.users[user_id]["balance_cents"] -= amount
            self.users[loan["lender_id"]]["balance_cents"] += amount
            loan["owed_cents"] -= amount
            loan["state"] = "repaid" if loan["owed_cents"] == 0 else "active"
            loan["version"] += 1
            self._touch_loan(loan["id"])
            self._touch(user_id, "wallet", user_id)
            self._touch(loan["lender_id"], "wallet", loan["lender_id"])
            return result
        if name == "approve_loan":
            loan = self.loans.get(args["loan_id"])
            if args.get("pin") != PIN:
                return {**result, "status": "rejected", "code": "wrong_pin", "message": "PIN."}
            if loan is None or loan["state"] != "requested":
                return {
                    **result,
                    "status": "rejected",
                    "code": "invalid_transition",
                    "message": "Not requested any more.",
                }
            loan["state"] = "active"
            loan["version"] += 1
            self.users[user_id]["balance_cents"] -= loan["principal_cents"]
            self.users[loan["borrower_id"]]["balance_cents"] += loan["principal_cents"]
            self._touch_loan(loan["id"])
            self._touch(user_id, "wallet", user_id)
            self._touch(loan["borrower_id"], "wallet", loan["borrower_id"])
            return result
        if name == "top_up":
            return result
        return {
            **result,
            "status": "dead_letter",
            "code": "unknown_mutation",
            "message": name,
            "dead_letter_id": f"dl-{mutation['id']}",
        }

    def _pull(self, user_id: str, params: dict[str, str]) -> httpx.Response:
        if int(params["schema_version"]) < self.schema_min:
            return _error(426, "client_upgrade_required", "Upgrade.", min_client_schema_version=2)
        client = self._client(user_id, params["client_id"])
        if isinstance(client, httpx.Response):
            return client
        cursor = params.get("cursor", "")
        reset = False
        after = 0
        if cursor:
            owner, _, version = cursor.partition(":")
            if owner != user_id:
                reset = True
            else:
                after = int(version)
        limit = int(params["limit"])
        mine = [c for c in self.changes if c[1] == user_id and c[0] > after]
        latest: dict[tuple[str, str], int] = {}
        for changed_at, _, entity, entity_id in mine:
            latest[(entity, entity_id)] = changed_at
        ordered = sorted(latest.items(), key=lambda item: item[1])
        page, has_more = ordered[:limit], len(ordered) > limit
        top = page[-1][1] if page and has_more else self.version
        changes = [
            {"entity": entity, "id": entity_id, "op": "put", "data": self._data(entity, entity_id)}
            for (entity, entity_id), _ in page
        ]
        return httpx.Response(
            200,
            json={
                "changes": changes,
                "cursor": f"{user_id}:{top}",
                "has_more": has_more,
                "reset": reset,
                "last_mutation_id": client["last"],
                "server_time": "2026-11-26T06:00:00Z",
            },
        )

    def _data(self, entity: str, entity_id: str) -> dict[str, Any]:
        if entity == "wallet":
            return {
                "user_id": entity_id,
                "balance_cents": self.users[entity_id]["balance_cents"],
                "held_cents": 0,
            }
        if entity == "user":
            return {
                "id": entity_id,
                "phone": self.users[entity_id]["phone"],
                "name": "X",
                "language": "en",
                "version": 1,
            }
        return dict(self.loans[entity_id])


def _error(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"code": code, "message": message, **extra}}, headers=headers
    )
