"""What USSD screens do: parse entries, load what a screen shows, call the service functions.

The same service functions as the REST API; this module only translates between keypad entries
and those calls. Anything that moves money through M-PESA is queued on the context and recorded
when the session ends (engine.py).
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from deni.bootstrap import Deni
from deni.domain.errors import AlreadyRegistered, Conflict, InvalidPhoneNumber
from deni.domain.ledger import EntryCode
from deni.domain.loans import TERM_DAYS_MAX, LoanState
from deni.domain.money import CENTS_PER_SHILLING, LOAN_CENTS_MAX, LOAN_CENTS_MIN
from deni.domain.mpesa import B2C_CENTS_MIN, MPESA_CENTS_MAX, STK_CENTS_MIN
from deni.domain.phone import normalise_msisdn
from deni.domain.secrecy import derive_key, digests_match, keyed_digest
from deni.domain.security import PIN_DIGITS, is_weak_pin
from deni.domain.users import nairobi_today
from deni.entrypoints.ussd.render import plain, say
from deni.entrypoints.ussd.screens import Finish, Goto, Item, Params, Reject, Step
from deni.i18n import format_day, format_kes
from deni.services import book, limits, loans, pin_reset, privacy, reminders, users, ussd
from deni.services.mpesa import preferences
from deni.services.ports import Clock
from deni.services.ussd import QueuedMpesa
from deni.services.ussd_ports import LoanLine, UssdReads

CHANNEL = "ussd"
NAME_SHOWN_CHARS = 16
NAME_IN_LIST_CHARS = 12
STATEMENT_LINES = 5
_NAME = re.compile(r"[A-Za-z][A-Za-z' .-]{1,29}")
_SHILLINGS = re.compile(r"[0-9]{1,9}")
USSD_NAMESPACE = uuid.UUID("6f1c9a52-3a55-4d0e-9a43-3d1c1f5e0b7a")
DAYS_CACHED = 1_024
SEAL_KEY_LABEL = "ussd-session"
# The loan version the lender was shown with the request's terms: the PIN approves that one.
SEEN_VERSION = "loan_version"

# What a hop writes to the session store: key -> (value, ttl_s) to put, or None to delete.
Changes = dict[str, tuple[str, int] | None]


class SessionSeal:
    """What a session must remember of a secret, as HMACs under a key derived from the PIN
    pepper; a PIN itself is never written to the session store, in any form that gives it
    back (docs/ussd.md, "What a session keeps").

    - `text`: the last hop's text (it holds every PIN typed so far), to know a re-sent hop and
      where the next entry starts;
    - `entry`: a new PIN's first entry, to compare with the second;
    - `proof`: that the current PIN was proven at a given time, for a change of PIN, whose old
      PIN is checked on its own screen and no longer known when the new one is set.
    """

    def __init__(self, pepper: str) -> None:
        self._key = derive_key(pepper, SEAL_KEY_LABEL)

    def text(self, session_id: str, text: str) -> str:
        return keyed_digest(self._key, "text", session_id, text)

    def entry(self, phone: str, pin: str) -> str:
        # The phone, not the session: a resumed session (another id) compares it too.
        return keyed_digest(self._key, "entry", phone, pin)

    def proof(self, phone: str, user_id: str, checked_at: str) -> str:
        return keyed_digest(self._key, "pin-proven", phone, user_id, checked_at)


@dataclass
class SessionState:
    """Everything a session remembers between hops, as JSON."""

    session_id: str
    phone: str
    lang: str
    user_id: str | None
    name: str
    screen: str
    stack: list[str] = field(default_factory=list)
    data: dict[str, object] = field(default_factory=dict)
    page: int = 0
    hop: int = 0
    # The last hop's text, as its length and its keyed digest (SessionSeal.text): it holds
    # every PIN typed in the session, so it is never kept itself.
    last_text_chars: int = 0
    last_text_mac: str = ""
    last_reply: str = ""
    ended: bool = False
    snapshot_saved: bool = False
    claim_id: str | None = None  # an unproven account on this number, until its PIN proves it

    def to_json(self) -> str:
        return json.dumps(vars(self))  # every field is plain JSON data


@dataclass
class Ctx:
    """One hop: its session, the wired adapters, and what it writes when it has its answer."""

    deni: Deni
    state: SessionState
    now: datetime
    seal: SessionSeal
    secret_ttl_s: int  # how long a proven PIN stands: a session's timeout and its resume
    loaded_snapshot: str | None = None  # the phone's resume snapshot, read with the session
    changes: Changes = field(default_factory=dict)  # written with the session at the end
    queued: list[QueuedMpesa] = field(default_factory=list)
    # The engine's resume(ctx, yes): a function of the engine, so a Ctx is never in a cycle.
    resume: Callable[[Ctx, bool], Step] | None = None

    @property
    def reads(self) -> UssdReads:
        """What screens show, one statement each (adapters/db/ussd_reads.py)."""
        return self.deni.ussd_reads

    @property
    def clock(self) -> Clock:
        return self.deni.clock

    @property
    def lang(self) -> str:
        return self.state.lang

    @property
    def today(self) -> date:
        return nairobi_today(self.now)

    @property
    def user_id(self) -> str:
        assert self.state.user_id is not None, "this screen is for registered users"
        return self.state.user_id

    @property
    def hop_key(self) -> str:
        """Names this hop's action, so the same hop sent twice never acts twice."""
        return f"ussd:{self.state.session_id}:{self.state.hop}"

    def text(self, key: str) -> str:
        value = self.state.data.get(key)
        assert isinstance(value, str), key
        return value

    def cents(self, key: str) -> int:
        value = self.state.data.get(key)
        assert isinstance(value, int), key
        return value

    def queue(self, kind: str, amount_cents: int, loan_id: str | None = None) -> None:
        key = f"{self.hop_key}:{len(self.queued)}"
        self.queued.append(QueuedMpesa(kind, amount_cents, key, loan_id))


