"""Every screen, in both languages, with the longest realistic data, fits in 182 characters."""

from __future__ import annotations

import string
from datetime import date

import pytest
from babel.messages.pofile import read_po
from tests.support.builders import fund, next_phone
from tests.support.ussd import assert_screen

from deni.bootstrap import Deni
from deni.domain.loans import LoanState
from deni.domain.users import LANGUAGES, User, nairobi_today
from deni.entrypoints.ussd.engine import REGISTRATION_SCREENS, UssdEngine
from deni.entrypoints.ussd.flows import SessionState
from deni.entrypoints.ussd.menus import SCREENS, check_journey
from deni.entrypoints.ussd.render import SCREEN_CHARS_MAX, compose, say
from deni.i18n.catalog import catalog_path
from deni.services import loans, users

LONGEST_NAME = "Wanjiru Nyambura Kamau-Ochieng Wambui Chebet Achieng Otieno"  # 59 chars
BIG_CENTS = 25_000_000  # KES 250,000, the largest loan
ODD_FEE_CENTS = 24_999_950  # KES 249,999.50
SEPT_DUE = date(2027, 9, 28)  # "Sept": the longest month name
# Longest value of every field a text uses, as the views pass them (already formatted).
LONGEST: dict[str, str] = {
    "name": "Wanjiru Nyambura",
    "lender": "Wanjiru Nyambura",
    "amount": "KES 249,999.50",
    "total": "KES 499,999.50",
    "owed": "KES 749,999.50",  # principal + fee + the capped penalty
    "left": "KES 749,998.50",
    "balance": "KES 999,999.50",  # a wallet near a million shillings
    "min": "KES 250,000",
    "max": "KES 250,000",
    "due": "28 Sept 2027",
    "code": "DNWWWWWW",
    "phone": "0712345678",
    "minutes": "1440",
    # A member's book: sums over many loans, ten million shillings and thousands of loans.
    "lent": "KES 9,999,999.50",
    "borrowed": "KES 9,999,999.50",
    "outstanding": "KES 9,999,999.50",
    "repaid": "KES 9,999,999.50",
    "fees": "KES 9,999,999.50",
    "overdue": "KES 9,999,999.50",
    "overdue_count": "9999",
    "loans_count": "9999",
    "state": "Imeisha muda",  # the longest of a past loan's states
    "where": "akaunti yako ya Deni",
}


def _ussd_catalog(language: str) -> dict[str, str]:
    with catalog_path(language, "ussd").open("rb") as fileobj:
        catalog = read_po(fileobj)
    return {str(m.id): str(m.string) for m in catalog if m.id}


def _fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


def test_the_journey_is_sound() -> None:
    assert check_journey(SCREENS) == []
    en, sw = _ussd_catalog("en"), _ussd_catalog("sw")
    assert set(en) == set(sw)
    for key in en:
        assert _fields(en[key]) == _fields(sw[key]), key
        assert en[key].isascii(), key
        assert sw[key].isascii(), key
    used = {s.text for s in SCREENS.values()} | {
        o.label for s in SCREENS.values() for o in s.options
    }
    assert used <= set(en)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_text_alone_fits_with_the_longest_values(language: str) -> None:
    """END screens are one text; the statement is the longest of them all."""
    catalog = _ussd_catalog(language)
    label = max((v for k, v in catalog.items() if k.startswith("ussd.tx_")), key=len)
    longest = {**LONGEST, "lines": "\n".join([f"28/09 -KES 749,999.50 {label}"] * 5)}
    for key, template in catalog.items():
        values = {field: longest[field] for field in _fields(template)}
        # With a navigation line, as when a text heads a CON screen (the statement does).
        tail = [say("ussd.nav_back", language)]
        reply = compose(end=False, head=(), body=template.format_map(values), tail=tail)
        assert not reply.truncated, (key, reply.wire)
        assert not reply.trimmed, (key, reply.wire)
        assert_screen(reply.wire)


