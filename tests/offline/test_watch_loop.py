"""The watch loop (deni.offline.watch) against the in-memory fake of the protocol: faults on
demand, no waiting on real servers. `test_watch.py` runs the real command against Deni."""

from __future__ import annotations

import random
from pathlib import Path

from deni.offline import queue
from deni.offline.api import Api
from deni.offline.client import OfflineClient
from deni.offline.store import Store
from deni.offline.watch import State, Status, Watch, WatchPolicy
from tests.offline.fake_protocol import PIN, Fake

URL = "http://deni.test"
BORROWER, LENDER = "u-borrower", "u-lender"
B_PHONE, L_PHONE = "254711000001", "254722000002"
QUICK = WatchPolicy(
    idle_every_s=0.05, retry_first_s=0.05, retry_cap_s=0.1, local_check_every_s=0.05
)


def signed_in(fake: Fake, tmp_path: Path) -> tuple[OfflineClient, Api]:
    fake.add_user(BORROWER, B_PHONE, 50_000)
    fake.add_user(LENDER, L_PHONE, 100_000)
    client = OfflineClient(Store(tmp_path / "b.sqlite3"))
    api = Api(URL, transport=fake.transport())
    client.login(url=URL, phone=B_PHONE, pin=PIN, api=api)
    return client, api


def watch(
    client: OfflineClient, api: Api, policy: WatchPolicy = QUICK
) -> tuple[Watch, list[Status]]:
    seen: list[Status] = []
    looping = Watch(
        client.store, api, seen.append, policy=policy, rng=random.Random(7), sleep=lambda _s: None
    )
    return looping, seen


def test_offline_tries_back_off_then_the_queue_lands_once(tmp_path: Path) -> None:
    fake = Fake()
    client, api = signed_in(fake, tmp_path)
    client.top_up(amount_cents=10_000)
    fake.refuse_next = 3 * 4  # four whole tries (three quick calls each) find no server
    looping, seen = watch(client, api)

    def stop_once_synced(status: Status) -> None:
        seen.append(status)
        if status.state is State.SYNCED:
            looping.stop.set()

    looping.on_status = stop_once_synced
    final = looping.run()

    states = [status.state for status in seen]
    assert states == [State.OFFLINE] * 4 + [State.SYNCED, State.STOPPED]
    waits_s = [status.next_in_s for status in seen[:4]]
    assert all(w is not None and 0.025 <= w <= 0.1 for w in waits_s)  # half to all, capped
    assert [s.queued for s in seen[:4]] == [1, 1, 1, 1]
    assert seen[4].report is not None
    assert seen[4].report.applied == 1
    assert (final.state, final.queued) == (State.STOPPED, 0)
    assert fake.applied_pushes == 1  # the offline tries never reached it
    assert len(fake.log) == 1
    assert queue.counts(client.store.db)["applied"] == 1
    assert looping.cycles == 5
    assert looping.synced == 1


def test_a_lost_answer_is_sent_again_and_replayed_not_applied_twice(tmp_path: Path) -> None:
    fake = Fake()
    client, api = signed_in(fake, tmp_path)
    client.top_up(amount_cents=10_000)
    fake.lose_next_responses = 3  # the push applied, its answer lost on every quick try
    looping, seen = watch(client, api, WatchPolicy(**{**_quick(), "cycles_max": 2}))
    looping.run()
    assert [s.state for s in seen] == [State.OFFLINE, State.SYNCED, State.STOPPED]
    report = seen[1].report
    assert report is not None
    assert (report.applied, report.replayed) == (1, 1)
    assert len(fake.log) == 1  # applied once; the second push got the stored result
    assert "bound" in seen[-1].message


def test_a_login_that_ended_ends_the_loop(tmp_path: Path) -> None:
    fake = Fake()
    client, api = signed_in(fake, tmp_path)
    api.access_token = "tok-nobody"  # refused; the fake swaps no refresh token either
    looping, _seen = watch(client, api)
    final = looping.run()
    assert final.state is State.ENDED
    assert "deni offline login" in final.message
    assert looping.cycles == 1


def _quick() -> dict[str, float]:
    return {
        "idle_every_s": QUICK.idle_every_s,
        "retry_first_s": QUICK.retry_first_s,
        "retry_cap_s": QUICK.retry_cap_s,
        "local_check_every_s": QUICK.local_check_every_s,
    }
