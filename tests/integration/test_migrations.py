"""The Alembic migrations build exactly the schema the code declares, on both databases: a
column, index or constraint added to the tables but not to a migration (or the reverse) fails
here instead of in production."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, delete, insert, select

import deni.adapters.db.mpesa_tables
import deni.adapters.db.sync_tables
import deni.adapters.db.ussd_tables  # noqa: F401 (their tables join the shared metadata)
from deni.adapters.db.migrate import alembic_config
from deni.adapters.db.tables import audit_log, metadata, users


def test_the_migrated_database_matches_the_declared_tables(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), metadata)
    finally:
        engine.dispose()
    assert differences == []


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
            command.downgrade(config, "0012")
        with engine.begin() as connection:
            for n, (name, (closed, rows)) in enumerate(people.items()):
                # The declared tables, as the code of that time wrote them (typed values);
                # the new column is left out.
                connection.execute(
                    insert(users).values(
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
