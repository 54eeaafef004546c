"""The soak's people, all drawn from one seed: API members, USSD diallers (some register on
the spot), paybill payers (loan codes, sometimes mistyped), lenders who write off, and
offline-sync devices (two per member, editing the same request). Each has its own random
stream (`random.Random(f"{seed}:{role}:{index}")`), so one seed gives the same people making
the same choices; the moments their requests meet the server differ from run to run.

Every request is timed and counted per channel; a 5xx or a broken connection is counted too,
with the time it happened, so the report can tell the ones inside an injected fault's window
from the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from deni.adapters.db.engine import make_engine
from deni.bootstrap import bootstrap
from deni.config import Settings
from deni.domain.users import User
from deni.ids import new_id
from deni.services import ledger

PIN = "4821"
API_PREFIX = "/api/v1"
SERVICE_CODE = "*383#"
REQUEST_TIMEOUT_S = 15.0
CONNECTIONS_MAX = 64
KEEPALIVE_EXPIRY_S = 2.0
SAMPLES_MAX = 2_000_000
ACTIONS_PER_MEMBER_MAX = 100_000
HOPS_PER_JOURNEY_MAX = 12
RESUME_PROMPT = "CON Continue where you left off?"
LIST_ANSWERS_MAX = 3
TYPO_SHARE = 0.15


@dataclass(frozen=True, slots=True)
class PopulationPlan:
    api_members: int = 16
    # API members who borrow and never pay: every STK prompt they get is cancelled, so their
    # loans fall overdue, accrue penalties, are chased by auto-repay and written off.
    defaulters: int = 2
    ussd_members: int = 16
    ussd_newcomers: int = 6
    sync_members: int = 4
    ussd_think_s: tuple[float, float] = (2.0, 10.0)
    api_think_s: tuple[float, float] = (1.0, 4.0)
    sync_think_s: tuple[float, float] = (2.0, 6.0)
    term_days: tuple[int, int] = (1, 3)

    def __post_init__(self) -> None:
        assert 2 <= self.api_members <= 2_000
        assert 0 <= self.defaulters < self.api_members
        assert 0 <= self.ussd_members <= 10_000
        assert 0 <= self.ussd_newcomers <= 1_000
        assert 0 <= self.sync_members <= 200
        assert 0 <= self.ussd_think_s[0] <= self.ussd_think_s[1] <= 60


@dataclass(frozen=True, slots=True)
class Member:
    role: str  # api, ussd, newcomer, sync
    index: int
    phone: str
    name: str

    @property
    def national(self) -> str:
        return "0" + self.phone[3:]


def people(seed: int, plan: PopulationPlan) -> list[Member]:
    """Everyone in the soak; phones start 2547 1/2/3 (never the sandbox's 25470000 test numbers)."""
    rng = random.Random(f"{seed}:people")  # noqa: S311 (a seeded load, not secrets)
    taken: set[str] = set()
    first = ["Amina", "Baraka", "Chebet", "Daudi", "Esther", "Faith", "Gitau", "Halima", "Imani"]
    last = ["Otieno", "Wanjiku", "Mutua", "Kamau", "Njeri", "Achieng", "Kiprop", "Wambui"]
    out: list[Member] = []
    for role, count in (
        ("api", plan.api_members),
        ("ussd", plan.ussd_members),
        ("newcomer", plan.ussd_newcomers),
        ("sync", plan.sync_members),
    ):
        for index in range(count):
            phone = ""
            for _ in range(1_000):
                phone = f"2547{rng.choice('123')}{rng.randrange(10**7):07d}"
                if phone not in taken:
                    break
            taken.add(phone)
            name = f"{rng.choice(first)} {rng.choice(last)}"
            out.append(Member(role, index, phone, name))
    return out


def seed_members(settings: Settings, members: list[Member]) -> None:
    """Everyone but the newcomers exists already, proven, with an empty wallet: their money
    comes in during the run, through M-PESA, like everyone's."""
    deni = bootstrap(settings)
    try:
        pin_hash = deni.hasher.hash(PIN)
        with deni.uow() as uow:
            for member in members:
                if member.role == "newcomer":
                    continue
                now = deni.clock.now()
                user = User(new_id(), member.phone, member.name, "en", pin_hash, now)
                user.prove_phone(now)
                uow.users.add(user)
                ledger.open_wallet(uow, user_id=user.id, now=now)
            uow.commit()
    finally:
        deni.close()


# --- what is measured ---------------------------------------------------------------------


@dataclass(slots=True)
class Sample:
    channel: str
    at_s: float  # since the soak began
    ms: float
    status: int  # 0: no answer (connection refused, reset, timed out)


@dataclass(slots=True)
class Recorder:
    started: float = field(default_factory=time.monotonic)
    samples: list[Sample] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)

    def now_s(self) -> float:
        return time.monotonic() - self.started

    def add(self, channel: str, started: float, status: int) -> None:
        if len(self.samples) < SAMPLES_MAX:
            ms = (time.monotonic() - started) * 1000
            self.samples.append(Sample(channel, started - self.started, ms, status))

    def count(self, event: str, n: int = 1) -> None:
        self.events[event] = self.events.get(event, 0) + n


