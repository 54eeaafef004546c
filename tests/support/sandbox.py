"""The Daraja sandbox as its tests drive it: a callback receiver, and Deni's Daraja client's
requests made by hand."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from deni.sandbox.app import SandboxConfig
from deni.sandbox.client import SandboxAdmin
from deni.sandbox.security import encrypt_credential, stk_password

PASSKEY = SandboxConfig().stk_passkey
TIMESTAMP = "20261126090000"
PHONE = "254712345678"


@dataclass
class Received:
    path: str
    body: Any


class Receiver:
    """Plays Deni's callback endpoints: records every POST, answers as told per path."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._replies: dict[str, tuple[int, Any]] = {}
        self.url = ""
        self.app = Starlette(routes=[Route("/{path:path}", self._hear, methods=["POST"])])

    async def _hear(self, request: Request) -> Response:
        path = "/" + request.path_params["path"]
        body = await request.json()
        with self._lock:
            self._received.append(Received(path, body))
            status, reply = self._replies.get(path, (200, {"ResultCode": 0, "ResultDesc": "OK"}))
        return JSONResponse(reply, status_code=status)

    def reply(self, path: str, body: Any, status: int = 200) -> None:
        with self._lock:
            self._replies[path] = (status, body)

    def bodies(self, path: str) -> list[Any]:
        with self._lock:
            return [r.body for r in self._received if r.path == path]

    def reset(self) -> None:
        with self._lock:
            self._received.clear()
            self._replies.clear()

    def at(self, path: str) -> str:
        return self.url + path


class Daraja:
    """What Deni's Daraja client does, by hand: tokens, passwords, credentials, bodies."""

    def __init__(self, http: httpx.Client, admin: SandboxAdmin, hooks: Receiver) -> None:
        self.http = http
        self.admin = admin
        self.hooks = hooks
        self._token = ""
        self._credential = ""

    def new_token(self) -> str:
        response = self.http.get(
            "/oauth/v1/generate",
            params={"grant_type": "client_credentials"},
            auth=("sandbox-key", "sandbox-secret"),
        )
        assert response.status_code == 200, response.text
        self._token = response.json()["access_token"]
        return self._token

    def post(self, path: str, body: dict[str, Any], token: str | None = None) -> httpx.Response:
        bearer = token or self._token or self.new_token()
        return self.http.post(path, json=body, headers={"Authorization": f"Bearer {bearer}"})

    @property
    def credential(self) -> str:
        if not self._credential:
            pem = self.admin.certificate_pem()
            self._credential = encrypt_credential(pem, SandboxConfig().initiator_password)
        return self._credential

    def stk_body(self, phone: str = PHONE, amount: int = 100, **overrides: Any) -> dict[str, Any]:
        body = {
            "BusinessShortCode": "174379",
            "Password": stk_password("174379", PASSKEY, TIMESTAMP),
            "Timestamp": TIMESTAMP,
            "TransactionType": "CustomerPayBillOnline",
            "Amount": str(amount),
            "PartyA": phone,
            "PartyB": "174379",
            "PhoneNumber": phone,
            "CallBackURL": self.hooks.at("/hooks/stk"),
            "AccountReference": "LN0001",
            "TransactionDesc": "Repay loan",
        }
        return {**body, **overrides}

    def stk(self, phone: str = PHONE, amount: int = 100, **overrides: Any) -> dict[str, Any]:
        response = self.post(
            "/mpesa/stkpush/v1/processrequest",
            self.stk_body(phone, amount, **overrides),
        )
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def stk_query(self, checkout_request_id: str) -> httpx.Response:
        body = {
            "BusinessShortCode": "174379",
            "Password": stk_password("174379", PASSKEY, TIMESTAMP),
            "Timestamp": TIMESTAMP,
            "CheckoutRequestID": checkout_request_id,
        }
        return self.post("/mpesa/stkpushquery/v1/query", body)

    def b2c_body(
        self, phone: str = PHONE, amount: int = 500, originator_id: str = "deni-1", **overrides: Any
    ) -> dict[str, Any]:
        body = {
            "OriginatorConversationID": originator_id,
            "InitiatorName": "testapi",
            "SecurityCredential": self.credential,
            "CommandID": "BusinessPayment",
            "Amount": str(amount),
            "PartyA": "600000",
            "PartyB": phone,
            "Remarks": "Loan LN0001",
            "QueueTimeOutURL": self.hooks.at("/hooks/b2c-timeout"),
            "ResultURL": self.hooks.at("/hooks/b2c-result"),
            "Occassion": "",
        }
        return {**body, **overrides}

    def b2c(self, phone: str = PHONE, amount: int = 500, **overrides: Any) -> dict[str, Any]:
        response = self.post(
            "/mpesa/b2c/v3/paymentrequest", self.b2c_body(phone, amount, **overrides)
        )
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def initiator_body(self, command: str, **fields: Any) -> dict[str, Any]:
        body = {
            "Initiator": "testapi",
            "SecurityCredential": self.credential,
            "CommandID": command,
            "PartyA": "600000",
            "IdentifierType": "4",
            "Remarks": "check",
            "QueueTimeOutURL": self.hooks.at("/hooks/timeout"),
            "ResultURL": self.hooks.at("/hooks/result"),
        }
        return {**body, **fields}

    def register_c2b(self, response_type: str = "Completed", validation: bool = True) -> None:
        body = {
            "ShortCode": "600000",
            "ResponseType": response_type,
            "ConfirmationURL": self.hooks.at("/hooks/confirm"),
            "ValidationURL": self.hooks.at("/hooks/validate") if validation else "",
        }
        response = self.post("/mpesa/c2b/v2/registerurl", body)
        assert response.status_code == 200, response.text
