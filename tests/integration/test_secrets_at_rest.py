"""Secrets at rest, tested as the attacker who copies the database and the session store.

The same journeys on every channel (API: register, log in, approve with a PIN, change the PIN,
reset a forgotten one with an SMS code; USSD: register, ask, approve with a PIN, change the
PIN; sync: an approval carrying a PIN, and dead letters carrying one) run twice with
everything equal but the PINs and the code. Then every column of every table and every value
of the session store is compared: only argon2 hashes and values keyed with a server secret
may differ, and no stored string shows a PIN or code of its run. The attacks themselves
follow: brute force of an idempotency fingerprint, a USSD session read mid-flow, the SMS
outbox read after delivery.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import os
import random
import re
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select, text
from tests.fakes import ManualClock
from tests.fakes.clock import START
from tests.support.api import request_loan
from tests.support.builders import api_user, fund, next_phone, registration_code, shows_number
from tests.support.ussd import Phone

import deni.adapters.db.mpesa.tables
import deni.adapters.db.sync.tables
import deni.adapters.db.ussd_tables  # noqa: F401 (their tables join the shared metadata)
from deni import ids
from deni.adapters.db import tables, ussd_tables
from deni.adapters.db.tables import metadata
from deni.adapters.security import PepperedArgon2PinHasher
from deni.adapters.sessions import REDIS_PREFIX
from deni.adapters.sms import SECRET_READABLE_FOR, DatabaseSmsOutbox
from deni.bootstrap import Deni, bootstrap, database_engine
from deni.bootstrap.housekeeping import Housekeeper
from deni.config import Settings
from deni.entrypoints.api.app import create_app
from deni.entrypoints.api.idempotency import request_fingerprint
from deni.entrypoints.api.schemas import ApproveIn
from deni.entrypoints.ussd.engine import resume_key, session_key
from deni.services.mpesa import payments

REDIS_URL = os.environ.get("DENI_TEST_REDIS_URL")
REDIS = pytest.param(
    "redis",
    marks=pytest.mark.skipif(not REDIS_URL, reason="DENI_TEST_REDIS_URL is not set"),
)
API = "/api/v1"
LENDER_FUNDS_CENTS = 500_000
# Values that may differ between the two runs, and why. Everything else must be equal.
KEYED_OR_HASHED = {
    "users.pin_hash": "argon2id of an HMAC under the pepper (a random salt each time)",
    "phone_codes.code_hash": "HMAC-SHA256 under the pepper, bound to the number",
    "sms_outbox.sealed_body": "Fernet under a subkey of the pepper, for the fake handset; "
    "dropped once it may no longer read it",
    "ussd_sessions.value.last_text_mac": "HMAC-SHA256 under a subkey of the pepper",
    "redis.s.last_text_mac": "HMAC-SHA256 under a subkey of the pepper",
}
# A stored value that is a whole digest or token is not searched for digits: a hex HMAC
# shows some four-digit run now and then, and that is no PIN.
_DIGEST = re.compile(r"[0-9a-f]{64}|\$argon2id\$.*|gAAAAA[A-Za-z0-9_=-]+")


@dataclass(frozen=True)
class Secrets:
    """What differs between the two runs. Digits chosen not to stand alone in anything else
    stored (years, minutes, amounts)."""

    alice_pin: str  # API lender
    alice_new_pin: str
    bob_pin: str  # API borrower, who forgets his
    bob_reset_code: str
    bob_new_pin: str
    carol_pin: str  # USSD lender
    carol_new_pin: str
    dan_pin: str  # USSD borrower

    def all(self) -> list[str]:
        return [str(v) for v in vars(self).values()]


RUN_A = Secrets("3817", "4928", "5039", "613572", "7150", "8261", "9372", "4083")
RUN_B = Secrets("6194", "7305", "8416", "952783", "3527", "4638", "5749", "3860")


@dataclass(frozen=True)
class Cast:
    """Everything the two runs share: phones, keys, session ids (fresh per test, so a Redis
    store shared with earlier tests holds nothing of theirs)."""

    tag: str
    alice: str
    bob: str
    carol: str
    dan: str

    @classmethod
    def fresh(cls) -> Cast:
        return cls(uuid.uuid4().hex[:8], next_phone(), next_phone(), next_phone(), next_phone())

    def session(self, name: str) -> str:
        return f"ATUid_secrets_{self.tag}_{name}"

    @property
    def source(self) -> str:
        """The test client's address: pin reset asks are counted per source."""
        return f"secrets-{self.tag}"

    def uuid(self, name: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.tag}/{name}"))