# --- shared little parsers -------------------------------------------------------------------


def shillings(raw: str, *, amount_cents_min: int, amount_cents_max: int) -> int:
    """Whole shillings typed on a keypad, as cents within bounds."""
    if not _SHILLINGS.fullmatch(raw):
        raise Reject(
            "ussd.err_amount", min=format_kes(amount_cents_min), max=format_kes(amount_cents_max)
        )
    cents = int(raw) * CENTS_PER_SHILLING
    if not amount_cents_min <= cents <= amount_cents_max:
        raise Reject(
            "ussd.err_amount", min=format_kes(amount_cents_min), max=format_kes(amount_cents_max)
        )
    return cents


def require_pin(raw: str) -> str:
    if len(raw) != PIN_DIGITS or not raw.isascii() or not raw.isdigit():
        raise Reject("ussd.err_pin_format")
    return raw


def short_name(name: str, chars: int = NAME_SHOWN_CHARS) -> str:
    """A name cut to fit a screen, at a word boundary when one is near enough. Cut as the
    phone shows it (plain ASCII): a name may be any printable text, and folding can make one
    character several ("\u33af" is "rads2"), so a name cut first could fill the screen."""
    assert chars >= 8
    name = plain(name)
    if len(name) <= chars:
        return name
    cut = name[:chars]
    if name[chars] != " " and " " in cut and cut.rindex(" ") >= chars // 2:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip()


def national(phone: str) -> str:
    return "0" + phone[3:] if phone.startswith("254") else phone


def short_day(day: date) -> str:
    return day.strftime("%d/%m")


@functools.lru_cache(maxsize=DAYS_CACHED)
def _day(day: date, language: str) -> str:
    """A due date as the phone shows it (Babel's medium date): the same few days, all day."""
    return format_day(day, language)


def _confirm_pin(ctx: Ctx, raw: str, *, money_leaves: bool = False) -> None:
    ussd.confirm_pin(
        ctx.deni,
        user_id=ctx.user_id,
        pin=require_pin(raw),
        channel=CHANNEL,
        money_leaves=money_leaves,
    )


def _balance(ctx: Ctx) -> int:
    return ctx.reads.balance_cents(ctx.user_id)


# --- registration ----------------------------------------------------------------------------


