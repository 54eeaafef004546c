"""The words of the loan and member rules' refusals, and the guards that keep the loan table,
the lapse times, SMS codes and counters honest."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from deni.domain import loans as domain_loans
from deni.domain.errors import InvalidDueDate, MoneyOnHold, PhoneNotProven, ValidationFailed
from deni.domain.loans import (
    REQUESTS_READ_MAX,
    TERM_DAYS_MAX,
    LoanEvent,
    LoanState,
    PastRequest,
    lapse_at,
    next_state,
    require_may_request,
    resolve_due_date,
)
from deni.domain.security import RESET_CODE_ATTEMPTS_MAX, RESET_CODE_TTL, SmsCode
from deni.domain.users import User, require_language, require_name

NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
TODAY = date(2026, 11, 26)


@pytest.mark.parametrize(
    ("due_date", "term_days", "message"),
    [
        (None, None, "Give either a due date or a number of days, not both."),
        (TODAY + timedelta(days=3), 3, "Give either a due date or a number of days, not both."),
        (None, 2.5, "Days must be a whole number."),
        (None, 0, f"A loan runs from 1 to {TERM_DAYS_MAX} days."),
        (TODAY, None, "The due date must be in the future."),
        (
            TODAY + timedelta(days=TERM_DAYS_MAX + 1),
            None,
            f"The due date must be within {TERM_DAYS_MAX} days.",
        ),
    ],
)
def test_a_bad_due_date_is_refused_in_plain_words(
    due_date: date | None, term_days: object, message: str
) -> None:
    with pytest.raises(InvalidDueDate) as caught:
        resolve_due_date(due_date=due_date, term_days=term_days, today=TODAY)  # type: ignore[arg-type]
    assert caught.value.message == message


def test_the_loan_table_cannot_grow_a_way_out_of_a_final_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(
        domain_loans.TRANSITIONS, (LoanState.REPAID, LoanEvent.REPAY), LoanState.ACTIVE
    )
    with pytest.raises(AssertionError, match=r"^final states have no way out$"):
        next_state(LoanState.REPAID, LoanEvent.REPAY)


def test_a_lapse_needs_a_time_to_live() -> None:
    due = TODAY + timedelta(days=30)
    assert lapse_at(now=NOW, ttl=timedelta(seconds=1), due_date=due) == NOW + timedelta(seconds=1)
    with pytest.raises(AssertionError):
        lapse_at(now=NOW, ttl=timedelta(0), due_date=due)


@pytest.mark.usefixtures("real_limits")
def test_a_request_check_reads_up_to_requests_read_max_past_requests() -> None:
    old = NOW - timedelta(days=2)
    past = [PastRequest("l-1", LoanState.DECLINED, old)] * REQUESTS_READ_MAX
    require_may_request(past, lender_id="l-1", now=NOW)
    with pytest.raises(AssertionError):
        require_may_request([*past, past[0]], lender_id="l-1", now=NOW)


def test_a_code_with_every_try_used_is_void_even_if_still_stored() -> None:
    code = SmsCode(
        window_started_at=NOW,
        code_hash="hash",
        expires_at=NOW + RESET_CODE_TTL,
        attempts=RESET_CODE_ATTEMPTS_MAX - 1,
    )
    assert code.usable(NOW)
    code.attempts = RESET_CODE_ATTEMPTS_MAX
    assert not code.usable(NOW)


def unproven() -> User:
    return User("u-1", "254712345678", "Wanjiku", "sw", "hash", NOW)


def test_an_unproven_member_is_told_how_to_prove_their_number() -> None:
    with pytest.raises(PhoneNotProven) as caught:
        unproven().require_phone_proven()
    assert caught.value.code == "phone_not_proven"
    assert caught.value.message == (
        "Confirm your phone number first: Deni sends a code to it by SMS "
        "(or dial *383# from it and enter your PIN)."
    )


def test_the_other_party_hears_whose_number_is_unproven() -> None:
    with pytest.raises(PhoneNotProven) as caught:
        unproven().require_phone_proven(mine=False)
    assert caught.value.code == "other_party_not_proven"
    assert caught.value.message == (
        "Wanjiku has not confirmed their phone number yet, so they cannot lend or "
        "borrow on Deni until they do."
    )


def test_held_money_says_from_when_in_nairobi_time() -> None:
    user = unproven()
    user.reset_pin("new-hash", NOW)
    with pytest.raises(MoneyOnHold) as caught:
        user.require_money_may_leave(NOW)
    assert caught.value.message == (
        "Your PIN was reset: money can leave your wallet from 27 Nov 09:00, Nairobi time."
    )
    assert caught.value.until == NOW + timedelta(hours=24)


def test_a_right_pin_would_clear_the_wrong_ones_of_its_own_counter() -> None:
    user = unproven()
    user.record_wrong_pin(NOW, channel="ussd")
    for _ in range(2):
        user.record_wrong_pin(NOW, channel="api")
    user.record_wrong_pin(NOW, channel="api", in_session=True)
    assert user.wrong_pins_in_a_row("ussd") == 1
    assert user.wrong_pins_in_a_row("api") == 2
    assert user.wrong_pins_in_a_row("api", in_session=True) == 1


NAME_RULE = (
    "A name has 2 to 60 letters, starts with a letter, and may hold spaces, ' . - and up to "
    "4 digits."
)


@pytest.mark.parametrize(
    "name", ["Wanjiku", "N'gang'a Mũthoni", "Jean-Pierre O. Ch\u2019ege", "محمد", "Chama 2024"]
)
def test_names_of_every_script_and_a_few_digits_are_kept(name: str) -> None:
    assert require_name(f"  {name} ") == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (None, "Give your name."),
        ("A", NAME_RULE),
        ("A" * 61, NAME_RULE),
        ("Deni: call 0712345678", NAME_RULE),  # no phone number or colon in another's SMS
        ("Otieno 0712345678", NAME_RULE),
        ("see deni.example/pin", NAME_RULE),
        ("=HYPERLINK(1)", NAME_RULE),
        ("-Otieno", NAME_RULE),  # a formula in a spreadsheet
    ],
)
def test_a_bad_name_is_refused_in_plain_words(name: object, message: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        require_name(name)
    assert (caught.value.code, caught.value.message) == ("invalid_name", message)


def test_a_language_deni_does_not_speak_is_refused_in_plain_words() -> None:
    with pytest.raises(ValidationFailed) as caught:
        require_language("fr")
    assert (caught.value.code, caught.value.message) == (
        "invalid_language",
        "Language is en or sw.",
    )