# --- the shared context -------------------------------------------------------------------


@dataclass(slots=True)
class World:
    front_url: str
    sandbox_url: str
    ussd_token: str
    members: list[Member]
    stop_at: float  # monotonic
    recorder: Recorder
    http: httpx.AsyncClient
    sandbox: httpx.AsyncClient
    run_dir: Path
    plan: PopulationPlan
    loan_codes: dict[str, str] = field(default_factory=dict)  # code -> borrower phone

    def running(self) -> bool:
        return time.monotonic() < self.stop_at

    async def pause(self, rng: random.Random, bounds: tuple[float, float]) -> None:
        left = self.stop_at - time.monotonic()
        if left > 0:
            await asyncio.sleep(min(left, rng.uniform(*bounds)))


def new_world(
    *,
    front_url: str,
    sandbox_url: str,
    ussd_token: str,
    members: list[Member],
    seconds: float,
    recorder: Recorder,
    run_dir: Path,
    plan: PopulationPlan,
) -> World:
    # An idle connection is dropped before the server's keep-alive (uvicorn: 5 s) could close
    # it under a request: that race is the client's, not a fault's.
    limits = httpx.Limits(
        max_connections=CONNECTIONS_MAX,
        max_keepalive_connections=32,
        keepalive_expiry=KEEPALIVE_EXPIRY_S,
    )
    return World(
        front_url=front_url,
        sandbox_url=sandbox_url,
        ussd_token=ussd_token,
        members=members,
        stop_at=time.monotonic() + seconds,
        recorder=recorder,
        http=httpx.AsyncClient(base_url=front_url, timeout=REQUEST_TIMEOUT_S, limits=limits),
        sandbox=httpx.AsyncClient(base_url=sandbox_url, timeout=REQUEST_TIMEOUT_S),
        run_dir=run_dir,
        plan=plan,
    )


async def timed(
    world: World, channel: str, call: Callable[[], Awaitable[httpx.Response]]
) -> httpx.Response | None:
    started = time.monotonic()
    try:
        response = await call()
    except httpx.HTTPError:
        world.recorder.add(channel, started, 0)
        return None
    world.recorder.add(channel, started, response.status_code)
    return response


# --- API members ----------------------------------------------------------------------------