def parse_name(ctx: Ctx, raw: str) -> object:
    cleaned = " ".join(raw.split())
    if not _NAME.fullmatch(cleaned):
        raise Reject("ussd.err_name")
    return cleaned


def parse_new_pin(ctx: Ctx, raw: str) -> object:
    """A PIN being set: refused at its first entry if it is one of the commonest (the service
    refuses it too, as on every channel); a PIN being checked is never judged so."""
    pin = require_pin(raw)
    if is_weak_pin(pin):
        raise Reject("ussd.err_weak_pin")
    return ctx.seal.entry(ctx.state.phone, pin)


def _pin_twice(ctx: Ctx, raw: str, *, field: str, again: str) -> Goto | None:
    """A new PIN's second entry against the first (its digest in `field`): None when they
    match, else back to the screen `again` to enter it anew."""
    second = ctx.seal.entry(ctx.state.phone, require_pin(raw))
    if not digests_match(ctx.state.data.get(field), second):
        ctx.state.data.pop(field, None)
        return Goto(again, notice="ussd.err_pin_mismatch")
    return None


def submit_register(ctx: Ctx, raw: str) -> Step:
    mismatch = _pin_twice(ctx, raw, field="pin", again="reg_pin")
    if mismatch is not None:
        return mismatch
    language = ctx.text("language")
    try:
        user = users.register_user(
            ctx.deni,
            phone=ctx.state.phone,
            name=ctx.text("name"),
            pin=raw,
            language=language,
            channel=CHANNEL,
            phone_proven=True,  # the network says which SIM dialled
        )
    except AlreadyRegistered:
        with ctx.deni.uow.read_only() as uow:
            user = users.find_by_phone(uow, ctx.state.phone)
    ctx.state.user_id, ctx.state.name, ctx.state.lang = user.id, user.name, user.language
    ctx.state.data.clear()
    return Goto("main", notice="ussd.registered", reset=True)


# --- an unproven account's number dials in -------------------------------------------------


def view_claim(ctx: Ctx) -> Params:
    return {"name": short_name(ctx.state.name)}


def submit_claim(ctx: Ctx, raw: str) -> Step:
    state = ctx.state
    if state.claim_id is None:  # a session from before the account lost the number
        return Goto("welcome", reset=True)
    user = ussd.claim_number(
        ctx.deni,
        user_id=state.claim_id,
        phone=state.phone,
        pin=require_pin(raw),
        channel=CHANNEL,
    )
    state.user_id, state.name, state.lang, state.claim_id = user.id, user.name, user.language, None
    state.data.clear()
    return Goto("main", notice="ussd.claimed", reset=True)


def action_claim_new(ctx: Ctx) -> Step:
    """Not theirs: the SIM's holder registers, and the new account takes the number."""
    ctx.state.claim_id = None
    return Goto("welcome", reset=True)


# --- the main menu ---------------------------------------------------------------------------


def view_main(ctx: Ctx) -> Params:
    return {"name": short_name(ctx.state.name)}


# --- asking for a loan -----------------------------------------------------------------------


def parse_lender(ctx: Ctx, raw: str) -> object:
    try:
        phone = normalise_msisdn(raw)
    except InvalidPhoneNumber as error:
        raise Reject("ussd.err_phone") from error
    if phone == ctx.state.phone:
        raise Reject("ussd.err_self")
    limits.limit_lender_lookup(ctx.deni.limit_counters, member_id=ctx.user_id, now=ctx.now)
    lender = ctx.reads.member(phone)
    if lender is None:
        raise Reject("ussd.err_not_on_deni")
    if not lender.phone_proven:
        raise Reject("ussd.err_not_proven")
    ctx.state.data["lender_name"] = lender.name
    return phone


def parse_principal(ctx: Ctx, raw: str) -> object:
    return shillings(raw, amount_cents_min=LOAN_CENTS_MIN, amount_cents_max=LOAN_CENTS_MAX)


def parse_days(ctx: Ctx, raw: str) -> object:
    if not _SHILLINGS.fullmatch(raw) or not 1 <= int(raw) <= TERM_DAYS_MAX:
        raise Reject("ussd.err_days", max=TERM_DAYS_MAX)
    return int(raw)