# --- the same "random" values in both runs ------------------------------------------------


class _Seeded:
    """Stands in for the `secrets` module where services draw tokens and loan codes, so both
    runs draw the same; a code by SMS (a reset, a number's proof) is the run's own."""

    def __init__(self, seed: int, code: str) -> None:
        self._random = random.Random(seed)
        self._code = code

    def choice(self, sequence: str) -> str:
        return self._random.choice(sequence)

    def token_urlsafe(self, nbytes: int = 32) -> str:
        return base64.urlsafe_b64encode(self._random.randbytes(nbytes)).rstrip(b"=").decode()

    def randbelow(self, upper: int) -> int:
        assert int(self._code) < upper
        return int(self._code)


def _deterministic(monkeypatch: pytest.MonkeyPatch, secrets: Secrets) -> None:
    counter = itertools.count(1)

    def new_id() -> str:
        return str(uuid.UUID(int=next(counter)))

    real = ids.new_id
    for module in list(sys.modules.values()):
        name = getattr(module, "__name__", "")
        if name.startswith("deni.") and getattr(module, "new_id", None) is real:
            monkeypatch.setattr(module, "new_id", new_id)
    seeded = _Seeded(7, secrets.bob_reset_code)
    modules = ("users", "loans", "pin_reset", "phone_proof")
    for name in (f"deni.services.{module}" for module in modules):
        monkeypatch.setattr(f"{name}.secrets", seeded)


# --- the journeys -------------------------------------------------------------------------


def _post(client: TestClient, path: str, body: object, **headers: str) -> dict[str, Any]:
    response = client.post(API + path, json=body, headers=headers)
    assert response.status_code < 300, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _bearer(client: TestClient, phone: str, pin: str) -> dict[str, str]:
    session = _post(client, "/auth/login", {"phone": phone, "pin": pin})
    return {"Authorization": f"Bearer {session['access_token']}"}


def _fund(deni: Deni, user_id: str, receipt: str) -> None:
    payments.record_mpesa_payment(
        deni,
        user_id=user_id,
        amount_cents=LENDER_FUNDS_CENTS,
        receipt=receipt,
    )


