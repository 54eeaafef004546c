"""The USSD engine: one hop in, one screen out, interpreting the journey table (menus.py).

How a hop is read. The gateway sends every entry of the session so far ("1*0712345678*500").
The session remembers the last hop it answered (its text as a length and a keyed digest: the
text holds every PIN typed so far) and that answer, so:
- the same text again (a gateway retry) gets the same answer and does nothing;
- the last text plus "*" plus more is a new entry (everything after the prefix, so an entry
  that itself contains "*" stays one entry);
- anything else (an older hop arriving late) gets the current screen and does nothing.
Actions that move money in the ledger carry a key made of the session id and the hop number,
so even two copies of a hop processed at once act once. M-PESA movements are queued on the
hop and recorded when the session ends (END); the STK push or payout follows after that.
"""

from __future__ import annotations

import functools
import json
import traceback
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import structlog

from deni.bootstrap import Deni
from deni.domain.errors import AccountLocked, DomainError, InvalidPhoneNumber
from deni.domain.phone import normalise_msisdn
from deni.domain.secrecy import digests_match
from deni.domain.users import LANGUAGES
from deni.entrypoints.ussd import flows
from deni.entrypoints.ussd.flows import Ctx, SessionSeal, SessionState
from deni.entrypoints.ussd.gateway import UssdRequest
from deni.entrypoints.ussd.menus import CLAIM, MAIN, RESUME, SCREENS, WELCOME
from deni.entrypoints.ussd.render import Reply, compose, say
from deni.entrypoints.ussd.screens import Finish, Goto, Kind, Reject, Screen, Step
from deni.services import ussd
from deni.services.ports import StorageBusy

PAGE_ITEMS = 3  # three loans with names and amounts fill a screen
STACK_MAX = 16
ENTRY_CHARS_MAX = 64
TRACE_FRAMES = 6
BACK, MAIN_MENU, MORE = "0", "00", "98"
# Before a session is a member's: registering, or proving an unproven account's number.
REGISTRATION_SCREENS = frozenset({WELCOME, "reg_name", "reg_pin", "reg_pin2", CLAIM, "claim_pin"})
FALLBACK_LANGUAGE = "en"
# A person takes seconds to read a screen and type: more hops than this from one phone in a
# minute is a script (the gateway does not authenticate the number; docs/reference-ussd.md).
RATE_WINDOW_S = 60
PHONES_CACHED = 16_384  # normalising a number (phonenumbers) costs more than the rest of a menu hop
# Short reasons for the errors the services raise, by code; anything else is "try again".
REASONS: Mapping[str, str] = {
    "wrong_pin": "ussd.err_wrong_pin",
    "wrong_pin_last_try": "ussd.err_wrong_pin_last_try",
    "not_safaricom": "ussd.err_not_safaricom",
    "invalid_pin": "ussd.err_pin_format",
    "weak_pin": "ussd.err_weak_pin",
    "insufficient_funds": "ussd.err_funds",
    "money_on_hold": "ussd.err_on_hold",
    "locked_by_support": "ussd.err_support_locked",
    "wallet_not_empty": "ussd.err_close_money",
    "open_loans": "ussd.err_close_loans",
    "mpesa_pending": "ussd.err_close_mpesa",
    "loan_expired": "ussd.err_loan_expired",
    "invalid_transition": "ussd.err_loan_changed",
    "loan_not_active": "ussd.err_loan_changed",
    "loan_not_found": "ussd.err_loan_changed",
    "self_lending": "ussd.err_self",
    "user_not_found": "ussd.err_not_on_deni",
    "invalid_phone_number": "ussd.err_phone",
    "invalid_due_date": "ussd.err_days_short",
    "invalid_amount": "ussd.err_amount_short",
    "too_many_open_requests": "ussd.err_open_requests",
    "too_many_requests": "ussd.err_asked_too_often",
    "other_party_not_proven": "ussd.err_not_proven",
}
log = structlog.get_logger(__name__)


def session_key(session_id: str) -> str:
    return f"s:{session_id}"


def resume_key(phone: str) -> str:
    return f"r:{phone}"