def parse_fee(ctx: Ctx, raw: str) -> object:
    return shillings(raw, amount_cents_min=0, amount_cents_max=ctx.cents("principal"))


def view_lender(ctx: Ctx) -> Params:
    return {"lender": short_name(ctx.text("lender_name"))}


def view_quote(ctx: Ctx) -> Params:
    offer = loans.quote_loan(
        clock=ctx.clock,
        principal_cents=ctx.cents("principal"),
        fee_cents=ctx.cents("fee"),
        term_days=ctx.cents("days"),
    )
    return {
        "lender": short_name(ctx.text("lender_name")),
        "amount": format_kes(offer.principal_cents),
        "total": format_kes(offer.total_cents),
        "due": _day(offer.due_date, ctx.lang),
    }


def submit_request_loan(ctx: Ctx, raw: str) -> Step:
    _confirm_pin(ctx, raw)
    loan = loans.request_loan(
        ctx.deni,
        borrower_id=ctx.user_id,
        lender_phone=ctx.text("lender"),
        principal_cents=ctx.cents("principal"),
        fee_cents=ctx.cents("fee"),
        term_days=ctx.cents("days"),
        loan_id=str(uuid.uuid5(USSD_NAMESPACE, ctx.hop_key)),  # a repeated hop asks once
        channel=CHANNEL,
    )
    return Finish(
        "ussd.loan_requested",
        {"lender": short_name(ctx.text("lender_name")), "code": loan.code},
    )


# --- lists of loans --------------------------------------------------------------------------


def _loan_items(ctx: Ctx, offset: int, limit: int, *, role: str, state: LoanState) -> list[Item]:
    lines = ctx.reads.loans(
        user_id=ctx.user_id, role=role, state=state, offset=offset, limit=limit, today=ctx.today
    )
    items = []
    for line in lines:
        other = line.lender_name if role == "borrower" else line.borrower_name
        terms = line.loan.terms
        amount = line.owed_cents if state is LoanState.ACTIVE else terms.principal_cents
        params = {
            "name": short_name(other, NAME_IN_LIST_CHARS),
            "amount": format_kes(amount),
            "due": short_day(terms.due_date),
        }
        items.append(Item(line.loan.id, params))
    return items


def items_owed(ctx: Ctx, offset: int, limit: int) -> list[Item]:
    return _loan_items(ctx, offset, limit, role="borrower", state=LoanState.ACTIVE)


def items_lent(ctx: Ctx, offset: int, limit: int) -> list[Item]:
    return _loan_items(ctx, offset, limit, role="lender", state=LoanState.ACTIVE)


def items_asks(ctx: Ctx, offset: int, limit: int) -> list[Item]:
    return _loan_items(ctx, offset, limit, role="lender", state=LoanState.REQUESTED)


def items_mine(ctx: Ctx, offset: int, limit: int) -> list[Item]:
    """My requests still waiting for the lender's answer."""
    return _loan_items(ctx, offset, limit, role="borrower", state=LoanState.REQUESTED)


def _state_label(ctx: Ctx, state: LoanState) -> str:
    return say(f"ussd.state_{state.value}", ctx.lang)


def items_past(ctx: Ctx, offset: int, limit: int) -> list[Item]:
    """Loans I borrowed (or asked for) that are over, newest first."""
    lines = ctx.reads.past_loans(
        user_id=ctx.user_id, role="borrower", offset=offset, limit=limit, today=ctx.today
    )
    return [
        Item(
            line.loan.id,
            {
                "name": short_name(line.lender_name, NAME_IN_LIST_CHARS),
                "amount": format_kes(line.loan.terms.principal_cents),
                "state": _state_label(ctx, line.loan.state),
            },
        )
        for line in lines
    ]


def _loan_view(ctx: Ctx, *, role: str, state: LoanState) -> LoanLine:
    line = ctx.reads.loan(ctx.text("loan_id"), today=ctx.today)
    if line is None:
        raise Reject("ussd.err_loan_changed")
    mine = line.loan.borrower_id if role == "borrower" else line.loan.lender_id
    if mine != ctx.user_id or line.loan.state is not state:
        raise Reject("ussd.err_loan_changed")
    return line