@pytest.fixture
def world(deni: Deni) -> dict[str, object]:
    """Two users with the longest names, big loans in every state a screen shows, rich wallets."""
    lender = _user(deni, "sw")
    borrower = _user(deni, "sw")
    fund(deni, lender, 50_000_000)
    fund(deni, lender, 49_999_950)
    term_days = (SEPT_DUE - nairobi_today(deni.clock.now())).days
    ids = []
    for _ in range(8):
        loan = loans.request_loan(
            deni,
            borrower_id=borrower.id,
            lender_phone=lender.phone,
            principal_cents=BIG_CENTS,
            fee_cents=ODD_FEE_CENTS,
            term_days=term_days,
        )
        ids.append(loan.id)
    for loan_id in ids[:4]:
        loans.approve_loan(
            deni,
            lender_id=lender.id,
            loan_id=loan_id,
            pin="3591",
        )
    loans.cancel_loan(deni, borrower_id=borrower.id, loan_id=ids[4])
    return {
        "past": ids[4],
        "lender": lender,
        "borrower": borrower,
        "active": ids[0],
        "requested": ids[-1],
        "requested_version": loan.version,  # the last request, shown on the terms screen
    }


def _user(deni: Deni, language: str) -> User:
    return users.register_user(
        deni,
        phone=next_phone(),
        name=LONGEST_NAME,
        pin="3591",
        language=language,
        phone_proven=True,
    )


CLAIM_SCREENS = {"claim", "claim_pin"}
LENDER_SCREENS = {
    "book",
    "gave_list",
    "gave_detail",
    "write_off_pin",
    "ask_list",
    "ask_detail",
    "approve_pin",
}
REASON_KEYS = (
    "ussd.err_choice",
    "ussd.err_amount",
    "ussd.err_loan_changed",
    "ussd.err_pin_mismatch",
    "ussd.err_on_hold",
)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_screen_fits_with_the_longest_data(
    deni: Deni, world: dict[str, object], language: str
) -> None:
    engine = UssdEngine(deni)
    rendered = 0
    for screen in SCREENS.values():
        for reason_key in (None, *REASON_KEYS):
            state = _state_on(screen.id, world, language)
            ctx = engine._ctx(state, deni.clock.now())
            reason = say(reason_key, language, LONGEST) if reason_key else None
            reply = engine._render(ctx, reason=reason)
            assert state.screen == screen.id, (screen.id, reply.wire)  # its view worked
            assert not reply.truncated, (screen.id, reason_key, reply.wire)
            assert reason_key or not reply.trimmed, (screen.id, reply.wire)
            assert_screen(reply.wire)
            rendered += 1
    assert rendered == len(SCREENS) * (1 + len(REASON_KEYS))


def _state_on(screen_id: str, world: dict[str, object], language: str) -> SessionState:
    lender, borrower = world["lender"], world["borrower"]
    assert isinstance(lender, User)
    assert isinstance(borrower, User)
    registering = screen_id in REGISTRATION_SCREENS
    me = lender if screen_id in LENDER_SCREENS else borrower
    requested = {"ask_detail", "approve_pin", "mine_detail", "mine_cancel"}
    loan_id = world["requested"] if screen_id in requested else world["active"]
    loan_id = world["past"] if screen_id == "past_detail" else loan_id
    state = SessionState(
        session_id="screens",
        phone=me.phone,
        lang=language,
        user_id=None if registering else me.id,
        name=me.name,
        screen=screen_id,
        stack=["main"],
        claim_id=me.id if screen_id in CLAIM_SCREENS else None,
    )
    state.data.update(
        {
            "lender": lender.phone,
            "lender_name": LONGEST_NAME,
            "principal": BIG_CENTS,
            "fee": ODD_FEE_CENTS,
            "days": 365,
            "amount": ODD_FEE_CENTS,
            "loan_id": loan_id,
            "loan_version": world["requested_version"],
            "language": language,
            "payout": "wallet",
        }
    )
    return state


def test_the_world_has_what_the_screens_need(deni: Deni, world: dict[str, object]) -> None:
    with deni.uow.read_only() as uow:
        a = uow.loans.get(str(world["active"]))
        r = uow.loans.get(str(world["requested"]))
    assert a is not None
    assert a.state is LoanState.ACTIVE
    assert r is not None
    assert r.state is LoanState.REQUESTED
    assert SCREEN_CHARS_MAX == 182
