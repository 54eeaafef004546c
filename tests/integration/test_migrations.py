"""The Alembic migrations build exactly the schema the code declares, on both databases: a
column, index or constraint added to the tables but not to a migration (or the reverse) fails
here instead of in production."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

import deni.adapters.db.mpesa_tables
import deni.adapters.db.sync_tables
import deni.adapters.db.ussd_tables  # noqa: F401 (their tables join the shared metadata)
from deni.adapters.db.tables import metadata


def test_the_migrated_database_matches_the_declared_tables(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), metadata)
    finally:
        engine.dispose()
    assert differences == []