def _loan_params(ctx: Ctx, view: LoanLine, *, other: str) -> dict[str, object]:
    terms = view.loan.terms
    return {
        "code": view.loan.code,
        "name": short_name(other),
        "owed": format_kes(view.owed_cents),
        "amount": format_kes(terms.principal_cents),
        "total": format_kes(terms.total_cents),
        "due": _day(terms.due_date, ctx.lang),
    }


def view_owed_loan(ctx: Ctx) -> Params:
    view = _loan_view(ctx, role="borrower", state=LoanState.ACTIVE)
    return _loan_params(ctx, view, other=view.lender_name)


def view_lent_loan(ctx: Ctx) -> Params:
    view = _loan_view(ctx, role="lender", state=LoanState.ACTIVE)
    return _loan_params(ctx, view, other=view.borrower_name)


def view_ask(ctx: Ctx) -> Params:
    """The request's terms in full: the version shown is the one the PIN may approve."""
    view = _loan_view(ctx, role="lender", state=LoanState.REQUESTED)
    ctx.state.data[SEEN_VERSION] = view.loan.version
    return _loan_params(ctx, view, other=view.borrower_name)


def view_approve_pin(ctx: Ctx) -> Params:
    """The PIN screen, for the terms shown on the screen before it and no others."""
    view = _loan_view(ctx, role="lender", state=LoanState.REQUESTED)
    if view.loan.version != ctx.state.data.get(SEEN_VERSION):
        raise Reject("ussd.err_loan_changed")
    return _loan_params(ctx, view, other=view.borrower_name)


def view_mine(ctx: Ctx) -> Params:
    """One of my requests that waits for the lender."""
    view = _loan_view(ctx, role="borrower", state=LoanState.REQUESTED)
    return _loan_params(ctx, view, other=view.lender_name)


def action_cancel(ctx: Ctx) -> Step:
    """Withdraw my request, once confirmed: the lender may no longer approve it."""
    view = _loan_view(ctx, role="borrower", state=LoanState.REQUESTED)
    loans.cancel_loan(ctx.deni, borrower_id=ctx.user_id, loan_id=view.loan.id, channel=CHANNEL)
    return Finish(
        "ussd.request_cancelled", {"code": view.loan.code, "name": short_name(view.lender_name)}
    )


def view_past(ctx: Ctx) -> Params:
    """A loan of mine that is over."""
    line = ctx.reads.loan(ctx.text("loan_id"), today=ctx.today)
    if line is None or line.loan.borrower_id != ctx.user_id or not line.loan.state.is_final:
        raise Reject("ussd.err_loan_changed")
    return {
        **_loan_params(ctx, line, other=line.lender_name),
        "state": _state_label(ctx, line.loan.state),
    }


# --- repaying --------------------------------------------------------------------------------


def _owed_cents(ctx: Ctx) -> int:
    return _loan_view(ctx, role="borrower", state=LoanState.ACTIVE).owed_cents


def view_repay_wallet_amount(ctx: Ctx) -> Params:
    return {"owed": format_kes(_owed_cents(ctx)), "balance": format_kes(_balance(ctx))}


def parse_repay_amount(ctx: Ctx, raw: str) -> object:
    return shillings(raw, amount_cents_min=CENTS_PER_SHILLING, amount_cents_max=_owed_cents(ctx))


def view_repay_wallet_pin(ctx: Ctx) -> Params:
    view = _loan_view(ctx, role="borrower", state=LoanState.ACTIVE)
    return {"amount": format_kes(ctx.cents("amount")), "name": short_name(view.lender_name)}


def submit_repay_wallet(ctx: Ctx, raw: str) -> Step:
    repayment = loans.repay_loan(
        ctx.deni,
        borrower_id=ctx.user_id,
        loan_id=ctx.text("loan_id"),
        amount_cents=ctx.cents("amount"),
        pin=require_pin(raw),
        idempotency_key=ctx.hop_key,
        channel=CHANNEL,
    )
    left_cents = repayment.loan.owed().total_cents
    if left_cents == 0:
        return Finish("ussd.repaid_all", {"code": repayment.loan.code})
    applied = format_kes(repayment.allocation.applied_cents)
    return Finish("ussd.repaid_part", {"amount": applied, "left": format_kes(left_cents)})


