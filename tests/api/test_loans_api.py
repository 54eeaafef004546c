"""Loans through the HTTP API: quote, request, list, detail, approve, decline, cancel, repay,
write off; awaiting funds; penalties and allocation; expiry."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from fastapi.testclient import TestClient
from tests.fakes import ManualClock
from tests.support.api import (
    approve,
    assert_error,
    assert_ledger_whole,
    assert_nothing_written,
    balance,
    db_state,
    get_loan,
    log_in_again,
    notifications,
    request_loan,
)
from tests.support.builders import ApiUser, api_user, fund, key

from deni.bootstrap import Deni
from deni.domain.loans import LoanState
from deni.services import users

LOANS = "/api/v1/loans"
TODAY = date(2026, 11, 26)  # the Nairobi date at conftest.START
# sync_changes: the change log records the pin_locked notification (offline sync).
PIN_BOOKKEEPING = ("users", "audit_log", "audit_head", "notifications", "sync_changes")


def _post(client: TestClient, who: ApiUser, loan_id: str, action: str, body: object = None) -> Any:
    return client.post(f"{LOANS}/{loan_id}/{action}", json=body, headers=who.with_key())


def _repay(client: TestClient, borrower: ApiUser, loan_id: str, amount_cents: int) -> Any:
    body = {"amount_cents": amount_cents, "pin": borrower.pin}
    return _post(client, borrower, loan_id, "repay", body)


def _failed_pins(deni: Deni, who: ApiUser) -> int:
    return users.get_user(deni, user_id=who.user.id).session_failed_pin_attempts


def _ids(client: TestClient, who: ApiUser, **params: object) -> list[str]:
    response = client.get(LOANS, params=params, headers=who.headers)
    assert response.status_code == 200, response.text
    return [loan["id"] for loan in response.json()["loans"]]


def _pair(
    client: TestClient, deni: Deni, *, lender_funds: int = 500_000
) -> tuple[ApiUser, ApiUser]:
    lender = api_user(client, deni, name="Wanjiku Kamau")
    borrower = api_user(client, deni, name="Otieno Odhiambo")
    if lender_funds:
        fund(deni, lender.user, lender_funds)
    return lender, borrower


# --- quote ------------------------------------------------------------------------------------


def test_quote_shows_the_total_and_due_date_and_saves_nothing(
    client: TestClient, deni: Deni
) -> None:
    borrower = api_user(client, deni)
    before = db_state(deni)
    response = client.post(
        f"{LOANS}/quote",
        json={"principal_cents": 100_000, "fee_cents": 5_050, "term_days": 7},
        headers=borrower.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "principal_cents": 100_000,
        "fee_cents": 5_050,
        "total_cents": 105_050,
        "due_date": "2026-12-03",
        "term_days": 7,
        "penalty_daily_cents": 0,
        "penalty_max_cents": 0,
        "summary": "Borrow KES 1,000, repay KES 1,050.50 by 2026-12-03 (fee KES 50.50).",
    }
    assert_nothing_written(deni, before)


def test_quote_by_due_date_counts_the_days_and_caps_the_penalty(
    client: TestClient, deni: Deni
) -> None:
    borrower = api_user(client, deni)
    response = client.post(
        f"{LOANS}/quote",
        json={"principal_cents": 50_000, "penalty_daily_cents": 500, "due_date": "2027-11-26"},
        headers=borrower.headers,
    )
    assert response.status_code == 200, response.text
    quote = response.json()
    assert quote["term_days"] == 365
    assert quote["total_cents"] == 50_000
    assert quote["penalty_max_cents"] == 50_000  # in duplum


def test_today_is_the_date_in_nairobi(client: TestClient, deni: Deni, clock: ManualClock) -> None:
    borrower = api_user(client, deni)
    clock.advance(timedelta(hours=15, minutes=30))  # 21:30 UTC: 00:30 on the 27th in Nairobi
    log_in_again(deni, borrower)
    tomorrow_in_utc = {"principal_cents": 100_000, "due_date": "2026-11-27"}
    response = client.post(f"{LOANS}/quote", json=tomorrow_in_utc, headers=borrower.headers)
    assert_error(response, 422, "invalid_due_date")
    one_day = {"principal_cents": 100_000, "term_days": 1}
    response = client.post(f"{LOANS}/quote", json=one_day, headers=borrower.headers)
    assert response.json()["due_date"] == "2026-11-28"


def test_quote_needs_a_login(client: TestClient) -> None:
    response = client.post(f"{LOANS}/quote", json={"principal_cents": 100_000, "term_days": 7})
    assert_error(response, 401, "unauthorized")


# --- request ----------------------------------------------------------------------------------


def test_request_creates_a_loan_and_tells_the_lender(client: TestClient, deni: Deni) -> None:
    lender, borrower = _pair(client, deni)
    response = client.post(
        LOANS,
        json={
            "lender_phone": "+" + lender.user.phone,  # any common form of the number
            "principal_cents": 100_000,
            "fee_cents": 5_000,
            "penalty_daily_cents": 200,
            "due_date": "2026-12-10",
        },
        headers=borrower.with_key(),
    )
    assert response.status_code == 201, response.text
    loan = response.json()
    assert loan["state"] == "requested"
    assert loan["code"].startswith("DN")
    assert len(loan["code"]) == 8
    assert loan["borrower"] == {"name": "Otieno Odhiambo", "phone": borrower.user.phone}
    assert loan["lender"] == {"name": "Wanjiku Kamau", "phone": lender.user.phone}
    assert loan["principal_cents"] == 100_000
    assert loan["total_cents"] == 105_000
    assert loan["due_date"] == "2026-12-10"
    assert loan["owed"] == {
        "penalty_cents": 0,
        "fee_cents": 5_000,
        "principal_cents": 100_000,
        "total_cents": 105_000,
    }
    assert loan["overdue"] is False
    assert loan["disbursed_at"] is None
    assert loan["closed_at"] is None
    assert loan["requested_at"].startswith("2026-11-26T06:00:00")
    assert loan["expires_at"].startswith("2026-12-03T06:00:00")
    # Nothing moved yet.
    assert balance(client, lender) == 500_000
    assert balance(client, borrower) == 0
    requests = [n for n in notifications(client, lender) if n["kind"] == "loan_requested"]
    assert len(requests) == 1
    assert requests[0]["loan_id"] == loan["id"]
    assert "Otieno Odhiambo" in requests[0]["body"]
    assert loan["code"] in requests[0]["body"]
    # Both parties see it; the lender sees the same loan.
    assert get_loan(client, lender, loan["id"])["code"] == loan["code"]


def test_request_with_a_client_generated_id_is_kept(client: TestClient, deni: Deni) -> None:
    lender, borrower = _pair(client, deni)
    loan_id = "0b6c1f7e-6c2a-4d55-9b3e-3f1d2a9c8e71"
    loan = request_loan(client, borrower, lender, loan_id=loan_id)
    assert loan["id"] == loan_id
    assert get_loan(client, borrower, loan_id)["state"] == "requested"


def test_a_client_generated_id_is_stored_in_canonical_form(client: TestClient, deni: Deni) -> None:
    lender, borrower = _pair(client, deni)
    loan = request_loan(client, borrower, lender, loan_id="0B6C1F7E6C2A4D559B3E3F1D2A9C8E71")
    assert loan["id"] == "0b6c1f7e-6c2a-4d55-9b3e-3f1d2a9c8e71"
    assert get_loan(client, lender, loan["id"])["code"] == loan["code"]


def test_a_client_generated_id_must_be_a_uuid(client: TestClient, deni: Deni) -> None:
    lender, borrower = _pair(client, deni)
    before = db_state(deni)
    for loan_id in ("abc", "a/b", "0b6c1f7e-6c2a-4d55-9b3e-3f1d2a9c8e71-x", "", 42):
        body = {"lender_phone": lender.user.phone, "principal_cents": 100_000, "term_days": 7}
        response = client.post(
            LOANS, json={**body, "loan_id": loan_id}, headers=borrower.with_key()
        )
        assert_error(response, 422, "validation_failed")
    assert_nothing_written(deni, before)


def test_a_client_id_another_borrower_used_is_refused(client: TestClient, deni: Deni) -> None:
    lender, borrower = _pair(client, deni)
    other = api_user(client, deni, name="Other")
    loan_id = "0b6c1f7e-6c2a-4d55-9b3e-3f1d2a9c8e71"
    request_loan(client, borrower, lender, loan_id=loan_id)
    before = db_state(deni)
    response = client.post(
        LOANS,
        json={
            "lender_phone": lender.user.phone,
            "principal_cents": 100_000,
            "term_days": 7,
            "loan_id": loan_id,
        },
        headers=other.with_key(),
    )
    assert_error(response, 409, "loan_id_taken")
    assert_nothing_written(deni, before)


# --- list and detail --------------------------------------------------------------------------


def test_list_filters_by_role_state_and_overdue(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    amina = api_user(client, deni, name="Amina")
    baraka = api_user(client, deni, name="Baraka")
    chebet = api_user(client, deni, name="Chebet")
    fund(deni, baraka.user, 500_000)
    borrowed_active = request_loan(client, amina, baraka, term_days=3)["id"]
    approve(client, baraka, borrowed_active)
    clock.advance(timedelta(minutes=1))
    borrowed_waiting = request_loan(client, amina, chebet, term_days=30)["id"]
    clock.advance(timedelta(minutes=1))
    lent_declined = request_loan(client, baraka, amina, term_days=30)["id"]
    assert _post(client, amina, lent_declined, "decline").status_code == 200

    # Newest first.
    assert _ids(client, amina) == [lent_declined, borrowed_waiting, borrowed_active]
    assert _ids(client, amina, role="any") == [lent_declined, borrowed_waiting, borrowed_active]
    assert _ids(client, amina, role="borrower") == [borrowed_waiting, borrowed_active]
    assert _ids(client, amina, role="lender") == [lent_declined]
    assert _ids(client, amina, state="active") == [borrowed_active]
    assert _ids(client, amina, state=["requested", "declined"]) == [
        lent_declined,
        borrowed_waiting,
    ]
    assert _ids(client, amina, role="borrower", state="declined") == []
    assert _ids(client, amina, limit=1, offset=1) == [borrowed_waiting]
    assert _ids(client, amina, offset=3) == []
    # Others see only loans they are part of.
    assert _ids(client, chebet) == [borrowed_waiting]
    assert _ids(client, baraka, role="lender") == [borrowed_active]

    assert _ids(client, amina, overdue="true") == []
    clock.advance(timedelta(days=4))  # the active loan was due 3 days after it was made
    log_in_again(deni, amina)
    assert _ids(client, amina, overdue="true") == [borrowed_active]
    assert _ids(client, amina, overdue="false") == [lent_declined, borrowed_waiting]
    overdue = client.get(LOANS, params={"overdue": "true"}, headers=amina.headers).json()
    assert overdue["loans"][0]["overdue"] is True
    assert overdue["loans"][0]["days_overdue"] == 1
    assert overdue["loans"][0]["state"] == "active"  # overdue is active past the due date


def test_overdue_filter_is_applied_before_paging(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    lender, borrower = _pair(client, deni)
    late = request_loan(client, borrower, lender, term_days=1)["id"]
    approve(client, lender, late)
    clock.advance(timedelta(minutes=1))
    for _ in range(3):  # newer loans, none overdue, fill the first pages
        newer = request_loan(
            client, borrower, lender, principal_cents=1_000, fee_cents=0, term_days=30
        )
        approve(client, lender, newer["id"])
    clock.advance(timedelta(days=2))
    log_in_again(deni, borrower, lender)
    assert _ids(client, borrower, overdue="true", limit=1) == [late]
    assert _ids(client, borrower, overdue="true", limit=1, offset=1) == []
    assert _ids(client, borrower, overdue="true", state="requested") == []
    assert _ids(client, borrower, overdue="true", state=["requested", "active"]) == [late]
    assert _ids(client, lender, overdue="true", role="lender") == [late]
    assert _ids(client, lender, overdue="true", role="borrower") == []
    assert len(_ids(client, borrower, overdue="false", limit=2)) == 2
    assert len(_ids(client, borrower, overdue="false", limit=10, offset=1)) == 2


def test_detail_lists_repayments_newest_first(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    lender, borrower = _pair(client, deni)
    loan = request_loan(client, borrower, lender)
    approve(client, lender, loan["id"])
    assert get_loan(client, borrower, loan["id"])["repayments"] == []
    assert _repay(client, borrower, loan["id"], 3_000).status_code == 200
    clock.advance(timedelta(hours=1))
    log_in_again(deni, borrower, lender)
    assert _repay(client, borrower, loan["id"], 10_000).status_code == 200

    detail = get_loan(client, lender, loan["id"])  # the lender sees them too
    payments = [
        {k: r[k] for k in ("amount_cents", "penalty_cents", "fee_cents", "principal_cents")}
        for r in detail["repayments"]
    ]
    assert payments == [
        {"amount_cents": 10_000, "penalty_cents": 0, "fee_cents": 2_000, "principal_cents": 8_000},
        {"amount_cents": 3_000, "penalty_cents": 0, "fee_cents": 3_000, "principal_cents": 0},
    ]
    assert all(r["channel"] == "api" for r in detail["repayments"])
    assert detail["owed"] == {
        "penalty_cents": 0,
        "fee_cents": 0,
        "principal_cents": 92_000,
        "total_cents": 92_000,
    }


def test_list_refuses_bad_filters(client: TestClient, deni: Deni) -> None:
    owner = api_user(client, deni)
    bad: list[tuple[dict[str, object], str]] = [
        ({"state": "lost"}, "invalid_state"),
        ({"state": ["active", "ACTIVE"]}, "invalid_state"),
        ({"role": "banker"}, "validation_failed"),
        ({"overdue": "maybe"}, "validation_failed"),
        ({"limit": 0}, "validation_failed"),
        ({"limit": 101}, "validation_failed"),
        ({"offset": -1}, "validation_failed"),
        ({"offset": 10**20}, "validation_failed"),
    ]
    for params, code in bad:
        assert_error(client.get(LOANS, params=params, headers=owner.headers), 422, code)


# --- approve and awaiting funds ---------------------------------------------------------------


def test_approve_moves_the_principal_in_one_entry(client: TestClient, deni: Deni) -> None:
    lender, borrower = _pair(client, deni)
    loan = request_loan(client, borrower, lender)
    approved = approve(client, lender, loan["id"])
    assert approved["state"] == "active"
    assert approved["disbursed_at"] is not None
    assert balance(client, lender) == 400_000
    assert balance(client, borrower) == 100_000
    kinds = [n["kind"] for n in notifications(client, borrower)]
    assert "loan_disbursed_mpesa" in kinds  # on its way to M-PESA, the default
    assert_ledger_whole(deni)


def test_approve_with_a_wrong_pin_moves_nothing(client: TestClient, deni: Deni) -> None:
    lender, borrower = _pair(client, deni)
    loan = request_loan(client, borrower, lender)
    before = db_state(deni, ignore=PIN_BOOKKEEPING)
    assert_error(_post(client, lender, loan["id"], "approve", {"pin": "9999"}), 401, "wrong_pin")
    assert_nothing_written(deni, before, ignore=PIN_BOOKKEEPING)
    assert get_loan(client, lender, loan["id"])["state"] == "requested"


def test_a_locked_lender_cannot_approve_even_with_the_right_pin(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    lender, borrower = _pair(client, deni)
    loan = request_loan(client, borrower, lender)
    for code in ("wrong_pin", "wrong_pin_last_try"):
        assert_error(_post(client, lender, loan["id"], "approve", {"pin": "0000"}), 401, code)
    third = _post(client, lender, loan["id"], "approve", {"pin": "0000"})
    assert_error(third, 423, "account_locked")
    # Whoever held the session could not prove the PIN: it ended with the lock, and signing
    # in again is refused until the lock's 15 minutes are over, even with the right PIN.
    before = db_state(deni)
    right = _post(client, lender, loan["id"], "approve", {"pin": lender.pin})
    assert_error(right, 401, "session_ended")
    sign_in = {"phone": lender.user.phone, "pin": lender.pin}
    assert_error(client.post("/api/v1/auth/login", json=sign_in), 423, "account_locked")
    assert_nothing_written(deni, before)
    clock.advance(timedelta(minutes=15))
    log_in_again(deni, lender, borrower)
    assert approve(client, lender, loan["id"])["state"] == "active"


def test_a_short_lender_approves_and_the_loan_waits_for_funds(
    client: TestClient, deni: Deni
) -> None:
    lender, borrower = _pair(client, deni, lender_funds=30_000)
    loan = request_loan(client, borrower, lender)
    waiting = approve(client, lender, loan["id"])
    assert waiting["state"] == "approved"
    assert waiting["disbursed_at"] is None
    assert balance(client, lender) == 30_000
    assert balance(client, borrower) == 0
    kinds = [n["kind"] for n in notifications(client, borrower)]
    assert "loan_awaiting_funds" in kinds
    assert not [k for k in kinds if k.startswith("loan_disbursed")]

    fund(deni, lender.user, 50_000)  # still short: 80,000 < 100,000
    assert get_loan(client, borrower, loan["id"])["state"] == "approved"
    fund(deni, lender.user, 25_000)  # now 105,000
    funded = get_loan(client, borrower, loan["id"])
    assert funded["state"] == "active"
    assert funded["disbursed_at"] is not None
    assert balance(client, lender) == 5_000
    assert balance(client, borrower) == 100_000
    assert "loan_disbursed_mpesa" in [n["kind"] for n in notifications(client, borrower)]
    assert_ledger_whole(deni)


def test_a_borrower_may_cancel_while_the_loan_awaits_funds(client: TestClient, deni: Deni) -> None:
    lender, borrower = _pair(client, deni, lender_funds=0)
    loan = request_loan(client, borrower, lender)
    assert approve(client, lender, loan["id"])["state"] == "approved"
    cancelled = _post(client, borrower, loan["id"], "cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled"
    fund(deni, lender.user, 200_000)
    assert get_loan(client, lender, loan["id"])["state"] == "cancelled"
    assert balance(client, lender) == 200_000  # the money stayed with the lender
    assert balance(client, borrower) == 0


def test_an_approval_that_is_never_funded_expires(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    lender, borrower = _pair(client, deni, lender_funds=0)
    loan = request_loan(client, borrower, lender)
    assert approve(client, lender, loan["id"])["state"] == "approved"
    clock.advance(timedelta(days=7))
    fund(deni, lender.user, 200_000)  # too late: the approval lapsed
    log_in_again(deni, lender, borrower)
    assert get_loan(client, borrower, loan["id"])["state"] == "expired"
    assert balance(client, lender) == 200_000
    assert balance(client, borrower) == 0
    assert "loan_expired" in [n["kind"] for n in notifications(client, borrower)]


def test_money_reaching_an_overdue_borrower_pays_the_loan_first(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    lender, borrower = _pair(client, deni)
    loan = request_loan(client, borrower, lender)
    approve(client, lender, loan["id"])
    assert _repay(client, borrower, loan["id"], 100_000).status_code == 200  # 5,000 still owed
    clock.advance(timedelta(days=8))  # a day late
    fund(deni, borrower.user, 8_000)
    log_in_again(deni, lender, borrower)
    detail = get_loan(client, borrower, loan["id"])
    assert detail["state"] == "repaid"
    assert detail["repayments"][0]["channel"] == "system"
    assert detail["repayments"][0]["amount_cents"] == 5_000
    assert balance(client, borrower) == 3_000
    assert balance(client, lender) == 505_000


def test_an_unanswered_request_expires(client: TestClient, deni: Deni, clock: ManualClock) -> None:
    lender, borrower = _pair(client, deni)
    loan = request_loan(client, borrower, lender)
    clock.advance(timedelta(days=7))
    log_in_again(deni, borrower, lender)
    response = _post(client, lender, loan["id"], "approve", {"pin": lender.pin})
    assert_error(response, 409, "loan_expired")
    assert get_loan(client, borrower, loan["id"])["state"] == "expired"
    assert balance(client, lender) == 500_000
    assert balance(client, borrower) == 0


# --- decline and cancel -----------------------------------------------------------------------


def test_decline_closes_the_request_and_tells_the_borrower(client: TestClient, deni: Deni) -> None:
    lender, borrower = _pair(client, deni)
    loan = request_loan(client, borrower, lender)
    declined = _post(client, lender, loan["id"], "decline")
    assert declined.status_code == 200, declined.text
    assert declined.json()["state"] == "declined"
    assert declined.json()["closed_at"] is not None
    assert "loan_declined" in [n["kind"] for n in notifications(client, borrower)]
    before = db_state(deni)
    assert_error(_post(client, lender, loan["id"], "decline"), 409, "invalid_transition")
    assert_error(_post(client, borrower, loan["id"], "cancel"), 409, "invalid_transition")
    approve_late = _post(client, lender, loan["id"], "approve", {"pin": lender.pin})
    assert_error(approve_late, 409, "invalid_transition")
    assert_nothing_written(deni, before)
    assert balance(client, lender) == 500_000


def test_decline_accepts_an_empty_json_object(client: TestClient, deni: Deni) -> None:
    lender, borrower = _pair(client, deni)
    loan = request_loan(client, borrower, lender)
    assert _post(client, lender, loan["id"], "decline", {}).json()["state"] == "declined"


def test_cancel_withdraws_a_request_and_tells_the_lender(client: TestClient, deni: Deni) -> None:
    lender, borrower = _pair(client, deni)
    loan = request_loan(client, borrower, lender)
    cancelled = _post(client, borrower, loan["id"], "cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled"
    assert "loan_cancelled" in [n["kind"] for n in notifications(client, lender)]


def test_an_active_loan_cannot_be_cancelled_or_declined(client: TestClient, deni: Deni) -> None:
    lender, borrower = _pair(client, deni)
    loan = request_loan(client, borrower, lender)
    approve(client, lender, loan["id"])
    before = db_state(deni)
    assert_error(_post(client, borrower, loan["id"], "cancel"), 409, "invalid_transition")
    assert_error(_post(client, lender, loan["id"], "decline"), 409, "invalid_transition")
    again = _post(client, lender, loan["id"], "approve", {"pin": lender.pin})
    assert_error(again, 409, "invalid_transition")
    assert_nothing_written(deni, before)


# --- repay ------------------------------------------------------------------------------------


def test_a_partial_repayment_after_the_due_date_pays_penalty_then_fee_then_principal(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    lender, borrower = _pair(client, deni)
    loan = request_loan(client, borrower, lender, penalty_daily_cents=1_000)  # due 2026-12-03
    approve(client, lender, loan["id"])
    fund(deni, borrower.user, 20_000)  # before the due date: no auto-repayment yet
    clock.advance(timedelta(days=10))  # 2026-12-06: three days late
    log_in_again(deni, borrower, lender)
    late = get_loan(client, borrower, loan["id"])
    assert late["overdue"] is True
    assert late["days_overdue"] == 3
    assert late["owed"] == {
        "penalty_cents": 3_000,
        "fee_cents": 5_000,
        "principal_cents": 100_000,
        "total_cents": 108_000,
    }

    first = _repay(client, borrower, loan["id"], 6_000)
    assert first.status_code == 200, first.text
    assert {k: first.json()[k] for k in ("penalty_cents", "fee_cents", "principal_cents")} == {
        "penalty_cents": 3_000,
        "fee_cents": 3_000,
        "principal_cents": 0,
    }
    assert first.json()["applied_cents"] == 6_000
    assert first.json()["excess_cents"] == 0
    assert first.json()["loan"]["state"] == "active"
    assert first.json()["loan"]["penalty_charged_cents"] == 3_000

    second = _repay(client, borrower, loan["id"], 50_000).json()
    assert (second["penalty_cents"], second["fee_cents"], second["principal_cents"]) == (
        0,
        2_000,
        48_000,
    )
    assert second["loan"]["owed"]["total_cents"] == 52_000
    assert balance(client, borrower) == 120_000 - 56_000
    assert balance(client, lender) == 400_000 + 56_000
    # The lender hears how much came in and what is left.
    received = [n for n in notifications(client, lender) if n["kind"] == "repayment_received"]
    assert len(received) == 2
    bodies = " | ".join(n["body"] for n in received)
    assert "KES 1,020" in bodies  # what was left after the first payment
    assert "KES 520" in bodies  # and after the second
    assert_ledger_whole(deni)


def test_penalties_stop_at_the_principal_still_owed(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    lender, borrower = _pair(client, deni)
    loan = request_loan(
        client, borrower, lender, principal_cents=10_000, fee_cents=0, penalty_daily_cents=4_000
    )
    approve(client, lender, loan["id"])
    clock.advance(timedelta(days=7 + 30))
    log_in_again(deni, borrower)
    owed = get_loan(client, borrower, loan["id"])["owed"]
    assert owed["penalty_cents"] == 10_000  # not 30 x 4,000
    assert owed["total_cents"] == 20_000


def test_a_full_repayment_closes_the_loan(client: TestClient, deni: Deni) -> None:
    lender, borrower = _pair(client, deni)
    loan = request_loan(client, borrower, lender)
    approve(client, lender, loan["id"])
    fund(deni, borrower.user, 5_000)
    paid = _repay(client, borrower, loan["id"], 105_000)
    assert paid.status_code == 200, paid.text
    assert paid.json()["loan"]["state"] == "repaid"
    assert paid.json()["loan"]["closed_at"] is not None
    assert paid.json()["excess_cents"] == 0
    assert balance(client, borrower) == 0
    assert balance(client, lender) == 505_000
    assert "loan_repaid" in [n["kind"] for n in notifications(client, lender)]
    assert "loan_repaid" in [n["kind"] for n in notifications(client, borrower)]
    before = db_state(deni)
    assert_error(_repay(client, borrower, loan["id"], 100), 409, "loan_not_active")
    assert_nothing_written(deni, before)


def test_paying_more_than_is_owed_takes_only_what_is_owed(client: TestClient, deni: Deni) -> None:
    lender, borrower = _pair(client, deni)
    loan = request_loan(client, borrower, lender)
    approve(client, lender, loan["id"])
    fund(deni, borrower.user, 5_000)  # the wallet holds exactly what is owed: 105,000
    paid = _repay(client, borrower, loan["id"], 150_000)  # more than the wallet holds, too
    assert paid.status_code == 200, paid.text
    assert paid.json()["applied_cents"] == 105_000
    assert paid.json()["excess_cents"] == 45_000
    assert paid.json()["loan"]["state"] == "repaid"
    assert balance(client, borrower) == 0
    assert balance(client, lender) == 505_000


def test_the_excess_stays_in_the_borrowers_wallet(client: TestClient, deni: Deni) -> None:
    lender, borrower = _pair(client, deni)
    loan = request_loan(client, borrower, lender)
    approve(client, lender, loan["id"])
    fund(deni, borrower.user, 80_000)
    paid = _repay(client, borrower, loan["id"], 180_000).json()
    assert paid["excess_cents"] == 75_000
    assert balance(client, borrower) == 75_000
    assert get_loan(client, borrower, loan["id"])["repayments"][0]["amount_cents"] == 105_000


def test_a_repayment_needs_the_borrowers_pin(client: TestClient, deni: Deni) -> None:
    lender, borrower = _pair(client, deni)
    loan = request_loan(client, borrower, lender)
    approve(client, lender, loan["id"])
    before = db_state(deni, ignore=PIN_BOOKKEEPING)
    for body in ({"amount_cents": 10_000}, {"amount_cents": 10_000, "pin": None}):
        assert_error(_post(client, borrower, loan["id"], "repay", body), 422, "validation_failed")
    assert _failed_pins(deni, borrower) == 0  # no PIN is no guess
    wrong = {"amount_cents": 10_000, "pin": "0000"}
    assert_error(_post(client, borrower, loan["id"], "repay", wrong), 401, "wrong_pin")
    assert_nothing_written(deni, before, ignore=PIN_BOOKKEEPING)  # no money moved
    assert _failed_pins(deni, borrower) == 1
    assert balance(client, borrower) == 100_000

    paid = _repay(client, borrower, loan["id"], 10_000)
    assert paid.status_code == 200, paid.text
    assert balance(client, borrower) == 90_000
    assert _failed_pins(deni, borrower) == 0  # the right PIN forgives


def test_repaying_more_than_the_wallet_holds_is_refused(client: TestClient, deni: Deni) -> None:
    lender, borrower = _pair(client, deni)
    loan = request_loan(client, borrower, lender)
    approve(client, lender, loan["id"])
    before = db_state(deni)
    assert_error(_repay(client, borrower, loan["id"], 100_001), 409, "insufficient_funds")
    assert_nothing_written(deni, before)


def test_a_loan_that_is_not_active_cannot_be_repaid(client: TestClient, deni: Deni) -> None:
    lender, borrower = _pair(client, deni)
    fund(deni, borrower.user, 50_000)
    loan = request_loan(client, borrower, lender)
    before = db_state(deni)
    assert_error(_repay(client, borrower, loan["id"], 1_000), 409, "loan_not_active")
    assert_nothing_written(deni, before)


# --- write off --------------------------------------------------------------------------------


def test_write_off_needs_the_lenders_pin_and_forgives_the_rest(
    client: TestClient, deni: Deni
) -> None:
    lender, borrower = _pair(client, deni)
    loan = request_loan(client, borrower, lender)
    approve(client, lender, loan["id"])
    assert _repay(client, borrower, loan["id"], 30_000).status_code == 200

    before = db_state(deni, ignore=PIN_BOOKKEEPING)
    assert_error(_post(client, lender, loan["id"], "write-off", {"pin": "0000"}), 401, "wrong_pin")
    assert_error(_post(client, lender, loan["id"], "write-off", {}), 422, "validation_failed")
    assert_error(_post(client, lender, loan["id"], "write-off"), 422, "validation_failed")
    assert_nothing_written(deni, before, ignore=PIN_BOOKKEEPING)

    written_off = _post(client, lender, loan["id"], "write-off", {"pin": lender.pin})
    assert written_off.status_code == 200, written_off.text
    assert written_off.json()["state"] == "written_off"
    assert written_off.json()["closed_at"] is not None
    # No money moves on a write-off.
    assert balance(client, borrower) == 70_000
    assert balance(client, lender) == 430_000
    forgiven = [n for n in notifications(client, borrower) if n["kind"] == "loan_written_off"]
    assert len(forgiven) == 1
    assert "750" in forgiven[0]["body"]  # KES 750 forgiven
    assert_error(_repay(client, borrower, loan["id"], 1_000), 409, "loan_not_active")
    assert_ledger_whole(deni)


def test_only_an_active_loan_can_be_written_off(client: TestClient, deni: Deni) -> None:
    lender, borrower = _pair(client, deni)
    loan = request_loan(client, borrower, lender)
    before = db_state(deni)
    response = _post(client, lender, loan["id"], "write-off", {"pin": lender.pin})
    assert_error(response, 409, "invalid_transition")
    assert_nothing_written(deni, before)


# --- remind -----------------------------------------------------------------------------------


def test_the_lender_reminds_the_borrower_once_a_day(client: TestClient, deni: Deni) -> None:
    lender, borrower = _pair(client, deni)
    loan = request_loan(client, borrower, lender)
    before = db_state(deni)
    assert_error(_post(client, lender, loan["id"], "remind"), 409, "loan_not_active")
    assert_nothing_written(deni, before)
    approve(client, lender, loan["id"])

    reminded = _post(client, lender, loan["id"], "remind")
    assert reminded.status_code == 200, reminded.text
    nudges = [n for n in notifications(client, borrower) if n["kind"] == "lender_reminder"]
    assert len(nudges) == 1
    assert loan["code"] in nudges[0]["body"]

    before = db_state(deni)
    assert_error(_post(client, lender, loan["id"], "remind"), 409, "already_reminded")
    assert_nothing_written(deni, before)
    assert isinstance(deni.clock, ManualClock)
    deni.clock.advance(timedelta(days=1))
    login = {"phone": lender.user.phone, "pin": lender.pin}
    token = client.post("/api/v1/auth/login", json=login).json()["access_token"]
    next_day = client.post(
        f"{LOANS}/{loan['id']}/remind", headers={"Authorization": f"Bearer {token}", **key()}
    )
    assert next_day.status_code == 200, next_day.text


def _pages(client: TestClient, who: ApiUser, state: str, limit: int) -> list[str]:
    """Every page of the borrower's loans in `state`, following next_offset to the end."""
    ids: list[str] = []
    offset: int | None = 0
    for _ in range(20):  # a bound: never more pages than this test makes
        if offset is None:
            return ids
        params: dict[str, Any] = {"role": "borrower", "state": state, "limit": limit}
        answer = client.get(LOANS, params={**params, "offset": offset}, headers=who.headers)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert len(page["loans"]) <= limit
        ids += [loan["id"] for loan in page["loans"]]
        offset = page["next_offset"]
    raise AssertionError("too many pages")


