"""Africa's Talking's end-of-session notification (POST /ussd/events): the session's state goes
at once, a dropped session can still be resumed, each status is counted, and the same gate as
the hops applies."""

from __future__ import annotations

from fastapi.testclient import TestClient
from tests.support.builders import next_phone
from tests.support.ussd import CODE, TOKEN, Phone, client_with, register

from deni.bootstrap import Deni
from deni.config import Settings
from deni.entrypoints.ussd.engine import session_key


def _ended(client: TestClient, phone: Phone, status: str, path: str = "/ussd/events") -> int:
    form = {
        "date": "2026-11-26 09:00:00",
        "sessionId": phone.session_id,
        "serviceCode": CODE,
        "networkCode": "63902",
        "phoneNumber": "+" + phone.msisdn,
        "status": status,
        "cost": "KES 0.10",
        "durationInMillis": "12345",
        "hopsCount": "3",
        "input": "*".join(phone.entries),
        "lastAppResponse": phone.last,
        "errorMessage": "",
    }
    return client.post(path, data=form).status_code


def _stored(deni: Deni, session_id: str) -> str | None:
    [value] = deni.sessions.get_many([session_key(session_id)], now=deni.clock.now())
    return value


def test_an_ended_session_is_forgotten_at_once(client: TestClient, deni: Deni) -> None:
    phone = Phone(client, next_phone())
    register(phone, name="Ended Esther", pin="3591")
    assert _stored(deni, phone.session_id) is not None
    assert _ended(client, phone, "Success") == 200
    assert _stored(deni, phone.session_id) is None


def test_a_dropped_session_can_still_be_resumed(client: TestClient, deni: Deni) -> None:
    lender, borrower = Phone(client, next_phone()), Phone(client, next_phone())
    register(lender, name="Lender Lucy", pin="3591")
    register(borrower, name="Borrower Ben", pin="5683")
    borrower.dial()
    borrower.send("1", lender.number, "1000")  # the network drops it on "days until due"
    assert _ended(client, borrower, "Incomplete") == 200
    assert "Continue where you left off?" in borrower.dial()


def test_each_status_is_counted_for_metrics(client: TestClient) -> None:
    phone = Phone(client, next_phone())
    phone.dial()
    assert _ended(client, phone, "Failed") == 200
    assert _ended(client, phone, "Something new") == 200
    metrics = client.get("/metrics").text
    assert 'ussd_sessions_ended_total{status="Failed"} 1.0' in metrics
    assert 'ussd_sessions_ended_total{status="other"} 1.0' in metrics


def test_a_notification_without_a_session_id_is_a_clear_400(client: TestClient) -> None:
    response = client.post("/ussd/events", data={"status": "Success"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_session_id"
    garbage = client.post(
        "/ussd/events", content=b"\xff\xfe", headers={"content-type": "text/plain"}
    )
    assert garbage.status_code == 400


def test_with_a_token_only_the_secret_events_path_is_answered(settings: Settings) -> None:
    with client_with(settings, ussd_token=TOKEN) as client:
        phone = Phone(client, next_phone())
        phone.session_id = "ATUid_gate_events"
        assert _ended(client, phone, "Success") == 404
        assert _ended(client, phone, "Success", path=f"/ussd/{TOKEN}/events") == 200
