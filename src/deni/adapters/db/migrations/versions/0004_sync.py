"""Offline sync: clients, processed mutations, the change log, dead letters, conflicts

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
ID = sa.String(length=36)


def upgrade() -> None:
    op.create_table(
        "sync_clients",
        sa.Column("client_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("last_mutation_id", sa.BigInteger(), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_sync_clients_user_id_users")
        ),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_sync_clients")),
    )
    op.create_index("ix_sync_clients_user_id", "sync_clients", ["user_id"])
    op.create_table(
        "sync_mutations",
        sa.Column("client_id", ID, nullable=False),
        sa.Column("mutation_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("args_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("resolution", sa.String(length=32), nullable=True),
        sa.Column("entity_id", sa.String(length=64), nullable=True),
        sa.Column("conflict_id", ID, nullable=True),
        sa.Column("dead_letter_id", ID, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["sync_clients.client_id"],
            name=op.f("fk_sync_mutations_client_id_sync_clients"),
        ),
        sa.PrimaryKeyConstraint("client_id", "mutation_id", name=op.f("pk_sync_mutations")),
    )
    op.create_table(
        "sync_changes",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            autoincrement=True,
        ),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("entity", sa.String(length=16), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=False),
        sa.Column("op", sa.String(length=8), nullable=False),
        sa.Column("xid", sa.BigInteger(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_sync_changes")),
    )
    op.create_index("ix_sync_changes_user_xid_seq", "sync_changes", ["user_id", "xid", "seq"])
    op.create_table(
        "sync_dead_letters",
        sa.Column("id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("client_id", ID, nullable=False),
        sa.Column("mutation_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("args", sa.Text(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("retried_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_dead_letters")),
    )
    op.create_index(
        "ix_sync_dead_letters_user_client_state",
        "sync_dead_letters",
        ["user_id", "client_id", "state"],
    )
    op.create_table(
        "sync_conflicts",
        sa.Column("id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("client_id", ID, nullable=False),
        sa.Column("mutation_id", sa.BigInteger(), nullable=False),
        sa.Column("entity", sa.String(length=16), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=False),
        sa.Column("server_version", sa.Text(), nullable=False),
        sa.Column("client_version", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("resolution", sa.String(length=16), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("resolved_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_conflicts")),
    )
    op.create_index("ix_sync_conflicts_user_id", "sync_conflicts", ["user_id"])
    op.create_table(
        "sync_profile_fields",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("field", sa.String(length=16), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "field", name=op.f("pk_sync_profile_fields")),
    )


def downgrade() -> None:
    op.drop_table("sync_profile_fields")
    op.drop_index("ix_sync_conflicts_user_id", table_name="sync_conflicts")
    op.drop_table("sync_conflicts")
    op.drop_index("ix_sync_dead_letters_user_client_state", table_name="sync_dead_letters")
    op.drop_table("sync_dead_letters")
    op.drop_index("ix_sync_changes_user_xid_seq", table_name="sync_changes")
    op.drop_table("sync_changes")
    op.drop_table("sync_mutations")
    op.drop_index("ix_sync_clients_user_id", table_name="sync_clients")
    op.drop_table("sync_clients")
