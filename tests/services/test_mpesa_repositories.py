"""The M-PESA repositories' and the outbox's contract: what the fakes must do as the SQL
repositories do (with DENI_TEST_SERVICES_SQLITE=1 every test here runs on both)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from deni.domain.ledger import wallet_account_id
from deni.domain.mpesa import (
    UNANSWERED_PUSH_CODE,
    EventKind,
    MpesaRequest,
    Purpose,
    RequestEvent,
    RequestKind,
    RequestState,
)
from deni.domain.users import User
from deni.services import ledger, loans
from deni.services.common import new_id
from deni.services.mpesa.ports import (
    BalanceReport,
    ClaimSource,
    ClaimState,
    ExpectedPaybill,
    InboxState,
    MpesaPreferences,
    OutboxMessage,
    OutboxState,
    PaybillCheck,
    PaybillPull,
    PaymentClaim,
    SuspensePayment,
    SuspenseState,
)
from tests.services.world import World
from tests.support.builders import fund, lend, register


def a_request(
    world: World,
    user: User,
    *,
    kind: RequestKind = RequestKind.STK,
    minutes: int = 0,
    amount_cents: int = 100_00,
    **fields: object,
) -> MpesaRequest:
    now = world.clock.now() + timedelta(minutes=minutes)
    purpose = Purpose.TOP_UP if kind is RequestKind.STK else Purpose.WITHDRAWAL
    request = MpesaRequest(
        id=new_id(), kind=kind, purpose=purpose, user_id=user.id, loan_id=None,
        phone=user.phone, amount_cents=amount_cents, idempotency_key=f"k:{new_id()}",
        state=RequestState.QUEUED, created_at=now, updated_at=now,
    )  # fmt: skip
    return replace(request, **fields)  # type: ignore[arg-type]


def a_message(world: World, unique_key: str, *, minutes: int = 0) -> OutboxMessage:
    at = world.clock.now() + timedelta(minutes=minutes)
    return OutboxMessage(new_id(), "stk_push", "{}", unique_key, OutboxState.PENDING, 0, at)


def a_claim(world: World, receipt: str, *, minutes: int = 0, **fields: object) -> PaymentClaim:
    at = world.clock.now() + timedelta(minutes=minutes)
    claim = PaymentClaim(
        receipt, ClaimSource.C2B, 500_00, "DN1", "254700000001", "254700000001",
        ClaimState.WAITING, at, at,
    )  # fmt: skip
    return replace(claim, **fields)  # type: ignore[arg-type]


def a_paybill(
    world: World, trans_id: str, *, minutes: int = 0, **fields: object
) -> ExpectedPaybill:
    at = world.clock.now() + timedelta(minutes=minutes)
    expected = ExpectedPaybill(
        trans_id, 300_00, "0700000001", "2547 ***** 001", None, PaybillCheck.WAITING, at, at
    )
    return replace(expected, **fields)  # type: ignore[arg-type]


def in_suspense(world: World, receipt: str, *, minutes: int = 0) -> SuspensePayment:
    """A suspense row, with the journal entry it must point at."""
    owner = register(world)
    with world.uow() as uow:
        entry = ledger.credit_from_mpesa(
            uow, wallet_id=wallet_account_id(owner.id), amount_cents=100,
            receipt=f"E{receipt}", now=world.clock.now(),
        )  # fmt: skip
        uow.commit()
    at = world.clock.now() + timedelta(minutes=minutes)
    return SuspensePayment(
        receipt, 200_00, "c2b", "NOBODY", "2547 ***** 001", "unknown account",
        entry.entry_id, SuspenseState.UNASSIGNED, at,
    )  # fmt: skip


# --- requests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("taken", ["id", "idempotency_key", "checkout_request_id"])
def test_a_request_id_key_and_checkout_id_are_taken_once(world: World, taken: str) -> None:
    user = register(world)
    first = a_request(world, user, checkout_request_id="ws_CO_1")
    with world.uow() as uow:
        uow.mpesa_requests.add(first)
        uow.commit()
    twin = a_request(world, user, checkout_request_id="ws_CO_2")
    twin = replace(twin, **{taken: getattr(first, taken)})
    with world.uow() as uow, pytest.raises(world.rows.refusal):
        uow.mpesa_requests.add(twin)


def test_a_request_points_at_a_user_that_exists(world: World) -> None:
    ghost = User(new_id(), "254711111111", "Ghost", "en", "x", world.clock.now())
    with world.uow() as uow, pytest.raises(world.rows.refusal):
        uow.mpesa_requests.add(a_request(world, ghost))


def test_a_saved_request_keeps_what_never_changes_and_is_found_by_its_ids(world: World) -> None:
    user = register(world)
    request = a_request(world, user)
    with world.uow() as uow:
        uow.mpesa_requests.add(request)
        uow.commit()
    later = world.clock.now() + timedelta(minutes=5)
    with world.uow() as uow:
        locked = uow.mpesa_requests.lock(request.id)
        assert locked is not None
        locked.state, locked.checkout_request_id = RequestState.SENT, "ws_CO_9"
        locked.status_conversation_id, locked.originator_conversation_id = "AG_9", "o-9"
        locked.amount_cents = 1  # not a column save() writes
        uow.mpesa_requests.save(locked, later)
        assert locked.updated_at == later
        uow.commit()
    with world.uow.read_only() as uow:
        stored = uow.mpesa_requests.get(request.id)
        assert stored is not None
        assert uow.mpesa_requests.find_by_checkout("ws_CO_9") == stored
        assert uow.mpesa_requests.find_by_originator("o-9") == stored
        assert uow.mpesa_requests.find_by_status_conversation("AG_9") == stored
        assert uow.mpesa_requests.find_by_key(request.idempotency_key) == stored
        assert uow.mpesa_requests.find_by_checkout("ws_CO_nothing") is None
    assert (stored.state, stored.amount_cents, stored.updated_at) == (
        RequestState.SENT, request.amount_cents, later,
    )  # fmt: skip
    stored.state = RequestState.FAILED  # a copy: the stored row is not changed
    with world.uow.read_only() as uow:
        again = uow.mpesa_requests.get(request.id)
    assert again is not None
    assert again.state is RequestState.SENT


def test_requests_due_a_check_are_the_open_sent_ones_soonest_first(world: World) -> None:
    user = register(world)
    now = world.clock.now()
    at = {name: now + timedelta(minutes=m) for name, m in (("soon", -9), ("later", -1))}
    rows = {
        "later": a_request(world, user, state=RequestState.SENT, next_check_at=at["later"]),
        "soon": a_request(world, user, state=RequestState.UNKNOWN, next_check_at=at["soon"]),
        "sending": a_request(world, user, state=RequestState.SENDING, next_check_at=at["later"]),
        "future": a_request(
            world, user, state=RequestState.SENT, next_check_at=now + timedelta(minutes=1)
        ),
        "queued": a_request(world, user, state=RequestState.QUEUED, next_check_at=at["soon"]),
        "settled": a_request(world, user, state=RequestState.FAILED, next_check_at=at["soon"]),
        "never": a_request(world, user, state=RequestState.SENT),
    }
    with world.uow() as uow:
        for request in rows.values():
            uow.mpesa_requests.add(request)
        uow.commit()
    with world.uow.read_only() as uow:
        due = uow.mpesa_requests.due_checks(now=now, limit=10)
        assert uow.mpesa_requests.due_checks(now=now, limit=1) == [rows["soon"].id]
    assert due[0] == rows["soon"].id
    assert set(due) == {rows[name].id for name in ("soon", "later", "sending")}


def test_requests_are_listed_newest_first_by_state_and_owner(world: World) -> None:
    amina, baraka = register(world), register(world)
    old = a_request(world, amina, state=RequestState.SENT, minutes=-3)
    new = a_request(world, amina, state=RequestState.FAILED, minutes=-1)
    other = a_request(world, baraka, state=RequestState.SENT, minutes=-2)
    waiting_new = a_request(
        world, baraka, kind=RequestKind.B2C, state=RequestState.UNKNOWN, minutes=-1,
        awaiting_decision=True,
    )  # fmt: skip
    waiting_old = replace(waiting_new, id=new_id(), idempotency_key="w-old")
    waiting_old.created_at -= timedelta(minutes=5)
    with world.uow() as uow:
        for request in (old, new, other, waiting_new, waiting_old):
            uow.mpesa_requests.add(request)
        uow.commit()
    with world.uow.read_only() as uow:
        r = uow.mpesa_requests
        assert [x.id for x in r.in_states(states=[], limit=9, user_id=amina.id)] == [new.id, old.id]
        sent = r.in_states(states=[RequestState.SENT], limit=9)
        assert [x.id for x in sent] == [other.id, old.id]
        assert [x.id for x in r.in_states(states=[RequestState.SENT], limit=1)] == [other.id]
        waiting = [x.id for x in r.awaiting_decision(limit=9)]
        assert waiting == [waiting_old.id, waiting_new.id]


def test_requests_by_checkout_ids_are_locked_in_id_order(world: World) -> None:
    user = register(world)
    made = [a_request(world, user, checkout_request_id=f"ws_CO_{n}") for n in range(3)]
    with world.uow() as uow:
        for request in made:
            uow.mpesa_requests.add(request)
        uow.commit()
    wanted = ["ws_CO_2", "ws_CO_0", "ws_CO_0", "ws_CO_none"]
    with world.uow() as uow:
        locked = uow.mpesa_requests.lock_by_checkout(wanted)
        found = uow.mpesa_requests.find_by_checkouts(wanted)
        assert uow.mpesa_requests.lock_by_checkout([]) == []
    assert [r.id for r in locked] == sorted(r.id for r in (made[0], made[2]))
    assert sorted(r.id for r in found) == sorted(r.id for r in locked)


def test_unanswered_pushes_are_the_maybe_sent_ones_without_a_checkout_id(world: World) -> None:
    user = register(world)
    now = world.clock.now()

    def push(**fields: Any) -> MpesaRequest:
        return a_request(world, user, minutes=-5, **fields)

    maybe_sent = push(state=RequestState.UNKNOWN)
    older = push(state=RequestState.SENDING, created_at=now - timedelta(minutes=8))
    failed_unanswered = push(state=RequestState.FAILED, result_code=UNANSWERED_PUSH_CODE)
    left_out = [
        push(state=RequestState.UNKNOWN, checkout_request_id="ws_CO_x"),  # Daraja answered it
        push(state=RequestState.FAILED, result_code="1032"),  # cancelled by the payer
        push(state=RequestState.UNKNOWN, amount_cents=200_00),
        push(state=RequestState.UNKNOWN, receipt="PAID1"),
        push(state=RequestState.UNKNOWN, created_at=now - timedelta(minutes=30)),
        a_request(world, user, kind=RequestKind.B2C, state=RequestState.UNKNOWN, minutes=-5),
    ]
    with world.uow() as uow:
        for request in (maybe_sent, older, failed_unanswered, *left_out):
            uow.mpesa_requests.add(request)
        uow.commit()
    with world.uow.read_only() as uow:
        found = uow.mpesa_requests.unanswered_pushes(
            phone=user.phone, amount_cents=100_00, since=now - timedelta(minutes=15), until=now,
            limit=9,
        )  # fmt: skip
        like = uow.mpesa_requests.stk_pushes_like(
            amount_cents=100_00, phone=None, created_from=now - timedelta(minutes=15),
            created_to=now, limit=20,
        )  # fmt: skip
        assert uow.mpesa_requests.count(loan_id="none", purpose=Purpose.TOP_UP) == 0
    assert found[0].id == older.id
    assert {r.id for r in found} == {older.id, maybe_sent.id, failed_unanswered.id}
    # Like it: an STK push of that amount in the window with no receipt, whatever its state.
    assert {r.id for r in like} == {r.id for r in (maybe_sent, older, failed_unanswered)} | {
        left_out[0].id, left_out[1].id,
    }  # fmt: skip


def test_a_requests_evidence_is_read_oldest_first(world: World) -> None:
    user = register(world)
    request = a_request(world, user, kind=RequestKind.B2C)
    now = world.clock.now()
    events = [
        RequestEvent(request.id, 1, EventKind.SEND, "send 1", now),
        RequestEvent(request.id, 1, EventKind.ACCEPTED, "x" * 400, now, "op"),
        RequestEvent(request.id, 1, EventKind.RESULT, "result", now),
    ]
    with world.uow() as uow:
        uow.mpesa_requests.add(request)
        uow.mpesa_requests.add_events(events)
        uow.mpesa_requests.add_events([])
        uow.commit()
    with world.uow.read_only() as uow:
        read = uow.mpesa_requests.events_for(request.id, limit=2)
        assert uow.mpesa_requests.events_for("nobody", limit=2) == []
    assert [e.kind for e in read] == [EventKind.SEND, EventKind.ACCEPTED]
    assert read[1].detail == "x" * 300  # cut to the column's width
    assert read[1].actor == "op"
    with world.uow() as uow, pytest.raises(world.rows.refusal):
        uow.mpesa_requests.add_events([RequestEvent("nobody", 1, EventKind.SEND, "", now)])


# --- the callback inbox --------------------------------------------------------------------------


def test_a_callback_is_stored_once_by_its_dedupe_key(world: World) -> None:
    now = world.clock.now()
    with world.uow() as uow:
        add = uow.mpesa_inbox.add
        first = add(
            kind="stk", dedupe_key="stk:1", body=b"{}", source_ip="1.2.3.4",
            state=InboxState.RECEIVED, error="", now=now,
        )  # fmt: skip
        again = add(
            kind="stk", dedupe_key="stk:1", body=b"{other}", source_ip="",
            state=InboxState.RECEIVED, error="", now=now,
        )  # fmt: skip
        second = add(
            kind="stk", dedupe_key="stk:2", body=b"{}", source_ip="",
            state=InboxState.MALFORMED, error="e" * 400, now=now,
        )  # fmt: skip
        uow.commit()
    assert first is not None
    assert again is None
    assert second is not None
    assert second > first
    with world.uow.read_only() as uow:
        row = uow.mpesa_inbox.get(second)
        assert uow.mpesa_inbox.keys_stored(["stk:1", "stk:3"]) == {"stk:1"}
        assert uow.mpesa_inbox.keys_stored([]) == set()
        stored = uow.mpesa_inbox.get(first)
    assert row is not None
    assert (row.state, row.error, row.attempts) == (InboxState.MALFORMED, "e" * 300, 0)
    assert stored is not None
    assert stored.body == b"{}"


def test_received_callbacks_are_claimed_oldest_first_and_marked(world: World) -> None:
    now = world.clock.now()
    with world.uow() as uow:
        ids = [
            uow.mpesa_inbox.add(
                kind="stk", dedupe_key=f"k{n}", body=b"{}", source_ip="",
                state=InboxState.RECEIVED, error="", now=now,
            )
            for n in range(4)
        ]  # fmt: skip
        uow.commit()
    assert None not in ids
    a, b, c, d = (i for i in ids if i is not None)
    with world.uow() as uow:
        uow.mpesa_inbox.mark(b, state=InboxState.APPLIED, error="done", now=now)
        uow.mpesa_inbox.mark_many(
            [(c, InboxState.RECEIVED, "retry"), (d, InboxState.IGNORED, "")], now=now
        )
        uow.commit()
    with world.uow() as uow:
        claimed = uow.mpesa_inbox.claim(limit=9)
        assert [row.id for row in uow.mpesa_inbox.received(limit=1)] == [a]
        assert uow.mpesa_inbox.ids(states=[InboxState.APPLIED, InboxState.IGNORED], limit=9) == [
            b, d,
        ]  # fmt: skip
        newest_first = uow.mpesa_inbox.rows(states=[InboxState.RECEIVED], limit=9)
        locked = uow.mpesa_inbox.lock(c)
    assert [(row.id, row.attempts) for row in claimed] == [(a, 0), (c, 1)]
    assert [row.id for row in newest_first] == [c, a]
    assert locked is not None
    assert (locked.state, locked.error) == (InboxState.RECEIVED, "retry")


# --- the outbox ----------------------------------------------------------------------------------


def test_an_outbox_key_is_queued_once(world: World) -> None:
    first = a_message(world, "stk:1")
    with world.uow() as uow:
        assert uow.outbox.add(first, world.clock.now())
        assert not uow.outbox.add(a_message(world, "stk:1"), world.clock.now())
        assert not uow.outbox.add(replace(first, unique_key="stk:2"), world.clock.now())
        uow.commit()
    with world.uow.read_only() as uow:
        assert [m.id for m in uow.outbox.list(states=list(OutboxState), limit=9)] == [first.id]


def test_due_messages_are_leased_and_not_claimed_again_until_the_lease_lapses(
    world: World,
) -> None:
    now = world.clock.now()
    late, early = a_message(world, "a", minutes=-1), a_message(world, "b", minutes=-5)
    future = a_message(world, "c", minutes=5)
    with world.uow() as uow:
        for message in (late, early, future):
            uow.outbox.add(message, now)
        uow.commit()
    with world.uow() as uow:
        claimed = uow.outbox.claim_due(now=now, limit=9, lease_s=60)
        uow.commit()
    assert [m.id for m in claimed] == [early.id, late.id]
    assert [(m.state, m.attempts) for m in claimed] == [(OutboxState.SENDING, 1)] * 2
    with world.uow() as uow:
        assert uow.outbox.claim_due(now=now + timedelta(seconds=59), limit=9, lease_s=60) == []
        lapsed = uow.outbox.claim_due(now=now + timedelta(seconds=61), limit=1, lease_s=60)
        uow.commit()
    assert [(m.id, m.attempts) for m in lapsed] == [(early.id, 2)]


def test_an_outbox_message_is_retried_done_or_dead_and_only_a_dead_one_rearmed(
    world: World,
) -> None:
    now = world.clock.now()
    retried, done, dead = (a_message(world, key) for key in ("r", "d", "x"))
    with world.uow() as uow:
        for message in (retried, done, dead):
            uow.outbox.add(message, now)
        uow.outbox.claim_due(now=now, limit=9, lease_s=60)
        uow.outbox.mark_retry(
            retried.id, now=now, next_attempt_at=now + timedelta(minutes=2), error="e" * 400
        )
        uow.outbox.mark_done(done.id, now=now)
        uow.outbox.mark_dead(dead.id, now=now, error="gave up")
        assert not uow.outbox.rearm(done.id, now=now)
        uow.commit()
    with world.uow() as uow:
        assert uow.outbox.claim_due(now=now + timedelta(minutes=1), limit=9, lease_s=60) == []
        again = uow.outbox.claim_due(now=now + timedelta(minutes=2), limit=9, lease_s=60)
        later = now + timedelta(minutes=3)
        assert uow.outbox.rearm(dead.id, now=later)
        rearmed = uow.outbox.get(dead.id)
        uow.commit()
    assert [(m.id, m.attempts, m.last_error) for m in again] == [(retried.id, 2, "e" * 300)]
    assert rearmed is not None
    assert (rearmed.state, rearmed.attempts, rearmed.next_attempt_at) == (
        OutboxState.PENDING, 0, later,
    )  # fmt: skip
    assert rearmed.last_error == "gave up"
    with world.uow.read_only() as uow:
        assert [m.id for m in uow.outbox.list(states=[OutboxState.DONE], limit=9)] == [done.id]
        assert uow.outbox.get("nothing") is None


# --- suspense, paybills awaited, claims ----------------------------------------------------------


def test_a_suspense_receipt_is_kept_once_and_only_its_assignment_changes(world: World) -> None:
    payment = in_suspense(world, "SUSP1")
    later = in_suspense(world, "SUSP2", minutes=1)
    user = register(world)
    with world.uow() as uow:
        assert uow.suspense.add(payment)
        assert uow.suspense.add(later)
        assert not uow.suspense.add(replace(payment, amount_cents=1))
        uow.commit()
    with world.uow() as uow:
        locked = uow.suspense.lock("SUSP1")
        assert locked is not None
        locked.state, locked.user_id = SuspenseState.ASSIGNING, user.id
        locked.reason = "not a column save() writes"
        uow.suspense.save(locked)
        uow.commit()
    with world.uow.read_only() as uow:
        stored = uow.suspense.lock("SUSP1")
        unassigned = uow.suspense.in_states(states=[SuspenseState.UNASSIGNED], limit=9)
        both = uow.suspense.in_states(states=list(SuspenseState), limit=9)
        assert uow.suspense.lock("nothing") is None
    assert stored is not None
    assert (stored.state, stored.user_id, stored.reason) == (
        SuspenseState.ASSIGNING, user.id, "unknown account",
    )  # fmt: skip
    assert [p.receipt for p in unassigned] == ["SUSP2"]
    assert [p.receipt for p in both] == ["SUSP1", "SUSP2"]


def test_a_paybill_payment_is_expected_once_and_due_checks_come_oldest_first(
    world: World,
) -> None:
    now = world.clock.now()
    first = a_paybill(world, "PB1", next_check_at=now - timedelta(minutes=1))
    earlier = a_paybill(world, "PB2", minutes=1, next_check_at=now - timedelta(minutes=5))
    not_yet = a_paybill(world, "PB3", minutes=2, next_check_at=now + timedelta(minutes=5))
    settled = a_paybill(world, "PB4", minutes=3, state=PaybillCheck.CONFIRMED, next_check_at=now)
    with world.uow() as uow:
        for expected in (first, earlier, not_yet, settled):
            assert uow.paybills.expect(expected)
        assert not uow.paybills.expect(replace(first, amount_cents=1))
        uow.commit()
    with world.uow() as uow:
        locked = uow.paybills.lock("PB1")
        assert locked is not None
        locked.status_conversation_id, locked.checks = "AG_PB1", 1
        uow.paybills.save(locked)
        uow.commit()
    with world.uow.read_only() as uow:
        due = uow.paybills.due(now=now, limit=9)
        asked = uow.paybills.by_status_conversation("AG_PB1")
        waiting = uow.paybills.in_states(states=[PaybillCheck.WAITING], limit=2)
        assert uow.paybills.get("PB9") is None
    assert [p.trans_id for p in due] == ["PB2", "PB1"]
    assert asked is not None
    assert (asked.trans_id, asked.checks, asked.amount_cents) == ("PB1", 1, 300_00)
    assert [p.trans_id for p in waiting] == ["PB3", "PB2"]
    with world.uow() as uow, pytest.raises(world.rows.refusal):
        uow.paybills.save(replace(earlier, status_conversation_id="AG_PB1"))


def test_a_receipt_is_claimed_once_and_claims_are_read_as_the_sql_orders_them(
    world: World,
) -> None:
    user = register(world)
    now = world.clock.now()
    old = a_claim(world, "CL1", minutes=-3, user_id=user.id, next_check_at=now)
    new = a_claim(world, "CL2", minutes=-1, user_id=user.id, next_check_at=now - timedelta(1))
    done = a_claim(world, "CL3", minutes=-2, user_id=user.id, state=ClaimState.CONFIRMED)
    with world.uow() as uow:
        for claim in (old, new, done):
            assert uow.claims.add(claim)
        assert not uow.claims.add(replace(old, amount_cents=1))
        uow.commit()
    with world.uow() as uow:
        locked = uow.claims.lock("CL3")
        assert locked is not None
        locked.confirm_wait_ms, locked.status_conversation_id = 1_500, "AG_CL3"
        uow.claims.save(locked)
        waited = uow.claims.lock("CL1")
        assert waited is not None
        waited.confirm_wait_ms = 90_000
        uow.claims.save(waited)
        uow.commit()
    with world.uow.read_only() as uow:
        c = uow.claims
        assert [x.receipt for x in c.due(now=now, limit=9)] == ["CL2", "CL1"]
        assert [x.receipt for x in c.arriving(user.id, limit=9)] == ["CL2", "CL1"]
        assert [x.receipt for x in c.in_states(states=list(ClaimState), limit=2)] == ["CL2", "CL3"]
        assert sorted(c.for_receipts(["CL1", "CL9", "CL3"])) == ["CL1", "CL3"]
        asked = c.by_status_conversation("AG_CL3")
        waits = c.confirmation_waits([1_000, 2_000, 100_000])
        assert c.for_receipts([]) == {}
    assert asked is not None
    assert asked.receipt == "CL3"
    assert waits == ([0, 1, 2], 2, 91_500)
    with world.uow() as uow, pytest.raises(world.rows.refusal):
        uow.claims.save(replace(old, status_conversation_id="AG_CL3"))


def test_receipts_seen_are_claimed_settled_suspended_or_credited(world: World) -> None:
    user = register(world)
    payment = in_suspense(world, "SEEN3")
    with world.uow() as uow:
        uow.claims.add(a_claim(world, "SEEN1"))
        uow.mpesa_requests.add(a_request(world, user, receipt="SEEN2"))
        uow.suspense.add(payment)
        ledger.credit_from_mpesa(
            uow, wallet_id=wallet_account_id(user.id), amount_cents=100, receipt="SEEN4",
            now=world.clock.now(),
        )  # fmt: skip
        uow.commit()
    wanted = ["SEEN1", "SEEN2", "SEEN3", "SEEN4", "SEEN5", "mpesa"]
    with world.uow.read_only() as uow:
        assert uow.claims.receipts_seen(wanted) == {"SEEN1", "SEEN2", "SEEN3", "SEEN4"}
        assert uow.claims.receipts_seen([]) == set()


# --- Pull API passes, preferences, payouts due, balance reports -------------------------------


def test_the_last_pull_is_the_newest_started_or_the_furthest_finished(world: World) -> None:
    now = world.clock.now()
    hour = timedelta(hours=1)
    far = PaybillPull("p1", now - 3 * hour, now - hour, now - 2 * hour, state="done")
    near = PaybillPull("p2", now - 4 * hour, now - 2 * hour, now - hour, state="done")
    running = PaybillPull("p3", now - hour, now, now)
    with world.uow() as uow:
        assert uow.pulls.last(finished_only=False) is None
        for pull in (far, near, running):
            uow.pulls.add(pull)
        uow.commit()
    with world.uow() as uow:
        running.state, running.rows, running.finished_at = "failed", 7, now
        uow.pulls.save(running)
        uow.commit()
    with world.uow.read_only() as uow:
        newest = uow.pulls.last(finished_only=False)
        finished = uow.pulls.last(finished_only=True)
    assert newest == running
    assert finished is not None
    assert finished.id == "p1"
    with world.uow() as uow, pytest.raises(world.rows.refusal):
        uow.pulls.add(PaybillPull("p4", now, now - hour, now))


def test_preferences_default_until_set_and_are_set_again(world: World) -> None:
    user = register(world)
    with world.uow() as uow:
        assert uow.mpesa_preferences.get(user.id) == MpesaPreferences(user.id, True, False)
        uow.mpesa_preferences.set(MpesaPreferences(user.id, False, True), world.clock.now())
        uow.mpesa_preferences.set(MpesaPreferences(user.id, False, False), world.clock.now())
        uow.commit()
    with world.uow.read_only() as uow:
        assert uow.mpesa_preferences.get(user.id) == MpesaPreferences(user.id, False, False)


def test_payouts_due_are_loans_not_yet_disbursed_and_repayments_to_auto_payout(
    world: World,
) -> None:
    lender, borrower, keeper = register(world), register(world), register(world)
    fund(world, lender, 5_000_00)
    with world.uow() as uow:
        uow.mpesa_preferences.set(MpesaPreferences(lender.id, True, True), world.clock.now())
        uow.mpesa_preferences.set(MpesaPreferences(keeper.id, False), world.clock.now())
        uow.commit()
    world.clock.advance(timedelta(minutes=1))
    first = lend(world, lender=lender, borrower=borrower, approve_with_pin="3591")
    world.clock.advance(timedelta(minutes=1))
    second = lend(world, lender=lender, borrower=borrower, approve_with_pin="3591")
    lend(world, lender=lender, borrower=keeper, approve_with_pin="3591")  # kept in the wallet
    loans.repay_loan(world,
        borrower_id=borrower.id,
        loan_id=first.id, amount_cents=30_000, pin="3591", idempotency_key="r1",
    )  # fmt: skip
    since = world.clock.now() - timedelta(days=1)
    with world.uow.read_only() as uow:
        [repaid] = uow.loans.repayments(first.id)
        to_disburse = uow.payouts_due.loans_to_disburse(since=since, limit=9)
        to_pay_out = uow.payouts_due.repayments_to_pay_out(since=since, limit=9)
        after = world.clock.now() + timedelta(seconds=1)
        assert uow.payouts_due.loans_to_disburse(since=after, limit=9) == []
    assert [(c.loan_id, c.user_id, c.amount_cents) for c in to_disburse] == [
        (first.id, borrower.id, 100_000), (second.id, borrower.id, 100_000),
    ]  # fmt: skip
    assert [(c.source_id, c.user_id, c.amount_cents) for c in to_pay_out] == [
        (repaid.id, lender.id, 30_000)
    ]
    with world.uow() as uow:
        uow.mpesa_requests.add(
            a_request(
                world, borrower, kind=RequestKind.B2C, purpose=Purpose.DISBURSEMENT,
                loan_id=first.id,
            )
        )  # fmt: skip
        uow.mpesa_requests.add(
            a_request(
                world, lender, kind=RequestKind.B2C, purpose=Purpose.AUTO_PAYOUT,
                idempotency_key=f"auto_payout:{lender.id}:{repaid.id}",
            )
        )  # fmt: skip
        uow.commit()
    with world.uow.read_only() as uow:
        left = uow.payouts_due.loans_to_disburse(since=since, limit=9)
        assert uow.payouts_due.repayments_to_pay_out(since=since, limit=9) == []
    assert [c.loan_id for c in left] == [second.id]


def test_balance_reports_newest_first_found_by_their_conversation(world: World) -> None:
    now = world.clock.now()
    old = BalanceReport("b1", "received", 10, 20, now - timedelta(days=1), "AG_1")
    new = BalanceReport("b2", "requested", 30, 40, now, "AG_2")
    with world.uow() as uow:
        uow.balance_reports.add(old)
        uow.balance_reports.add(new)
        uow.commit()
    with world.uow() as uow:
        found = uow.balance_reports.by_conversation("AG_2")
        assert found is not None
        found.state, found.working_cents, found.received_at = "received", 99, now
        uow.balance_reports.save(found)
        uow.commit()
    with world.uow.read_only() as uow:
        latest = uow.balance_reports.latest(limit=9)
        assert uow.balance_reports.by_conversation("AG_9") is None
    assert [r.id for r in latest] == ["b2", "b1"]
    assert (latest[0].state, latest[0].working_cents) == ("received", 99)
    with world.uow() as uow, pytest.raises(world.rows.refusal):
        uow.balance_reports.add(BalanceReport("b3", "requested", 0, 0, now, "AG_1"))


# --- the unit of work --------------------------------------------------------------------------


def test_mpesa_writes_not_committed_are_gone(world: World) -> None:
    user = register(world)
    with world.uow() as uow:
        uow.mpesa_requests.add(a_request(world, user, idempotency_key="gone"))
        uow.outbox.add(a_message(world, "gone"), world.clock.now())
        uow.claims.add(a_claim(world, "GONE1"))
        uow.rollback()
        assert uow.mpesa_requests.find_by_key("gone") is None
    with world.uow() as uow:
        uow.mpesa_requests.add(a_request(world, user, idempotency_key="kept"))
        uow.outbox.add(a_message(world, "kept"), world.clock.now())
        uow.claims.add(a_claim(world, "KEPT1"))
    with world.uow.read_only() as uow:
        assert uow.mpesa_requests.find_by_key("kept") is None
        assert uow.outbox.list(states=list(OutboxState), limit=9) == []
        assert uow.claims.for_receipts(["GONE1", "KEPT1"]) == {}
