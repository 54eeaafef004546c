"""A stolen phone with a live session, or a stolen access token: no money leaves without the PIN.

The thief holds a bearer token and nothing else. Every command that sends wallet money out (a
withdrawal to M-PESA, a repayment, the settings that pay out to M-PESA on their own) and the
lender's write-off asks for the PIN over REST and over a sync push. Wrong PINs there count on
the in-session counter: the third locks in-session PINs and sign-in and ends every session, the
stolen token's included, while the owner's own SIM keeps working on USSD. A stranger's wrong
PINs at sign-in count apart and never stop the owner's live session.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from deni.domain.loans import Loan, LoanState
from deni.domain.security import (
    REMOTE_GUESS_WINDOW,
    REMOTE_LOCK_FIRST,
    REMOTE_WRONG_PINS_PER_DAY_MAX,
)
from deni.domain.users import User
from deni.services.mpesa.ports import MpesaPreferences
from tests.support.builders import lend
from tests.support.mpesa import PIN, World

GUESSES = ("0000", "1111", "9999")
SECOND = timedelta(seconds=1)


@dataclass
class Victim:
    user: User
    owes: Loan  # active, the victim borrowed it
    lent: Loan  # active, the victim lent it


def _victim(world: World) -> Victim:
    user, friend = world.user("Wanjiku Victim"), world.user("Otieno Friend")
    world.fund(user, 2_000_00)
    world.fund(friend, 2_000_00)
    owes = lend(world.deni, lender=friend, borrower=user, approve_with_pin=PIN)
    lent = lend(world.deni, lender=user, borrower=friend, approve_with_pin=PIN)
    assert owes.state is LoanState.ACTIVE
    assert lent.state is LoanState.ACTIVE
    return Victim(user, owes, lent)


def _books(world: World, victim: Victim) -> tuple[Any, ...]:
    """Everything a thief could move or change: wallet, requests, loans, preferences."""
    with world.deni.uow.read_only() as uow:
        requests = uow.mpesa_requests.in_states(states=[], limit=50, user_id=victim.user.id)
        loans = [uow.loans.get(victim.owes.id), uow.loans.get(victim.lent.id)]
        preferences = uow.mpesa_preferences.get(victim.user.id)
    owed = [(loan.state, loan.owed().total_cents) for loan in loans if loan is not None]
    return world.balance(victim.user), len(requests), owed, preferences


def _stored(world: World, user: User) -> User:
    with world.deni.uow.read_only() as uow:
        stored = uow.users.get(user.id)
    assert stored is not None
    return stored


def _failed_attempts(world: World, user: User) -> int:
    """Wrong PINs in a row on either remote counter, sign-in's or in-session's."""
    stored = _stored(world, user)
    return stored.remote_failed_pin_attempts + stored.session_failed_pin_attempts


def _sign_in(world: World, user: User, pin: str) -> httpx.Response:
    return world.http.post("/api/v1/auth/login", json={"phone": user.phone, "pin": pin})


def _rest(
    world: World, victim: Victim, action: str, pin: str | None, token: str | None = None
) -> httpx.Response:
    """One of the victim's commands over REST with only a token (the stolen one unless given),
    `pin` in the body (None: no PIN at all)."""
    loans = "/api/v1/loans"
    owes, lent = victim.owes.id, victim.lent.id
    method, path, body = {
        "withdraw": ("POST", "/api/v1/mpesa/withdrawals", {"amount_cents": 500_00}),
        "repay": ("POST", f"{loans}/{owes}/repay", {"amount_cents": 500_00}),
        "write_off": ("POST", f"{loans}/{lent}/write-off", {}),
        "preferences": ("PUT", "/api/v1/mpesa/preferences", {"auto_payout": True}),
    }[action]
    if pin is not None:
        body = {**body, "pin": pin}
    headers = world.headers(victim.user)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return world.http.request(method, path, json=body, headers=headers)


def _push(
    world: World, user: User, *mutations: tuple[str, dict[str, Any]], token: str | None = None
) -> list[Any]:
    """A sync push from a device of the thief's: one new client id, mutations 1, 2, ..."""
    answer = _push_raw(world, user, *mutations, token=token)
    assert answer.status_code == 200, answer.text
    return [(r["status"], r["code"]) for r in answer.json()["results"]]


