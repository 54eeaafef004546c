"""Property: random offline devices, dropped and duplicated pushes, in any interleaving.

Invariants after everyone syncs: each (client, mutation id) applied once (replays say so),
every device shows the server's state, the ledger balances and money is conserved, and every
rejected action produced one sync_rejected notification for its user. Each example runs on a
database of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deni.bootstrap import Deni
from tests.conftest import Example
from tests.support.api import assert_ledger_whole
from tests.support.builders import api_user, fund
from tests.support.sync import Device, server_view

FUNDED_CENTS = 300_000
LOANS_MAX = 3

# (device index 0-3, action, loan slot, amount choice)
Step = tuple[int, str, int, int]
steps = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.sampled_from(
            ["request", "approve", "decline", "cancel", "repay", "push", "push_lost", "pull"]
        ),
        st.integers(0, LOANS_MAX - 1),
        st.sampled_from([1_000, 50_000, 200_000]),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=steps)
def test_random_offline_devices_converge(
    fresh_deni: Callable[[], AbstractContextManager[Example]], plan: list[Step]
) -> None:
    with fresh_deni() as example:
        _converge(example.client, example.deni, plan)


def _converge(client: TestClient, deni: Deni, plan: list[Step]) -> None:
    lender = api_user(client, deni, name="Lender Lee")
    borrower = api_user(client, deni, name="Borrower Bo")
    fund(deni, lender.user, FUNDED_CENTS)
    devices = [
        Device(client, lender),
        Device(client, lender),
        Device(client, borrower),
        Device(client, borrower),
    ]
    loan_ids = [str(uuid.uuid4()) for _ in range(LOANS_MAX)]
    for index, action, slot, amount in plan:
        device, loan_id = devices[index], loan_ids[slot]
        is_lender = device.who is lender
        if action == "push" and device.queue:
            device.push()
        elif action == "push_lost" and device.queue:
            device.push(drop_answer=True)  # applied server-side, the answer never arrives
        elif action == "pull":
            device.pull()
        elif action == "request" and not is_lender:
            device.queue_mutation(
                "request_loan",
                loan_id=loan_id,
                lender_phone=lender.user.phone,
                principal_cents=amount,
                term_days=5,
            )
        elif action in ("approve", "decline") and is_lender:
            args = {"pin": lender.pin} if action == "approve" else {}
            device.queue_mutation(f"{action}_loan", loan_id=loan_id, **args)
        elif action == "cancel" and not is_lender:
            device.queue_mutation("cancel_loan", loan_id=loan_id)
        elif action == "repay" and not is_lender:
            device.queue_mutation("repay_loan", loan_id=loan_id, amount_cents=amount)
    for device in devices:
        if device.queue:
            device.push(drop_answer=True)
            device.push()  # a duplicate push: replays only
        device.pull()
    for device in devices:
        device.pull()
        assert device.queue == []
        assert device.view == server_view(client, device.who)
        assert device.last_mutation_id == device.next_id - 1
    assert_ledger_whole(deni)
    assert devices[0].balance() + devices[2].balance() == FUNDED_CENTS
    for who, mine in ((lender, devices[:2]), (borrower, devices[2:])):
        rejected = sum(1 for d in mine for r in d.results.values() if r["status"] == "rejected")
        told = [n for n in mine[0].records("notification").values() if n["kind"] == "sync_rejected"]
        assert len(told) == rejected, who.user.name
    # A loan id is never applied twice: each request created at most one loan.
    assert len(devices[2].records("loan")) <= LOANS_MAX
