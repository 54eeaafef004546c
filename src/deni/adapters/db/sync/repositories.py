"""SQL side of the sync protocol: clients, processed mutations, dead letters, conflicts,
the change log reader and the bulk loaders pulls use. Every loader filters by the user."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from itertools import takewhile
from typing import Any

from sqlalchemy import Connection, Row, and_, func, or_, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from deni.adapters.db import tables as t
from deni.adapters.db.ledger import statement_line, statement_query
from deni.adapters.db.loans import loan_from_row
from deni.adapters.db.notifications import notification_record
from deni.adapters.db.sync import tables as s
from deni.domain.ledger import HoldState, NormalSide, wallet_account_id
from deni.domain.loans import Loan
from deni.domain.users import shown_contact
from deni.services.ports import NotificationRecord, RepaymentRecord, StatementLine
from deni.services.sync.ports import (
    Change,
    ChangeRow,
    ConflictRecord,
    DeadLetter,
    MutationResult,
    Position,
    StoredMutation,
    SyncClient,
)

IDS_PER_QUERY_MAX = 1000
PRUNE_BATCH_MAX = 10_000
_INSERT_MUTATION = s.sync_mutations.insert()  # values come with each call (one statement)


# The lowest transaction id a pull must wait for: the snapshot's running transactions, less those
# pg_stat_activity shows running in another database (they cannot write this one's change
# log), else the snapshot's xmax. Plain xmin would make a long writer anywhere on the server
# hold every pull back. A running transaction this cannot place (one that ended between the
# snapshot and the activity read, a prepared one, a subtransaction's id) still counts: waiting
# is safe, skipping is not. backend_xid is 32 bits, snapshot ids 64: compare the low 32.
_FINISHED_BELOW = text(
    """
    WITH snapshot AS (SELECT pg_current_snapshot() AS taken),
    elsewhere AS (
        SELECT backend_xid::text::bigint AS xid32
        FROM pg_stat_activity
        WHERE backend_xid IS NOT NULL AND datname IS DISTINCT FROM current_database()
    )
    SELECT coalesce(
        (
            SELECT min(running::text::bigint)
            FROM snapshot, pg_snapshot_xip(snapshot.taken) AS running
            WHERE running::text::bigint % 4294967296 NOT IN (SELECT xid32 FROM elsewhere)
        ),
        (SELECT pg_snapshot_xmax(taken)::text::bigint FROM snapshot)
    )
    """
)


class SqlSyncRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    # --- clients and processed mutations ---

    def get_client(self, client_id: str) -> SyncClient | None:
        row = self._connection.execute(
            select(s.sync_clients).where(s.sync_clients.c.client_id == client_id)
        ).first()
        return _client(row) if row else None

    def lock_client(self, client_id: str) -> SyncClient | None:
        query = (
            select(s.sync_clients).where(s.sync_clients.c.client_id == client_id).with_for_update()
        )
        row = self._connection.execute(query).first()
        return _client(row) if row else None

    def add_client(self, client: SyncClient, now: datetime) -> None:
        values = {
            "client_id": client.client_id,
            "user_id": client.user_id,
            "last_mutation_id": client.last_mutation_id,
            "schema_version": client.schema_version,
            "created_at": now,
            "updated_at": now,
        }
        insert = (
            postgresql.insert(s.sync_clients)
            if self._connection.dialect.name == "postgresql"
            else sqlite.insert(s.sync_clients)
        )
        self._connection.execute(
            insert.values(**values).on_conflict_do_nothing(index_elements=["client_id"])
        )

    def advance_client(
        self, client_id: str, *, last_mutation_id: int, schema_version: int, now: datetime
    ) -> None:
        result = self._connection.execute(
            update(s.sync_clients)
            .where(s.sync_clients.c.client_id == client_id)
            .values(
                last_mutation_id=last_mutation_id, schema_version=schema_version, updated_at=now
            )
        )
        assert result.rowcount == 1

    def get_mutations(
        self, client_id: str, mutation_ids: Sequence[int]
    ) -> dict[int, StoredMutation]:
        assert len(mutation_ids) <= IDS_PER_QUERY_MAX
        if not mutation_ids:
            return {}
        m = s.sync_mutations
        rows = self._connection.execute(
            select(m).where(and_(m.c.client_id == client_id, m.c.mutation_id.in_(mutation_ids)))
        )
        return {int(row.mutation_id): _stored_mutation(row) for row in rows}

    def add_mutations(self, stored: Sequence[StoredMutation]) -> None:
        if not stored:
            return
        self._connection.execute(
            _INSERT_MUTATION,
            [
                {
                    "client_id": one.client_id,
                    "mutation_id": one.result.mutation_id,
                    "user_id": one.user_id,
                    "name": one.name,
                    "args_hash": one.args_hash,
                    "status": one.result.status,
                    "code": one.result.code,
                    "message": one.result.message,
                    "resolution": one.result.resolution,
                    "entity_id": one.result.entity_id,
                    "conflict_id": one.result.conflict_id,
                    "dead_letter_id": one.result.dead_letter_id,
                    "created_at": one.created_at,
                }
                for one in stored
            ],
        )

    # --- dead letters ---

    def add_dead_letter(self, dead_letter: DeadLetter) -> None:
        d = dead_letter
        self._connection.execute(
            s.sync_dead_letters.insert().values(
                id=d.id,
                user_id=d.user_id,
                client_id=d.client_id,
                mutation_id=d.mutation_id,
                name=d.name,
                args=d.args_json,
                code=d.code,
                message=d.message,
                state=d.state,
                result=d.result_json,
                created_at=d.created_at,
                retried_at=d.retried_at,
            )
        )

    def get_dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        d = s.sync_dead_letters
        row = self._connection.execute(select(d).where(d.c.id == dead_letter_id)).first()
        return _dead_letter(row) if row else None

    def lock_dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        d = s.sync_dead_letters
        row = self._connection.execute(
            select(d).where(d.c.id == dead_letter_id).with_for_update()
        ).first()
        return _dead_letter(row) if row else None

    def update_dead_letter(
        self, dead_letter_id: str, *, state: str, result_json: str | None, now: datetime
    ) -> None:
        d = s.sync_dead_letters
        self._connection.execute(
            update(d)
            .where(d.c.id == dead_letter_id)
            .values(state=state, result=result_json, retried_at=now)
        )

    def list_dead_letters(
        self, *, user_id: str, client_id: str, open_only: bool, limit: int
    ) -> list[DeadLetter]:
        d = s.sync_dead_letters
        query = select(d).where(and_(d.c.user_id == user_id, d.c.client_id == client_id))
        if open_only:
            query = query.where(d.c.state == "open")
        query = query.order_by(d.c.created_at, d.c.id).limit(limit)
        return [_dead_letter(row) for row in self._connection.execute(query)]

    def count_open_dead_letters(self, *, user_id: str, client_id: str) -> int:
        d = s.sync_dead_letters
        query = select(func.count()).where(
            and_(d.c.user_id == user_id, d.c.client_id == client_id, d.c.state == "open")
        )
        return int(self._connection.execute(query).scalar_one())

    # --- conflicts ---

    def add_conflict(self, conflict: ConflictRecord) -> None:
        c = conflict
        self._connection.execute(
            s.sync_conflicts.insert().values(
                id=c.id,
                user_id=c.user_id,
                client_id=c.client_id,
                mutation_id=c.mutation_id,
                entity=c.entity,
                entity_id=c.entity_id,
                server_version=c.server_version_json,
                client_version=c.client_version_json,
                state=c.state,
                resolution=c.resolution,
                created_at=c.created_at,
                resolved_at=c.resolved_at,
            )
        )

    def lock_conflict(self, conflict_id: str) -> ConflictRecord | None:
        c = s.sync_conflicts
        row = self._connection.execute(
            select(c).where(c.c.id == conflict_id).with_for_update()
        ).first()
        return _conflict(row) if row else None

    def resolve_conflict(self, conflict_id: str, *, resolution: str, now: datetime) -> None:
        c = s.sync_conflicts
        result = self._connection.execute(
            update(c)
            .where(and_(c.c.id == conflict_id, c.c.state == "open"))
            .values(state="resolved", resolution=resolution, resolved_at=now)
        )
        assert result.rowcount == 1

    def count_open_conflicts(self, user_id: str) -> int:
        c = s.sync_conflicts
        query = select(func.count()).where(and_(c.c.user_id == user_id, c.c.state == "open"))
        return int(self._connection.execute(query).scalar_one())

    def profile_versions(self, user_id: str) -> dict[str, int]:
        p = s.sync_profile_fields
        rows = self._connection.execute(
            select(p.c.field, p.c.version).where(p.c.user_id == user_id)
        )
        return {row.field: int(row.version) for row in rows}

    # --- the change log ---

    def log_changes(self, changes: Sequence[Change], now: datetime) -> None:
        s.log_changes(self._connection, changes, now)

    def finished_below(self) -> int | None:
        if self._connection.dialect.name != "postgresql":
            return None
        return int(self._connection.execute(_FINISHED_BELOW).scalar_one())

    def prune_changes(self, *, created_before: datetime, limit: int) -> int:
        # Walk the log from its start by primary key (no index on the time needed): the
        # sequence follows creation order, so the old rows are a prefix of it.
        assert 1 <= limit <= PRUNE_BATCH_MAX
        c = s.sync_changes
        oldest = self._connection.execute(
            select(c.c.seq, c.c.created_at).order_by(c.c.seq).limit(limit)
        ).all()
        prefix = list(takewhile(lambda row: row.created_at < created_before, oldest))
        if not prefix:
            return 0
        result = self._connection.execute(c.delete().where(c.c.seq <= prefix[-1].seq))
        return int(result.rowcount)

    def prune_mutations(self, *, created_before: datetime, limit: int) -> int:
        assert 1 <= limit <= PRUNE_BATCH_MAX
        m = s.sync_mutations
        oldest = (
            select(m.c.client_id, m.c.mutation_id)
            .where(m.c.created_at < created_before)
            .order_by(m.c.created_at)
            .limit(limit)
        )
        keys = tuple_(m.c.client_id, m.c.mutation_id)
        result = self._connection.execute(m.delete().where(keys.in_(oldest)))
        return int(result.rowcount)

    def changes_after(
        self, *, user_id: str, after: Position, below_xid: int | None, limit: int
    ) -> list[ChangeRow]:
        assert 1 <= limit <= IDS_PER_QUERY_MAX + 1
        c = s.sync_changes
        query = select(c.c.xid, c.c.seq, c.c.entity, c.c.entity_id, c.c.op).where(
            and_(c.c.user_id == user_id, tuple_(c.c.xid, c.c.seq) > tuple_(after[0], after[1]))
        )
        if below_xid is not None:
            query = query.where(c.c.xid < below_xid)
        query = query.order_by(c.c.xid, c.c.seq).limit(limit)
        return [
            ChangeRow(int(r.xid), int(r.seq), r.entity, r.entity_id, r.op)
            for r in self._connection.execute(query)
        ]

    def last_position(self, user_id: str) -> Position:
        c = s.sync_changes
        row = self._connection.execute(
            select(c.c.xid, c.c.seq)
            .where(c.c.user_id == user_id)
            .order_by(c.c.xid.desc(), c.c.seq.desc())
            .limit(1)
        ).first()
        return (int(row.xid), int(row.seq)) if row else (0, 0)

    # --- current state ---

    def snapshot_keys(
        self, *, user_id: str, entity: str, after_key: str, limit: int
    ) -> list[tuple[str, str]]:
        assert 1 <= limit <= IDS_PER_QUERY_MAX
        if entity in ("user", "wallet", "preferences"):
            return [] if after_key else [(user_id, user_id)]
        ln, r, n, p, c = t.loans, t.repayments, t.notifications, t.postings, s.sync_conflicts
        party = or_(ln.c.borrower_id == user_id, ln.c.lender_id == user_id)
        if entity == "loan":
            query = select(ln.c.id, ln.c.id).where(and_(party, ln.c.id > after_key))
            query = query.order_by(ln.c.id)
        elif entity == "repayment":
            query = (
                select(r.c.id, r.c.id)
                .join(ln, ln.c.id == r.c.loan_id)
                .where(and_(party, r.c.id > after_key))
                .order_by(r.c.id)
            )
        elif entity == "transaction":
            after_posting = int(after_key) if after_key else 0
            wallet = wallet_account_id(user_id)
            rows = self._connection.execute(
                select(p.c.id, p.c.entry_id)
                .where(and_(p.c.account_id == wallet, p.c.id > after_posting))
                .order_by(p.c.id)
                .limit(limit)
            )
            return [(str(row.id), row.entry_id) for row in rows]
        elif entity == "notification":
            query = select(n.c.id, n.c.id).where(and_(n.c.user_id == user_id, n.c.id > after_key))
            query = query.order_by(n.c.id)
        elif entity == "conflict":
            query = select(c.c.id, c.c.id).where(
                and_(c.c.user_id == user_id, c.c.state == "open", c.c.id > after_key)
            )
            query = query.order_by(c.c.id)
        else:
            raise AssertionError(f"unknown entity {entity}")
        return [(row[0], row[1]) for row in self._connection.execute(query.limit(limit))]

    def loans(self, user_id: str, loan_ids: Sequence[str]) -> list[Loan]:
        assert len(loan_ids) <= IDS_PER_QUERY_MAX
        if not loan_ids:
            return []
        ln = t.loans
        query = select(ln).where(
            and_(ln.c.id.in_(loan_ids), or_(ln.c.borrower_id == user_id, ln.c.lender_id == user_id))
        )
        return [loan_from_row(row) for row in self._connection.execute(query)]

    def names(self, user_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        if not user_ids:
            return {}
        u = t.users
        rows = self._connection.execute(
            select(u.c.id, u.c.name, u.c.phone, u.c.closed_at).where(
                u.c.id.in_(sorted(set(user_ids)))
            )
        )
        return {
            row.id: shown_contact(row.name, row.phone, closed=row.closed_at is not None)
            for row in rows
        }

    def repayments(self, user_id: str, repayment_ids: Sequence[str]) -> list[RepaymentRecord]:
        assert len(repayment_ids) <= IDS_PER_QUERY_MAX
        if not repayment_ids:
            return []
        ln, r = t.loans, t.repayments
        query = (
            select(r)
            .join(ln, ln.c.id == r.c.loan_id)
            .where(
                and_(
                    r.c.id.in_(repayment_ids),
                    or_(ln.c.borrower_id == user_id, ln.c.lender_id == user_id),
                )
            )
        )
        return [
            RepaymentRecord(
                row.id,
                row.loan_id,
                row.entry_id,
                row.amount_cents,
                row.penalty_cents,
                row.fee_cents,
                row.principal_cents,
                row.channel,
                row.created_at,
            )
            for row in self._connection.execute(query)
        ]

    def transactions(self, user_id: str, entry_ids: Sequence[str]) -> list[StatementLine]:
        assert len(entry_ids) <= IDS_PER_QUERY_MAX
        if not entry_ids:
            return []
        p = t.postings
        query = statement_query().where(
            and_(p.c.account_id == wallet_account_id(user_id), p.c.entry_id.in_(entry_ids))
        )
        lines: dict[str, StatementLine] = {}
        for row in self._connection.execute(query.order_by(p.c.id)):
            if row.entry_id in lines:
                continue  # one line per entry (an entry never posts to a wallet twice)
            # Wallets are credit-normal: a credit (negative posting) is money in.
            lines[row.entry_id] = statement_line(row, NormalSide.CREDIT)
        return list(lines.values())

    def notifications(
        self, user_id: str, notification_ids: Sequence[str]
    ) -> list[NotificationRecord]:
        assert len(notification_ids) <= IDS_PER_QUERY_MAX
        if not notification_ids:
            return []
        n = t.notifications
        query = select(n).where(and_(n.c.user_id == user_id, n.c.id.in_(notification_ids)))
        return [notification_record(row) for row in self._connection.execute(query)]

    def wallet(self, user_id: str) -> tuple[int, int] | None:
        wallet = wallet_account_id(user_id)
        balance = self._connection.execute(
            select(t.accounts.c.balance_cents).where(t.accounts.c.id == wallet)
        ).first()
        if balance is None:
            return None
        held = self._connection.execute(
            select(func.coalesce(func.sum(t.holds.c.amount_cents), 0)).where(
                and_(t.holds.c.account_id == wallet, t.holds.c.state == HoldState.PENDING.value)
            )
        ).scalar_one()
        return int(balance[0]), int(held)

    def conflicts(self, user_id: str, conflict_ids: Sequence[str]) -> list[ConflictRecord]:
        assert len(conflict_ids) <= IDS_PER_QUERY_MAX
        if not conflict_ids:
            return []
        c = s.sync_conflicts
        query = select(c).where(
            and_(c.c.user_id == user_id, c.c.id.in_(conflict_ids), c.c.state == "open")
        )
        return [_conflict(row) for row in self._connection.execute(query)]


def _client(row: Row[Any]) -> SyncClient:
    return SyncClient(row.client_id, row.user_id, int(row.last_mutation_id), row.schema_version)


def _stored_mutation(row: Row[Any]) -> StoredMutation:
    result = MutationResult(
        mutation_id=int(row.mutation_id),
        status=row.status,
        code=row.code,
        message=row.message,
        resolution=row.resolution,
        entity_id=row.entity_id,
        conflict_id=row.conflict_id,
        dead_letter_id=row.dead_letter_id,
    )
    return StoredMutation(
        row.client_id, row.user_id, row.name, row.args_hash, result, row.created_at
    )


def _dead_letter(row: Row[Any]) -> DeadLetter:
    return DeadLetter(
        id=row.id,
        user_id=row.user_id,
        client_id=row.client_id,
        mutation_id=int(row.mutation_id),
        name=row.name,
        args_json=row.args,
        code=row.code,
        message=row.message,
        state=row.state,
        result_json=row.result,
        created_at=row.created_at,
        retried_at=row.retried_at,
    )


def _conflict(row: Row[Any]) -> ConflictRecord:
    return ConflictRecord(
        id=row.id,
        user_id=row.user_id,
        client_id=row.client_id,
        mutation_id=int(row.mutation_id),
        entity=row.entity,
        entity_id=row.entity_id,
        server_version_json=row.server_version,
        client_version_json=row.client_version,
        state=row.state,
        resolution=row.resolution,
        created_at=row.created_at,
        resolved_at=row.resolved_at,
    )