def _push_raw(
    world: World, user: User, *mutations: tuple[str, dict[str, Any]], token: str | None = None
) -> httpx.Response:
    body = {
        "client_id": str(uuid.uuid4()),
        "schema_version": 1,
        "mutations": [
            {"id": i, "name": name, "args": args} for i, (name, args) in enumerate(mutations, 1)
        ],
    }
    headers = world.headers(user)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return world.http.post("/api/v1/sync/push", json=body, headers=headers)


def _sync_mutations(victim: Victim, pin: str | None) -> list[tuple[str, dict[str, Any]]]:
    with_pin = {} if pin is None else {"pin": pin}
    return [
        ("withdraw", {"amount_cents": 500_00, **with_pin}),
        ("repay_loan", {"loan_id": victim.owes.id, "amount_cents": 500_00, **with_pin}),
        ("set_preferences", {"auto_payout": True, **with_pin}),
    ]


def _ussd_withdraw(world: World, user: User, pin: str) -> str:
    """*383#, 5 Wallet, 2 Withdraw, KES 100, the PIN: the last screen."""
    session = f"ATUid_stolen_{uuid.uuid4().hex[:12]}"
    screen = ""
    for text in ("", "5", "5*2", "5*2*100", f"5*2*100*{pin}"):
        form = {"sessionId": session, "serviceCode": "*383#", "phoneNumber": "+" + user.phone}
        answer = world.http.post("/ussd", data={**form, "networkCode": "63902", "text": text})
        assert answer.status_code == 200, answer.text
        screen = answer.text
    return screen


def test_a_stolen_token_moves_no_money_over_rest_and_three_guesses_end_it(world: World) -> None:
    victim = _victim(world)
    thief = victim.user
    before = _books(world, victim)

    for action in ("withdraw", "repay", "write_off", "preferences"):
        answer = _rest(world, victim, action, pin=None)
        assert answer.status_code == 422, (action, answer.text)
        assert answer.json()["error"]["code"] == "validation_failed"
    assert _failed_attempts(world, thief) == 0  # no PIN is no guess

    guessed = [
        _rest(world, victim, action, pin=guess)
        for action, guess in zip(("withdraw", "repay", "write_off"), GUESSES, strict=True)
    ]
    assert [(a.status_code, a.json()["error"]["code"]) for a in guessed] == [
        (401, "wrong_pin"),
        (401, "wrong_pin_last_try"),  # "1 try left", said before the lock
        (423, "account_locked"),  # the third wrong PIN, whichever command it came with
    ]
    assert _books(world, victim) == before

    # The lock ended every session: the stolen token is dead everywhere, even with the right
    # PIN, and signing in again from the API waits out the lock.
    for action in ("withdraw", "repay", "write_off", "preferences"):
        answer = _rest(world, victim, action, pin=PIN)
        assert (answer.status_code, answer.json()["error"]["code"]) == (401, "session_ended")
    assert _push_raw(world, thief, *_sync_mutations(victim, PIN)).status_code == 401
    assert _sign_in(world, thief, PIN).status_code == 423
    assert _books(world, victim) == before

    # The owner, with the SIM, is never locked out by a stranger's guesses.
    assert "Too many wrong PINs" not in _ussd_withdraw(world, thief, PIN)
    world.clock.advance(REMOTE_LOCK_FIRST + SECOND)  # and signs in again later
    signed_in = _sign_in(world, thief, PIN)
    assert signed_in.status_code == 200, signed_in.text
    token = signed_in.json()["access_token"]
    answer = _rest(world, victim, "withdraw", pin=PIN, token=token)
    assert answer.status_code == 202, answer.text
    assert world.balance(thief) == before[0] - 100_00 - 500_00  # both held for their payouts
    assert _failed_attempts(world, thief) == 0


