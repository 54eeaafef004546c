"""Attacks on the staff console that its other tests do not make: concurrent sign-ins
against the lockout and the one-time code, odd characters in every kind of input, and the
timing of a refused sign-in."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from deni.adapters.security import PepperedArgon2PinHasher
from deni.bootstrap import Deni, bootstrap
from deni.config import Settings
from deni.domain import totp
from deni.domain.operators import SIGN_IN_FAILURES_MAX, Role, SignInFailed
from deni.domain.users import nairobi_today
from deni.services import users
from deni.services.ops import operators, proposals
from tests.fakes import ManualClock
from tests.fakes.clock import START
from tests.ops.conftest import PASSWORD, Staff
from tests.support.builders import register

MakeStaff = Callable[[str, Role], Staff]

RACE_WAIT_S = 1.0


class RacingHasher:
    """The real hasher, but every `verify` waits for the others (up to RACE_WAIT_S): each
    sign-in has read the operator's row before any of them writes it back, unless the reads
    queue on a lock, in which case the wait simply runs out."""

    def __init__(self, inner: PepperedArgon2PinHasher, parties: int) -> None:
        self._inner = inner
        self._barrier = threading.Barrier(parties)

    def hash(self, pin: str) -> str:
        return self._inner.hash(pin)

    def verify(self, pin: str, hashed: str) -> bool:
        with contextlib.suppress(threading.BrokenBarrierError):
            self._barrier.wait(timeout=RACE_WAIT_S)
        return self._inner.verify(pin, hashed)

    def needs_rehash(self, hashed: str) -> bool:
        return self._inner.needs_rehash(hashed)


@pytest.fixture
def racing(
    settings: Settings, hasher: PepperedArgon2PinHasher
) -> Iterator[tuple[Deni, ManualClock]]:
    clock = ManualClock(START)
    wired = bootstrap(
        settings,
        clock=clock,
        hasher=RacingHasher(hasher, SIGN_IN_FAILURES_MAX),
    )
    yield wired, clock
    wired.close()


def _all_at_once(count: int, attempt: object) -> list[object]:
    results: list[object] = []

    def run() -> None:
        try:
            results.append(attempt())  # type: ignore[operator]
        except SignInFailed as error:
            results.append(error)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_wrong_sign_ins_sent_at_once_still_lock_the_operator(
    racing: tuple[Deni, ManualClock],
) -> None:
    deni, clock = racing
    operators.add_operator(
        deni, username="amina", name="Amina", role=Role.FINANCE, password=PASSWORD
    )
    clock.advance(timedelta(minutes=1))

    def guess() -> object:
        return operators.sign_in(deni, username="amina", password=PASSWORD, code="000000")

    _all_at_once(SIGN_IN_FAILURES_MAX, guess)
    with deni.uow.read_only() as uow:
        amina = uow.operators.get_by_username("amina")
    assert amina is not None
    assert amina.is_locked(clock.now()), "every wrong try counts, however they are timed"


def test_one_code_sent_twice_at_once_opens_one_session(racing: tuple[Deni, ManualClock]) -> None:
    deni, clock = racing
    new = operators.add_operator(
        deni, username="amina", name="Amina", role=Role.FINANCE, password=PASSWORD
    )
    clock.advance(timedelta(minutes=1))
    code = totp.code_at(new.totp_seed, clock.now())

    def replay() -> object:
        return operators.sign_in(deni, username="amina", password=PASSWORD, code=code)

    results = _all_at_once(2, replay)
    assert sum(isinstance(r, tuple) for r in results) == 1, results


NUL_GETS = [
    "/ops/members/%00",
    "/ops/members/{member}%00",
    "/ops/loans/%00",
    "/ops/search?q=%00",
    "/ops/search?q=DN%00",
    "/ops/reports/arrears.csv?day=%00",
]
NUL_POSTS = [
    ("/ops/proposals/%00/approve", {}),
    ("/ops/proposals/%00/reject", {"reason": "not this one"}),
    ("/ops/dead-letters/%00/retry", {}),
    ("/ops/members/%00/lock", {}),
    ("/ops/proposals", {"kind": "unlock_member", "target": "{member}", "reason": "seen\x00ID"}),
    (
        "/ops/proposals",
        {"kind": "unlock_member", "target": "{member}", "reason": "seen ID", "\x00": ""},
    ),
]


def test_nul_characters_anywhere_are_refused_not_a_500(deni: Deni, staff: MakeStaff) -> None:
    """PostgreSQL refuses a string holding NUL: each of these was a 500 there."""
    member = register(deni, name="Akinyi")
    users.set_support_lock(deni, phone=member.phone, locked=True)
    admin = staff("amina", Role.ADMIN)
    for path in NUL_GETS:
        answer = admin.client.get(path.format(member=member.id), follow_redirects=False)
        assert answer.status_code == 400, (path, answer.status_code)
        assert "invalid_characters" in answer.text
    for path, fields in NUL_POSTS:
        filled = {name: value.format(member=member.id) for name, value in fields.items()}
        posted = admin.client.post(
            path, data={"csrf": admin.csrf(), **filled}, follow_redirects=False
        )
        assert posted.status_code == 400, (path, fields, posted.status_code)
        assert "invalid_characters" in posted.text
    assert proposals.list_proposals(deni) == []


def test_a_report_of_a_day_out_of_range_is_refused_not_a_500(
    staff: MakeStaff, clock: ManualClock
) -> None:
    """Year 1 and year 9999 overflowed the day's window (a 500); reports start in 2000 and
    end today (Nairobi)."""
    finance = staff("fatma", Role.FINANCE)
    tomorrow = (nairobi_today(clock.now()) + timedelta(days=1)).isoformat()
    for report in ("trial-balance", "loan-book", "arrears", "mpesa-recon"):
        for day in ("0001-01-01", "1999-12-31", "9999-12-31", tomorrow):
            answer = finance.client.get(f"/ops/reports/{report}.csv", params={"day": day})
            assert answer.status_code == 400, (report, day, answer.text[:200])
            assert "invalid_day" in answer.text
        assert (
            finance.client.get(
                f"/ops/reports/{report}.csv", params={"day": "2000-01-01"}
            ).status_code
            == 200
        )


def test_an_approver_can_open_what_a_proposal_acts_on(deni: Deni, staff: MakeStaff) -> None:
    """The second pair of eyes sees more than an id and the proposer's own words."""
    member = register(deni, name="Akinyi")
    users.set_support_lock(deni, phone=member.phone, locked=True)
    amina, baraka = staff("amina", Role.SUPPORT), staff("baraka", Role.SUPPORT)
    fields = {"kind": "unlock_member", "target": member.id, "reason": "seen ID at the shop"}
    assert (
        amina.client.post(
            "/ops/proposals", data={"csrf": amina.csrf(), **fields}, follow_redirects=False
        ).status_code
        == 303
    )
    assert f'href="/ops/members/{member.id}"' in baraka.client.get("/ops/proposals").text
