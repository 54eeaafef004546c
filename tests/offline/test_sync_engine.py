"""The sync engine against a fake of the protocol: faults on demand (lost answers, refused
connections, 503s, gaps, old schema, foreign client ids and cursors)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from deni.domain.errors import WeakPin
from deni.offline import queue
from deni.offline.api import Api, Transient
from deni.offline.client import OfflineClient
from deni.offline.retry import Backoff
from deni.offline.store import Store
from deni.offline.sync import Syncer, UpgradeRequired
from tests.offline.fake_protocol import PIN, Fake

URL = "http://fake.test"
BORROWER, LENDER = "u-borrower", "u-lender"
B_PHONE, L_PHONE = "254700000101", "254700000102"


@pytest.fixture
def fake() -> Fake:
    fake = Fake()
    fake.add_user(BORROWER, B_PHONE, 50_000)
    fake.add_user(LENDER, L_PHONE, 100_000)
    base = {
        "borrower_id": BORROWER,
        "lender_id": LENDER,
        "borrower_phone": B_PHONE,
        "lender_phone": L_PHONE,
        "fee_cents": 0,
    }
    fake.add_loan(
        {
            **base,
            "id": "loan-active",
            "code": "DN1",
            "state": "active",
            "principal_cents": 20_000,
            "owed_cents": 21_000,
        }
    )
    fake.add_loan(
        {
            **base,
            "id": "loan-asked",
            "code": "DN2",
            "state": "requested",
            "principal_cents": 30_000,
            "owed_cents": 30_000,
        }
    )
    return fake


def device(fake: Fake, path: Path, phone: str) -> tuple[OfflineClient, Syncer]:
    client = OfflineClient(Store(path))
    api = Api(URL, transport=fake.transport())
    client.login(url=URL, phone=phone, pin=PIN, api=api)
    syncer = Syncer(client.store, api, backoff=Backoff(sleep=lambda _s: None), pin=PIN)
    syncer.sync()
    return client, syncer


def test_first_sync_brings_loans_and_balance(fake: Fake, tmp_path: Path) -> None:
    client, _ = device(fake, tmp_path / "b.sqlite3", B_PHONE)
    assert {line.code: line.state for line in client.loans()} == {
        "DN1": "active",
        "DN2": "requested",
    }
    assert client.balance().server_cents == 50_000


def test_queued_repayment_lands_once_and_balance_follows(fake: Fake, tmp_path: Path) -> None:
    client, syncer = device(fake, tmp_path / "b.sqlite3", B_PHONE)
    client.repay("DN1", amount_cents=1_000)
    assert client.balance().available_cents == 49_000
    report = syncer.sync()
    assert report.applied == 1
    assert fake.users[BORROWER]["balance_cents"] == 49_000
    balance = client.balance()
    assert (balance.server_cents, balance.pending_outgoing_cents) == (49_000, 0)
    assert {line.code: line.owed_cents for line in client.loans()}["DN1"] == 20_000


def test_a_lost_answer_is_retried_and_replayed_not_applied_twice(
    fake: Fake, tmp_path: Path
) -> None:
    client, syncer = device(fake, tmp_path / "b.sqlite3", B_PHONE)
    client.repay("DN1", amount_cents=1_000)
    fake.lose_next_responses = 1  # the server applies the push; the answer never arrives
    report = syncer.sync()
    assert report.replayed == 1
    assert fake.users[BORROWER]["balance_cents"] == 49_000
    assert queue.counts(client.store.db)["applied"] == 1


def test_a_crash_after_the_push_was_sent_loses_nothing(fake: Fake, tmp_path: Path) -> None:
    """The device dies after sending (mutations left `sent`); the next sync re-sends them and
    gets the stored results."""
    client, syncer = device(fake, tmp_path / "b.sqlite3", B_PHONE)
    client.repay("DN1", amount_cents=1_000)
    fake.lose_next_responses = 1
    with pytest.raises(Transient):
        Syncer(client.store, syncer.api, backoff=Backoff(attempts_max=1), pin=PIN).push()
    assert queue.counts(client.store.db)["sent"] == 1
    client.store.close()
    reopened = OfflineClient(Store(tmp_path / "b.sqlite3"))
    report = Syncer(reopened.store, Api(URL, transport=fake.transport()), pin=PIN).sync()
    assert (report.replayed, report.applied) == (1, 1)
    assert fake.users[BORROWER]["balance_cents"] == 49_000


def test_refused_connections_back_off_then_give_up_keeping_the_queue(
    fake: Fake, tmp_path: Path
) -> None:
    client, syncer = device(fake, tmp_path / "b.sqlite3", B_PHONE)
    client.repay("DN1", amount_cents=1_000)
    delays: list[float] = []
    fake.refuse_next = 100
    stubborn = Syncer(client.store, syncer.api, backoff=Backoff(sleep=delays.append), pin=PIN)
    with pytest.raises(Transient, match="Cannot reach"):
        stubborn.sync()
    assert len(delays) == 5  # attempts_max 6: five waits, bounded by the cap
    assert all(0 <= d <= 8.0 for d in delays)
    assert queue.counts(client.store.db)["sent"] == 1
    fake.refuse_next = 2
    fake.busy_next = 2
    report = syncer.sync()
    assert report.applied == 1
    assert fake.users[BORROWER]["balance_cents"] == 49_000


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    backoff = Backoff(base_delay_s=1.0, cap_delay_s=8.0)
    for attempt, ceiling in ((0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (10, 8.0)):
        delays = [backoff.delay_s(attempt) for _ in range(200)]
        assert max(delays) <= ceiling
        assert min(delays) >= 0
        assert max(delays) > ceiling / 2  # spread over the whole range (full jitter)
    assert backoff.delay_s(0, retry_after_s=5.0) >= 5.0


def test_a_gap_resends_from_the_id_the_server_expects(fake: Fake, tmp_path: Path) -> None:
    client, syncer = device(fake, tmp_path / "b.sqlite3", B_PHONE)
    first = client.repay("DN1", amount_cents=1_000)
    client.repay("DN1", amount_cents=2_000)
    with client.store.write() as db:  # the device wrongly believes #1 was done
        queue.mark_done(db, first.mutation_id, status="applied")
    report = syncer.sync()
    assert any("re-sent" in note for note in report.notes)
    assert fake.clients[client.store.get("client_id") or ""]["last"] == 2
    assert fake.users[BORROWER]["balance_cents"] == 47_000


def test_an_old_client_schema_gets_a_clear_message(fake: Fake, tmp_path: Path) -> None:
    client, syncer = device(fake, tmp_path / "b.sqlite3", B_PHONE)
    client.repay("DN1", amount_cents=1_000)
    fake.schema_min = 2
    with pytest.raises(UpgradeRequired, match="Upgrade Deni") as raised:
        syncer.sync()
    assert "at least 2" in raised.value.message
    assert queue.counts(client.store.db)["sent"] == 1  # kept for after the upgrade


def test_a_client_id_that_is_someone_elses_is_replaced(fake: Fake, tmp_path: Path) -> None:
    lender, _ = device(fake, tmp_path / "l.sqlite3", L_PHONE)
    client, syncer = device(fake, tmp_path / "b.sqlite3", B_PHONE)
    client.store.set("client_id", lender.store.get("client_id"))  # forged / copied
    client.repay("DN1", amount_cents=1_000)
    report = syncer.sync()
    assert report.applied == 1
    assert any("not yours" in note for note in report.notes)
    assert client.store.get("client_id") != lender.store.get("client_id")
    assert fake.users[BORROWER]["balance_cents"] == 49_000


def test_a_cursor_from_another_user_means_a_full_resync(fake: Fake, tmp_path: Path) -> None:
    client, syncer = device(fake, tmp_path / "b.sqlite3", B_PHONE)
    with client.store.write() as db:
        db.execute("INSERT INTO loans (id, state, principal_cents) VALUES ('ghost', 'active', 1)")
    client.store.set("cursor", f"{LENDER}:999")
    report = syncer.sync()
    assert report.reset
    assert {line.code for line in client.loans()} == {"DN1", "DN2"}  # the ghost is gone


def test_pull_pages_until_done(fake: Fake, tmp_path: Path) -> None:
    client = OfflineClient(Store(tmp_path / "b.sqlite3"))
    api = Api(URL, transport=fake.transport())
    client.login(url=URL, phone=B_PHONE, pin=PIN, api=api)
    report = Syncer(client.store, api, pull_limit=1).sync()
    assert report.pages >= 4
    assert len(client.loans()) == 2


def test_approvals_wait_for_the_pin_and_a_rejection_never_blocks(
    fake: Fake, tmp_path: Path
) -> None:
    lender, _ = device(fake, tmp_path / "l.sqlite3", L_PHONE)
    lender.approve("DN2")
    lender.top_up(amount_cents=10_000)
    no_pin = Syncer(lender.store, Api(URL, transport=fake.transport()), pin=None)
    report = no_pin.sync()
    assert report.waiting_for_pin == 1
    assert report.pushed == 0
    wrong = Syncer(lender.store, Api(URL, transport=fake.transport()), pin="9999").sync()
    assert [code for _, code, _ in wrong.rejected] == ["wrong_pin"]
    assert wrong.applied == 1  # the top-up behind it went through
    done = queue.get(lender.store.db, 1)
    assert done is not None
    assert (done.status, done.result_code) == ("rejected", "wrong_pin")
    assert {line.code: line.state for line in lender.loans()}["DN2"] == "requested"
    assert "pin" not in done.args  # the PIN was never written to the device


def test_the_pin_never_reaches_the_device_files(fake: Fake, tmp_path: Path) -> None:
    lender, _ = device(fake, tmp_path / "l.sqlite3", L_PHONE)
    lender.approve("DN2")
    Syncer(lender.store, Api(URL, transport=fake.transport()), pin="4827").sync()
    files = list(tmp_path.glob("l.sqlite3*"))
    assert files
    assert all(b"4827" not in path.read_bytes() for path in files)


def test_registering_with_a_weak_pin_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    sent: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    client = OfflineClient(Store(tmp_path / "new.sqlite3"))
    api = Api(URL, transport=httpx.MockTransport(server))
    with pytest.raises(WeakPin) as refused:
        client.register(
            url=URL, phone="0700000199", code="123456", name="Amina", pin="1234",
            language="en", api=api,
        )  # fmt: skip
    assert refused.value.code == "weak_pin"
    assert sent == []