def test_a_stolen_token_moves_no_money_over_a_sync_push_and_guesses_are_capped(
    world: World,
) -> None:
    victim = _victim(world)
    thief = victim.user
    before = _books(world, victim)

    assert (
        _push(world, thief, *_sync_mutations(victim, pin=None))
        == [("dead_letter", "invalid_args")] * 3
    )
    assert _failed_attempts(world, thief) == 0
    guessed = [(name, {**args, "pin": guess}) for (name, args), guess in zip(
        _sync_mutations(victim, pin=None), GUESSES, strict=True
    )]  # fmt: skip
    assert _push(world, thief, *guessed) == [
        ("rejected", "wrong_pin"),
        ("rejected", "wrong_pin_last_try"),
        ("rejected", "account_locked"),
    ]
    assert _books(world, victim) == before
    answer = _rest(world, victim, "withdraw", pin=PIN)  # the lock ended the stolen session
    assert (answer.status_code, answer.json()["error"]["code"]) == (401, "session_ended")

    # After the first lock, three more wrong PINs use up the day's guesses: no sign-in from
    # the API, right PIN or not, until a day after the first guess.
    world.clock.advance(REMOTE_LOCK_FIRST + SECOND)
    token = _sign_in(world, thief, PIN).json()["access_token"]
    for guess in GUESSES:
        _rest(world, victim, "repay", pin=guess, token=token)
    world.clock.advance(2 * REMOTE_LOCK_FIRST + SECOND)
    assert _sign_in(world, thief, PIN).status_code == 423
    assert _books(world, victim) == before

    world.clock.advance(REMOTE_GUESS_WINDOW)  # a day later the owner signs in and syncs
    token = _sign_in(world, thief, PIN).json()["access_token"]
    assert (
        _push(world, thief, *_sync_mutations(victim, PIN), token=token) == [("applied", None)] * 3
    )
    balance, requests, owed, preferences = _books(world, victim)
    assert balance == before[0] - 500_00 - 500_00  # held for the payout, and repaid
    assert requests == before[1] + 1
    assert owed[0][1] == before[2][0][1] - 500_00
    assert preferences == MpesaPreferences(thief.id, True, True)


def test_the_right_pin_moves_the_money_and_is_no_part_of_the_request(world: World) -> None:
    victim = _victim(world)
    owner = victim.user
    headers = world.headers(owner)
    body = {"amount_cents": 300_00, "pin": PIN}
    first = world.http.post("/api/v1/mpesa/withdrawals", json=body, headers=headers)
    assert first.status_code == 202, first.text
    # The same Idempotency-Key with the PIN typed otherwise is the same request, answered as
    # before: the PIN is no part of what the key is checked against, so none is kept.
    again = world.http.post(
        "/api/v1/mpesa/withdrawals", json={**body, "pin": "0000"}, headers=headers
    )
    assert again.status_code == 202
    assert again.json() == first.json()
    assert world.balance(owner) == 2_000_00 + 1_000_00 - 1_000_00 - 300_00

    assert _rest(world, victim, "repay", pin=PIN).status_code == 200
    written_off = _rest(world, victim, "write_off", pin=PIN)
    assert written_off.json()["state"] == "written_off"
    prefs = _rest(world, victim, "preferences", pin=PIN)
    assert prefs.json() == {"disburse_to_mpesa": True, "auto_payout": True}
    with world.deni.uow.read_only() as uow:
        commands = [row.command for row in uow.audit.by_actor(owner.id, after_seq=0, limit=500)]
    assert "set_preferences" in commands
    assert "wrong_pin" not in commands