def rate_key(phone: str, now: datetime) -> str:
    """This phone's hop counter for the current minute (a fixed window)."""
    return f"h:{phone}:{int(now.timestamp()) // RATE_WINDOW_S}"


@functools.lru_cache(maxsize=PHONES_CACHED)
def _msisdn(raw: str) -> str:
    """normalise_msisdn, remembered: a gateway sends the same number on every hop."""
    return normalise_msisdn(raw)


class UssdEngine:
    def __init__(self, deni: Deni, *, screens: Mapping[str, Screen] = SCREENS) -> None:
        settings = deni.settings
        self.deni = deni
        self.screens = screens
        self.store = deni.sessions
        self.reads = deni.ussd_reads
        self.service_code = settings.ussd_service_code
        self.timeout_s = settings.ussd_session_timeout_s
        self.resume_s = settings.ussd_resume_window_s
        self.hops_per_minute_max = settings.ussd_hops_per_minute_max
        self.seal = SessionSeal(settings.pin_pepper)

    # --- one hop -----------------------------------------------------------------------------

    def handle(self, request: UssdRequest) -> Reply:
        """Never raises: whatever happens, the phone gets a screen. Blocking (the session store,
        the database): the router runs it in a worker thread."""
        now = self.deni.clock.now()
        try:
            return self._hop(request, now)
        except StorageBusy:
            return self._end("ussd.err_busy", FALLBACK_LANGUAGE)
        except Exception as error:
            # No exc_info: a rendered traceback may show local variables, and the request's
            # text holds PINs. Where it failed (file, line, function) is enough to find it.
            frames = traceback.extract_tb(error.__traceback__)[-TRACE_FRAMES:]
            where = [f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}:{f.name}" for f in frames]
            log.error("ussd_hop_failed", error=type(error).__name__, where=where)
            return self._end("ussd.err_generic", FALLBACK_LANGUAGE)

    def _hop(self, request: UssdRequest, now: datetime) -> Reply:
        """Reads the session, the phone's resume snapshot and its hops this minute in one call,
        and writes what changed in one more once the reply is ready: a hop that fails writes
        nothing. A re-sent hop is answered before the count, and costs nothing."""
        if request.service_code != self.service_code:
            return self._end("ussd.err_service", FALLBACK_LANGUAGE)
        try:
            phone = _msisdn(request.phone)
        except InvalidPhoneNumber:
            return self._end("ussd.err_phone_unsupported", FALLBACK_LANGUAGE)
        # The snapshot is needed only when a session starts or resumes; reading it beside the
        # session costs nothing more than the one round trip.
        raw, snapshot, hops = self.store.get_many(
            [session_key(request.session_id), resume_key(phone), rate_key(phone, now)], now=now
        )
        stored = self._decode(raw)
        if stored is not None and stored.phone == phone and self._is_last(stored, request.text):
            return Reply.from_wire(stored.last_reply)  # the gateway re-sent a hop: free
        hops_this_minute = int(hops) if hops is not None and hops.isdigit() else 0
        if hops_this_minute >= self.hops_per_minute_max:
            log.warning("ussd_rate_limited", hops=hops_this_minute)
            return self._end("ussd.err_too_many", FALLBACK_LANGUAGE)
        counted = (str(hops_this_minute + 1), 2 * RATE_WINDOW_S)
        if stored is None:
            if request.text != "":
                # A hop of a session we no longer (or never) knew: it timed out. It reads the
                # database too, so it counts.
                self.store.write({rate_key(phone, now): counted}, now=now)
                language = self._language_of(phone)
                return self._end("ussd.err_timeout", language, code=self.service_code)
            state = self._start(request.session_id, phone)
            ctx = self._ctx(state, now, snapshot)
            reply = self._open(ctx)
        else:
            state = stored
            if state.phone != phone:
                return self._end(
                    "ussd.err_session_invalid", FALLBACK_LANGUAGE, code=self.service_code
                )
            if state.ended:
                return self._end("ussd.err_session_over", state.lang, code=self.service_code)
            entry = self._new_entry(state, request.text)
            if entry is None:
                return Reply.from_wire(state.last_reply)
            state.hop += 1
            ctx = self._ctx(state, now, snapshot)
            reply = self._advance(ctx, entry)
        state.last_text_chars = len(request.text)
        state.last_text_mac = self.seal.text(state.session_id, request.text)
        state.last_reply = reply.wire
        ctx.changes[rate_key(phone, now)] = counted
        self._save(ctx, reply)
        return reply

    def _is_last(self, state: SessionState, text: str) -> bool:
        """Whether `text` is the text of the last hop the session answered."""
        if len(text) != state.last_text_chars:
            return False
        return digests_match(state.last_text_mac, self.seal.text(state.session_id, text))

    def _new_entry(self, state: SessionState, text: str) -> str | None:
        """What `text` adds to the last hop's text after a "*" (the whole text after the first
        hop); None if it does not start with the last hop's text: an older hop, late."""
        chars = state.last_text_chars
        if chars == 0:
            return text
        if len(text) <= chars or text[chars] != "*" or not self._is_last(state, text[:chars]):
            return None
        return text[chars + 1 :]

    def forget_session(self, session_id: str, *, now: datetime) -> None:
        """The gateway says the session is over: drop its state now rather than at its timeout.
        A dropped session's resume snapshot is the phone's, not the session's, and stays."""
        self.store.write({session_key(session_id): None}, now=now)

    def _end(self, message_id: str, language: str, **params: object) -> Reply:
        return compose(end=True, head=(), body=say(message_id, language, params), tail=())

    # --- session state -----------------------------------------------------------------------

    def _decode(self, raw: str | None) -> SessionState | None:
        if raw is None:
            return None
        try:
            state = SessionState(**json.loads(raw))
        except (ValueError, TypeError):
            return None  # written by an older release: start again
        return state if state.screen in self.screens else None

    def _start(self, session_id: str, phone: str) -> SessionState:
        member = self.reads.member(phone)
        if member is None:
            return SessionState(session_id, phone, FALLBACK_LANGUAGE, None, "", WELCOME)
        if not member.phone_proven:
            # Made online, never proven: the dialler holds the SIM, but is it whoever made the
            # account? Its PIN says so (claim_pin); else the SIM's holder opens their own.
            state = SessionState(session_id, phone, member.language, None, member.name, CLAIM)
            state.claim_id = member.id
            return state
        return SessionState(session_id, phone, member.language, member.id, member.name, MAIN)

    def _language_of(self, phone: str) -> str:
        member = self.reads.member(phone)
        return member.language if member is not None else FALLBACK_LANGUAGE

    def _save(self, ctx: Ctx, reply: Reply) -> None:
        state = ctx.state
        screen = self.screens[state.screen]
        resumable = not reply.end and _resumable(screen) and self.resume_s > 0
        changes = ctx.changes
        if resumable:
            snapshot = {
                "session_id": state.session_id,
                "user_id": state.user_id,
                "screen": state.screen,
                "stack": state.stack,
                "data": state.data,
                "page": state.page,
                "lang": state.lang,  # a newcomer chose it in the dropped session
            }
            changes[resume_key(state.phone)] = (json.dumps(snapshot), self.resume_s)
            state.snapshot_saved = True
        elif state.snapshot_saved:
            changes[resume_key(state.phone)] = None
            state.snapshot_saved = False
        changes[session_key(state.session_id)] = (state.to_json(), self.timeout_s)
        self.store.write(changes, now=ctx.now)

    def _snapshot(self, ctx: Ctx) -> dict[str, Any] | None:
        """The dropped session this phone may pick up again, if there is a sound one."""
        state = ctx.state
        if self.resume_s == 0:
            return None
        raw = ctx.loaded_snapshot
        if raw is None:
            return None
        try:
            snapshot = json.loads(raw)
            assert isinstance(snapshot, dict)
        except (ValueError, AssertionError):
            return None
        screen = self.screens.get(str(snapshot.get("screen")))
        stack = snapshot.get("stack")
        sound = (
            screen is not None
            and _resumable(screen)
            and snapshot.get("session_id") != state.session_id
            and snapshot.get("user_id") == state.user_id
            and isinstance(stack, list)
            and len(stack) <= STACK_MAX
            and all(s in self.screens for s in stack)
            and isinstance(snapshot.get("data"), dict)
            and isinstance(snapshot.get("page"), int)
        )
        return snapshot if sound else None

    # --- screens -----------------------------------------------------------------------------

    def _ctx(self, state: SessionState, now: datetime, snapshot: str | None = None) -> Ctx:
        return Ctx(
            self.deni,
            state,
            now,
            self.seal,
            secret_ttl_s=self.timeout_s + self.resume_s,
            loaded_snapshot=snapshot,
            resume=self._resume,
        )

    def _root(self, state: SessionState) -> str:
        if state.user_id is not None:
            return MAIN
        return CLAIM if state.claim_id is not None else WELCOME

    def _open(self, ctx: Ctx) -> Reply:
        snapshot = self._snapshot(ctx)
        if snapshot is not None:
            ctx.state.screen = RESUME
            # Asked in the language of the dropped session: a newcomer chose it there (a
            # member's is theirs already), and nothing else on this phone knows it.
            if snapshot.get("lang") in LANGUAGES:
                ctx.state.lang = str(snapshot["lang"])
        return self._render(ctx)

    def _resume(self, ctx: Ctx, yes: bool) -> Step:
        state = ctx.state
        snapshot = self._snapshot(ctx) if yes else None
        ctx.changes[resume_key(state.phone)] = None
        state.snapshot_saved = False
        if snapshot is None:
            notice = "ussd.err_resume_gone" if yes else None
            return Goto(self._root(state), notice=notice, reset=True)
        state.stack = list(snapshot["stack"])
        state.data = dict(snapshot["data"])
        state.page = int(snapshot["page"])
        if snapshot.get("lang") in LANGUAGES:
            state.lang = str(snapshot["lang"])
        return Goto(str(snapshot["screen"]), push=False)

    def _advance(self, ctx: Ctx, entry: str) -> Reply:
        state = ctx.state
        screen = self.screens[state.screen]
        try:
            step = self._dispatch(ctx, screen, entry.strip())
        except Reject as reject:
            return self._render(ctx, reason=say(reject.reason, state.lang, reject.params))
        except AccountLocked:
            minutes = flows.locked_minutes(ctx)
            return self._finish(ctx, Finish("ussd.locked", {"minutes": minutes}))
        except DomainError as error:
            reason = REASONS.get(error.code, "ussd.err_generic_short")
            return self._render(ctx, reason=say(reason, state.lang))
        if step is None:
            return self._render(ctx)
        if isinstance(step, Finish):
            return self._finish(ctx, step)
        return self._goto(ctx, step)

    def _dispatch(self, ctx: Ctx, screen: Screen, entry: str) -> Step | None:
        """What the entry means on this screen. None: show the (possibly new) current screen."""
        state = ctx.state
        if entry == MAIN_MENU:
            return Goto(self._root(state), reset=True)
        if entry == BACK and (screen.kind is not Kind.INPUT or screen.zero_is_back):
            self._back(state)
            return None
        if len(entry) > ENTRY_CHARS_MAX:
            raise Reject("ussd.err_too_long")
        if screen.kind is Kind.MENU:
            option = screen.options[_choice(entry, len(screen.options))]
            if screen.field is not None and option.value is not None:
                state.data[screen.field] = option.value
                if screen.field == "language":
                    state.lang = option.value
            if option.action is not None:
                return option.action(ctx)
            assert option.target is not None
            return Goto(option.target)
        if screen.kind is Kind.LIST:
            if entry == MORE and state.data.get("_more") is True:
                state.page += 1
                return None
            keys = state.data.get("_keys")
            assert isinstance(keys, list)
            assert screen.field is not None
            assert screen.next
            state.data[screen.field] = keys[_choice(entry, len(keys))]
            return Goto(screen.next)
        if screen.submit is not None:
            return screen.submit(ctx, entry)
        assert screen.parse is not None
        assert screen.field is not None
        assert screen.next
        state.data[screen.field] = screen.parse(ctx, entry)
        return Goto(screen.next)

    def _back(self, state: SessionState) -> None:
        if self.screens[state.screen].kind is Kind.LIST and state.page > 0:
            state.page -= 1
            return
        state.screen = state.stack.pop() if state.stack else self._root(state)
        state.page = 0

    def _goto(self, ctx: Ctx, step: Goto) -> Reply:
        state = ctx.state
        target = step.screen
        if step.reset:
            state.stack.clear()
        elif step.push and target != state.screen:
            state.stack = [*state.stack, state.screen][-STACK_MAX:]
        state.screen, state.page = target, 0
        if self.screens[target].root:
            state.data.clear()
            state.stack.clear()
        notice = say(step.notice, state.lang, step.params) if step.notice else None
        return self._render(ctx, reason=notice)

    def _finish(self, ctx: Ctx, step: Finish) -> Reply:
        state = ctx.state
        if ctx.queued:
            assert state.user_id is not None
            ussd.record_mpesa_requests(
                self.deni,
                mpesa=self.deni.mpesa_requests,
                user_id=state.user_id,
                queued=ctx.queued,
                channel=flows.CHANNEL,
            )
        state.ended = True
        state.data.clear()
        return compose(end=True, head=(), body=say(step.text, state.lang, step.params), tail=())

    def _render(self, ctx: Ctx, *, reason: str | None = None) -> Reply:
        state = ctx.state
        screen = self.screens[state.screen]
        registering = state.screen in REGISTRATION_SCREENS
        if (state.user_id is None and not registering and state.screen != RESUME) or (
            state.user_id is not None and registering
        ):
            # Only newcomers register, and only members see the rest.
            state.screen, state.stack = self._root(state), []
            screen = self.screens[state.screen]
        try:
            params = screen.view(ctx) if screen.view is not None else {}
            lines = self._list_lines(ctx, screen) if screen.kind is Kind.LIST else []
        except (Reject, DomainError):
            # What the screen was about changed under it (a loan repaid, say): start over.
            assert not screen.root
            state.screen, state.stack, state.page = self._root(state), [], 0
            return self._render(ctx, reason=say("ussd.err_loan_changed", state.lang))
        lang = state.lang
        body = say(screen.text, lang, params)
        tail = [*lines, *(f"{n} {say(o.label, lang)}" for n, o in enumerate(screen.options, 1))]
        tail.extend(self._navigation(screen, state))
        return compose(end=False, head=[reason] if reason else [], body=body, tail=tail)

    def _list_lines(self, ctx: Ctx, screen: Screen) -> list[str]:
        assert screen.items is not None
        assert screen.line is not None
        state = ctx.state
        items = screen.items(ctx, state.page * PAGE_ITEMS, PAGE_ITEMS + 1)
        more = len(items) > PAGE_ITEMS
        items = items[:PAGE_ITEMS]
        state.data["_keys"] = [item.key for item in items]
        state.data["_more"] = more
        if not items:
            return [say(screen.empty, state.lang)]
        return [f"{n} {say(screen.line, state.lang, i.params)}" for n, i in enumerate(items, 1)]

    def _navigation(self, screen: Screen, state: SessionState) -> list[str]:
        lang = state.lang
        if screen.root:
            return []
        if screen.kind is Kind.LIST:
            more = [say("ussd.nav_more", lang)] if state.data.get("_more") else []
            return [*more, say("ussd.nav_back_main", lang)]
        if screen.kind is Kind.INPUT and not screen.zero_is_back:
            return [say("ussd.nav_main", lang)]
        return [say("ussd.nav_back", lang)]


def _resumable(screen: Screen) -> bool:
    """Whether a session dropped on this screen is offered again: only where something typed
    would be lost (an entry screen: a loan's terms, an amount, a new PIN's first entry). A menu,
    a list or a statement the member read and left is one or two hops away again, and asking
    "Continue where you left off?" about it is a question for nothing."""
    return screen.kind is Kind.INPUT and screen.resumable and not screen.root


def _choice(entry: str, count: int) -> int:
    """A 1-based pick from `count` numbered lines, as a 0-based index."""
    if entry.isascii() and entry.isdigit() and len(entry) <= 2 and 1 <= int(entry) <= count:
        return int(entry) - 1
    raise Reject("ussd.err_choice")
