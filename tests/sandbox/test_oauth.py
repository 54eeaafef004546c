"""OAuth and the bearer-token gate."""

from __future__ import annotations

from tests.support.sandbox import Daraja

GENERATE = "/oauth/v1/generate"


def test_good_credentials_get_a_token_with_expires_in_as_a_string(daraja: Daraja) -> None:
    response = daraja.http.get(
        GENERATE,
        params={"grant_type": "client_credentials"},
        auth=("sandbox-key", "sandbox-secret"),
    )

    assert response.status_code == 200
    body = response.json()
    assert body["expires_in"] == "3599"
    assert len(body["access_token"]) == 28
    assert body["access_token"].isalnum()


def test_wrong_secret_is_400_with_an_empty_body(daraja: Daraja) -> None:
    response = daraja.http.get(
        GENERATE, params={"grant_type": "client_credentials"}, auth=("sandbox-key", "wrong")
    )

    assert response.status_code == 400
    assert response.content == b""


def test_wrong_grant_type_and_auth_type_have_their_own_codes(daraja: Daraja) -> None:
    grant = daraja.http.get(GENERATE, params={"grant_type": "password"}, auth=("a", "b"))
    scheme = daraja.http.get(
        GENERATE, params={"grant_type": "client_credentials"}, headers={"Authorization": "X y"}
    )

    assert grant.status_code == 400
    assert grant.json()["errorCode"] == "400.008.02"
    assert scheme.json()["errorCode"] == "400.008.01"


def test_a_new_token_invalidates_the_previous_one(daraja: Daraja) -> None:
    first = daraja.new_token()
    second = daraja.new_token()

    old = daraja.post("/mpesa/stkpush/v1/processrequest", daraja.stk_body(), token=first)
    new = daraja.post("/mpesa/stkpush/v1/processrequest", daraja.stk_body(), token=second)

    assert old.status_code == 401
    assert old.json()["errorCode"] == "404.001.03"
    assert old.json()["errorMessage"] == "Invalid Access Token"
    assert set(old.json()) == {"requestId", "errorCode", "errorMessage"}
    assert new.status_code == 200


def test_a_token_expires_after_its_lifetime(daraja: Daraja) -> None:
    token = daraja.new_token()
    daraja.admin.advance_clock(3600)

    response = daraja.post("/mpesa/stkpush/v1/processrequest", daraja.stk_body(), token=token)

    assert response.status_code == 401
    assert response.json()["errorCode"] == "404.001.03"


def test_a_post_without_bearer_header_is_refused(daraja: Daraja) -> None:
    response = daraja.http.post("/mpesa/b2c/v3/paymentrequest", json={})

    assert response.status_code == 401
    assert response.json()["errorCode"] == "404.001.04"


def test_unknown_paths_and_methods_answer_in_daraja_shape(daraja: Daraja) -> None:
    missing = daraja.http.post("/mpesa/nothing/v1/here", json={})
    wrong_method = daraja.http.get("/mpesa/stkpush/v1/processrequest")

    assert missing.status_code == 404
    assert missing.json()["errorCode"] == "404.001.01"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["errorCode"] == "405.001"