def view_repay_mpesa(ctx: Ctx) -> Params:
    return {"owed": format_kes(_owed_cents(ctx))}


def submit_repay_mpesa(ctx: Ctx, raw: str) -> Step:
    maximum = min(_owed_cents(ctx), MPESA_CENTS_MAX)
    amount_cents = shillings(raw, amount_cents_min=CENTS_PER_SHILLING, amount_cents_max=maximum)
    ctx.queue("stk_repayment", amount_cents, loan_id=ctx.text("loan_id"))
    return Finish("ussd.stk_coming", {"amount": format_kes(amount_cents)})


# --- lending ---------------------------------------------------------------------------------


def action_remind(ctx: Ctx) -> Step:
    view = _loan_view(ctx, role="lender", state=LoanState.ACTIVE)
    sent = reminders.remind_borrower(
        ctx.deni,
        lender_id=ctx.user_id,
        loan_id=view.loan.id,
        channel=CHANNEL,
    )
    if not sent:
        raise Reject("ussd.err_reminded_today")
    return Finish("ussd.reminder_sent", {"name": short_name(view.borrower_name)})


def submit_write_off(ctx: Ctx, raw: str) -> Step:
    view = _loan_view(ctx, role="lender", state=LoanState.ACTIVE)
    loans.write_off_loan(
        ctx.deni,
        lender_id=ctx.user_id,
        loan_id=view.loan.id,
        pin=require_pin(raw),
        channel=CHANNEL,
    )
    return Finish("ussd.written_off", {"code": view.loan.code})


def submit_approve(ctx: Ctx, raw: str) -> Step:
    view = _loan_view(ctx, role="lender", state=LoanState.REQUESTED)
    seen_version = ctx.state.data.get(SEEN_VERSION)
    if not isinstance(seen_version, int):
        raise Reject("ussd.err_loan_changed")
    try:
        loan = loans.approve_loan(
            ctx.deni,
            lender_id=ctx.user_id,
            loan_id=view.loan.id,
            pin=require_pin(raw),
            channel=CHANNEL,
            base_version=seen_version,
        )
    except Conflict as error:
        if error.code != "loan_changed":
            raise
        # The borrower edited the request between the terms screen and the PIN.
        changed = {
            "name": short_name(view.borrower_name),
            "amount": format_kes(view.loan.terms.principal_cents),
        }
        return Finish("ussd.approve_terms_changed", changed)
    params = {
        "amount": format_kes(loan.terms.principal_cents),
        "name": short_name(view.borrower_name),
    }
    if loan.state is LoanState.ACTIVE:
        # Paid out to the borrower's M-PESA unless they keep loans in the wallet.
        if preferences.loans_pay_out_to_mpesa(ctx.deni, user_id=loan.borrower_id):
            return Finish("ussd.approved_mpesa", params)
        return Finish("ussd.approved_sent", params)
    return Finish("ussd.approved_waiting", params)


def action_decline(ctx: Ctx) -> Step:
    view = _loan_view(ctx, role="lender", state=LoanState.REQUESTED)
    loans.decline_loan(
        ctx.deni,
        lender_id=ctx.user_id,
        loan_id=view.loan.id,
        channel=CHANNEL,
    )
    return Finish("ussd.declined", {"name": short_name(view.borrower_name)})


# --- the wallet ------------------------------------------------------------------------------


def view_wallet(ctx: Ctx) -> Params:
    return {"balance": format_kes(_balance(ctx))}


def submit_top_up(ctx: Ctx, raw: str) -> Step:
    amount_cents = shillings(raw, amount_cents_min=STK_CENTS_MIN, amount_cents_max=MPESA_CENTS_MAX)
    ctx.queue("top_up", amount_cents)
    return Finish("ussd.stk_coming", {"amount": format_kes(amount_cents)})


