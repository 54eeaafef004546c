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
from sqlalchemy import create_engine, text
from tests.api.support import assert_error, request_loan
from tests.helpers import api_user, fund

import deni.adapters.db.mpesa_tables
import deni.adapters.db.sync_tables
import deni.adapters.db.ussd_tables  # noqa: F401 (their tables join the shared metadata)
from deni.adapters.db.migrate import alembic_config
from deni.adapters.db.tables import metadata
from deni.bootstrap import Deni


def test_the_migrated_database_matches_the_declared_tables(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), metadata)
    finally:
        engine.dispose()
    assert differences == []


def _secret_free_storage() -> Script:
    """The migration that purges what gave secrets back, found by name (numbers get re-chained)."""
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    (found,) = [s for s in scripts.walk_revisions() if s.path.endswith("_secret_free_storage.py")]
    return found


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
    with deni.engine.begin() as connection:
        marker = {"h": str(_secret_free_storage().module.PURGED_FINGERPRINT)}
        connection.execute(text("UPDATE idempotency_keys SET request_hash = :h"), marker)
    assert_error(
        client.post(url, json={"pin": lender.pin}, headers=headers), 409, "idempotency_conflict"
    )
