"""Wrong PINs from channels that do not prove the SIM: their own counter, growing locks that
never touch USSD, and a hard cap on guesses in any 24 hours, played as an attacker who knows
only the phone number and guesses whenever Deni lets them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from deni.domain.security import (
    REMOTE_GUESS_WINDOW,
    REMOTE_LOCK_FIRST,
    REMOTE_WRONG_PINS_PER_DAY_MAX,
    remote_lock_period,
)
from deni.domain.users import User

NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
YEAR = timedelta(days=365)
# What docs/adr/0003 states: a stranger guessing non-stop gets at most this many in a year.
GUESSES_IN_A_YEAR_MAX = 1_107
GUESSES_PER_YEAR_LOOP_MAX = 10_000


def _user() -> User:
    return User("u-1", "254712345678", "Wanjiku", "sw", "hash", NOW)


def _guess_nonstop(user: User, *, start: datetime, span: timedelta) -> list[datetime]:
    """Every wrong remote PIN the attacker gets in, as early as each is allowed."""
    guesses: list[datetime] = []
    now = start
    for _ in range(GUESSES_PER_YEAR_LOOP_MAX):
        until = user.locked_until_for("api", now)
        if until is not None:
            now = until
        if now >= start + span:
            return guesses
        user.record_wrong_pin(now, channel="api")
        guesses.append(now)
    raise AssertionError("more guesses than the loop bound: the cap does not hold")


def test_remote_wrong_pins_never_lock_ussd() -> None:
    user = _user()
    for _ in range(3):
        user.record_wrong_pin(NOW, channel="api")
    assert user.locked_until_for("api", NOW) == NOW + REMOTE_LOCK_FIRST
    assert user.locked_until_for("sync", NOW) == NOW + REMOTE_LOCK_FIRST
    assert user.locked_until_for("ussd", NOW) is None
    assert (user.failed_pin_attempts, user.lock_count) == (0, 0)


def test_a_ussd_lock_stops_every_channel() -> None:
    """Wrong PINs on USSD come from whoever holds the SIM: that is today's lock, everywhere."""
    user = _user()
    for _ in range(3):
        user.record_wrong_pin(NOW, channel="ussd")
    assert user.locked_until_for("ussd", NOW) is not None
    assert user.locked_until_for("api", NOW) == user.locked_until
    assert user.remote_lock_count == 0


def test_remote_locks_grow_from_fifteen_minutes_to_a_day() -> None:
    assert [remote_lock_period(n) for n in (1, 2, 3)] == [
        timedelta(minutes=15),
        timedelta(minutes=30),
        timedelta(hours=1),
    ]
    assert remote_lock_period(8) == timedelta(hours=24)
    assert remote_lock_period(1_000) == timedelta(hours=24)


def test_no_24_hours_ever_hold_more_than_the_cap_of_wrong_remote_pins() -> None:
    guesses = _guess_nonstop(_user(), start=NOW, span=YEAR)
    assert guesses
    cap = REMOTE_WRONG_PINS_PER_DAY_MAX
    for i in range(len(guesses) - cap):
        # The guess after any `cap` of them comes a full window after the first of them.
        assert guesses[i + cap] - guesses[i] >= REMOTE_GUESS_WINDOW
    first_day = [g for g in guesses if g - NOW < timedelta(hours=24)]
    assert len(first_day) == cap


def test_a_stranger_guessing_nonstop_for_a_year_gets_about_a_thousand_guesses() -> None:
    """The figure docs/adr/0003 gives: 1,107 of 10,000 PINs a year, about 11%."""
    guesses = _guess_nonstop(_user(), start=NOW, span=YEAR)
    assert len(guesses) == GUESSES_IN_A_YEAR_MAX
    # Were the owner to sign in between every three of them, the cap alone would bound it:
    # 6 a day, 2,190 a year (docs/adr/0003 gives both figures).


def test_the_owners_right_pins_do_not_reopen_the_cap() -> None:
    """The owner signing in between the attacker's guesses clears the in-a-row count, but the
    day's wrong guesses stay counted: the cap still holds."""
    user = _user()
    now = NOW
    wrong = 0
    for _ in range(20):
        if user.locked_until_for("api", now) is not None:
            break
        user.record_wrong_pin(now, channel="api")
        wrong += 1
        user.record_right_pin(channel="api")  # the owner, in the app
        now += timedelta(minutes=1)
    assert wrong == REMOTE_WRONG_PINS_PER_DAY_MAX
    assert user.locked_until_for("api", now) == NOW + REMOTE_GUESS_WINDOW