def view_withdraw_amount(ctx: Ctx) -> Params:
    return {"balance": format_kes(_balance(ctx))}


def parse_withdraw_amount(ctx: Ctx, raw: str) -> object:
    balance_cents = _balance(ctx)
    if balance_cents < B2C_CENTS_MIN:
        raise Reject("ussd.err_balance", balance=format_kes(balance_cents))
    return shillings(
        raw, amount_cents_min=B2C_CENTS_MIN, amount_cents_max=min(balance_cents, MPESA_CENTS_MAX)
    )


def view_withdraw_pin(ctx: Ctx) -> Params:
    return {"amount": format_kes(ctx.cents("amount")), "phone": national(ctx.state.phone)}


def submit_withdraw(ctx: Ctx, raw: str) -> Step:
    _confirm_pin(ctx, raw, money_leaves=True)
    amount_cents = ctx.cents("amount")
    if _balance(ctx) < amount_cents:
        raise Reject("ussd.err_balance", balance=format_kes(_balance(ctx)))
    ctx.queue("withdrawal", amount_cents)
    return Finish(
        "ussd.withdraw_coming",
        {"amount": format_kes(amount_cents), "phone": national(ctx.state.phone)},
    )


# --- the mini-statement ----------------------------------------------------------------------

_TX_LABELS = {code.value: f"ussd.tx_{code.value}" for code in EntryCode}


def _tx_label(code: str, cause_type: str) -> str:
    if code == EntryCode.PAYOUT_HOLD.value and cause_type == "loan":
        return "ussd.tx_loan_to_mpesa"  # the loan sent on to M-PESA, not a withdrawal
    return _TX_LABELS.get(code, "ussd.tx_other")


def view_statement(ctx: Ctx) -> Params:
    statement = ctx.reads.statement(ctx.user_id, limit=STATEMENT_LINES)
    lines = []
    for line in statement.lines:
        sign = "+" if line.amount_cents > 0 else "-"
        label = say(_tx_label(line.code, line.cause_type), ctx.lang)
        day = short_day(nairobi_today(line.created_at))
        lines.append(f"{day} {sign}{format_kes(abs(line.amount_cents))} {label}")
    if not lines:
        lines.append(say("ussd.statement_empty", ctx.lang))
    return {"balance": format_kes(statement.balance_cents), "lines": "\n".join(lines)}


# --- my book ---------------------------------------------------------------------------------


def view_book(ctx: Ctx) -> Params:
    """The lender's totals: one statement, summed by the database (services/book.py)."""
    totals = book.lender_totals(ctx.deni, user_id=ctx.user_id)
    return {
        "lent": format_kes(totals.lent_cents),
        "outstanding": format_kes(totals.outstanding_cents),
        "repaid": format_kes(totals.repaid_cents),
        "fees": format_kes(totals.fees_earned_cents),
        "overdue": format_kes(totals.overdue_cents),
        "overdue_count": str(totals.overdue_count),
    }


def view_history(ctx: Ctx) -> Params:
    totals = book.borrower_totals(ctx.deni, user_id=ctx.user_id)
    return {
        "borrowed": format_kes(totals.lent_cents),
        "repaid": format_kes(totals.repaid_cents),
        "outstanding": format_kes(totals.outstanding_cents),
        "loans_count": str(totals.loans_count),
        "overdue_count": str(totals.overdue_count),
    }


# --- settings --------------------------------------------------------------------------------


def submit_old_pin(ctx: Ctx, raw: str) -> Step:
    """The current PIN, checked here (a wrong one counts); the session keeps only that it was
    proven, and when, for the screens that take the new one."""
    _confirm_pin(ctx, raw)
    checked_at = ctx.now.isoformat()
    ctx.state.data["pin_proven_at"] = checked_at
    ctx.state.data["pin_proof"] = ctx.seal.proof(ctx.state.phone, ctx.user_id, checked_at)
    return Goto("pin_new")