def test_pending_requests_and_past_loans_are_the_same_lists_as_on_ussd(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    """USSD's "my requests" (see, cancel) and "past loans" (paged): the API's `state=pending`
    and `state=past` give the same loans in the same order, a page at a time."""
    borrower = api_user(client, deni, name="Baraka")
    lenders = [api_user(client, deni, name=f"Lender {n}") for n in range(4)]
    for lender in lenders:
        fund(deni, lender.user, 1_000_000)
    fund(deni, borrower.user, 1_000_000)  # the fees
    made: dict[str, list[str]] = {"pending": [], "past": []}
    for number, lender in enumerate(lenders):
        for action in ("keep", "cancel", "decline", "repay"):
            clock.advance(timedelta(seconds=10))  # one requested_at each: a strict order
            loan = request_loan(client, borrower, lender, principal_cents=10_000 + number)
            if action == "keep":
                made["pending"].append(loan["id"])
                continue
            made["past"].append(loan["id"])
            if action == "cancel":
                assert _post(client, borrower, loan["id"], "cancel").status_code == 200
            elif action == "decline":
                assert _post(client, lender, loan["id"], "decline").status_code == 200
            else:
                approve(client, lender, loan["id"])
                assert _repay(client, borrower, loan["id"], 1_000_000).status_code == 200
    newest_first = {group: list(reversed(ids)) for group, ids in made.items()}

    pending = _pages(client, borrower, "pending", limit=3)
    past = _pages(client, borrower, "past", limit=5)
    assert pending == newest_first["pending"]
    assert past == newest_first["past"]
    today = TODAY
    on_ussd_pending = deni.ussd_reads.loans(
        user_id=borrower.user.id,
        role="borrower",
        state=LoanState.REQUESTED,
        offset=0,
        limit=10,
        today=today,
    )
    on_ussd_past = deni.ussd_reads.past_loans(
        user_id=borrower.user.id, role="borrower", offset=0, limit=20, today=today
    )
    assert [line.loan.id for line in on_ussd_pending] == pending
    assert [line.loan.id for line in on_ussd_past] == past

    # Cancelling a pending request (USSD's "cancel") moves it to the past, on both.
    assert _post(client, borrower, pending[0], "cancel").status_code == 200
    assert _pages(client, borrower, "pending", limit=3) == pending[1:]
    past_now = _pages(client, borrower, "past", limit=50)
    assert sorted(past_now) == sorted([*past, pending[0]])
    on_ussd_past = deni.ussd_reads.past_loans(
        user_id=borrower.user.id, role="borrower", offset=0, limit=20, today=today
    )
    assert [line.loan.id for line in on_ussd_past] == past_now
    # Someone else's list stays theirs; an unknown group is refused with its code.
    assert _pages(client, lenders[0], "pending", limit=3) == []
    bad = client.get(LOANS, params={"state": "soon"}, headers=borrower.headers)
    assert_error(bad, 422, "invalid_state")
