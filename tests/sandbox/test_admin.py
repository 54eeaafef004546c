"""The admin API: state, certificate, delivery records."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.sandbox import PHONE, Daraja


def test_certificate_is_a_pem_x509(daraja: Daraja) -> None:
    certificate = x509.load_pem_x509_certificate(daraja.admin.certificate_pem())

    public_key = certificate.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    assert public_key.key_size == 2048


def test_balances_list_organisation_and_customers(daraja: Daraja) -> None:
    daraja.admin.set_customer(PHONE, balance_cents=12_00, first_name="AMINA", last_name="")
    daraja.admin.set_organisation(utility_account_cents=5_00)

    found = daraja.http.get("/sandbox/balances").json()

    assert found["organisation"]["utility_account_cents"] == 5_00
    assert found["organisation"]["shortcode"] == "600000"
    [customer] = found["customers"]
    assert customer == {
        "phone": PHONE,
        "balance_cents": 12_00,
        "first_name": "AMINA",
        "middle_name": "",
        "last_name": "",
        "registered": True,
    }


def test_registrations_are_visible(daraja: Daraja) -> None:
    daraja.register_c2b("Cancelled")

    found = daraja.http.get("/sandbox/registrations").json()

    assert found["600000"]["ResponseType"] == "Cancelled"
    assert found["600000"]["ConfirmationURL"].endswith("/hooks/confirm")


def test_unreachable_callback_is_tried_a_bounded_number_of_times(daraja: Daraja) -> None:
    daraja.stk(CallBackURL="http://127.0.0.1:9/hooks/stk")
    daraja.admin.flush()

    [record] = daraja.admin.callbacks("stk")
    assert record["state"] == "failed"
    assert len(record["attempts"]) == 3
    assert record["response_status"] is None


def test_bad_admin_input_is_a_400_with_a_message(daraja: Daraja) -> None:
    wrong_phone = daraja.http.put("/sandbox/customers/0712", json={"balance_cents": 1})
    negative = daraja.http.put(f"/sandbox/customers/{PHONE}", json={"balance_cents": -1})
    bad_pay = daraja.http.post("/sandbox/c2b/pay", json={"phone": PHONE, "amount": 0})

    assert [r.status_code for r in (wrong_phone, negative, bad_pay)] == [400, 400, 400]
    assert "phone" in wrong_phone.json()["error"]
