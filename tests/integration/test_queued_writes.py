"""What a unit of work writes late or never sends: notifications queued for the commit,
savepoints that are never released, loans inserted without looking first (ADR 0002)."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from tests.support.builders import lend, register

from deni.adapters.db import tables as t
from deni.adapters.db.engine import reading
from deni.bootstrap import Deni, database_engine
from deni.domain.errors import Conflict
from deni.domain.loans import Loan
from deni.domain.users import User
from deni.ids import new_id
from deni.services import loans
from deni.services.ports import NotificationRecord, UnitOfWork

SAVEPOINTS_IN_ONE_TRANSACTION = 200


def _stored_kinds(deni: Deni) -> list[str]:
    engine = database_engine(deni)
    with reading(engine) as connection:  # another connection: sees committed rows only
        query = select(t.notifications.c.kind).order_by(t.notifications.c.id)
        return list(connection.execute(query).scalars())


def _notify(
    uow: UnitOfWork, user: User, kind: str, now: datetime, dedupe: str | None = None
) -> str:
    record = NotificationRecord(
        id=new_id(),
        user_id=user.id,
        kind=kind,
        language="en",
        body=f"text of {kind}",
        loan_id=None,
        created_at=now,
        read_at=None,
        dedupe_key=dedupe,
    )
    uow.notifications.add(record)
    return record.id


def test_notifications_are_written_at_commit_and_a_rolled_back_savepoint_takes_its_own(
    deni: Deni,
) -> None:
    user = register(deni)
    before = _stored_kinds(deni)
    now = deni.clock.now()
    with deni.uow() as uow:
        _notify(uow, user, "first", now)
        with uow.savepoint() as kept:
            _notify(kept, user, "kept", now)
            kept.commit()
        with uow.savepoint() as undone:
            _notify(undone, user, "undone", now)  # left without commit: rolled back
        assert _stored_kinds(deni) == before
        uow.commit()
    assert _stored_kinds(deni)[len(before) :] == ["first", "kept"]


def test_a_read_inside_the_transaction_sees_queued_notifications_and_a_rollback_still_undoes_them(
    deni: Deni,
) -> None:
    user = register(deni)
    before = _stored_kinds(deni)
    now = deni.clock.now()
    with deni.uow() as uow:
        _notify(uow, user, "outside", now)
        with uow.savepoint() as inner:
            _notify(inner, user, "inner", now)
            # Reading writes the queue first, inside the savepoint ...
            listed = inner.notifications.list_for(user.id, unread_only=True, limit=10, offset=0)
            assert {n.kind for n in listed} >= {"outside", "inner"}
            _notify(inner, user, "after the read", now)
        # ... so rolling the savepoint back removes the written row and the queued one.
        listed = uow.notifications.list_for(user.id, unread_only=True, limit=10, offset=0)
        assert "inner" not in {n.kind for n in listed}
        assert "outside" in {n.kind for n in listed}
        uow.commit()
    assert _stored_kinds(deni)[len(before) :] == ["outside"]


def test_a_notification_with_a_dedupe_key_is_written_at_once(deni: Deni) -> None:
    user = register(deni)
    now = deni.clock.now()
    with deni.uow() as uow:
        _notify(uow, user, "reminder", now, dedupe="reminder:today")
        assert uow.notifications.exists("reminder:today")
        with pytest.raises(IntegrityError):  # the duplicate fails in the command, not later
            _notify(uow, user, "reminder", now, dedupe="reminder:today")


def test_savepoints_are_never_released_yet_a_long_transaction_of_them_commits_whole(
    deni: Deni,
) -> None:
    user = register(deni)
    before = len(_stored_kinds(deni))
    now = deni.clock.now()
    with deni.uow() as uow:
        for n in range(SAVEPOINTS_IN_ONE_TRANSACTION):
            with uow.savepoint() as step:
                _notify(step, user, f"step {n}", now, dedupe=f"step:{n}")  # written at once
                if n % 2:
                    step.commit()  # the even ones roll back
        uow.commit()
    kinds = _stored_kinds(deni)[before:]
    assert kinds == [f"step {n}" for n in range(1, SAVEPOINTS_IN_ONE_TRANSACTION, 2)]


def test_rollback_inside_a_savepoint_undoes_its_writes_and_carries_on(deni: Deni) -> None:
    user = register(deni)
    before = len(_stored_kinds(deni))
    now = deni.clock.now()
    with deni.uow() as uow:
        with uow.savepoint() as step:
            _notify(step, user, "undone", now, dedupe="undone")
            _notify(step, user, "queued then undone", now)
            step.rollback()
            _notify(step, user, "redone", now)
            step.commit()
        uow.commit()
    assert _stored_kinds(deni)[before:] == ["redone"]


def _loan_count(deni: Deni) -> int:
    with reading(database_engine(deni)) as connection:
        return int(connection.execute(select(func.count()).select_from(t.loans)).scalar_one())


def _request(deni: Deni, borrower: User, lender: User, loan_id: str | None = None) -> Loan:
    return lend(deni, lender=lender, borrower=borrower, approve_with_pin=None, loan_id=loan_id)


def test_a_taken_loan_code_is_drawn_again(deni: Deni, monkeypatch: pytest.MonkeyPatch) -> None:
    lender, borrower = register(deni), register(deni)
    first = _request(deni, borrower, lender)
    codes = iter([first.code, first.code, "DNFRESH2"])
    monkeypatch.setattr(loans, "_new_loan_code", lambda: next(codes))
    second = _request(deni, borrower, lender)
    assert second.code == "DNFRESH2"
    assert second.id != first.id
    assert _loan_count(deni) == 2


def test_a_loan_id_taken_by_someone_else_is_refused_and_nothing_is_written(deni: Deni) -> None:
    lender, borrower, stranger = register(deni), register(deni), register(deni)
    loan_id = str(uuid.uuid4())
    mine = _request(deni, borrower, lender, loan_id)
    assert _request(deni, borrower, lender, loan_id).code == mine.code  # sent again: same loan
    notified = len(_stored_kinds(deni))
    with pytest.raises(Conflict) as caught:
        _request(deni, stranger, lender, loan_id)
    assert caught.value.code == "loan_id_taken"
    assert _loan_count(deni) == 1
    assert len(_stored_kinds(deni)) == notified  # no notification for the refused request


def test_users_are_found_by_ids_and_phones_in_one_read(deni: Deni) -> None:
    ann, ben, cat = register(deni, name="Ann"), register(deni, name="Ben"), register(deni)
    with deni.uow.read_only() as uow:
        found = uow.users.find(ids=[ann.id, "no-such-id"], phones=[ben.phone])
        assert sorted(u.name for u in found) == ["Ann", "Ben"]
        assert uow.users.find(ids=[cat.id], phones=[cat.phone])[0].id == cat.id  # once