def test_a_reset_by_the_sim_holder_opens_remote_sign_in_and_forgets_the_guesses() -> None:
    user = _user()
    for _ in range(REMOTE_WRONG_PINS_PER_DAY_MAX):
        if user.locked_until_for("api", NOW) is None:
            user.record_wrong_pin(NOW, channel="api")
    user.reset_pin("new-hash", NOW)
    assert user.locked_until_for("api", NOW) is None
    assert user.remote_wrong_pins_at == ()
    assert user.remote_lock_count >= 1  # the history stays


# --- sign-in and in-session counted apart ------------------------------------------------------
# What docs/adr/0003 states for a thief who also holds a live session at every moment (a new
# stolen one after every lock): the two counters together.
COMBINED_GUESSES_IN_A_YEAR_MAX = 2 * GUESSES_IN_A_YEAR_MAX
COMBINED_GUESSES_WITH_THE_OWNER_IN_A_YEAR_MAX = 2 * 2_190


def test_a_strangers_sign_in_lock_never_stops_a_pin_typed_in_the_owners_session() -> None:
    user = _user()
    for _ in range(3):
        user.record_wrong_pin(NOW, channel="api")
    assert user.locked_until_for("api", NOW) == NOW + REMOTE_LOCK_FIRST  # sign-in
    assert user.locked_until_for("api", NOW, in_session=True) is None
    assert user.locked_until_for("sync", NOW, in_session=True) is None
    assert user.session_wrong_pins_at == ()


def test_a_lock_earned_in_a_session_stops_the_session_and_sign_in_but_not_ussd() -> None:
    user = _user()
    locked = [user.record_wrong_pin(NOW, channel="api", in_session=True) for _ in range(3)]
    assert locked == [False, False, True]
    assert user.locked_until_for("api", NOW, in_session=True) == NOW + REMOTE_LOCK_FIRST
    assert user.locked_until_for("api", NOW) == NOW + REMOTE_LOCK_FIRST  # sign-in too
    assert user.locked_until_for("ussd", NOW) is None
    assert user.remote_wrong_pins_at == ()


def _guess_on_both_nonstop(user: User, *, owner_between: bool) -> dict[bool, int]:
    """A stranger at sign-in and a thief in a session, each guessing as soon as allowed; with
    `owner_between`, the owner's right PIN of the same kind after every guess not locked."""
    counts = {False: 0, True: 0}
    now = NOW
    for _ in range(2 * GUESSES_PER_YEAR_LOOP_MAX):
        when = [(user.locked_until_for("api", now, in_session=s) or now, s) for s in (False, True)]
        now, in_session = min(when)
        if now >= NOW + YEAR:
            return counts
        user.record_wrong_pin(now, channel="api", in_session=in_session)
        counts[in_session] += 1
        if owner_between and user.locked_until_for("api", now, in_session=in_session) is None:
            user.record_right_pin(channel="api", in_session=in_session)
    raise AssertionError("more guesses than the loop bound: the caps do not hold")


def test_a_thief_with_a_session_and_the_number_gets_the_two_caps_and_no_more() -> None:
    alone = _guess_on_both_nonstop(_user(), owner_between=False)
    assert alone == {False: GUESSES_IN_A_YEAR_MAX, True: GUESSES_IN_A_YEAR_MAX}
    assert sum(alone.values()) == COMBINED_GUESSES_IN_A_YEAR_MAX
    helped = _guess_on_both_nonstop(_user(), owner_between=True)
    assert sum(helped.values()) == COMBINED_GUESSES_WITH_THE_OWNER_IN_A_YEAR_MAX


def test_a_reset_forgets_the_session_guesses_too() -> None:
    user = _user()
    for _ in range(3):
        user.record_wrong_pin(NOW, channel="api", in_session=True)
    user.reset_pin("new-hash", NOW)
    assert user.locked_until_for("api", NOW) is None
    assert user.session_wrong_pins_at == ()
    assert user.session_lock_count == 1
