"""Where callbacks may come from: production refuses to start without a source allowlist, and
the hook refuses (403, nothing stored) a caller outside it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from deni.config import Settings
from deni.services.mpesa.ports import InboxState
from tests.support.mpesa import World, c2b_confirmation_body
from tests.support.settings import production

# Safaricom's published callback sources, as docs/mpesa.md lists them.
SAFARICOM = (
    "196.201.214.200,196.201.214.206,196.201.213.114,196.201.214.207,196.201.214.208,"
    "196.201.213.44,196.201.212.127,196.201.212.128,196.201.212.129,196.201.212.132,"
    "196.201.212.136,196.201.212.138,196.201.212.69,196.201.212.74"
)


def _production(**extra: Any) -> Settings:
    """Settings a careful operator starts production with (every other check passes)."""
    return production(**extra)


@pytest.mark.parametrize("allowed", ["", " , ", "196.201.214.200,safaricom.co.ke"])
def test_production_refuses_to_start_without_a_callback_allowlist(allowed: str) -> None:
    with pytest.raises(ValidationError, match="DENI_CALLBACK_ALLOWED_IPS"):
        _production(callback_allowed_ips=allowed)


def test_production_starts_with_safaricoms_addresses() -> None:
    assert _production(callback_allowed_ips=SAFARICOM).callback_allowed_ips == SAFARICOM
    # Without M-PESA there are no callbacks to guard, and development keeps its open default.
    assert Settings(environment="development", mpesa=True).callback_allowed_ips == ""


def _stored(world: World) -> int:
    with world.deni.uow.read_only() as uow:
        return len(uow.mpesa_inbox.rows(states=list(InboxState), limit=50))


def test_a_callback_from_outside_the_allowlist_is_refused_and_not_stored(world: World) -> None:
    world.deni.settings.__dict__["callback_allowed_ips"] = SAFARICOM
    body = c2b_confirmation_body("TFORGED0001", 5_000, "0722000001")

    answer = world.http.post(world.hook_url("c2b/confirmation"), json=body)

    assert answer.status_code == 403
    assert _stored(world) == 0
    world.deni.settings.__dict__["callback_allowed_ips"] = f"{SAFARICOM},127.0.0.1"
    answer = world.http.post(world.hook_url("c2b/confirmation"), json=body)
    assert answer.status_code == 200
    assert _stored(world) == 1
    assert world.http.post(f"{world.url}/hooks/{'0' * 32}/stk", json=body).status_code == 404
