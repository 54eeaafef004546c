"""The notification, profile, edit and conflict commands: library and CLI, without a server."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from deni.entrypoints import cli_offline
from deni.entrypoints.cli import app as cli_app
from deni.offline import local, queue
from deni.offline.client import OfflineClient, Refused
from deni.offline.store import MIGRATIONS, SCHEMA_VERSION, Store, dumps
from deni.offline.sync import _apply_change

ME = "user-me"
LENDER = "user-lender"
MY_PHONE = "254700000001"
LOAN = "0193a4b2-0000-7000-8000-000000000001"
CONFLICT = "0193a4b2-0000-7000-8000-00000000c001"
NOTES = (
    # id, kind, created_at, read_at
    ("0193a4b2-0000-7000-8000-0000000000a1", "loan_requested", "2026-11-20T06:00:00Z", None),
    ("0193a4b2-0000-7000-8000-0000000000a2", "sync_conflict", "2026-11-22T06:00:00Z", None),
    ("0193a4b2-0000-7000-8000-0000000000a3", "loan_repaid", "2026-11-21T06:00:00Z", "x"),
)
SERVER_TERMS = {
    "principal_cents": 30_000,
    "fee_cents": 1_000,
    "penalty_daily_cents": 0,
    "due_date": "2026-12-10",
}


def seeded(path: Path) -> OfflineClient:
    """A device database as a pull leaves it: my profile, my request to a lender, three
    notifications (one read on the server), one open conflict about the request."""
    store = Store(path)
    user = {"id": ME, "phone": MY_PHONE, "name": "Wanjiku", "language": "en", "version": 3}
    loan = {"id": LOAN, "code": "DN3", "state": "requested", "version": 2, **SERVER_TERMS}
    with store.write() as db:
        db.execute(
            "INSERT INTO sync_metadata (key, value) VALUES ('user_id', ?), ('phone', ?)",
            (ME, MY_PHONE),
        )
        db.execute(
            "INSERT INTO users (id, phone, name, language, balance_cents, server_version, "
            "data_json) VALUES (?, ?, 'Wanjiku', 'en', 50000, 3, ?)",
            (ME, MY_PHONE, dumps(user)),
        )
        db.execute(
            "INSERT INTO loans (id, code, borrower_id, lender_id, lender_phone, state, "
            "principal_cents, fee_cents, owed_cents, due_date, server_version, data_json) "
            "VALUES (?, 'DN3', ?, ?, '254700000002', 'requested', 30000, 1000, 31000, "
            "'2026-12-10', 2, ?)",
            (LOAN, ME, LENDER, dumps(loan)),
        )
        for note_id, kind, created_at, read_at in NOTES:
            db.execute(
                "INSERT INTO notifications (id, kind, body, created_at, read_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (note_id, kind, f"About {kind}", created_at, read_at),
            )
        _apply_change(db, conflict_change())
    return OfflineClient(store)


def conflict_change() -> dict[str, object]:
    return {
        "entity": "conflict",
        "id": CONFLICT,
        "op": "put",
        "data": {
            "id": CONFLICT,
            "entity": "loan",
            "entity_id": LOAN,
            "client_id": "c",
            "mutation_id": 4,
            "server_version": {**SERVER_TERMS, "version": 2},
            "client_version": {**SERVER_TERMS, "principal_cents": 45_000, "base_version": 1},
            "created_at": "2026-11-22T06:00:00Z",
        },
    }


def queued(client: OfflineClient) -> list[queue.Mutation]:
    return queue.listing(client.store.db, statuses=queue.ALL_STATES, limit=100)


def rebase(client: OfflineClient) -> list[int]:
    with client.store.write() as db:
        return local.rebase(db, ME, queue.unconfirmed(db, confirmed_mutation_id=0))


# -- notifications ------------------------------------------------------------------------------


def test_notifications_are_newest_first_with_their_read_flags(tmp_path: Path) -> None:
    client = seeded(tmp_path / "d.sqlite3")
    lines = client.notifications()
    assert [line.kind for line in lines] == ["sync_conflict", "loan_repaid", "loan_requested"]
    assert [line.read for line in lines] == [False, True, False]
    assert [line.id for line in client.notifications(unread_only=True)] == [
        NOTES[1][0],
        NOTES[0][0],
    ]


def test_mark_read_is_applied_at_once_and_queued(tmp_path: Path) -> None:
    client = seeded(tmp_path / "d.sqlite3")
    [mutation] = client.mark_read([NOTES[0][0], NOTES[2][0], NOTES[0][0]])  # one read already
    assert mutation.name == "mark_notification_read"
    assert mutation.args == {"notification_ids": [NOTES[0][0]]}
    line = {x.id: x for x in client.notifications()}[NOTES[0][0]]
    assert (line.read, line.read_pending) == (True, True)
    assert client.mark_read([NOTES[0][0]]) == []  # nothing left to mark: nothing queued
    assert len(queued(client)) == 1
    rebase(client)  # still unconfirmed: the flag is replayed
    assert {x.id: x.read for x in client.notifications()}[NOTES[0][0]]


def test_mark_read_refuses_unknown_ids_and_queues_nothing(tmp_path: Path) -> None:
    client = seeded(tmp_path / "d.sqlite3")
    with pytest.raises(Refused) as unknown:
        client.mark_read([NOTES[0][0], "no-such-notification"])
    assert unknown.value.code == "notification_not_found"
    with pytest.raises(Refused) as ambiguous:
        client.mark_read(["0193a4b2"])  # every seeded id starts so
    assert ambiguous.value.code == "ambiguous"
    with pytest.raises(Refused) as empty:
        client.mark_read([])
    assert empty.value.code == "nothing_to_mark"
    assert queued(client) == []
    assert not any(x.read_pending for x in client.notifications())


def test_mark_all_read_splits_into_mutations_of_100_in_one_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = seeded(tmp_path / "d.sqlite3")
    with client.store.write() as db:
        for n in range(248):
            db.execute(
                "INSERT INTO notifications (id, kind, body, created_at) VALUES (?, 'k', 'b', ?)",
                (f"extra-{n:03d}", f"2026-11-23T06:{n // 60:02d}:{n % 60:02d}Z"),
            )
    monkeypatch.setattr(queue, "QUEUE_OPEN_MAX", 2)
    with pytest.raises(queue.QueueFull):
        client.mark_all_read()  # three mutations do not fit: none is queued, nothing marked
    assert queued(client) == []
    assert len(client.notifications(unread_only=True)) == 250
    monkeypatch.setattr(queue, "QUEUE_OPEN_MAX", 1_000)
    mutations = client.mark_all_read()
    assert [m.mutation_id for m in mutations] == [1, 2, 3]
    assert [len(m.args["notification_ids"]) for m in mutations] == [100, 100, 50]
    assert client.notifications(unread_only=True) == []
    assert client.mark_all_read() == []


# -- profile ------------------------------------------------------------------------------------


def test_profile_change_is_an_overlay_with_the_server_version_as_base(tmp_path: Path) -> None:
    client = seeded(tmp_path / "d.sqlite3")
    mutation = client.update_profile(name="  Wanjiku   Kamau ", language="sw")
    assert mutation.args == {"base_version": 3, "name": "Wanjiku Kamau", "language": "sw"}
    shown = client.profile()
    assert (shown.name, shown.language, shown.pending) == ("Wanjiku Kamau", "sw", True)
    assert (shown.server_name, shown.server_language) == ("Wanjiku", "en")
    # A pull brings another device's name (server version 4); ours is still queued, so it is
    # replayed on top: it will reach the server later, and last writer wins per field.
    with client.store.write() as db:
        db.execute("UPDATE users SET name = 'Other', server_version = 4 WHERE id = ?", (ME,))
    rebase(client)
    assert client.profile().name == "Wanjiku Kamau"
    # Once the server confirms it, the overlay goes and the server's value shows.
    with client.store.write() as db:
        db.execute("UPDATE users SET name = 'Wanjiku Kamau', language = 'sw' WHERE id = ?", (ME,))
        local.rebase(db, ME, queue.unconfirmed(db, confirmed_mutation_id=1))
    assert not client.profile().pending
    row = client.store.db.execute("SELECT local_name FROM users").fetchone()
    assert row[0] is None


@pytest.mark.parametrize(
    ("name", "language", "code"),
    [
        ("W", None, "invalid_name"),
        ("x" * 61, None, "invalid_name"),
        ("Bad\x07name", None, "invalid_name"),
        (None, "fr", "invalid_language"),
        (None, "EN", "invalid_language"),
        (None, None, "nothing_to_change"),
    ],
)
def test_profile_changes_the_server_would_refuse_queue_nothing(
    tmp_path: Path, name: str | None, language: str | None, code: str
) -> None:
    client = seeded(tmp_path / "d.sqlite3")
    with pytest.raises(Refused) as refused:
        client.update_profile(name=name, language=language)
    assert refused.value.code == code
    assert queued(client) == []
    assert not client.profile().pending


# -- edit and conflicts ------------------------------------------------------------------------


def test_edit_request_overlays_the_terms_and_carries_the_version_seen(tmp_path: Path) -> None:
    client = seeded(tmp_path / "d.sqlite3")
    mutation = client.edit_request("DN3", principal_cents=40_000)
    assert mutation.args == {"loan_id": LOAN, "base_version": 2, "principal_cents": 40_000}
    [line] = client.loans()
    assert (line.principal_cents, line.owed_cents, line.pending) == (40_000, 41_000, True)
    with pytest.raises(Refused) as again:
        client.edit_request("DN3", fee_cents=0)  # its version is unknown until the sync
    assert again.value.code == "edit_pending"
    rebase(client)
    assert client.loans()[0].principal_cents == 40_000


def test_edit_request_refusals_queue_nothing(tmp_path: Path) -> None:
    client = seeded(tmp_path / "d.sqlite3")
    cases = [
        ({"principal_cents": 0}, "invalid_amount"),
        ({"fee_cents": 31_000}, "invalid_amount"),  # a fee above the principal
        ({"term_days": 0}, "invalid_due_date"),
        ({}, "nothing_to_change"),
    ]
    for kwargs, code in cases:
        with pytest.raises(Refused) as refused:
            client.edit_request("DN3", **kwargs)  # type: ignore[arg-type]
        assert refused.value.code == code, kwargs
    with client.store.write() as db:
        db.execute("UPDATE loans SET borrower_id = ?, lender_id = ?", (LENDER, ME))
    with pytest.raises(Refused) as not_mine:
        client.edit_request("DN3", principal_cents=40_000)
    assert not_mine.value.code == "not_the_borrower"
    assert queued(client) == []


def test_conflicts_show_both_versions_and_resolve_is_queued_and_applied_here(
    tmp_path: Path,
) -> None:
    client = seeded(tmp_path / "d.sqlite3")
    [conflict] = client.conflicts()
    assert (conflict.entity, conflict.label, conflict.resolving) == ("loan", "DN3", None)
    assert conflict.server_version["principal_cents"] == 30_000
    assert conflict.client_version["principal_cents"] == 45_000

    mutation = client.resolve_conflict(CONFLICT[:30], keep="client")
    assert mutation.name == "resolve_conflict"
    assert mutation.args == {"conflict_id": CONFLICT, "choice": "client"}
    assert mutation.aggregate_id == LOAN
    assert client.conflicts()[0].resolving == "client"
    assert client.loans()[0].principal_cents == 45_000  # your version, shown at once
    with pytest.raises(Refused) as twice:
        client.resolve_conflict(CONFLICT, keep="server")
    assert twice.value.code == "conflict_resolved"
    assert len(queued(client)) == 1

    # A pull in which the conflict is still open (the push has not landed): replayed.
    with client.store.write() as db:
        _apply_change(db, conflict_change())
    rebase(client)
    assert client.conflicts()[0].resolving == "client"
    # The server resolved it (a tombstone) and applied the terms: nothing is left to replay.
    with client.store.write() as db:
        _apply_change(db, {"entity": "conflict", "id": CONFLICT, "op": "delete", "data": None})
        db.execute("UPDATE loans SET principal_cents = 45000, server_version = 3")
        local.rebase(db, ME, queue.unconfirmed(db, confirmed_mutation_id=1))
    assert client.conflicts() == []
    assert client.loans()[0].principal_cents == 45_000


def test_resolve_refusals_queue_nothing(tmp_path: Path) -> None:
    client = seeded(tmp_path / "d.sqlite3")
    with pytest.raises(Refused) as bad_choice:
        client.resolve_conflict(CONFLICT, keep="mine")
    assert bad_choice.value.code == "invalid_choice"
    with pytest.raises(Refused) as unknown:
        client.resolve_conflict("no-such-conflict", keep="server")
    assert unknown.value.code == "conflict_not_found"
    client.cancel("DN3")  # the request is going away: only the server's terms can stay
    with pytest.raises(Refused) as gone:
        client.resolve_conflict(CONFLICT, keep="client")
    assert gone.value.code == "invalid_state"
    assert [m.name for m in queued(client)] == ["cancel_loan"]
    assert client.resolve_conflict(CONFLICT, keep="server").args["choice"] == "server"


def test_a_resolve_whose_conflict_went_away_is_stale_on_rebase(tmp_path: Path) -> None:
    client = seeded(tmp_path / "d.sqlite3")
    mutation = client.resolve_conflict(CONFLICT, keep="server")
    with client.store.write() as db:  # another device resolved it first
        _apply_change(db, {"entity": "conflict", "id": CONFLICT, "op": "delete", "data": None})
    assert rebase(client) == [mutation.mutation_id]  # kept queued; the server decides


def test_a_v2_database_is_migrated_to_v3_keeping_its_queue(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite3"
    raw = sqlite3.connect(path)
    for statement in (*MIGRATIONS[0], *MIGRATIONS[1]):
        raw.execute(statement)
    raw.execute("INSERT INTO sync_metadata VALUES ('schema_version', '2')")
    raw.execute(
        "INSERT INTO offline_queue (mutation_id, idempotency_key, name, args_json, status, "
        "created_at_device) VALUES (1, 'k1', 'update_profile', ?, 'pending', 'x')",
        (json.dumps({"base_version": 0, "name": "New Name"}),),
    )
    raw.commit()
    raw.close()
    store = Store(path)
    assert store.schema_version() == SCHEMA_VERSION == 3
    kept = queue.get(store.db, 1)
    assert kept is not None
    assert kept.name == "update_profile"


# -- the CLI ------------------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(cli_offline, "console", Console(width=220))
    monkeypatch.setattr(cli_offline, "errors", Console(width=220, stderr=True))
    root = tmp_path / "home"
    seeded(root / f"{MY_PHONE}.sqlite3").store.close()
    (root / "current").write_text(MY_PHONE)
    return str(root)


def run(home: str, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli_app, ["offline", *args, "--home", home])
    assert result.exit_code == code, result.output
    return result.output


def device_queue(home: str) -> list[queue.Mutation]:
    store = Store(Path(home) / f"{MY_PHONE}.sqlite3")
    try:
        return queue.listing(store.db, statuses=queue.ALL_STATES, limit=100)
    finally:
        store.close()


def test_cli_notifications_and_read(home: str) -> None:
    out = run(home, "notifications")
    assert out.index("sync_conflict") < out.index("loan_repaid") < out.index("loan_requested")
    assert out.count("new") >= 2
    assert "2 unread" in out
    out = run(home, "read", "no-such-id", code=2)
    assert "code: notification_not_found" in out
    assert "Give notification ids" in run(home, "read", code=2)
    assert "not both" in run(home, "read", NOTES[0][0], "--all", code=2)
    assert device_queue(home) == []
    out = run(home, "read", NOTES[0][0])
    assert "Marked 1 notification(s) read" in out
    assert "Queued #1 mark_notification_read" in out
    assert "read *" in run(home, "notifications")
    assert "1 unread" in run(home, "notifications")
    assert "Queued #2" in run(home, "read", "--all")
    assert "nothing queued" in run(home, "read", "--all")
    assert "0 unread" in run(home, "notifications", "--unread")


def test_cli_profile(home: str) -> None:
    out = run(home, "profile")
    assert "Wanjiku" in out
    assert "*" not in out
    out = run(home, "profile", "--language", "fr", code=2)
    assert "code: invalid_language" in out
    assert "code: invalid_name" in run(home, "profile", "--name", "X", code=2)
    assert device_queue(home) == []
    out = run(home, "profile", "--name", "Wanjiku Kamau", "--language", "sw")
    assert "Queued #1 update_profile" in out
    assert "Wanjiku Kamau * (server: Wanjiku)" in out
    assert "sw * (server: en)" in out


def test_cli_conflicts_resolve_and_edit(home: str) -> None:
    out = run(home, "conflicts")
    assert f"Conflict {CONFLICT}: loan DN3" in out
    assert "KES 300" in out  # the server's principal
    assert "KES 450" in out  # the other edit's
    assert f"deni offline resolve {CONFLICT} --keep server|client" in out
    assert "code: invalid_choice" in run(home, "resolve", CONFLICT, "--keep", "both", code=2)
    assert "code: conflict_not_found" in run(home, "resolve", "nope", "--keep", "server", code=2)
    out = run(home, "resolve", CONFLICT, "--keep", "client")
    assert "Queued #1 resolve_conflict" in out
    assert "You chose to keep yours" in run(home, "conflicts")
    assert "code: conflict_resolved" in run(home, "resolve", CONFLICT, "--keep", "server", code=2)
    assert "code: edit_pending" in run(home, "edit", "DN3", "--amount", "400", code=2)
    assert "0 open conflicts" not in run(home, "status")
    assert [m.name for m in device_queue(home)] == ["resolve_conflict"]


def test_cli_edit(home: str) -> None:
    assert "code: invalid_amount" in run(home, "edit", "DN3", "--amount", "0", code=2)
    assert "code: nothing_to_change" in run(home, "edit", "DN3", code=2)
    assert "--due is a date" in run(home, "edit", "DN3", "--due", "soon", code=2)
    assert "code: not_found" in run(home, "edit", "DN9", "--amount", "400", code=2)
    assert device_queue(home) == []
    assert "Queued #1 edit_loan_request" in run(home, "edit", "DN3", "--amount", "400")
    assert "KES 400" in run(home, "loans")


# -- M-PESA preferences ---------------------------------------------------------------------------


def _pulled_preferences(client: OfflineClient, *, disburse: bool, auto_payout: bool) -> None:
    data = json.dumps({"disburse_to_mpesa": disburse, "auto_payout": auto_payout})
    with client.store.write() as db:
        db.execute(
            "INSERT INTO records (entity, id, data_json) VALUES ('preferences', ?, ?)", (ME, data)
        )


def test_preferences_show_queued_changes_over_the_pulled_values(tmp_path: Path) -> None:
    client = seeded(tmp_path / "d.sqlite3")
    with pytest.raises(Refused) as refused:
        client.preferences()
    assert refused.value.code == "not_synced"
    _pulled_preferences(client, disburse=True, auto_payout=False)
    assert not client.preferences().pending
    first = client.set_preferences(auto_payout=True)
    second = client.set_preferences(disburse_to_mpesa=False)
    assert (first.args, second.args) == ({"auto_payout": True}, {"disburse_to_mpesa": False})
    shown = client.preferences()
    assert (shown.disburse_to_mpesa, shown.auto_payout, shown.pending) == (False, True, True)
    assert shown.server == (True, False)
    with pytest.raises(Refused) as nothing:
        client.set_preferences()
    assert nothing.value.code == "nothing_to_change"
    assert [m.name for m in queued(client)] == ["set_preferences", "set_preferences"]


def test_every_mutation_the_queue_takes_has_a_local_effect() -> None:
    assert set(local.EFFECTS) == queue.MUTATION_NAMES
