"""A small synchronous client for the sandbox's admin API, for tests and scripts."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx


class SandboxAdmin:
    def __init__(self, base_url: str, *, timeout_s: float = 30.0) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SandboxAdmin:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._http.request(method, path, json=body)
        response.raise_for_status()
        return response.json()

    def certificate_pem(self) -> bytes:
        response = self._http.get("/sandbox/certificate")
        response.raise_for_status()
        return response.content

    def reset(self) -> None:
        self._call("POST", "/sandbox/reset")

    def flush(self, timeout_s: float = 10.0) -> None:
        """Settle everything and deliver every callback; raises if time runs out."""
        self._call("POST", "/sandbox/callbacks/flush", {"timeout_s": timeout_s})

    def callbacks(self, kind: str | None = None) -> list[dict[str, Any]]:
        params = {"kind": kind} if kind else {}
        response = self._http.get("/sandbox/callbacks", params=params)
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()["callbacks"]
        return found

    def customer(self, phone: str) -> dict[str, Any]:
        found: dict[str, Any] = self._call("GET", f"/sandbox/customers/{phone}")
        return found

    def set_customer(self, phone: str, **fields: Any) -> dict[str, Any]:
        found: dict[str, Any] = self._call("PUT", f"/sandbox/customers/{phone}", fields)
        return found

    def organisation(self) -> dict[str, Any]:
        found: dict[str, Any] = self._call("GET", "/sandbox/organisation")
        return found

    def set_organisation(self, **fields: Any) -> dict[str, Any]:
        found: dict[str, Any] = self._call("PUT", "/sandbox/organisation", fields)
        return found

    def add_fault(self, **spec: Any) -> dict[str, Any]:
        found: dict[str, Any] = self._call("POST", "/sandbox/faults", spec)
        return found

    def clear_faults(self) -> None:
        self._call("DELETE", "/sandbox/faults")

    def transactions(self, phone: str | None = None) -> list[dict[str, Any]]:
        params = {"phone": phone} if phone else {}
        response = self._http.get("/sandbox/transactions", params=params)
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()["transactions"]
        return found

    def pay_paybill(self, phone: str, amount: int, account: str) -> dict[str, Any]:
        """A customer pays `amount` whole shillings with `account` as the BillRefNumber."""
        body = {"phone": phone, "amount": amount, "account": account}
        found: dict[str, Any] = self._call("POST", "/sandbox/c2b/pay", body)
        return found

    def advance_clock(self, seconds: float) -> None:
        self._call("POST", "/sandbox/clock/advance", {"seconds": seconds})