def _pin_proven(ctx: Ctx) -> bool:
    """Whether this session proved the current PIN, recently enough (as long as a session and
    its resume last)."""
    checked_at = ctx.state.data.get("pin_proven_at")
    if not isinstance(checked_at, str):
        return False
    proof = ctx.seal.proof(ctx.state.phone, ctx.user_id, checked_at)
    if not digests_match(ctx.state.data.get("pin_proof"), proof):
        return False
    try:
        age_s = (ctx.now - datetime.fromisoformat(checked_at)).total_seconds()
    except (ValueError, TypeError):
        return False
    return 0 <= age_s <= ctx.secret_ttl_s


def submit_change_pin(ctx: Ctx, raw: str) -> Step:
    if not _pin_proven(ctx):
        return Goto("pin_old", notice="ussd.err_start_again", reset=True)
    mismatch = _pin_twice(ctx, raw, field="new_pin", again="pin_new")
    if mismatch is not None:
        return mismatch
    users.change_proven_pin(
        ctx.deni,
        user_id=ctx.user_id,
        new_pin=raw,
        channel=CHANNEL,
    )
    ctx.state.data.clear()
    return Finish("ussd.pin_changed")


def submit_reset_pin(ctx: Ctx, raw: str) -> Step:
    mismatch = _pin_twice(ctx, raw, field="reset_pin", again="reset_new")
    if mismatch is not None:
        return mismatch
    pin_reset.reset_pin_on_this_sim(
        ctx.deni,
        user_id=ctx.user_id,
        new_pin=raw,
        channel=CHANNEL,
    )
    ctx.state.data.clear()
    return Finish("ussd.pin_reset_done")


def submit_close(ctx: Ctx, raw: str) -> Step:
    privacy.close_account(
        ctx.deni,
        user_id=ctx.user_id,
        pin=require_pin(raw),
        channel=CHANNEL,
    )
    ctx.state.data.clear()
    return Finish("ussd.closed")


def _where(ctx: Ctx, to_mpesa: bool) -> str:
    return say("ussd.where_mpesa" if to_mpesa else "ussd.where_wallet", ctx.lang)


def view_payout(ctx: Ctx) -> Params:
    """Where the loans I borrow go now."""
    to_mpesa = preferences.loans_pay_out_to_mpesa(ctx.deni, user_id=ctx.user_id)
    return {"where": _where(ctx, to_mpesa)}


def view_payout_pin(ctx: Ctx) -> Params:
    return {"where": _where(ctx, ctx.text("payout") == "mpesa")}


def submit_payout(ctx: Ctx, raw: str) -> Step:
    """A money-out setting: it decides where future loans go, so it takes the PIN (as on the
    API and in sync)."""
    to_mpesa = ctx.text("payout") == "mpesa"
    preferences.set_preferences(
        ctx.deni,
        user_id=ctx.user_id,
        pin=require_pin(raw),
        disburse_to_mpesa=to_mpesa,
        channel=CHANNEL,
    )
    ctx.state.data.clear()
    return Finish("ussd.payout_saved", {"where": _where(ctx, to_mpesa)})


def _set_language(ctx: Ctx, language: str) -> Step:
    user = ussd.set_language(
        ctx.deni,
        user_id=ctx.user_id,
        language=language,
        channel=CHANNEL,
    )
    ctx.state.lang = user.language
    return Goto("main", notice="ussd.language_set", reset=True)


def action_english(ctx: Ctx) -> Step:
    return _set_language(ctx, "en")


def action_swahili(ctx: Ctx) -> Step:
    return _set_language(ctx, "sw")


# --- resuming a dropped session --------------------------------------------------------------


def action_resume(ctx: Ctx) -> Step:
    assert ctx.resume is not None
    return ctx.resume(ctx, True)


def action_fresh_start(ctx: Ctx) -> Step:
    assert ctx.resume is not None
    return ctx.resume(ctx, False)


def locked_minutes(ctx: Ctx) -> int:
    """Minutes until a locked account opens again, for the screen that says so."""
    user_id = ctx.state.user_id or ctx.state.claim_id  # a claim's PIN may lock the account
    assert user_id is not None
    user = users.get_user(ctx.deni, user_id=user_id)
    if user.locked_until is None:
        return 1
    seconds = (user.locked_until - ctx.now) / timedelta(seconds=1)
    return max(1, -(-int(seconds) // 60))