def _key(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


def _register(client: TestClient, phone: str, name: str, pin: str, code: str) -> str:
    _post(client, "/auth/register/code", {"phone": phone})
    body = {"phone": phone, "name": name, "pin": pin, "language": "en", "code": code}
    return str(_post(client, "/auth/register", body, **_key(f"reg-{phone}"))["id"])


def _api_journeys(client: TestClient, deni: Deni, cast: Cast, s: Secrets) -> None:
    code = s.bob_reset_code  # every code by SMS of a run is that run's own code
    _fund(deni, _register(client, cast.alice, "Alice Api", s.alice_pin, code), "SECR000001")
    _register(client, cast.bob, "Bob Api", s.bob_pin, code)
    alice = _bearer(client, cast.alice, s.alice_pin)
    bob = _bearer(client, cast.bob, s.bob_pin)
    loan_id = cast.uuid("loan-1")
    ask = {"lender_phone": cast.alice, "principal_cents": 100_000, "term_days": 14}
    _post(client, "/loans", {**ask, "loan_id": loan_id}, **bob, **_key("ask-1"))
    _post(client, f"/loans/{loan_id}/approve", {"pin": s.alice_pin}, **alice, **_key("ok-1"))
    change = {"old_pin": s.alice_pin, "new_pin": s.alice_new_pin}
    _post(client, "/me/pin", change, **alice, **_key("pin-1"))
    # Bob forgot his PIN: a code by SMS, then a new PIN.
    _post(client, "/auth/pin-reset", {"phone": cast.bob})
    assert isinstance(deni.sms, DatabaseSmsOutbox)
    texts = [m.body for m in deni.sms.messages(phone="254" + cast.bob[1:])]
    assert len(texts) == 2  # the sign-up code, then the reset code
    assert all(shows_number(s.bob_reset_code, text) for text in texts)  # the handset reads it
    confirm = {"phone": cast.bob, "code": s.bob_reset_code, "new_pin": s.bob_new_pin}
    _post(client, "/auth/pin-reset/confirm", confirm)


def _sync_journeys(client: TestClient, cast: Cast, s: Secrets) -> None:
    """Bob asks again; Alice approves from her offline app, re-sends after losing the answer,
    and two malformed mutations carrying her PIN become dead letters."""
    bob = _bearer(client, cast.bob, s.bob_new_pin)
    alice = _bearer(client, cast.alice, s.alice_new_pin)
    loan_id = cast.uuid("loan-2")
    ask = {"lender_phone": cast.alice, "principal_cents": 50_000, "term_days": 7}
    _post(client, "/loans", {**ask, "loan_id": loan_id}, **bob, **_key("ask-2"))
    pin = s.alice_new_pin
    mutations = [
        {"id": 1, "name": "approve_loan", "args": {"loan_id": loan_id, "pin": pin}},
        {"id": 2, "name": "approve_loan", "args": {"loan_id": loan_id, "pin": pin, "x": 1}},
        {"id": 3, "name": "approve_by_proxy", "args": {"who": {"pin": pin}, "codes": [pin]}},
    ]
    push = {"client_id": cast.uuid("device"), "schema_version": 1, "mutations": mutations}
    first = _post(client, "/sync/push", push, **alice)
    assert [r["status"] for r in first["results"]] == ["applied", "dead_letter", "dead_letter"]
    again = _post(client, "/sync/push", push, **alice)  # the answer was lost: the same again
    assert all(r["replayed"] for r in again["results"])


def _ussd_journeys(client: TestClient, deni: Deni, cast: Cast, s: Secrets) -> None:
    carol, dan = Phone(client, cast.carol), Phone(client, cast.dan)
    carol.dial(cast.session("carol-reg"))
    assert "registered" in carol.send("1", "Carol Ussd", s.carol_pin, s.carol_pin)
    dan.dial(cast.session("dan-reg"))
    assert "registered" in dan.send("1", "Dan Ussd", s.dan_pin, s.dan_pin)
    with deni.uow.read_only() as uow:
        carol_user = uow.users.get_by_phone(carol.msisdn)
    assert carol_user is not None
    _fund(deni, carol_user.id, "SECR000002")
    dan.dial(cast.session("dan-ask"))
    assert "Request sent" in dan.send("1", carol.number, "1000", "30", "0", s.dan_pin)
    carol.dial(cast.session("carol-approve"))
    assert "Approved" in carol.send("4", "1", "1", s.carol_pin)
    carol.dial(cast.session("carol-pin"))
    carol.send("7", "1", s.carol_pin, s.carol_new_pin, s.carol_new_pin)
    assert "PIN is changed" in carol.last


# --- what an attacker copies ---------------------------------------------------------------

Dump = dict[str, list[dict[str, object]]]


def _plain(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _dump_tables(engine: Engine) -> Dump:
    dump: Dump = {}
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            order = list(table.primary_key.columns) or list(table.columns)
            rows = connection.execute(select(table).order_by(*order)).mappings().all()
            dump[table.name] = [{k: _plain(v) for k, v in row.items()} for row in rows]
    if "sync_changes" in dump:  # PostgreSQL's transaction ids: only their order means anything
        ranks = {x: n for n, x in enumerate(sorted({r["xid"] for r in dump["sync_changes"]}))}
        for row in dump["sync_changes"]:
            row["xid"] = ranks[row["xid"]]
    return dump


def _redis_values(cast: Cast) -> dict[str, str]:
    """This test's keys in the Redis store (its phones, sessions and source), by key."""
    assert REDIS_URL is not None
    client = redis.Redis.from_url(REDIS_URL)
    try:
        found = {}
        markers = (cast.tag, *(p[1:] for p in (cast.alice, cast.bob, cast.carol, cast.dan)))
        for raw_key in client.scan_iter(match=REDIS_PREFIX + "*", count=1_000):
            key = raw_key.decode()
            if any(marker in key for marker in markers):
                raw = client.get(raw_key)
                if raw is not None:
                    found[key.removeprefix(REDIS_PREFIX)] = raw.decode()
        return found
    finally:
        client.close()


def _forget_redis(cast: Cast) -> None:
    assert REDIS_URL is not None
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = [REDIS_PREFIX + k for k in _redis_values(cast)]
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _dump_redis(cast: Cast) -> Dump:
    """The store's values as rows: the key, its kind ("s" session, "r" resume snapshot, "h"
    hop count, "pin-reset-asks"), the value without its expiry prefix."""
    rows = []
    for key, raw in sorted(_redis_values(cast).items()):
        _, _, value = raw.partition("|")
        rows.append({"key": key, "kind": key.split(":", 1)[0], "value": value})
    return {"redis": rows}


def _leaves(value: object, path: str) -> Iterator[tuple[str, object]]:
    """(path, leaf) of JSON data; a string holding JSON is read as JSON."""
    if isinstance(value, str) and value.startswith(("{", "[")):
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _leaves(v, f"{path}.{k}")
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v, path)
    else:
        yield path, value


def _flatten(dump: Dump) -> dict[str, list[object]]:
    """Every stored value, by table.column (and the path inside JSON), in row order. A
    session store value is named by its kind of key: "redis.s" is a session."""
    flat: dict[str, list[object]] = {}
    for table, rows in dump.items():
        for row in rows:
            for column, value in row.items():
                path = f"{table}.{column}"
                if table == "redis" and column == "value":
                    path = f"redis.{row['kind']}"
                for leaf_path, leaf in _leaves(value, path):
                    flat.setdefault(leaf_path, []).append(leaf)
    return flat


def _differing(a: Dump, b: Dump) -> set[str]:
    for table in a:
        assert len(a[table]) == len(b[table]), f"{table}: {len(a[table])} vs {len(b[table])} rows"
    flat_a, flat_b = _flatten(a), _flatten(b)
    assert flat_a.keys() == flat_b.keys()
    return {path for path in flat_a if flat_a[path] != flat_b[path]}


def _clear_leaks(dump: Dump, secrets: Secrets) -> list[str]:
    """Where a PIN or code of this run stands as a number in a stored value."""
    leaks = []
    for path, values in _flatten(dump).items():
        for value in values:
            shown = str(value)
            if value is None or _DIGEST.fullmatch(shown):
                continue
            leaks += [f"{path}: {shown!r}" for s in secrets.all() if shows_number(s, shown)]
    return leaks


# --- two runs ------------------------------------------------------------------------------


def _reset(engine: Engine, initial: Mapping[str, list[dict[str, Any]]]) -> None:
    """Back to the freshly migrated database (sequences too), for the second run."""
    every_table = list(metadata.sorted_tables)
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            names = ", ".join(t.name for t in every_table)
            connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(every_table):
                connection.execute(table.delete())
        for table in every_table:
            if initial[table.name]:
                connection.execute(insert(table), initial[table.name])


def _raw_rows(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    with engine.connect() as connection:
        return {
            t.name: [dict(r) for r in connection.execute(select(t)).mappings().all()]
            for t in metadata.sorted_tables
        }


def _run(
    settings: Settings,
    hasher: PepperedArgon2PinHasher,
    cast: Cast,
    secrets: Secrets,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Dump, Dump]:
    """The journeys; what is stored right after them, and once housekeeping has run past the
    fake handset's reading window."""
    clock = ManualClock(START)
    deni = bootstrap(settings, clock=clock, hasher=hasher)
    try:
        with monkeypatch.context() as patched:
            _deterministic(patched, secrets)
            app = create_app(deni)
            with TestClient(app, raise_server_exceptions=False, client=(cast.source, 5)) as client:
                _api_journeys(client, deni, cast, secrets)
                _sync_journeys(client, cast, secrets)
                _ussd_journeys(client, deni, cast, secrets)
            redis_on = settings.session_store == "redis"
            after_journeys = _dump_tables(database_engine(deni)) | (
                _dump_redis(cast) if redis_on else {}
            )
            clock.advance(SECRET_READABLE_FOR + timedelta(minutes=1))
            assert Housekeeper(deni, interval_s=60).run_once() is not None
            after_housekeeping = _dump_tables(database_engine(deni))
    finally:
        deni.close()
    return after_journeys, after_housekeeping


@pytest.mark.parametrize("store_kind", ["sql", REDIS])
def test_two_runs_differing_only_in_pins_and_codes_store_only_keyed_values_differently(
    store_kind: str,
    settings: Settings,
    hasher: PepperedArgon2PinHasher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings.model_copy(
        update={"session_store": store_kind, "redis_url": REDIS_URL or ""}
    )
    cast = Cast.fresh()
    deni = bootstrap(settings)
    initial = _raw_rows(database_engine(deni))
    deni.close()
    try:
        a_stored, a_kept = _run(settings, hasher, cast, RUN_A, monkeypatch)
        deni = bootstrap(settings)
        _reset(database_engine(deni), initial)
        deni.close()
        if store_kind == "redis":
            _forget_redis(cast)
        b_stored, b_kept = _run(settings, hasher, cast, RUN_B, monkeypatch)
    finally:
        if store_kind == "redis":
            _forget_redis(cast)

    allowed = set(KEYED_OR_HASHED)
    assert _differing(a_stored, b_stored) <= allowed
    assert _differing(a_kept, b_kept) <= allowed - {"sms_outbox.sealed_body"}
    # The runs did differ where secrets go: PIN hashes, and the digest of what was typed.
    typed = {"redis": "redis.s.last_text_mac", "sql": "ussd_sessions.value.last_text_mac"}
    assert {"users.pin_hash", typed[store_kind]} <= _differing(a_stored, b_stored)
    for stored, secrets in ((a_stored, RUN_A), (a_kept, RUN_A), (b_stored, RUN_B), (b_kept, RUN_B)):
        assert _clear_leaks(stored, secrets) == []
    # What was stored is what the journeys made: the idempotency keys, a dead letter's masked
    # PIN, the outbox's masked code, a session per dial.
    assert len(a_stored["idempotency_keys"]) == 6
    dead = [json.loads(str(r["args"])) for r in a_stored["sync_dead_letters"]]
    assert dead[0]["pin"] == "***"
    assert dead[1] == {"who": {"pin": "***"}, "codes": "***"}
    codes_sent = a_kept["sms_outbox"]
    assert len(codes_sent) == 3  # two sign-up codes and a reset code
    for sms in codes_sent:
        assert "******" in str(sms["body"])
        assert sms["sealed_body"] is None
    if store_kind == "sql":
        assert len(a_stored["ussd_sessions"]) >= 5
    else:
        assert sum(1 for r in a_stored["redis"] if r["kind"] == "s") == 5


# --- the attacks ---------------------------------------------------------------------------

ALL_PINS = [f"{n:04d}" for n in range(10_000)]


def _stored_fingerprint(deni: Deni, scope: str, key: str) -> str:
    k = tables.idempotency_keys
    with database_engine(deni).connect() as connection:
        found = connection.execute(
            select(k.c.request_hash).where(k.c.scope == scope, k.c.key == key)
        ).scalar_one()
    return str(found)


def _unkeyed_guesses(route: str, body: Mapping[str, object]) -> Iterator[str]:
    """What an attacker tries for one PIN: the route and the body as Deni used to spell them,
    and the usual canonical spellings, under SHA-256."""
    for spelling in (
        json.dumps(body, separators=(",", ":")),
        json.dumps(body, sort_keys=True, separators=(",", ":")),
        json.dumps(body),
    ):
        for payload in (f"{route}\n{spelling}", spelling):
            yield hashlib.sha256(payload.encode()).hexdigest()


def test_brute_forcing_a_stored_idempotency_fingerprint_finds_no_pin(
    client: TestClient, deni: Deni
) -> None:
    lender, borrower = api_user(client, deni, pin="3817"), api_user(client, deni, pin="5039")
    fund(deni, lender.user, 500_000)
    loan = request_loan(client, borrower, lender)
    headers = {**lender.headers, "Idempotency-Key": "approve-once"}
    approved = client.post(
        f"{API}/loans/{loan['id']}/approve", json={"pin": "3817"}, headers=headers
    )
    assert approved.status_code == 200, approved.text
    stored = _stored_fingerprint(deni, lender.user.id, "approve-once")
    route = f"approve:{loan['id']}"

    found = [pin for pin in ALL_PINS if stored in set(_unkeyed_guesses(route, {"pin": pin}))]

    assert found == []
    # Not even the server's own key finds it: the PIN is not in the fingerprint at all.
    pepper = deni.settings.pin_pepper
    assert {request_fingerprint(pepper, route, ApproveIn(pin=pin)) for pin in ALL_PINS} == {stored}
    # A registration's fingerprint holds no PIN either (its body has the phone and name).
    phone = next_phone()
    body = {"phone": phone, "name": "Brute Force", "pin": "6194", "language": "en"}
    body["code"] = registration_code(deni, phone)
    registered = client.post(f"{API}/auth/register", json=body, headers={"Idempotency-Key": "r1"})
    assert registered.status_code == 201, registered.text
    stored = _stored_fingerprint(deni, "register", "r1")
    assert not any(
        stored in set(_unkeyed_guesses("register", {**body, "pin": pin})) for pin in ALL_PINS
    )


USSD_STORES = ["memory", "sql", REDIS]


def _store_contents(deni: Deni, phone: Phone, session_id: str) -> list[str]:
    """Everything the store holds for this phone and session, as an attacker reads it: the raw
    rows (SQL) or raw values (Redis), or the values themselves (memory)."""
    if deni.settings.session_store == "sql":
        s = ussd_tables.ussd_sessions
        with database_engine(deni).connect() as connection:
            return [f"{r.key} {r.value}" for r in connection.execute(select(s)).all()]
    if deni.settings.session_store == "redis":
        assert REDIS_URL is not None
        client = redis.Redis.from_url(REDIS_URL)
        try:
            keys = [REDIS_PREFIX + session_key(session_id), REDIS_PREFIX + resume_key(phone.msisdn)]
            return [raw.decode() for raw in client.mget(keys) if raw is not None]
        finally:
            client.close()
    keys = [session_key(session_id), resume_key(phone.msisdn)]
    return [v for v in deni.sessions.get_many(keys, now=deni.clock.now()) if v is not None]


@pytest.mark.parametrize("store_kind", USSD_STORES)
def test_a_ussd_session_read_mid_flow_holds_no_pin(
    store_kind: str, settings: Settings, clock: ManualClock, hasher: PepperedArgon2PinHasher
) -> None:
    wired = bootstrap(
        settings.model_copy(update={"session_store": store_kind, "redis_url": REDIS_URL or ""}),
        clock=clock,
        hasher=hasher,
    )
    tag = uuid.uuid4().hex[:8]
    typed: list[str] = []

    def no_pin_stored(phone: Phone) -> None:
        contents = _store_contents(wired, phone, phone.session_id)
        assert contents, "the session is stored"
        for pin in typed:
            assert not [c for c in contents if shows_number(pin, c)], (pin, contents)

    try:
        with TestClient(create_app(wired), raise_server_exceptions=False) as client:
            lender, borrower = Phone(client, next_phone()), Phone(client, next_phone())
            # Registration: the first PIN is typed, the second not yet.
            lender.dial(f"ATUid_mid_{tag}_1")
            lender.send("1", "Mid Flow", "3817")
            typed.append("3817")
            assert "again" in lender.last
            no_pin_stored(lender)
            lender.send("3817")
            no_pin_stored(lender)
            # A change of PIN: after the current PIN, after the first new one, then dropped
            # and resumed (the resume snapshot carries what the session knew).
            lender.dial(f"ATUid_mid_{tag}_2")
            lender.send("7", "1", "3817")
            no_pin_stored(lender)
            lender.send("4928")
            typed.append("4928")
            no_pin_stored(lender)
            clock.advance(timedelta(seconds=30))
            assert "Continue" in lender.dial(f"ATUid_mid_{tag}_3")
            no_pin_stored(lender)
            lender.send("1", "4928")
            assert "PIN is changed" in lender.last
            no_pin_stored(lender)
            # A loan asked for and approved, each with a PIN.
            borrower.dial(f"ATUid_mid_{tag}_4")
            borrower.send("1", "Mid Borrower", "5039", "5039")
            typed.append("5039")
            borrower.dial(f"ATUid_mid_{tag}_5")
            borrower.send("1", lender.number, "1000", "30", "0", "5039")
            assert "Request sent" in borrower.last
            no_pin_stored(borrower)
            with wired.uow.read_only() as uow:
                member = uow.users.get_by_phone(lender.msisdn)
            assert member is not None
            fund(wired, member, 500_000)
            lender.dial(f"ATUid_mid_{tag}_6")
            assert "Approved" in lender.send("4", "1", "1", "4928")
            no_pin_stored(lender)
            assert "Approved" in lender.resend()  # a re-sent hop is still known
    finally:
        wired.close()


def test_the_sms_outbox_read_after_delivery_holds_no_code(
    client: TestClient, deni: Deni, clock: ManualClock
) -> None:
    member = api_user(client, deni, pin="3817")
    assert isinstance(deni.sms, DatabaseSmsOutbox)
    assert len(deni.sms.messages(phone=member.user.phone)) == 1  # the sign-up code
    clock.advance(timedelta(seconds=1))  # the reset code comes after the sign-up code
    asked = client.post(f"{API}/auth/pin-reset", json={"phone": member.user.phone})
    assert asked.status_code == 202, asked.text
    message, _ = deni.sms.messages(phone=member.user.phone)
    (code,) = re.findall(r"(?<!\d)\d{6}(?!\d)", message.body)  # the handset reads it

    def stored() -> list[str]:
        o = ussd_tables.sms_outbox
        with database_engine(deni).connect() as connection:
            rows = connection.execute(select(o)).mappings().all()
        return [str(value) for row in rows for value in row.values()]

    assert message.holds_secret
    assert not [value for value in stored() if shows_number(code, value)]
    assert any("******" in value for value in stored())
    # Once the handset may no longer read it, housekeeping drops even the sealed text.
    clock.advance(SECRET_READABLE_FOR)
    assert Housekeeper(deni, interval_s=60).run_once() is not None
    message, _ = deni.sms.messages(phone=member.user.phone)
    assert not shows_number(code, message.body)
    assert "******" in message.body
    o = ussd_tables.sms_outbox
    with database_engine(deni).connect() as connection:
        sealed = connection.execute(select(o.c.sealed_body, o.c.readable_until)).all()
    assert [tuple(row) for row in sealed] == [(None, None), (None, None)]
