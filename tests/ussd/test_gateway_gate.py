"""Who may post USSD hops: Africa's Talking signs nothing and the phone number is a form
field, so with DENI_USSD_TOKEN set only /ussd/{token} is answered, and a source allow-list
can narrow it further. Production refuses to start without a token."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from tests.support.builders import next_phone
from tests.support.ussd import CODE, TOKEN, client_with

from deni.config import Settings
from deni.domain.phone import normalise_msisdn
from deni.entrypoints.ussd.dialer import Dialer, http_transport


def _dial(client: TestClient, path: str) -> tuple[int, str]:
    form = {
        "sessionId": "ATUid_gate",
        "serviceCode": CODE,
        "phoneNumber": "+" + normalise_msisdn(next_phone()),
        "networkCode": "63902",
        "text": "",
    }
    response = client.post(path, data=form)
    return response.status_code, response.text


def test_with_a_token_only_the_secret_path_is_answered(settings: Settings) -> None:
    with client_with(settings, ussd_token=TOKEN) as client:
        assert _dial(client, "/ussd")[0] == 404
        assert _dial(client, "/ussd/not-the-token")[0] == 404
        assert _dial(client, "/ussd/" + TOKEN[:-1])[0] == 404
        status, body = _dial(client, "/ussd/" + TOKEN)
        assert status == 200
        assert body.startswith("CON ")
        dialer = Dialer(
            http_transport("http://testserver", token=TOKEN, client=client), "+254711222666", CODE
        )  # type: ignore[arg-type]
        assert "Welcome to Deni" in dialer.start().text


def test_without_a_token_plain_ussd_is_answered_and_no_token_path_is(settings: Settings) -> None:
    with client_with(settings) as client:
        assert _dial(client, "/ussd")[0] == 200
        assert _dial(client, "/ussd/" + TOKEN)[0] == 404


def test_a_source_outside_the_allow_list_is_refused(settings: Settings) -> None:
    with client_with(settings, ussd_allowed_ips="10.0.0.7, 10.0.0.8") as client:
        assert _dial(client, "/ussd")[0] == 403
    with client_with(settings, ussd_allowed_ips="10.0.0.7,testclient") as client:
        assert _dial(client, "/ussd")[0] == 200  # TestClient's source address


@pytest.mark.parametrize("token", ["", "short0123", "has-dashes-0123456789abcdef0123456789"])
def test_production_refuses_to_start_without_a_real_token(token: str) -> None:
    with pytest.raises(ValidationError, match="DENI_USSD_TOKEN"):
        Settings(
            environment="production",
            jwt_secret="j" * 40,
            pin_pepper="p" * 40,
            ussd_token=token,
        )
