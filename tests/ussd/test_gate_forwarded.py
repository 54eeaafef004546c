"""The gateway allow-lists (USSD, Daraja's hooks) judge the caller by `client_address`: an
X-Forwarded-For naming an allowed gateway gets nobody in, unless it came through the
operator's own proxy (DENI_TRUSTED_PROXIES)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient
from tests.support.builders import next_phone
from tests.support.ussd import CODE

from deni.bootstrap import bootstrap
from deni.config import Settings
from deni.domain.phone import normalise_msisdn
from deni.entrypoints.api.app import create_app

GATEWAY = "196.201.214.200"  # the allowed gateway address in these tests
PROXY = ("10.0.0.5", 4711)


@contextmanager
def _app(settings: Settings, peer: tuple[str, int], **changes: object) -> Iterator[TestClient]:
    deni = bootstrap(settings.model_copy(update=changes))
    try:
        with TestClient(create_app(deni), client=peer) as client:
            yield client
    finally:
        deni.close()


def _dial(client: TestClient, forwarded_for: str) -> int:
    form = {
        "sessionId": "ATUid_forwarded",
        "serviceCode": CODE,
        "phoneNumber": "+" + normalise_msisdn(next_phone()),
        "networkCode": "63902",
        "text": "",
    }
    return client.post("/ussd", data=form, headers={"X-Forwarded-For": forwarded_for}).status_code


def test_a_forged_forwarded_for_does_not_pass_the_ussd_allow_list(settings: Settings) -> None:
    with _app(settings, ("203.0.113.66", 5000), ussd_allowed_ips=GATEWAY) as client:
        assert _dial(client, GATEWAY) == 403
    # Not even when the peer is loopback: nothing is trusted unless configured.
    with _app(settings, ("127.0.0.1", 5000), ussd_allowed_ips=GATEWAY) as client:
        assert _dial(client, GATEWAY) == 403


def test_through_the_configured_proxy_the_gateway_is_let_in(settings: Settings) -> None:
    changes = {"ussd_allowed_ips": GATEWAY, "trusted_proxies": "10.0.0.0/8"}
    with _app(settings, PROXY, **changes) as client:
        assert _dial(client, GATEWAY) == 200
        assert _dial(client, "203.0.113.66") == 403
        assert _dial(client, f"{GATEWAY}, 203.0.113.66") == 403  # the proxy's entry counts


def test_an_allow_list_takes_cidr_blocks(settings: Settings) -> None:
    changes = {"ussd_allowed_ips": "196.201.214.0/24", "trusted_proxies": "10.0.0.0/8"}
    with _app(settings, PROXY, **changes) as client:
        assert _dial(client, GATEWAY) == 200
        assert _dial(client, "196.201.215.1") == 403


def test_daraja_callbacks_judge_the_caller_the_same_way(settings: Settings) -> None:
    token = "0f" * 16
    changes = {
        "mpesa": True,
        "callback_token": token,
        "callback_allowed_ips": GATEWAY,
        "worker_interval_s": 0,
        "daraja_security_credential": "test-credential",
        "trusted_proxies": "10.0.0.0/8",
    }
    forged = {"X-Forwarded-For": GATEWAY}
    with _app(settings, ("203.0.113.66", 5000), **changes) as client:
        assert client.post(f"/hooks/{token}/b2c/result", json={}, headers=forged).status_code == 403
    with _app(settings, PROXY, **changes) as client:
        assert client.post(f"/hooks/{token}/b2c/result", json={}, headers=forged).status_code == 200
        elsewhere = {"X-Forwarded-For": "203.0.113.66"}
        assert (
            client.post(f"/hooks/{token}/b2c/result", json={}, headers=elsewhere).status_code == 403
        )
