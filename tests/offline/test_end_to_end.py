"""deni offline against a real Deni server over loopback HTTP (SQLite and PostgreSQL).

Each device is its own SQLite database; the server is Deni's ASGI app in a background uvicorn
thread. "Offline" is the real thing: the server stopped, or a URL nobody listens on.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from deni.bootstrap import Deni
from deni.domain.phone import normalise_msisdn
from deni.domain.users import User
from deni.entrypoints import cli_offline
from deni.entrypoints.api.app import create_app
from deni.entrypoints.cli import app as cli_app
from deni.offline import queue, sync
from deni.offline.api import Api, Transient
from deni.offline.client import OfflineClient
from deni.offline.retry import Backoff
from deni.offline.store import Store
from deni.offline.sync import Syncer, UpgradeRequired
from deni.sandbox.server import BackgroundServer
from deni.services import users
from tests.support.api import assert_ledger_whole
from tests.support.builders import fund, next_phone, register, sms_code, wallet_cents

PIN = "3591"
_OPEN_APIS: list[Api] = []


@pytest.fixture(autouse=True)
def _close_apis() -> Iterator[None]:
    yield
    while _OPEN_APIS:
        _OPEN_APIS.pop().close()


def open_api(url: str, **kwargs: Any) -> Api:
    api = Api(url, **kwargs)
    _OPEN_APIS.append(api)
    return api


@pytest.fixture
def server(deni: Deni) -> Iterator[BackgroundServer]:
    running = BackgroundServer(create_app(deni))
    running.start()
    yield running
    if running._thread.is_alive():
        running.stop()


def restart(deni: Deni, url: str) -> BackgroundServer:
    """A new server process (new app, same database) on the same port."""
    port = int(url.rsplit(":", 1)[1])
    again = BackgroundServer(create_app(deni), port=port)
    again.start()
    return again


def no_sleep(_delay_s: float) -> None:
    return None


@dataclass
class Device:
    client: OfflineClient
    url: str
    user: User

    def syncer(self, *, pin: str | None = PIN, **kwargs: Any) -> Syncer:
        kwargs.setdefault("backoff", Backoff(sleep=no_sleep))
        api = open_api(self.url, **_transport(kwargs))
        return Syncer(self.client.store, api, pin=pin, **kwargs)

    def sync(self, *, pin: str | None = PIN) -> sync.SyncReport:
        return self.syncer(pin=pin).sync()

    def states(self) -> dict[str, str]:
        return {line.id: line.state for line in self.client.loans()}


def _transport(kwargs: dict[str, Any]) -> dict[str, Any]:
    transport = kwargs.pop("transport", None)
    return {} if transport is None else {"transport": transport}


def device(url: str, user: User, path: Path) -> Device:
    client = OfflineClient(Store(path))
    with Api(url) as api:
        client.login(url=url, phone=user.phone, pin=PIN, api=api)
    found = Device(client, url, user)
    found.sync()
    return found


@dataclass
class World:
    deni: Deni
    url: str
    borrower: User
    lender: User


@pytest.fixture
def world(deni: Deni, server: BackgroundServer) -> World:
    borrower = register(deni, name="Wanjiku Borrower", pin=PIN)
    lender = register(deni, name="Otieno Lender", pin=PIN)
    fund(deni, lender, 500_000)
    fund(deni, borrower, 20_000)
    return World(deni, server.url, borrower, lender)


def converge(*devices: Device) -> None:
    for each in devices:
        each.sync()
    for each in devices:
        each.sync()


# -- scenarios ------------------------------------------------------------------------------------


def test_login_online_then_work_offline_then_sync(
    world: World, server: BackgroundServer, tmp_path: Path
) -> None:
    borrower = device(world.url, world.borrower, tmp_path / "b.sqlite3")
    lender = device(world.url, world.lender, tmp_path / "l.sqlite3")
    server.stop()  # everyone is offline now

    request = borrower.client.request_loan(
        lender_phone=world.lender.phone, principal_cents=100_000, fee_cents=5_000, term_days=14
    )
    loan_id = str(request.args["loan_id"])
    assert borrower.states() == {loan_id: "requested"}
    assert borrower.client.balance().server_cents == 20_000
    with pytest.raises(Transient, match="Cannot reach"):
        borrower.sync()
    assert queue.counts(borrower.client.store.db)["sent"] == 1  # kept, not lost

    again = restart(world.deni, world.url)
    try:
        report = borrower.sync()
        assert report.applied == 1
        lender.sync()
        assert lender.states() == {loan_id: "requested"}  # the same id on every side
        lender.client.approve(loan_id)
        assert lender.client.balance().available_cents == 500_000 - 100_000
        assert lender.sync().applied == 1
        borrower.sync()
        assert borrower.states()[loan_id] == "active"
        assert borrower.client.balance().server_cents == 120_000
        borrower.client.repay(loan_id, amount_cents=30_000)
        balance = borrower.client.balance()
        assert (balance.server_cents, balance.pending_outgoing_cents) == (120_000, 30_000)
        assert balance.available_cents == 90_000
        assert borrower.sync().applied == 1
        balance = borrower.client.balance()
        assert (balance.server_cents, balance.pending_outgoing_cents) == (90_000, 0)
        assert wallet_cents(world.deni, world.borrower) == 90_000
        owed = {line.id: line.owed_cents for line in borrower.client.loans()}
        assert owed[loan_id] == 105_000 - 30_000
        assert_ledger_whole(world.deni)
    finally:
        again.stop()


def test_two_devices_of_one_lender_approve_the_same_loan(world: World, tmp_path: Path) -> None:
    borrower = device(world.url, world.borrower, tmp_path / "b.sqlite3")
    loan_id = str(
        borrower.client.request_loan(
            lender_phone=world.lender.phone, principal_cents=50_000, term_days=7
        ).args["loan_id"]
    )
    borrower.sync()
    phone_a = device(world.url, world.lender, tmp_path / "la.sqlite3")
    phone_b = device(world.url, world.lender, tmp_path / "lb.sqlite3")
    phone_a.client.approve(loan_id)
    phone_b.client.approve(loan_id)
    phone_b.client.top_up(amount_cents=1_000)  # queued behind the losing approval

    assert phone_a.sync().applied == 1
    report_b = phone_b.sync()
    assert next(code for _, code, _ in report_b.rejected) == "invalid_transition"
    assert report_b.pushed == 2  # the rejection did not block the top-up behind it
    done = queue.listing(phone_b.client.store.db, statuses=queue.DONE_STATES, limit=10)
    assert {m.name: m.status for m in done}["approve_loan"] == "rejected"
    assert all(m.result_reason for m in done if m.status == "rejected")

    converge(borrower, phone_a, phone_b)
    assert phone_a.states() == phone_b.states() == borrower.states()
    assert phone_a.states()[loan_id] in ("active", "disbursing")
    assert phone_a.client.balance() == phone_b.client.balance()
    assert phone_a.client.balance().server_cents == wallet_cents(world.deni, world.lender)
    assert wallet_cents(world.deni, world.lender) == 500_000 - 50_000  # moved once
    kinds = [
        row["kind"] for row in phone_b.client.store.db.execute("SELECT kind FROM notifications")
    ]
    assert "sync_rejected" in kinds  # the loser was told
    assert_ledger_whole(world.deni)


class LoseFirstAnswer(httpx.BaseTransport):
    """Forwards to the real server, then drops the first push's answer: the push was applied,
    the device never heard (a crash or a dead connection mid-sync)."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.lost = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.url.path.endswith("/sync/push") and self.lost == 0:
            response.read()
            response.close()
            self.lost += 1
            raise httpx.ReadError("connection lost after the server answered", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def test_a_lost_push_answer_is_replayed_not_applied_twice(world: World, tmp_path: Path) -> None:
    borrower = device(world.url, world.borrower, tmp_path / "b.sqlite3")
    loan_id = str(
        borrower.client.request_loan(
            lender_phone=world.lender.phone, principal_cents=50_000, term_days=7
        ).args["loan_id"]
    )
    borrower.client.top_up(amount_cents=500)
    transport = LoseFirstAnswer()
    report = borrower.syncer(transport=transport).sync()
    assert transport.lost == 1
    assert report.replayed >= 1
    assert {
        m.status
        for m in queue.listing(borrower.client.store.db, statuses=queue.DONE_STATES, limit=10)
    } <= {"applied", "rejected"}
    assert borrower.states()[loan_id] == "requested"
    # And a whole duplicate push (the device forgot every answer) changes nothing either.
    with borrower.client.store.write() as db:
        db.execute("UPDATE offline_queue SET status = 'sent'")
    again = borrower.sync()
    assert again.replayed == again.pushed == 2
    assert_ledger_whole(world.deni)


def test_a_crash_mid_sync_then_a_new_process_resumes(world: World, tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    borrower = device(world.url, world.borrower, path)
    loan_id = str(
        borrower.client.request_loan(
            lender_phone=world.lender.phone, principal_cents=50_000, term_days=7
        ).args["loan_id"]
    )
    with pytest.raises(Transient):
        borrower.syncer(
            transport=LoseFirstAnswer(), backoff=Backoff(attempts_max=1)
        ).sync()  # the process "dies" here: answer lost, no retry
    borrower.client.store.close()
    reborn = Device(OfflineClient(Store(path)), world.url, world.borrower)
    report = reborn.sync()
    assert (report.replayed, report.pushed) == (1, 1)
    assert reborn.states() == {loan_id: "requested"}


def test_a_server_restart_mid_sync_is_retried(
    world: World, server: BackgroundServer, tmp_path: Path
) -> None:
    borrower = device(world.url, world.borrower, tmp_path / "b.sqlite3")
    borrower.client.request_loan(
        lender_phone=world.lender.phone, principal_cents=50_000, term_days=7
    )
    server.stop()
    restarted: list[BackgroundServer] = []

    def sleep_then_restart(_delay_s: float) -> None:
        if not restarted:
            restarted.append(restart(world.deni, world.url))

    try:
        report = borrower.syncer(backoff=Backoff(sleep=sleep_then_restart)).sync()
        assert report.applied == 1
        assert restarted
    finally:
        for each in restarted:
            each.stop()


def test_an_old_client_schema_is_told_to_upgrade(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    borrower = device(world.url, world.borrower, tmp_path / "b.sqlite3")
    borrower.client.top_up(amount_cents=500)
    monkeypatch.setattr(sync, "WIRE_SCHEMA_VERSION", 0)
    with pytest.raises(UpgradeRequired, match="Upgrade Deni"):
        borrower.sync()
    assert queue.counts(borrower.client.store.db)["sent"] == 1  # kept for after the upgrade


def test_a_forged_client_id_is_refused_clearly(world: World, tmp_path: Path) -> None:
    lender = device(world.url, world.lender, tmp_path / "l.sqlite3")
    borrower = device(world.url, world.borrower, tmp_path / "b.sqlite3")
    lender_client_id = lender.client.store.get("client_id")
    token = borrower.client.store.get("access_token")
    forged = httpx.post(
        f"{world.url}/api/v1/sync/push",
        json={
            "client_id": lender_client_id,
            "schema_version": 1,
            "mutations": [{"id": 1, "name": "top_up", "args": {"amount_cents": 100}}],
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert forged.status_code == 403
    assert forged.json()["error"]["code"] == "client_not_yours"
    not_uuid = httpx.get(
        f"{world.url}/api/v1/sync/pull",
        params={"client_id": "not-a-uuid", "schema_version": 1},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert not_uuid.status_code == 422
    # The device whose id was copied carries on; a device holding a foreign id takes a new one.
    borrower.client.store.set("client_id", lender_client_id)
    borrower.client.top_up(amount_cents=500)
    report = borrower.sync()
    assert any("not yours" in note for note in report.notes)
    assert borrower.client.store.get("client_id") != lender_client_id
    lender.client.top_up(amount_cents=500)
    assert lender.sync().pushed == 1


def test_a_cursor_from_another_user_forces_a_full_resync(world: World, tmp_path: Path) -> None:
    lender = device(world.url, world.lender, tmp_path / "l.sqlite3")
    borrower = device(world.url, world.borrower, tmp_path / "b.sqlite3")
    with borrower.client.store.write() as db:
        db.execute(
            "INSERT INTO loans (id, state, principal_cents) VALUES (?, 'active', 1)",
            (str(uuid.uuid4()),),
        )
    borrower.client.store.set("cursor", lender.client.store.get("cursor"))
    report = borrower.sync()
    assert report.reset
    assert borrower.states() == {}  # the ghost row is gone; nothing of the lender's leaked
    assert borrower.client.balance().server_cents == 20_000


def test_rebase_replays_pending_repayments_on_fresh_server_state(
    world: World, tmp_path: Path
) -> None:
    borrower = device(world.url, world.borrower, tmp_path / "b.sqlite3")
    loan_id = str(
        borrower.client.request_loan(
            lender_phone=world.lender.phone, principal_cents=50_000, term_days=7
        ).args["loan_id"]
    )
    borrower.sync()
    lender = device(world.url, world.lender, tmp_path / "l.sqlite3")
    lender.client.approve(loan_id)
    lender.sync()
    borrower.sync()
    other_phone = device(world.url, world.borrower, tmp_path / "b2.sqlite3")
    other_phone.client.repay(loan_id, amount_cents=10_000)
    other_phone.sync()
    borrower.client.repay(loan_id, amount_cents=5_000)  # queued, not pushed
    syncer = borrower.syncer()
    syncer.pull()  # news from the other phone, while this repayment is still pending
    syncer.rebase()
    line = {line.id: line for line in borrower.client.loans()}[loan_id]
    assert line.owed_cents == 50_000 - 10_000 - 5_000
    assert line.pending
    balance = borrower.client.balance()
    assert balance.server_cents == 20_000 + 50_000 - 10_000
    assert balance.pending_outgoing_cents == 5_000


def test_the_cli_end_to_end(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_offline, "console", Console(width=200))
    runner = CliRunner()
    home = str(tmp_path / "home")

    def run(*args: str, input_text: str | None = None) -> str:
        result = runner.invoke(cli_app, ["offline", *args, "--home", home], input=input_text)
        assert result.exit_code == 0, result.output
        return result.output

    out = run("login", "--url", world.url, "--phone", world.borrower.phone, input_text=PIN + "\n")
    assert "Logged in" in out
    out = run("request", "--lender", world.lender.phone, "--amount", "500", "--days", "7")
    assert "Queued #1" in out
    assert "requested *" in run("loans")
    assert "KES 200" in run("balance")  # the wallet held KES 200, nothing pending out
    out = run("sync")
    assert "1 applied" in out
    assert "applied" in run("queue")
    assert "client_id" in run("status")
    assert "dead letter" in run("dead-letters")


def read_phone_when_asked(
    monkeypatch: pytest.MonkeyPatch, deni: Deni, phone: str, *, pin: str = "2468"
) -> None:
    """The person at the terminal: asked for the code, they read it off their phone (the fake
    SMS gateway's newest message to `phone`); asked for a PIN, they type `pin`."""

    def prompt(text: str, **_options: object) -> str:
        return sms_code(deni, phone) if "code" in text.lower() else pin

    monkeypatch.setattr(cli_offline.typer, "prompt", prompt)


def test_the_cli_registers_with_the_code_sent_by_sms(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_offline, "console", Console(width=200))
    home, phone = str(tmp_path / "home"), next_phone()
    read_phone_when_asked(monkeypatch, world.deni, phone)
    result = CliRunner().invoke(
        cli_app,
        ["offline", "register", "--url", world.url, "--phone", phone, "--name", "Achieng Otieno",
         "--language", "sw", "--home", home],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Registered and logged in" in result.output
    with world.deni.uow.read_only() as uow:
        user = users.find_by_phone(uow, phone)
    assert (user.name, user.language, user.phone_proven) == ("Achieng Otieno", "sw", True)
    profile = CliRunner().invoke(cli_app, ["offline", "profile", "--home", home])
    assert "Achieng Otieno" in profile.output
    assert "not confirmed" not in profile.output

    # Someone without the phone guesses: refused, nothing made.
    monkeypatch.setattr(
        cli_offline.typer, "prompt", lambda text, **_: "000000" if "code" in text else "2468"
    )
    victim = next_phone()
    again = CliRunner().invoke(
        cli_app,
        ["offline", "register", "--url", world.url, "--phone", victim, "--name", "Guesser",
         "--home", str(tmp_path / "other")],
    )  # fmt: skip
    assert again.exit_code == 2
    assert "phone_code_invalid" in again.output
    with world.deni.uow.read_only() as uow:
        assert uow.users.get_by_phone(normalise_msisdn(victim)) is None


def test_an_unproven_account_proves_its_number_from_the_cli_and_may_then_borrow(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_offline, "console", Console(width=200))
    legacy = register(world.deni, name="Legacy Lucy", pin=PIN, phone_proven=False)
    home = str(tmp_path / "home")

    def run(*args: str, input_text: str | None = None) -> str:
        result = CliRunner().invoke(cli_app, ["offline", *args, "--home", home], input=input_text)
        assert result.exit_code == 0, result.output
        return result.output

    run("login", "--url", world.url, "--phone", legacy.phone, input_text=PIN + "\n")
    assert "not confirmed" in run("profile")
    run("request", "--lender", world.lender.phone, "--amount", "500", "--days", "7")
    run("sync")
    assert "phone_not_proven" in run("queue")

    read_phone_when_asked(monkeypatch, world.deni, legacy.phone)
    assert "Your number is confirmed" in run("prove-phone")
    assert "not confirmed" not in run("profile")
    run("request", "--lender", world.lender.phone, "--amount", "500", "--days", "7")
    assert "1 applied" in run("sync")


def test_a_malformed_mutation_is_a_dead_letter_on_both_sides_and_blocks_nothing(
    world: World, tmp_path: Path
) -> None:
    phone = device(world.url, world.borrower, tmp_path / "borrower.sqlite3")
    # A mutation the server cannot read (an amount that is not an integer), then a sound one.
    bad = queue.enqueue(
        phone.client.store,
        name="repay_loan",
        args={"loan_id": str(uuid.uuid4()), "amount_cents": "lots"},
        aggregate_id=None,
    )
    good = phone.client.top_up(amount_cents=1_000)
    report = phone.sync()

    assert report.dead == 1
    dead = queue.get(phone.client.store.db, bad.mutation_id)
    assert dead is not None
    assert dead.status == "dead"
    assert dead.dead_letter_id is not None
    after = queue.get(phone.client.store.db, good.mutation_id)
    assert after is not None
    assert after.status != "pending"  # the sound one went through behind it
    syncer = phone.syncer()
    [letter] = syncer.remote_dead_letters()
    assert letter["id"] == dead.dead_letter_id
    assert letter["code"] == "invalid_args"

    retried = syncer.retry_dead(bad.mutation_id)  # still malformed: stays an open dead letter
    assert retried.status == "dead"
    assert [x["id"] for x in syncer.remote_dead_letters()] == [dead.dead_letter_id]
    assert_ledger_whole(world.deni)


# -- notifications, profile, edits and manual conflicts ------------------------------------------


def test_cli_a_manual_conflict_from_two_phones_is_listed_resolved_and_converges(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two phones of one borrower edit the same request offline: the second edit to reach the
    server becomes a manual conflict; `conflicts` shows both versions, `resolve` keeps one
    (queued, offline), and after sync both phones agree and the conflict is gone."""
    monkeypatch.setattr(cli_offline, "console", Console(width=200))
    monkeypatch.setattr(cli_offline, "errors", Console(width=200, stderr=True))
    runner = CliRunner()
    home_a, home_b = str(tmp_path / "phone_a"), str(tmp_path / "phone_b")

    def run(home: str, *args: str, input_text: str | None = None) -> str:
        result = runner.invoke(cli_app, ["offline", *args, "--home", home], input=input_text)
        assert result.exit_code == 0, result.output
        return result.output

    def local(home: str) -> OfflineClient:
        return OfflineClient(Store(Path(home) / f"{world.borrower.phone}.sqlite3"))

    login = ("login", "--url", world.url, "--phone", world.borrower.phone)
    run(home_a, *login, input_text=PIN + "\n")
    out = run(home_a, "request", "--lender", world.lender.phone, "--amount", "500", "--days", "7")
    loan_id = out.split("Loan ", 1)[1].split()[0]
    run(home_a, "sync")
    run(home_b, *login, input_text=PIN + "\n")
    assert "requested" in run(home_b, "loans")

    # Both phones edit the request while offline (neither has synced since).
    assert "Queued" in run(home_a, "edit", loan_id, "--amount", "600")
    assert "Queued" in run(home_b, "edit", loan_id, "--amount", "700")
    assert "1 applied" in run(home_a, "sync")
    out = run(home_b, "sync")
    assert "1 conflicts" in out
    assert "1 conflict(s) wait for your choice" in out

    out = run(home_b, "conflicts")
    assert "KES 600" in out  # the server's version (phone A's edit)
    assert "KES 700" in out  # this phone's edit
    phone_b = local(home_b)
    try:
        [conflict] = phone_b.conflicts()
        assert conflict.entity_id == loan_id
        assert phone_b.loans()[0].principal_cents == 60_000  # the server's terms in force
    finally:
        phone_b.store.close()
    run(home_a, "sync")
    assert conflict.id in run(home_a, "conflicts")  # the user's conflict, on every phone
    assert "sync_conflict" in run(home_b, "notifications")

    # Resolved offline on phone B: queued, shown at once, sent by the next sync.
    assert "Queued" in run(home_b, "resolve", conflict.id, "--keep", "client")
    assert "You chose to keep yours" in run(home_b, "conflicts")
    assert "KES 700" in run(home_b, "loans")
    assert "1 applied" in run(home_b, "sync")
    run(home_a, "sync")
    for home in (home_a, home_b):
        assert "No open conflicts" in run(home, "conflicts")
        device_view = local(home)
        try:
            [line] = device_view.loans()
            assert (line.id, line.principal_cents, line.pending) == (loan_id, 70_000, False)
        finally:
            device_view.store.close()
    with world.deni.uow.read_only() as uow:
        loan = uow.loans.get(loan_id)
        assert loan is not None
        assert loan.terms.principal_cents == 70_000

    # Read flags: client wins, and the other phone learns them by pull.
    assert "Marked" in run(home_b, "read", "--all")
    assert "0 unread" in run(home_b, "notifications")
    run(home_b, "sync")
    run(home_a, "sync")
    assert "0 unread" in run(home_a, "notifications")


def test_profile_edits_from_two_phones_last_writer_wins_per_field(
    world: World, tmp_path: Path
) -> None:
    phone_a = device(world.url, world.borrower, tmp_path / "a.sqlite3")
    phone_b = device(world.url, world.borrower, tmp_path / "b.sqlite3")
    phone_a.client.update_profile(name="Wanjiku From A")
    phone_b.client.update_profile(name="Wanjiku From B", language="sw")
    assert phone_a.client.profile().name == "Wanjiku From A"  # shown at once, offline
    assert phone_a.sync().applied == 1
    report = phone_b.sync()  # B's base version predates A's change of the name
    assert report.conflicts == 1
    [done] = queue.listing(phone_b.client.store.db, statuses=("conflict",), limit=5)
    assert done.result is not None
    assert done.result["resolution"] == "last_writer_wins"
    converge(phone_a, phone_b)
    for each in (phone_a, phone_b):
        shown = each.client.profile()
        assert (shown.name, shown.language, shown.pending) == ("Wanjiku From B", "sw", False)
    # A later change of one field from phone A is a plain applied change; the name stays.
    phone_a.client.update_profile(language="en")
    assert phone_a.sync().applied == 1
    phone_b.sync()
    assert (phone_b.client.profile().name, phone_b.client.profile().language) == (
        "Wanjiku From B",
        "en",
    )
    with world.deni.uow.read_only() as uow:
        user = uow.users.get(world.borrower.id)
        assert user is not None
        assert (user.name, user.language) == ("Wanjiku From B", "en")


def test_keeping_the_servers_version_ends_the_conflict_and_a_late_choice_is_refused(
    world: World, tmp_path: Path
) -> None:
    phone_a = device(world.url, world.borrower, tmp_path / "a.sqlite3")
    loan_id = str(
        phone_a.client.request_loan(
            lender_phone=world.lender.phone, principal_cents=50_000, term_days=7
        ).args["loan_id"]
    )
    phone_a.sync()
    phone_b = device(world.url, world.borrower, tmp_path / "b.sqlite3")
    phone_a.client.edit_request(loan_id, fee_cents=2_000)
    phone_b.client.edit_request(loan_id, principal_cents=80_000)
    phone_a.sync()
    assert phone_b.sync().conflicts == 1
    phone_a.sync()
    [conflict] = phone_b.client.conflicts()
    assert [c.id for c in phone_a.client.conflicts()] == [conflict.id]
    # Both phones choose offline; B's choice reaches the server first.
    phone_a.client.resolve_conflict(conflict.id, keep="client")
    assert phone_a.client.loans()[0].principal_cents == 80_000  # A's choice, shown at once
    phone_b.client.resolve_conflict(conflict.id, keep="server")
    assert phone_b.sync().applied == 1
    assert phone_b.client.conflicts() == []
    report = phone_a.sync()
    assert [code for _, code, _ in report.rejected] == ["conflict_resolved"]
    assert phone_a.client.conflicts() == []  # the tombstone came with the same sync
    lender = device(world.url, world.lender, tmp_path / "l.sqlite3")
    for each in (phone_a, phone_b, lender):
        each.sync()
        [line] = each.client.loans()
        assert (line.principal_cents, line.owed_cents, line.pending) == (50_000, 52_000, False)


def test_cli_preferences_are_shown_changed_offline_and_reach_the_server(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_offline, "console", Console(width=200))
    runner = CliRunner()
    home = str(tmp_path / "home")

    def run(*args: str, input_text: str | None = None, code: int = 0) -> str:
        result = runner.invoke(cli_app, ["offline", *args, "--home", home], input=input_text)
        assert result.exit_code == code, result.output
        return result.output

    run("login", "--url", world.url, "--phone", world.lender.phone, input_text=PIN + "\n")
    run("sync")
    out = run("preferences")
    assert "to M-PESA" in out  # payouts go to M-PESA by default
    assert "waiting to sync" not in out
    out = run("preferences", "--keep-in-wallet", "--auto-payout")
    assert "Queued #1" in out
    assert out.count("waiting to sync") == 2
    assert "kept in the wallet" in out
    assert "set_preferences" in run("queue")
    assert "1 applied" in run("sync", input_text=PIN + "\n")  # asked, since it needs the PIN
    out = run("preferences")
    assert "kept in the wallet" in out
    assert "waiting to sync" not in out
    with world.deni.uow.read_only() as uow:
        prefs = uow.mpesa_preferences.get(world.lender.id)
    assert (prefs.disburse_to_mpesa, prefs.auto_payout) == (False, True)
