"""An operator's look-ups on the service tier: search by every kind of key, a member's page and
a loan's page, on the fakes (and SQLite and PostgreSQL with DENI_TEST_SERVICES_SQLITE=1)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from deni.adapters.sessions import MemorySessionStore
from deni.domain.errors import NotFound, ValidationFailed
from deni.domain.loans import LoanState
from deni.domain.mpesa import Purpose
from deni.domain.users import User
from deni.services import loans, lookup, pin_reset, privacy
from deni.services.limits import LimitCounters
from deni.services.lookup import HistorySource, Matched, MemberState, PaymentSource
from deni.services.mpesa import claims, reconcile, requests
from deni.services.mpesa.ports import C2BEvent, CallbackKind, InboxState, MpesaDeps
from deni.services.ports import SmsSender
from tests.fakes import FakeMpesaGateway, RecordingSmsSender
from tests.services.test_mpesa import (
    POLICY,
    deliver,
    paid_push,
    payout_result,
    send,
    status_answer,
    stored,
    top_up,
    withdraw,
)
from tests.services.world import World
from tests.support.builders import fund, lend, register, register_as_stored, shows_number

PIN = "3591"


@pytest.fixture
def deps(world: World) -> MpesaDeps:
    return MpesaDeps(uow=world.uow, clock=world.clock, gateway=FakeMpesaGateway(), policy=POLICY)


def _local(user: User) -> str:
    return "0" + user.phone[3:]


# --- search ---------------------------------------------------------------------------------------


def test_search_finds_a_member_by_any_kenyan_spelling_of_their_number(world: World) -> None:
    member = register(world, name="Achieng Otieno")
    local = _local(member)
    spellings = [
        local,
        member.phone,
        "+" + member.phone,
        f"{local[:4]} {local[4:7]} {local[7:]}",
        f"+{member.phone[:3]}-{member.phone[3:6]}-{member.phone[6:]}",
    ]
    for spelling in spellings:
        found = lookup.search(world, query=spelling)
        assert [(h.user_id, h.matched) for h in found.members] == [(member.id, Matched.PHONE)]
        assert found.phone == member.phone
        assert found.members[0].state is MemberState.ACTIVE


def test_search_finds_members_by_part_of_their_name_whatever_the_case(world: World) -> None:
    achieng, _ = register(world, name="Achieng Otieno"), register(world, name="Baraka Mwangi")
    also = register(world, name="Mary Achieng")

    found = lookup.search(world, query="  aCHIeng ")

    assert found.query == "aCHIeng"
    assert [(h.user_id, h.matched) for h in found.members] == [
        (achieng.id, Matched.NAME),
        (also.id, Matched.NAME),
    ]
    assert not found.more_names


def test_search_by_name_is_bounded(world: World) -> None:
    many = [register(world, name=f"Wanjiru {i}") for i in range(lookup.NAME_HITS_MAX + 1)]

    found = lookup.search(world, query="wanjiru")

    assert len(found.members) == lookup.NAME_HITS_MAX
    assert found.more_names
    assert [h.user_id for h in found.members] == [u.id for u in many[: lookup.NAME_HITS_MAX]]


def test_search_takes_like_wildcards_in_the_query_literally(world: World) -> None:
    underscore = register_as_stored(world, name="Ann_Bell")
    register_as_stored(world, name="AnnXBell")
    percent = register_as_stored(world, name="Jo 50% Kamau")
    register_as_stored(world, name="Jo 50 Kamau")
    backslash = register_as_stored(world, name="Back\\slash")

    def names(query: str) -> list[str]:
        return [h.user_id for h in lookup.search(world, query=query).members]

    assert names("n_B") == [underscore.id]
    assert names("_") == [underscore.id]
    assert names("%") == [percent.id]
    assert names("0% K") == [percent.id]
    assert names("\\") == [backslash.id]
    assert names("A%l") == []


def test_search_finds_a_member_and_a_loan_by_id_and_a_loan_by_code(world: World) -> None:
    lender, borrower = register(world, name="Lender One"), register(world, name="Borrower Two")
    loan = lend(world, lender=lender, borrower=borrower, approve_with_pin=None)

    by_code = lookup.search(world, query=f" {loan.code.lower()} ")
    by_id = lookup.search(world, query=loan.id.upper())
    member = lookup.search(world, query=borrower.id)

    [hit] = by_code.loans
    assert (hit.loan_id, hit.matched, hit.state) == (loan.id, Matched.LOAN_CODE, "requested")
    assert (hit.borrower_name, hit.lender_name) == ("Borrower Two", "Lender One")
    assert [(h.loan_id, h.matched) for h in by_id.loans] == [(loan.id, Matched.ID)]
    assert [(h.user_id, h.matched) for h in member.members] == [(borrower.id, Matched.ID)]


def test_search_finds_a_payment_by_its_receipt_wherever_it_is_kept(
    world: World, deps: MpesaDeps
) -> None:
    user = register(world)
    request = top_up(deps, user, 250_00)
    send(deps)
    deliver(deps, CallbackKind.STK, paid_push(stored(deps, request.id), "TKP1AB2CD3"))

    found = lookup.search(world, query="tkp1ab2cd3")

    sources = {(h.source, h.user_id) for h in found.payments}
    assert (PaymentSource.MPESA_REQUEST, user.id) in sources
    assert (PaymentSource.LEDGER_ENTRY, None) in sources
    [request_hit] = [h for h in found.payments if h.source is PaymentSource.MPESA_REQUEST]
    assert (request_hit.request_id, request_hit.amount_cents) == (request.id, 250_00)
    [entry_hit] = [h for h in found.payments if h.source is PaymentSource.LEDGER_ENTRY]
    assert (entry_hit.amount_cents, entry_hit.state) == (250_00, "deposit")
    assert all(h.receipt == "TKP1AB2CD3" and h.matched is Matched.RECEIPT for h in found.payments)


def test_search_finds_a_paybill_payment_held_in_suspense_by_its_receipt(
    world: World, deps: MpesaDeps
) -> None:
    deliver(
        deps,
        CallbackKind.C2B_CONFIRMATION,
        C2BEvent("TKC1AB2CD3", 300_00, "NOSUCHACCOUNT", None, "2547 ***** 126"),
    )

    found = lookup.search(world, query="TKC1AB2CD3")

    by_source = {h.source: h for h in found.payments}
    assert by_source[PaymentSource.PAYMENT_CLAIM].state == "waiting"
    assert by_source[PaymentSource.PAYMENT_CLAIM].amount_cents == 300_00
    assert by_source[PaymentSource.CALLBACK].inbox_id is not None
    assert PaymentSource.SUSPENSE not in by_source  # not confirmed by M-PESA yet


def test_search_finds_nothing_for_what_nobody_has(world: World) -> None:
    register(world, name="Achieng Otieno")

    found = lookup.search(world, query="0799999999")

    assert (found.members, found.loans, found.payments) == ((), (), ())


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("", "lookup_query_empty"),
        ("   \t ", "lookup_query_empty"),
        ("x" * (lookup.QUERY_CHARS_MAX + 1), "lookup_query_too_long"),
    ],
)
def test_an_empty_or_overlong_query_is_refused_with_its_code(
    world: World, query: str, code: str
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        lookup.search(world, query=query)
    assert refused.value.code == code


def test_a_query_of_the_longest_length_is_searched(world: World) -> None:
    assert lookup.search(world, query="x" * lookup.QUERY_CHARS_MAX).members == ()


# --- a member's page ------------------------------------------------------------------------------


def test_a_members_page_shows_wallet_loans_payouts_with_their_callbacks_and_the_audit_trail(
    world: World, deps: MpesaDeps
) -> None:
    lender = register(world, name="Lender One", pin=PIN)
    borrower = register(world, name="Borrower Two", pin=PIN)
    fund(world, lender, 2_000_00)
    loan = lend(world, lender=lender, borrower=borrower, approve_with_pin=PIN)
    request = withdraw(world, deps, lender, 400_00)
    send(deps)
    deliver(deps, CallbackKind.B2C_RESULT, payout_result(stored(deps, request.id), "0", "TKB1X"))

    page = lookup.member_page(world, user_id=lender.id)

    assert (page.member.name, page.member.phone) == ("Lender One", lender.phone)
    assert page.member.state is MemberState.ACTIVE
    assert page.member.phone_proven
    assert page.wallet_balance_cents == 2_000_00 - loan.terms.principal_cents - 400_00
    [hold] = page.holds.items
    assert (hold.amount_cents, hold.state) == (400_00, "posted")
    assert [line.loan_id for line in page.loans_as_lender.items] == [loan.id]
    assert page.loans_as_lender.items[0].other_party_name == "Borrower Two"
    assert page.loans_as_borrower.items == ()
    [payout] = page.mpesa_requests.items
    assert (payout.id, payout.state, payout.receipt) == (request.id, "succeeded", "TKB1X")
    assert "settled" in [e.kind for e in payout.events.items]
    [callback] = payout.callbacks.items
    assert (callback.kind, callback.state) == (CallbackKind.B2C_RESULT.value, "applied")
    assert "TKB1X" in callback.body
    commands = {(line.command, line.by_member) for line in page.audit.items}
    assert ("approve_loan", True) in commands
    assert ("mpesa_payout_paid", False) in commands  # the system's row names the member
    assert [line.seq for line in page.audit.items] == sorted(
        (line.seq for line in page.audit.items), reverse=True
    )
    assert {n.kind for n in page.notifications.items} >= {"loan_requested"}
    assert all(n.sms_state == "pending" for n in page.notifications.items)


def test_a_members_page_never_shows_an_sms_code_nor_a_pin(world: World) -> None:
    member = register(world, name="Achieng Otieno", pin="2538")
    recorder = RecordingSmsSender()
    gateway = world.rows.sms_gateway(world.clock)
    deps = _CodeDeps(world, _Both(recorder, gateway))

    pin_reset.start_pin_reset(deps, phone=member.phone, source="person")
    code = recorder.last_code(member.phone)
    page = lookup.member_page(world, user_id=member.id)

    [sms] = page.sms.items
    assert sms.holds_secret
    assert "******" in sms.body
    shown = repr(page)
    assert not shows_number(code, shown)
    assert not shows_number("2538", shown)
    assert world.rows.pin_hash(member.id) not in shown
    assert "ask_pin_reset" in [line.command for line in page.audit.items]


def test_a_members_page_bounds_every_list(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    lender, borrower = register(world, pin=PIN), register(world, pin=PIN)
    fund(world, lender, 1_000_00)
    fund(world, lender, 1_000_00)
    for _ in range(2):
        lend(world, lender=lender, borrower=borrower, approve_with_pin=None)
    monkeypatch.setattr(lookup, "LOANS_MAX", 1)
    monkeypatch.setattr(lookup, "AUDIT_MAX", 1)
    monkeypatch.setattr(lookup, "NOTIFICATIONS_MAX", 1)

    page = lookup.member_page(world, user_id=lender.id)

    for listed in (page.loans_as_lender, page.audit, page.notifications):
        assert (len(listed.items), listed.limit, listed.more) == (1, 1, True)
    assert (page.holds.items, page.holds.more) == ((), False)


def test_a_members_page_says_when_the_member_is_locked_by_support_or_closed(
    world: World,
) -> None:
    member = register(world)
    with world.uow() as uow:
        user = uow.users.lock(member.id)
        assert user is not None
        user.support_locked_at = world.clock.now()
        uow.users.save(user, world.clock.now())
        uow.commit()

    assert lookup.member_page(world, user_id=member.id).member.state is (MemberState.SUPPORT_LOCKED)
    [hit] = lookup.search(world, query=member.phone).members
    assert hit.state is MemberState.SUPPORT_LOCKED


def test_a_closed_members_page_shows_them_closed_with_what_closing_erased_gone(
    world: World,
) -> None:
    member = register(world, name="Achieng Otieno", pin=PIN)
    world.rows.sms_gateway(world.clock).send(
        phone=member.phone, body="Karibu Deni", idempotency_key="welcome"
    )
    assert len(lookup.member_page(world, user_id=member.id).sms.items) == 1

    privacy.close_account(world, user_id=member.id, pin=PIN, channel="api")
    page = lookup.member_page(world, user_id=member.id)

    assert page.member.state is MemberState.CLOSED
    assert page.member.closed_at == world.clock.now()
    assert "Achieng" not in repr(page.member)
    assert (page.sms.items, page.notifications.items) == ((), ())
    assert lookup.search(world, query=member.phone).members == ()
    assert lookup.search(world, query="achieng").members == ()


def test_a_members_page_of_nobody_is_not_found(world: World) -> None:
    with pytest.raises(NotFound) as missing:
        lookup.member_page(world, user_id="no-such-user")
    assert missing.value.code == "member_not_found"


# --- a loan's page --------------------------------------------------------------------------------


def test_a_loans_page_shows_terms_every_posting_repayments_and_its_state_history(
    world: World,
) -> None:
    lender = register(world, name="Lender One", pin=PIN)
    borrower = register(world, name="Borrower Two", pin=PIN)
    fund(world, lender, 2_000_00)
    loan = lend(world, lender=lender, borrower=borrower, approve_with_pin=PIN)
    world.clock.advance(timedelta(hours=1))
    loans.repay_loan(world, borrower_id=borrower.id, loan_id=loan.id, amount_cents=30_000,
                     pin=PIN, idempotency_key="repay-1")  # fmt: skip

    page = lookup.loan_page(world, loan_code_or_id=loan.code.lower())

    terms = page.terms
    assert (terms.loan_id, terms.code, terms.state) == (loan.id, loan.code, "active")
    assert (terms.borrower.name, terms.lender.name) == ("Borrower Two", "Lender One")
    assert (terms.principal_cents, terms.fee_cents) == (100_000, 5_000)
    assert terms.due_date == loan.terms.due_date
    assert terms.penalty_daily_cents == loan.terms.penalty_daily_cents
    assert terms.owed_today_cents == 105_000 - 30_000
    assert [e.code for e in page.entries.items] == ["loan_disbursement", "loan_repayment"]
    for entry in page.entries.items:
        assert entry.cause_type == "loan"
        assert entry.cause_id == loan.id
        assert sum(p.amount_cents for p in entry.postings) == 0
        assert len(entry.postings) == 2
    [repayment] = page.repayments.items
    assert (repayment.amount_cents, repayment.entry_id) == (30_000, page.entries.items[1].entry_id)
    assert [(c.command, c.state, c.source) for c in page.history] == [
        ("request_loan", "requested", HistorySource.AUDIT),
        ("approve_loan", "active", HistorySource.AUDIT),
        ("repay_loan", "active", HistorySource.AUDIT),
    ]
    assert page.history[2].amount_cents == 30_000
    assert page.history[2].actor_id == borrower.id
    assert page.mpesa_requests.items == ()
    assert lookup.loan_page(world, loan_code_or_id=loan.id).terms.loan_id == loan.id


def test_a_loans_page_shows_its_stk_repayment_and_the_deposit_it_brought(
    world: World, deps: MpesaDeps
) -> None:
    lender, borrower = register(world, pin=PIN), register(world, pin=PIN)
    fund(world, lender, 2_000_00)
    loan = lend(world, lender=lender, borrower=borrower, approve_with_pin=PIN)
    request = requests.request_stk(
        deps, user_id=borrower.id, amount_cents=20_000, idempotency_key="stk-repay-1",
        purpose=Purpose.REPAYMENT, loan_id=loan.id,
    )  # fmt: skip
    send(deps)
    deliver(deps, CallbackKind.STK, paid_push(stored(deps, request.id), "TKR1AB2CD3"))

    page = lookup.loan_page(world, loan_code_or_id=loan.code)

    [line] = page.mpesa_requests.items
    assert (line.id, line.receipt, line.purpose) == (request.id, "TKR1AB2CD3", "repayment")
    [callback] = line.callbacks.items
    assert json.loads(callback.body)["receipt"] == "TKR1AB2CD3"
    causes = {(e.cause_type, e.code) for e in page.entries.items}
    assert ("mpesa_receipt", "deposit") in causes
    assert ("loan", "loan_repayment") in causes


def test_a_loans_history_comes_from_its_own_timestamps_when_no_audit_row_names_it(
    world: World,
) -> None:
    lender, borrower = register(world, pin=PIN), register(world, pin=PIN)
    fund(world, lender, 2_000_00)
    loan = lend(world, lender=lender, borrower=borrower, approve_with_pin=PIN)
    for seq, command, _ in world.rows.audit_rows():
        if command in ("request_loan", "approve_loan"):
            world.rows.delete_audit_row(seq)

    page = lookup.loan_page(world, loan_code_or_id=loan.code)

    assert [(c.state, c.command, c.source) for c in page.history] == [
        ("requested", "requested_at", HistorySource.LOAN_ROW),
        ("active", "disbursed_at", HistorySource.LOAN_ROW),
    ]
    assert page.terms.state == LoanState.ACTIVE.value


def test_a_loans_page_of_no_loan_is_not_found(world: World) -> None:
    for missing in ("DNZZZZZZ", "0190a000-0000-7000-8000-000000000000"):
        with pytest.raises(NotFound) as refused:
            lookup.loan_page(world, loan_code_or_id=missing)
        assert refused.value.code == "loan_not_found"


def test_suspense_assigned_is_found_by_receipt_with_its_owner(
    world: World, deps: MpesaDeps
) -> None:
    owner = register(world)
    deliver(
        deps,
        CallbackKind.C2B_CONFIRMATION,
        C2BEvent("TKS1AB2CD3", 300_00, "NOSUCHACCOUNT", None, "2547 ***** 126"),
    )
    _confirm_claim(deps, "TKS1AB2CD3", 300_00)
    reconcile.assign_suspense(deps, receipt="TKS1AB2CD3", user_id=owner.id)

    found = lookup.search(world, query="TKS1AB2CD3")

    by_source = {h.source: h for h in found.payments}
    assert by_source[PaymentSource.SUSPENSE].user_id == owner.id
    assert by_source[PaymentSource.SUSPENSE].state == "assigned"


def test_callbacks_are_found_by_the_literal_start_of_their_key(world: World) -> None:
    """Daraja's CheckoutRequestIDs hold underscores (ws_CO_...): a prefix matches only itself."""
    now = world.clock.now()
    with world.uow() as uow:
        for key in ("stk:ws_CO_1:a", "stk:wsXCOX1:b", "stk:ws_CO_10:c", "stk:ws%CO:d"):
            uow.mpesa_inbox.add(
                kind="stk", dedupe_key=key, body=b"{}", source_ip="", state=InboxState.RECEIVED,
                error="", now=now,
            )  # fmt: skip
        uow.commit()

    with world.uow.read_only() as uow:
        keys = [r.dedupe_key for r in uow.lookup.callbacks(key_prefixes=["stk:ws_CO_1:"], limit=9)]
        percent = [r.dedupe_key for r in uow.lookup.callbacks(key_prefixes=["stk:ws%"], limit=9)]
        both = uow.lookup.callbacks(key_prefixes=["stk:ws_CO_1", "stk:ws%"], limit=2)

    assert keys == ["stk:ws_CO_1:a"]
    assert percent == ["stk:ws%CO:d"]
    assert [r.dedupe_key for r in both] == ["stk:ws_CO_1:a", "stk:ws_CO_10:c"]  # oldest first


