"""The tokens in the gateways' paths rotate with an overlap: during it `/hooks/{token}` and
`/ussd/{token}` answer the new token and the previous ones; once the previous are dropped,
only the new. Daraja is only ever given the current token."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient
from tests.support.builders import next_phone
from tests.support.ussd import CODE

from deni.bootstrap import bootstrap, daraja_config
from deni.config import Settings
from deni.domain.phone import normalise_msisdn
from deni.entrypoints.api.app import create_app

OLD_HOOK, NEW_HOOK = "3e9a1c7f5b2d8e4a6c0f9b3d7e1a5c2f", "a4d8f2b6e0c3a7d1f5b9e2c6a0d4f8b1"
OLD_USSD, NEW_USSD = "Old7RkT2vXw9ZpL4nHs8JdF3gBc6YtA1", "New3LmQ8wZx2Rn6Bv0Kp4Hs7Fd1Jg5Tc"


@contextmanager
def _app(settings: Settings, **changes: object) -> Iterator[TestClient]:
    deni = bootstrap(settings.model_copy(update=changes))
    try:
        with TestClient(create_app(deni)) as client:
            yield client
    finally:
        deni.close()


def _hook(client: TestClient, token: str) -> int:
    return client.post(f"/hooks/{token}/b2c/result", json={}).status_code


def _dial(client: TestClient, token: str) -> int:
    form = {
        "sessionId": "ATUid_rotation",
        "serviceCode": CODE,
        "phoneNumber": "+" + normalise_msisdn(next_phone()),
        "networkCode": "63902",
        "text": "",
    }
    return client.post(f"/ussd/{token}", data=form).status_code


def _mpesa(**changes: object) -> dict[str, object]:
    return {
        "mpesa": True,
        "worker_interval_s": 0,
        "daraja_security_credential": "test-credential",
        **changes,
    }


def test_callbacks_reach_both_tokens_during_the_overlap_and_only_the_new_after(
    settings: Settings,
) -> None:
    with _app(settings, **_mpesa(callback_token=OLD_HOOK)) as client:
        assert (_hook(client, OLD_HOOK), _hook(client, NEW_HOOK)) == (200, 404)
    overlap = _mpesa(callback_token=NEW_HOOK, callback_tokens_previous=f" {OLD_HOOK} ,")
    with _app(settings, **overlap) as client:
        assert (_hook(client, OLD_HOOK), _hook(client, NEW_HOOK)) == (200, 200)
        assert _hook(client, OLD_HOOK[:-1]) == 404
    with _app(settings, **_mpesa(callback_token=NEW_HOOK)) as client:
        assert (_hook(client, OLD_HOOK), _hook(client, NEW_HOOK)) == (404, 200)


def test_daraja_is_given_only_the_current_token(settings: Settings) -> None:
    rotated = settings.model_copy(
        update=_mpesa(callback_token=NEW_HOOK, callback_tokens_previous=OLD_HOOK)
    )
    config = daraja_config(rotated)
    assert config.callback_path_token == NEW_HOOK
    assert rotated.accepted_callback_tokens == (NEW_HOOK, OLD_HOOK)


def test_ussd_answers_both_tokens_during_the_overlap_and_only_the_new_after(
    settings: Settings,
) -> None:
    with _app(settings, ussd_token=OLD_USSD) as client:
        assert (_dial(client, OLD_USSD), _dial(client, NEW_USSD)) == (200, 404)
    with _app(settings, ussd_token=NEW_USSD, ussd_tokens_previous=OLD_USSD) as client:
        assert (_dial(client, OLD_USSD), _dial(client, NEW_USSD)) == (200, 200)
        assert client.post("/ussd", data={}).status_code == 404  # the bare path stays shut
    with _app(settings, ussd_token=NEW_USSD) as client:
        assert (_dial(client, OLD_USSD), _dial(client, NEW_USSD)) == (404, 200)
