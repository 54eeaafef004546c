"""Bring a database to the newest schema and make sure Deni's own accounts exist."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, insert, select

from deni.adapters.db import tables as t
from deni.adapters.db import ussd_tables  # noqa: F401 (puts its tables on the metadata)
from deni.domain.audit import GENESIS_HASH
from deni.domain.ledger import AccountKind, PlatformAccount

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(engine: Engine) -> None:
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    seed(engine)


def seed(engine: Engine) -> None:
    """Platform accounts and the audit head: rows the code assumes, created once."""
    now = datetime.now(UTC)
    with engine.begin() as connection:
        present = set(connection.execute(select(t.accounts.c.id)).scalars())
        for account in PlatformAccount:
            if account.value in present:
                continue
            connection.execute(
                insert(t.accounts).values(
                    id=account.value,
                    kind=AccountKind.PLATFORM.value,
                    normal_side=account.normal_side.value,
                    owner_id=None,
                    no_overdraft=False,
                    balance_cents=0,
                    postings_count=0,
                    created_at=now,
                )
            )
        if connection.execute(select(t.audit_head.c.id)).first() is None:
            connection.execute(insert(t.audit_head).values(id=1, seq=0, hash=GENESIS_HASH))
