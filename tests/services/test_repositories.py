"""The repositories' contract, below the services: what the fakes must do as the SQL
repositories do (with DENI_TEST_SERVICES_SQLITE=1 every test here runs on both)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from deni.domain.ledger import (
    EntryCode,
    EntryDraft,
    Hold,
    HoldState,
    PlatformAccount,
    movement,
    wallet_account_id,
)
from deni.domain.loans import Loan, LoanState, Terms
from deni.domain.users import CLOSED_NAME, User
from deni.ids import new_id
from deni.services import ledger
from deni.services.ports import IdempotentResponse, NewEntry, NotificationRecord, RefreshToken
from tests.fakes import FakeUnitOfWorkFactory
from tests.fakes.uow import NotFaked
from tests.services.world import World
from tests.support.builders import next_phone, register

PAYBILL = PlatformAccount.MPESA_PAYBILL.value


def a_loan(world: World, borrower: User, lender: User, *, code: str = "", minutes: int = 0) -> Loan:
    now = world.clock.now() + timedelta(minutes=minutes)
    return Loan(
        id=new_id(),
        code=code or f"DN{new_id()[-6:].upper()}",
        borrower_id=borrower.id,
        lender_id=lender.id,
        terms=Terms(10_000, 500, 0, date(2026, 12, 10)),
        state=LoanState.REQUESTED,
        requested_at=now,
        expires_at=now + timedelta(days=7),
    )


def a_note(world: World, user: User, *, dedupe_key: str | None = None) -> NotificationRecord:
    return NotificationRecord(
        new_id(), user.id, "wallet_credited", "en", "body", None, world.clock.now(), None,
        dedupe_key,
    )  # fmt: skip


def deposit(user: User, cents: int, key: str) -> EntryDraft:
    postings = movement(
        debit_account_id=PAYBILL, credit_account_id=wallet_account_id(user.id), amount_cents=cents
    )
    return EntryDraft(key, EntryCode.DEPOSIT, postings, "test", key)


# --- the unit of work ----------------------------------------------------------------------


def test_what_is_not_committed_is_gone_and_never_seen_by_others(world: World) -> None:
    user = register(world)
    with world.uow() as uow:
        uow.notifications.add(a_note(world, user))
        uow.audit.append(at=world.clock.now(), actor_id="a", channel="api", command="c", details="")
        with world.uow.read_only() as other:
            assert other.notifications.list_for(user.id, unread_only=False, limit=9, offset=0) == []
        assert len(uow.notifications.list_for(user.id, unread_only=False, limit=9, offset=0)) == 1
    with world.uow.read_only() as uow:
        assert uow.notifications.list_for(user.id, unread_only=False, limit=9, offset=0) == []
    assert [command for _, command, _ in world.rows.audit_rows()] == ["register_user"]


def test_a_rollback_drops_the_writes_so_far_and_ends_the_transaction(world: World) -> None:
    user = register(world)
    with world.uow() as uow:
        uow.notifications.add(a_note(world, user))
        uow.audit.append(at=world.clock.now(), actor_id="a", channel="api", command="x", details="")
        uow.rollback()
        assert uow.notifications.list_for(user.id, unread_only=False, limit=9, offset=0) == []
        with pytest.raises(Exception, match=r"inactive|is over"):
            uow.commit()
    assert [command for _, command, _ in world.rows.audit_rows()] == ["register_user"]


def test_audit_rows_are_chained_when_the_transaction_commits(world: World) -> None:
    with world.uow() as uow:
        for command in ("one", "two"):
            uow.audit.append(
                at=world.clock.now(), actor_id="a", channel="api", command=command, details="{}"
            )
        assert uow.audit.head()[0] == 0  # nothing chained before the commit
        uow.commit()
    with world.uow.read_only() as uow:
        seq, head_hash = uow.audit.head()
        rows = uow.audit.scan(after_seq=0, limit=10)
        assert [row.seq for row in uow.audit.by_actor("a", after_seq=1, limit=10)] == [2]
    assert seq == 2
    assert [(row.seq, row.command) for row in rows] == [(1, "one"), (2, "two")]
    assert rows[1].prev_hash == rows[0].hash
    assert rows[1].hash == head_hash


def test_a_read_only_unit_of_work_has_nothing_to_commit(world: World) -> None:
    with world.uow.read_only() as uow, pytest.raises(AssertionError):
        uow.commit()


# --- users -----------------------------------------------------------------------------------


def test_a_phone_number_belongs_to_one_user(world: World) -> None:
    user = register(world)
    twin = User(new_id(), user.phone, "Twin", "en", "x", world.clock.now())
    with world.uow() as uow, pytest.raises(world.rows.refusal):
        uow.users.add(twin)


def test_users_are_found_by_id_or_phone_and_show_their_contacts(world: World) -> None:
    a, b, c = register(world, name="Amina"), register(world, name="Baraka"), register(world)
    with world.uow.read_only() as uow:
        found = uow.users.find(ids=[a.id], phones=[b.phone, "254799999999"])
        assert sorted(u.name for u in found) == ["Amina", "Baraka"]
        assert uow.users.contacts([a.id, c.id, "nobody"]) == {
            a.id: ("Amina", a.phone),
            c.id: ("Test User", c.phone),
        }
        assert uow.users.get_by_phone(b.phone) == b


def test_a_user_read_is_a_copy(world: World) -> None:
    user = register(world)
    with world.uow() as uow:
        read = uow.users.get(user.id)
        assert read is not None
        read.name = "Changed, not saved"
        assert uow.users.get(user.id) == user


def test_closing_an_account_erases_the_person_and_frees_the_number(world: World) -> None:
    user = register(world)
    now = world.clock.now()
    with world.uow() as uow:
        uow.notifications.add(a_note(world, user))
        uow.commit()
    with world.uow() as uow:
        uow.tokens.add(
            RefreshToken(new_id(), user.id, "f", now + timedelta(days=1), None), "h", now
        )
        locked = uow.users.lock(user.id)
        assert locked is not None
        uow.users.close(user.id, now=now)
        uow.commit()
    with world.uow.read_only() as uow:
        closed = uow.users.get(user.id)
        assert uow.users.get_by_phone(user.phone) is None
        assert uow.notifications.list_for(user.id, unread_only=False, limit=9, offset=0) == []
        assert uow.tokens.lock_by_hash("h") is None
        assert uow.users.contacts([user.id]) == {user.id: (CLOSED_NAME, "")}
    assert closed is not None
    assert (closed.name, closed.pin_hash, closed.closed_at) == (CLOSED_NAME, "", now)


# --- the ledger ------------------------------------------------------------------------------


def test_an_entry_key_is_written_once(world: World) -> None:
    user = register(world)
    wallet = wallet_account_id(user.id)
    draft = deposit(user, 500, "k-1")
    with world.uow() as uow:
        first = NewEntry(new_id(), draft, {PAYBILL: 500, wallet: 500})
        assert uow.ledger.insert_entries([first], now=world.clock.now())
        again = NewEntry(new_id(), draft, {PAYBILL: 1_000, wallet: 1_000})
        assert not uow.ledger.insert_entries([again], now=world.clock.now())
        account = uow.ledger.get_account(wallet)
        found = uow.ledger.find_entry("k-1")
        uow.commit()
    assert account is not None
    assert account.balance_cents == 500  # the refused write left nothing behind
    assert found is not None
    assert (found.id, found.content_hash) == (first.entry_id, draft.content_hash())
    assert world.rows.count("journal_entries") == 1


def test_the_database_refuses_a_wallet_below_zero(world: World) -> None:
    user = register(world)
    wallet = wallet_account_id(user.id)
    draft = EntryDraft("k-1", EntryCode.DEPOSIT, deposit(user, 1, "k").postings[::-1], "t", "k")
    with world.uow() as uow:
        overdraft = NewEntry(new_id(), draft, {PAYBILL: 1, wallet: -1})
        with pytest.raises(world.rows.refusal):
            uow.ledger.insert_entries([overdraft], now=world.clock.now())


def test_accounts_are_locked_in_id_order_and_missing_ones_left_out(world: World) -> None:
    a, b = register(world), register(world)
    ids = [wallet_account_id(b.id), "wallet:nobody", wallet_account_id(a.id), PAYBILL]
    with world.uow() as uow:
        locked = uow.ledger.lock_accounts(ids)
    assert list(locked) == sorted(set(ids) - {"wallet:nobody"})


def test_a_hold_is_resolved_once(world: World) -> None:
    user = register(world)
    with world.uow() as uow:
        ledger.credit_from_mpesa(
            uow, wallet_id=wallet_account_id(user.id), amount_cents=900, receipt="R1",
            now=world.clock.now(),
        )  # fmt: skip
        hold = ledger.place_hold(
            uow, wallet_id=wallet_account_id(user.id), amount_cents=900, idempotency_key="p",
            now=world.clock.now(),
        )  # fmt: skip
        uow.commit()
    with world.uow() as uow:
        twin = Hold(new_id(), hold.account_id, 1, HoldState.PENDING, "p", hold.hold_entry_id, None)
        with pytest.raises(world.rows.refusal):  # the key is taken
            uow.ledger.add_hold(twin, world.clock.now())
    with world.uow() as uow:
        entry_id = hold.hold_entry_id  # any entry: what matters here is the state
        uow.ledger.resolve_hold(
            hold.id, state=HoldState.VOIDED, resolve_entry_id=entry_id, now=world.clock.now()
        )
        with pytest.raises(Exception, match="resolved by someone else"):
            uow.ledger.resolve_hold(
                hold.id, state=HoldState.POSTED, resolve_entry_id=entry_id, now=world.clock.now()
            )


# --- loans -----------------------------------------------------------------------------------


def test_a_loan_id_or_code_is_taken_once(world: World) -> None:
    borrower, lender = register(world), register(world)
    loan = a_loan(world, borrower, lender, code="DN0001")
    with world.uow() as uow:
        assert uow.loans.add(loan)
        assert not uow.loans.add(a_loan(world, borrower, lender, code="DN0001"))
        assert not uow.loans.add(loan)
        assert uow.loans.get_by_code("DN0001") == uow.loans.get(loan.id)
        uow.commit()
    assert world.rows.count("loans") == 1


def test_a_loan_saved_from_a_stale_read_is_refused(world: World) -> None:
    borrower, lender = register(world), register(world)
    loan = a_loan(world, borrower, lender)
    with world.uow() as uow:
        uow.loans.add(loan)
        first, second = uow.loans.lock(loan.id), uow.loans.lock(loan.id)
        assert first is not None
        assert second is not None
        first.principal_paid_cents = 100
        uow.loans.save(first, world.clock.now())
        assert first.version == 1
        with pytest.raises(Exception, match="changed while you were acting"):
            uow.loans.save(second, world.clock.now())
        stored = uow.loans.get(loan.id)
    assert stored is not None
    assert (stored.version, stored.principal_paid_cents) == (1, 100)


def test_loans_are_listed_newest_first_a_page_at_a_time(world: World) -> None:
    borrower, lender, other = register(world), register(world), register(world)
    made = [a_loan(world, borrower, lender, minutes=m) for m in range(3)]
    made.append(a_loan(world, other, lender, minutes=5))
    with world.uow() as uow:
        for loan in made:
            uow.loans.add(loan)
        uow.commit()
    with world.uow.read_only() as uow:

        def page(role: str, offset: int) -> list[str]:
            found = uow.loans.list_for(
                user_id=borrower.id, role=role, states=[], limit=2, offset=offset
            )
            return [loan.id for loan in found]

        assert page("borrower", 0) == [made[2].id, made[1].id]
        assert page("any", 2) == [made[0].id]
        assert page("lender", 0) == []
        waiting = uow.loans.ids_in_state(states=[LoanState.REQUESTED], lender_id=lender.id, limit=9)
        assert waiting == [loan.id for loan in made]
        assert uow.loans.count_by_state() == {"requested": 4}


def test_the_loans_a_credit_may_settle_oldest_first_a_few_per_user(world: World) -> None:
    borrower, lender = register(world), register(world)
    loans = [a_loan(world, borrower, lender, minutes=m) for m in range(3)]
    loans[0].state = LoanState.ACTIVE  # due 10 Dec: overdue on the 11th
    loans[1].state = LoanState.APPROVED
    loans[2].state = LoanState.APPROVED
    with world.uow() as uow:
        for loan in loans:
            uow.loans.add(loan)
        found = uow.loans.settleable_by_credits(
            [borrower.id, lender.id], due_before=date(2026, 12, 11), per_user=1
        )
        not_yet = uow.loans.settleable_by_credits(
            [borrower.id], due_before=date(2026, 12, 10), per_user=5
        )
    assert found == [(loans[0].id, borrower.id, "overdue"), (loans[1].id, lender.id, "waiting")]
    assert not_yet == []


# --- notifications, idempotency keys, refresh tokens, codes ----------------------------------


def test_notifications_newest_first_marked_read_only_by_their_owner(world: World) -> None:
    user, other = register(world), register(world)
    with world.uow() as uow:
        notes = []
        for _ in range(3):
            notes.append(a_note(world, user, dedupe_key=f"d-{len(notes)}"))
            uow.notifications.add(notes[-1])
            world.clock.advance(timedelta(seconds=1))
        uow.commit()
    with world.uow() as uow, pytest.raises(world.rows.refusal):
        uow.notifications.add(a_note(world, user, dedupe_key="d-0"))
    with world.uow() as uow:
        assert uow.notifications.exists("d-1")
        assert uow.notifications.mark_read(other.id, [notes[0].id], world.clock.now()) == 0
        assert uow.notifications.mark_read(user.id, [notes[0].id, "x"], world.clock.now()) == 1
        assert uow.notifications.mark_read(user.id, [notes[0].id], world.clock.now()) == 0
        unread = uow.notifications.list_for(user.id, unread_only=True, limit=9, offset=0)
        everything = uow.notifications.list_for(user.id, unread_only=False, limit=2, offset=1)
    assert [n.id for n in unread] == [notes[2].id, notes[1].id]
    assert [n.id for n in everything] == [notes[1].id, notes[0].id]


def test_an_idempotency_key_is_claimed_completed_released_and_pruned(world: World) -> None:
    now = world.clock.now()
    later = now + timedelta(minutes=5)
    with world.uow() as uow:
        keys = uow.idempotency
        assert keys.claim(scope="u", key="k", request_hash="h", now=now, stale_before=now) is None
        assert keys.claim(scope="u", key="k", request_hash="h2", now=now, stale_before=now) == "h"
        assert keys.claim(scope="u", key="k", request_hash="h", now=now, stale_before=now) == "h"
        # Never completed and older than `stale_before`: its process died, the retry takes it.
        assert (
            keys.claim(scope="u", key="k", request_hash="h", now=later, stale_before=later) is None
        )
        assert keys.get_response(scope="u", key="k") is None
        keys.complete(scope="u", key="k", response=IdempotentResponse(201, "{}"), now=later)
        keys.release(scope="u", key="k")  # a completed key stays
        assert keys.get_response(scope="u", key="k") == IdempotentResponse(201, "{}")
        keys.claim(scope="u", key="gone", request_hash="h", now=now, stale_before=now)
        keys.release(scope="u", key="gone")
        assert (
            keys.claim(scope="u", key="gone", request_hash="x", now=now, stale_before=now) is None
        )
        assert keys.prune(created_before=later, limit=10) == 2


def test_refresh_tokens_are_revoked_once_and_by_family_or_user(world: World) -> None:
    user = register(world)
    now = world.clock.now()
    expires = now + timedelta(days=1)
    with world.uow() as uow:
        tokens = uow.tokens
        for token_id, family in (("t1", "f1"), ("t2", "f1"), ("t3", "f2")):
            tokens.add(RefreshToken(token_id, user.id, family, expires, None), f"h-{token_id}", now)
        tokens.replace("t1", replaced_by="t9")  # only a spent token points at a successor
        tokens.revoke("t1", now, replaced_by="t2")
        tokens.revoke("t1", now + timedelta(seconds=1), replaced_by="t3")  # already revoked
        assert tokens.lock("t1") == RefreshToken("t1", user.id, "f1", expires, now, "t2")
        tokens.replace("t1", replaced_by="t4")
        assert tokens.lock_by_hash("h-t1") == RefreshToken("t1", user.id, "f1", expires, now, "t4")
        tokens.revoke_family("f1", now + timedelta(seconds=2))
        live = tokens.lock("t3")
        assert live is not None
        assert live.revoked_at is None
        tokens.revoke_all(user.id, now + timedelta(seconds=3))
        revoked = [tokens.lock(t) for t in ("t1", "t2", "t3")]
    assert [t.revoked_at if t else None for t in revoked] == [
        now,
        now + timedelta(seconds=2),
        now + timedelta(seconds=3),
    ]


def test_a_number_code_row_is_made_once_and_pruned_when_spent_and_old(world: World) -> None:
    phone = "254" + next_phone()[1:]
    now = world.clock.now()
    with world.uow() as uow:
        row = uow.phone_codes.lock_or_add(phone, now)
        assert (row.phone, row.code_hash, row.sent_in_window) == (phone, None, 0)
        row.issue("hash", now)
        uow.phone_codes.save(row, now)
        again = uow.phone_codes.lock_or_add(phone, now + timedelta(minutes=1))
        assert (again.code_hash, again.window_started_at) == ("hash", now)
        assert uow.phone_codes.prune(windows_started_by=now, now=now, limit=10) == 0
        hour_later = now + timedelta(hours=1)
        assert uow.phone_codes.prune(windows_started_by=now, now=hour_later, limit=10) == 1
        assert uow.phone_codes.lock(phone) is None


def test_the_fakes_say_which_repositories_they_lack() -> None:
    with FakeUnitOfWorkFactory()() as uow:
        for missing in ("sync", "savepoint"):
            with pytest.raises(NotFaked, match=missing):
                getattr(uow, missing)