def _refreshed(world: World, session: dict[str, Any]) -> dict[str, Any]:
    answer = world.http.post(
        "/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_a_stranger_who_knows_only_the_number_cannot_lock_the_owners_session(
    world: World,
) -> None:
    """Day after day, someone types wrong PINs at sign-in with the owner's number until sign-in
    locks. The owner's own session still withdraws, changes settings, syncs and changes the PIN
    with the right PIN: the stranger's lock stops only sign-in."""
    victim = _victim(world)
    owner = victim.user
    signed_in = _sign_in(world, owner, PIN)
    assert signed_in.status_code == 200, signed_in.text
    session = dict(signed_in.json())
    before = world.balance(owner)
    for day in range(3):
        for guess in (*GUESSES, *GUESSES):  # as many as sign-in lets through, and more
            assert _sign_in(world, owner, guess).status_code != 200
        assert _stored(world, owner).remote_locked_until is not None
        assert _sign_in(world, owner, PIN).status_code == 423  # sign-in is what is locked

        session = _refreshed(world, session)  # the owner's phone keeps its session
        token = session["access_token"]
        withdrawn = _rest(world, victim, "withdraw", pin=PIN, token=token)
        assert withdrawn.status_code == 202, (day, withdrawn.text)
        preferences = _rest(world, victim, "preferences", pin=PIN, token=token)
        assert preferences.status_code == 200, (day, preferences.text)
        pushed = _push(
            world,
            owner,
            ("set_preferences", {"auto_payout": day % 2 == 0, "pin": PIN}),
            token=token,
        )
        assert pushed == [("applied", None)], day
        world.clock.advance(timedelta(days=1))
    assert world.balance(owner) == before - 3 * 500_00

    changed = world.http.post(
        "/api/v1/me/pin",
        json={"old_pin": PIN, "new_pin": "4826"},
        headers={
            "Authorization": f"Bearer {_refreshed(world, session)['access_token']}",
            "Idempotency-Key": str(uuid.uuid4()),
        },
    )
    assert changed.status_code in (200, 204), changed.text
    assert _stored(world, owner).session_wrong_pins_at == ()


def test_a_thief_in_a_session_is_still_capped_while_a_stranger_holds_sign_in_locked(
    world: World,
) -> None:
    """The stranger's sign-in lock does not open a door to the thief either: wrong PINs in the
    stolen session still lock after three, end the session, and count towards a daily cap."""
    victim = _victim(world)
    thief = victim.user
    before = _books(world, victim)
    for guess in GUESSES:
        _sign_in(world, thief, guess)
    assert _sign_in(world, thief, PIN).status_code == 423

    stolen = _stolen(world, thief)
    guessed = [_rest(world, victim, "withdraw", pin=guess, token=stolen) for guess in GUESSES]
    assert [a.status_code for a in guessed] == [401, 401, 423]
    ended = _rest(world, victim, "withdraw", pin=PIN, token=stolen)
    assert (ended.status_code, ended.json()["error"]["code"]) == (401, "session_ended")
    assert _books(world, victim) == before

    # Given a new stolen session after every lock, the thief still gets at most the day's cap.
    for step in range(30):
        world.clock.advance(REMOTE_LOCK_FIRST + SECOND)
        _rest(world, victim, "write_off", pin=f"{3000 + step:04d}", token=_stolen(world, thief))
    stored = _stored(world, thief)
    first = stored.session_wrong_pins_at[0]
    assert len(stored.session_wrong_pins_at) == REMOTE_WRONG_PINS_PER_DAY_MAX
    assert world.clock.now() - first < REMOTE_GUESS_WINDOW  # all of them inside one day
    assert stored.session_locked_until is not None
    assert stored.session_locked_until >= first + REMOTE_GUESS_WINDOW
    assert _books(world, victim) == before


def _stolen(world: World, user: User) -> str:
    """A live access token of the user's, as a thief would lift it from a phone."""
    epoch = _stored(world, user).session_epoch
    token, _ = world.deni.tokens.issue(user_id=user.id, now=world.clock.now(), session_epoch=epoch)
    return token