# --- callback bodies ------------------------------------------------------------------------------


def test_a_callback_body_is_shown_with_secret_named_fields_masked() -> None:
    body = {
        "Result": {
            "ResultCode": 0,
            "ConversationID": "AG_1",
            "SecurityCredential": "c2VjcmV0",
            "Pin": "2538",
            "ResultParameters": {
                "ResultParameter": [
                    {"Key": "TransactionReceipt", "Value": "TKB1X"},
                    {"Key": "ResetCode", "Value": "123456"},
                ]
            },
        }
    }

    shown, cut = lookup.shown_body(json.dumps(body).encode())

    assert not cut
    read = json.loads(shown)["Result"]
    assert read["ResultCode"] == 0
    assert read["Pin"] == "***"
    assert read["ResultParameters"]["ResultParameter"][0]["Value"] == "TKB1X"
    assert read["ResultParameters"]["ResultParameter"][1]["Value"] == "***"
    assert "2538" not in shown
    assert "123456" not in shown


def test_a_long_or_unreadable_callback_body_is_cut_and_shown_as_text() -> None:
    shown, cut = lookup.shown_body(b"x" * (lookup.CALLBACK_BODY_CHARS_MAX + 5))
    assert (len(shown), cut) == (lookup.CALLBACK_BODY_CHARS_MAX, True)
    assert lookup.shown_body(b"not json \xff") == ("not json \ufffd", False)


# --- helpers --------------------------------------------------------------------------------------


class _Both:
    """An SMS gateway that hands each text to two: the test reads the code from the first."""

    def __init__(self, first: SmsSender, second: SmsSender) -> None:
        self._senders = (first, second)

    def send(
        self, *, phone: str, body: str, idempotency_key: str, secret: str | None = None
    ) -> None:
        for sender in self._senders:
            sender.send(phone=phone, body=body, idempotency_key=idempotency_key, secret=secret)


class _CodeDeps:
    def __init__(self, world: World, sms: SmsSender) -> None:
        self.uow = world.uow
        self.clock = world.clock
        self.hasher = world.hasher
        self.sms = sms
        self.limit_counters = LimitCounters(MemorySessionStore(), b"k" * 32)
        self.pepper = "test-pepper-0123456789abcdef-0123456789"


def _confirm_claim(deps: MpesaDeps, receipt: str, amount_cents: int) -> None:
    assert claims.check_due(deps) == 1
    with deps.uow.read_only() as uow:
        claim = uow.claims.for_receipts([receipt])[receipt]
    answer = status_answer(claim.status_conversation_id, "0", "Completed", receipt, amount_cents)
    deliver(deps, CallbackKind.STATUS_RESULT, answer)
