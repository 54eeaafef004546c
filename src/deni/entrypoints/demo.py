"""`deni demo`: a whole loan against a running Deni, step by step, for a newcomer to watch.

It talks to Deni only through the public API, as an app would: two people register (each with
the code Deni sends their number by SMS), the lender tops up by STK push, the borrower asks for
a loan, the lender approves it (paid out to the borrower's M-PESA by B2C), and the borrower
repays by STK push. With `make run`, the local Daraja sandbox plays M-PESA, so every step
crosses real HTTP both ways, and the fake SMS gateway keeps its messages in Deni's database:
the demo reads each code there, as its person would read their phone (with a real SMS gateway
it asks you to type the code).
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

from deni.bootstrap import SmsOutboxReader, read_sms_outbox
from deni.config import Settings
from deni.domain.money import format_kes
from deni.domain.phone import normalise_msisdn

console = Console()
PIN = "1357"
POLL_INTERVAL_S = 0.25
WAIT_S_MAX = 30.0
TIMEOUT_S = 10.0


class DemoFailed(Exception):
    pass


def demo(
    url: Annotated[str, typer.Option(help="A running Deni.")] = "http://127.0.0.1:8000",
) -> None:
    """Watch a whole loan: top-up, request, approve, payout to M-PESA, repayment."""
    settings = Settings()
    with ExitStack() as stack:
        read_code: Callable[[str], str] = _ask_code
        if settings.sms_backend == "fake":
            read_code = _outbox_reader(stack.enter_context(read_sms_outbox(settings)))
        api = stack.enter_context(
            httpx.Client(base_url=url.rstrip("/") + "/api/v1", timeout=TIMEOUT_S)
        )
        try:
            run_demo(api, say=console.print, read_code=read_code)
        except (DemoFailed, httpx.HTTPError) as error:
            console.print(f"[red]The demo stopped: {error}[/red]")
            raise typer.Exit(1) from error


def run_demo(
    api: httpx.Client, *, say: Callable[[str], None], read_code: Callable[[str], str]
) -> None:
    """`read_code(phone)`: the code Deni just sent that number by SMS."""
    lender = _register(api, "Wanjiku Demo", say, read_code)
    borrower = _register(api, "Otieno Demo", say, read_code)

    top_up = _post(api, lender, "/mpesa/top-ups", {"amount_cents": 5_000_00})
    say(f"Wanjiku tops up {format_kes(5_000_00)} by STK push (M-PESA asks her phone for a PIN)")
    _wait_for_request(api, lender, top_up["id"], say)
    say(f"  Wanjiku's wallet: {_balance(api, lender)}")

    loan = _post(
        api,
        borrower,
        "/loans",
        {
            "lender_phone": lender["phone"],
            "principal_cents": 2_000_00,
            "fee_cents": 100_00,
            "term_days": 14,
        },
    )
    say(
        f"Otieno asks Wanjiku for {format_kes(2_000_00)}; he will repay "
        f"{format_kes(loan['total_cents'])} by {loan['due_date']} (loan {loan['code']})"
    )
    approved = _post(api, lender, f"/loans/{loan['id']}/approve", {"pin": PIN})
    say(f"Wanjiku approves with her PIN: the loan is {approved['state']}")
    payout = _wait_for_purpose(api, borrower, "disbursement", say)
    say(f"  paid out to Otieno's M-PESA, receipt {payout['receipt']}")

    repayment = _post(
        api,
        borrower,
        f"/loans/{loan['id']}/mpesa-repayments",
        {"amount_cents": loan["total_cents"]},
    )
    say(f"Otieno repays {format_kes(loan['total_cents'])} by STK push")
    _wait_for_request(api, borrower, repayment["id"], say)
    final = _get(api, borrower, f"/loans/{loan['id']}")
    say(f"  the loan is {final['state']}; Wanjiku's wallet: {_balance(api, lender)}")
    if final["state"] != "repaid":
        raise DemoFailed(f"the loan ended {final['state']}, not repaid")


def _register(
    api: httpx.Client, name: str, say: Callable[[str], None], read_code: Callable[[str], str]
) -> dict[str, Any]:
    # A fresh number each run, so the demo can be run again and again; 071x numbers never hit
    # the sandbox's fault-injecting test numbers (all 07000...).
    phone = "071" + "".join(secrets.choice("0123456789") for _ in range(7))
    _check(api.post("/auth/register/code", json={"phone": phone}))
    code = read_code(phone)
    first = name.split()[0]
    say(f"{first} asks to join with {phone}; Deni texts it a code, {code}")
    body = {"phone": phone, "code": code, "name": name, "pin": PIN}
    _check(api.post("/auth/register", json=body))
    login = api.post("/auth/login", json={"phone": phone, "pin": PIN})
    _check(login)
    say(f"{first} registers with the code")
    return {"phone": phone, "token": login.json()["access_token"]}


def _outbox_reader(outbox: SmsOutboxReader) -> Callable[[str], str]:
    """The newest code the fake SMS gateway "sent" to a number (the same database as the
    server's: DENI_DATABASE_URL)."""

    def read_code(phone: str) -> str:
        deadline = time.monotonic() + TIMEOUT_S
        for _ in range(int(TIMEOUT_S / POLL_INTERVAL_S) + 1):
            try:
                messages = outbox.messages(phone=normalise_msisdn(phone), limit=1)
            except SQLAlchemyError as error:
                raise DemoFailed(f"the SMS outbox cannot be read: {error}") from error
            for message in messages:
                if found := re.search(r"(?<!\d)\d{6}(?!\d)", message.body):
                    return found.group()
            if time.monotonic() > deadline:
                break
            time.sleep(POLL_INTERVAL_S)
        raise DemoFailed(
            f"no SMS to {phone} in the fake gateway's outbox: is DENI_DATABASE_URL the "
            "server's database?"
        )

    return read_code


def _ask_code(phone: str) -> str:
    return str(typer.prompt(f"The code Deni sent {phone} by SMS"))


def _headers(user: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {user['token']}", "Idempotency-Key": str(uuid.uuid4())}


def _post(api: httpx.Client, user: dict[str, Any], path: str, body: object) -> dict[str, Any]:
    response = api.post(path, json=body, headers=_headers(user))
    _check(response)
    answer: dict[str, Any] = response.json()
    return answer


def _get(api: httpx.Client, user: dict[str, Any], path: str) -> dict[str, Any]:
    response = api.get(path, headers=_headers(user))
    _check(response)
    answer: dict[str, Any] = response.json()
    return answer


def _check(response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise DemoFailed(f"{response.request.method} {response.request.url.path}: {response.text}")


def _balance(api: httpx.Client, user: dict[str, Any]) -> str:
    return str(_get(api, user, "/wallet")["balance"])


def _wait_for_request(
    api: httpx.Client, user: dict[str, Any], request_id: str, say: Callable[[str], None]
) -> dict[str, Any]:
    def settled() -> dict[str, Any] | None:
        requests = _get(api, user, "/mpesa/requests")["requests"]
        found = next((r for r in requests if r["id"] == request_id), None)
        return found if found and found["state"] in ("succeeded", "failed") else None

    return _succeeded(_poll(settled), say)


def _wait_for_purpose(
    api: httpx.Client, user: dict[str, Any], purpose: str, say: Callable[[str], None]
) -> dict[str, Any]:
    def settled() -> dict[str, Any] | None:
        requests = _get(api, user, "/mpesa/requests")["requests"]
        done = [r for r in requests if r["purpose"] == purpose]
        return done[0] if done and done[0]["state"] in ("succeeded", "failed") else None

    return _succeeded(_poll(settled), say)


def _poll(settled: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S_MAX
    for _ in range(int(WAIT_S_MAX / POLL_INTERVAL_S) + 1):
        found = settled()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            break
        time.sleep(POLL_INTERVAL_S)
    raise DemoFailed(f"M-PESA did not answer within {WAIT_S_MAX:.0f} s (is the worker running?)")


def _succeeded(request: dict[str, Any], say: Callable[[str], None]) -> dict[str, Any]:
    if request["state"] != "succeeded":
        raise DemoFailed(f"M-PESA said no: {request['result_code']} {request['result_desc']}")
    say(f"  M-PESA confirmed: {request['state']}, receipt {request['receipt']}")
    return request
