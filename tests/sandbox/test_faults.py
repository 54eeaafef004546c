"""Faults queued through the admin API: answers, outcomes and the callbacks' journey."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from deni.sandbox.app import SandboxConfig
from tests.support.sandbox import PHONE, Daraja
from tests.support.waiting import wait_until

PUSH = "/mpesa/stkpush/v1/processrequest"


def checkout_ids(daraja: Daraja) -> list[str]:
    return [
        b["Body"]["stkCallback"]["CheckoutRequestID"] for b in daraja.hooks.bodies("/hooks/stk")
    ]


def test_result_code_fault_for_one_phone(daraja: Daraja) -> None:
    daraja.admin.add_fault(kind="stk", phone=PHONE, action="result_code", result_code=1032)
    daraja.stk(PHONE)
    daraja.stk("254722000000")
    daraja.admin.flush()

    codes = {b["Body"]["stkCallback"]["ResultCode"] for b in daraja.hooks.bodies("/hooks/stk")}
    assert codes == {1032, 0}
    assert daraja.admin.customer(PHONE)["balance_cents"] == 100_000_00


def test_faults_run_out_after_their_times(daraja: Daraja) -> None:
    daraja.admin.add_fault(kind="b2c", action="result_code", result_code="2040", times=2)
    for n in range(3):
        daraja.b2c(originator_id=f"try-{n}")
    daraja.admin.flush()

    codes = [b["Result"]["ResultCode"] for b in daraja.hooks.bodies("/hooks/b2c-result")]
    assert codes == [2040, 2040, 0]
    assert daraja.http.get("/sandbox/faults").json()["faults"] == []


def test_http_500_not_processed_does_nothing(daraja: Daraja) -> None:
    daraja.admin.add_fault(kind="stk", action="http_500")

    response = daraja.post(PUSH, daraja.stk_body())
    daraja.admin.flush()

    assert response.status_code == 500
    assert response.json()["errorCode"] == "500.003.1001"
    assert daraja.hooks.bodies("/hooks/stk") == []
    assert daraja.post(PUSH, daraja.stk_body()).status_code == 200


def test_http_500_processed_loses_the_answer_but_does_the_work(daraja: Daraja) -> None:
    daraja.admin.add_fault(kind="b2c", action="http_500", processed=True)

    response = daraja.post("/mpesa/b2c/v3/paymentrequest", daraja.b2c_body(amount=100))
    daraja.admin.flush()

    assert response.status_code == 500
    assert len(daraja.hooks.bodies("/hooks/b2c-result")) == 1
    assert daraja.admin.customer(PHONE)["balance_cents"] == 100_000_00 + 100_00


def test_http_429_spike_arrest_on_any_kind(daraja: Daraja) -> None:
    token = daraja.new_token()
    daraja.admin.add_fault(kind="any", action="http_429", times=2)

    push = daraja.post(PUSH, daraja.stk_body(), token=token)
    oauth = daraja.http.get("/oauth/v1/generate", params={"grant_type": "client_credentials"})

    assert push.status_code == 429
    assert push.json()["errorCode"] == "429.001.01"
    assert oauth.status_code == 429


def test_invalid_token_fault_refuses_a_good_token_once(daraja: Daraja) -> None:
    daraja.admin.add_fault(kind="stk", action="invalid_token")

    first = daraja.post(PUSH, daraja.stk_body())
    second = daraja.post(PUSH, daraja.stk_body())

    assert first.status_code == 401
    assert first.json()["errorCode"] == "404.001.03"
    assert second.status_code == 200


def test_garbage_body(daraja: Daraja) -> None:
    daraja.admin.add_fault(kind="stk", action="garbage", http_status=502)

    response = daraja.post(PUSH, daraja.stk_body())

    assert response.status_code == 502
    with pytest.raises(ValueError, match="Expecting value"):
        response.json()


def test_oauth_faults(daraja: Daraja) -> None:
    daraja.admin.add_fault(kind="oauth", action="http_500")

    response = daraja.http.get(
        "/oauth/v1/generate",
        params={"grant_type": "client_credentials"},
        auth=("sandbox-key", "sandbox-secret"),
    )

    assert response.status_code == 500
    daraja.new_token()


def test_slow_answer_still_does_the_work(daraja: Daraja) -> None:
    daraja.admin.add_fault(kind="stk", action="slow", delay_s=0.3)

    with pytest.raises(httpx.ReadTimeout):
        daraja.http.post(
            PUSH,
            json=daraja.stk_body(),
            headers={"Authorization": f"Bearer {daraja.new_token()}"},
            timeout=0.1,
        )
    # The sandbox did the work before it answered late: its callback comes (no delay here).
    wait_until(lambda: daraja.hooks.bodies("/hooks/stk"), what="the slow push's callback")
    daraja.admin.flush()

    assert len(daraja.hooks.bodies("/hooks/stk")) == 1


def test_duplicate_sends_the_same_callback_twice(daraja: Daraja) -> None:
    daraja.admin.add_fault(kind="stk", action="duplicate", copies=2)
    daraja.stk()
    daraja.admin.flush()

    first, second = daraja.hooks.bodies("/hooks/stk")
    assert first == second
    assert len(daraja.admin.transactions()) == 1


def test_drop_completes_the_payment_without_a_callback(daraja: Daraja) -> None:
    daraja.admin.add_fault(kind="stk", action="drop")
    answer = daraja.stk(amount=100)
    daraja.admin.flush()

    assert daraja.hooks.bodies("/hooks/stk") == []
    [record] = daraja.admin.callbacks("stk")
    assert record["state"] == "dropped"
    assert daraja.admin.customer(PHONE)["balance_cents"] == 100_000_00 - 100_00
    assert daraja.stk_query(answer["CheckoutRequestID"]).json()["ResultCode"] == "0"


def test_reorder_delivers_newest_first(daraja: Daraja) -> None:
    daraja.admin.add_fault(kind="stk", action="reorder", times=3)
    sent = [daraja.stk()["CheckoutRequestID"] for _ in range(3)]
    daraja.admin.flush()

    assert checkout_ids(daraja) == list(reversed(sent))


def test_reorder_holds_until_flush_when_fewer_come(daraja: Daraja) -> None:
    daraja.admin.add_fault(kind="stk", phone=PHONE, action="reorder", times=5)
    sent = [daraja.stk()["CheckoutRequestID"] for _ in range(2)]
    # The sandbox delivers in the order callbacks fall due: once a later one for another phone
    # has come, the two above would have come before it, were they not held.
    later = daraja.stk("254722000000")["CheckoutRequestID"]
    wait_until(lambda: daraja.hooks.bodies("/hooks/stk"), what="the unheld callback")

    assert checkout_ids(daraja) == [later]
    records = daraja.admin.callbacks("stk")
    held = [
        r["state"] for r in records if r["body"]["Body"]["stkCallback"]["CheckoutRequestID"] in sent
    ]
    assert held == ["held", "held"]
    daraja.admin.flush()
    assert checkout_ids(daraja) == [later, *reversed(sent)]


def test_delay_holds_a_callback_back_until_flushed(daraja: Daraja) -> None:
    daraja.admin.add_fault(kind="stk", action="delay", delay_s=60)
    late = daraja.stk()["CheckoutRequestID"]
    on_time = daraja.stk()["CheckoutRequestID"]
    wait_until(lambda: daraja.hooks.bodies("/hooks/stk"), what="the callback on time")

    assert checkout_ids(daraja) == [on_time]
    daraja.admin.flush()
    assert checkout_ids(daraja) == [on_time, late]


def test_delay_is_real_without_flush(start_sandbox: Any) -> None:
    delay_s = 0.2
    daraja: Daraja = start_sandbox(SandboxConfig(callback_delay_s=delay_s))
    started = time.monotonic()  # before the request: the delay runs from its arrival
    daraja.stk()
    wait_until(lambda: daraja.hooks.bodies("/hooks/stk"), what="the delayed callback")

    assert time.monotonic() - started >= delay_s


def test_c2b_confirmation_faults(daraja: Daraja) -> None:
    daraja.register_c2b(validation=False)
    daraja.admin.add_fault(kind="c2b", action="duplicate")

    daraja.admin.pay_paybill(PHONE, 10, "LN1")
    daraja.admin.flush()

    assert len(daraja.hooks.bodies("/hooks/confirm")) == 2


def test_balance_timeout_sends_no_result(daraja: Daraja) -> None:
    daraja.admin.add_fault(kind="balance", action="timeout")

    daraja.post("/mpesa/accountbalance/v1/query", daraja.initiator_body("AccountBalance"))
    daraja.admin.flush()

    assert daraja.hooks.bodies("/hooks/result") == []


def test_full_queue_is_system_busy(start_sandbox: Any) -> None:
    daraja: Daraja = start_sandbox(SandboxConfig(callback_delay_s=30, pending_callbacks_max=2))
    daraja.stk()
    daraja.stk()

    response = daraja.post(PUSH, daraja.stk_body())

    assert response.status_code == 500
    assert response.json()["errorCode"] == "500.003.02"
    daraja.admin.flush()
    assert len(daraja.hooks.bodies("/hooks/stk")) == 2


@pytest.mark.parametrize(
    "spec",
    [
        {"action": "explode"},
        {"action": "drop", "kind": "nothing"},
        {"action": "drop", "times": 0},
        {"action": "delay", "delay_s": -1},
        {"action": "result_code", "result_code": [1]},
        {"action": "drop", "phone": "+254712345678"},
    ],
)
def test_bad_fault_specs_are_refused(daraja: Daraja, spec: dict[str, Any]) -> None:
    response = daraja.http.post("/sandbox/faults", json=spec)

    assert response.status_code == 400
    assert response.json()["error"]


def test_flush_without_work_returns_at_once(daraja: Daraja) -> None:
    response = daraja.http.post("/sandbox/callbacks/flush")

    assert response.json() == {"done": True, "waiting": 0}
