"""Fixtures: a respx router wired in as the client's transport, a hand-moved clock and a
throwaway RSA certificate standing in for Safaricom's."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import respx
from cryptography.hazmat.primitives.asymmetric import rsa
from tests.fakes import ManualClock
from tests.unit.daraja.support import BASE_URL, START, make_certificate, make_config, recorded

from deni.adapters.daraja.client import DarajaClient
from deni.adapters.daraja.tokens import InMemoryTokenStore


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def certificate_pem(rsa_key: rsa.RSAPrivateKey) -> str:
    return make_certificate(rsa_key)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def router() -> respx.MockRouter:
    router = respx.MockRouter(base_url=BASE_URL, assert_all_called=False)
    router.get("/oauth/v1/generate", name="oauth").mock(return_value=recorded("oauth_token.json"))
    return router


@pytest.fixture
def token_store() -> InMemoryTokenStore:
    return InMemoryTokenStore()


@pytest.fixture
def client(
    router: respx.MockRouter, clock: ManualClock, token_store: InMemoryTokenStore
) -> Iterator[DarajaClient]:
    with DarajaClient(
        make_config(),
        clock=clock.now,
        token_store=token_store,
        transport=httpx.MockTransport(router.handler),
    ) as daraja:
        yield daraja
