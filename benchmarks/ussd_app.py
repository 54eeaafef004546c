"""Deni's production ASGI app plus two reference routes, for the USSD bench only: a constant
`CON hello` (the capacity floor's ceiling) and one that makes only a hop's session-store
round trips.

The capacity ceiling must run on the same stack as POST /ussd: the same uvicorn process and
settings, the same FastAPI app with its middleware, the same worker count. So the bench serves
this module instead of `deni.entrypoints.api.asgi:app`; Deni's own routes never carry it.

Logging is configured here as `deni serve` configures it (level and format from the settings).
`deni.entrypoints.api.asgi` alone leaves structlog's default: every request's access line
pretty-printed to stdout whatever DENI_LOG_LEVEL says, which is not what production runs.
Configuring it at import also reaches every worker process, which `deni serve --workers N`
(configuring only its parent) does not.
"""

from __future__ import annotations

from functools import partial

from fastapi import Request
from fastapi.responses import PlainTextResponse

from benchmarks.ussd_load import HELLO_PATH, STORE_IO_PATH
from deni.adapters.observability import configure_logging
from deni.bootstrap import bootstrap
from deni.entrypoints.api.app import create_app
from deni.entrypoints.ussd import router
from deni.entrypoints.ussd.engine import UssdEngine, rate_key, resume_key, session_key
from deni.entrypoints.ussd.flows import SessionState
from deni.entrypoints.ussd.gateway import UssdRequest
from deni.entrypoints.ussd.menus import MAIN

MENU_CHARS = 150
_deni = bootstrap()
configure_logging(level=_deni.settings.log_level, json=_deni.settings.log_json)
app = create_app(_deni)


async def hello(request: Request) -> PlainTextResponse:
    """What the stack costs with no work at all: routing, middleware, one plain-text reply."""
    return PlainTextResponse("CON hello", media_type="text/plain; charset=utf-8")


async def store_io(request: Request) -> PlainTextResponse:
    """A hop with its work taken out: the same form read, the same hand-off to a hop thread and
    the same session-store calls (one read of three keys, one write of two), then `CON hello`.
    No database, no screen. The bench reports it beside the ceiling: it shows how much of the
    ceiling a hop's unavoidable I/O leaves."""
    channel = router._channel(request)  # the very threads and store hops use
    parsed = await router._read(request)  # the very form parser hops use
    await channel.run(partial(_store_round_trips, channel.engine, parsed))
    return PlainTextResponse("CON hello", media_type="text/plain; charset=utf-8")


def _store_round_trips(engine: UssdEngine, request: UssdRequest) -> None:
    now = engine.deni.clock.now()
    phone = request.phone
    engine.store.get_many(
        [session_key(request.session_id), resume_key(phone), rate_key(phone, now)], now=now
    )
    # A session record of the size hops write: a member on the main menu, its text remembered.
    state = SessionState(request.session_id, phone, "en", "0" * 26, "Wanjiku Kamau", MAIN)
    state.last_reply = "C" * MENU_CHARS
    engine.store.write(
        {
            session_key(request.session_id): (state.to_json(), engine.timeout_s),
            rate_key(phone, now): ("1", 120),
        },
        now=now,
    )


# The same kind of route as POST /ussd (a plain route), first in the route table as
# /ussd is (create_app puts the busiest paths first): all pay the same routing cost, so the
# references are fair.
app.router.routes[0:0] = [
    router.PlainRoute(HELLO_PATH, hello, methods=["POST"]),
    router.PlainRoute(STORE_IO_PATH, store_io, methods=["POST"]),
]
