"""Bring a database to the newest schema and make sure Deni's own accounts exist."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, insert, select

from deni.adapters.db import (
    push_tables,  # noqa: F401 (puts its tables on the metadata)
    ussd_tables,  # noqa: F401 (puts its tables on the metadata)
)
from deni.adapters.db import tables as t
from deni.domain.audit import GENESIS_HASH
from deni.domain.ledger import AccountKind, PlatformAccount

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """Where a database's schema stands against this code's migrations.

    state: "ok" (at this code's head), "behind" (an older revision of this code's: migrations
    are pending), "missing" (no revision at all: an empty database, or tables made some other
    way), "unknown" (a revision this code does not have: another version's schema, a newer
    one most likely)."""

    state: str
    revision: str | None  # the database's; several heads joined by "+"
    head: str  # this code's

    @property
    def ok(self) -> bool:
        return self.state == "ok"


@cache
def code_revisions() -> tuple[str, frozenset[str]]:
    """This code's head revision and every revision it knows, read from the migration files
    once per process."""
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    (head,) = scripts.get_heads()
    return head, frozenset(script.revision for script in scripts.walk_revisions())


def code_head() -> str:
    return code_revisions()[0]


def schema_status(connection: Connection) -> SchemaStatus:
    """One read of the alembic_version table (none: "missing")."""
    head, known = code_revisions()
    current = MigrationContext.configure(connection).get_current_heads()
    revision = "+".join(sorted(current)) or None
    if not current:
        state = "missing"
    elif current == (head,):
        state = "ok"
    elif all(rev in known for rev in current):
        state = "behind"
    else:
        state = "unknown"
    return SchemaStatus(state, revision, head)


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
