"""Deni's production ASGI app plus a constant `CON hello` route, for the USSD bench only.

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

from fastapi import Request
from fastapi.responses import PlainTextResponse

from benchmarks.ussd_load import HELLO_PATH
from deni.adapters.observability import configure_logging
from deni.bootstrap import bootstrap
from deni.entrypoints.api.app import create_app
from deni.entrypoints.ussd.router import PlainRoute

_deni = bootstrap()
configure_logging(level=_deni.settings.log_level, json=_deni.settings.log_json)
app = create_app(_deni)


async def hello(request: Request) -> PlainTextResponse:
    """What the stack costs with no work at all: routing, middleware, one plain-text reply."""
    return PlainTextResponse("CON hello", media_type="text/plain; charset=utf-8")


# The same kind of route as POST /ussd (a plain route), first in the route table as
# /ussd is (create_app puts the busiest paths first): both pay the same routing cost, so the
# ceiling is fair.
app.router.routes.insert(0, PlainRoute(HELLO_PATH, hello, methods=["POST"]))
