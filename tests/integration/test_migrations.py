"""The Alembic migrations build exactly the schema the code declares, on both databases: a
column, index or constraint added to the tables but not to a migration (or the reverse) fails
here instead of in production."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import column, create_engine, delete, insert, select, table, text
from tests.support.api import assert_error, request_loan
from tests.support.builders import api_user, fund

import deni.adapters.db.mpesa.tables
import deni.adapters.db.ops.tables
import deni.adapters.db.sync.tables
import deni.adapters.db.ussd_tables  # noqa: F401 (their tables join the shared metadata)
from deni.adapters.db.migrate import alembic_config
from deni.adapters.db.tables import audit_log, metadata, users
from deni.bootstrap import Deni, database_engine


def test_the_migrated_database_matches_the_declared_tables(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), metadata)
    finally:
        engine.dispose()
    assert differences == []


def _migration_named(file_suffix: str) -> Script:
    """A migration found by its file name (numbers get re-chained as branches merge)."""
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    (found,) = [s for s in scripts.walk_revisions() if s.path.endswith(file_suffix)]
    return found


def _secret_free_storage() -> Script:
    """The migration that purges what gave secrets back."""
    return _migration_named("_secret_free_storage.py")


def test_the_secret_free_storage_migration_purges_what_gave_secrets_back(
    database_url: str,
) -> None:
    """Rows as the releases before it left them: an idempotency fingerprint that is the
    unkeyed sha256 of a body with a PIN, a reset code "sent" by the fake SMS gateway, a USSD
    session whose last text holds a PIN. After the migration none of them gives anything back."""
    engine = create_engine(database_url)
    config = alembic_config(database_url)
    migration = _secret_free_storage()
    now = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
    body = '{"pin":"3817"}'
    unkeyed = hashlib.sha256(f"approve:L1\n{body}".encode()).hexdigest()
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, str(migration.down_revision))
            connection.execute(
                text(
                    "INSERT INTO idempotency_keys (scope, key, request_hash, state, "
                    "response_status, response_body, created_at, updated_at) "
                    "VALUES ('u1', 'k1', :hash, 'done', 200, '{}', :now, :now)"
                ),
                {"hash": unkeyed, "now": now},
            )
            sms = "INSERT INTO sms_outbox (id, idempotency_key, phone, body, created_at) VALUES "
            connection.execute(
                text(sms + "('m1', 'pin-reset:u1:1.0:1', '254700000001', :body, :now)"),
                {
                    "body": "Deni: your PIN reset code is 613572. It expires soon.",
                    "now": now,
                },
            )
            connection.execute(
                text(sms + "('m2', 'notification:n1', '254700000001', :body, :now)"),
                {"body": "KES 1,500 was added to your Deni wallet.", "now": now},
            )
            connection.execute(
                text("INSERT INTO ussd_sessions (key, value, expires_at) VALUES ('s:1', :v, :at)"),
                {"v": '{"last_text": "7*1*3817"}', "at": now + timedelta(seconds=180)},
            )
            command.upgrade(config, "head")
        with engine.connect() as connection:
            fingerprint = connection.execute(text("SELECT request_hash FROM idempotency_keys"))
            outbox = connection.execute(
                text("SELECT id, body, holds_secret FROM sms_outbox ORDER BY id")
            ).all()
            sessions = connection.execute(text("SELECT count(*) FROM ussd_sessions")).scalar()
        assert fingerprint.scalar() != unkeyed
        assert [(r.id, r.body, bool(r.holds_secret)) for r in outbox] == [
            ("m1", "Deni: your PIN reset code is ******. It expires soon.", True),
            ("m2", "KES 1,500 was added to your Deni wallet.", False),
        ]
        assert sessions == 0
    finally:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")  # whatever happened, leave the schema whole
        engine.dispose()


def test_an_idempotency_key_whose_fingerprint_was_purged_is_refused_not_run_again(
    client: TestClient, deni: Deni
) -> None:
    """A retry of a key from before the migration might be a command that ran: refused (409)
    until the row's retention ends, never run a second time."""
    lender, borrower = api_user(client, deni), api_user(client, deni)
    fund(deni, lender.user, 500_000)
    loan = request_loan(client, borrower, lender)
    url, headers = f"/api/v1/loans/{loan['id']}/approve", lender.with_key()
    assert client.post(url, json={"pin": lender.pin}, headers=headers).status_code == 200
    with database_engine(deni).begin() as connection:
        marker = {"h": str(_secret_free_storage().module.PURGED_FINGERPRINT)}
        connection.execute(text("UPDATE idempotency_keys SET request_hash = :h"), marker)
    assert_error(
        client.post(url, json={"pin": lender.pin}, headers=headers), 409, "idempotency_conflict"
    )


def test_migration_0014_proves_only_the_numbers_a_sim_holder_showed(database_url: str) -> None:
    """Accounts made online before numbers were proven start unproven; USSD-made ones, and
    those whose holder later entered the PIN on USSD or reset it, are proven from that time."""
    config = alembic_config(database_url)
    engine = create_engine(database_url)
    at = [datetime(2026, 1, day, 9, tzinfo=UTC) for day in range(1, 6)]
    people = {  # name: (closed, audit rows (day, channel, command))
        "ussd_made": (False, [(0, "ussd", "register_user")]),
        "api_made": (False, [(0, "api", "register_user"), (1, "ussd", "wrong_pin")]),
        "api_then_ussd_pin": (False, [(0, "api", "register_user"), (2, "ussd", "approve_loan")]),
        "api_then_reset": (False, [(0, "api", "register_user"), (3, "api", "reset_pin")]),
        "closed": (True, [(0, "ussd", "register_user")]),
    }
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, str(_migration_named("_phone_proof.py").down_revision))
        before = ("id", "phone", "name", "language", "pin_hash", "failed_pin_attempts")
        before += ("lock_count", "closed_at", "created_at", "updated_at")
        # The users table as the code of that time wrote it (typed values, no newer column).
        old_users = table("users", *(column(name, users.c[name].type) for name in before))
        with engine.begin() as connection:
            for n, (name, (closed, rows)) in enumerate(people.items()):
                connection.execute(
                    insert(old_users).values(
                        id=name, phone=f"25471100000{n}", name=name, language="en",
                        pin_hash="x", failed_pin_attempts=0, lock_count=0,
                        closed_at=at[4] if closed else None, created_at=at[0], updated_at=at[0],
                    )
                )  # fmt: skip
                for day, channel, command_name in rows:
                    connection.execute(
                        insert(audit_log).values(
                            at=at[day], actor_id=name, channel=channel, command=command_name,
                            details="{}", prev_hash="", hash=f"{name}-{day}-{command_name}",
                        )
                    )  # fmt: skip
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        with engine.connect() as connection:
            rows = connection.execute(select(users.c.id, users.c.phone_proven_at)).all()
    finally:
        with engine.begin() as connection:  # whatever happened, leave the schema at head
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            connection.execute(delete(audit_log).where(audit_log.c.actor_id.in_(list(people))))
            connection.execute(delete(users).where(users.c.id.in_(list(people))))
        engine.dispose()
    assert dict(rows) == {
        "ussd_made": at[0],
        "api_made": None,
        "api_then_ussd_pin": at[2],
        "api_then_reset": at[3],
        "closed": None,
    }
