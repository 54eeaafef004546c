"""Pull Transactions: registration, then the payments received in a window, page by page."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from deni.sandbox import pull
from deni.sandbox.formats import EAT
from tests.support.sandbox import PHONE, Daraja

REGISTER = "/pulltransactions/v1/register"
QUERY = "/pulltransactions/v1/query"
OTHER_PHONE = "254722000111"
REQUEST_ID = re.compile(r"[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\d{7}")


def register_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "ShortCode": "600000",
        "RequestType": "Pull",
        "NominatedNumber": "0722000000",
        "CallBackURL": "https://deni.example/hooks/pull",
    }
    return {**body, **overrides}


def register(daraja: Daraja) -> None:
    response = daraja.post(REGISTER, register_body())
    assert response.status_code == 200, response.text


def nairobi(moment: datetime) -> str:
    return moment.astimezone(EAT).strftime("%Y-%m-%d %H:%M:%S")


def sandbox_now(daraja: Daraja) -> datetime:
    answer = daraja.http.post("/sandbox/clock/advance", json={"seconds": 0}).json()
    return datetime.fromisoformat(answer["now"])


def query_body(start: datetime, end: datetime, offset: Any = "0") -> dict[str, Any]:
    return {
        "ShortCode": "600000",
        "StartDate": nairobi(start),
        "EndDate": nairobi(end),
        "OffSetValue": offset,
    }


def recent(daraja: Daraja, offset: Any = "0") -> httpx.Response:
    """Everything from an hour ago to a minute from now."""
    now = sandbox_now(daraja)
    return daraja.post(
        QUERY, query_body(now - timedelta(hours=1), now + timedelta(minutes=1), offset)
    )


def rows(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    [page] = response.json()["Response"]
    assert isinstance(page, list)
    return page


def completed_at(daraja: Daraja, transaction_id: str) -> datetime:
    [found] = [t for t in daraja.admin.transactions() if t["transaction_id"] == transaction_id]
    return datetime.fromisoformat(found["completed_at"])


def error_message(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    message: str = response.json()["errorMessage"]
    return message


# Registration ------------------------------------------------------------------------------


def test_register_once_then_already_registered(daraja: Daraja) -> None:
    first = daraja.post(REGISTER, register_body()).json()
    again = daraja.post(REGISTER, register_body(NominatedNumber="254722000000")).json()

    assert first["ResponseStatus"] == "1000"
    assert first["ResponseDescription"] == "Shortcode Registered Successfully"
    assert first["ShortCode"] == "600000"
    assert REQUEST_ID.fullmatch(first["ResponseRefID"])
    assert again["ResponseStatus"] == "1001"
    assert again["ResponseDescription"] == "Shortcode already Registered"
    assert again["ResponseRefID"] != first["ResponseRefID"]


def test_reset_forgets_the_registration(daraja: Daraja) -> None:
    register(daraja)
    daraja.admin.reset()

    assert daraja.post(REGISTER, register_body()).json()["ResponseStatus"] == "1000"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ShortCode", "174379"),
        ("RequestType", "pull"),
        ("NominatedNumber", "0622000000"),
        ("NominatedNumber", "72200000"),
        ("CallBackURL", "not a url"),
        ("CallBackURL", "https://deni.example/mpesa/pull"),
    ],
)
def test_register_refuses_bad_fields(daraja: Daraja, field: str, value: str) -> None:
    response = daraja.post(REGISTER, register_body(**{field: value}))

    assert error_message(response) == f"Bad Request - Invalid {field}"
    assert daraja.post(REGISTER, register_body()).json()["ResponseStatus"] == "1000"


def test_register_needs_a_token(daraja: Daraja) -> None:
    response = daraja.http.post(REGISTER, json=register_body())

    assert response.status_code == 401
    assert response.json()["errorCode"] == "404.001.04"


# Querying ----------------------------------------------------------------------------------


def test_query_before_registering_is_refused(daraja: Daraja) -> None:
    daraja.admin.pay_paybill(PHONE, 100, "LN0001")

    response = recent(daraja)

    assert response.status_code == 400
    assert response.json()["errorCode"] == "400.003.01"
    assert response.json()["errorMessage"] == "Shortcode not registered for Pull"


def test_c2b_and_stk_payments_are_listed_with_their_details(daraja: Daraja) -> None:
    register(daraja)
    daraja.admin.set_customer(PHONE, first_name="AMINA", middle_name="", last_name="ODHIAMBO")
    daraja.admin.set_customer(OTHER_PHONE, first_name="JUMA", middle_name="K", last_name="OTIENO")
    paid = daraja.admin.pay_paybill(PHONE, 168, "LN0001")
    daraja.stk(OTHER_PHONE, amount=250, AccountReference="LN0002")
    daraja.admin.flush()
    [stk] = daraja.admin.transactions(OTHER_PHONE)

    response = recent(daraja)

    assert response.json()["ResponseCode"] == "1000"
    assert response.json()["ResponseMessage"] == "Success"
    c2b_row, stk_row = rows(response)
    assert c2b_row == {
        "transactionId": paid["TransID"],
        "trxDate": c2b_row["trxDate"],  # checked on its own below
        "msisdn": "2547 ***** 678",
        "sender": "AMINA ODHIAMBO",
        "transactiontype": "c2b-pay-bill-debit",
        "billreference": "LN0001",
        "amount": "168.00",
        "organizationname": "Deni Sandbox",
    }
    assert stk_row["transactionId"] == stk["transaction_id"]
    assert stk_row["billreference"] == "LN0002"
    assert stk_row["amount"] == "250.00"
    assert stk_row["sender"] == "JUMA K OTIENO"
    assert stk_row["msisdn"] == "2547 ***** 111"
    assert stk_row["transactiontype"] == "c2b-pay-bill-debit"


def test_trx_date_is_the_completion_time_in_utc(daraja: Daraja) -> None:
    register(daraja)
    paid = daraja.admin.pay_paybill(PHONE, 10, "LN0001")

    [row] = rows(recent(daraja))

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row["trxDate"])
    listed = datetime.strptime(row["trxDate"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    completed = completed_at(daraja, paid["TransID"])
    assert timedelta(0) <= completed - listed < timedelta(seconds=1)


def test_a_dropped_confirmation_can_be_recovered(daraja: Daraja) -> None:
    daraja.register_c2b(validation=False)
    register(daraja)
    daraja.admin.add_fault(kind="c2b", action="drop")

    paid = daraja.admin.pay_paybill(PHONE, 100, "LN0007")
    daraja.admin.flush()

    assert daraja.hooks.bodies("/hooks/confirm") == []
    [record] = daraja.admin.callbacks("c2b_confirmation")
    assert record["state"] == "dropped"
    [row] = rows(recent(daraja))
    assert row["transactionId"] == paid["TransID"]
    assert row["billreference"] == "LN0007"


def test_only_payments_received_are_listed(daraja: Daraja) -> None:
    register(daraja)
    daraja.b2c(amount=500)
    daraja.stk(amount=100)
    daraja.stk("254700001032", amount=100)  # the customer cancels: nothing is received
    daraja.admin.flush()

    listed = rows(recent(daraja))

    assert [row["amount"] for row in listed] == ["100.00"]
    assert listed[0]["msisdn"] == "2547 ***** 678"


def test_a_reversed_payment_is_no_longer_listed(daraja: Daraja) -> None:
    register(daraja)
    kept = daraja.admin.pay_paybill(PHONE, 20, "LN0001")
    reversed_ = daraja.admin.pay_paybill(PHONE, 30, "LN0002")
    body = daraja.initiator_body(
        "TransactionReversal",
        TransactionID=reversed_["TransID"],
        Amount="30",
        ReceiverParty="600000",
        RecieverIdentifierType="11",
    )
    del body["PartyA"], body["IdentifierType"]
    assert daraja.post("/mpesa/reversal/v1/request", body).status_code == 200
    daraja.admin.flush()

    assert [row["transactionId"] for row in rows(recent(daraja))] == [kept["TransID"]]


def test_the_window_bounds_the_rows(daraja: Daraja) -> None:
    register(daraja)
    early = daraja.admin.pay_paybill(PHONE, 10, "EARLY")
    daraja.admin.advance_clock(120)
    late = daraja.admin.pay_paybill(PHONE, 20, "LATE")
    early_at = completed_at(daraja, early["TransID"])
    late_at = completed_at(daraja, late["TransID"])

    late_only = daraja.post(QUERY, query_body(late_at - timedelta(seconds=60), late_at))
    early_only = daraja.post(QUERY, query_body(early_at, early_at + timedelta(seconds=60)))
    both = daraja.post(QUERY, query_body(early_at, late_at))
    before = daraja.post(
        QUERY, query_body(early_at - timedelta(minutes=5), early_at - timedelta(seconds=1))
    )

    assert [row["billreference"] for row in rows(late_only)] == ["LATE"]
    assert [row["billreference"] for row in rows(early_only)] == ["EARLY"]
    assert [row["billreference"] for row in rows(both)] == ["EARLY", "LATE"]
    assert before.json()["ResponseCode"] == "1001"


def test_pages_follow_the_offset_then_run_out(
    daraja: Daraja, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sandbox serves from a thread of this process, so it sees the smaller page.
    monkeypatch.setattr(pull, "PULL_PAGE_ROWS", 2)
    register(daraja)
    paid = [daraja.admin.pay_paybill(PHONE, 10 + n, f"LN{n}")["TransID"] for n in range(5)]
    ordered = sorted(paid, key=lambda receipt: (completed_at(daraja, receipt), receipt))

    pages = [rows(recent(daraja, offset)) for offset in ("0", 2, "4")]
    past_the_end = recent(daraja, "5").json()

    assert [len(page) for page in pages] == [2, 2, 1]
    assert [row["transactionId"] for page in pages for row in page] == ordered
    assert past_the_end["ResponseCode"] == "1001"
    assert past_the_end["ResponseMessage"] == "No records found"
    assert past_the_end["Response"] == [[]]


def test_a_page_holds_at_most_a_hundred_rows(daraja: Daraja) -> None:
    register(daraja)
    for n in range(pull.PULL_PAGE_ROWS + 1):
        daraja.admin.pay_paybill(PHONE, 1, f"LN{n}")

    assert len(rows(recent(daraja))) == 100
    assert len(rows(recent(daraja, "100"))) == 1


def test_nothing_received_answers_1001(daraja: Daraja) -> None:
    register(daraja)

    answer = recent(daraja).json()

    assert answer["ResponseCode"] == "1001"
    assert answer["Response"] == [[]]
    assert answer["ResponseRefID"]


def test_start_more_than_48_hours_ago_is_refused(daraja: Daraja) -> None:
    register(daraja)
    now = sandbox_now(daraja)

    too_old = daraja.post(QUERY, query_body(now - timedelta(hours=48, minutes=1), now))
    just_inside = daraja.post(QUERY, query_body(now - timedelta(hours=47, minutes=59), now))

    assert error_message(too_old) == "Bad Request - Invalid StartDate"
    assert just_inside.status_code == 200


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"StartDate": "2020/08/04 08:36:00"}, "StartDate"),
        ({"StartDate": "yesterday"}, "StartDate"),
        ({"EndDate": "2020-08-16 10:10:000"}, "EndDate"),
        ({"EndDate": 20200816}, "EndDate"),
        ({"OffSetValue": "-1"}, "OffSetValue"),
        ({"OffSetValue": "1.5"}, "OffSetValue"),
        ({"OffSetValue": 1_000_001}, "OffSetValue"),
        ({"OffSetValue": True}, "OffSetValue"),
        ({"ShortCode": "600001"}, "ShortCode"),
    ],
)
def test_bad_query_fields_are_refused(
    daraja: Daraja, overrides: dict[str, Any], field: str
) -> None:
    register(daraja)
    now = sandbox_now(daraja)
    body = {**query_body(now - timedelta(hours=1), now), **overrides}

    assert error_message(daraja.post(QUERY, body)) == f"Bad Request - Invalid {field}"


def test_start_after_end_is_refused(daraja: Daraja) -> None:
    register(daraja)
    now = sandbox_now(daraja)

    response = daraja.post(QUERY, query_body(now, now - timedelta(minutes=1)))

    assert error_message(response) == "Bad Request - Invalid EndDate"


def test_largest_offset_is_accepted(daraja: Daraja) -> None:
    register(daraja)

    assert recent(daraja, 1_000_000).json()["ResponseCode"] == "1001"


# Faults ------------------------------------------------------------------------------------


def test_http_500_on_pull(daraja: Daraja) -> None:
    register(daraja)
    daraja.admin.pay_paybill(PHONE, 10, "LN0001")
    daraja.admin.add_fault(kind="pull", action="http_500")

    failed = recent(daraja)
    retried = recent(daraja)

    assert failed.status_code == 500
    assert failed.json()["errorCode"] == "500.003.1001"
    assert len(rows(retried)) == 1


def test_http_500_on_registration_registers_nothing(daraja: Daraja) -> None:
    daraja.admin.add_fault(kind="pull_register", action="http_500")

    failed = daraja.post(REGISTER, register_body())

    assert failed.status_code == 500
    assert daraja.post(REGISTER, register_body()).json()["ResponseStatus"] == "1000"


def test_a_processed_registration_whose_answer_was_lost_is_already_registered(
    daraja: Daraja,
) -> None:
    daraja.admin.add_fault(kind="pull_register", action="http_429", processed=True)

    lost = daraja.post(REGISTER, register_body())

    assert lost.status_code == 429
    assert daraja.post(REGISTER, register_body()).json()["ResponseStatus"] == "1001"


def test_garbage_on_pull(daraja: Daraja) -> None:
    register(daraja)
    daraja.admin.add_fault(kind="pull", action="garbage", http_status=502)

    response = recent(daraja)

    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