class ApiMember:
    def __init__(self, world: World, member: Member, seed: int) -> None:
        self.world, self.member = world, member
        self.rng = random.Random(f"{seed}:api:{member.index}")  # noqa: S311 (a seeded load, not secrets)
        # Each member's own address, as their phone would have behind the balancer.
        self.source = f"10.{member.index // 250}.{member.index % 250}.{1 + member.index % 200}"
        self.token: str | None = None
        self.refresh: str | None = None

    def _headers(self) -> dict[str, str]:
        headers = {"X-Forwarded-For": self.source, "Idempotency-Key": str(uuid.uuid4())}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    async def login(self) -> bool:
        body = {"phone": self.member.phone, "pin": PIN}
        response = await timed(
            self.world,
            "api",
            lambda: self.world.http.post(
                f"{API_PREFIX}/auth/login", json=body, headers=self._headers()
            ),
        )
        if response is None or response.status_code != 200:
            return False
        session = response.json()
        self.token, self.refresh = session["access_token"], session.get("refresh_token")
        return True

    async def call(self, method: str, path: str, body: object = None) -> httpx.Response | None:
        """One API call; a retry with the same key after a broken connection (as an app
        does), and a fresh sign-in when the token has expired."""
        key = str(uuid.uuid4())
        for _ in range(3):
            headers = {**self._headers(), "Idempotency-Key": key}
            response = await timed(
                self.world,
                "api",
                lambda h=headers: self.world.http.request(  # type: ignore[misc]
                    method, API_PREFIX + path, json=body, headers=h
                ),
            )
            if response is None or response.status_code in (502, 503):
                self.world.recorder.count("api_retries")
                await asyncio.sleep(0.5)
                continue
            if response.status_code == 401 and await self.login():
                continue
            return response
        return None

    async def _json(self, method: str, path: str, body: object = None) -> Any:
        response = await self.call(method, path, body)
        if response is None or response.status_code >= 300:
            return None
        return response.json()

    @property
    def defaulter(self) -> bool:
        return self.member.index < self.world.plan.defaulters

    async def run(self) -> None:
        if not await self.login():
            self.world.recorder.count("api_login_failed")
            return
        if self.defaulter:
            fault = {
                "kind": "stk",
                "phone": self.member.phone,
                "action": "result_code",
                "result_code": 1032,
                "times": 1_000,
            }
            with contextlib.suppress(httpx.HTTPError):
                await self.world.sandbox.post("/sandbox/faults", json=fault)
            await self._borrow_only()
            return
        await self.top_up()  # everyone starts with some money on Deni
        for _ in range(ACTIONS_PER_MEMBER_MAX):
            if not self.world.running():
                return
            await self.world.pause(self.rng, self.world.plan.api_think_s)
            if not self.world.running():
                return
            action = self.rng.choices(
                [
                    self.top_up,
                    self.request,
                    self.answer,
                    self.repay,
                    self.withdraw,
                    self.write_off,
                    self.read,
                ],
                weights=[12, 20, 25, 20, 6, 3, 14],
            )[0]
            await action()

    async def _borrow_only(self) -> None:
        for _ in range(ACTIONS_PER_MEMBER_MAX):
            await self.world.pause(self.rng, self.world.plan.api_think_s)
            if not self.world.running():
                return
            if self.rng.random() < 0.5:
                await self.request()
            else:
                await self.read()

    async def top_up(self) -> None:
        amount = self.rng.randrange(500, 5_000) * 100
        if await self._json("POST", "/mpesa/top-ups", {"amount_cents": amount}):
            self.world.recorder.count("api_top_ups")

    def _lender(self) -> Member:
        others = [m for m in self.world.members if m.phone != self.member.phone]
        others = [m for m in others if m.role != "newcomer"]
        return self.rng.choice(others)

    async def request(self) -> None:
        principal = self.rng.randrange(100, 1_500) * 100
        body = {
            "lender_phone": self._lender().phone,
            "principal_cents": principal,
            "fee_cents": principal // 10,
            "penalty_daily_cents": principal // 100 * self.rng.choice([0, 1, 2]),
            "term_days": self.rng.randint(*self.world.plan.term_days),
        }
        loan = await self._json("POST", "/loans", body)
        if loan:
            self.world.loan_codes[loan["code"]] = self.member.phone
            self.world.recorder.count("api_requests")

    async def answer(self) -> None:
        found = await self._json("GET", "/loans?role=lender&state=requested&limit=5")
        for loan in (found or {}).get("loans", [])[:LIST_ANSWERS_MAX]:
            if self.rng.random() < 0.75:
                body = {"pin": PIN, "base_version": loan["version"]}
                if await self._json("POST", f"/loans/{loan['id']}/approve", body):
                    self.world.recorder.count("api_approvals")
            elif await self._json("POST", f"/loans/{loan['id']}/decline", {}):
                self.world.recorder.count("api_declines")

    async def repay(self) -> None:
        found = await self._json("GET", "/loans?role=borrower&state=active&limit=10")
        loans = (found or {}).get("loans", [])
        if not loans:
            return
        loan = self.rng.choice(loans)
        owed = int(loan["owed"]["total_cents"])
        if owed <= 0:
            return
        full = self.rng.random() < 0.5
        amount = owed if full else max(100, (owed // 3) // 100 * 100)
        way = self.rng.random()
        if way < 0.4:
            body = {"amount_cents": amount, "pin": PIN}
            if await self._json("POST", f"/loans/{loan['id']}/repay", body):
                self.world.recorder.count("api_repay_wallet")
        elif way < 0.7:
            body = {"amount_cents": -(-amount // 100) * 100}
            if await self._json("POST", f"/loans/{loan['id']}/mpesa-repayments", body):
                self.world.recorder.count("api_repay_mpesa")
        else:
            await pay_paybill(self.world, self.rng, self.member.phone, amount, loan["code"])

    async def withdraw(self) -> None:
        wallet = await self._json("GET", "/wallet")
        balance = int((wallet or {}).get("balance_cents", 0))
        if balance < 50_00:
            return
        amount = self.rng.randrange(10_00, min(balance, 3_000_00) + 1) // 100 * 100
        body = {"amount_cents": amount, "pin": PIN}
        if await self._json("POST", "/mpesa/withdrawals", body):
            self.world.recorder.count("api_withdrawals")

    async def write_off(self) -> None:
        found = await self._json("GET", "/loans?role=lender&state=active&limit=10")
        loans = [x for x in (found or {}).get("loans", []) if x["overdue"]]
        if not loans and self.rng.random() < 0.7:
            return
        loans = loans or (found or {}).get("loans", [])
        if loans:
            loan = self.rng.choice(loans)
            if await self._json("POST", f"/loans/{loan['id']}/write-off", {"pin": PIN}):
                self.world.recorder.count("api_write_offs")

    async def read(self) -> None:
        path = self.rng.choice(["/wallet/statement", "/loans", "/me/history", "/mpesa/requests"])
        await self.call("GET", path)


async def pay_paybill(
    world: World, rng: random.Random, phone: str, amount_cents: int, code: str
) -> None:
    """The borrower pays from their phone: Paybill, account number the loan's code (typed
    with a slip now and then: wrong case, a space, a character dropped)."""
    account = code
    roll = rng.random()
    if roll < TYPO_SHARE:
        account = code[:-1]  # one character short: matches nothing, goes to suspense
        world.recorder.count("paybill_typos")
    elif roll < 2 * TYPO_SHARE:
        account = f" {code.lower()} "
    shillings = max(1, -(-amount_cents // 100))
    body = {"phone": phone, "amount": shillings, "account": account[:20]}
    response = await timed(
        world, "paybill", lambda: world.sandbox.post("/sandbox/c2b/pay", json=body)
    )
    if response is not None and response.status_code == 200:
        world.recorder.count("paybill_payments")


# --- USSD diallers --------------------------------------------------------------------------


class UssdMember:
    def __init__(self, world: World, member: Member, seed: int, *, registered: bool) -> None:
        self.world, self.member, self.registered = world, member, registered
        self.rng = random.Random(f"{seed}:ussd:{member.role}:{member.index}")  # noqa: S311 (a seeded load, not secrets)
        self.sessions = 0
        self.dropped: list[str] | None = None  # what a dropped session still had to type

    async def hop(self, session_id: str, entries: list[str]) -> str | None:
        form = {
            "sessionId": session_id,
            "serviceCode": SERVICE_CODE,
            "phoneNumber": "+" + self.member.phone,
            "networkCode": "63902",
            "text": "*".join(entries),
        }
        path = f"/ussd/{self.world.ussd_token}"
        data = urlencode(form)
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        response = await timed(
            self.world, "ussd", lambda: self.world.http.post(path, content=data, headers=headers)
        )
        if response is None or response.status_code != 200:
            return None
        return response.text

    async def dial(self, script: list[str], *, drop_after: int | None = None) -> str | None:
        """One session: the script's entries one hop at a time, a pause before each. A
        resume offer is taken when this dial picks up a dropped session."""
        self.sessions += 1
        session_id = f"ATUid_soak_{self.member.role}{self.member.index}_{self.sessions}"
        entries: list[str] = []
        reply = await self.hop(session_id, entries)
        if reply is None:
            self.world.recorder.count("ussd_sessions_failed")
            return None
        if reply.startswith(RESUME_PROMPT):
            resuming = self.dropped is not None
            entries.append("1" if resuming else "2")
            reply = await self.hop(session_id, entries)
            if resuming:
                self.world.recorder.count("ussd_resumed")
                script = self.dropped or []
                self.dropped = None
        todo = list(script[1:] if script and script[0] == "" else script)
        for position, entry in enumerate(todo[:HOPS_PER_JOURNEY_MAX]):
            if reply is None or not reply.startswith("CON"):
                break
            if drop_after is not None and position >= drop_after:
                self.dropped = todo[position:]
                self.world.recorder.count("ussd_dropped")
                return None  # the network dropped the session: no more hops
            await self.world.pause(self.rng, self.world.plan.ussd_think_s)
            entries.append(entry)
            reply = await self.hop(session_id, entries)
        self.world.recorder.count("ussd_sessions")
        return reply

    def _other(self) -> Member:
        others = [
            m for m in self.world.members if m.phone != self.member.phone and m.role != "newcomer"
        ]
        return self.rng.choice(others)

    async def run(self) -> None:
        if not self.registered:
            name = self.member.name
            await self.dial(["", "1", name, PIN, PIN])
            self.registered = True
            self.world.recorder.count("ussd_registrations")
        await self.dial(["", "5", "1", str(self.rng.randrange(500, 5_000))])  # top up first
        for _ in range(ACTIONS_PER_MEMBER_MAX):
            if not self.world.running():
                return
            await self.world.pause(self.rng, self.world.plan.ussd_think_s)
            if not self.world.running():
                return
            amount = str(self.rng.randrange(100, 1_500))
            days = str(self.rng.randint(*self.world.plan.term_days))
            scripts = [
                ["", "5"],  # wallet
                ["", "6"],  # statement
                ["", "5", "1", str(self.rng.randrange(100, 3_000))],  # top up (STK at END)
                ["", "1", self._other().national, amount, days, str(int(amount) // 10), PIN],
                ["", "4", "1", "1", PIN],  # approve the first request waiting
                ["", "4", "1", "2"],  # decline it
                ["", "2", "1", "1", "1", str(self.rng.randrange(50, 500)), PIN],  # from wallet
                ["", "2", "1", "1", "2", str(self.rng.randrange(50, 500))],  # by M-PESA
                ["", "5", "2", str(self.rng.randrange(10, 300)), PIN],  # withdraw
            ]
            script = self.rng.choices(scripts, weights=[14, 10, 10, 18, 16, 5, 9, 9, 6])[0]
            if self.dropped is not None:
                await self.dial([])  # dialling again soon after the drop: resume
                continue
            drop_after = None
            if len(script) > 3 and self.rng.random() < 0.12:
                drop_after = self.rng.randrange(1, len(script) - 2)
            await self.dial(script, drop_after=drop_after)


# --- offline-sync devices ------------------------------------------------------------------


class SyncMember:
    """Two devices of one member, each its own local database: act offline, reconnect,
    edit the same request on both, retry what failed. Runs in a thread (the offline client
    is synchronous, as the CLI is)."""

    def __init__(self, world: World, member: Member, seed: int) -> None:
        self.world, self.member = world, member
        self.rng = random.Random(f"{seed}:sync:{member.index}")  # noqa: S311 (a seeded load, not secrets)
        self.home = world.run_dir / "sync"

    def run(self) -> None:
        from deni.offline.api import Api, OfflineError
        from deni.offline.client import OfflineClient
        from deni.offline.retry import Backoff
        from deni.offline.store import Store
        from deni.offline.sync import Syncer

        self.home.mkdir(parents=True, exist_ok=True)
        devices: list[tuple[OfflineClient, Api]] = []
        for name in ("phone", "tablet"):
            store = Store(self.home / f"{self.member.phone}-{name}.sqlite3")
            api = Api(self.world.front_url)
            client = OfflineClient(store)
            for _ in range(5):
                try:
                    client.login(
                        url=self.world.front_url, phone=self.member.phone, pin=PIN, api=api
                    )
                    break
                except OfflineError:
                    time.sleep(1.0)
            else:
                self.world.recorder.count("sync_login_failed")
                return
            devices.append((client, api))

        def sync(index: int) -> None:
            client, api = devices[index]
            started = time.monotonic()
            try:
                Syncer(client.store, api, pin=PIN, backoff=Backoff()).sync()
                self.world.recorder.add("sync", started, 200)
                self.world.recorder.count("sync_cycles")
            except OfflineError:
                self.world.recorder.add("sync", started, 0)
                self.world.recorder.count("sync_failed_cycles")

        try:
            client0 = devices[0][0]
            client0.top_up(amount_cents=self.rng.randrange(500, 3_000) * 100)
            sync(0)
            for _ in range(ACTIONS_PER_MEMBER_MAX):
                if not self.world.running():
                    return
                time.sleep(
                    min(
                        max(0.0, self.world.stop_at - time.monotonic()),
                        self.rng.uniform(*self.world.plan.sync_think_s),
                    )
                )
                if not self.world.running():
                    return
                self._act(devices, sync)
        finally:
            for client, api in devices:
                api.close()
                client.store.close()

    def _act(self, devices: list[Any], sync: Callable[[int], None]) -> None:
        from deni.offline.api import OfflineError

        index = self.rng.randrange(2)
        client = devices[index][0]
        roll = self.rng.random()
        with contextlib.suppress(OfflineError, ValueError, AssertionError):
            if roll < 0.25:
                others = [m for m in self.world.members if m.phone != self.member.phone]
                others = [m for m in others if m.role != "newcomer"]
                principal = self.rng.randrange(100, 1_000) * 100
                client.request_loan(
                    lender_phone=self.rng.choice(others).phone,
                    principal_cents=principal,
                    fee_cents=principal // 10,
                    term_days=self.rng.randint(*self.world.plan.term_days),
                )
            elif roll < 0.45:
                self._edit_on_both(devices, sync)
                return
            elif roll < 0.6:
                for line in client.loans(role="lender")[:2]:
                    if line.state == "requested":
                        client.approve(line.id)
            elif roll < 0.75:
                owed = [x for x in client.loans(role="borrower") if x.state == "active"]
                if owed:
                    client.repay(owed[0].id, amount_cents=self.rng.randrange(50, 500) * 100)
            elif roll < 0.85:
                client.top_up(amount_cents=self.rng.randrange(100, 2_000) * 100)
            for conflict in client.conflicts()[:3]:
                client.resolve_conflict(conflict.id, keep=self.rng.choice(["server", "client"]))
        # Offline a while; then back online, now or after the next action.
        if self.rng.random() < 0.6:
            sync(index)

    def _edit_on_both(self, devices: list[Any], sync: Callable[[int], None]) -> None:
        """Both devices change the same unanswered request while offline, then reconnect:
        the second to arrive meets the first's edit (a conflict, resolved later)."""
        sync(0)
        sync(1)
        mine = [x for x in devices[0][0].loans(role="borrower") if x.state == "requested"]
        if not mine:
            return
        loan_id = mine[0].id
        for index, (client, _) in enumerate(devices):
            principal = self.rng.randrange(100, 1_000) * 100 + index * 100
            with contextlib.suppress(Exception):
                client.edit_request(loan_id, principal_cents=principal)
        self.world.recorder.count("sync_double_edits")
        sync(0)
        sync(1)


_CODE_RE = re.compile(r"^[A-Z0-9]{4,12}$")


async def run_population(world: World, seed: int) -> None:
    """Everyone at once, until the soak's time is up (each actor finishes its step)."""
    tasks: list[Awaitable[None]] = []
    for member in world.members:
        if member.role == "api":
            tasks.append(ApiMember(world, member, seed).run())
        elif member.role in ("ussd", "newcomer"):
            actor = UssdMember(world, member, seed, registered=member.role == "ussd")
            tasks.append(actor.run())
        elif member.role == "sync":
            tasks.append(asyncio.to_thread(SyncMember(world, member, seed).run))
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            world.recorder.count("actor_crashed")
            world.recorder.count(f"actor_crashed:{type(result).__name__}:{result}"[:120])


def engine_for(url: str) -> Any:
    return make_engine(url, pool_size=2)
